//! Stuck pgpool children: found from /proc, cleared with SIGKILL.
//!
//! Stock pgpool (4.3 to 4.7) can leave a child blocked for ever in a read from a backend after
//! a follower stops abruptly (docs/pgpool.md, "Mechanism D: the hang": PostgreSQL's shutdown
//! notice is pushed back unread, and the child then waits on the primary, which has nothing to
//! say). Its
//! client waits for ever too, and the child's slot is lost until pgpool restarts. The pgpool
//! this buildpack ships is patched against it; any other may hang.
//!
//! The signature, all of which must hold for `PGPOOL_STUCK_TIMEOUT` seconds of samples, the
//! same file descriptor throughout:
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
//! answer. That child would be killed and its client would see a closed connection. SIGKILL, never SIGQUIT: pgpool refills the
//! slot of a child that died by a signal, while a child that exits on SIGQUIT is not replaced
//! (docs/pgpool.md, "Clearing a stuck child: SIGKILL, not SIGQUIT"). The client sees its connection closed and can reconnect.

use std::collections::HashMap;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::time::Instant;

use crate::os::proc::{self, TCP_CLOSE_WAIT, TCP_LISTEN, Tcp};

/// What one sample found about one pgpool child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    pub pid: i32,
    /// Its title says its session is idle.
    pub idle: bool,
    /// The descriptor it is blocked reading, if it is blocked in `read(2)` on a backend socket.
    pub reading_backend: Option<i32>,
    /// Its client sent bytes it has not read, or hung up.
    pub client_waiting: bool,
}

impl Child {
    fn stuck_on(&self) -> Option<i32> {
        self.reading_backend
            .filter(|_| self.idle && self.client_waiting)
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

/// Children seen stuck, and since when: the decision, apart from /proc.
#[derive(Debug, Default)]
pub struct Watch {
    since: HashMap<i32, (i32, Instant)>,
}

impl Watch {
    /// The pids stuck for at least `after` as of this sample.
    pub fn update(&mut self, children: &[Child], now: Instant, after: Duration) -> Vec<i32> {
        let mut next = HashMap::new();
        let mut due = Vec::new();
        for c in children {
            let Some(fd) = c.stuck_on() else {
                continue;
            };
            let first = match self.since.get(&c.pid) {
                Some(&(f, t)) if f == fd => t,
                _ => now,
            };
            if now.duration_since(first) >= after {
                due.push(c.pid);
            } else {
                next.insert(c.pid, (fd, first));
            }
        }
        self.since = next;
        due
    }
}

/// One sample of pgpool's children from /proc: those whose title says idle and that are
/// blocked in `read(2)` (two small reads per child; a healthy pgpool has none such, so the
/// socket tables are read only when there is one). Children that vanish meanwhile are skipped.
/// The flag is true when the system refused us a child's `/proc/PID/syscall` (a ptrace
/// policy such as Yama's `ptrace_scope=2`): then nothing can be found stuck.
pub fn sample(pgpool: Pid, port: u16) -> (Vec<Child>, bool) {
    let mut blind = false;
    let mut tcp: Option<HashMap<u64, Tcp>> = None;
    let mut found = Vec::new();
    for pid in proc::children(pgpool.as_raw()) {
        let Some(cmdline) = proc::cmdline(pid) else {
            continue;
        };
        if !idle_title(&cmdline) {
            continue;
        }
        let syscall = match proc::syscall(pid) {
            Ok(s) => s,
            Err(e) => {
                blind |= e.kind() == std::io::ErrorKind::PermissionDenied;
                continue;
            }
        };
        let Some(fd) = proc::blocked_read(&syscall, nix::libc::SYS_read) else {
            continue;
        };
        let tcp = tcp.get_or_insert_with(proc::tcp_sockets);
        let on_backend = proc::socket_inode(pid, fd)
            .and_then(|i| tcp.get(&i))
            .is_some_and(|t| t.local_port != port);
        let sockets: Vec<Tcp> = proc::socket_inodes(pid)
            .iter()
            .filter_map(|i| tcp.get(i).copied())
            .collect();
        found.push(Child {
            pid,
            idle: true,
            reading_backend: on_backend.then_some(fd),
            client_waiting: client_waiting(&sockets, port),
        });
    }
    (found, blind)
}

fn parent(pid: i32) -> Option<i32> {
    proc::stat(pid).map(|s| s.ppid)
}

/// Samples pgpool's children once a second and SIGKILLs those stuck for `after`; runs until
/// dropped. Only direct children of `pgpool` are ever signalled, checked again just before.
pub async fn run(pgpool: Pid, port: u16, after: Duration) {
    let mut watch = Watch::default();
    let mut said_blind = false;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        // A few small reads of /proc: done in place, no thread of its own.
        let (children, blind) = sample(pgpool, port);
        if blind && !said_blind {
            tracing::warn!(
                reason = "this system does not let the launcher read /proc/PID/syscall of pgpool's children",
                "stuck-watchdog-blind"
            );
            said_blind = true;
        }
        for pid in watch.update(&children, Instant::now(), after) {
            if parent(pid) != Some(pgpool.as_raw()) {
                continue;
            }
            let killed = kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok();
            tracing::warn!(pid, killed, after_s = after.as_secs(), "pgpool-child-stuck");
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
            state: TCP_LISTEN,
            rx_queue: 0,
        };
        let half_closed = Tcp {
            local_port: 5432,
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
    }

    fn child(pid: i32, idle: bool, fd: Option<i32>) -> Child {
        Child {
            pid,
            idle,
            reading_backend: fd,
            client_waiting: true,
        }
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
            assert!(w.update(&all, at(s), after).is_empty());
        }
        assert_eq!(w.update(&all, at(5), after), vec![10]);
        // Another descriptor, or a sample without the read, starts the clock again.
        let mut w = Watch::default();
        w.update(std::slice::from_ref(&stuck), at(0), after);
        w.update(&[child(10, true, Some(8))], at(3), after);
        assert!(
            w.update(&[child(10, true, Some(8))], at(7), after)
                .is_empty()
        );
        w.update(&[child(10, true, None)], at(8), after);
        assert!(
            w.update(std::slice::from_ref(&stuck), at(12), after)
                .is_empty()
        );
        assert_eq!(w.update(&[stuck], at(17), after), vec![10]);
    }
}
