//! One sample of pgpool's children, read from /proc through `os::proc` (the one /proc reader),
//! with the pure tests on a child's title and sockets that the sample needs.

use std::collections::HashMap;

use nix::unistd::Pid;

use super::rule::Child;
use crate::os::proc::{self, TCP_CLOSE_WAIT, TCP_LISTEN, TCP_SYN_SENT, Tcp};

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

/// A child's parent right now, checked again just before it is signalled.
pub fn parent(pid: i32) -> Option<i32> {
    proc::stat(pid).map(|s| s.ppid)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

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
}
