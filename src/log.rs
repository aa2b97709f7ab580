//! Log lines on stderr in Heroku's l2met style: `start-pgpool at=pgpool-ready level=info
//! port=5432 ms=212`. The event's message is its `at=` name; fields follow as key=value.
//! pgpool's own output is relayed with `at=pgpool`. Passwords are never fields (see Secret).
//! Every `at=` name is in [`events`], and is logged with [`event!`].

pub mod events;

pub(crate) use events::event;

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

/// One relayed line of pgpool output, at the level the relay gave it (`events::PGPOOL` is
/// `Relayed`: its level is the line's).
pub fn pgpool_line(level: Level, line: &str) {
    let level = match level {
        Level::ERROR => events::Level::Error,
        Level::WARN => events::Level::Warn,
        Level::INFO => events::Level::Info,
        _ => events::Level::Debug,
    };
    event!(
        events::Event {
            level,
            ..events::PGPOOL
        },
        line
    );
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
    use std::sync::{Arc, Mutex};

    use super::events;

    /// What the launcher writes for `log`, at every level.
    fn written(log: impl FnOnce()) -> String {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .event_format(super::L2met)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        String::from_utf8(buf.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn an_option_field_is_written_only_when_some() {
        let (some, none): (Option<u64>, Option<u64>) = (Some(3), None);
        let out = written(|| {
            super::event!(
                events::METRICS,
                "count#a" = some,
                "count#b" = none,
                role = "x"
            );
        });
        assert_eq!(out, "start-pgpool at=metrics level=info count#a=3 role=x\n");
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_event_is_written_at_its_catalogued_level() {
        let source = "DATABASE_URL";
        let out = written(|| {
            super::event!(events::NODE_DOWN, source, node = 2);
            super::event!(events::CONNECTION_BUDGET, per_node = 32);
            super::event!(events::PGPOOL_STOPPED);
            super::event!(events::POOL_NODES, nodes = "0:up/primary");
            super::pgpool_line(tracing::Level::ERROR, "FATAL: x");
        });
        assert_eq!(
            out,
            "start-pgpool at=node-down level=warn source=DATABASE_URL node=2\n\
             start-pgpool at=connection-budget level=info per_node=32\n\
             start-pgpool at=pgpool-stopped level=info\n\
             start-pgpool at=pool-nodes level=debug nodes=0:up/primary\n\
             start-pgpool at=pgpool level=error line=\"FATAL: x\"\n"
        );
    }

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(super::quote("5432"), "5432");
        assert_eq!(super::quote("a b"), "\"a b\"");
        assert_eq!(super::quote("say \"x\"\n"), "\"say \\\"x\\\" \"");
        assert_eq!(super::quote(""), "\"\"");
    }
}
