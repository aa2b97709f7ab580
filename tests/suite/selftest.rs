//! The test support itself (tests/support), what every other integration test relies on: the
//! cluster (etc/test-cluster + cluster.rs), the load, and the oracles that read back what the
//! launcher writes (l2met lines, pgpool.conf as pgpool lexes it, pool_passwd).

use std::process::Command;
use std::time::Duration;

use crate::support::api::events;
use crate::support::api::render::pool_passwd;
use crate::support::api::secret::Secret;
use crate::support::cluster::{self, parse_env};
use crate::support::conf_lexer::{Kind, parse, tokens};
use crate::support::l2met;
use crate::support::launcher::{Launcher, Live};
use crate::support::load::{Load, Outcome, Report, Who, burst};
use crate::support::pool_passwd;
use crate::support::proc::processes_in;

const PASSWORD: &str = "p@ss:w/rd'\"#% \\x";
const PASSWORD_ENC: &str = "p%40ss%3Aw%2Frd%27%22%23%25%20%5Cx";

#[test]
fn shared_cluster_streams_to_two_followers() {
    let c = cluster::shared();
    assert_eq!(c.followers(), 2);
    assert_eq!(
        c.psql(
            0,
            "select count(*) from pg_stat_replication where state = 'streaming'"
        ),
        "2"
    );
    assert_eq!(
        c.psql(
            0,
            "select string_agg(application_name, ',' order by 1) from pg_stat_replication"
        ),
        "node1,node2"
    );
    assert_eq!(c.psql(0, "select pg_is_in_recovery()"), "f");
    assert_eq!(c.psql(1, "select pg_is_in_recovery()"), "t");
    assert_eq!(c.psql(2, "select pg_is_in_recovery()"), "t");
    // The seed rows; other tests of this binary add theirs (ids from 1000) to the shared cluster.
    assert_eq!(
        c.psql(1, "select count(*) from items where id between 1 and 10"),
        "10"
    );
}

#[test]
fn shared_cluster_is_tls_only_with_the_awkward_password() {
    let c = cluster::shared();
    assert_eq!(c.password(), PASSWORD);
    for node in 0..=2 {
        let err = c
            .app_psql(node, "disable", "select 1")
            .expect_err("a non-TLS connection must be refused");
        assert!(
            err.contains("no pg_hba.conf entry") && err.contains("no encryption"),
            "{err}"
        );
        assert_eq!(
            c.app_psql(
                node,
                "require",
                "select ssl from pg_stat_ssl where pid = pg_backend_pid()"
            ),
            Ok("t".to_string())
        );
    }
    let wrong = Command::new(c.pg_bin().join("psql"))
        .arg(format!(
            "host=127.0.0.1 port={} user=app dbname=appdb sslmode=require",
            c.port(0)
        ))
        .args(["-XAtc", "select 1"])
        .env("PGPASSWORD", "wrong")
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("password authentication failed"));
}

#[test]
fn shared_cluster_urls_are_what_a_provider_hands_out() {
    let c = cluster::shared();
    assert_eq!(
        c.primary_url(),
        format!(
            "postgres://app:{PASSWORD_ENC}@127.0.0.1:{}/appdb?sslmode=require",
            c.port(0)
        )
    );
    for i in 1..=2 {
        assert_eq!(
            c.follower_url(i),
            format!(
                "postgres://app:{PASSWORD_ENC}@127.0.0.1:{}/appdb?sslmode=require",
                c.port(i)
            )
        );
        assert_eq!(c.env[&format!("FOLLOWER{i}_PORT")], c.port(i).to_string());
    }
    assert_eq!(c.env["PRIMARY_PORT"], c.port(0).to_string());
    assert_eq!(c.env["PGHOST_SOCKET"], c.dir.to_str().unwrap());
    assert_eq!(c.env["CLUSTER_DIR"], c.dir.to_str().unwrap());
    // libpq itself takes the URL (percent-decoding included) and gets TLS.
    for node in 0..=2 {
        let out = Command::new(c.pg_bin().join("psql"))
            .arg(c.url(node))
            .args([
                "-XAtc",
                "select current_user || ' ' || inet_server_port() || ' ' || ssl \
                 from pg_stat_ssl where pid = pg_backend_pid()",
            ])
            .env_remove("PGPASSWORD")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("app {} true", c.port(node))
        );
    }
    // The env file is valid sh and gives back the same values.
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#". "$1" && printf '%s\n' "$APP_PASSWORD" "$PRIMARY_URL""#)
        .arg("-")
        .arg(c.dir.join("cluster.env"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{PASSWORD}\n{}\n", c.primary_url())
    );
}

#[test]
fn parse_env_reads_sh_single_quotes() {
    let env = parse_env("# comment\nA='p@ss:w/rd'\\''\"#% \\x'\nB=plain\nexport C='x y'\n\nD=''\n");
    assert_eq!(env["A"], PASSWORD);
    assert_eq!(env["B"], "plain");
    assert_eq!(env["C"], "x y");
    assert_eq!(env["D"], "");
    assert_eq!(env.len(), 4);
}

#[test]
fn own_cluster_survives_kill_start_and_promote_and_is_gone_after_drop() {
    let c = cluster::start_new(1);
    let dir = c.dir.clone();
    assert_eq!(c.followers(), 1);
    assert!(c.try_psql(2, "select 1").is_err(), "there is no node 2");

    c.node(1, "kill");
    assert!(c.try_psql(1, "select 1").is_err());
    c.node(1, "start");
    c.wait_streaming(1);

    c.node(1, "stop");
    c.psql(0, "insert into items values (11, 'while node1 was down')");
    c.node(1, "start");
    c.wait_for(
        1,
        "select v from items where id = 11",
        "while node1 was down",
        Duration::from_secs(30),
    );

    c.node(0, "kill");
    assert!(c.try_psql(0, "select 1").is_err());
    c.node(1, "promote");
    assert_eq!(c.psql(1, "select pg_is_in_recovery()"), "f");
    assert_eq!(
        c.app_psql(
            1,
            "require",
            "insert into items values (12, 'x') returning id"
        ),
        Ok("12".to_string())
    );

    assert!(!processes_in(&dir).is_empty());
    drop(c);
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert_eq!(processes_in(&dir), Vec::<String>::new());
}

// The load ------------------------------------------------------------------------------------

/// The load through a launcher on the shared cluster, nothing failing: every kind of session
/// answers, from the node it says, and nothing counts as failed, hung or broken.
#[test]
fn the_load_records_which_node_answered_and_nothing_failed() {
    let c = cluster::shared();
    let mut l = Launcher::new(c);
    // Enough children for 8 load sessions, the monitor and discovery (as tests/failures.rs).
    l.set("PGPOOL_NUM_INIT_CHILDREN", "16");
    let mut live = Live::start(l);
    live.wait_log(events::FOLLOWER_NAME, 2, Duration::from_secs(15));
    // The simple-only load first, briefly: it must answer too.
    let simple = Load::start_simple(&live.url);
    std::thread::sleep(Duration::from_millis(500));
    let simple = simple.stop();
    assert!(simple.oks(Who::Writer) > 0 && simple.hung() == 0);
    // A burst of new sessions: each answered once, by one of the cluster's nodes.
    let ports: Vec<u16> = (0..3).map(|n| c.port(n)).collect();
    let seen = burst(&live.url, 4);
    assert_eq!(seen.len(), 4);
    for (took, outcome) in &seen {
        assert!(
            matches!(outcome, Outcome::Ok(p) if ports.contains(p)) && *took <= support_hang(),
            "a burst session: {took:?} {outcome:?}"
        );
    }
    let load = Load::start(&live.url);
    std::thread::sleep(Duration::from_secs(2));
    let (seen, until) = (load.events().len(), load.now());
    let r = load.stop();
    // pgpool's own node record sits in the runtime directory the gray-failure tests poll.
    let rundir = live
        .launcher()
        .runtime_dir()
        .expect("runtime directory while running");
    let status = std::fs::read_to_string(rundir.join("pgpool_status")).unwrap_or_default();
    let log = live.stop();
    assert_eq!(
        status.lines().collect::<Vec<_>>(),
        ["up", "up", "up"],
        "{log}"
    );
    // Each outcome says how long it took, within the load's own timeout, sent after the start.
    assert!(
        r.events
            .iter()
            .all(|e| e.took <= support_hang() && e.took <= e.at),
        "{}",
        Report::describe(&r.events[..r.events.len().min(12)])
    );
    assert!(
        seen > 0 && r.events.len() >= seen,
        "no events by {until:?}:\n{log}"
    );
    assert_eq!(r.hung(), 0, "{}", Report::describe(&r.hung_events()));
    let any_reader = Who::Reader(usize::MAX);
    let failed: Vec<_> = [any_reader, Who::Connector, Who::Writer]
        .iter()
        .flat_map(|w| r.failures(*w, Duration::ZERO, Duration::MAX))
        .collect();
    assert!(failed.is_empty(), "{}\n{log}", Report::describe(&failed));
    assert!(r.broken_healthy(&[], Duration::ZERO).is_empty());
    for who in [any_reader, Who::Connector, Who::Writer] {
        assert!(r.oks(who) > 0, "{who:?} answered:\n{log}");
        assert!(r.first_ok(who, None, Duration::ZERO).is_some());
        assert_eq!(r.last_failure(who, Duration::ZERO), None);
    }
    // Reads go to the followers (pgpool balances them there), so the ports are the nodes'.
    let on_followers = r.served_by(c.port(1), Duration::ZERO, Duration::MAX)
        + r.served_by(c.port(2), Duration::ZERO, Duration::MAX);
    assert!(
        on_followers > 0,
        "{}",
        Report::describe(&r.events[..r.events.len().min(12)])
    );
    assert_eq!(live.stuck_kills(), 0, "{log}");
}

fn support_hang() -> Duration {
    crate::support::load::HANG + Duration::from_secs(1)
}

// l2met ---------------------------------------------------------------------------------------

#[test]
fn the_l2met_parser_reads_quotes() {
    let m = l2met::parse(r#"start-pgpool at=x level=info msg="a \"b\" c" n=1"#);
    assert_eq!(m["_prog"], "start-pgpool");
    assert_eq!(m["msg"], "a \"b\" c");
    assert_eq!(m["n"], "1");
}

// pool_passwd ---------------------------------------------------------------------------------

/// What the launcher writes reads back as the user and password it was given.
#[test]
fn pool_passwd_reads_back() {
    let pw = "p@ss:w/rd'\"#% \\x";
    let line = pool_passwd("a:b", &Secret::new(pw));
    assert_eq!(
        pool_passwd::read(line.expose()),
        Some(("a:b".into(), pw.into()))
    );
}

// conf_lexer ----------------------------------------------------------------------------------

fn kv(text: &str) -> Vec<(String, String)> {
    parse(text)
        .unwrap()
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// Every case of docs/pgpool.md, "pgpool.conf has no escaping", measured against pgpool 4.3.5.
#[test]
fn conf_lexer_reads_the_notes_q4_table() {
    assert!(
        parse("recovery_user = 'ab''cd'\n").is_err(),
        "'' is a syntax error"
    );
    assert_eq!(
        kv("recovery_user = 'ab\\'cd'\n"),
        pairs(&[("recovery_user", "ab\\'cd")])
    );
    assert_eq!(
        kv("recovery_user = 'ab#cd' # comment\n"),
        pairs(&[("recovery_user", "ab#cd")])
    );
    assert_eq!(
        kv("recovery_user = 'ab\ncd'\n"),
        pairs(&[("recovery_user", "'"), ("ab", "\n"), ("cd", "'")])
    );
    assert_eq!(
        kv("recovery_user = 'x' recovery_password = 'INJECTED' #'\n"),
        pairs(&[("recovery_user", "x"), ("recovery_password", "INJECTED")])
    );
    assert_eq!(
        kv("recovery_user = 'x' port = 6433 #'\n"),
        pairs(&[("recovery_user", "x"), ("port", "6433")])
    );
    assert_eq!(
        kv("recovery_user = ab cd\n"),
        pairs(&[("recovery_user", "ab"), ("cd", "\n")])
    );
    assert_eq!(
        kv("recovery_user 'noeq'\n"),
        pairs(&[("recovery_user", "noeq")])
    );
    assert_eq!(
        kv("recovery_user = 'a$b%c@d:e/f\"g'\n"),
        pairs(&[("recovery_user", "a$b%c@d:e/f\"g")])
    );
    assert_eq!(
        kv("recovery_user = 'abc\\'\n"),
        pairs(&[("recovery_user", "abc\\")])
    );
    assert_eq!(
        kv("recovery_user = 'a\rb'\n"),
        pairs(&[("recovery_user", "a\rb")])
    );
    assert_eq!(
        kv("log_connections = maybe\n"),
        pairs(&[("log_connections", "maybe")])
    );
}

#[test]
fn conf_lexer_token_kinds_follow_flex_longest_match() {
    let kinds = |t: &str| -> Vec<Kind> { tokens(t).into_iter().map(|t| t.0).collect() };
    use Kind::*;
    assert_eq!(kinds("port = 5432"), vec![Key, Equals, Integer, Eof]);
    assert_eq!(kinds("a = 1MB"), vec![Key, Equals, Integer, Eof]);
    assert_eq!(kinds("a = 0x1F"), vec![Key, Equals, Integer, Eof]);
    assert_eq!(kinds("a = -1.5e3"), vec![Key, Equals, Real, Eof]);
    assert_eq!(kinds("a = /x"), vec![Key, Equals, Error, Key, Eof]);
    assert_eq!(kinds("a = b/c:d"), vec![Key, Equals, Unquoted, Eof]);
    assert_eq!(kinds("é = ü"), vec![Key, Equals, Key, Eof]);
    assert_eq!(kinds("# only\n"), vec![Eol, Eof]);
    assert_eq!(kinds("#"), vec![Error, Eof], "a comment needs its newline");
    assert_eq!(kinds("'a\\'b'"), vec![String, Eof]);
}

#[test]
fn conf_lexer_include_and_trailing_keys_are_entries() {
    assert_eq!(
        kv("a = 'x' include '/etc/passwd'\nb"),
        pairs(&[("a", "x"), ("include", "/etc/passwd"), ("b", "")])
    );
    assert!(parse("= 'x'\n").is_err());
    assert!(parse("'x'\n").is_err());
    assert_eq!(parse("a = 'x'\n").unwrap()[0].kind, Kind::String);
    assert_eq!(parse("a = 'x'\n\nb = 2\n").unwrap()[1].line, 3);
}

/// A sanitizer report, wherever the sanitizer build wrote it, fails the test whose launcher
/// started that pgpool, and the failure names the report (etc/test-asan relies on it).
#[test]
fn a_sanitizer_report_fails_the_launchers_test() {
    let logs = tempfile::tempdir().unwrap();
    std::fs::write(
        logs.path().join("asan.4242"),
        "==4242==ERROR: AddressSanitizer: heap-use-after-free on address 0x1\n    #0 in pool_read\n",
    )
    .unwrap();
    let mut l = Launcher::bare();
    l.sanitizer_logs = Some(logs);
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(l)))
        .expect_err("a report must fail the test");
    let msg = failed.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("asan.4242"), "{msg}");
    assert!(msg.contains("heap-use-after-free"), "{msg}");
    let kept = msg
        .split_once("kept in ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(dir, _)| dir.to_string())
        .expect("the failure says where the reports were kept");
    std::fs::remove_dir_all(&kept).unwrap();
    // And no report, no failure.
    let mut quiet = Launcher::bare();
    quiet.sanitizer_logs = Some(tempfile::tempdir().unwrap());
    drop(quiet);
}
