//! The side tasks that run beside the app once pgpool is ready: the connection budget, follower
//! discovery, the monitor (events, metrics, repairs) and the stuck-child watchdog. This module
//! alone starts and stops them.
//!
//! They run until the launch starts stopping: from then on nothing of ours opens a session that
//! would hold pgpool's smart shutdown open, reloads pgpool, or repairs nodes. The watchdog alone
//! keeps running while the launch stops: a stuck child would hold pgpool's smart shutdown
//! (Heroku's SIGTERM) open until the platform's SIGKILL.

pub mod budget;
pub mod discover;
pub mod events;
pub mod monitor;
pub mod repair;
pub mod stuck;

use nix::unistd::Pid;
use tokio::sync::watch;

use crate::config::{Backend, Settings};
use crate::pgpool::node::Node;
use crate::pgpool::pcp::Pcp;
use crate::pgpool::{Files, Release};

/// What the side tasks need from the launch.
pub struct Start {
    pub settings: Settings,
    pub backends: Vec<Backend>,
    pub files: Files,
    pub release: Release,
    /// The `PGPOOL_CONF_TEMPLATE` text, for discovery's re-render.
    pub template: Option<String>,
    pub pgpool: Pid,
    /// What readiness saw.
    pub nodes: Vec<Node>,
    pub pcp: Pcp,
}

/// The running side tasks; [`SideTasks::stop`] ends all but the watchdog.
pub struct SideTasks {
    stopping: watch::Sender<bool>,
}

impl SideTasks {
    /// Spawns every side task on the current runtime.
    pub fn start(s: Start) -> SideTasks {
        let (stopping, rx) = watch::channel(false);
        let port = s.settings.port;
        {
            let (backends, settings) = (s.backends.clone(), s.settings.clone());
            tokio::spawn(until(
                async move { budget::log(port, &backends, &settings).await },
                rx.clone(),
            ));
        }
        if s.backends.len() > 1 {
            let rerender = discover::Rerender {
                backends: s.backends.clone(),
                settings: s.settings.clone(),
                files: s.files.clone(),
                release: s.release,
                template: s.template,
            };
            tokio::spawn(until(discover::run(rerender, s.pgpool), rx.clone()));
        }
        // The monitor's view of the nodes, for the watchdog's `detached-node` shape.
        let (states, states_rx) = watch::channel(events::states(&s.nodes));
        if let Some(after) = s.settings.stuck_timeout {
            let watchdog = stuck::Watchdog {
                pgpool: s.pgpool,
                port,
                after,
                backends: s.backends.clone(),
                states: states_rx,
            };
            tokio::spawn(watchdog.run());
        }
        let monitor = monitor::Monitor {
            files: s.files,
            port,
            backends: s.backends,
            metrics_interval: s.settings.metrics_interval,
            initial: s.nodes,
            pcp: s.pcp,
            events_from_pcp: s.release.family.pcp_node_states(),
            nodes_from_pcp: s.release.checks_keep_connections,
            states,
            logical: s.settings.mode == crate::config::settings::Mode::Logical,
        };
        tokio::spawn(until(monitor.run(), rx));
        SideTasks { stopping }
    }

    /// The launch is stopping. Idempotent.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }
}

/// Runs `task` until it ends or `stopping` turns true.
async fn until(task: impl std::future::Future<Output = ()>, mut stopping: watch::Receiver<bool>) {
    tokio::select! {
        _ = task => {}
        _ = stopping.wait_for(|&s| s) => {}
    }
}
