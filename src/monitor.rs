//! While the app runs: one event line when a node goes up or down or changes role, and every
//! `PGPOOL_METRICS_INTERVAL` one l2met metrics line per node, `source=` its variable. Also the
//! connection budget, logged once at start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use crate::backends::Backend;
use crate::ready::{self, Node};
use crate::settings::Settings;

/// How often node states are polled for events. One persistent session through pgpool does it,
/// so a poll costs a query, not a SCRAM handshake.
const POLL: Duration = Duration::from_secs(1);

/// A change worth an event line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Down(usize),
    Up(usize),
    Role(usize, String),
}

/// What changed between two `SHOW POOL_NODES` results, by node id.
pub fn changes(before: &[Node], now: &[Node]) -> Vec<Change> {
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

fn source(backends: &[Backend], id: usize) -> &str {
    backends
        .get(id)
        .map(|b| b.var.as_str())
        .unwrap_or("unknown")
}

fn log_change(backends: &[Backend], c: &Change) {
    match c {
        Change::Down(id) => tracing::warn!(source = source(backends, *id), node = id, "node-down"),
        Change::Up(id) => tracing::info!(source = source(backends, *id), node = id, "node-up"),
        Change::Role(id, role) => {
            tracing::warn!(
                source = source(backends, *id),
                node = id,
                role = role.as_str(),
                "node-role"
            )
        }
    }
}

fn log_metrics(backends: &[Backend], nodes: &[Node]) {
    for n in nodes {
        tracing::info!(
            source = source(backends, n.id),
            "sample#pgpool.node.select_count" = n.select_count,
            "sample#pgpool.node.lag_bytes" = n.lag_bytes,
            "sample#pgpool.node.up" = u8::from(n.is_up()),
            role = n.role.as_str(),
            "metrics"
        );
    }
}

/// Watches pgpool until the task is dropped, or until a signal that starts a shutdown: from
/// then on no new session of ours may keep pgpool's smart shutdown waiting. `initial` is what
/// readiness saw.
pub async fn run(
    socket_dir: PathBuf,
    port: u16,
    backends: Vec<Backend>,
    interval: Option<Duration>,
    initial: Vec<Node>,
) {
    let mut last = initial;
    let mut next_metrics = interval.map(|i| Instant::now() + i);
    let mut stop = match Stop::install() {
        Ok(s) => s,
        Err(_) => return,
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.recv() => return,
        }
        // A session per poll over pgpool's private socket (trust on `local`, since only our user
        // can reach the 0700 directory): cheap, and never held open across a shutdown.
        let nodes = match tokio::time::timeout(POLL, poll(&socket_dir, port, &backends[0])).await {
            Ok(Ok(n)) => n,
            _ => continue,
        };
        for ch in changes(&last, &nodes) {
            log_change(&backends, &ch);
        }
        if let (Some(due), Some(i)) = (next_metrics, interval)
            && Instant::now() >= due
        {
            log_metrics(&backends, &nodes);
            next_metrics = Some(due + i);
        }
        last = nodes;
    }
}

async fn poll(
    socket_dir: &Path,
    port: u16,
    primary: &Backend,
) -> Result<Vec<Node>, tokio_postgres::Error> {
    let (c, conn) = socket_config(socket_dir, port, &primary.user, &primary.dbname)
        .connect(tokio_postgres::NoTls)
        .await?;
    let conn = tokio::spawn(conn);
    let nodes = ready::show_pool_nodes(&c).await;
    drop(c);
    let _ = conn.await;
    nodes
}

/// A session over pgpool's Unix socket in the runtime directory; `local` is trusted there.
pub fn socket_config(
    socket_dir: &Path,
    port: u16,
    user: &str,
    dbname: &str,
) -> tokio_postgres::Config {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host_path(socket_dir)
        .port(port)
        .user(user)
        .dbname(dbname)
        .application_name("start-pgpool monitor")
        .ssl_mode(tokio_postgres::config::SslMode::Disable)
        .connect_timeout(Duration::from_secs(2));
    cfg
}

/// The signals after which the launcher is shutting down.
struct Stop(Vec<tokio::signal::unix::Signal>);

impl Stop {
    fn install() -> std::io::Result<Stop> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Stop(vec![
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
            signal(SignalKind::hangup())?,
            signal(SignalKind::quit())?,
        ]))
    }

    async fn recv(&mut self) {
        let [a, b, c, d] = &mut self.0[..] else {
            return;
        };
        tokio::select! {
            _ = a.recv() => {}
            _ = b.recv() => {}
            _ = c.recv() => {}
            _ = d.recv() => {}
        }
    }
}

/// Backend connections this pgpool may hold on each node (NOTES gotcha 12: every child keeps
/// one to every node, the primary included).
pub fn connections_per_node(settings: &Settings) -> u32 {
    settings.num_init_children * settings.max_pool
}

/// Logs the budget once, and warns when it is more than the allowed share of the primary's
/// `max_connections` (SHOW goes to the primary).
pub async fn log_budget(port: u16, backends: &[Backend], settings: &Settings) {
    let per_node = connections_per_node(settings);
    let max = async {
        let (c, conn) = ready::connect(port, &backends[0]).await.ok()?;
        let conn = tokio::spawn(conn);
        let rows = c.simple_query("SHOW max_connections").await.ok()?;
        drop(c);
        let _ = conn.await;
        rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                r.get(0).and_then(|v| v.parse::<u32>().ok())
            }
            _ => None,
        })
    }
    .await;
    match max {
        Some(max) if f64::from(per_node) > settings.max_connections_share * f64::from(max) => {
            tracing::warn!(
                per_node,
                max_connections = max,
                share = settings.max_connections_share,
                "connection-budget-high"
            )
        }
        Some(max) => tracing::info!(per_node, max_connections = max, "connection-budget"),
        None => tracing::info!(per_node, "connection-budget"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(id: usize, status: &str, role: &str) -> Node {
        Node::at(id, status, role)
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
    }
}
