//! Our pgpool's own changes (patches/), each held to what it changes, through the real binary
//! in front of the shared cluster. These assert only on the buildpack's own build: stock
//! pgpool is expected to fail them, which is how each test shows its patch is needed.

use crate::support::cluster;
use crate::support::launcher::*;

/// The pgpool child serving this TCP session: of the rows of `SHOW POOL_PROCESSES` running a
/// command (this very query; the launcher's monitor may be running one too, over the Unix
/// socket), the one whose title names a TCP client.
fn own_child(c: &mut postgres::Client) -> u32 {
    let rows = c.simple_query("show pool_processes").unwrap();
    rows.iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) if r.get("status") == Some("Execute command") => {
                r.get("pool_pid")?.parse().ok()
            }
            _ => None,
        })
        .find(|&pid| crate::support::proc::cmdline(pid).contains("127.0.0.1("))
        .expect("a pool_processes row for this session")
}

/// Write system calls a process has made (`syscw` of /proc/PID/io).
fn writes(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("syscw: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("syscw in /proc/PID/io")
}

/// Patches 0002 to 0004, the cost of a prepared query: each flush is a write(2) and, to a TLS
/// server, a TLS record, and each node asked to Sync is a round trip. Measured per prepared
/// transaction (Bind, Execute, Sync of a named statement, as drivers send it: in one write) by
/// the serving child's write calls.
#[test]
fn prepared_statements_cost_fewer_writes() {
    let c = cluster::shared();
    let live = Live::start(Launcher::new(c));
    let mut db = postgres::Client::connect(&live.url, postgres::NoTls).unwrap();
    let stmt = db.prepare("select inet_server_port()").unwrap();
    for _ in 0..20 {
        db.query_one(&stmt, &[]).unwrap();
    }
    let child = own_child(&mut db);
    const N: u64 = 300;
    let before = writes(child);
    for _ in 0..N {
        db.query_one(&stmt, &[]).unwrap();
    }
    let per_txn = (writes(child) - before) as f64 / N as f64;
    eprintln!(
        "FIGURES prepared_txn_writes pgpool={} writes_per_txn={per_txn:.2}",
        pgpool_bin().display()
    );
    drop(db);
    // Measured with 3 nodes, exactly the same in every run: stock 4.6.1 and 4.7.2 make 8
    // (Bind, Execute and its Flush each written on their own, Sync to all 3 nodes, the answer to
    // the client); 0002 makes it 6 (Bind buffered, Execute and Flush in one write), 0003 4 (Sync
    // to the read node only), 0004 3 (Execute goes out with the Sync, no Flush).
    assert!(
        per_txn <= 3.5,
        "{per_txn:.2} writes per prepared transaction (8 stock, 3 with patches 0002-0004):\n{}",
        live.log()
    );
}

/// Patch 0012: a child's relcaches (what pgpool asks a server about a table or a function
/// before it routes a query: temporary? a system catalog? a view? volatile?) hold the entries
/// the child filled, not relcache_size zeroed ones each. Measured as the growth of the serving
/// child's anonymous memory over a session's first queries of each kind.
#[test]
fn a_child_pays_only_for_the_relcache_entries_it_fills() {
    let c = cluster::shared();
    let live = Live::start(Launcher::new(c));
    let mut db = postgres::Client::connect(&live.url, postgres::NoTls).unwrap();
    let child = own_child(&mut db);
    let anon = || crate::support::proc::smaps_kib(child, "Pss_Anon").unwrap();
    let before = anon();
    for q in [
        "select v from items where id = 1",
        "select count(*) from pg_catalog.pg_class where relname = 'items'",
        "select length(v), now() from items where id = 1",
        "select * from (select id from items) s where id = 1",
    ] {
        db.simple_query(q).unwrap();
    }
    let grew = anon().saturating_sub(before);
    eprintln!(
        "FIGURES relcache child_anon_growth_kib={grew} pgpool={}",
        pgpool_bin().display()
    );
    // Measured: 4.7.2 grows 1000-1600 KiB here (two or three relcaches of 256 items of 2 kB,
    // zeroed when first used), with 0012 under 100 KiB.
    assert!(
        grew < 400,
        "the serving child's anonymous memory grew {grew} KiB over four queries (about 512 KiB \
         per relcache without patch 0012)"
    );
}
