//! The cluster helper every integration test shares: a real PostgreSQL primary (node 0) with
//! streaming followers (nodes 1..), TLS-only with SCRAM and an awkward password, started by
//! `etc/test-cluster` on free loopback ports and always torn down.
//!
//! * [`shared()`] starts one cluster (primary + 2 followers) per test binary on first use and
//!   stops it when the test process exits: a `libc::atexit` handler (the test harness ends with
//!   `std::process::exit` or a return from `main`, both of which run it).
//! * [`start_new()`] gives a test a cluster of its own, for breaking nodes; stopped on drop.
//! * Either way a watcher process (`etc/test-cluster watch DIR`, in its own process group) stops
//!   the cluster when the test process dies without running its handlers (SIGKILL, Ctrl-C).

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `etc/test-cluster` of this crate.
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/etc/test-cluster");

pub struct Cluster {
    /// The cluster directory: data dirs `node0..`, logs `nodeN.log`, Unix sockets, `cluster.env`.
    pub dir: PathBuf,
    /// `cluster.env`, parsed: CLUSTER_DIR, PGHOST_SOCKET, PG_BIN, NFOLLOWERS, APP_USER, APP_DB,
    /// APP_PASSWORD, PRIMARY_PORT, PRIMARY_URL, NODE<n>_PORT, FOLLOWER<i>_PORT, FOLLOWER<i>_URL.
    pub env: BTreeMap<String, String>,
    owned: bool,
    watcher: Option<Child>,
}

static SHARED: OnceLock<Cluster> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(c) = SHARED.get() {
        stop(&c.dir);
    }
}

/// The cluster shared by all tests of this binary (primary + 2 followers). Do not break its
/// nodes: other tests run against it in parallel. Stopped when the test process exits.
pub fn shared() -> &'static Cluster {
    SHARED.get_or_init(|| {
        let mut c = start_new(2);
        c.owned = false;
        // SAFETY: registers a plain `extern "C" fn()` that only reads a initialised OnceLock.
        let rc = unsafe { libc::atexit(stop_shared) };
        assert_eq!(rc, 0, "atexit failed");
        c
    })
}

/// A cluster of this test's own (primary + `nfollowers` followers), for tests that stop, kill
/// or promote nodes. Stopped and removed when dropped (also when the test panics).
pub fn start_new(nfollowers: usize) -> Cluster {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir = std::env::temp_dir().join(format!(
        "start-pgpool-cluster-{}-{nanos}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    // The watcher comes first so that even a kill during `start` is cleaned up: its `stop`
    // waits for the cluster lock that `start` holds.
    let mut watcher = Command::new("bash")
        .arg(SCRIPT)
        .arg("watch")
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .ok();
    let out = script(&[
        "start".as_ref(),
        dir.as_os_str(),
        nfollowers.to_string().as_ref(),
    ]);
    if !out.status.success()
        && let Some(mut w) = watcher.take()
    {
        drop(w.stdin.take());
        let _ = w.wait();
    }
    check(&out, "start");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let envfile = stdout
        .lines()
        .last()
        .expect("etc/test-cluster start printed nothing");
    let text =
        std::fs::read_to_string(envfile.trim()).unwrap_or_else(|e| panic!("read {envfile}: {e}"));
    let env = parse_env(&text);
    Cluster {
        dir,
        env,
        owned: true,
        watcher,
    }
}

fn script(args: &[&std::ffi::OsStr]) -> Output {
    Command::new("bash")
        .arg(SCRIPT)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {SCRIPT}: {e}"))
}

fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "etc/test-cluster {what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stop(dir: &Path) {
    let _ = Command::new("bash")
        .arg(SCRIPT)
        .arg("stop")
        .arg(dir)
        .stdin(Stdio::null())
        .status();
}

/// `KEY=value` lines as `etc/test-cluster` writes them: values in sh single quotes, with `'`
/// written as `'\''`. Also takes bare words and backslash escapes; skips blanks and comments.
pub fn parse_env(text: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let mut value = String::new();
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            match c {
                '\'' => value.extend(chars.by_ref().take_while(|&c| c != '\'')),
                '\\' => value.extend(chars.next()),
                _ => value.push(c),
            }
        }
        env.insert(key.to_string(), value);
    }
    env
}

impl Cluster {
    /// Same as [`start_new`].
    pub fn start(nfollowers: usize) -> Cluster {
        start_new(nfollowers)
    }

    fn get(&self, k: &str) -> &str {
        self.env
            .get(k)
            .unwrap_or_else(|| panic!("cluster.env has no {k}"))
    }

    pub fn followers(&self) -> usize {
        self.get("NFOLLOWERS").parse().unwrap()
    }

    /// `postgres://app:<percent-encoded password>@127.0.0.1:<port>/appdb?sslmode=require`
    pub fn primary_url(&self) -> String {
        self.get("PRIMARY_URL").to_string()
    }

    /// Follower `i`, 1-based (= node `i`).
    pub fn follower_url(&self, i: usize) -> String {
        self.get(&format!("FOLLOWER{i}_URL")).to_string()
    }

    /// The URL of node `n` as a provider would hand it out (node 0 = primary).
    pub fn url(&self, node: usize) -> String {
        if node == 0 {
            self.primary_url()
        } else {
            self.follower_url(node)
        }
    }

    /// TCP port of node `n` on 127.0.0.1 (node 0 = primary).
    pub fn port(&self, node: usize) -> u16 {
        self.get(&format!("NODE{node}_PORT")).parse().unwrap()
    }

    /// The password of role `app`, in clear: `p@ss:w/rd'"#% \x`.
    pub fn password(&self) -> &str {
        self.get("APP_PASSWORD")
    }

    /// Directory of the PostgreSQL binaries the cluster runs (psql, pg_ctl, ...).
    pub fn pg_bin(&self) -> PathBuf {
        PathBuf::from(self.get("PG_BIN"))
    }

    /// Superuser SQL on node `n` over its Unix socket (database appdb); the unaligned,
    /// tuples-only output, trimmed. Panics with psql's stderr on failure.
    pub fn psql(&self, node: usize, sql: &str) -> String {
        self.try_psql(node, sql)
            .unwrap_or_else(|e| panic!("psql on node {node} failed: {sql}\n{e}"))
    }

    /// Like [`Cluster::psql`], but returns stderr as the error (for nodes that may be down).
    pub fn try_psql(&self, node: usize, sql: &str) -> Result<String, String> {
        let out = script(&[
            "psql".as_ref(),
            self.dir.as_os_str(),
            node.to_string().as_ref(),
            "-c".as_ref(),
            sql.as_ref(),
        ]);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// SQL as role `app` over TCP to 127.0.0.1 on node `n`, password from `PGPASSWORD`, with the
    /// given `sslmode` (`require`, `disable`, ...). Err holds psql's stderr.
    pub fn app_psql(&self, node: usize, sslmode: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.pg_bin().join("psql"))
            .arg(format!(
                "host=127.0.0.1 port={} user=app dbname=appdb sslmode={sslmode} connect_timeout=10",
                self.port(node)
            ))
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGPASSWORD", self.password())
            .env_remove("PGPASSFILE")
            .env_remove("PGSERVICE")
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `etc/test-cluster node DIR n ACTION`: `stop` (immediate), `kill` (SIGKILL of the
    /// postmaster; returns once all its processes are gone), `start`, `restart`, `promote`.
    pub fn node(&self, node: usize, action: &str) {
        let out = script(&[
            "node".as_ref(),
            self.dir.as_os_str(),
            node.to_string().as_ref(),
            action.as_ref(),
        ]);
        check(&out, &format!("node {node} {action}"));
    }

    /// Polls superuser `sql` on node `n` (errors count as "not yet") until it prints `want`;
    /// panics after `timeout` with the last output.
    pub fn wait_for(&self, node: usize, sql: &str, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.try_psql(node, sql);
            if got.as_deref() == Ok(want) {
                return;
            }
            if Instant::now() >= deadline {
                panic!("node {node}: `{sql}` still gives {got:?}, not {want:?}, after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Hangs node `n`: SIGSTOP to its postmaster (read from its `postmaster.pid`), then to each
    /// of its children (a stopped postmaster forks no more). The kernel still accepts TCP on its
    /// port; nothing answers. The guard sends SIGCONT to every one of them when dropped (also
    /// when the test panics), so declare it after the cluster and the launcher.
    pub fn freeze(&self, node: usize) -> Frozen {
        let pidfile = self.dir.join(format!("node{node}/postmaster.pid"));
        let text = std::fs::read_to_string(&pidfile).expect("read postmaster.pid");
        let postmaster: u32 = text.lines().next().unwrap().trim().parse().unwrap();
        let mut frozen = Frozen { pids: Vec::new() };
        frozen.stop(postmaster);
        for child in super::proc::children_of(postmaster) {
            frozen.stop(child);
        }
        frozen
    }

    /// The cluster's CA (`CA_FILE`), which signed every server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        PathBuf::from(self.get("CA_FILE"))
    }

    /// Node `n`'s URL with `host` for 127.0.0.1 and `query` for its parameters.
    pub fn url_as(&self, node: usize, host: &str, query: &str) -> String {
        let url = self.url(node);
        let (base, _) = url.split_once('?').unwrap_or((&url, ""));
        let base = base.replace("@127.0.0.1:", &format!("@{host}:"));
        if query.is_empty() {
            base
        } else {
            format!("{base}?{query}")
        }
    }

    /// Serves TLS on node `n` with `cert` (certificate, key), or turns it off (`None`), by a
    /// configuration reload; returns once a new session sees the change (the postmaster
    /// reloads its TLS context before it forks that session).
    pub fn set_server_tls(&self, node: usize, cert: Option<(&Path, &Path)>) {
        let q = |p: &Path| p.display().to_string().replace('\'', "''");
        match cert {
            Some((crt, key)) => {
                self.psql(
                    node,
                    &format!("alter system set ssl_cert_file = '{}'", q(crt)),
                );
                self.psql(
                    node,
                    &format!("alter system set ssl_key_file = '{}'", q(key)),
                );
                self.psql(node, "alter system set ssl = on");
            }
            None => {
                self.psql(node, "alter system set ssl = off");
            }
        }
        self.psql(node, "select pg_reload_conf()");
        let want = match cert {
            Some((crt, _)) => format!("on {}", crt.display()),
            None => "off".to_string(),
        };
        let sql = if cert.is_some() {
            "select current_setting('ssl') || ' ' || current_setting('ssl_cert_file')"
        } else {
            "select current_setting('ssl')"
        };
        self.wait_for(node, sql, &want, Duration::from_secs(10));
    }

    /// Lets node `n` take password logins without TLS too (`host` beside its `hostssl`
    /// lines), for the cases where plaintext is what the URL asks for.
    pub fn allow_plaintext(&self, node: usize) {
        let hba = self.dir.join(format!("node{node}/pg_hba.conf"));
        let mut text = std::fs::read_to_string(&hba).unwrap();
        text.push_str("host all all 127.0.0.1/32 scram-sha-256\n");
        std::fs::write(&hba, text).unwrap();
        self.psql(node, "select pg_reload_conf()");
        self.wait_for(
            node,
            "select count(*) from pg_hba_file_rules where type = 'host'",
            "1",
            Duration::from_secs(10),
        );
    }

    /// Waits (max 60 s) until the primary, node 0, shows `n` followers streaming.
    pub fn wait_streaming(&self, n: usize) {
        self.wait_for(
            0,
            "select count(*) from pg_stat_replication where state = 'streaming'",
            &n.to_string(),
            Duration::from_secs(60),
        );
    }
}

/// The processes of a hung node ([`Cluster::freeze`]); each gets SIGCONT on drop.
pub struct Frozen {
    pub pids: Vec<u32>,
}

impl Frozen {
    fn stop(&mut self, pid: u32) {
        // Recorded first: a pid is continued on drop even if the test stops right here.
        self.pids.push(pid);
        // SAFETY: plain kill(2) on a process of this test's own cluster.
        let rc = unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        assert_eq!(rc, 0, "SIGSTOP {pid}");
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for &pid in &self.pids {
            // SAFETY: as above; a process that has gone since is no error.
            unsafe { libc::kill(pid as i32, libc::SIGCONT) };
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.owned {
            stop(&self.dir);
        }
        if let Some(mut w) = self.watcher.take() {
            drop(w.stdin.take()); // EOF: the watcher stops the (already gone) cluster and exits
            let _ = w.wait();
        }
    }
}
