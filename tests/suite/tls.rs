//! TLS to the servers exactly as each URL's sslmode says (docs/tls.md), through the real
//! binary and our pgpool against real servers: one case per mode and outcome, with the
//! server's certificate (or its TLS) changed between cases by a configuration reload.
//!
//! An accepted case's app asks the server, through pgpool, whether its own session is TLS
//! (`pg_stat_ssl`): plaintext only where the URL allows it. A refused case must be one line
//! naming the variable and what failed, exit 1, with the app never run and nothing left.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::api::events;
use crate::support::certs::Certs;
use crate::support::cluster::{self, Cluster};
use crate::support::l2met::{at, head};
use crate::support::launcher::*;

/// What the app prints: whether pgpool's session to the server is TLS.
const APP: &str = r#"exec "$PSQL" "$DATABASE_URL" -XAtc "select ssl from pg_stat_ssl where pid = pg_backend_pid()""#;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Server {
    /// The cluster's own certificate: signed by its CA, SAN DNS:localhost and IP:127.0.0.1.
    Good,
    /// Signed by the cluster's CA, SAN DNS:db.example.test only.
    OtherHost,
    /// Signed by the cluster's CA, no SAN, CN=localhost.
    CnOnly,
    /// TLS off (and plaintext logins allowed).
    Off,
}

enum Want {
    /// Accepted; the session to the server is TLS (true) or plaintext (false).
    Tls(bool),
    /// Refused with a line that contains this.
    Refused(&'static str),
}

struct Lab {
    c: Cluster,
    other_ca: PathBuf,
    good: (PathBuf, PathBuf),
    other_host: (PathBuf, PathBuf),
    cn_only: (PathBuf, PathBuf),
    now: Option<Server>,
}

impl Lab {
    fn start() -> Lab {
        let c = cluster::start_new(0);
        c.allow_plaintext(0);
        let certs = Certs::new(&c.dir);
        let other_ca = certs.ca("other-ca");
        let other_host = certs.server(
            "other-host",
            "ca",
            "db.example.test",
            Some("DNS:db.example.test"),
        );
        let cn_only = certs.server("cn-only", "ca", "localhost", None);
        let good = (c.dir.join("server.crt"), c.dir.join("server.key"));
        Lab {
            c,
            other_ca,
            good,
            other_host,
            cn_only,
            now: Some(Server::Good),
        }
    }

    fn serve(&mut self, s: Server) {
        if self.now == Some(s) {
            return;
        }
        let cert = match s {
            Server::Good => Some(&self.good),
            Server::OtherHost => Some(&self.other_host),
            Server::CnOnly => Some(&self.cn_only),
            Server::Off => None,
        };
        self.c
            .set_server_tls(0, cert.map(|(c, k)| (c.as_path(), k.as_path())));
        self.now = Some(s);
    }
}

fn launch(c: &Cluster, url: &str) -> (std::process::Output, Launcher) {
    let mut l = Launcher::bare();
    l.set("DATABASE_URL", url)
        .set("PSQL", c.pg_bin().join("psql"))
        .set("PGPOOL_READY_TIMEOUT", "20");
    let out = l
        .command(&["sh", "-c", APP])
        .output()
        .expect("run start-pgpool");
    (out, l)
}

#[test]
fn each_sslmode_means_what_libpq_says() {
    let mut lab = Lab::start();
    let ca = lab.c.ca_file().display().to_string();
    let other = lab.other_ca.display().to_string();
    let verify_ca = format!("sslmode=verify-ca&sslrootcert={ca}");
    let verify_full = format!("sslmode=verify-full&sslrootcert={ca}");
    use Server::*;
    use Want::*;
    let cases: Vec<(Server, &str, String, Want)> = vec![
        (Good, "127.0.0.1", "sslmode=disable".into(), Tls(false)),
        (Good, "127.0.0.1", String::new(), Tls(true)),
        (Good, "127.0.0.1", "sslmode=allow".into(), Tls(true)),
        (Good, "127.0.0.1", "sslmode=prefer".into(), Tls(true)),
        (Good, "127.0.0.1", "sslmode=require".into(), Tls(true)),
        (Good, "127.0.0.1", verify_ca.clone(), Tls(true)),
        (
            Good,
            "127.0.0.1",
            format!("sslmode=verify-ca&sslrootcert={other}"),
            Refused("the server's certificate is not signed by the CA in sslrootcert"),
        ),
        // libpq: require with a CA file checks the chain as verify-ca does.
        (
            Good,
            "127.0.0.1",
            format!("sslmode=require&sslrootcert={other}"),
            Refused("the server's certificate is not signed by the CA in sslrootcert"),
        ),
        // The address against the IP entry, the name against the DNS entry.
        (Good, "127.0.0.1", verify_full.clone(), Tls(true)),
        (Good, "localhost", verify_full.clone(), Tls(true)),
        (
            Good,
            "127.0.0.1",
            "sslmode=verify-full&sslrootcert=system".into(),
            Refused("the server's certificate is not signed by a CA in the system store"),
        ),
        (OtherHost, "127.0.0.1", verify_ca.clone(), Tls(true)),
        (
            OtherHost,
            "127.0.0.1",
            verify_full.clone(),
            Refused(
                "host name 127.0.0.1 is not in the server's certificate (it names db.example.test)",
            ),
        ),
        (
            OtherHost,
            "localhost",
            verify_full.clone(),
            Refused("host name localhost is not in the server's certificate"),
        ),
        // No SAN: the CN counts for a name, and an address is not a name.
        (CnOnly, "localhost", verify_full.clone(), Tls(true)),
        (
            CnOnly,
            "127.0.0.1",
            verify_full.clone(),
            Refused(
                "host name 127.0.0.1 is not in the server's certificate (it names only CN=localhost)",
            ),
        ),
        (Off, "127.0.0.1", String::new(), Tls(false)),
        (Off, "127.0.0.1", "sslmode=allow".into(), Tls(false)),
        (Off, "127.0.0.1", "sslmode=disable".into(), Tls(false)),
        (
            Off,
            "127.0.0.1",
            "sslmode=require".into(),
            Refused("the server does not offer TLS, and the URL says sslmode=require"),
        ),
        (
            Off,
            "127.0.0.1",
            verify_full.clone(),
            Refused("the server does not offer TLS, and the URL says sslmode=verify-full"),
        ),
    ];
    let mut failures = Vec::new();
    for (server, host, query, want) in &cases {
        lab.serve(*server);
        let url = lab.c.url_as(0, host, query);
        let (out, l) = launch(&lab.c, &url);
        let name = format!("{server:?} {host} ?{query}");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        );
        let mut bad = Vec::new();
        match want {
            Tls(tls) => {
                let want = if *tls { "t" } else { "f" };
                if !out.status.success() || stdout != want {
                    bad.push(format!("wanted the app to print {want}"));
                }
            }
            Refused(says) => {
                let lines: Vec<&str> = stderr.lines().collect();
                let prefix = "start-pgpool: error: DATABASE_URL: ";
                if out.status.code() != Some(1) {
                    bad.push("exit code is not 1".into());
                }
                if lines.len() != 1 || !lines[0].starts_with(prefix) || !lines[0].contains(says) {
                    bad.push(format!("wanted one line {prefix}... {says:?}"));
                }
                if !stdout.is_empty() {
                    bad.push("the app ran".into());
                }
                if !l.runtime_dir_is_gone() {
                    bad.push("the runtime directory was left".into());
                }
            }
        }
        if stderr.contains(lab.c.password()) {
            bad.push("the password was printed".into());
        }
        if !bad.is_empty() {
            failures.push(format!(
                "{name}: {}\n  code {:?}\n  stdout {stdout:?}\n  stderr {stderr}",
                bad.join("; "),
                out.status.code()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Modes may differ between URLs: a verified primary and followers with `require`. Each
/// server gets its own `backend_sslmodeN` (and a CA where its mode verifies), every node
/// serves, and the sessions pgpool holds on each server are TLS (asked of the servers
/// themselves while the app runs: the shared cluster takes no plaintext logins at all).
#[test]
fn modes_differ_between_urls() {
    let c = cluster::shared();
    let mut l = Launcher::new(c);
    let ca = c.ca_file().display().to_string();
    l.set(
        "DATABASE_URL",
        c.url_as(
            0,
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
    )
    .set("FOLLOWER1_URL", c.url_as(1, "127.0.0.1", "sslmode=require"))
    .set(
        "FOLLOWER2_URL",
        c.url_as(
            2,
            "127.0.0.1",
            &format!("sslmode=verify-ca&sslrootcert={ca}"),
        ),
    )
    .set("PSQL", c.pg_bin().join("psql"))
    .set("SOCKET_DIR", &c.dir)
    .set(
        "NODE_PORTS",
        format!("{} {} {}", c.port(0), c.port(1), c.port(2)),
    );
    let out = l.run_sh(
        r#"set -e
conf=$(echo "$PGPOOL_RUNTIME_DIR"/start-pgpool-*/pgpool.conf)
grep -E '^backend_ssl' "$conf"
for i in $(seq 12); do "$PSQL" "$DATABASE_URL" -XAtc "select 'read ' || inet_server_port()"; done
"$PSQL" "$DATABASE_URL" -XAtc "select 'write ' || inet_server_port() from (select pg_current_wal_lsn()) w"
for p in $NODE_PORTS; do
  "$PSQL" -h "$SOCKET_DIR" -p "$p" -U postgres -d appdb -XAtc "select 'sessions $p ' || count(*) filter (where s.ssl) || ' ' || count(*) filter (where not s.ssl) from pg_stat_ssl s join pg_stat_activity a using (pid) where a.usename = 'app' and a.backend_type = 'client backend' and a.client_addr is not null"
done"#,
    );
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    for line in [
        "backend_sslmode0 = 'verify-full'".to_string(),
        format!("backend_sslrootcert0 = '{ca}'"),
        "backend_sslmode1 = 'require'".to_string(),
        "backend_sslmode2 = 'verify-ca'".to_string(),
        format!("backend_sslrootcert2 = '{ca}'"),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no {line:?}:\n{}",
            show(&out)
        );
    }
    assert!(
        !text.contains("backend_sslrootcert1"),
        "require without a CA carries none:\n{text}"
    );
    let ports = |what: &str| -> std::collections::BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(what))
            .map(str::to_string)
            .collect()
    };
    let followers: std::collections::BTreeSet<String> = [c.port(1), c.port(2)]
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(
        ports("read "),
        followers,
        "reads spread over both followers:\n{text}"
    );
    assert_eq!(ports("write "), [c.port(0).to_string()].into(), "{text}");
    for p in [c.port(0), c.port(1), c.port(2)] {
        let row = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("sessions {p} ")))
            .unwrap_or_else(|| panic!("no sessions line for {p}:\n{text}"));
        let (tls, plain) = row.split_once(' ').unwrap();
        assert!(
            tls.parse::<u32>().unwrap() >= 1,
            "no TLS session on {p}: {row}"
        );
        assert_eq!(plain, "0", "plaintext sessions on {p}: {row}");
    }
}

/// A server certificate's file and its key's.
type CertAndKey = (PathBuf, PathBuf);

/// A server that stops satisfying its URL while the app runs (a restarted follower with a
/// certificate from another CA, or for another host, or with TLS off) is taken out of rotation
/// by pgpool's own check (patch 0007: the launcher checked it before pgpool started, when it
/// was fine), with the launcher's event line and the reason; without the patch pgpool goes on
/// serving it.
#[test]
fn a_follower_that_stops_satisfying_its_url_is_taken_out() {
    let c = Cluster::start(1);
    let certs = Certs::new(&c.dir);
    certs.ca("other-ca");
    let other_ca = certs.server(
        "other-signed",
        "other-ca",
        "127.0.0.1",
        Some("DNS:localhost,IP:127.0.0.1"),
    );
    let other_host = certs.server(
        "other-host",
        "ca",
        "db.example.test",
        Some("DNS:db.example.test"),
    );
    let good = (c.dir.join("server.crt"), c.dir.join("server.key"));
    let ca = c.ca_file().display().to_string();
    let query = format!("sslmode=verify-full&sslrootcert={ca}");
    let cases: [(&str, Option<&CertAndKey>, &str); 3] = [
        (
            "a certificate from another CA",
            Some(&other_ca),
            "the server's certificate is not signed by the CA in sslrootcert",
        ),
        (
            "a certificate for another host",
            Some(&other_host),
            "host name 127.0.0.1 is not in the server's certificate",
        ),
        ("TLS off", None, "the server does not offer TLS"),
    ];
    for (what, bad, reason) in cases {
        c.set_server_tls(1, Some((good.0.as_path(), good.1.as_path())));
        let mut l = Launcher::new(&c);
        l.set("DATABASE_URL", c.url_as(0, "127.0.0.1", &query))
            .set("FOLLOWER1_URL", c.url_as(1, "127.0.0.1", &query));
        let live = Live::start(l);
        live.wait_log(events::FOLLOWER_NAME, 1, Duration::from_secs(30));
        assert!(
            !live.log().contains(&at(events::NODE_DOWN)),
            "{}",
            live.log()
        );
        c.set_server_tls(1, bad.map(|(crt, key)| (crt.as_path(), key.as_path())));
        let changed = Instant::now();
        let needle = format!("{}source=FOLLOWER1_URL ", head(events::NODE_DOWN));
        while !live.log().contains(&needle) {
            assert!(
                changed.elapsed() < Duration::from_secs(15),
                "{what}: FOLLOWER1_URL still in rotation 15 s later:\n{}",
                live.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "FIGURES tls {what}: node-down {:?} after the change",
            changed.elapsed()
        );
        // Why, from the launcher's own look at the server (pgpool's health check only says
        // the node failed; its reason is in pgpool's debug lines).
        let why = format!(
            "{}source=FOLLOWER1_URL why=\"{reason}",
            head(events::SERVER_TLS_REFUSED)
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !live.log().contains(&why) {
            assert!(
                Instant::now() < deadline,
                "{what}: no reason given:\n{}",
                live.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Reads go on, from the primary.
        let count = live.sql(&c.pg_bin().join("psql"), "select count(*) from items");
        assert_eq!(count.as_deref(), Ok("10"), "{what}");
    }
    c.set_server_tls(1, Some((good.0.as_path(), good.1.as_path())));
}
