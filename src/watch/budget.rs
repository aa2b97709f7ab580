//! The connection budget, logged once at start: how many connections this pgpool may hold on
//! each node, against the primary's `max_connections`. [`verdict`] decides the line; [`log`]
//! only asks the primary and writes it.

use crate::config::{Backend, Settings};
use crate::log::{self, event};
use crate::pgpool::sql;

/// Connections pgpool's own checks hold on each node: the health check's and the streaming
/// check's, which our build keeps between checks (patch 0011).
pub const CHECK_CONNECTIONS: u32 = 2;

/// Backend connections this pgpool may hold on each node: every child keeps one to every node,
/// the primary included (docs/pgpool.md, "Connections per node"), and the checks theirs.
pub fn connections_per_node(settings: &Settings) -> u32 {
    settings.num_init_children * settings.max_pool + CHECK_CONNECTIONS
}

/// What an idle dyno holds on each node: the checks' connections once `PGPOOL_IDLE_TIMEOUT`
/// has closed the ones cached for clients that left; without it, all it ever opened.
pub fn idle_connections_per_node(settings: &Settings) -> u32 {
    if settings.idle_timeout.is_some() {
        CHECK_CONNECTIONS
    } else {
        connections_per_node(settings)
    }
}

/// The budget line, with its fields.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// More than `share` of `max_connections`: `connection-budget-high`, a warning.
    High {
        per_node: u32,
        max_connections: u32,
        share: f64,
    },
    /// Within the share: `connection-budget`.
    Within { per_node: u32, max_connections: u32 },
    /// The primary did not say its `max_connections`: `connection-budget`, the count alone.
    Unknown { per_node: u32 },
}

/// The line to log for `per_node` connections on each node, given the primary's
/// `max_connections` (if it answered) and the share of it allowed (`PGPOOL_MAX_CONNECTIONS_SHARE`).
pub fn verdict(per_node: u32, max_connections: Option<u32>, share: f64) -> Verdict {
    match max_connections {
        Some(max) if f64::from(per_node) > share * f64::from(max) => Verdict::High {
            per_node,
            max_connections: max,
            share,
        },
        Some(max) => Verdict::Within {
            per_node,
            max_connections: max,
        },
        None => Verdict::Unknown { per_node },
    }
}

/// Asks the primary its `max_connections` (SHOW goes to the primary) and logs the budget.
pub async fn log(port: u16, backends: &[Backend], settings: &Settings) {
    let max = sql::with_session(sql::tcp_config(port, &backends[0]), |c| async move {
        sql::first_value(&c, "SHOW max_connections").await
    })
    .await
    .ok()
    .flatten()
    .and_then(|v| v.parse::<u32>().ok());
    let share = settings.max_connections_share;
    let idle_per_node = idle_connections_per_node(settings);
    match verdict(connections_per_node(settings), max, share) {
        Verdict::High {
            per_node,
            max_connections,
            share,
        } => event!(
            log::events::CONNECTION_BUDGET_HIGH,
            per_node,
            idle_per_node,
            max_connections,
            share
        ),
        Verdict::Within {
            per_node,
            max_connections,
        } => event!(
            log::events::CONNECTION_BUDGET,
            per_node,
            idle_per_node,
            max_connections
        ),
        Verdict::Unknown { per_node } => {
            event!(log::events::CONNECTION_BUDGET, per_node, idle_per_node)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_only_past_the_share() {
        // 32 per node against 100 allowed at 0.5: 50 is the most that stays quiet.
        assert_eq!(
            verdict(32, Some(100), 0.5),
            Verdict::Within {
                per_node: 32,
                max_connections: 100
            }
        );
        assert_eq!(
            verdict(50, Some(100), 0.5),
            Verdict::Within {
                per_node: 50,
                max_connections: 100
            }
        );
        assert_eq!(
            verdict(51, Some(100), 0.5),
            Verdict::High {
                per_node: 51,
                max_connections: 100,
                share: 0.5
            }
        );
        // A share of 1 allows all of max_connections, and no more.
        assert!(matches!(
            verdict(120, Some(120), 1.0),
            Verdict::Within { .. }
        ));
        assert!(matches!(verdict(121, Some(120), 1.0), Verdict::High { .. }));
    }

    #[test]
    fn an_unknown_max_gives_the_count_alone() {
        assert_eq!(
            verdict(10_000, None, 0.1),
            Verdict::Unknown { per_node: 10_000 }
        );
    }
}
