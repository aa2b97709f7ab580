//! Node events and metrics: one event line when a node goes up or down or changes role (from
//! one view of the nodes' states after another: pcp's, or `SHOW POOL_NODES`'s before pgpool
//! 4.2), and one l2met metrics line per node (from `SHOW POOL_NODES`), `source=` its variable.

use crate::config::Backend;
use crate::log::{self, event};
use crate::pgpool::node::Node;
use crate::pgpool::pcp::NodeState;

/// A change worth an event line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Down(usize),
    Up(usize),
    Role(usize, String),
}

/// What changed between two views of the nodes, by node id.
pub fn changes(before: &[NodeState], now: &[NodeState]) -> Vec<Change> {
    let mut out = Vec::new();
    for n in now {
        let Some(b) = before.iter().find(|b| b.id == n.id) else {
            continue;
        };
        match (b.is_up(), n.is_up()) {
            (true, false) => out.push(Change::Down(n.id)),
            (false, true) => out.push(Change::Up(n.id)),
            _ => {}
        }
        if b.role != n.role && !n.role.is_empty() {
            out.push(Change::Role(n.id, n.role.clone()));
        }
    }
    out
}

/// The states in `SHOW POOL_NODES` rows: the same strings pcp sends.
pub fn states(nodes: &[Node]) -> Vec<NodeState> {
    nodes
        .iter()
        .map(|n| NodeState {
            id: n.id,
            status: n.status.clone(),
            role: n.role.clone(),
        })
        .collect()
}

/// The variable a node came from, as every line names it.
pub fn source(backends: &[Backend], id: usize) -> &str {
    backends
        .get(id)
        .map(|b| b.var.as_str())
        .unwrap_or("unknown")
}

pub fn log_change(backends: &[Backend], c: &Change) {
    match c {
        Change::Down(id) => event!(
            log::events::NODE_DOWN,
            source = source(backends, *id),
            node = id
        ),
        Change::Up(id) => event!(
            log::events::NODE_UP,
            source = source(backends, *id),
            node = id
        ),
        Change::Role(id, role) => {
            event!(
                log::events::NODE_ROLE,
                source = source(backends, *id),
                node = id,
                role = role.as_str()
            )
        }
    }
}

/// Logins to one node since the last metrics line: by pgpool's health and streaming checks
/// (`None`: this pgpool does not count them), and the sessions the launcher opened through
/// pgpool (each logs in to the node at most once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeLogins {
    pub checks: Option<u64>,
    pub launcher: u64,
}

pub fn log_metrics(backends: &[Backend], nodes: &[Node], logins: &[NodeLogins]) {
    for (i, n) in nodes.iter().enumerate() {
        let l = logins.get(i).copied().unwrap_or_default();
        // A `None` field is left out of the line (tracing records an Option only when Some).
        event!(
            log::events::METRICS,
            source = source(backends, n.id),
            "sample#pgpool.node.select_count" = n.select_count,
            "sample#pgpool.node.lag_bytes" = n.lag_bytes,
            "sample#pgpool.node.up" = u8::from(n.is_up()),
            "count#pgpool.node.check_logins" = l.checks,
            "count#pgpool.node.launcher_logins" = l.launcher,
            role = n.role.as_str()
        );
    }
}

/// The nodes as one debug field: `id:status/role/pg_status/pg_role/replication_state,...`.
pub fn summary(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(|n| {
            format!(
                "{}:{}/{}/{}/{}/{}",
                n.id,
                n.status,
                n.role,
                n.pg_status.as_deref().unwrap_or("-"),
                n.pg_role.as_deref().unwrap_or("-"),
                n.replication_state
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(id: usize, status: &str, role: &str) -> NodeState {
        NodeState {
            id,
            status: status.into(),
            role: role.into(),
        }
    }

    #[test]
    fn changes_are_per_node_transitions() {
        let before = [
            n(0, "up", "primary"),
            n(1, "up", "standby"),
            n(2, "down", "standby"),
        ];
        let now = [
            n(0, "down", "standby"),
            n(1, "up", "primary"),
            n(2, "waiting", "standby"),
        ];
        assert_eq!(
            changes(&before, &now),
            vec![
                Change::Down(0),
                Change::Role(0, "standby".into()),
                Change::Role(1, "primary".into()),
                Change::Up(2)
            ]
        );
        assert!(changes(&now, &now).is_empty());
        // A node missing from one view (pcp answered for fewer nodes) is no change.
        assert!(changes(&before, &now[..1]).len() == 2);
        assert!(changes(&before[..1], &now).len() == 2);
    }

    #[test]
    fn pool_nodes_rows_give_the_same_states() {
        let rows = [Node {
            select_count: 3,
            ..Node::at(1, "waiting", "standby")
        }];
        assert_eq!(states(&rows), vec![n(1, "waiting", "standby")]);
        assert!(states(&rows)[0].is_up());
    }
}
