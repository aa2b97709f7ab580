//! Repair 2, a primary pgpool gave up on. When no node is pgpool's primary and exactly one
//! server answers as a primary for [`ADOPT_AFTER`], pgpool is told: promote it (pgpool's idea
//! only: the server already is one) if pgpool has it up, attach it if pgpool has it down (a
//! primary that restarted after the search, which pgpool never re-attaches: docs/pgpool.md,
//! "Failover and the primary search").

use std::time::Duration;

use tokio::time::Instant;

use crate::pgpool::node::Node;
use crate::pgpool::pcp::Command;

/// pgpool has no primary while a server says it is one for this long: pgpool's own search
/// (`search_primary_node_timeout`) is over, so it will not find it by itself.
pub const ADOPT_AFTER: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
pub struct LostPrimary {
    no_primary_since: Option<Instant>,
    /// `PGPOOL_MODE=logical`: the copies answer as primaries too; only node 0 (the first URL)
    /// may be handed back, and only attached (pgpool keeps it the primary: ALWAYS_PRIMARY).
    logical: bool,
}

impl LostPrimary {
    pub fn new(logical: bool) -> LostPrimary {
        LostPrimary {
            logical,
            ..LostPrimary::default()
        }
    }

    /// The command that hands pgpool its primary, when due. `primary` is pgpool's primary, when
    /// it has one up.
    pub fn next(
        &mut self,
        nodes: &[Node],
        primary: Option<&Node>,
        now: Instant,
    ) -> Option<Command> {
        if primary.is_some() {
            self.no_primary_since = None;
            return None;
        }
        let claimants: Vec<&Node> = nodes
            .iter()
            .filter(|n| n.answers_as("primary") && (!self.logical || n.id == 0))
            .collect();
        match claimants.as_slice() {
            [c] => {
                let t = *self.no_primary_since.get_or_insert(now);
                (now.duration_since(t) >= ADOPT_AFTER).then(|| {
                    if c.is_up() {
                        Command::Promote(c.id)
                    } else {
                        Command::Attach(c.id)
                    }
                })
            }
            _ => {
                self.no_primary_since = None;
                None
            }
        }
    }

    pub fn done(&mut self) {
        self.no_primary_since = None;
    }
}
