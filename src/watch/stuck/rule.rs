//! The watchdog's decision, apart from /proc and signals: which children have been stuck long
//! enough, in which shape (the shapes are described in the module header, `stuck/mod.rs`), and
//! which node addresses count as detached. Takes samples and the time; returns pids.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

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

#[cfg(test)]
mod tests {
    use super::*;

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
