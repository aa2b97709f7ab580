//! Log lines on stderr in Heroku's l2met style: `start-pgpool at=pgpool-ready level=info
//! port=5432 ms=212`. The event's message is its `at=` name; fields follow as key=value.
//! pgpool's own output is relayed with `at=pgpool`. Passwords are never fields (see Secret).

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How much the launcher says (`PGPOOL_LOG_LEVEL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

pub fn init(level: LogLevel) {
    let max = match level {
        LogLevel::Error => Level::ERROR,
        LogLevel::Warn => Level::WARN,
        LogLevel::Info => Level::INFO,
        LogLevel::Debug => Level::DEBUG,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(max)
        .with_writer(std::io::stderr)
        .event_format(L2met)
        .try_init();
}

/// One relayed line of pgpool output.
pub fn pgpool_line(level: Level, line: &str) {
    match level {
        Level::ERROR => tracing::error!(line, "pgpool"),
        Level::WARN => tracing::warn!(line, "pgpool"),
        Level::INFO => tracing::info!(line, "pgpool"),
        _ => tracing::debug!(line, "pgpool"),
    }
}

struct L2met;

impl<S, N> FormatEvent<S, N> for L2met
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut v = Fields::default();
        event.record(&mut v);
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        writeln!(w, "start-pgpool at={} level={level}{}", v.at, v.rest)
    }
}

#[derive(Default)]
struct Fields {
    at: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.at = value.to_string();
        } else {
            let _ = write!(self.rest, " {}={}", field.name(), quote(value));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

/// l2met values are bare words unless they hold spaces, quotes or `=`.
pub fn quote(value: &str) -> String {
    if !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '=' || c.is_control())
    {
        return value.to_string();
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(super::quote("5432"), "5432");
        assert_eq!(super::quote("a b"), "\"a b\"");
        assert_eq!(super::quote("say \"x\"\n"), "\"say \\\"x\\\" \"");
        assert_eq!(super::quote(""), "\"\"");
    }
}
