//! The test cluster itself (etc/test-cluster + tests/common/cluster.rs): what every other
//! integration test relies on.

mod common;

use common::cluster::{self, parse_env};
use std::process::Command;
use std::time::Duration;

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
    assert_eq!(c.psql(1, "select count(*) from items"), "10");
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

/// Processes whose working directory is inside `dir` (every postgres process of a node).
fn processes_in(dir: &std::path::Path) -> Vec<String> {
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd"))
            && cwd.starts_with(dir)
        {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found
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
