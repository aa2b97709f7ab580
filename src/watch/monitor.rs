//! The loops that watch pgpool while the app runs, side by side in one task:
//!
//! * **events**: once a second, every node's status and role from pcp (health-check stats,
//!   which pgpool answers from its shared memory without asking any server), and an event line
//!   for each change (events.rs). A node that hangs or is cut off stalls `SHOW POOL_NODES` for
//!   seconds, but not this: the event follows pgpool's own state within about a second.
//! * **pool nodes**: once a second, `SHOW POOL_NODES`, whose latest answer feeds the metrics and
//!   the repairs (repair/), which need what only it has (the servers' own answers, the streaming
//!   states, the counters). A stalled poll delays only the next one of its own kind.
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
use crate::pgpool::pcp::{NodeState, Pcp};
use crate::pgpool::sql::{self, Node};
use crate::servers::tls;

/// How often node states are polled. A session per poll over pgpool's private socket (trust on
/// `local`): cheap, and never held open across a shutdown.
const POLL: Duration = Duration::from_secs(1);
/// `SHOW POOL_NODES` asks every server afresh (a ping, and a login to read its role), which
/// takes more than a second on a loaded machine, and up to pgpool's `connect_timeout` (3 s)
/// for each server whose address does not answer at all; a poll that times out is skipped.
const POLL_TIMEOUT: Duration = Duration::from_secs(10);
/// pcp answers from shared memory in milliseconds; a pcp child pgpool is restarting after a
/// failover does not answer, and that poll is skipped.
const PCP_TIMEOUT: Duration = Duration::from_secs(3);

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
        };
        let initial = self.initial.clone();
        if self.events_from_pcp {
            let seen = events::states(&self.initial);
            tokio::join!(
                pcp_events(&self.pcp, &self.backends, seen, &self.states),
                pool_nodes.run(initial)
            );
        } else {
            pool_nodes.run(initial).await;
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

/// The `SHOW POOL_NODES` loop: metrics and repairs (and the events before pgpool 4.2).
struct PoolNodes<'a> {
    files: &'a Files,
    port: u16,
    backends: &'a [Backend],
    metrics_interval: Option<Duration>,
    pcp: &'a Pcp,
    /// Where the states go when the events come from this loop (before pgpool 4.2).
    events: Option<&'a watch::Sender<Vec<NodeState>>>,
    logical: bool,
}

impl PoolNodes<'_> {
    async fn run(self, initial: Vec<Node>) {
        let mut repairs = Repairs::new(self.logical);
        let mut last = initial;
        let interval = self.metrics_interval;
        let mut next_metrics = interval.map(|i| Instant::now() + i);
        let primary = &self.backends[0];
        loop {
            tokio::time::sleep(POLL).await;
            let cfg =
                sql::socket_config(self.files.dir(), self.port, &primary.user, &primary.dbname);
            let poll = sql::with_session(cfg, |c| async move { sql::show_pool_nodes(&c).await });
            let nodes = match tokio::time::timeout(POLL_TIMEOUT, poll).await {
                Ok(Ok(n)) => n,
                _ => continue,
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
                events::log_metrics(self.backends, &nodes);
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
