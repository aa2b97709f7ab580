//! A test environment around the built `start-pgpool` binary (after fd's `TestEnv`): a cleared
//! environment with only what a dyno would have, a private runtime parent, a free port, and
//! helpers that print the launcher's output when an assertion fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::cluster::Cluster;

pub const BIN: &str = env!("CARGO_BIN_EXE_start-pgpool");

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// Debian 12's pgpool 4.3.5, for tests that want the 4.3 family (the old Aptfile way).
pub const DEBIAN_PGPOOL: &str = "/usr/sbin/pgpool";

/// Where `etc/build-pgpool` leaves its output (`PGPOOL_BUILD_OUT`, as the script reads it).
pub fn pgpool_build_dir() -> PathBuf {
    std::env::var_os("PGPOOL_BUILD_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".build/pgpool"))
}

/// The buildpack's own pgpool (4.6 + patches/), unpacked by `etc/build-pgpool`.
pub fn built_pgpool() -> PathBuf {
    pgpool_build_dir().join("root/bin/pgpool")
}

/// Runs `etc/build-pgpool` once per test process (a no-op in a few ms when its output is
/// current; it takes a lock, so test binaries running at once build it only once) and returns
/// the built pgpool. `etc/test` has already run it, so within the suite this only checks.
pub fn ensure_built_pgpool() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/etc/build-pgpool");
            let out = Command::new("bash")
                .arg(script)
                .stdin(Stdio::null())
                .output()
                .expect("run etc/build-pgpool");
            assert!(
                out.status.success(),
                "etc/build-pgpool failed: {}",
                show(&out)
            );
            let bin = built_pgpool();
            assert!(bin.is_file(), "etc/build-pgpool left no {}", bin.display());
            bin
        })
        .clone()
}

/// The pgpool the tests run: `START_PGPOOL_TEST_PGPOOL_BIN`, else the buildpack's own build
/// when `etc/build-pgpool` has made it (`etc/test` does, before the tests), else Debian's.
pub fn pgpool_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("START_PGPOOL_TEST_PGPOOL_BIN") {
        return PathBuf::from(bin);
    }
    let built = built_pgpool();
    if built.is_file() {
        built
    } else {
        PathBuf::from(DEBIAN_PGPOOL)
    }
}

pub struct Launcher {
    pub env: BTreeMap<String, String>,
    pub port: u16,
    pub runtime_parent: tempfile::TempDir,
}

impl Launcher {
    /// Primary and every follower of `cluster`, the way a Heroku app with followers is set up.
    pub fn new(cluster: &Cluster) -> Launcher {
        let port = free_port();
        let runtime_parent = tempfile::tempdir().unwrap();
        let mut env = BTreeMap::new();
        env.insert("PATH".into(), std::env::var("PATH").unwrap_or_default());
        env.insert("HOME".into(), runtime_parent.path().display().to_string());
        env.insert("PGPOOL_BIN".into(), pgpool_bin().display().to_string());
        env.insert("PGPOOL_PORT".into(), port.to_string());
        env.insert(
            "PGPOOL_RUNTIME_DIR".into(),
            runtime_parent.path().display().to_string(),
        );
        env.insert("PGPOOL_NUM_INIT_CHILDREN".into(), "8".into());
        env.insert("DATABASE_URL".into(), cluster.primary_url());
        let mut names = vec!["DATABASE_URL".to_string()];
        for i in 1..=cluster.followers() {
            let name = format!("FOLLOWER{i}_URL");
            env.insert(name.clone(), cluster.follower_url(i));
            names.push(name);
        }
        env.insert("PGPOOL_URLS".into(), names.join(" "));
        Launcher {
            env,
            port,
            runtime_parent,
        }
    }

    pub fn set(&mut self, k: &str, v: &str) -> &mut Self {
        self.env.insert(k.into(), v.into());
        self
    }

    pub fn unset(&mut self, k: &str) -> &mut Self {
        self.env.remove(k);
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.env_clear()
            .envs(&self.env)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Runs `sh -c script` under the launcher and waits for it.
    pub fn run_sh(&self, script: &str) -> Output {
        self.command(&["sh", "-c", script])
            .output()
            .expect("run start-pgpool")
    }

    /// True when nothing is left in the runtime parent (the private directory is gone).
    pub fn runtime_dir_is_gone(&self) -> bool {
        std::fs::read_dir(self.runtime_parent.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .all(|e| !e.file_name().to_string_lossy().starts_with("start-pgpool-"))
    }

    /// Starts the launcher with an app that says `up` once it runs and then waits for a line on
    /// stdin; returns when the app is up. `release` lets it exit.
    pub fn spawn_holding(&self) -> std::process::Child {
        use std::io::{BufRead, BufReader};
        let mut child = self
            .command(&["sh", "-c", "echo up; read x"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn start-pgpool");
        let mut first = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert_eq!(first, "up\n", "the app did not start");
        child
    }

    pub fn port_is_free(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err()
    }
}

/// Every process descended from `root`, `root` included.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| stat[i + 1..].to_string()) else {
            continue;
        };
        if let Some(ppid) = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
        {
            parent_of.push((pid, ppid));
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .unwrap_or_default()
}

/// Lets an app from `Launcher::spawn_holding` exit, and waits for the launcher.
pub fn release(mut child: std::process::Child) -> Output {
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "go").unwrap();
    child.wait_with_output().unwrap()
}

/// `ps`-like list of live processes whose argv mentions `needle` (zombies excluded).
pub fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmd.contains(needle) {
            out.push((pid, cmd));
        }
    }
    out
}

/// Panics with the launcher's whole output.
#[track_caller]
pub fn assert_ok(out: &Output) {
    assert!(out.status.success(), "launcher failed: {}", show(out));
}

pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Counts of each line of `text`.
pub fn tally(text: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        *m.entry(l.to_string()).or_insert(0) += 1;
    }
    m
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
