//! Stuck pgpool children: found from /proc, cleared with SIGKILL. The decision is `rule.rs`
//! (pure, unit-tested), the sample of /proc `sample.rs`; this file is the loop and the kill.
//!
//! Stock pgpool (4.3 to 4.7) leaves children blocked for ever in a read from a backend, in two
//! shapes. The pgpool this buildpack ships is patched against both; any other may hang.
//!
//! **`idle-session`**: after a follower stops abruptly (docs/pgpool.md, "Mechanism D: the
//! hang": PostgreSQL's shutdown notice is pushed back unread, and the child then waits on the
//! primary, which has nothing to say). Its client waits for ever too, and the child's slot is
//! lost until pgpool restarts. All of this must hold for `PGPOOL_STUCK_TIMEOUT` seconds of
//! samples, the same file descriptor throughout:
//! - a direct child of pgpool's main process whose title says its session is `idle` or
//!   `idle in transaction` (a child running a query shows the query's tag instead);
//! - blocked in `read(2)` (`/proc/PID/syscall`);
//! - on a TCP socket that is not its client's (local port is not `PGPOOL_PORT`): a backend;
//! - while its client has sent something it has not read, or has hung up (the client socket
//!   has bytes queued, or is in CLOSE-WAIT).
//!
//! An idle session waits in `select()` on all its sockets; it never blocks reading one of
//! them, so this does not match a healthy child. The one healthy case that comes close: a
//! client that sends Parse/Describe/Sync (no Execute, so the title stays `idle`), whose
//! statement then waits longer than the timeout for a lock, and that sends more before the
//! answer. That child would be killed and its client would see a closed connection.
//!
//! **`detached-node`**: after a node is cut off, a child that had sent it
//! something (every Sync goes to every node the session holds, and every new session connects
//! to every node) reads its socket with no timeout, until TCP gives up (minutes), even after
//! pgpool has detached the node; pgpool's partial restart frees only the children whose
//! load-balance node it was (docs/pgpool.md, "Faults beyond death"). Whatever its title:
//! - a direct child of pgpool's main process that serves sessions (it holds pgpool's listening
//!   socket, which the health-check, streaming-check and pcp processes close);
//! - blocked in `read(2)` on the same socket in every sample for `PGPOOL_STUCK_TIMEOUT`;
//! - that socket's peer is the address and port of a node pgpool has detached (pcp's `down`,
//!   from the monitor), and of no node that is not.
//!
//! - or, instead of reading, still connecting to such a node: a socket of its in `SYN-SENT` to
//!   that address, the same socket in every sample. Stock 4.3.5 connects a new session to
//!   every node it still believes up, and a connect to a cut-off node outlived its
//!   `connect_timeout` there: 17 and 28 s in SYN-SENT, in `pselect6()`, in one sampled run,
//!   while the new session's client waited (docs/pgpool.md).
//!
//! The clock runs from the first sample of the read, not from the detach: a session that hung
//! at the cut is freed as soon as pgpool detaches the node and the read has lasted the timeout.
//! A detached node never answers a read usefully: pgpool no longer uses its answer. A child
//! whose load-balance node it was and that reads a long answer from it (a node the launcher
//! detached as stale, say) is one pgpool's own partial restart ends anyway.
//!
//! SIGKILL, never SIGQUIT: pgpool refills the slot of a child that died by a signal, while a
//! child that exits on SIGQUIT is not replaced (docs/pgpool.md, "Clearing a stuck child:
//! SIGKILL, not SIGQUIT"). The client sees its connection closed and can reconnect.

mod rule;
mod sample;

use std::net::SocketAddr;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::watch;
use tokio::time::Instant;

use super::events;
use crate::config::Backend;
use crate::log::{self, event};
use crate::pgpool::pcp::NodeState;
use rule::{NodeAddrs, Shape, Watch, detached};
use sample::{parent, sample};

/// How long resolving each backend's host may take at start.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Each backend's addresses, resolved once (a name, or an address as it is); a host that does
/// not resolve within [`RESOLVE_TIMEOUT`] gets none.
async fn resolve(backends: &[Backend]) -> Vec<NodeAddrs> {
    let mut out = Vec::with_capacity(backends.len());
    for (id, b) in backends.iter().enumerate() {
        let found = tokio::time::timeout(
            RESOLVE_TIMEOUT,
            tokio::net::lookup_host((b.host.as_str(), b.port)),
        )
        .await;
        let addrs: Vec<SocketAddr> = match found {
            Ok(Ok(a)) => a
                .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
                .collect(),
            _ => Vec::new(),
        };
        if addrs.is_empty() {
            event!(
                log::events::STUCK_WATCHDOG_UNRESOLVED,
                source = b.var.as_str(),
                node = id
            );
        }
        out.push(NodeAddrs { id, addrs });
    }
    out
}

/// What the watchdog watches with.
pub struct Watchdog {
    pub pgpool: Pid,
    pub port: u16,
    pub after: Duration,
    pub backends: Vec<Backend>,
    /// Every node's state, as the monitor last read it (it stays at the last value once the
    /// monitor has stopped).
    pub states: watch::Receiver<Vec<NodeState>>,
}

impl Watchdog {
    /// Samples pgpool's children once a second and SIGKILLs those stuck for `after`; runs until
    /// dropped. Only direct children of `pgpool` are ever signalled, checked again just before.
    pub async fn run(self) {
        let Watchdog {
            pgpool,
            port,
            after,
            backends,
            states,
        } = self;
        let nodes = resolve(&backends).await;
        let mut watch = Watch::default();
        let mut said_blind = false;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let detached = detached(&nodes, &states.borrow());
            // A few small reads of /proc: done in place, no thread of its own.
            let (children, blind) = sample(pgpool, port, !detached.is_empty());
            if blind && !said_blind {
                event!(
                    log::events::STUCK_WATCHDOG_BLIND,
                    reason = "this system does not let the launcher read /proc/PID/syscall of pgpool's children"
                );
                said_blind = true;
            }
            for (pid, shape) in watch.update(&children, &detached, Instant::now(), after) {
                if parent(pid) != Some(pgpool.as_raw()) {
                    continue;
                }
                let killed = kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok();
                let after_s = after.as_secs();
                match shape {
                    Shape::IdleSession => {
                        event!(
                            log::events::PGPOOL_CHILD_STUCK,
                            pid,
                            killed,
                            after_s,
                            shape = shape.name()
                        )
                    }
                    Shape::DetachedNode(id, how) => event!(
                        log::events::PGPOOL_CHILD_STUCK,
                        pid,
                        killed,
                        after_s,
                        shape = shape.name(),
                        blocked = how.name(),
                        source = events::source(&backends, id),
                        node = id
                    ),
                }
            }
        }
    }
}
