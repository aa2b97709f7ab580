//! The one cluster helper every integration test shares: a real PostgreSQL primary with
//! streaming followers, TLS-only with SCRAM, started by `etc/test-cluster` on free loopback
//! ports and always torn down.
//!
//! `shared()` starts one cluster per test binary on first use and stops it when the test
//! process exits (libc `atexit`; the test harness ends with `std::process::exit`, which runs
//! it). Tests that break nodes take their own with `Cluster::start(n)`, stopped on drop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/etc/test-cluster");

pub struct Cluster {
    pub dir: PathBuf,
    pub env: BTreeMap<String, String>,
    owned: bool,
}

static SHARED: OnceLock<Cluster> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(c) = SHARED.get() {
        stop(&c.dir);
    }
}

/// The cluster shared by the tests of this binary (primary + 2 followers).
pub fn shared() -> &'static Cluster {
    SHARED.get_or_init(|| {
        let mut c = Cluster::start(2);
        c.owned = false;
        // SAFETY: registering a plain extern "C" fn.
        unsafe { libc::atexit(stop_shared) };
        c
    })
}

fn stop(dir: &Path) {
    let _ = Command::new("bash")
        .arg(SCRIPT)
        .arg("stop")
        .arg(dir)
        .status();
}

fn run(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(SCRIPT)
        .args(args)
        .output()
        .expect("run etc/test-cluster");
    assert!(
        out.status.success(),
        "etc/test-cluster {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Cluster {
    /// A cluster of its own, for tests that stop, kill or promote nodes.
    pub fn start(followers: usize) -> Cluster {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "start-pgpool-cluster-{}-{nanos}",
            std::process::id()
        ));
        let envfile = run(&["start", dir.to_str().unwrap(), &followers.to_string()]);
        let text = std::fs::read_to_string(envfile.trim()).expect("read cluster.env");
        let env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
            .collect();
        Cluster {
            dir,
            env,
            owned: true,
        }
    }

    fn get(&self, k: &str) -> String {
        self.env
            .get(k)
            .unwrap_or_else(|| panic!("cluster.env has no {k}"))
            .clone()
    }

    pub fn followers(&self) -> usize {
        self.get("NFOLLOWERS").parse().unwrap()
    }

    pub fn primary_url(&self) -> String {
        self.get("PRIMARY_URL")
    }

    /// 1-based, as in the env file.
    pub fn follower_url(&self, i: usize) -> String {
        self.get(&format!("FOLLOWER{i}_URL"))
    }

    /// Node 0 is the primary.
    pub fn port(&self, node: usize) -> u16 {
        self.get(&format!("NODE{node}_PORT")).parse().unwrap()
    }

    pub fn password(&self) -> &'static str {
        "p@ss:w/rd'\"#% \\x"
    }

    /// Superuser SQL on one node, over its Unix socket; returns the unaligned output.
    pub fn psql(&self, node: usize, sql: &str) -> String {
        run(&[
            "psql",
            self.dir.to_str().unwrap(),
            &node.to_string(),
            "-c",
            sql,
        ])
        .trim()
        .to_string()
    }

    /// `stop` (immediate), `kill` (SIGKILL of the postmaster), `start`, `restart`, `promote`.
    pub fn node(&self, node: usize, action: &str) {
        run(&[
            "node",
            self.dir.to_str().unwrap(),
            &node.to_string(),
            action,
        ]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.owned {
            stop(&self.dir);
        }
    }
}
