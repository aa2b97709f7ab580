//! The loop that watches pgpool while the app runs: polls `SHOW POOL_NODES` once a second and
//! hands each result to the event log, the metrics and the repairs (events.rs, repair/).

use std::time::Duration;

use tokio::time::Instant;

use super::events::{self, changes};
use super::repair::{self, Repairs};
use crate::config::Backend;
use crate::pgpool::Files;
use crate::pgpool::pcp::Pcp;
use crate::pgpool::sql::{self, Node};

/// How often node states are polled. A session per poll over pgpool's private socket (trust on
/// `local`): cheap, and never held open across a shutdown.
const POLL: Duration = Duration::from_secs(1);
/// `SHOW POOL_NODES` asks every server afresh (a ping, and a login to read its role), which
/// takes more than a second on a loaded machine, and up to pgpool's `connect_timeout` (3 s)
/// for each server whose address does not answer at all; a poll that times out is skipped.
const POLL_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Monitor {
    pub files: Files,
    pub port: u16,
    pub backends: Vec<Backend>,
    /// `PGPOOL_METRICS_INTERVAL`; `None` = off.
    pub metrics_interval: Option<Duration>,
    /// What readiness saw.
    pub initial: Vec<Node>,
    pub pcp: Pcp,
}

impl Monitor {
    /// Watches and repairs until the task is dropped (watch/mod.rs drops it as soon as the
    /// launch starts stopping, so no session of ours keeps pgpool's smart shutdown waiting).
    pub async fn run(self) {
        let Monitor {
            files,
            port,
            backends,
            metrics_interval: interval,
            initial,
            pcp,
        } = self;
        let mut repairs = Repairs::default();
        let mut last = initial;
        let mut next_metrics = interval.map(|i| Instant::now() + i);
        let primary = &backends[0];
        loop {
            tokio::time::sleep(POLL).await;
            let cfg = sql::socket_config(files.dir(), port, &primary.user, &primary.dbname);
            let poll = sql::with_session(cfg, |c| async move { sql::show_pool_nodes(&c).await });
            let nodes = match tokio::time::timeout(POLL_TIMEOUT, poll).await {
                Ok(Ok(n)) => n,
                _ => continue,
            };
            for ch in changes(&last, &nodes) {
                events::log_change(&backends, &ch);
            }
            if let (Some(due), Some(i)) = (next_metrics, interval)
                && Instant::now() >= due
            {
                events::log_metrics(&backends, &nodes);
                next_metrics = Some(due + i);
            }
            tracing::debug!(nodes = events::summary(&nodes).as_str(), "pool-nodes");
            if let Some(cmd) = repairs.next(&nodes, Instant::now()) {
                let r = pcp.run(cmd).await;
                repair::log(&backends, cmd, &r);
            }
            last = nodes;
        }
    }
}
