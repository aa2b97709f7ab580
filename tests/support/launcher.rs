//! The one launcher harness (after fd's `TestEnv`): a [`Launcher`] is a cleared environment
//! with only what a dyno would have (a private runtime parent, a free port, the cluster's URLs)
//! in which it runs the built `start-pgpool`; the helpers print the launcher's whole output
//! when an assertion fails. The ways to run it:
//!
//! * [`Launcher::command`], [`Launcher::run_sh`]: once, to the end; [`assert_ok`], [`show`].
//! * [`Launcher::spawn_holding`], then [`release`]: with an app that waits to be let go.
//! * [`Run`]: watched, every process of its tree recorded and its output awaited line by line;
//!   [`Run::finish`] gives a [`Done`] that [`Launcher::assert_clean`] checks.
//! * [`Launcher::on_terminal`]: as the session leader of a pseudo-terminal.
//! * [`Live`]: in the background, its app's `DATABASE_URL` handed to the test (for a load).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::api::events::{self, Event};
use super::cluster::Cluster;
use super::proc::{Proc, cmdline, descendants};

/// The launcher under test, as cargo built it for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_start-pgpool");

/// Bound on anything in a watched run that should take a second or two: catches hangs, not
/// slowness.
pub const HANG: Duration = Duration::from_secs(25);

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// Debian 12's pgpool 4.3.5 (package pgpool2, which `etc/install-deps` installs): the stock
/// pgpool that comparisons and the 4.3-family tests run.
pub const DEBIAN_PGPOOL: &str = "/usr/sbin/pgpool";

/// Debian's pgpool, or the test fails: a comparison that cannot run must say so, not pass.
pub fn debian_pgpool() -> &'static Path {
    let bin = Path::new(DEBIAN_PGPOOL);
    assert!(
        bin.is_file(),
        "no {DEBIAN_PGPOOL}: this test compares against Debian's pgpool2 package; run etc/install-deps"
    );
    bin
}

/// Where `etc/build-pgpool` leaves its output (`PGPOOL_BUILD_OUT`, as the script reads it).
pub fn pgpool_build_dir() -> PathBuf {
    std::env::var_os("PGPOOL_BUILD_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".build/pgpool"))
}

/// The launcher as users run it: the release profile, built here by cargo (at once when
/// `etc/test` built it first; cargo rebuilds it when the source moved on). For what the build
/// itself decides, like memory: the test build's unoptimized code alone is 11 MiB more PSS.
pub fn release_bin() -> PathBuf {
    static REL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    REL.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "build",
                "--release",
                "--locked",
                "--quiet",
                "--bin",
                "start-pgpool",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run cargo build --release");
        assert!(
            out.status.success(),
            "cargo build --release failed: {}",
            show(&out)
        );
        // Beside the test build's profile directory, wherever CARGO_TARGET_DIR put it.
        let bin = Path::new(BIN)
            .parent()
            .and_then(Path::parent)
            .expect("BIN is <target>/debug/start-pgpool")
            .join("release/start-pgpool");
        assert!(
            bin.is_file(),
            "no {} after cargo build --release",
            bin.display()
        );
        bin
    })
    .clone()
}

/// The buildpack's own pgpool (the pinned release + patches/), unpacked by `etc/build-pgpool`.
pub fn built_pgpool() -> PathBuf {
    pgpool_build_dir().join("root/bin/pgpool")
}

/// What `etc/build-pgpool` made (`etc/test` runs it before the tests), for the tests that need
/// that build itself (its artifacts, its version) and not another build of ours. Missing, the
/// test fails: a test never builds it, so no run passes by building it halfway through.
pub fn ensure_built_pgpool() -> PathBuf {
    let bin = built_pgpool();
    assert!(bin.is_file(), "no {}: run etc/build-pgpool", bin.display());
    bin
}

/// The pgpool the tests run, always a build of ours: `START_PGPOOL_TEST_PGPOOL_BIN` (another
/// build of the same source and patches, say one under a sanitizer), else what
/// `etc/build-pgpool` made (`etc/test` runs it first). Neither there: the test fails saying
/// so. Tests that want a stock pgpool name it themselves ([`debian_pgpool`]).
pub fn pgpool_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let (bin, from) = match std::env::var_os("START_PGPOOL_TEST_PGPOOL_BIN") {
            Some(bin) => (PathBuf::from(bin), "START_PGPOOL_TEST_PGPOOL_BIN"),
            None => (built_pgpool(), "etc/build-pgpool's output"),
        };
        assert!(
            bin.is_file(),
            "no pgpool at {} ({from}): run etc/build-pgpool",
            bin.display()
        );
        assert!(
            is_ours(&bin),
            "{} ({from}) is not a build of ours: its --version does not say backend_sslmode: yes (patch 0007); run etc/build-pgpool",
            bin.display()
        );
        bin
    })
    .clone()
}

/// The pgpool under test was built with the sanitizers (`PGPOOL_SANITIZE=address
/// etc/build-pgpool`, run by `etc/test-asan`): its reports then fail the test whose launcher
/// started it ([`Launcher`]'s drop).
pub fn sanitizer_build() -> bool {
    static SANITIZED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SANITIZED.get_or_init(|| {
        let bin = std::fs::read(pgpool_bin()).unwrap_or_default();
        bin.windows(b"__asan_init".len())
            .any(|w| w == b"__asan_init")
    })
}

/// Every sanitizer report in `dir`, one entry per file: its name and its first lines (the
/// error, and the top of its stack).
pub fn sanitizer_reports(dir: &Path) -> Vec<String> {
    let mut reports: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let head: Vec<&str> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .take(14)
                .collect();
            format!("{}:\n{}", p.display(), head.join("\n"))
        })
        .collect();
    reports.sort();
    reports
}

/// pgpool `bin` was built from our patches: 0007 makes `--version` say it reads
/// `backend_sslmodeN`, which stock pgpool cannot.
pub fn is_ours(bin: &Path) -> bool {
    Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).contains("backend_sslmode: yes"))
        .unwrap_or(false)
}

/// A cleared environment for the launcher (the test's `TestEnv`), with a private runtime parent
/// (removed on drop) and a port of its own.
pub struct Launcher {
    /// Everything the launcher gets; nothing of the test process's environment leaks in.
    pub env: BTreeMap<String, OsString>,
    /// `PGPOOL_PORT` (except for [`Launcher::empty`], which sets nothing).
    pub port: u16,
    pub runtime_parent: tempfile::TempDir,
    /// The launcher binary: the test build ([`BIN`]) unless a test asks for [`release_bin`].
    pub bin: PathBuf,
    /// Where a sanitizer build of pgpool writes its reports ([`sanitizer_build`]); read when the
    /// launcher is dropped.
    pub sanitizer_logs: Option<tempfile::TempDir>,
}

impl Launcher {
    /// No variables at all: the test sets every one it means.
    pub fn empty() -> Launcher {
        Launcher {
            env: BTreeMap::new(),
            port: free_port(),
            runtime_parent: tempfile::tempdir().unwrap(),
            bin: PathBuf::from(BIN),
            sanitizer_logs: None,
        }
    }

    /// PATH, HOME and the runtime parent, the pgpool under test, a free PGPOOL_PORT; no URL.
    pub fn bare() -> Launcher {
        let mut l = Launcher::empty();
        let parent = l.runtime_parent.path().as_os_str().to_owned();
        let port = l.port.to_string();
        l.set("PATH", std::env::var("PATH").unwrap_or_default())
            .set("HOME", &parent)
            .set("PGPOOL_BIN", pgpool_bin())
            .set("PGPOOL_PORT", port)
            .set("PGPOOL_RUNTIME_DIR", &parent);
        if sanitizer_build() {
            let logs = tempfile::tempdir().unwrap();
            let at = |name: &str| logs.path().join(name).display().to_string();
            // Leaks are not errors here: pgpool, like PostgreSQL, leaves its process's memory to
            // the process's exit. UBSan traps in this build (etc/build-pgpool says why), and
            // handle_sigill makes ASan report the trap, with its stack, in the same log.
            let asan = format!("log_path={}:detect_leaks=0:handle_sigill=1", at("asan"));
            l.set("ASAN_OPTIONS", asan);
            l.sanitizer_logs = Some(logs);
        }
        l
    }

    /// Primary and every follower of `cluster`, the way a Heroku app with followers is set up.
    pub fn new(cluster: &Cluster) -> Launcher {
        let mut l = Launcher::bare();
        l.set("PGPOOL_NUM_INIT_CHILDREN", "8")
            .set("DATABASE_URL", cluster.primary_url());
        let mut names = vec!["DATABASE_URL".to_string()];
        for i in 1..=cluster.followers() {
            let name = format!("FOLLOWER{i}_URL");
            l.set(&name, cluster.follower_url(i));
            names.push(name);
        }
        l.set("PGPOOL_URLS", names.join(" "));
        l.use_pgpool(pgpool_bin());
        l
    }

    /// Runs pgpool `bin`. One without our patch 0007 has a single ssl switch and cannot refuse
    /// plaintext, so the launcher refuses `sslmode=require` for it: the URLs say `prefer`
    /// instead, which is what such a pgpool does (the test clusters serve TLS only, so its
    /// sessions are TLS all the same).
    pub fn use_pgpool(&mut self, bin: impl AsRef<Path>) -> &mut Self {
        let bin = bin.as_ref();
        self.set("PGPOOL_BIN", bin);
        if !is_ours(bin) {
            for v in self.env.values_mut() {
                if let Some(s) = v.to_str()
                    && s.starts_with("postgres")
                {
                    *v = s.replace("sslmode=require", "sslmode=prefer").into();
                }
            }
        }
        self
    }

    pub fn set(&mut self, k: &str, v: impl AsRef<OsStr>) -> &mut Self {
        self.env.insert(k.into(), v.as_ref().to_owned());
        self
    }

    pub fn unset(&mut self, k: &str) -> &mut Self {
        self.env.remove(k);
        self
    }

    /// `start-pgpool ARGS` in this environment only, stdin from /dev/null.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
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

    /// The private runtime directory of the launcher running on [`Launcher::port`].
    pub fn runtime_dir(&self) -> Option<PathBuf> {
        let prefix = format!("start-pgpool-{}-", self.port);
        std::fs::read_dir(self.runtime_parent.path())
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
    }

    /// True when nothing is left in the runtime parent (the private directory is gone).
    pub fn runtime_dir_is_gone(&self) -> bool {
        std::fs::read_dir(self.runtime_parent.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .all(|e| !e.file_name().to_string_lossy().starts_with("start-pgpool-"))
    }

    pub fn port_is_free(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err()
    }

    /// Starts the launcher with an app that says `up` once it runs and then waits for a line on
    /// stdin; returns when the app is up. `release` lets it exit.
    pub fn spawn_holding(&self) -> Child {
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

    /// The launcher as the session leader of a fresh pseudo-terminal, like `heroku run` gives
    /// it.
    pub fn on_terminal(&self, args: &[&str]) -> (Child, Pty) {
        let ws = nix::pty::Winsize {
            ws_row: 24,
            ws_col: 120,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(&ws, None).expect("openpty");
        let mut cmd = self.command(args);
        cmd.env("TERM", "dumb")
            .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
            .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
            .stderr(Stdio::from(pty.slave.try_clone().unwrap()));
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()?;
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn the launcher on a pty");
        drop(pty.slave);
        let master = std::fs::File::from(pty.master);
        let mut reader = master.try_clone().unwrap();
        let text = Arc::new(Mutex::new(String::new()));
        let t = text.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once every holder of the slave side is gone.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                t.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        (child, Pty { master, text })
    }

    /// After a watched run: nothing of it left running, the runtime directory gone, the port
    /// free.
    #[track_caller]
    pub fn assert_clean(&self, d: &Done) {
        let until = Instant::now() + Duration::from_secs(10);
        let left = loop {
            let left: Vec<&Proc> = d.seen.iter().filter(|p| p.alive()).collect();
            if left.is_empty() || Instant::now() > until {
                break left;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(left.is_empty(), "processes left: {left:?}\n{}", d.show());
        assert!(
            d.seen.iter().any(|p| p.cmd.contains("pgpool -n")),
            "pgpool was seen running: {:?}",
            d.seen
        );
        assert!(self.runtime_dir_is_gone(), "runtime dir left\n{}", d.show());
        assert!(
            self.port_is_free(),
            "port {} still open\n{}",
            self.port,
            d.show()
        );
    }
}

/// Lets an app from [`Launcher::spawn_holding`] exit, and waits for the launcher.
pub fn release(mut child: Child) -> Output {
    writeln!(child.stdin.take().unwrap(), "go").unwrap();
    child.wait_with_output().unwrap()
}

// Watched runs --------------------------------------------------------------------------------

/// Records every process now in the tree under `root` that `seen` does not hold yet, with the
/// command line it has when first seen.
pub fn record_tree(seen: &mut BTreeMap<u32, Proc>, root: u32) {
    for pid in descendants(root) {
        if !seen.contains_key(&pid)
            && let Some(p) = Proc::now(pid)
        {
            seen.insert(pid, p);
        }
    }
}

/// SIGKILLs every process under `root` when dropped while armed: a failing test leaves
/// nothing running (the runtime directory goes with the launcher's temp parent).
pub struct KillTreeOnDrop {
    root: u32,
    armed: bool,
}

impl KillTreeOnDrop {
    pub fn new(root: u32) -> KillTreeOnDrop {
        KillTreeOnDrop { root, armed: true }
    }

    /// The run ended: what is left now is for [`Launcher::assert_clean`] to report, not to
    /// hide.
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Launcher {
    /// A sanitizer report from the pgpool this launcher started fails the test that started it,
    /// naming the report, even when everything else the test saw was right.
    fn drop(&mut self) {
        let Some(logs) = &self.sanitizer_logs else {
            return;
        };
        // Only a report is ever written there: any entry is one, read once it is kept.
        let any = std::fs::read_dir(logs.path()).is_ok_and(|mut d| d.next().is_some());
        if !any {
            return;
        }
        // Kept for a closer look: the temporary directory goes when the launcher does.
        let kept = logs.path().with_extension("kept");
        let _ = std::fs::rename(logs.path(), &kept);
        let reports = sanitizer_reports(&kept);
        if std::thread::panicking() {
            // The test failed already: a second panic would abort the run.
            eprintln!(
                "the sanitizer build of pgpool also reported (kept in {}):\n{}",
                kept.display(),
                reports.join("\n\n")
            );
            return;
        }
        panic!(
            "the sanitizer build of pgpool reported {} error(s) (kept in {}):\n{}",
            reports.len(),
            kept.display(),
            reports.join("\n\n")
        );
    }
}

impl Drop for KillTreeOnDrop {
    fn drop(&mut self) {
        if self.armed {
            for p in descendants(self.root) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// The launcher under test, its output collected line by line, every process of its tree
/// recorded while it runs.
pub struct Run {
    cleanup: KillTreeOnDrop,
    pub child: Child,
    /// The launcher's pid (under `unshare`, the launcher's, not unshare's).
    pub launcher: u32,
    lines: Receiver<String>,
    /// The stdout lines read so far.
    pub out: Vec<String>,
    err: Arc<Mutex<String>>,
    seen: BTreeMap<u32, Proc>,
}

/// A watched run that has ended.
pub struct Done {
    pub status: ExitStatus,
    pub out: Vec<String>,
    pub err: String,
    /// Every process of the tree seen while it ran.
    pub seen: Vec<Proc>,
}

impl Done {
    pub fn show(&self) -> String {
        format!(
            "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.out.join("\n"),
            self.err
        )
    }

    pub fn has(&self, line: &str) -> bool {
        self.out.iter().any(|l| l == line)
    }

    /// `start-pgpool: error:` lines and l2met lines at level=error.
    pub fn error_lines(&self) -> Vec<&str> {
        self.err
            .lines()
            .filter(|l| l.starts_with("start-pgpool: error:") || l.contains(" level=error"))
            .collect()
    }
}

impl Run {
    /// Starts `cmd` (a [`Launcher::command`], or one that runs the launcher under another
    /// program) with its stdout and stderr collected.
    pub fn spawn(mut cmd: Command) -> Run {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the launcher");
        let (tx, lines) = channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let err = Arc::new(Mutex::new(String::new()));
        let (e, mut stderr) = (err.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                e.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let launcher = child.id();
        Run {
            cleanup: KillTreeOnDrop::new(launcher),
            child,
            launcher,
            lines,
            out: Vec::new(),
            err,
            seen: BTreeMap::new(),
        }
    }

    pub fn show(&self) -> String {
        format!(
            "--- stdout so far\n{}\n--- stderr so far\n{}",
            self.out.join("\n"),
            self.err.lock().unwrap()
        )
    }

    /// Records every process now in the tree (the launcher's parent's tree, so `unshare`
    /// and the launcher under it are both covered).
    pub fn watch(&mut self) {
        record_tree(&mut self.seen, self.child.id());
    }

    /// Waits for a stdout line equal to `want`.
    #[track_caller]
    pub fn expect(&mut self, want: &str) {
        if !self.wait_line(|l| l == want) {
            panic!("no line {want:?}\n{}", self.show());
        }
    }

    /// Waits for a stdout line starting with `prefix`.
    #[track_caller]
    pub fn expect_prefix(&mut self, prefix: &str) {
        if !self.wait_line(|l| l.starts_with(prefix)) {
            panic!("no line starting {prefix:?}\n{}", self.show());
        }
    }

    /// Reads stdout lines (at most [`HANG`]) until one is `hit`, watching the tree meanwhile.
    fn wait_line(&mut self, hit: impl Fn(&str) -> bool) -> bool {
        let until = Instant::now() + HANG;
        while Instant::now() < until {
            self.watch();
            match self.lines.recv_timeout(Duration::from_millis(50)) {
                Ok(l) => {
                    let found = hit(&l);
                    self.out.push(l);
                    if found {
                        return true;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
        }
        false
    }

    /// Pid of the launcher's child whose argv mentions `needle`.
    pub fn child_mentioning(&self, needle: &str) -> u32 {
        super::proc::children_of(self.launcher)
            .into_iter()
            .find(|&p| cmdline(p).contains(needle))
            .unwrap_or_else(|| panic!("no child of the launcher runs {needle:?}\n{}", self.show()))
    }

    pub fn pgpool_pid(&self) -> u32 {
        self.child_mentioning("pgpool -n")
    }

    /// Every process of the tree, the launcher included.
    pub fn tree(&self) -> Vec<u32> {
        descendants(self.launcher)
    }

    /// Waits (bounded) for the launcher to exit, recording the tree meanwhile.
    pub fn finish(mut self) -> Done {
        let until = Instant::now() + HANG;
        let status = loop {
            self.watch();
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > until {
                panic!("the launcher did not exit within {HANG:?}\n{}", self.show());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The app's processes may keep stdout open a moment longer; bounded.
        let drain_until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < drain_until {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => self.out.push(l),
                Err(RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
        }
        let err = self.err.lock().unwrap().clone();
        self.cleanup.disarm();
        Done {
            status,
            out: self.out,
            err,
            seen: self.seen.into_values().collect(),
        }
    }
}

/// Output of a pseudo-terminal's master side, collected by a thread.
pub struct Pty {
    master: std::fs::File,
    pub text: Arc<Mutex<String>>,
}

impl Pty {
    #[track_caller]
    pub fn expect(&self, needle: &str) {
        let until = Instant::now() + HANG;
        while Instant::now() < until {
            if self.text.lock().unwrap().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no {needle:?} on the terminal:\n{}",
            self.text.lock().unwrap()
        );
    }

    pub fn type_in(&mut self, s: &str) {
        self.master.write_all(s.as_bytes()).unwrap();
    }
}

// In the background -----------------------------------------------------------------------------

/// A launcher running an app that only publishes its `DATABASE_URL` and waits; stopped (and
/// its log collected) on drop or by [`Live::stop`].
pub struct Live {
    child: Option<Child>,
    log: PathBuf,
    /// The app's `DATABASE_URL`: pgpool's, for a load to go through.
    pub url: String,
    l: Launcher,
}

impl Live {
    pub fn start(l: Launcher) -> Live {
        let dir = l.runtime_parent.path().to_path_buf();
        let url_file = dir.join("url");
        let log = dir.join("launcher.log");
        let mut cmd = l.command(&[
            "sh",
            "-c",
            r#"printf %s "$DATABASE_URL" > "$0.tmp" && mv "$0.tmp" "$0" && exec sleep 300"#,
            url_file.to_str().unwrap(),
        ]);
        cmd.stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = cmd.spawn().expect("start start-pgpool");
        let mut live = Live {
            child: Some(child),
            log,
            url: String::new(),
            l,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(u) = std::fs::read_to_string(&url_file) {
                live.url = u;
                return live;
            }
            if let Some(s) = live.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("launcher exited ({s}) before the app ran:\n{}", live.log());
            }
            assert!(
                Instant::now() < deadline,
                "the app did not start within 30 s:\n{}",
                live.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The launcher's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the launcher was stopped").id()
    }

    /// The launcher's environment (its runtime directory, `status` on its port).
    pub fn launcher(&self) -> &Launcher {
        &self.l
    }

    /// One session of `psql` (the binary at `psql`) through the app's `DATABASE_URL`, as the app
    /// would open it: the trimmed output (no command tags), or psql's stderr.
    pub fn sql(&self, psql: &Path, sql: &str) -> Result<String, String> {
        let out = Command::new(psql)
            .arg(&self.url)
            .args(["-qXAtc", sql])
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .expect("run psql");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// The launcher's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Children the launcher found stuck and SIGKILLed (src/watch/stuck/).
    pub fn stuck_kills(&self) -> usize {
        self.log()
            .matches(&super::l2met::at(events::PGPOOL_CHILD_STUCK))
            .count()
    }

    /// Waits (max `timeout`) until the launcher has logged `n` lines of `event`.
    pub fn wait_log(&self, event: Event, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let at = event.name;
        let needle = format!(" at={at} ");
        while self.log().matches(&needle).count() < n {
            assert!(
                Instant::now() < deadline,
                "no {n} `at={at}` lines within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits (max 30 s; SIGKILL after that). Returns the launcher's log.
    pub fn stop(&mut self) -> String {
        if let Some(mut c) = self.child.take() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait().unwrap().is_none() {
                if Instant::now() >= deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.log()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stop();
    }
}

// Output --------------------------------------------------------------------------------------

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
