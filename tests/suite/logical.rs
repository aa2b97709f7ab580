//! A logically replicated copy (native publication and subscription, on a server of its own)
//! named as a follower: it is not in recovery, so pgpool would take it for the primary and
//! send the writes there (measured: it did, from the start). The launcher refuses it at start,
//! by name, before the app runs.

use std::time::Duration;

use crate::support::cluster::{self, Cluster};
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
    primary.psql(0, "insert into items values (-77, 'through the publication')");
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
