//! The launcher's log lines (l2met: `start-pgpool key=value key="quoted value" ...`) read back.

use std::collections::BTreeMap;

use super::api::events::Event;

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

/// The lines of `stderr` of `event`, parsed; each is checked to be at the event's level.
pub fn lines_at(stderr: &str, event: Event) -> Vec<BTreeMap<String, String>> {
    let lines: Vec<_> = stderr
        .lines()
        .map(parse)
        .filter(|m| m.get("at").map(String::as_str) == Some(event.name))
        .collect();
    // A relayed pgpool line keeps pgpool's own level.
    if event.level != super::api::events::Level::Relayed {
        for m in &lines {
            assert_eq!(
                m.get("level").map(String::as_str),
                Some(event.level.word()),
                "{m:?}"
            );
        }
    }
    lines
}

/// ` at=<name> `: in any line of `event`, whatever its level (for asserting there is none).
pub fn at(event: Event) -> String {
    format!(" at={} ", event.name)
}

/// ` at=<name> level=<level> `: what a line of `event` holds, spaces included, before its fields
/// (an event logged with no fields ends at its level: find those with [`lines_at`]).
pub fn head(event: Event) -> String {
    format!(" at={} level={} ", event.name, event.level.word())
}
