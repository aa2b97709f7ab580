//! Repair 3, in `PGPOOL_MODE=logical` only: a copy pgpool detached and that answers again.
//! pgpool's `auto_failback` re-attaches only streaming standbys (it checks the primary's
//! `pg_stat_replication`, where a subscription has no row), so a copy that restarted would
//! never take reads again. When pgpool has a copy down and pgpool's own ping of it says up for
//! [`REATTACH_AFTER`], it is attached.

use std::time::Duration;

use tokio::time::Instant;

use crate::pgpool::node::Node;
use crate::pgpool::pcp::Command;

/// Longer than a restarting server takes to accept logins once it answers pings.
pub const REATTACH_AFTER: Duration = Duration::from_secs(3);

#[derive(Debug, Default)]
pub struct LostCopy {
    answering_since: Vec<Option<Instant>>,
}

impl LostCopy {
    /// The copy to attach now, if any (the lowest node id first).
    pub fn next(&mut self, nodes: &[Node], now: Instant) -> Option<Command> {
        let len = nodes.iter().map(|n| n.id + 1).max().unwrap_or(0);
        if self.answering_since.len() < len {
            self.answering_since.resize(len, None);
        }
        let mut due = None;
        for n in nodes.iter().filter(|n| n.id > 0) {
            let lost_but_answering = !n.is_up() && n.pg_status.as_deref() == Some("up");
            let since = &mut self.answering_since[n.id];
            if !lost_but_answering {
                *since = None;
                continue;
            }
            let t = *since.get_or_insert(now);
            if due.is_none() && now.duration_since(t) >= REATTACH_AFTER {
                due = Some(n.id);
            }
        }
        due.map(Command::Attach)
    }

    pub fn done(&mut self, id: usize) {
        if let Some(s) = self.answering_since.get_mut(id) {
            *s = None;
        }
    }
}
