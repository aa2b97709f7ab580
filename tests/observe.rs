//! What a user sees of a running launcher: metrics lines, node events, `start-pgpool status`.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::{self, Cluster};
use common::launcher::*;

/// An l2met line: `start-pgpool key=value key="quoted value" ...` -> map (the first word is
/// the program name and kept as `_prog`).
fn l2met(line: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = line.chars().peekable();
    let mut first = true;
    while chars.peek().is_some() {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ' ' {
                break;
            }
            key.push(c);
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ' ' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        if first {
            out.insert("_prog".into(), key);
            first = false;
        } else if !key.is_empty() {
            out.insert(key, value);
        }
    }
    out
}

fn lines_at(stderr: &str, at: &str) -> Vec<BTreeMap<String, String>> {
    stderr
        .lines()
        .map(l2met)
        .filter(|m| m.get("at").map(String::as_str) == Some(at))
        .collect()
}

#[test]
fn the_l2met_parser_reads_quotes() {
    let m = l2met(r#"start-pgpool at=x level=info msg="a \"b\" c" n=1"#);
    assert_eq!(m["_prog"], "start-pgpool");
    assert_eq!(m["msg"], "a \"b\" c");
    assert_eq!(m["n"], "1");
}

#[test]
fn metrics_are_logged_per_node_every_interval() {
    let c = cluster::shared();
    let mut l = Launcher::new(c);
    l.set("PGPOOL_METRICS_INTERVAL", "1");
    let out = l.run_sh(r#"for i in $(seq 10); do psql "$DATABASE_URL" -XAtqc 'select 1' >/dev/null; done; sleep 3.5"#);
    assert_ok(&out);
    let err = stderr(&out);
    let metrics = lines_at(&err, "metrics");
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
    let budget = lines_at(&err, "connection-budget");
    assert_eq!(budget.len(), 1, "{err}");
    assert_eq!(budget[0]["per_node"], "8");
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
        lines_at(&stderr(&out), "metrics").is_empty(),
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
    let downs = lines_at(&err, "node-down");
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
