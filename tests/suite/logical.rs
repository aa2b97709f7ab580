//! Logically replicated copies (native publication and subscription, each on a server of its
//! own). Named as a follower in streaming mode, a copy is not in recovery, so pgpool would take
//! it for the primary and send it the writes (measured: it did, from the start): the launcher
//! refuses it at start, by name. `PGPOOL_MODE=logical` serves it: reads on the copy, writes on
//! the primary, and with the primary stopped, writes refused while reads go on.

use std::time::Duration;

use crate::support::api::events;
use crate::support::cluster::{self, Cluster};
use crate::support::l2met::head;
use crate::support::launcher::*;

/// A primary publishing `items`, and a copy of its own subscribed to it. The copy's `items`
/// already holds the same ten rows (etc/test-cluster makes them), so no initial copy.
fn primary_and_copy() -> (Cluster, Cluster) {
    let primary = cluster::start_new(0);
    let copy = cluster::start_new(0);
    primary.psql(0, "alter system set wal_level = logical");
    primary.node(0, "restart");
    primary.psql(0, "create publication start_pgpool_pub for table items");
    // The password from the primary's passfile, never in a command line.
    let conninfo = format!(
        "host=127.0.0.1 port={} user=app dbname=appdb sslmode=require passfile={}",
        primary.port(0),
        primary.dir.join("pgpass").display()
    );
    copy.psql(
        0,
        &format!(
            "create subscription start_pgpool_sub connection '{conninfo}' publication start_pgpool_pub with (copy_data = false)"
        ),
    );
    primary.psql(
        0,
        "insert into items values (-77, 'through the publication')",
    );
    copy.wait_for(
        0,
        "select count(*) from items where id = -77",
        "1",
        Duration::from_secs(30),
    );
    (primary, copy)
}

#[test]
fn a_logical_copy_named_as_a_follower_is_refused_before_the_app_runs() {
    let (primary, copy) = primary_and_copy();
    let mut l = Launcher::bare();
    l.set("DATABASE_URL", primary.primary_url())
        .set("COPY_URL", copy.primary_url())
        .set("PGPOOL_URLS", "DATABASE_URL COPY_URL");
    let out = l.run_sh("echo APP-RAN");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(
        lines[0].starts_with("start-pgpool: error: COPY_URL: is not in recovery"),
        "{err}"
    );
    assert!(lines[0].contains("PGPOOL_MODE=logical"), "{err}");
    assert!(!stdout(&out).contains("APP-RAN"), "the app ran");
    assert!(l.runtime_dir_is_gone(), "runtime directory left");
    assert!(!err.contains(primary.password()));
    // Nothing was written anywhere by the attempt: the copy still has only what it was sent.
    assert_eq!(copy.psql(0, "select count(*) from items"), "11");
}

/// `PGPOOL_MODE=logical` with the copy: reads spread to the copy, writes go to the primary
/// (and reach the copy through the subscription). With the primary stopped, writes fail with
/// pgpool's error and never land on the copy (patch 0008; stock pgpool wrote them there), while
/// reads go on from the copy. Started again, the primary takes writes again: the launcher
/// attaches it (pgpool never re-attaches a primary by itself).
#[test]
fn a_copy_never_takes_the_writes_of_a_stopped_primary() {
    let (primary, copy) = primary_and_copy();
    let mut l = Launcher::bare();
    l.set("DATABASE_URL", primary.primary_url())
        .set("COPY_URL", copy.primary_url())
        .set("PGPOOL_URLS", "DATABASE_URL COPY_URL")
        .set("PGPOOL_MODE", "logical");
    let live = Live::start(l);
    let psql = primary.pg_bin().join("psql");
    let run = |sql: &str| live.sql(&psql, sql);
    let (p, cp) = (primary.port(0).to_string(), copy.port(0).to_string());
    let reads: Vec<String> = (0..8)
        .map(|_| run("select inet_server_port()").unwrap())
        .collect();
    eprintln!("FIGURES logical reads before: {reads:?} (primary {p}, copy {cp})");
    assert!(
        reads.iter().all(|r| *r == cp),
        "reads go to the copy: {reads:?}"
    );
    assert_eq!(
        run("insert into items values (-1, 'w') returning inet_server_port()").unwrap(),
        p
    );
    copy.wait_for(
        0,
        "select count(*) from items where id = -1",
        "1",
        Duration::from_secs(30),
    );

    primary.node(0, "stop");
    let stopped = std::time::Instant::now();
    // Until pgpool has detached it, a session may fail as it connects; bounded.
    let refused = loop {
        match run("insert into items values (-2, 'w') returning inet_server_port()") {
            Err(e) if e.contains("the primary is down") => break e,
            Ok(port) => panic!("a write was served by {port} with the primary stopped"),
            Err(_) if stopped.elapsed() < Duration::from_secs(20) => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Err(e) => panic!(
                "writes still fail otherwise after 20 s: {e}\n{}",
                live.log()
            ),
        }
    };
    let refused_after = stopped.elapsed();
    let reads: Vec<Result<String, String>> =
        (0..4).map(|_| run("select inet_server_port()")).collect();
    eprintln!(
        "FIGURES logical primary stopped: write refused after {refused_after:?} ({refused}); reads {reads:?}"
    );
    assert!(
        reads.iter().all(|r| r.as_deref() == Ok(cp.as_str())),
        "reads go on from the copy: {reads:?}\n{}",
        live.log()
    );
    // pgpool sends a multi-statement query to the primary whole, by a path of its own.
    let multi = run("insert into items values (-4, 'w'); select inet_server_port()");
    assert!(
        multi
            .as_ref()
            .is_err_and(|e| e.contains("the primary is down")),
        "a multi-statement write: {multi:?}"
    );
    assert_eq!(
        copy.psql(0, "select count(*) from items where id in (-2, -4)"),
        "0",
        "a write landed on the copy"
    );

    primary.node(0, "start");
    let started = std::time::Instant::now();
    loop {
        match run("insert into items values (-3, 'w') returning inet_server_port()") {
            Ok(port) => {
                assert_eq!(port, p, "the write went to the primary");
                break;
            }
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "writes did not come back within 30 s: {e}\n{}",
                    live.log()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    eprintln!(
        "FIGURES logical primary back: writes again after {:?}",
        started.elapsed()
    );
    assert!(
        live.log().contains(&format!(
            "{}source=DATABASE_URL ",
            head(events::PRIMARY_REATTACHED)
        )),
        "{}",
        live.log()
    );
    assert!(
        !live.log().contains("primary-adopted"),
        "the copy was promoted:\n{}",
        live.log()
    );
    assert_eq!(
        copy.psql(0, "select count(*) from items where id = -2"),
        "0"
    );
}
