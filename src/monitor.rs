//! While the app runs: one event line when a node goes up or down or changes role, and every
//! `PGPOOL_METRICS_INTERVAL` one l2met metrics line per node, `source=` its variable. Also the
//! connection budget, logged once at start.
//!
//! And the two repairs pgpool does not make by itself (see [`Repairs`]): a follower left
//! following a dead primary after a promotion is detached, and a primary pgpool stopped looking
//! for is handed to it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use crate::backends::Backend;
use crate::pcp::{Command, Pcp};
use crate::ready::{self, Node};
use crate::settings::Settings;

/// How often node states are polled for events. One persistent session through pgpool does it,
/// so a poll costs a query, not a SCRAM handshake.
const POLL: Duration = Duration::from_secs(1);
/// `SHOW POOL_NODES` asks every server afresh (a ping, and a login to read its role), which
/// takes more than a second on a loaded machine, and up to pgpool's `connect_timeout` (3 s)
/// for each server whose address does not answer at all; a poll that times out is skipped.
const POLL_TIMEOUT: Duration = Duration::from_secs(10);

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
/// pgpool has no primary while a server says it is one for this long: pgpool's own search
/// (`search_primary_node_timeout`) is over, so it will not find it by itself.
pub const ADOPT_AFTER: Duration = Duration::from_secs(2);
/// For this long after pgpool changes primaries, its streaming check may still show a
/// follower's state from the old primary (the check does not run during a failover): it is
/// not believed until a check has run against the new one (`sr_check_period` is 1 s).
pub const SETTLE: Duration = Duration::from_secs(2);
/// After a repair, pgpool's failover runs; nothing more is asked of it meanwhile.
pub const COOLDOWN: Duration = Duration::from_secs(10);

/// What pgpool does not do by itself, decided from one `SHOW POOL_NODES` after another.
///
/// 1. **A follower of a dead primary.** After a promotion pgpool finds the new primary, but a
///    follower still streaming from the old one (or from nothing) stays in the pool and serves
///    reads that never change again. When pgpool's streaming check shows a follower that *was*
///    streaming from the primary now not streaming from the current one for [`STALE_AFTER`]
///    ([`STALE_AFTER_PROMOTION`] when the primary is another node than it streamed from),
///    while both servers answer, the follower is detached. pgpool's `auto_failback` brings it
///    back once it streams from the current primary. A follower never seen streaming (its name
///    unknown, or no `pg_monitor`) is left alone: there is no telling.
/// 2. **A primary pgpool gave up on.** When no node is pgpool's primary and exactly one server
///    answers as a primary for [`ADOPT_AFTER`], pgpool is told: promote it (pgpool's idea only:
///    the server already is one) if pgpool has it up, attach it if pgpool has it down (a
///    primary that restarted after the search, which pgpool never re-attaches).
#[derive(Debug, Default)]
pub struct Repairs {
    /// The primary each follower was last seen streaming from.
    streamed_from: Vec<Option<usize>>,
    not_streaming_since: Vec<Option<Instant>>,
    /// pgpool's primary at the last poll, and from when its followers' states are believed.
    primary: Option<usize>,
    believe_from: Option<Instant>,
    no_primary_since: Option<Instant>,
    quiet_until: Option<Instant>,
}

impl Repairs {
    /// The repair due now, if any.
    pub fn next(&mut self, nodes: &[Node], now: Instant) -> Option<Command> {
        let len = nodes.iter().map(|n| n.id + 1).max().unwrap_or(0);
        if self.streamed_from.len() < len {
            self.streamed_from.resize(len, None);
            self.not_streaming_since.resize(len, None);
        }
        let quiet = self.quiet_until.is_some_and(|q| now < q);
        let answers_as = |n: &Node, role: &str| {
            n.pg_status.as_deref() == Some("up") && n.pg_role.as_deref() == Some(role)
        };
        let primary = nodes.iter().find(|n| n.role == "primary" && n.is_up());
        let action = match primary {
            Some(p) => {
                self.no_primary_since = None;
                if self.primary != Some(p.id) {
                    // The first primary seen was already pgpool's before we looked; any later
                    // one is new.
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
                        && answers_as(p, "primary")
                        && answers_as(n, "standby")
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
            None => {
                self.primary = None;
                self.not_streaming_since.iter_mut().for_each(|s| *s = None);
                let claimants: Vec<&Node> =
                    nodes.iter().filter(|n| answers_as(n, "primary")).collect();
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
        };
        if quiet {
            return None;
        }
        if let Some(a) = action {
            self.quiet_until = Some(now + COOLDOWN);
            match a {
                Command::Detach(n) => self.not_streaming_since[n] = None,
                Command::Promote(_) | Command::Attach(_) => self.no_primary_since = None,
            }
        }
        action
    }
}

fn log_repair(backends: &[Backend], c: Command, result: &anyhow::Result<()>) {
    let (id, event) = match c {
        Command::Detach(n) => (n, "follower-stale-detached"),
        Command::Promote(n) => (n, "primary-adopted"),
        Command::Attach(n) => (n, "primary-reattached"),
    };
    match result {
        Ok(()) => tracing::warn!(source = source(backends, id), node = id, "{event}"),
        Err(e) => tracing::warn!(
            source = source(backends, id),
            node = id,
            error = %format!("{e:#}"),
            "{event}-failed"
        ),
    }
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

/// Watches pgpool, and repairs what [`Repairs`] finds, until the task is dropped (launch.rs
/// drops it as soon as the launch starts stopping, so no session of ours keeps pgpool's smart
/// shutdown waiting). `initial` is what readiness saw.
pub async fn run(
    socket_dir: PathBuf,
    port: u16,
    backends: Vec<Backend>,
    interval: Option<Duration>,
    initial: Vec<Node>,
    pcp: Pcp,
) {
    let mut repairs = Repairs::default();
    let mut last = initial;
    let mut next_metrics = interval.map(|i| Instant::now() + i);
    loop {
        tokio::time::sleep(POLL).await;
        // A session per poll over pgpool's private socket (trust on `local`, since only our user
        // can reach the 0700 directory): cheap, and never held open across a shutdown.
        let nodes =
            match tokio::time::timeout(POLL_TIMEOUT, poll(&socket_dir, port, &backends[0])).await {
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
        tracing::debug!(
            nodes = nodes
                .iter()
                .map(|n| format!(
                    "{}:{}/{}/{}/{}/{}",
                    n.id,
                    n.status,
                    n.role,
                    n.pg_status.as_deref().unwrap_or("-"),
                    n.pg_role.as_deref().unwrap_or("-"),
                    n.replication_state
                ))
                .collect::<Vec<_>>()
                .join(",")
                .as_str(),
            "pool-nodes"
        );
        if let Some(cmd) = repairs.next(&nodes, Instant::now()) {
            let r = pcp.run(cmd).await;
            log_repair(&backends, cmd, &r);
        }
        last = nodes;
    }
}

async fn poll(socket_dir: &Path, port: u16, primary: &Backend) -> anyhow::Result<Vec<Node>> {
    let cfg = socket_config(socket_dir, port, &primary.user, &primary.dbname);
    with_session(
        cfg,
        |c| async move { Ok(ready::show_pool_nodes(&c).await?) },
    )
    .await
}

/// Runs `work` on a new session, driving the session here rather than on a task of its own:
/// when a caller's timeout drops this future, the session goes with it, instead of holding a
/// pgpool child until pgpool answers. `work` owns the client, so the session ends with it.
pub async fn with_session<T, F>(
    cfg: tokio_postgres::Config,
    work: impl FnOnce(tokio_postgres::Client) -> F,
) -> anyhow::Result<T>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let (c, conn) = cfg.connect(tokio_postgres::NoTls).await?;
    let mut conn = std::pin::pin!(conn);
    let out = tokio::select! {
        out = work(c) => out?,
        r = &mut conn => {
            r?;
            anyhow::bail!("pgpool closed the session");
        }
    };
    let _ = conn.await;
    Ok(out)
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
            .filter_map(|s| r.next(nodes, t0 + Duration::from_secs(s)).map(|c| (s, c)))
            .collect()
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
