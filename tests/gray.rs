//! Gray failures (issue 14): a node that hangs or is cut off, not one that dies. "Hung" is
//! SIGSTOP of the node's postmaster and every child (the kernel still accepts and ACKs its
//! connections; nothing answers), "cut off" every TCP packet to and from its port dropped.
//! Each scenario runs in a network namespace of its own (support::netns), with its own cluster,
//! launcher and the mixed load of support::load (both protocols side by side), and measures
//! what the app saw: how long each query waited, by the node its session was on.
//!
//! A binary of its own, for the reason tests/failures.rs gives: its bounds are seconds, and the
//! scenarios take turns. Each prints a `FIGURES` line (run with `--nocapture`) before it
//! asserts.

#[allow(dead_code)]
mod support {
    // Only the catalogue of log events is used here.
    #[allow(unused_imports)]
    pub mod api;
    pub mod cluster;
    pub mod l2met;
    pub mod launcher;
    pub mod load;
    pub mod netns;
    pub mod proc;
}

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use support::api::events;
use support::cluster::Cluster;
use support::l2met::head;
use support::launcher::*;
use support::load::{Event, Load, Outcome, Protocol, Report, Who};

static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

/// How soon after a node hangs or is cut off pgpool must have detached it (issue 14's bound).
/// templates/pgpool.conf.tera's `health_check_timeout` (4 s) and period (1 s) fit inside it with
/// room for the failover itself: at a 5 s timeout a CI run detached at 6.07 s.
const DETACH_WITHIN: Duration = Duration::from_secs(6);

/// A new session, or a write failing for want of a primary, that takes longer than this waited
/// for the bad node: the shortest of pgpool's waits on one is `connect_timeout`, 3 s. A new
/// TLS/SCRAM session through pgpool took up to 1.83 s on this 2-core machine with two test
/// suites and a benchmark running beside it.
const SERVED_WITHIN: Duration = Duration::from_millis(2500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Hung,
    CutOff,
}

impl Fault {
    fn actions(self) -> (&'static str, &'static str) {
        match self {
            Fault::Hung => ("pause", "resume"),
            Fault::CutOff => ("cut", "uncut"),
        }
    }
}

/// The worst waits of one protocol's sessions, in seconds.
#[derive(Debug, Default, Clone)]
struct Waits {
    /// Queries of sessions whose last answer came from a healthy node.
    healthy: f64,
    /// Queries of sessions whose last answer came from the bad node.
    bad: f64,
    /// Healthy sessions' queries that failed (error or hang).
    healthy_failed: Vec<Event>,
    /// Healthy sessions' queries that took more than half a second, for the messages.
    healthy_slow: Vec<Event>,
}

/// What one scenario measured; times in seconds from the fault's start.
struct Figures {
    label: String,
    /// When the fault began, on the load's clock.
    t_fault: Duration,
    waits: HashMap<&'static str, Waits>,
    /// Every query of the fault and 10 s after it.
    worst: f64,
    /// Reader failures (each reader session's), and those the next query did not mend.
    reader_failures: usize,
    unretried: Vec<Event>,
    /// Queries the load gave up on (support::load::HANG).
    hung: Vec<Event>,
    /// The writer's outcomes sent from 6 s after the fault on until it ended.
    writes_during: Vec<Event>,
    /// Those of them that took more than 3 s.
    slow: Vec<Event>,
    /// Connector and writer outcomes sent from 6 s after the fault on, until it ended, that
    /// failed or took longer than [`SERVED_WITHIN`].
    late: Vec<Event>,
    /// Worst wait of a new connection sent 6 s after the fault on or later.
    new_conn: f64,
    /// pgpool's own record (pgpool_status) says the node is down.
    detached: Option<f64>,
    /// The launcher's `at=node-down` event line for the node.
    event: Option<f64>,
    /// From the fault's end to the first new connection answered by the node.
    back: Option<f64>,
    /// From the fault's end to the writer's first answered write.
    writes_back: Option<f64>,
    writer_errors: Vec<String>,
    /// The pgpool the launcher ran.
    bin: PathBuf,
    /// Children the launcher's watchdog SIGKILLed (`at=pgpool-child-stuck`), and those of them
    /// it found blocked reading a detached node (`shape=detached-node`).
    stuck_kills: usize,
    detached_kills: usize,
    /// Of those, the children still connecting to the detached node (`blocked=connect`).
    connect_kills: usize,
    log: String,
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 100.0).round() / 100.0
}

fn protocol_name(w: Who) -> &'static str {
    match w.protocol() {
        Protocol::Simple => "simple",
        Protocol::Prepared => "prepared",
    }
}

/// `fault` on `node` of a 2-follower cluster for `length`, under the mixed load, watched until
/// 12 s after it ended, with the tests' pgpool.
fn scenario(node: usize, fault: Fault, length: Duration) -> Figures {
    scenario_on(node, fault, length, &pgpool_bin())
}

/// The same with the pgpool `bin`.
fn scenario_on(node: usize, fault: Fault, length: Duration, bin: &Path) -> Figures {
    support::netns::enter();
    assert!(support::netns::is_private());
    let c = Cluster::start(2);
    let mut l = Launcher::new(&c);
    l.set("PGPOOL_NUM_INIT_CHILDREN", "16").use_pgpool(bin);
    let live = Live::start(l);
    live.wait_log(events::FOLLOWER_NAME, 2, Duration::from_secs(15));
    let load = Load::start(&live.url);
    std::thread::sleep(Duration::from_secs(3));
    let rundir = live
        .launcher()
        .runtime_dir()
        .expect("the launcher's runtime directory");
    let (on, off) = fault.actions();
    let bad = c.port(node);

    let t_fault = load.now();
    c.node(node, on);
    let (mut detached, mut event) = (None, None);
    let source = format!(" source={} ", source_var(node));
    let node_down = head(events::NODE_DOWN);
    let is_down = |l: &str| l.contains(&node_down) && l.contains(&source);
    // Bounded: length / 100 ms steps.
    while load.now() < t_fault + length {
        if detached.is_none()
            && pgpool_status(&rundir).get(node).map(String::as_str) == Some("down")
        {
            detached = Some(load.now() - t_fault);
        }
        if event.is_none() && live.log().lines().any(is_down) {
            event = Some(load.now() - t_fault);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let t_end = load.now();
    c.node(node, off);
    std::thread::sleep(Duration::from_secs(12));
    let r = load.stop();
    let log = live.log();
    let stuck_kills = live.stuck_kills();
    drop(live);
    let detached_kills = log
        .lines()
        .filter(|l| {
            l.contains(&head(events::PGPOOL_CHILD_STUCK)) && l.contains(" shape=detached-node ")
        })
        .count();
    let connect_kills = log
        .lines()
        .filter(|l| {
            l.contains(&head(events::PGPOOL_CHILD_STUCK)) && l.contains(" blocked=connect ")
        })
        .count();

    let mut waits: HashMap<&'static str, Waits> = HashMap::new();
    let mut last: HashMap<String, u16> = HashMap::new();
    let mut worst = 0f64;
    let mut slow = Vec::new();
    for e in &r.events {
        let sent = e.at.saturating_sub(e.took);
        let key = format!("{:?}", e.who);
        let prev = last.get(&key).copied();
        if let Outcome::Ok(p) = e.outcome {
            last.insert(key, p);
        } else {
            last.remove(&key);
        }
        if sent < t_fault || sent > t_end + Duration::from_secs(10) {
            continue;
        }
        worst = worst.max(secs(e.took));
        if e.took > Duration::from_secs(3) {
            slow.push(e.clone());
        }
        if e.who == Who::Connector {
            continue;
        }
        let Some(prev) = prev else { continue };
        let w = waits.entry(protocol_name(e.who)).or_default();
        // The writer's UPDATE needs the primary whichever node its reads are on.
        if prev == bad || (node == 0 && e.who == Who::Writer) {
            w.bad = w.bad.max(secs(e.took));
        } else {
            w.healthy = w.healthy.max(secs(e.took));
            if e.took > Duration::from_millis(500) {
                w.healthy_slow.push(e.clone());
            }
            if !matches!(e.outcome, Outcome::Ok(_)) {
                w.healthy_failed.push(e.clone());
            }
        }
    }
    // Reader failures whose session failed again on its next query: a retry that did not help.
    let mut unretried = Vec::new();
    let mut failed_before: HashMap<String, bool> = HashMap::new();
    for e in r.events.iter().filter(|e| matches!(e.who, Who::Reader(_))) {
        let failed = !matches!(e.outcome, Outcome::Ok(_));
        let key = format!("{:?}", e.who);
        if failed && failed_before.get(&key).copied().unwrap_or(false) && e.at >= t_fault {
            unretried.push(e.clone());
        }
        failed_before.insert(key, failed);
    }
    let reader_failures = r
        .events
        .iter()
        .filter(|e| matches!(e.who, Who::Reader(_)) && e.at >= t_fault)
        .filter(|e| !matches!(e.outcome, Outcome::Ok(_)))
        .count();
    let hung = r.hung_events();
    let settled = t_fault + Duration::from_secs(6);
    let in_window = |e: &&Event| {
        let sent = e.at.saturating_sub(e.took);
        sent >= settled && sent < t_end
    };
    let late: Vec<Event> = r
        .events
        .iter()
        .filter(|e| matches!(e.who, Who::Connector | Who::Writer))
        .filter(in_window)
        .filter(|e| !matches!(e.outcome, Outcome::Ok(_)) || e.took > SERVED_WITHIN)
        .cloned()
        .collect();
    let writes_during: Vec<Event> = r
        .events
        .iter()
        .filter(|e| e.who == Who::Writer)
        .filter(in_window)
        .cloned()
        .collect();
    let new_conn = r
        .events
        .iter()
        .filter(|e| e.who == Who::Connector)
        .filter(in_window)
        .map(|e| secs(e.took))
        .fold(0f64, f64::max);
    let writer_errors = r
        .events
        .iter()
        .filter(|e| e.who == Who::Writer && e.at >= t_fault)
        .filter_map(|e| match &e.outcome {
            Outcome::Err(m) => Some(m.clone()),
            _ => None,
        })
        .take(3)
        .collect();
    let back = r
        .first_ok(Who::Connector, Some(bad), t_end)
        .map(|b| secs(b - t_end));
    let writes_back = r
        .first_ok(Who::Writer, None, t_end)
        .map(|b| secs(b - t_end));
    Figures {
        label: format!(
            "node{node} {fault:?} {}s pgpool={}",
            length.as_secs(),
            bin.display()
        ),
        t_fault,
        waits,
        worst,
        reader_failures,
        unretried,
        hung,
        writes_during,
        slow,
        late,
        new_conn,
        detached: detached.map(secs),
        event: event.map(secs),
        back,
        writes_back,
        writer_errors,
        bin: bin.to_path_buf(),
        stuck_kills,
        detached_kills,
        connect_kills,
        log,
    }
}

/// Events with when they were sent and how long they took.
fn describe_waits(events: &[Event]) -> String {
    events
        .iter()
        .take(12)
        .map(|e| {
            format!(
                "sent {:.2}s took {:.2}s {:?} {:?}",
                (e.at - e.took).as_secs_f64(),
                e.took.as_secs_f64(),
                e.who,
                e.outcome
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The variable `Launcher::new` gives node `n`.
fn source_var(n: usize) -> String {
    if n == 0 {
        "DATABASE_URL".into()
    } else {
        format!("FOLLOWER{n}_URL")
    }
}

/// pgpool's own record of node states (`pgpool_status` in its work directory: one line per
/// node, `up`, `down` or `unused`), which it rewrites at every failover and failback.
fn pgpool_status(rundir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(rundir.join("pgpool_status"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

impl Figures {
    fn print(&self) {
        let mut w: Vec<_> = self.waits.iter().collect();
        w.sort_by_key(|(k, _)| *k);
        let waits: Vec<String> = w
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}: healthy_max_s={} healthy_failed={} bad_max_s={}",
                    v.healthy,
                    v.healthy_failed.len(),
                    v.bad
                )
            })
            .collect();
        eprintln!(
            "FIGURES {} | {} | worst_s={} hung={} reader_failures={} unretried={} new_conn_max_s={} \
             late_after_6s={} detached_s={:?} event_s={:?} back_s={:?} writes_back_s={:?} \
             writer_errors={:?} stuck_kills={} detached_node_kills={} connect_kills={}",
            self.label,
            waits.join(" | "),
            self.worst,
            self.hung.len(),
            self.reader_failures,
            self.unretried.len(),
            self.new_conn,
            self.late.len(),
            self.detached,
            self.event,
            self.back,
            self.writes_back,
            self.writer_errors,
            self.stuck_kills,
            self.detached_kills,
            self.connect_kills,
        );
        if !self.slow.is_empty() {
            eprintln!("SLOW (over 3 s):\n{}", describe_waits(&self.slow));
        }
        if self.stuck_kills > 0 {
            let kills: Vec<&str> = self
                .log
                .lines()
                .filter(|l| l.contains(&head(events::PGPOOL_CHILD_STUCK)))
                .collect();
            eprintln!("KILLS:\n{}", kills.join("\n"));
        }
    }

    fn waits(&self, protocol: &str) -> Waits {
        self.waits.get(protocol).cloned().unwrap_or_default()
    }

    /// The watchdog for stuck children must never fire on the pgpool we build, which gets stuck
    /// neither reading (0005) nor connecting (0009) to a node it has detached: every such kill
    /// there would be a healthy session broken.
    fn check_no_stuck_kills(&self) {
        if is_ours(&self.bin) {
            assert_eq!(
                self.stuck_kills, 0,
                "the watchdog killed children of our pgpool:\n{}",
                self.log
            );
        }
    }

    /// Issue 14's bounds for a follower that hangs or is cut off, for both protocols.
    fn check_follower(&self) {
        self.check_no_stuck_kills();
        for p in ["simple", "prepared"] {
            let w = self.waits(p);
            assert!(
                w.healthy_failed.is_empty(),
                "{p} sessions on healthy nodes failed:\n{}",
                Report::describe(&w.healthy_failed)
            );
            assert!(
                w.healthy <= 1.0,
                "a {p} session on a healthy node waited {} s (fault at {} s):\n{}",
                w.healthy,
                secs(self.t_fault),
                describe_waits(&w.healthy_slow)
            );
            assert!(
                w.bad <= 8.0,
                "a {p} session on the bad node waited {} s",
                w.bad
            );
        }
        let detached = self
            .detached
            .unwrap_or_else(|| panic!("pgpool never detached the node:\n{}", self.log));
        assert!(
            detached <= secs(DETACH_WITHIN),
            "pgpool detached the node only {detached} s after the fault"
        );
        self.check_event(detached);
        assert!(
            self.late.is_empty(),
            "new connections or writes failed or waited from 6 s after the fault on:\n{}",
            Report::describe(&self.late)
        );
        let back = self
            .back
            .unwrap_or_else(|| panic!("the node never served reads again:\n{}", self.log));
        assert!(
            back <= 10.0,
            "the node served reads again only {back} s after the fault ended"
        );
    }

    /// The launcher's monitor reads node states from pgpool's shared memory (pcp), so its
    /// `at=node-down` line comes within 2 s of pgpool's detach, however the node failed.
    fn check_event(&self, detached: f64) {
        let event = self
            .event
            .unwrap_or_else(|| panic!("no at=node-down line for the node:\n{}", self.log));
        assert!(
            event <= detached + 2.0,
            "at=node-down came {event} s after the fault, pgpool detached at {detached} s"
        );
    }

    /// Issue 14's bounds for a primary that hangs or is cut off. Reads on the followers go on,
    /// but not without a break: pgpool restarts every child when the primary is detached and
    /// again when it is attached back, so each reader session gets an error at each of those
    /// two moments, and its retry is served.
    fn check_primary(&self) {
        self.check_no_stuck_kills();
        let detached = self
            .detached
            .unwrap_or_else(|| panic!("pgpool never detached the primary:\n{}", self.log));
        self.check_event(detached);
        assert!(
            self.worst <= 8.0,
            "a query waited {} s (at most 8 s for any), fault at {} s:\n{}\n{}",
            self.worst,
            secs(self.t_fault),
            describe_waits(&self.slow),
            self.log
        );
        assert!(
            self.hung.is_empty(),
            "queries hung:\n{}",
            describe_waits(&self.hung)
        );
        assert!(
            self.unretried.is_empty(),
            "a reader's retry failed too:\n{}",
            describe_waits(&self.unretried)
        );
        assert!(
            self.reader_failures <= 2 * support::load::READERS,
            "readers failed {} times (one each at the detach and at the reattach at most)",
            self.reader_failures
        );
        let unclear: Vec<Event> = self
            .writes_during
            .iter()
            .filter(|e| match &e.outcome {
                Outcome::Err(m) => !m.contains("read-only transaction"),
                _ => true,
            })
            .cloned()
            .collect();
        assert!(
            !self.writes_during.is_empty() && unclear.is_empty(),
            "writes while the primary was away did not fail with a clear error:\n{}",
            describe_waits(&unclear)
        );
        let slow = self
            .writes_during
            .iter()
            .map(|e| secs(e.took))
            .fold(0f64, f64::max);
        assert!(slow <= secs(SERVED_WITHIN), "a failing write took {slow} s");
        let back = self
            .writes_back
            .unwrap_or_else(|| panic!("writes never worked again:\n{}", self.log));
        assert!(
            back <= 10.0,
            "writes worked again only {back} s after the primary recovered"
        );
    }
}

#[test]
fn follower_hung() {
    let _t = turn();
    let f = scenario(2, Fault::Hung, Duration::from_secs(20));
    f.print();
    f.check_follower();
}

#[test]
fn follower_cut_off() {
    let _t = turn();
    let f = scenario(2, Fault::CutOff, Duration::from_secs(20));
    f.print();
    f.check_follower();
}

/// Sessions opened just as a follower is cut off. Each one's pgpool child connects to every
/// node; the connect to the cut-off one times out (`connect_timeout`, 3 s) and a session child
/// retries it. Once pgpool has detached the node the child must give up on it and serve its
/// client with the nodes left (patch 0009), not retry until the kernel gives up on the SYN (two
/// minutes, by which time the client has given up or the watchdog has killed the child).
#[test]
fn new_sessions_during_a_cut_are_served_once_the_follower_is_detached() {
    let _t = turn();
    support::netns::enter();
    assert!(support::netns::is_private());
    let c = Cluster::start(2);
    let mut l = Launcher::new(&c);
    // Children enough that the burst meets ones with no connection cached: only a child that
    // has none connects to the nodes when its client arrives.
    // Every pgpool line, for the children's account of what they skipped.
    l.set("PGPOOL_NUM_INIT_CHILDREN", "16")
        .set("PGPOOL_LOG_LEVEL", "debug");
    let live = Live::start(l);
    live.wait_log(events::FOLLOWER_NAME, 2, Duration::from_secs(15));
    let rundir = live
        .launcher()
        .runtime_dir()
        .expect("the launcher's runtime directory");
    const SESSIONS: usize = 8;

    let t_cut = std::time::Instant::now();
    c.node(2, "cut");
    let seen = support::load::burst(&live.url, SESSIONS);
    let detached_by = t_cut.elapsed();
    let detached = pgpool_status(&rundir).get(2).map(String::as_str) == Some("down");
    c.node(2, "uncut");
    let stuck_kills = live.stuck_kills();
    let log = live.log();
    drop(live);
    let worst = seen.iter().map(|(t, _)| secs(*t)).fold(0f64, f64::max);
    let skipped = log
        .matches("skipping backend 2: it was detached while this session connected to it")
        .count();
    println!(
        "FIGURES new sessions during a cut: sessions={SESSIONS} worst={worst}s \
         outcomes={:?} stuck_kills={stuck_kills} skipped={skipped}",
        seen.iter()
            .map(|(t, o)| format!("{:.2}s {o:?}", t.as_secs_f64()))
            .collect::<Vec<_>>()
    );

    assert!(
        detached,
        "pgpool had not detached the cut-off node {} s after the cut:\n{log}",
        secs(detached_by)
    );
    let bad = c.port(2);
    for (took, outcome) in &seen {
        assert!(
            matches!(outcome, Outcome::Ok(p) if *p != bad),
            "a session opened as the follower was cut off was not served by a healthy node \
             ({:.2} s, {outcome:?}):\n{log}",
            took.as_secs_f64()
        );
    }
    // The detach comes within DETACH_WITHIN of the cut; the child
    // gives up within a quarter of a second of it, then logs in to the nodes left.
    assert!(
        worst <= secs(DETACH_WITHIN) + secs(SERVED_WITHIN),
        "a session waited {worst} s for a node pgpool had detached"
    );
    assert_eq!(stuck_kills, 0, "the watchdog killed children:\n{log}");
    // At least one child was still connecting when the node was detached, and gave up on it:
    // a session that arrived after the detach would be served without ever trying the node.
    assert!(
        skipped >= 1,
        "no child skipped the node it was connecting to when pgpool detached it:\n{log}"
    );
}

/// A follower cut off under Debian's stock pgpool 4.3.5: it sends each Sync to every node a
/// session holds, so sessions on the healthy follower sit reading the cut-off node's socket
/// after pgpool detached it, for as long as TCP retransmits (minutes), and its partial restart
/// does not free them. The watchdog's `detached-node` shape must: no query may hang, and it
/// must have killed at least one such child. Healthy sessions do break on stock pgpool; the
/// figures say how many.
///
/// The watchdog acts on pgpool's own view, so the test needs stock pgpool to detach the node.
/// Sometimes it never does: when the cut lands after a health check's connect and before the
/// server's answer, the check's read has no timeout that works (its alarm is installed with
/// `SA_RESTART`, the race 0005 closes; docs/pgpool.md), and it blocks for the rest of the fault.
/// And sometimes pgpool's own failover frees every blocked child: it restarts children (all of
/// them, in a run /proc was sampled in), and when it restarted every child blocked on the node,
/// none is left for the watchdog (3 of 21 runs; pgpool never detached in 1). Neither run says
/// anything about the watchdog, so either is rerun, at most [`STOCK_ATTEMPTS`] times in all.
/// Every run in which pgpool detached the node must have no query hanging.
const STOCK_ATTEMPTS: usize = 6;

#[test]
fn stock_pgpool_follower_cut_off() {
    let stock = debian_pgpool();
    let _t = turn();
    let mut attempt = 1;
    let f = loop {
        let f = scenario_on(2, Fault::CutOff, Duration::from_secs(20), stock);
        f.print();
        if f.detached.is_some() {
            assert!(
                f.hung.is_empty(),
                "queries hung (attempt {attempt}):\n{}\n{}",
                describe_waits(&f.hung),
                f.log
            );
        }
        if (f.detached.is_some() && f.detached_kills >= 1) || attempt == STOCK_ATTEMPTS {
            break f;
        }
        if f.detached.is_none() {
            eprintln!("stock pgpool never detached the node (its health check hung); rerunning");
        } else {
            eprintln!(
                "pgpool's failover freed every blocked child, the watchdog had none; rerunning"
            );
        }
        attempt += 1;
    };
    assert!(
        f.detached.is_some(),
        "stock pgpool never detached the cut-off node in the last of {STOCK_ATTEMPTS} runs:\n{}",
        f.log
    );
    assert!(
        f.detached_kills >= 1,
        "the watchdog killed no child reading the detached node in {STOCK_ATTEMPTS} runs ({} kills in all):\n{}",
        f.stuck_kills,
        f.log
    );
}

#[test]
fn primary_hung() {
    let _t = turn();
    let f = scenario(0, Fault::Hung, Duration::from_secs(15));
    f.print();
    f.check_primary();
}

#[test]
fn primary_cut_off() {
    let _t = turn();
    let f = scenario(0, Fault::CutOff, Duration::from_secs(15));
    f.print();
    f.check_primary();
}
