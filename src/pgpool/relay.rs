//! pgpool's stdout and stderr become our log lines: each line relayed at the level its
//! severity and its sender earn, with the password scrubbed out, and the last warning kept to
//! explain why pgpool stopped.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::secret::Secret;

/// The last warning or error line pgpool printed.
pub type LastError = Arc<Mutex<Option<String>>>;

/// Relays one of pgpool's output streams until end of file. `main_pid` is pgpool's main
/// process, the only one that speaks for pgpool as a whole.
pub fn start(
    stream: impl AsyncRead + Unpin + Send + 'static,
    main_pid: u32,
    scrub: Scrubber,
    last_error: LastError,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream);
        let mut level = tracing::Level::DEBUG;
        let mut buf = Vec::new();
        // Bytes, not `lines()`: a client's application_name lands in pgpool's log prefix, and
        // one line that is not UTF-8 must not end the relay (pgpool would then write into a
        // closed pipe).
        for _ in 0..u64::MAX {
            buf.clear();
            match reader.read_until(b'\n', &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&buf);
            let line = scrub.apply(line.trim_end_matches(['\n', '\r']));
            level = relay_level(&line, main_pid).unwrap_or(level);
            if level <= tracing::Level::WARN
                && let Ok(mut e) = last_error.lock()
            {
                *e = Some(line.clone());
            }
            crate::log::pgpool_line(level, &line);
        }
    })
}

/// pgpool's severity words, mapped to ours. ERROR lines are mostly one client's failure (a
/// wrong password, a cancelled query), so they are warnings here, not launcher errors.
///
/// Only the main process speaks for pgpool as a whole: a child's FATAL is one client session
/// failing (during startup, every probe that arrives before the primary is found), so
/// children's lines are debug. Lines look like `main pid 123: LOG:  ...` (our
/// `log_line_prefix`).
fn relay_level(line: &str, main_pid: u32) -> Option<tracing::Level> {
    let level = severity(line)?;
    let from_main = line
        .split_once(" pid ")
        .and_then(|(_, rest)| rest.split(':').next())
        .and_then(|p| p.trim().parse::<u32>().ok())
        .is_none_or(|p| p == main_pid);
    Some(if from_main {
        level
    } else {
        tracing::Level::DEBUG
    })
}

fn severity(line: &str) -> Option<tracing::Level> {
    use tracing::Level;
    const WORDS: &[(&str, Option<Level>)] = &[
        ("PANIC:", Some(Level::ERROR)),
        ("FATAL:", Some(Level::ERROR)),
        ("ERROR:", Some(Level::WARN)),
        ("WARNING:", Some(Level::WARN)),
        ("NOTICE:", Some(Level::DEBUG)),
        ("LOG:", Some(Level::DEBUG)),
        ("INFO:", Some(Level::DEBUG)),
        ("DEBUG:", Some(Level::DEBUG)),
        // Continuation lines keep the level of the line they belong to.
        ("DETAIL:", None),
        ("HINT:", None),
        ("CONTEXT:", None),
        ("LOCATION:", None),
    ];
    // No frontend certificate is configured on purpose (the app talks plain TCP to loopback),
    // so pgpool's complaint about it is noise.
    // pgpool_status lives in the private runtime directory, removed at exit, and the
    // launcher's own at=node-down lines say which nodes are down.
    if line.contains("could not load server certificate")
        || line.contains("could not load private key")
        || line.contains("skip writing status file")
    {
        return Some(Level::DEBUG);
    }
    WORDS
        .iter()
        .filter_map(|(w, l)| line.find(w).map(|at| (at, *l)))
        .min_by_key(|(at, _)| *at)
        .map(|(_, l)| l.unwrap_or(Level::TRACE))
        .filter(|l| *l != Level::TRACE)
}

/// Removes the password, raw and percent-encoded, from relayed lines: pgpool does not print it
/// as far as we know, and this keeps it so if a future release starts to.
#[derive(Clone)]
pub struct Scrubber(Vec<String>);

impl Scrubber {
    pub fn new(password: &Secret) -> Self {
        let raw = password.expose().to_string();
        let enc = url::form_urlencoded::byte_serialize(raw.as_bytes()).collect::<String>();
        let pct = percent_encoding::utf8_percent_encode(&raw, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
        let mut v: Vec<String> = [raw, enc, pct]
            .into_iter()
            .filter(|s| s.len() >= 3)
            .collect();
        v.dedup();
        Scrubber(v)
    }

    fn apply(&self, line: &str) -> String {
        let mut out = line.to_string();
        for s in &self.0 {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_pgpool_severity() {
        use tracing::Level;
        assert_eq!(
            relay_level("main pid 1: FATAL:  bad", 1),
            Some(Level::ERROR)
        );
        assert_eq!(relay_level("main pid 1: ERROR:  bad", 1), Some(Level::WARN));
        assert_eq!(
            relay_level("child pid 2: FATAL:  auth", 1),
            Some(Level::DEBUG)
        );
        assert_eq!(
            relay_level("main pid 1: LOG:  started", 1),
            Some(Level::DEBUG)
        );
        assert_eq!(relay_level("main pid 1: DETAIL:  more", 1), None);
        assert_eq!(relay_level("no level", 1), None);
        assert_eq!(relay_level("FATAL:  no prefix", 1), Some(Level::ERROR));
        assert_eq!(
            relay_level("main pid 1: LOG:  ERROR: in text", 1),
            Some(Level::DEBUG)
        );
        assert_eq!(
            relay_level("WARNING:  could not load server certificate file \"\"", 1),
            Some(Level::DEBUG)
        );
        assert_eq!(
            relay_level(
                "main pid 1: WARNING:  All the DB nodes are in down status and skip writing status file.",
                1
            ),
            Some(Level::DEBUG)
        );
    }

    #[test]
    fn scrubber_hides_the_password_in_every_encoding() {
        let s = Scrubber::new(&Secret::new("p@ss:w rd"));
        assert_eq!(s.apply("a p@ss:w rd b"), "a *** b");
        assert_eq!(s.apply("a p%40ss%3Aw%20rd b"), "a *** b");
        assert_eq!(s.apply("a p%40ss%3Aw+rd b"), "a *** b");
    }
}
