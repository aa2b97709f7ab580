//! The one way a launcher error reaches the user: one line on stderr, prefixed, whole context
//! chain on that line. Messages name variables, never values (see backends.rs).

pub fn print(err: &anyhow::Error) {
    eprintln!("{}", line(err));
}

pub fn line(err: &anyhow::Error) -> String {
    let text = format!("{err:#}");
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("start-pgpool: error: {one_line}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_line_with_the_context_chain() {
        let e = anyhow::anyhow!("inner\nproblem").context("PGPOOL_PORT: bad");
        assert_eq!(
            super::line(&e),
            "start-pgpool: error: PGPOOL_PORT: bad: inner problem"
        );
    }
}
