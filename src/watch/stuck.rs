//! Stuck pgpool children: found from /proc, cleared with SIGKILL.
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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::watch;
use tokio::time::Instant;

use super::events;
use crate::config::Backend;
use crate::os::proc::{self, TCP_CLOSE_WAIT, TCP_LISTEN, TCP_SYN_SENT, Tcp};
use crate::pgpool::pcp::NodeState;

/// What one sample found about one pgpool child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    pub pid: i32,
    /// Its title says its session is idle.
    pub idle: bool,
    /// The descriptor it is blocked reading, if it is blocked in `read(2)` on a backend socket
    /// and its title says idle.
    pub reading_backend: Option<i32>,
    /// Its client sent bytes it has not read, or hung up.
    pub client_waiting: bool,
    /// The socket it is blocked reading in `read(2)`, whatever its title: descriptor, inode.
    pub reading: Option<(i32, u64)>,
    /// That socket's TCP peer, if the child serves sessions; looked up only while some node is
    /// detached.
    pub peer: Option<SocketAddr>,
    /// A socket of a session child still connecting (`SYN-SENT`): inode and peer; looked up
    /// only while some node is detached.
    pub connecting: Option<(u64, SocketAddr)>,
}

impl Child {
    fn stuck_on(&self) -> Option<i32> {
        self.reading_backend
            .filter(|_| self.idle && self.client_waiting)
    }
}

/// Which of the shapes (module header) a stuck child showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    IdleSession,
    /// Reading from, or connecting to, the node of this id, which pgpool has detached.
    DetachedNode(usize, Blocked),
}

/// What a `detached-node` child was blocked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    Read,
    Connect,
}

impl Blocked {
    pub fn name(self) -> &'static str {
        match self {
            Blocked::Read => "read",
            Blocked::Connect => "connect",
        }
    }
}

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Shape::IdleSession => "idle-session",
            Shape::DetachedNode(..) => "detached-node",
        }
    }
}

/// True when a child's title (`/proc/PID/cmdline`: `pgpool: user db host(port) idle`, padded
/// with NULs or spaces) says its session is idle.
pub fn idle_title(cmdline: &[u8]) -> bool {
    let t = String::from_utf8_lossy(cmdline);
    let t = t.trim_end_matches(['\0', ' ']);
    t.starts_with("pgpool: ") && (t.ends_with(" idle") || t.ends_with(" idle in transaction"))
}

/// The client's socket (on `port`, not the listener) has unread bytes or is half closed.
fn client_waiting(sockets: &[Tcp], port: u16) -> bool {
    sockets
        .iter()
        .filter(|t| t.local_port == port && t.state != TCP_LISTEN)
        .any(|t| t.rx_queue > 0 || t.state == TCP_CLOSE_WAIT)
}

/// The process holds pgpool's listening socket: a session child (pgpool's other children close
/// it: pgpool_main.c, `worker_fork_a_child`, `pcp_fork_a_child`).
fn serves_sessions(sockets: &[Tcp], port: u16) -> bool {
    sockets
        .iter()
        .any(|t| t.local_port == port && t.state == TCP_LISTEN)
}

/// A node's addresses, as its host resolved at start, with its port: what a socket's peer is
/// matched against. A host that did not resolve has none and is never matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddrs {
    pub id: usize,
    pub addrs: Vec<SocketAddr>,
}

/// The addresses of the nodes pgpool has detached (`down`), each with its node, leaving out any
/// address a node that is not down also has.
pub fn detached(nodes: &[NodeAddrs], states: &[NodeState]) -> Vec<(usize, SocketAddr)> {
    let down = |id: usize| states.iter().any(|s| s.id == id && s.status == "down");
    let mut out = Vec::new();
    for n in nodes.iter().filter(|n| down(n.id)) {
        for a in &n.addrs {
            let shared = nodes.iter().any(|o| !down(o.id) && o.addrs.contains(a));
            if !shared {
                out.push((n.id, *a));
            }
        }
    }
    out
}

/// Children seen stuck, and since when: the decision, apart from /proc.
#[derive(Debug, Default)]
pub struct Watch {
    /// `idle-session`: since when each child has shown it, on which descriptor.
    since: HashMap<i32, (i32, Instant)>,
    /// Since when each child has been blocked reading the same socket (descriptor, inode).
    reading: HashMap<i32, ((i32, u64), Instant)>,
    /// Since when each child has been connecting on the same socket (inode).
    connecting: HashMap<i32, (u64, Instant)>,
}

impl Watch {
    /// The pids stuck for at least `after` as of this sample, each with its shape; `detached`
    /// as [`detached`] gives it.
    pub fn update(
        &mut self,
        children: &[Child],
        detached: &[(usize, SocketAddr)],
        now: Instant,
        after: Duration,
    ) -> Vec<(i32, Shape)> {
        let mut since = HashMap::new();
        let mut reading = HashMap::new();
        let mut connecting = HashMap::new();
        let mut due = Vec::new();
        for c in children {
            // Since when this sample's state has held, the same descriptor or socket throughout.
            let idle = c.stuck_on().map(|fd| match self.since.get(&c.pid) {
                Some(&(f, t)) if f == fd => (fd, t),
                _ => (fd, now),
            });
            let blocked = c.reading.map(|sock| match self.reading.get(&c.pid) {
                Some(&(s, t)) if s == sock => (sock, t),
                _ => (sock, now),
            });
            let connect = c
                .connecting
                .map(|(inode, peer)| match self.connecting.get(&c.pid) {
                    Some(&(i, t)) if i == inode => (inode, peer, t),
                    _ => (inode, peer, now),
                });
            let long = |t: Instant| now.duration_since(t) >= after;
            let detached_id =
                |p: SocketAddr| detached.iter().find(|(_, a)| *a == p).map(|&(id, _)| id);
            let node = blocked
                .filter(|&(_, t)| long(t))
                .and(c.peer)
                .and_then(detached_id)
                .map(|id| (id, Blocked::Read))
                .or_else(|| {
                    connect
                        .filter(|&(_, _, t)| long(t))
                        .and_then(|(_, p, _)| detached_id(p))
                        .map(|id| (id, Blocked::Connect))
                });
            if idle.is_some_and(|(_, t)| long(t)) {
                due.push((c.pid, Shape::IdleSession));
                continue;
            }
            if let Some((id, how)) = node {
                due.push((c.pid, Shape::DetachedNode(id, how)));
                continue;
            }
            if let Some(v) = idle {
                since.insert(c.pid, v);
            }
            if let Some(v) = blocked {
                reading.insert(c.pid, v);
            }
            if let Some((inode, _, t)) = connect {
                connecting.insert(c.pid, (inode, t));
            }
        }
        self.since = since;
        self.reading = reading;
        self.connecting = connecting;
        due
    }
}

/// One sample of pgpool's children from /proc: each one blocked in `read(2)` on a socket (two
/// small reads per child, a third for one in a read), and with `peers` (some node is detached)
/// each session child still connecting somewhere. The socket tables are read only when there
/// is a reading child whose title says idle, or with `peers`, when the peer of each session
/// child's socket is looked up too. Children that vanish meanwhile
/// are skipped. The flag is true when the system refused us a child's `/proc/PID/syscall` (a
/// ptrace policy such as Yama's `ptrace_scope=2`): then nothing can be found stuck.
pub fn sample(pgpool: Pid, port: u16, peers: bool) -> (Vec<Child>, bool) {
    let mut blind = false;
    let mut tcp: Option<HashMap<u64, Tcp>> = None;
    let mut found = Vec::new();
    for pid in proc::children(pgpool.as_raw()) {
        let Some(cmdline) = proc::cmdline(pid) else {
            continue;
        };
        let idle = idle_title(&cmdline);
        let syscall = match proc::syscall(pid) {
            Ok(s) => s,
            Err(e) => {
                blind |= e.kind() == std::io::ErrorKind::PermissionDenied;
                continue;
            }
        };
        let reading = proc::blocked_read(&syscall, nix::libc::SYS_read)
            .and_then(|fd| Some((fd, proc::socket_inode(pid, fd)?)));
        if reading.is_none() && !peers {
            continue;
        }
        let mut child = Child {
            pid,
            idle,
            reading_backend: None,
            client_waiting: false,
            reading,
            peer: None,
            connecting: None,
        };
        if (idle && reading.is_some()) || peers {
            let tcp = tcp.get_or_insert_with(proc::tcp_sockets);
            let sockets: Vec<(u64, Tcp)> = proc::socket_inodes(pid)
                .into_iter()
                .filter_map(|i| Some((i, *tcp.get(&i)?)))
                .collect();
            let all: Vec<Tcp> = sockets.iter().map(|&(_, t)| t).collect();
            let session_child = peers && serves_sessions(&all, port);
            if let Some((fd, inode)) = reading {
                let this = tcp.get(&inode);
                if idle {
                    let on_backend = this.is_some_and(|t| t.local_port != port);
                    child.reading_backend = on_backend.then_some(fd);
                    child.client_waiting = client_waiting(&all, port);
                }
                if session_child {
                    child.peer = this.map(|t| t.remote);
                }
            }
            if session_child {
                child.connecting = sockets
                    .iter()
                    .find(|(_, t)| t.state == TCP_SYN_SENT)
                    .map(|&(i, t)| (i, t.remote));
            }
        }
        if child.reading.is_none() && child.connecting.is_none() {
            continue;
        }
        found.push(child);
    }
    (found, blind)
}

fn parent(pid: i32) -> Option<i32> {
    proc::stat(pid).map(|s| s.ppid)
}

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
            tracing::debug!(
                source = b.var.as_str(),
                node = id,
                "stuck-watchdog-unresolved"
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
                tracing::warn!(
                    reason = "this system does not let the launcher read /proc/PID/syscall of pgpool's children",
                    "stuck-watchdog-blind"
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
                        tracing::warn!(
                            pid,
                            killed,
                            after_s,
                            shape = shape.name(),
                            "pgpool-child-stuck"
                        )
                    }
                    Shape::DetachedNode(id, how) => tracing::warn!(
                        pid,
                        killed,
                        after_s,
                        shape = shape.name(),
                        blocked = how.name(),
                        source = events::source(&backends, id),
                        node = id,
                        "pgpool-child-stuck"
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_of_idle_sessions() {
        assert!(idle_title(b"pgpool: app appdb 127.0.0.1(4242) idle\0\0\0"));
        assert!(idle_title(
            b"pgpool: app appdb 127.0.0.1(4242) idle in transaction   "
        ));
        assert!(!idle_title(b"pgpool: app appdb 127.0.0.1(4242) SELECT\0"));
        assert!(!idle_title(b"pgpool: wait for connection request\0"));
        assert!(!idle_title(b"pgpool: health check process(0)\0"));
        // A database called `idle` with a query running.
        assert!(!idle_title(b"pgpool: app idle 127.0.0.1(4242) UPDATE"));
    }

    #[test]
    fn a_client_waits_with_bytes_queued_or_half_closed() {
        let listener = Tcp {
            local_port: 5432,
            remote: addr("0.0.0.0:0"),
            state: TCP_LISTEN,
            rx_queue: 0,
        };
        let half_closed = Tcp {
            local_port: 5432,
            remote: addr("127.0.0.1:40586"),
            state: TCP_CLOSE_WAIT,
            rx_queue: 31,
        };
        assert!(client_waiting(&[listener, half_closed], 5432));
        assert!(!client_waiting(&[listener], 5432));
        let quiet = Tcp {
            state: 0x01,
            rx_queue: 0,
            ..half_closed
        };
        assert!(!client_waiting(&[quiet], 5432));
        assert!(client_waiting(
            &[Tcp {
                rx_queue: 5,
                ..quiet
            }],
            5432
        ));
        assert!(!client_waiting(
            &[Tcp {
                rx_queue: 5,
                ..quiet
            }],
            6432
        ));
        // pgpool's listener marks a session child; a socket to a server does not.
        assert!(serves_sessions(&[quiet, listener], 5432));
        assert!(!serves_sessions(&[listener], 6432));
        assert!(!serves_sessions(&[quiet], 5432));
    }

    fn addr(a: &str) -> SocketAddr {
        a.parse().unwrap()
    }

    fn child(pid: i32, idle: bool, fd: Option<i32>) -> Child {
        Child {
            pid,
            idle,
            reading_backend: fd,
            client_waiting: true,
            reading: fd.map(|f| (f, 1000 + f as u64)),
            peer: None,
            connecting: None,
        }
    }

    fn pids(due: Vec<(i32, Shape)>) -> Vec<i32> {
        due.into_iter().map(|(p, _)| p).collect()
    }

    #[test]
    fn only_a_steady_idle_blocked_read_is_due() {
        let (mut w, t0, after) = (Watch::default(), Instant::now(), Duration::from_secs(5));
        let at = |s: u64| t0 + Duration::from_secs(s);
        let stuck = child(10, true, Some(7));
        let busy = child(11, false, Some(7));
        let waiting = child(12, true, None);
        let unasked = Child {
            client_waiting: false,
            ..child(13, true, Some(7))
        };
        let all = [stuck.clone(), busy, waiting, unasked];
        for s in 0..5 {
            assert!(w.update(&all, &[], at(s), after).is_empty());
        }
        assert_eq!(
            w.update(&all, &[], at(5), after),
            vec![(10, Shape::IdleSession)]
        );
        // Another descriptor, or a sample without the read, starts the clock again.
        let mut w = Watch::default();
        w.update(std::slice::from_ref(&stuck), &[], at(0), after);
        w.update(&[child(10, true, Some(8))], &[], at(3), after);
        assert!(
            w.update(&[child(10, true, Some(8))], &[], at(7), after)
                .is_empty()
        );
        w.update(&[child(10, true, None)], &[], at(8), after);
        assert!(
            w.update(std::slice::from_ref(&stuck), &[], at(12), after)
                .is_empty()
        );
        assert_eq!(pids(w.update(&[stuck], &[], at(17), after)), vec![10]);
    }

    fn state(id: usize, status: &str) -> NodeState {
        NodeState {
            id,
            status: status.into(),
            role: if id == 0 { "primary" } else { "standby" }.into(),
        }
    }

    #[test]
    fn detached_addresses_are_those_of_down_nodes_only() {
        // On Heroku every node listens on 5432, each on its own host; here on one host, each
        // on its own port.
        let nodes = [
            NodeAddrs {
                id: 0,
                addrs: vec![addr("10.0.0.1:5432")],
            },
            NodeAddrs {
                id: 1,
                addrs: vec![addr("10.0.0.2:5432"), addr("[fd00::2]:5432")],
            },
            NodeAddrs {
                id: 2,
                addrs: vec![addr("10.0.0.3:5432"), addr("10.0.0.1:5432")],
            },
            // A host that did not resolve.
            NodeAddrs {
                id: 3,
                addrs: vec![],
            },
        ];
        let up = [state(0, "up"), state(1, "up"), state(2, "waiting")];
        assert!(detached(&nodes, &up).is_empty());
        let states = [
            state(0, "up"),
            state(1, "down"),
            state(2, "down"),
            state(3, "down"),
        ];
        // Node 2's second address is also node 0's, which is up: never matched.
        assert_eq!(
            detached(&nodes, &states),
            vec![
                (1, addr("10.0.0.2:5432")),
                (1, addr("[fd00::2]:5432")),
                (2, addr("10.0.0.3:5432")),
            ]
        );
        // `quarantine` and `unused` are not detaches.
        let other = [state(1, "quarantine"), state(2, "unused")];
        assert!(detached(&nodes, &other).is_empty());
    }

    /// A session child blocked reading socket `inode` (descriptor 9), its peer `peer`, its
    /// title not idle: what a child sending a Sync to a cut-off node shows on stock 4.3.5.
    fn reader(pid: i32, inode: u64, peer: Option<&str>) -> Child {
        Child {
            pid,
            idle: false,
            reading_backend: None,
            client_waiting: false,
            reading: Some((9, inode)),
            peer: peer.map(addr),
            connecting: None,
        }
    }

    fn connector(pid: i32, inode: u64, peer: &str) -> Child {
        Child {
            pid,
            idle: false,
            reading_backend: None,
            client_waiting: false,
            reading: None,
            peer: None,
            connecting: Some((inode, addr(peer))),
        }
    }

    #[test]
    fn a_connect_to_a_detached_node_is_due_after_the_timeout() {
        let (t0, after) = (Instant::now(), Duration::from_secs(5));
        let at = |s: u64| t0 + Duration::from_secs(s);
        let gone = [(2, addr("10.0.0.3:5432"))];
        let mut w = Watch::default();
        let c = connector(10, 77, "10.0.0.3:5432");
        for s in 0..5 {
            assert!(
                w.update(std::slice::from_ref(&c), &gone, at(s), after)
                    .is_empty()
            );
        }
        assert_eq!(
            w.update(std::slice::from_ref(&c), &gone, at(5), after),
            vec![(10, Shape::DetachedNode(2, Blocked::Connect))]
        );
        // A connect to a node that is up, however long, and a new socket, start nothing.
        let mut w = Watch::default();
        let up = connector(11, 78, "10.0.0.2:5432");
        for s in 0..30 {
            assert!(
                w.update(std::slice::from_ref(&up), &gone, at(s), after)
                    .is_empty()
            );
        }
        let mut w = Watch::default();
        w.update(std::slice::from_ref(&c), &gone, at(0), after);
        let again = connector(10, 99, "10.0.0.3:5432");
        assert!(
            w.update(std::slice::from_ref(&again), &gone, at(5), after)
                .is_empty()
        );
        assert_eq!(
            pids(w.update(std::slice::from_ref(&again), &gone, at(10), after)),
            vec![10]
        );
    }

    #[test]
    fn a_read_from_a_detached_node_is_due_after_the_timeout() {
        let (t0, after) = (Instant::now(), Duration::from_secs(5));
        let at = |s: u64| t0 + Duration::from_secs(s);
        let gone = [(2, addr("10.0.0.3:5432"))];
        // The read began at the cut, pgpool detached the node 3 s later: due 5 s after the
        // read began, whatever the title.
        let mut w = Watch::default();
        let c = reader(10, 77, Some("10.0.0.3:5432"));
        for s in 0..3 {
            assert!(
                w.update(std::slice::from_ref(&c), &[], at(s), after)
                    .is_empty()
            );
        }
        for s in 3..5 {
            assert!(
                w.update(std::slice::from_ref(&c), &gone, at(s), after)
                    .is_empty()
            );
        }
        assert_eq!(
            w.update(std::slice::from_ref(&c), &gone, at(5), after),
            vec![(10, Shape::DetachedNode(2, Blocked::Read))]
        );
        // Long reads that are not from a detached node are never due: a node that is up, the
        // same address on another port (another node on the same host), a child that serves no
        // session (no peer looked up: a health check), a socket of no node.
        let mut w = Watch::default();
        let others = [
            reader(11, 78, Some("10.0.0.2:5432")),
            reader(12, 79, Some("10.0.0.3:5433")),
            reader(13, 80, None),
            reader(14, 81, Some("192.0.2.1:5432")),
        ];
        for s in 0..30 {
            assert!(w.update(&others, &gone, at(s), after).is_empty());
        }
        // A new socket (the child reconnected, same descriptor) or a sample without the read
        // starts the clock again.
        let mut w = Watch::default();
        w.update(std::slice::from_ref(&c), &gone, at(0), after);
        let again = reader(10, 99, Some("10.0.0.3:5432"));
        w.update(std::slice::from_ref(&again), &gone, at(3), after);
        assert!(
            w.update(std::slice::from_ref(&again), &gone, at(7), after)
                .is_empty()
        );
        w.update(&[child(10, false, None)], &gone, at(8), after);
        assert!(
            w.update(std::slice::from_ref(&c), &gone, at(12), after)
                .is_empty()
        );
        assert_eq!(
            pids(w.update(std::slice::from_ref(&c), &gone, at(17), after)),
            vec![10]
        );
        // Reattached before the timeout: not due, and due again once detached.
        let mut w = Watch::default();
        w.update(std::slice::from_ref(&c), &gone, at(0), after);
        assert!(
            w.update(std::slice::from_ref(&c), &[], at(5), after)
                .is_empty()
        );
        assert_eq!(
            pids(w.update(std::slice::from_ref(&c), &gone, at(6), after)),
            vec![10]
        );
    }

    #[test]
    fn the_idle_session_shape_is_unchanged_and_comes_first() {
        let (t0, after) = (Instant::now(), Duration::from_secs(5));
        let at = |s: u64| t0 + Duration::from_secs(s);
        let gone = [(2, addr("10.0.0.3:5432"))];
        // Both shapes at once: one kill, named by the first.
        let both = Child {
            peer: Some(addr("10.0.0.3:5432")),
            ..child(10, true, Some(7))
        };
        let mut w = Watch::default();
        for s in 0..5 {
            assert!(
                w.update(std::slice::from_ref(&both), &gone, at(s), after)
                    .is_empty()
            );
        }
        assert_eq!(
            w.update(std::slice::from_ref(&both), &gone, at(5), after),
            vec![(10, Shape::IdleSession)]
        );
        // The idle shape needs no detached node.
        let mut w = Watch::default();
        let idle = child(11, true, Some(7));
        for s in 0..5 {
            assert!(
                w.update(std::slice::from_ref(&idle), &[], at(s), after)
                    .is_empty()
            );
        }
        assert_eq!(
            w.update(std::slice::from_ref(&idle), &[], at(5), after),
            vec![(11, Shape::IdleSession)]
        );
    }
}
