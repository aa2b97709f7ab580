//! The repairs pgpool does not make by itself, each a rule of its own that takes one
//! `SHOW POOL_NODES` after another and the time, and says which pcp command is due:
//! [`stale_follower`], [`lost_primary`], and in logical mode [`lost_copy`]. This module runs
//! them and keeps pgpool from being asked twice while a repair's failover runs.
//!
//! To add a repair: a file here with a rule of the same shape (state, `next`, `done`), called
//! from [`Repairs::next`] with its [`Lines`]: two events in the catalogue (`log/events.rs`, and
//! README's table), one for the repair made, one for pgpool refusing it.

pub mod lost_copy;
pub mod lost_primary;
pub mod stale_follower;

use std::time::Duration;

use tokio::time::Instant;

use crate::config::Backend;
use crate::log::event;
use crate::log::events::{self, Event};
use crate::pgpool::node::Node;
use crate::pgpool::pcp::Command;
use lost_copy::LostCopy;
use lost_primary::LostPrimary;
use stale_follower::StaleFollower;

/// After a repair, pgpool's failover runs; nothing more is asked of it meanwhile.
pub const COOLDOWN: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct Repairs {
    stale: StaleFollower,
    lost: LostPrimary,
    /// Only in logical mode.
    copies: Option<LostCopy>,
    quiet_until: Option<Instant>,
}

/// A repair due: the pcp command, and the lines that report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repair {
    pub command: Command,
    pub lines: Lines,
}

/// A repair's two events: made, and refused by pgpool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lines {
    pub made: Event,
    pub failed: Event,
}

const STALE_FOLLOWER: Lines = Lines {
    made: events::FOLLOWER_STALE_DETACHED,
    failed: events::FOLLOWER_STALE_DETACHED_FAILED,
};
const PRIMARY_ADOPTED: Lines = Lines {
    made: events::PRIMARY_ADOPTED,
    failed: events::PRIMARY_ADOPTED_FAILED,
};
const PRIMARY_REATTACHED: Lines = Lines {
    made: events::PRIMARY_REATTACHED,
    failed: events::PRIMARY_REATTACHED_FAILED,
};
const COPY_REATTACHED: Lines = Lines {
    made: events::COPY_REATTACHED,
    failed: events::COPY_REATTACHED_FAILED,
};

impl Repairs {
    /// `logical`: `PGPOOL_MODE=logical`, where every copy answers as a primary and only the
    /// first URL may ever be one.
    pub fn new(logical: bool) -> Repairs {
        Repairs {
            lost: LostPrimary::new(logical),
            copies: logical.then(LostCopy::default),
            ..Repairs::default()
        }
    }

    /// The repair due now, if any.
    pub fn next(&mut self, nodes: &[Node], now: Instant) -> Option<Repair> {
        let quiet = self.quiet_until.is_some_and(|q| now < q);
        let primary = nodes.iter().find(|n| n.role == "primary" && n.is_up());
        // Every rule sees every poll (each keeps its own clocks). The first two never both
        // have something to do: one needs pgpool to have a primary, the other needs it to
        // have none. A lost primary goes before a lost copy.
        let stale = self.stale.next(nodes, primary, now);
        let lost = self.lost.next(nodes, primary, now);
        let copy = self.copies.as_mut().and_then(|c| c.next(nodes, now));
        if quiet {
            return None;
        }
        let repair = match (stale, lost, copy) {
            (Some(c), _, _) => {
                if let Command::Detach(n) = c {
                    self.stale.done(n);
                }
                Repair {
                    command: c,
                    lines: STALE_FOLLOWER,
                }
            }
            (None, Some(c), _) => {
                self.lost.done();
                let lines = match c {
                    Command::Promote(_) => PRIMARY_ADOPTED,
                    _ => PRIMARY_REATTACHED,
                };
                Repair { command: c, lines }
            }
            (None, None, Some(c)) => {
                if let (Some(copies), Command::Attach(n)) = (self.copies.as_mut(), c) {
                    copies.done(n);
                }
                Repair {
                    command: c,
                    lines: COPY_REATTACHED,
                }
            }
            (None, None, None) => return None,
        };
        self.quiet_until = Some(now + COOLDOWN);
        Some(repair)
    }
}

/// One line for a repair made, or tried.
pub fn log(backends: &[Backend], r: Repair, result: &anyhow::Result<()>) {
    let id = match r.command {
        Command::Detach(n) | Command::Promote(n) | Command::Attach(n) => n,
    };
    let source = super::events::source(backends, id);
    match result {
        Ok(()) => event!(r.lines.made, source, node = id),
        Err(e) => event!(r.lines.failed, source, node = id, error = %format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node as pgpool 4.3+ shows it: pgpool's status and role, the server's own answer, and
    /// the streaming check's state.
    fn live(id: usize, status: &str, role: &str, pg_role: &str, state: &str) -> Node {
        Node {
            pg_status: Some(if pg_role == "unknown" { "down" } else { "up" }.into()),
            pg_role: Some(pg_role.into()),
            replication_state: state.into(),
            ..Node::at(id, status, role)
        }
    }

    fn healthy() -> Vec<Node> {
        vec![
            live(0, "up", "primary", "primary", ""),
            live(1, "up", "standby", "standby", "streaming"),
            live(2, "up", "standby", "standby", "streaming"),
        ]
    }

    /// Polls once a second; returns what was asked and when (seconds from `t0`).
    fn drive(
        r: &mut Repairs,
        t0: Instant,
        from: u64,
        to: u64,
        nodes: &[Node],
    ) -> Vec<(u64, Command)> {
        (from..to)
            .filter_map(|s| {
                r.next(nodes, t0 + Duration::from_secs(s))
                    .map(|c| (s, c.command))
            })
            .collect()
    }

    #[test]
    fn in_logical_mode_only_the_first_url_is_ever_handed_back_as_the_primary() {
        let t0 = Instant::now();
        // The primary stopped and detached; the copy answers as a primary, as copies do.
        let copy_only = vec![
            live(0, "down", "standby", "unknown", ""),
            live(1, "up", "standby", "primary", ""),
        ];
        let mut r = Repairs::new(true);
        assert!(drive(&mut r, t0, 0, 20, &copy_only).is_empty());
        // Streaming mode would adopt that lone primary.
        let mut streaming = Repairs::new(false);
        assert_eq!(
            drive(&mut streaming, t0, 0, 3, &copy_only),
            vec![(2, Command::Promote(1))]
        );
        // The primary answers again: it is attached, once the grace is over.
        let back = vec![
            live(0, "down", "standby", "primary", ""),
            live(1, "up", "standby", "primary", ""),
        ];
        assert_eq!(
            drive(&mut r, t0, 20, 23, &back),
            vec![(22, Command::Attach(0))]
        );
    }

    #[test]
    fn in_logical_mode_a_copy_that_answers_again_is_attached() {
        let t0 = Instant::now();
        let restarted = vec![
            live(0, "up", "primary", "primary", ""),
            live(1, "down", "standby", "primary", ""),
        ];
        let mut r = Repairs::new(true);
        let due: Vec<(u64, Repair)> = (0..6)
            .filter_map(|s| {
                r.next(&restarted, t0 + Duration::from_secs(s))
                    .map(|c| (s, c))
            })
            .collect();
        assert_eq!(
            due,
            vec![(
                3,
                Repair {
                    command: Command::Attach(1),
                    lines: COPY_REATTACHED
                }
            )]
        );
        // Still down and not answering: nothing.
        let mut r = Repairs::new(true);
        let gone = vec![
            live(0, "up", "primary", "primary", ""),
            live(1, "down", "standby", "unknown", ""),
        ];
        assert!(drive(&mut r, t0, 0, 20, &gone).is_empty());
        // Streaming mode leaves that to pgpool's auto_failback.
        let mut r = Repairs::new(false);
        assert!(drive(&mut r, t0, 0, 20, &restarted).is_empty());
    }

    #[test]
    fn a_follower_of_a_dead_primary_is_detached_once_after_the_grace() {
        let (mut r, t0) = (Repairs::default(), Instant::now());
        assert!(drive(&mut r, t0, 0, 5, &healthy()).is_empty());
        // Node 1 promoted; node 2 still follows the old primary, which pgpool has down.
        let after = vec![
            live(0, "down", "standby", "unknown", ""),
            live(1, "up", "primary", "primary", ""),
            live(2, "up", "standby", "standby", ""),
        ];
        // pgpool's first rows under the new primary still show node 2's old state.
        let mut cached = after.clone();
        cached[2].replication_state = "streaming".into();
        assert!(drive(&mut r, t0, 5, 6, &cached).is_empty());
        assert_eq!(
            drive(&mut r, t0, 6, 25, &after),
            vec![(8, Command::Detach(2)), (18, Command::Detach(2))],
            "after the short grace, and again only after the cooldown if pgpool kept it"
        );
        // The same primary, a follower that stopped streaming from it: the long grace.
        let (mut r, t0) = (Repairs::default(), Instant::now());
        drive(&mut r, t0, 0, 5, &healthy());
        let mut gone = healthy();
        gone[2].replication_state = String::new();
        assert_eq!(
            drive(&mut r, t0, 5, 20, &gone),
            vec![(13, Command::Detach(2))]
        );
    }

    #[test]
    fn followers_are_left_alone_when_no_one_can_tell() {
        let t0 = Instant::now();
        // Never seen streaming: no pg_monitor, or names unknown.
        let mut r = Repairs::default();
        let hidden: Vec<Node> = healthy()
            .into_iter()
            .map(|n| Node {
                replication_state: String::new(),
                ..n
            })
            .collect();
        assert!(drive(&mut r, t0, 0, 30, &hidden).is_empty());
        // The primary does not answer (pgpool has not noticed yet): states are empty because
        // pgpool's check failed, not because the followers left.
        let mut r = Repairs::default();
        drive(&mut r, t0, 0, 2, &healthy());
        let mut unreachable = hidden.clone();
        unreachable[0] = live(0, "up", "primary", "unknown", "");
        assert!(drive(&mut r, t0, 2, 30, &unreachable).is_empty());
        // A follower that is down, or catching up for less than the grace.
        let mut r = Repairs::default();
        drive(&mut r, t0, 0, 2, &healthy());
        let mut blip = healthy();
        blip[1].replication_state = "catchup".into();
        blip[2] = live(2, "down", "standby", "unknown", "");
        assert!(drive(&mut r, t0, 2, 9, &blip).is_empty());
        assert!(drive(&mut r, t0, 6, 30, &healthy()).is_empty());
    }

    #[test]
    fn a_primary_pgpool_gave_up_on_is_adopted() {
        let t0 = Instant::now();
        // Promoted after pgpool's search: up in pgpool as a standby, a primary by its own word.
        let mut r = Repairs::default();
        let late = vec![
            live(0, "down", "standby", "unknown", ""),
            live(1, "up", "standby", "primary", ""),
            live(2, "up", "standby", "standby", ""),
        ];
        assert_eq!(
            drive(&mut r, t0, 0, 12, &late),
            vec![(2, Command::Promote(1))]
        );
        // The old primary restarted after the search: pgpool keeps it down.
        let mut r = Repairs::default();
        let back = vec![
            live(0, "down", "standby", "primary", ""),
            live(1, "up", "standby", "standby", ""),
        ];
        assert_eq!(
            drive(&mut r, t0, 0, 3, &back),
            vec![(2, Command::Attach(0))]
        );
        // Two servers claim to be primary: not ours to choose.
        let mut r = Repairs::default();
        let split = vec![
            live(0, "up", "standby", "primary", ""),
            live(1, "up", "standby", "primary", ""),
        ];
        assert!(drive(&mut r, t0, 0, 30, &split).is_empty());
        // Before 4.3 there is no pg_role: nothing is decided.
        let mut r = Repairs::default();
        let old: Vec<Node> = late
            .iter()
            .map(|n| Node {
                pg_role: None,
                pg_status: None,
                ..n.clone()
            })
            .collect();
        assert!(drive(&mut r, t0, 0, 30, &old).is_empty());
    }
}
