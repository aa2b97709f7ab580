//! Repair 1, a follower of a dead primary. After a promotion pgpool finds the new primary, but
//! a follower still streaming from the old one (or from nothing) stays in the pool and serves
//! reads that never change again. When pgpool's streaming check shows a follower that *was*
//! streaming from the primary now not streaming from the current one for [`STALE_AFTER`]
//! ([`STALE_AFTER_PROMOTION`] when the primary is another node than it streamed from), while
//! both servers answer, the follower is detached. pgpool's `auto_failback` brings it back once
//! it streams from the current primary. A follower never seen streaming (its name unknown, or
//! no `pg_monitor`) is left alone: there is no telling.

use std::time::Duration;

use tokio::time::Instant;

use crate::pgpool::node::Node;
use crate::pgpool::pcp::Command;

/// A follower must be seen not replicating from the primary this long before it is detached:
/// longer than a WAL receiver takes to reconnect after a blip or a primary restart (it retries
/// every `wal_retrieve_retry_interval`, 5 s by default), short enough that a follower of a dead
/// primary stops serving reads within 15 s of a promotion (pgpool finds the new primary within
/// about 3 s of it).
pub const STALE_AFTER: Duration = Duration::from_secs(8);
/// The same when the follower was last seen streaming from another node than today's primary:
/// after a promotion a follower cannot be streaming from the new primary until something
/// re-points it, so there is nothing to wait for but pgpool's next streaming check.
pub const STALE_AFTER_PROMOTION: Duration = Duration::from_secs(2);
/// For this long after pgpool changes primaries, its streaming check may still show a
/// follower's state from the old primary (the check does not run during a failover): it is
/// not believed until a check has run against the new one (`sr_check_period` is 1 s).
pub const SETTLE: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
pub struct StaleFollower {
    /// The primary each follower was last seen streaming from.
    streamed_from: Vec<Option<usize>>,
    not_streaming_since: Vec<Option<Instant>>,
    /// pgpool's primary at the last poll, and from when its followers' states are believed.
    primary: Option<usize>,
    believe_from: Option<Instant>,
}

impl StaleFollower {
    /// The follower to detach now, if any. `primary` is pgpool's primary, when it has one up.
    pub fn next(
        &mut self,
        nodes: &[Node],
        primary: Option<&Node>,
        now: Instant,
    ) -> Option<Command> {
        let len = nodes.iter().map(|n| n.id + 1).max().unwrap_or(0);
        if self.streamed_from.len() < len {
            self.streamed_from.resize(len, None);
            self.not_streaming_since.resize(len, None);
        }
        let Some(p) = primary else {
            self.primary = None;
            self.not_streaming_since.iter_mut().for_each(|s| *s = None);
            return None;
        };
        if self.primary != Some(p.id) {
            // The first primary seen was already pgpool's before we looked; any later one is
            // new.
            self.believe_from = Some(match self.believe_from {
                None => now,
                Some(_) => now + SETTLE,
            });
            self.primary = Some(p.id);
        }
        let settled = self.believe_from.is_some_and(|t| now >= t);
        let mut due = None;
        for n in nodes.iter().filter(|n| n.id != p.id) {
            let since = &mut self.not_streaming_since[n.id];
            let from = self.streamed_from[n.id];
            if n.replication_state == "streaming" {
                if settled {
                    self.streamed_from[n.id] = Some(p.id);
                    *since = None;
                }
            } else if n.is_up()
                && from.is_some()
                && p.answers_as("primary")
                && n.answers_as("standby")
            {
                let t = *since.get_or_insert(now);
                let grace = if from == Some(p.id) {
                    STALE_AFTER
                } else {
                    STALE_AFTER_PROMOTION
                };
                if now.duration_since(t) >= grace && due.is_none() {
                    due = Some(Command::Detach(n.id));
                }
            } else {
                *since = None;
            }
        }
        due
    }

    /// `node` was detached: its clock starts again.
    pub fn done(&mut self, node: usize) {
        if let Some(s) = self.not_streaming_since.get_mut(node) {
            *s = None;
        }
    }
}
