//! The launcher's log lines (l2met: `start-pgpool key=value key="quoted value" ...`) read back.

use std::collections::BTreeMap;

/// An l2met line -> map (the first word is the program name and kept as `_prog`).
pub fn parse(line: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = line.chars().peekable();
    let mut first = true;
    while chars.peek().is_some() {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ' ' {
                break;
            }
            key.push(c);
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ' ' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        if first {
            out.insert("_prog".into(), key);
            first = false;
        } else if !key.is_empty() {
            out.insert(key, value);
        }
    }
    out
}

/// The lines of `stderr` with `at=<at>`, parsed.
pub fn lines_at(stderr: &str, at: &str) -> Vec<BTreeMap<String, String>> {
    stderr
        .lines()
        .map(parse)
        .filter(|m| m.get("at").map(String::as_str) == Some(at))
        .collect()
}
