//! Lifecycle end to end (issue 4): signals, shutdown order, exit codes and interactive use,
//! with the real binary, the real pgpool and the shared TLS/SCRAM cluster. One test per
//! scenario; every test ends by checking that no process of the run is left, the runtime
//! directory is gone and the port is free. Times from signal to launcher exit are printed
//! (`cargo test --test suite lifecycle:: -- --nocapture`), never asserted beyond hang-catching
//! bounds.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::support::api::events;
use crate::support::cluster;
use crate::support::l2met::{at, head};
use crate::support::launcher::*;
use crate::support::proc::{Proc, children_of, cmdline, descendants, stat};

fn bash(l: &Launcher, script: &str) -> Command {
    l.command(&["bash", "-c", script])
}

/// The app's side of one held DB session: `q SQL` runs SQL in it and echoes `app: RESULT`.
/// `IGNORE_TERM` makes the session's psql ignore SIGTERM: a platform that signals every process
/// would otherwise kill the client that a real app keeps inside its own process.
const SESSION: &str = r#"
coproc P { IGNORE_TERM exec psql "$DATABASE_URL" -XAtq -v ON_ERROR_STOP=1 2>&1; }
in=${P[1]} out=${P[0]} sess=$P_PID
q() { echo "$1" >&$in; read -r -t 10 -u $out l || l='(no answer)'; echo "app: $l"; }
close_session() { exec {in}>&-; wait $sess; echo "app: session closed"; }
n=0; trap 'n=$((n+1)); echo "app: got TERM $n"' TERM
until_term() { while [ $n = 0 ]; do sleep 0.05; done; }
"#;

fn session_app(ignore_term: bool, body: &str) -> String {
    let ignore = if ignore_term { "trap '' TERM;" } else { "" };
    format!("{}\n{body}", SESSION.replace("IGNORE_TERM", ignore))
}

// 1 ------------------------------------------------------------------------------------------

/// Heroku: SIGTERM to every process of the dyno at once (twice), SIGKILL 30 s later.
#[test]
fn heroku_sigterm_to_every_process_lets_the_app_finish_its_work() {
    let c = cluster::shared();
    let l = Launcher::new(c);
    let app = session_app(
        true,
        r#"q "select 'ready';"
           until_term
           q "insert into items values (2000000 + $$, 'heroku') returning 'wrote ' || v;"
           sleep 0.5
           q "select 'still ' || 'serving';"
           close_session
           sleep 0.5
           echo "app: exiting"
           exit 42"#,
    );
    let mut r = Run::spawn(bash(&l, &app));
    r.expect("app: ready");
    r.watch();
    let every = r.tree();
    let started = Instant::now();
    for p in &every {
        let _ = kill(Pid::from_raw(*p as i32), Signal::SIGTERM);
    }
    r.expect("app: wrote heroku");
    // Heroku may send it again.
    for p in &every {
        let _ = kill(Pid::from_raw(*p as i32), Signal::SIGTERM);
    }
    let d = r.finish();
    let took = started.elapsed();
    eprintln!("scenario 1 (heroku): SIGTERM to launcher exit {took:?}");
    assert_eq!(d.status.code(), Some(42), "{}", d.show());
    for line in ["app: still serving", "app: session closed", "app: exiting"] {
        assert!(d.has(line), "{line:?}\n{}", d.show());
    }
    assert!(d.error_lines().is_empty(), "{}", d.show());
    assert_eq!(
        c.psql(
            0,
            "select v from items where id >= 2000000 and v = 'heroku'"
        ),
        "heroku"
    );
    assert!(took < Duration::from_secs(30), "inside Heroku's 30 s");
    l.assert_clean(&d);
}

// 2 ------------------------------------------------------------------------------------------

/// Docker: SIGTERM to PID 1 only, the launcher being PID 1 of its own pid namespace.
#[test]
fn pid1_sigterm_reaches_the_app_which_drains_through_pgpool_and_orphans_are_reaped() {
    let c = cluster::shared();
    let l = Launcher::new(c);
    let app = session_app(
        false,
        r#"q "select 'ready';"
           echo "app: launcher pid $PPID"
           orphan=$(sh -c 'sleep 0.3 >/dev/null 2>&1 & echo $!')
           echo "app: orphan's parent $(cut -d' ' -f4 /proc/$orphan/stat)"
           until_term
           q "insert into items values (3000000 + $$, 'pid1') returning 'wrote ' || v;"
           echo "app: $(psql "$DATABASE_URL" -XAtc "select 'new ' || 'connection'")"
           if [ -e /proc/$orphan ]; then
             echo "app: orphan left in state $(cut -d' ' -f3 /proc/$orphan/stat)"
           else
             echo "app: orphan reaped"
           fi
           close_session
           exit 42"#,
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--kill-child", "--mount-proc", BIN])
        .args(["bash", "-c", &app])
        .env_clear()
        .envs(&l.env)
        .stdin(Stdio::null());
    let mut r = Run::spawn(cmd);
    r.expect("app: ready");
    r.expect("app: launcher pid 1");
    r.expect("app: orphan's parent 1");
    let unshare = r.launcher;
    r.launcher = children_of(unshare)
        .into_iter()
        .find(|&p| cmdline(p).starts_with(BIN))
        .expect("the launcher under unshare");
    // The orphan has exited by now; it must not stay a zombie of PID 1.
    std::thread::sleep(Duration::from_millis(800));
    let zombies: Vec<u32> = children_of(r.launcher)
        .into_iter()
        .filter(|&p| stat(p).is_some_and(|s| s.state == "Z"))
        .collect();
    assert!(zombies.is_empty(), "zombies under PID 1: {zombies:?}");
    r.watch();
    let pgpool = r.pgpool_pid();
    let started = Instant::now();
    kill(Pid::from_raw(r.launcher as i32), Signal::SIGTERM).unwrap();
    r.expect("app: got TERM 1");
    let d = r.finish();
    let took = started.elapsed();
    eprintln!("scenario 2 (PID 1): SIGTERM to launcher exit {took:?}");
    assert_eq!(d.status.code(), Some(42), "{}", d.show());
    for line in [
        "app: wrote pid1",
        "app: new connection",
        "app: orphan reaped",
        "app: session closed",
    ] {
        assert!(d.has(line), "{line:?}\n{}", d.show());
    }
    assert!(d.error_lines().is_empty(), "{}", d.show());
    assert!(
        d.seen.iter().any(|p| p.pid == pgpool),
        "pgpool ran inside the namespace"
    );
    l.assert_clean(&d);
}

// 3 ------------------------------------------------------------------------------------------

#[test]
fn ctrl_c_on_a_terminal_reaches_the_console_only_and_the_console_survives_it() {
    let c = cluster::shared();
    let l = Launcher::new(c);
    let (mut child, mut pty) = l.on_terminal(&[
        "sh",
        "-c",
        r#"exec psql -X -P pager=off -v PROMPT1='console> ' "$DATABASE_URL""#,
    ]);
    let launcher = child.id();
    let mut cleanup = KillTreeOnDrop::new(launcher);
    let mut seen: BTreeMap<u32, Proc> = BTreeMap::new();
    let watch = |seen: &mut BTreeMap<u32, Proc>| record_tree(seen, launcher);
    pty.expect("console> ");
    watch(&mut seen);
    let psql = descendants(launcher)
        .into_iter()
        .find(|&p| cmdline(p).starts_with("psql") || cmdline(p).contains("/psql"))
        .expect("psql runs");
    let pgpool = descendants(launcher)
        .into_iter()
        .find(|&p| cmdline(p).contains("pgpool -n"))
        .expect("pgpool runs");
    let (ps, pg, ls) = (
        stat(psql).unwrap(),
        stat(pgpool).unwrap(),
        stat(launcher).unwrap(),
    );
    assert_eq!(ps.tpgid, ps.pgrp, "the console's group owns the terminal");
    assert!(
        ps.pgrp != pg.pgrp && pg.pgrp != ls.pgrp && ps.pgrp != ls.pgrp,
        "console, pgpool and launcher in three groups"
    );
    let pgpool_proc = seen[&pgpool].clone();

    pty.type_in("select pg_sleep(60);\n");
    // Ctrl-C once the query is really running (it is load-balanced to any node).
    let running = "select count(*) from pg_stat_activity where query = 'select pg_sleep(60);'";
    let until = Instant::now() + HANG;
    while (0..3).all(|n| c.psql(n, running) == "0") {
        assert!(Instant::now() < until, "pg_sleep never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    pty.type_in("\x03");
    pty.expect("canceling statement due to user request");
    pty.type_in("select 'still' || 'here' as after_ctrl_c;\n");
    pty.expect("stillhere");
    assert!(pgpool_proc.alive(), "pgpool got no SIGINT");
    watch(&mut seen);
    pty.type_in("\\q\n");
    let until = Instant::now() + HANG;
    let status = loop {
        watch(&mut seen);
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < until, "launcher did not exit after \\q");
        std::thread::sleep(Duration::from_millis(20));
    };
    cleanup.disarm();
    let text = pty.text.lock().unwrap().clone();
    let d = Done {
        status,
        out: text.lines().map(String::from).collect(),
        err: String::new(),
        seen: seen.into_values().collect(),
    };
    assert_eq!(status.code(), Some(0), "{}", d.show());
    assert!(
        !text.contains("level=error") && !text.contains("fast shutdown"),
        "{text}"
    );
    l.assert_clean(&d);
}

// 4 ------------------------------------------------------------------------------------------

/// Every signal tini forwards but TERM (the last, it ends the run): ALRM and PWR, whose default
/// action would end the launcher, among them.
#[test]
fn every_forwarded_signal_reaches_the_app_once() {
    let c = cluster::shared();
    let l = Launcher::new(c);
    let names = [
        "HUP", "INT", "QUIT", "USR1", "USR2", "WINCH", "ALRM", "PWR", "VTALRM", "PROF", "XCPU",
        "XFSZ", "IO", "URG", "STKFLT", "TSTP", "CONT",
    ];
    let mut r = Run::spawn(bash(
        &l,
        r#"for s in HUP INT QUIT USR1 USR2 WINCH ALRM PWR VTALRM PROF XCPU XFSZ IO URG STKFLT TSTP CONT; do
             trap "echo got $s" $s
           done
           trap 'echo got TERM; exit 3' TERM
           echo ready
           while :; do sleep 0.05; done"#,
    ));
    r.expect("ready");
    let pid = Pid::from_raw(r.launcher as i32);
    for name in names {
        let sig: Signal = format!("SIG{name}").parse().unwrap();
        kill(pid, sig).unwrap();
        r.expect(&format!("got {name}"));
    }
    kill(pid, Signal::SIGTERM).unwrap();
    let d = r.finish();
    assert_eq!(d.status.code(), Some(3), "{}", d.show());
    let t = tally(&d.out.join("\n"));
    for name in names.iter().chain(["TERM"].iter()) {
        assert_eq!(
            t.get(&format!("got {name}")),
            Some(&1),
            "SIG{name} once: {t:?}"
        );
    }
    l.assert_clean(&d);
}

// 5 ------------------------------------------------------------------------------------------

#[test]
fn exit_code_n_is_ours_and_death_by_signal_s_is_128_plus_s() {
    let c = cluster::shared();
    let l = Launcher::new(c);
    let cases: &[(&str, i32)] = &[
        ("exit 0", 0),
        ("exit 1", 1),
        ("exit 42", 42),
        ("exit 255", 255),
        ("kill -KILL $$", 128 + 9),
        ("kill -TERM $$", 128 + 15),
        ("kill -INT $$", 128 + 2),
        ("kill -USR1 $$", 128 + 10),
    ];
    for (script, want) in cases {
        let d = Run::spawn(l.command(&["sh", "-c", script])).finish();
        assert_eq!(d.status.code(), Some(*want), "{script}: {}", d.show());
        assert!(d.error_lines().is_empty(), "{script}: {}", d.show());
        l.assert_clean(&d);
    }
}

// 6 ------------------------------------------------------------------------------------------

/// SIGKILL to pgpool's whole group, as an OOM kill or a crash would leave it.
fn kill_pgpool(r: &Run) -> Instant {
    let pgpool = r.pgpool_pid();
    let at = Instant::now();
    killpg(Pid::from_raw(pgpool as i32), Signal::SIGKILL).unwrap();
    at
}

#[track_caller]
fn assert_one_line_saying_pgpool_died(d: &Done) {
    let errors = d.error_lines();
    assert_eq!(errors.len(), 1, "one error line: {}", d.show());
    assert!(
        errors[0].starts_with("start-pgpool: error: pgpool exited unexpectedly"),
        "{}",
        d.show()
    );
}

#[test]
fn pgpool_dying_stops_the_app_and_fails_with_one_line() {
    let c = cluster::shared();
    let l = Launcher::new(c);
    let mut r = Run::spawn(bash(
        &l,
        r#"trap 'echo app got TERM; exit 0' TERM
           echo ready
           while :; do sleep 0.05; done"#,
    ));
    r.expect("ready");
    r.watch();
    let started = kill_pgpool(&r);
    let d = r.finish();
    eprintln!(
        "scenario 6 (pgpool killed, app exits on SIGTERM): to launcher exit {:?}",
        started.elapsed()
    );
    assert_eq!(d.status.code(), Some(1), "{}", d.show());
    assert!(d.has("app got TERM"), "{}", d.show());
    assert_one_line_saying_pgpool_died(&d);
    l.assert_clean(&d);
}

#[test]
fn pgpool_dying_kills_an_app_that_ignores_sigterm_after_the_grace_period() {
    let c = cluster::shared();
    let mut l = Launcher::new(c);
    l.set("PGPOOL_APP_STOP_TIMEOUT", "1.5");
    let mut r = Run::spawn(bash(
        &l,
        // `ready` only once the worker has exec'd `sleep`: the watcher records each process
        // with the command line it first sees.
        r#"trap 'echo app got TERM' TERM
           sleep 1000 &
           for i in $(seq 200); do [ "$(cat /proc/$!/comm 2>/dev/null)" = sleep ] && break; sleep 0.01; done
           echo ready
           while :; do sleep 0.05; done"#,
    ));
    r.expect("ready");
    r.watch();
    let started = kill_pgpool(&r);
    let d = r.finish();
    eprintln!(
        "scenario 6 (pgpool killed, app ignores SIGTERM, grace 1.5 s): to launcher exit {:?}",
        started.elapsed()
    );
    assert_eq!(d.status.code(), Some(1), "{}", d.show());
    assert!(d.has("app got TERM"), "{}", d.show());
    assert!(
        d.err.contains(&head(events::APP_STOP_TIMEOUT)),
        "{}",
        d.show()
    );
    assert!(
        d.seen.iter().any(|p| p.cmd == "sleep 1000 "),
        "the app's worker was seen: {:?}",
        d.seen
    );
    assert_one_line_saying_pgpool_died(&d);
    // Includes the app's background `sleep 1000`: the SIGKILL went to its whole group.
    l.assert_clean(&d);
}

// 7 ------------------------------------------------------------------------------------------

#[test]
fn a_sigkilled_launcher_leaves_no_pgpool_no_app_and_no_runtime_dir() {
    let c = cluster::shared();
    let l = Launcher::new(c);
    let mut r = Run::spawn(bash(
        &l,
        r#"trap 'echo app got TERM; exit 0' TERM
           psql "$DATABASE_URL" -XAtc "select 'connected'"
           echo ready
           while :; do sleep 0.05; done"#,
    ));
    r.expect("connected");
    r.expect("ready");
    r.watch();
    let pgpool = r.pgpool_pid();
    let group: Vec<u32> = r
        .tree()
        .into_iter()
        .filter(|&p| stat(p).is_some_and(|s| s.pgrp == pgpool as i32))
        .collect();
    assert!(group.len() >= 5, "pgpool and its children: {group:?}");
    let started = Instant::now();
    kill(Pid::from_raw(r.launcher as i32), Signal::SIGKILL).unwrap();
    let d = r.finish();
    assert_eq!(d.status.signal(), Some(9));
    // Bounded wait for the guard's cleanup.
    let until = Instant::now() + HANG;
    while (d.seen.iter().any(Proc::alive) || !l.runtime_dir_is_gone() || !l.port_is_free())
        && Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "scenario 7 (launcher SIGKILLed): everything gone after {:?}",
        started.elapsed()
    );
    assert!(d.has("app got TERM"), "{}", d.show());
    l.assert_clean(&d);
}

// 8 ------------------------------------------------------------------------------------------

#[test]
fn a_second_and_third_sigterm_change_nothing() {
    let c = cluster::shared();
    let l = Launcher::new(c);
    let app = session_app(
        false,
        r#"q "select 'ready';"
           until_term
           for i in 1 2 3; do
             echo "app: $(psql "$DATABASE_URL" -XAtc "select 'drain $i'")"
             sleep 0.3
           done
           q "insert into items values (4000000 + $$, 'drained') returning 'wrote ' || v;"
           close_session
           exit 42"#,
    );
    let mut r = Run::spawn(bash(&l, &app));
    r.expect("app: ready");
    let pid = Pid::from_raw(r.launcher as i32);
    for n in 1..=3 {
        kill(pid, Signal::SIGTERM).unwrap();
        r.expect(&format!("app: got TERM {n}"));
    }
    let d = r.finish();
    assert_eq!(d.status.code(), Some(42), "{}", d.show());
    for line in [
        "app: drain 1",
        "app: drain 2",
        "app: drain 3",
        "app: wrote drained",
        "app: session closed",
    ] {
        assert!(d.has(line), "{line:?}\n{}", d.show());
    }
    assert!(d.error_lines().is_empty(), "{}", d.show());
    l.assert_clean(&d);
}

// 9 ------------------------------------------------------------------------------------------

#[test]
fn piped_stdin_reaches_the_app_and_its_stdio_is_the_launchers_own() {
    let c = cluster::shared();
    let l = Launcher::new(c);
    let out = Command::new("sh")
        .args(["-c", &format!("echo data | '{BIN}' cat")])
        .env_clear()
        .envs(&l.env)
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "data\n", "{}", show(&out));
    assert!(out.status.success(), "{}", show(&out));

    let mut cmd = l.command(&[
        "sh",
        "-c",
        r#"for fd in 0 1 2; do echo "fd$fd $(readlink /proc/$$/fd/$fd)"; done
           echo to-stderr >&2
           read line; echo "read $line""#,
    ]);
    cmd.stdin(Stdio::piped());
    let mut r = Run::spawn(cmd);
    let mut stdin = r.child.stdin.take().unwrap();
    for fd in 0..3 {
        r.expect_prefix(&format!("fd{fd} "));
        let ours = std::fs::read_link(format!("/proc/{}/fd/{fd}", r.launcher)).unwrap();
        let line = r.out.last().unwrap().clone();
        assert_eq!(line, format!("fd{fd} {}", ours.display()), "{}", r.show());
    }
    writeln!(stdin, "hello").unwrap();
    drop(stdin);
    let d = r.finish();
    assert!(d.status.success(), "{}", d.show());
    assert!(d.has("read hello"), "{}", d.show());
    assert!(d.err.lines().any(|l| l == "to-stderr"), "{}", d.show());
    l.assert_clean(&d);
}

// 10 -----------------------------------------------------------------------------------------

/// The launcher's stop while pgpool is replacing children: pgpool must exit on its SIGINT, not
/// after `PGPOOL_STOP_TIMEOUT` and a SIGKILL of its group. pgpool replaces a child whenever one
/// exits: `child_max_connections` reached or, what our users meet, every child whose node was
/// failed over, as its session ends, which is when the app exits. Its main process, taking the
/// SIGINT in the middle of such a fork, signalled the pid of the child that had died instead
/// of its replacement, and waited for it for ever (patch 0010; pgpool's own
/// 037.failover_session hung this way). Here 24 sessions close at once and each child then
/// exits (`child_max_connections = 1`); the launcher is stopped a few milliseconds later, a
/// different few each round, so that its SIGINT lands among pgpool's forks.
#[test]
fn pgpool_exits_on_the_stop_even_while_it_replaces_children() {
    const ROUNDS: u64 = 16;
    let c = cluster::shared();
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("pgpool.conf.tera");
    let builtin = concat!(env!("CARGO_MANIFEST_DIR"), "/templates/pgpool.conf.tera");
    let mut text = std::fs::read_to_string(builtin).unwrap();
    text.push_str("\nchild_max_connections = 1\n");
    std::fs::write(&template, text).unwrap();

    let mut hung = Vec::new();
    let mut slowest = Duration::ZERO;
    for round in 0..ROUNDS {
        let mut l = Launcher::new(c);
        l.set("PGPOOL_CONF_TEMPLATE", &template)
            .set("PGPOOL_NUM_INIT_CHILDREN", "32");
        let mut live = Live::start(l);
        let held = crate::support::load::Held::open(&live.url, 24);
        let delay = Duration::from_millis(2 * round);
        held.close();
        std::thread::sleep(delay);
        let t = Instant::now();
        let log = live.stop();
        let took = t.elapsed();
        slowest = slowest.max(took);
        // A child left behind after main exited shows as pgpool-children-left.
        let timed_out = log.contains(&at(events::PGPOOL_STOP_TIMEOUT))
            || log.contains(&at(events::PGPOOL_CHILDREN_LEFT));
        eprintln!(
            "round {round}: stopped {} ms after the sessions closed, in {:.2} s{}",
            delay.as_millis(),
            took.as_secs_f64(),
            if timed_out {
                ", pgpool-stop-timeout"
            } else {
                ""
            }
        );
        if timed_out {
            hung.push((round, log));
        }
    }
    eprintln!(
        "FIGURES stop while replacing children: rounds={ROUNDS} stop_timeouts={} slowest={:.2}s",
        hung.len(),
        slowest.as_secs_f64()
    );
    // Stock 4.7.2 hangs this way too (8 of 16 rounds); Debian's 4.3.5 did not (0 of 16).
    if let Some((round, log)) = hung.first() {
        panic!(
            "pgpool did not exit on the launcher's SIGINT in {} of {ROUNDS} rounds (round {round}):\n{log}",
            hung.len()
        );
    }
}
