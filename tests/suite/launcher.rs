//! The launcher end to end: real pgpool in front of the shared TLS/SCRAM cluster.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::cluster;
use crate::support::launcher::*;
use crate::support::proc::{cmdline, descendants, processes_mentioning};

#[test]
fn reads_spread_over_the_followers_and_writes_reach_the_primary() {
    let c = cluster::shared();
    let l = Launcher::new(c);
    let out = l.run_sh(
        r#"for i in $(seq 40); do psql "$DATABASE_URL" -XAtc 'select inet_server_port()' || exit 9; done
           psql "$DATABASE_URL" -XAtc "insert into items values (1000 + $$, 'w') returning 'write ' || inet_server_port()""#,
    );
    assert_ok(&out);
    let t = tally(&stdout(&out));
    let (p, f1, f2) = (
        c.port(0).to_string(),
        c.port(1).to_string(),
        c.port(2).to_string(),
    );
    let count = |k: &str| t.get(k).copied().unwrap_or(0);
    assert_eq!(count(&p), 0, "no read on the primary: {t:?}");
    assert_eq!(count(&f1) + count(&f2), 40, "{t:?}");
    assert!(
        count(&f1) >= 5 && count(&f2) >= 5,
        "both followers serve reads: {t:?}"
    );
    assert_eq!(
        count(&format!("write {p}")),
        1,
        "the write went to the primary: {t:?}"
    );
    assert!(l.runtime_dir_is_gone() && l.port_is_free());
}

#[test]
fn the_app_sees_database_url_pointing_at_pgpool() {
    let c = cluster::shared();
    let l = Launcher::new(c);
    let out =
        l.run_sh(r#"printf '%s\n' "$DATABASE_URL" "$PGPOOL_URL" "$PGPOOL_ORIGINAL_DATABASE_URL""#);
    assert_ok(&out);
    let s = stdout(&out);
    let lines: Vec<&str> = s.lines().collect();
    let expected = format!(
        "postgres://app:p%40ss%3Aw%2Frd%27%22%23%25%20%5Cx@127.0.0.1:{}/appdb?sslmode=disable",
        l.port
    );
    assert_eq!(
        lines,
        vec![
            expected.as_str(),
            expected.as_str(),
            c.primary_url().as_str()
        ]
    );
}

#[test]
fn disabled_means_the_command_runs_untouched() {
    let c = cluster::shared();
    let mut l = Launcher::new(c);
    // Nothing pgpool-related is even looked at.
    l.set("PGPOOL_ENABLED", "off")
        .set("PGPOOL_BIN", "/nonexistent")
        .set("PGPOOL_PORT", "bad");
    let child = l
        .command(&[
            "sh",
            "-c",
            r#"echo "$$"; printf '%s\n' "$DATABASE_URL"; env | sort"#,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_ok(&out);
    let s = stdout(&out);
    let mut lines = s.lines();
    assert_eq!(
        lines.next(),
        Some(pid.to_string().as_str()),
        "exec'd: same pid"
    );
    assert_eq!(lines.next(), Some(c.primary_url().as_str()));
    assert!(!s.contains("PGPOOL_URL="), "{s}");
    assert!(!s.contains("PGPOOL_ORIGINAL_DATABASE_URL"), "{s}");
    assert_eq!(stderr(&out), "");
}

#[test]
fn stdin_reaches_the_app() {
    let c = cluster::shared();
    let l = Launcher::new(c);
    let mut child = l
        .command(&["cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_ok(&out);
    assert_eq!(stdout(&out), "hi\n");
}

#[test]
fn exit_codes_pass_through() {
    let c = cluster::shared();
    let l = Launcher::new(c);
    let out = l.run_sh("exit 7");
    assert_eq!(out.status.code(), Some(7), "{}", show(&out));
    let out = l.run_sh("kill -TERM $$");
    assert_eq!(out.status.code(), Some(143), "{}", show(&out));
    let out = l.command(&["/nonexistent/app"]).output().unwrap();
    assert_eq!(out.status.code(), Some(127), "{}", show(&out));
    assert!(
        stderr(&out).contains("start-pgpool: error: /nonexistent/app:"),
        "{}",
        show(&out)
    );
    assert!(l.runtime_dir_is_gone() && l.port_is_free());
}

#[test]
fn no_command_is_a_usage_error() {
    let out = Launcher::empty().command(&[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("Usage"), "{}", show(&out));
}

#[test]
fn secrets_stay_out_of_argv_and_only_pool_passwd_holds_them() {
    let c = cluster::shared();
    let l = Launcher::new(c);
    let child = l.spawn_holding();

    // The launcher, pgpool with all its children, and the app (other tests' psql clients
    // carry the URL in their argv, so only our own tree is looked at).
    let tree: Vec<(u32, String)> = descendants(child.id())
        .into_iter()
        .map(|p| (p, cmdline(p)))
        .collect();
    assert!(
        tree.iter().filter(|(_, c)| c.contains("pgpool")).count() >= 5,
        "{tree:?}"
    );
    for needle in [c.password(), "p%40ss%3Aw%2Frd", "p@ss:w", "p@ss"] {
        let hits: Vec<_> = tree.iter().filter(|(_, c)| c.contains(needle)).collect();
        assert!(hits.is_empty(), "password in argv: {hits:?}");
    }

    let dir = l.runtime_dir().expect("runtime dir");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let p = e.path();
        if p.is_file() {
            assert_eq!(mode(&p) & 0o077, 0, "{} is private", p.display());
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
            if e.file_name() == "pool_passwd" {
                assert_eq!(text, "app:TEXTp@ss\\:w/rd'\"#% \\\\x\n");
            } else {
                assert!(!text.contains("p@ss"), "{} holds no password", p.display());
            }
        }
    }
    let out = release(child);
    assert_ok(&out);
    assert!(!stderr(&out).contains("p@ss"), "{}", show(&out));
    assert!(!dir.exists() && l.port_is_free());
    assert!(
        processes_mentioning(&dir.display().to_string()).is_empty(),
        "no pgpool left"
    );
}

#[test]
fn an_unreachable_primary_fails_within_the_deadline_and_the_app_never_starts() {
    let c = cluster::shared();
    let mut l = Launcher::new(c);
    let dead = format!("postgres://app:secretpw1@127.0.0.1:{}/appdb", free_port());
    let follower = c
        .follower_url(1)
        .replace("p%40ss%3Aw%2Frd%27%22%23%25%20%5Cx", "secretpw1");
    l.set("DATABASE_URL", &dead)
        .set("FOLLOWER1_URL", &follower)
        .set("PGPOOL_URLS", "DATABASE_URL FOLLOWER1_URL")
        .set("PGPOOL_READY_TIMEOUT", "3");
    let marker = l.runtime_parent.path().join("app-ran");
    let started = Instant::now();
    let out = l.run_sh(&format!("touch {}", marker.display()));
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.starts_with("start-pgpool: error: pgpool was not ready within 3s"),
        "{err}"
    );
    assert!(
        last.contains("the primary DATABASE_URL"),
        "names the primary's variable: {err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(!err.contains("secretpw1"));
    assert!(!marker.exists(), "the app never started");
    assert!(
        took < Duration::from_secs(20),
        "bounded by the deadline plus the stop: {took:?}"
    );
    assert!(l.runtime_dir_is_gone() && l.port_is_free());
}

#[test]
fn a_bad_url_is_one_line_naming_the_variable() {
    let c = cluster::shared();
    let mut l = Launcher::new(c);
    l.set(
        "FOLLOWER2_URL",
        "postgres://app:topsecret@127.0.0.1:99999/appdb",
    );
    let out = l.run_sh("echo should-not-run");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        "start-pgpool: error: FOLLOWER2_URL: port must be a number from 1024 to 65535\n"
    );
}
