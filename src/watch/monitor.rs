//! The loops that watch pgpool while the app runs, side by side in one task:
//!
//! * **events**: once a second, every node's status and role from pcp (health-check stats,
//!   which pgpool answers from its shared memory without asking any server), and an event line
//!   for each change (events.rs). A node that hangs or is cut off stalls `SHOW POOL_NODES` for
//!   seconds, but not this: the event follows pgpool's own state within about a second.
//! * **pool nodes**: once a second, every node as pgpool reports it, whose latest answer feeds
//!   the metrics and the repairs (repair/), which need the servers' own answers, the streaming
//!   states and the counters. From our build it comes from pcp's node info, which answers from
//!   pgpool's checks while the nodes are up and so costs the servers nothing (patch 0011); from
//!   any other pgpool it is `SHOW POOL_NODES`, a session through a pgpool child, which logs in to
//!   every server to read its role. A stalled poll delays only the next one of its own kind.
//!
//! Before pgpool 4.2 pcp has no health-check stats, and the events come from `SHOW POOL_NODES`
//! as well, as they did before. Either way one view alone is the events' source, so no change
//! is logged twice, and the same view is published to the stuck-child watchdog (`states`),
//! which needs to know the nodes pgpool has detached.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::events::{self, Change, changes};
use super::repair::{self, Repairs};
use crate::config::Backend;
use crate::config::tls::SslMode;
use crate::log::{self, event};
use crate::pgpool::Files;
use crate::pgpool::node::Node;
use crate::pgpool::pcp::{Command, NodeState, Pcp};
use crate::pgpool::sql;
use crate::servers::tls;

/// How often node states are polled: a pcp connection, or (not our build) a session over
/// pgpool's private socket (trust on `local`), never held open across a shutdown.
const POLL: Duration = Duration::from_secs(1);
/// A node pgpool has down is asked afresh for each poll, by pcp's node info as by `SHOW
/// POOL_NODES` (a ping, and a login to read its role), which takes up to pgpool's
/// `connect_timeout` (3 s) for a server whose address does not answer at all, and more than a
/// second on a loaded machine; a poll that times out is skipped.
const POLL_TIMEOUT: Duration = Duration::from_secs(10);
/// pcp answers from shared memory in milliseconds; a pcp child pgpool is restarting after a
/// failover does not answer, and that poll is skipped.
const PCP_TIMEOUT: Duration = Duration::from_secs(3);
/// How often each follower's TLS is looked at again (docs/tls.md, "While running").
const TLS_RECHECK: Duration = Duration::from_secs(10);

pub struct Monitor {
    pub files: Files,
    pub port: u16,
    pub backends: Vec<Backend>,
    /// `PGPOOL_METRICS_INTERVAL`; `None` = off.
    pub metrics_interval: Option<Duration>,
    /// What readiness saw.
    pub initial: Vec<Node>,
    pub pcp: Pcp,
    /// The events come from pcp (pgpool 4.2 on), else from `SHOW POOL_NODES`.
    pub events_from_pcp: bool,
    /// The nodes come from pcp's node info (our build, patch 0011), else from `SHOW POOL_NODES`.
    pub nodes_from_pcp: bool,
    /// Every node's state from the events' view, after each poll that answered.
    pub states: watch::Sender<Vec<NodeState>>,
    /// `PGPOOL_MODE=logical`: the first URL is the only primary there is (repair/lost_primary.rs).
    pub logical: bool,
}

impl Monitor {
    /// Watches and repairs until the task is dropped (watch/mod.rs drops it as soon as the
    /// launch starts stopping, so no session of ours keeps pgpool's smart shutdown waiting).
    pub async fn run(self) {
        let pool_nodes = PoolNodes {
            files: &self.files,
            port: self.port,
            backends: &self.backends,
            metrics_interval: self.metrics_interval,
            pcp: &self.pcp,
            events: (!self.events_from_pcp).then_some(&self.states),
            logical: self.logical,
            from_pcp: self.nodes_from_pcp,
        };
        let initial = self.initial.clone();
        // Stock pgpool logs in for every check, and so checks the TLS itself each time.
        let tls = async {
            if self.nodes_from_pcp {
                tls_watch(&self.pcp, &self.backends, self.states.subscribe()).await;
            }
        };
        if self.events_from_pcp {
            let seen = events::states(&self.initial);
            tokio::join!(
                pcp_events(&self.pcp, &self.backends, seen, &self.states),
                pool_nodes.run(initial),
                tls
            );
        } else {
            tokio::join!(pool_nodes.run(initial), tls);
        }
    }
}

/// The events loop: pcp's view, one poll after another.
async fn pcp_events(
    pcp: &Pcp,
    backends: &[Backend],
    mut last: Vec<NodeState>,
    states: &watch::Sender<Vec<NodeState>>,
) {
    let mut tick = tokio::time::interval_at(Instant::now() + POLL, POLL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match pcp.node_states(backends.len(), PCP_TIMEOUT).await {
            Ok(now) => {
                publish(backends, &last, &now, states);
                last = now;
            }
            Err(e) => event!(log::events::PCP_NODES_UNANSWERED, error = %format!("{e:#}")),
        }
    }
}

/// One event line per change from `last` to `now`, and `now` to the watchdog: the one thing
/// either events loop does with a view.
fn publish(
    backends: &[Backend],
    last: &[NodeState],
    now: &[NodeState],
    states: &watch::Sender<Vec<NodeState>>,
) {
    for ch in changes(last, now) {
        events::log_change(backends, &ch);
        if let Change::Down(id) = ch {
            explain_tls(backends.get(id));
        }
    }
    states.send_replace(now.to_vec());
}

/// The followers whose TLS is looked at again: those whose URL asks for TLS (`require` or
/// stronger) and that pgpool has up.
pub fn tls_due(backends: &[Backend], states: &[NodeState]) -> Vec<usize> {
    backends
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(i, b)| {
            b.tls.mode >= SslMode::Require && states.iter().any(|s| s.id == *i && s.is_up())
        })
        .map(|(i, _)| i)
        .collect()
}

/// Every [`TLS_RECHECK`], the TLS of each follower [`tls_due`] names, by the launcher's own
/// handshake; one that falls short twice, a second apart, is detached (pgpool's kept
/// connections would never notice a server reloaded with another certificate; the second look
/// keeps a handshake cut by a restart from detaching a healthy follower).
async fn tls_watch(pcp: &Pcp, backends: &[Backend], states: watch::Receiver<Vec<NodeState>>) {
    let looker = TlsLooker::start();
    loop {
        tokio::time::sleep(TLS_RECHECK).await;
        let due = tls_due(backends, &states.borrow());
        for id in due {
            if looker.refusal(&backends[id]).await.is_none() {
                continue;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            if looker.refusal(&backends[id]).await.is_none() {
                continue;
            }
            let source = events::source(backends, id);
            match pcp.run(Command::Detach(id)).await {
                Ok(()) => event!(log::events::SERVER_TLS_DETACHED, source, node = id),
                Err(e) => event!(
                    log::events::SERVER_TLS_DETACHED_FAILED,
                    source,
                    node = id,
                    error = %format!("{e:#}")
                ),
            }
        }
    }
}

/// [`tls::refusal`], one look at a time, on one thread of its own: it blocks up to a few
/// seconds on a server that hangs, and nothing waits for the thread, so dropping the monitor at
/// shutdown never waits for a look. One thread for all of them: OpenSSL on a new thread every
/// 10 s grew the launcher's memory a little with each (a malloc arena per thread).
struct TlsLooker {
    looks: std::sync::mpsc::Sender<(Backend, tokio::sync::oneshot::Sender<Option<String>>)>,
}

impl TlsLooker {
    fn start() -> TlsLooker {
        let (looks, rx) = std::sync::mpsc::channel::<(Backend, tokio::sync::oneshot::Sender<_>)>();
        // Ends when the looker is dropped and the channel closes.
        std::thread::spawn(move || {
            while let Ok((b, answer)) = rx.recv() {
                let _ = answer.send(tls::refusal(&b));
            }
        });
        TlsLooker { looks }
    }

    async fn refusal(&self, b: &Backend) -> Option<String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.looks.send((b.clone(), tx)).ok()?;
        rx.await.ok().flatten()
    }
}

/// pgpool says only that a node failed; when the server has stopped giving the TLS its URL
/// asks for (a restarted server with another certificate, TLS turned off), say that, from a
/// check of our own beside the loop (it may wait a few seconds on a server that hangs).
fn explain_tls(b: Option<&Backend>) {
    let Some(b) = b.filter(|b| b.tls.mode >= SslMode::Require).cloned() else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(why) = tls::refusal(&b) {
            event!(
                log::events::SERVER_TLS_REFUSED,
                source = b.var.as_str(),
                why = why.as_str()
            );
        }
    });
}

/// The nodes loop: metrics and repairs (and the events before pgpool 4.2).
struct PoolNodes<'a> {
    files: &'a Files,
    port: u16,
    backends: &'a [Backend],
    metrics_interval: Option<Duration>,
    pcp: &'a Pcp,
    /// Where the states go when the events come from this loop (before pgpool 4.2).
    events: Option<&'a watch::Sender<Vec<NodeState>>>,
    logical: bool,
    from_pcp: bool,
}

impl PoolNodes<'_> {
    /// One look at the nodes, or `None` when pgpool did not answer in time.
    async fn poll(&self) -> Option<Vec<Node>> {
        if self.from_pcp {
            return self
                .pcp
                .node_info(self.backends.len(), POLL_TIMEOUT)
                .await
                .ok();
        }
        let primary = &self.backends[0];
        let cfg = sql::socket_config(self.files.dir(), self.port, &primary.user, &primary.dbname);
        let poll = sql::with_session(cfg, |c| async move { sql::show_pool_nodes(&c).await });
        tokio::time::timeout(POLL_TIMEOUT, poll).await.ok()?.ok()
    }

    async fn run(self, initial: Vec<Node>) {
        let mut repairs = Repairs::new(self.logical);
        let mut last = initial;
        let interval = self.metrics_interval;
        let mut next_metrics = interval.map(|i| Instant::now() + i);
        let mut counted = Logins::now(&last);
        loop {
            tokio::time::sleep(POLL).await;
            let Some(nodes) = self.poll().await else {
                continue;
            };
            if let Some(states) = self.events {
                publish(
                    self.backends,
                    &events::states(&last),
                    &events::states(&nodes),
                    states,
                );
            }
            if let (Some(due), Some(i)) = (next_metrics, interval)
                && Instant::now() >= due
            {
                let now = Logins::now(&nodes);
                events::log_metrics(self.backends, &nodes, &now.since(&counted));
                counted = now;
                next_metrics = Some(due + i);
            }
            event!(
                log::events::POOL_NODES,
                nodes = events::summary(&nodes).as_str()
            );
            if let Some(due) = repairs.next(&nodes, Instant::now()) {
                let r = self.pcp.run(due.command).await;
                repair::log(self.backends, due, &r);
            }
            last = nodes;
        }
    }
}

/// The logins counted so far: pgpool's checks', per node (our build alone counts them), and
/// the sessions the launcher opened through pgpool, each of which logs in to every node at most
/// once.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Logins {
    checks: Vec<Option<u64>>,
    launcher: u64,
}

impl Logins {
    fn now(nodes: &[Node]) -> Logins {
        Logins {
            checks: nodes.iter().map(|n| n.check_logins).collect(),
            launcher: sql::sessions_opened(),
        }
    }

    /// What was made between `before` and `self`, as the metrics report it per node. pgpool
    /// counts from its start, so where `before` had no count (readiness's `SHOW POOL_NODES`)
    /// the first line has every login since then.
    fn since(&self, before: &Logins) -> Vec<events::NodeLogins> {
        self.checks
            .iter()
            .enumerate()
            .map(|(i, now)| events::NodeLogins {
                checks: now.map(|n| {
                    n.saturating_sub(before.checks.get(i).copied().flatten().unwrap_or(0))
                }),
                launcher: self.launcher.saturating_sub(before.launcher),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_rechecked_for_up_followers_whose_url_asks_for_it() {
        use crate::config::backends::{Role, parse};
        let url = |port: u16, mode: &str| format!("postgres://u:p@h:{port}/d?sslmode={mode}");
        let backends = vec![
            parse("DATABASE_URL", Role::Primary, &url(5432, "require")).unwrap(),
            parse("F1", Role::Follower, &url(5433, "require")).unwrap(),
            parse("F2", Role::Follower, &url(5434, "prefer")).unwrap(),
            parse(
                "F3",
                Role::Follower,
                &url(5435, "verify-full&sslrootcert=system"),
            )
            .unwrap(),
        ];
        let state = |id, status: &str| NodeState {
            id,
            status: status.into(),
            role: "standby".into(),
        };
        let states = [
            state(0, "up"),
            state(1, "up"),
            state(2, "up"),
            state(3, "down"),
        ];
        assert_eq!(tls_due(&backends, &states), vec![1]);
        let states = [state(0, "up"), state(1, "waiting"), state(3, "up")];
        assert_eq!(tls_due(&backends, &states), vec![1, 3]);
    }

    #[test]
    fn logins_per_interval_are_differences_and_unknown_stays_unknown() {
        let before = Logins {
            checks: vec![Some(2), Some(2), None],
            launcher: 5,
        };
        let now = Logins {
            checks: vec![Some(2), Some(4), Some(9)],
            launcher: 6,
        };
        let stock = Logins {
            checks: vec![None],
            launcher: 6,
        };
        assert_eq!(stock.since(&before)[0].checks, None);
        let d = now.since(&before);
        assert_eq!(
            d.iter().map(|l| (l.checks, l.launcher)).collect::<Vec<_>>(),
            vec![(Some(0), 1), (Some(2), 1), (Some(9), 1)]
        );
    }
}
