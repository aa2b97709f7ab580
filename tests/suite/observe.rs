//! What a user sees of a running launcher: metrics lines, node events, `start-pgpool status`.

use std::time::{Duration, Instant};

use crate::support::api::events;
use crate::support::cluster::{self, Cluster};
use crate::support::l2met::{head, lines_at};
use crate::support::launcher::*;

#[test]
fn metrics_are_logged_per_node_every_interval() {
    let c = cluster::shared();
    let mut l = Launcher::new(c);
    l.set("PGPOOL_METRICS_INTERVAL", "1");
    let out = l.run_sh(r#"for i in $(seq 10); do psql "$DATABASE_URL" -XAtqc 'select 1' >/dev/null; done; sleep 3.5"#);
    assert_ok(&out);
    let err = stderr(&out);
    let metrics = lines_at(&err, events::METRICS);
    for source in ["DATABASE_URL", "FOLLOWER1_URL", "FOLLOWER2_URL"] {
        let mine: Vec<_> = metrics
            .iter()
            .filter(|m| m.get("source").map(String::as_str) == Some(source))
            .collect();
        assert!(mine.len() >= 2, "two or more samples of {source}:\n{err}");
        for m in &mine {
            for k in [
                "sample#pgpool.node.select_count",
                "sample#pgpool.node.lag_bytes",
                "sample#pgpool.node.up",
            ] {
                assert!(
                    m.get(k).is_some_and(|v| v.parse::<u64>().is_ok()),
                    "{k} in {m:?}"
                );
            }
            assert_eq!(m["sample#pgpool.node.up"], "1");
        }
    }
    // The followers served the app's 10 reads; the primary at most the launcher's own one
    // (discovering the followers' application names at start).
    let last = |s: &str| {
        metrics.iter().rev().find(|m| m["source"] == s).unwrap()["sample#pgpool.node.select_count"]
            .parse::<u64>()
            .unwrap()
    };
    assert!(last("DATABASE_URL") <= 1, "{err}");
    assert!(last("FOLLOWER1_URL") + last("FOLLOWER2_URL") >= 10, "{err}");
    let budget = lines_at(&err, events::CONNECTION_BUDGET);
    assert_eq!(budget.len(), 1, "{err}");
    assert_eq!(budget[0]["per_node"], "10");
    assert_eq!(budget[0]["idle_per_node"], "2");
    assert_eq!(budget[0]["max_connections"], "300");
}

#[test]
fn metrics_can_be_turned_off() {
    let c = cluster::shared();
    let mut l = Launcher::new(c);
    l.set("PGPOOL_METRICS_INTERVAL", "0");
    let out = l.run_sh("sleep 2.5");
    assert_ok(&out);
    assert!(
        lines_at(&stderr(&out), events::METRICS).is_empty(),
        "{}",
        show(&out)
    );
}

#[test]
fn a_node_going_down_is_an_event_and_status_shows_it() {
    let c = Cluster::start(2);
    let mut l = Launcher::new(&c);
    l.set("PGPOOL_METRICS_INTERVAL", "0");
    let child = l.spawn_holding();

    let status = || {
        let out = l.command(&["status"]).output().unwrap();
        assert_ok(&out);
        stdout(&out)
    };
    let before = status();
    let rows: Vec<Vec<String>> = before
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    assert_eq!(rows.len(), 3, "{before}");
    assert_eq!(
        rows[0][1..5],
        [
            "DATABASE_URL".to_string(),
            format!("127.0.0.1:{}", c.port(0)),
            "primary".into(),
            "up".into()
        ]
    );
    assert_eq!(rows[2][1], "FOLLOWER2_URL");
    assert_eq!(rows[2][4], "up");

    c.node(2, "stop");
    // pgpool's health check (1 s period) notices, the monitor polls each second: bounded wait.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut after = String::new();
    while Instant::now() < deadline {
        // New sessions fail while pgpool runs the failover; status is then a clear error.
        let out = l.command(&["status"]).output().unwrap();
        after = stdout(&out);
        if after
            .lines()
            .nth(3)
            .is_some_and(|l| l.split_whitespace().nth(4) == Some("down"))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let row2: Vec<&str> = after.lines().nth(3).unwrap().split_whitespace().collect();
    assert_eq!(
        row2[1..5],
        [
            "FOLLOWER2_URL",
            &format!("127.0.0.1:{}", c.port(2)),
            "standby",
            "down"
        ],
        "{after}"
    );
    std::thread::sleep(Duration::from_millis(2500));

    let out = release(child);
    assert_ok(&out);
    let err = stderr(&out);
    let downs = lines_at(&err, events::NODE_DOWN);
    assert_eq!(downs.len(), 1, "one event for one change:\n{err}");
    assert_eq!(downs[0]["source"], "FOLLOWER2_URL");
    assert_eq!(downs[0]["level"], "warn");
    assert!(l.runtime_dir_is_gone() && l.port_is_free());
}

#[test]
fn status_without_a_launcher_is_one_clear_error() {
    let c = cluster::shared();
    let l = Launcher::new(c);
    let out = l.command(&["status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "start-pgpool: error: PGPOOL_PORT: no running start-pgpool serves port {}",
            l.port
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
}

/// A follower that hangs (every process of it SIGSTOPped: the kernel accepts TCP, nothing
/// answers) stalls `SHOW POOL_NODES`, which pings and logs in to every server. The monitor's
/// events come from pcp, which pgpool answers from its shared memory, so `at=node-down` follows
/// pgpool's own state within 2 s (it came 4-12 s late when the events came from
/// `SHOW POOL_NODES`), and `status` shows pcp's view instead of stalling. pgpool does not
/// detach a hung node by itself here (its health check does not give up on it), so the test
/// detaches it through pcp while it hangs, unless pgpool already has.
#[test]
fn a_hung_follower_is_an_event_within_2_s_of_pgpool_saying_down() {
    use crate::support::pcp::Pcp;

    let c = Cluster::start(2);
    let mut l = Launcher::new(&c);
    // debug: the monitor's `at=pool-nodes` line for each SHOW POOL_NODES answer.
    l.set("PGPOOL_METRICS_INTERVAL", "0")
        .set("PGPOOL_LOG_LEVEL", "debug");
    let mut live = Live::start(l);
    // The start-up sessions (budget, discovery) done: they would stall too.
    live.wait_log(events::FOLLOWER_NAME, 2, Duration::from_secs(60));
    let rundir = live
        .launcher()
        .runtime_dir()
        .expect("the launcher's runtime directory");
    let mut pcp = Pcp::login(&rundir);
    assert_eq!(pcp.status(2), "up");
    // Declared after the cluster and the launcher: SIGCONT before either is stopped.
    let frozen = c.freeze(2);

    let asked = Instant::now();
    let out = live.launcher().command(&["status"]).output().unwrap();
    let took = asked.elapsed();
    assert_ok(&out);
    assert!(
        stderr(&out).contains("status and role from pcp"),
        "SHOW POOL_NODES answered with node 2 hung ({took:?}): {}",
        show(&out)
    );
    assert!(took < Duration::from_secs(8), "status took {took:?}");
    let row2: Vec<String> = stdout(&out)
        .lines()
        .nth(3)
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(row2[1], "FOLLOWER2_URL", "{}", show(&out));
    assert_eq!(row2[3], "standby");
    assert_eq!(row2[5..], ["-", "-"]);

    let needle = format!("{}source=FOLLOWER2_URL ", head(events::NODE_DOWN));
    assert!(!live.log().contains(&needle), "{}", live.log());
    // When pgpool said down: when the detach returned (pgpool answers it once its failover has
    // run), or when the node was first seen down if pgpool had detached it by itself.
    let down = if pcp.status(2) == "down" {
        Instant::now()
    } else {
        pcp.detach(2);
        Instant::now()
    };
    // Seen down in shared memory by a new pcp session, within a bounded wait.
    let seen = loop {
        if Pcp::login(&rundir).status(2) == "down" {
            break down.elapsed();
        }
        assert!(down.elapsed() < Duration::from_secs(5), "node 2 not down");
        std::thread::sleep(Duration::from_millis(20));
    };
    let deadline = down + Duration::from_secs(15);
    while !live.log().contains(&needle) {
        assert!(Instant::now() < deadline, "no node-down:\n{}", live.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let delay = down.elapsed();
    eprintln!(
        "node-down {delay:?} after the detach (seen down by pcp after {seen:?}; status took {took:?})"
    );
    assert!(
        delay <= Duration::from_secs(2),
        "node-down {delay:?} after pgpool had it down:\n{}",
        live.log()
    );

    // The stalled SHOW POOL_NODES answers in the end (its debug line shows node 2 down), and
    // its loop logs no second event for the same change.
    let answered = Instant::now() + Duration::from_secs(60);
    while !live
        .log()
        .lines()
        .any(|l| l.contains(&head(events::POOL_NODES)) && l.contains(",2:down/"))
    {
        assert!(
            Instant::now() < answered,
            "SHOW POOL_NODES never answered:\n{}",
            live.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    drop(frozen);
    drop(pcp);
    let log = live.stop();
    assert_eq!(lines_at(&log, events::NODE_DOWN).len(), 1, "{log}");
}
