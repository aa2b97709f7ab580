//! The rule a value must meet to enter pgpool.conf. pgpool.conf has no escaping at all (a `'`
//! ends a value wherever it is, and the rest of the line is read as more settings: see
//! docs/pgpool.md, "pgpool.conf has no escaping"), so nothing is escaped: a value that breaks
//! the rule is refused, by the parser that took it in, with a message naming its variable.

/// True when pgpool.conf can hold `value` between single quotes and read back exactly it.
pub fn conf_safe(value: &str) -> bool {
    !value
        .chars()
        .any(|c| c == '\'' || c == '\\' || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::conf_safe;

    #[test]
    fn conf_safe_rule() {
        assert!(conf_safe("a$b%c@d:e/f\"g #h"));
        for bad in [
            "a'b", "a\\b", "a\nb", "a\rb", "a\0b", "a\u{7f}b", "a\u{85}b",
        ] {
            assert!(!conf_safe(bad), "{bad:?}");
        }
    }
}
