//! What an idle dyno costs the servers (issue 24): the app's user's connections and logins on
//! each node, as the servers themselves see them (`pg_stat_activity`, and the `connection
//! authorized` lines `log_connections` writes), and the memory of the launcher's tree.
//!
//! Each test has a cluster of its own, so nothing else logs in to its nodes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::cluster::Cluster;
use crate::support::launcher::*;
use crate::support::proc;

/// The app's role in the test clusters (etc/test-cluster).
const APP_USER: &str = "app";

/// A cluster whose nodes log every login.
fn logging_cluster() -> Cluster {
    let c = Cluster::start(2);
    for n in 0..=c.followers() {
        c.psql(n, "ALTER SYSTEM SET log_connections = on");
        c.psql(n, "SELECT pg_reload_conf()");
    }
    c
}

/// Logins of the app's user node `n` has logged so far.
fn logins(c: &Cluster, n: usize) -> usize {
    let log = std::fs::read_to_string(c.dir.join(format!("node{n}.log"))).unwrap_or_default();
    log.matches(&format!("connection authorized: user={APP_USER} "))
        .count()
}

/// The app's user's connections on node `n` now.
fn connections(c: &Cluster, n: usize) -> usize {
    c.psql(
        n,
        &format!("SELECT count(*) FROM pg_stat_activity WHERE usename = '{APP_USER}' AND backend_type = 'client backend'"),
    )
    .parse()
    .unwrap()
}

/// Connections on every node: `[primary, follower 1, follower 2]`.
fn all_connections(c: &Cluster) -> Vec<usize> {
    (0..=c.followers()).map(|n| connections(c, n)).collect()
}

/// PSS of the launcher, the guard and pgpool (every process of the launcher's tree but the
/// app's `sh` and `sleep`), in MiB: all of it, and its anonymous and shared-memory part alone,
/// which other processes on the machine do not share (the binaries' pages are shared with the
/// other tests' launchers and pgpools, so that part moves as they come and go).
struct Memory {
    pss: f64,
    /// Each process's anonymous and shared-memory KiB, by pid, with its command line.
    each: BTreeMap<u32, (String, u64)>,
}

impl Memory {
    /// The anonymous and shared-memory part, in MiB.
    fn own(&self) -> f64 {
        self.each.values().map(|(_, k)| *k).sum::<u64>() as f64 / 1024.0
    }
}

fn tree_memory(launcher: u32) -> Memory {
    let mut each = BTreeMap::new();
    let mut pss = 0;
    for p in proc::descendants(launcher) {
        if matches!(proc::comm(p).as_str(), "sh" | "sleep") {
            continue;
        }
        pss += proc::smaps_kib(p, "Pss").unwrap_or(0);
        let own = proc::smaps_kib(p, "Pss_Anon").unwrap_or(0)
            + proc::smaps_kib(p, "Pss_Shmem").unwrap_or(0);
        each.insert(p, (proc::cmdline(p), own));
    }
    Memory {
        pss: pss as f64 / 1024.0,
        each,
    }
}

/// The processes with the most own memory, for a failure message.
fn biggest(m: &Memory) -> String {
    let mut each: Vec<_> = m.each.values().collect();
    each.sort_by_key(|(_, k)| std::cmp::Reverse(*k));
    each.iter()
        .take(8)
        .map(|(cmd, k)| format!("{k} KiB {cmd}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The processes whose own memory grew most from `a` to `b`, for a failure message.
fn growth(a: &Memory, b: &Memory) -> String {
    let mut d: Vec<(i64, &str)> = b
        .each
        .iter()
        .map(|(pid, (cmd, kib))| {
            let before = a.each.get(pid).map_or(0, |(_, k)| *k);
            (*kib as i64 - before as i64, cmd.as_str())
        })
        .collect();
    d.sort_by_key(|x| std::cmp::Reverse(x.0));
    d.iter()
        .take(5)
        .map(|(k, cmd)| format!("{k:+} KiB {cmd}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn an_idle_dyno_holds_two_connections_per_node_and_logs_in_only_at_start() {
    let c = logging_cluster();
    let mut l = Launcher::new(&c);
    // The defaults, as the issue measured them: 32 children; and the launcher users run.
    l.unset("PGPOOL_NUM_INIT_CHILDREN");
    l.bin = release_bin();
    let start = Instant::now();
    let live = Live::start(l);
    let nodes = c.followers() + 1;
    let mut samples: Vec<(f64, Vec<usize>)> = Vec::new();
    let mut at_90: Option<Vec<usize>> = None;
    let mut pss = Vec::new();
    // Bounded: 150 s of samples every 5 s.
    for i in 1..=30u64 {
        let due = start + Duration::from_secs(5 * i);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        samples.push((start.elapsed().as_secs_f64(), all_connections(&c)));
        if i == 18 {
            at_90 = Some((0..nodes).map(|n| logins(&c, n)).collect());
        }
        if i == 1 || i == 30 {
            pss.push(tree_memory(live.pid()));
        }
    }
    let at_150: Vec<usize> = (0..nodes).map(|n| logins(&c, n)).collect();
    let at_90 = at_90.unwrap();
    let last_minute: Vec<usize> = at_150.iter().zip(&at_90).map(|(a, b)| a - b).collect();
    let log = live.log();
    println!(
        "FIGURES idle: logins per node in the last 60 s {last_minute:?}, in all {at_150:?}; \
         connections per node at {:.0} s {:?}, at {:.0} s {:?}, most {:?}; \
         PSS at 5 s {:.1} MiB (anon+shm {:.1}), at 150 s {:.1} MiB (anon+shm {:.1})",
        samples[0].0,
        samples[0].1,
        samples[29].0,
        samples[29].1,
        (0..nodes)
            .map(|n| samples.iter().map(|s| s.1[n]).max().unwrap())
            .collect::<Vec<_>>(),
        pss[0].pss,
        pss[0].own(),
        pss[1].pss,
        pss[1].own(),
    );
    for (t, counts) in &samples {
        assert!(
            counts.iter().all(|&n| n <= 2),
            "at {t:.0} s the app's user held {counts:?} connections per node (at most 2):\n{log}"
        );
    }
    assert!(
        last_minute.iter().all(|&n| n <= 2),
        "logins per node in the last idle minute: {last_minute:?} (at most 2)"
    );
    // Measured alone, release launcher: 44.8 MiB at the start of issue 24's second round,
    // 28-33 MiB after it (patch 0012, one malloc arena, child_life_time): docs/pgpool.md, "What
    // an idle dyno costs the servers". Beside other tests the binaries' pages are shared with
    // their processes, and the figure is lower.
    for (at, m) in [(5, &pss[0]), (150, &pss[1])] {
        assert!(
            m.pss <= 35.0,
            "launcher, guard and pgpool: {:.1} MiB PSS at {at} s (at most 35):\n{}",
            m.pss,
            biggest(m)
        );
    }
    assert!(
        pss[1].own() <= pss[0].own() + 2.0,
        "idling grew the launcher's tree's own memory from {:.1} to {:.1} MiB:\n{}",
        pss[0].own(),
        pss[1].own(),
        growth(&pss[0], &pss[1])
    );
    // The launcher still watches: its metrics count the logins, and pgpool's checks made none
    // in the last interval.
    let metrics = crate::support::l2met::lines_at(&log, crate::support::api::events::METRICS);
    let last = metrics
        .last()
        .unwrap_or_else(|| panic!("no metrics:\n{log}"));
    assert_eq!(
        last.get("count#pgpool.node.check_logins")
            .map(String::as_str),
        Some("0"),
        "{last:?}"
    );
}

#[test]
fn connections_cached_for_clients_that_left_close_after_the_idle_timeout() {
    let c = logging_cluster();
    let mut l = Launcher::new(&c);
    l.set("PGPOOL_IDLE_TIMEOUT", "5");
    let live = Live::start(l);
    let psql = c.pg_bin().join("psql");
    // 10 sessions at once, each on a child of its own, each connecting to every node.
    let sessions: Vec<_> = (0..10)
        .map(|_| {
            std::process::Command::new(&psql)
                .arg(&live.url)
                .args(["-qXAtc", "SELECT pg_sleep(1)"])
                .env("PGCONNECT_TIMEOUT", "10")
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("run psql")
        })
        .collect();
    for mut s in sessions {
        assert!(
            s.wait().expect("wait for psql").success(),
            "a session failed"
        );
    }
    let closed = Instant::now();
    let right_after = all_connections(&c);
    let log = live.log();
    assert!(
        right_after.iter().any(|&n| n > 2),
        "the sessions left no cached connection to expire ({right_after:?}), so this test \
         proves nothing:\n{log}"
    );
    // Bounded: 20 s of samples.
    let mut fell: Option<(f64, Vec<usize>)> = None;
    while closed.elapsed() < Duration::from_secs(20) {
        let now = all_connections(&c);
        if now.iter().all(|&n| n <= 2) {
            fell = Some((closed.elapsed().as_secs_f64(), now));
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    println!("FIGURES idle timeout 5 s: right after {right_after:?}, fell to {fell:?}");
    let (t, now) = fell.unwrap_or_else(|| {
        panic!(
            "20 s after the sessions closed the nodes still held {:?}:\n{}",
            all_connections(&c),
            live.log()
        )
    });
    // pgpool's timer looks once a second; a second more for the sampling.
    assert!(
        t <= 5.0 + 2.0,
        "the cached connections closed only {t:.1} s after the clients left ({now:?})"
    );
}
