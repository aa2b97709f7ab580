//! The pgpool process: its life as a child in its
//! own process group. Stopping is always by group (NOTES gotcha 7: SIGKILL of the main pid
//! leaves ~36 children serving), and its output becomes our log lines.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::runtime_dir::RuntimeDir;
use crate::secret::Secret;

/// The running pgpool: its main process, which leads its own process group.
pub struct Pgpool {
    child: Child,
    pgid: Pid,
    status: Option<ExitStatus>,
    last_error: Arc<Mutex<Option<String>>>,
    /// The tasks relaying pgpool's stdout and stderr.
    relays: Vec<tokio::task::JoinHandle<()>>,
    /// Stops the group and removes the runtime directory if the launcher is SIGKILLed.
    _guard: Option<Guard>,
}

impl Pgpool {
    /// Starts pgpool in the foreground (`-n`), in a process group of its own. `stop_timeout` is
    /// also what the guard gives it if the launcher is SIGKILLed.
    pub fn spawn(
        bin: &Path,
        dir: &RuntimeDir,
        password: &Secret,
        stop_timeout: Duration,
    ) -> Result<Pgpool> {
        let mut cmd = Command::new(bin);
        cmd.arg("-n")
            .arg("-D")
            .arg("-f")
            .arg(dir.path().join("pgpool.conf"))
            .arg("-F")
            .arg(dir.path().join("pcp.conf"))
            .arg("-a")
            .arg(dir.path().join("pool_hba.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: a Ctrl-C meant for the app must not reach it, and stopping it can
            // reach every child it forks.
            .process_group(0);
        // pgpool needs none of the app's configuration: an allowlist keeps the URLs (and so the
        // password) and every other app secret out of the environment of its ~40 processes
        // (/proc/PID/environ), while an apt-installed pgpool still finds its libraries.
        cmd.env_clear()
            .envs(std::env::vars_os().filter(|(k, _)| pgpool_needs(k)));
        let parent = nix::unistd::getpid();
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // pgpool writes pgpool_status with its inherited umask (NOTES pitfalls).
                nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
                // If the launcher is SIGKILLed, pgpool gets SIGINT: a fast shutdown in which
                // pgpool itself stops all of its children. (Measured: after `kill -9` of the
                // launcher the whole group was gone within a second; the guard covers the
                // cases where pgpool ignores SIGINT, e.g. during a smart shutdown.)
                nix::sys::prctl::set_pdeathsig(Signal::SIGINT)?;
                if nix::unistd::getppid() != parent {
                    // No allocation between fork and exec.
                    return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("PGPOOL_BIN: cannot start {}", bin.display()))?;
        let pid = child.id().context("pgpool exited at once")?;
        let guard = Guard::start(Pid::from_raw(pid as i32), dir.path(), stop_timeout);
        let last_error = Arc::new(Mutex::new(None));
        let scrub = Scrubber::new(password);
        let mut relays = Vec::new();
        for stream in [
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let (scrub, last_error) = (scrub.clone(), last_error.clone());
            relays.push(tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let mut level = tracing::Level::DEBUG;
                let mut buf = Vec::new();
                // Bytes, not `lines()`: a client's application_name lands in pgpool's log
                // prefix, and one line that is not UTF-8 must not end the relay (pgpool would
                // then write into a closed pipe).
                for _ in 0..u64::MAX {
                    buf.clear();
                    match reader.read_until(b'\n', &mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let line = String::from_utf8_lossy(&buf);
                    let line = scrub.apply(line.trim_end_matches(['\n', '\r']));
                    level = relay_level(&line, pid).unwrap_or(level);
                    if level <= tracing::Level::WARN
                        && let Ok(mut e) = last_error.lock()
                    {
                        *e = Some(line.clone());
                    }
                    crate::log::pgpool_line(level, &line);
                }
            }));
        }
        Ok(Pgpool {
            child,
            pgid: Pid::from_raw(pid as i32),
            status: None,
            last_error,
            relays,
            _guard: guard,
        })
    }

    pub fn pid(&self) -> Pid {
        self.pgid
    }

    /// The last warning or error pgpool printed, to explain why it stopped.
    ///
    /// Once pgpool has exited, its last lines may still sit in the pipes: the relays get a
    /// moment to reach end of file first, so the reason is not lost to a race.
    pub async fn last_error(&mut self) -> Option<String> {
        if self.status.is_some() {
            let relays = std::mem::take(&mut self.relays);
            let _ = tokio::time::timeout(Duration::from_millis(300), async {
                for r in relays {
                    let _ = r.await;
                }
            })
            .await;
        }
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Resolves when pgpool's main process exits. Cancel-safe, so it can sit in a `select!`.
    pub async fn wait(&mut self) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let s = match self.child.wait().await {
            Ok(s) => s,
            // Only possible if someone else reaped it; treat it as gone.
            Err(_) => std::os::unix::process::ExitStatusExt::from_raw(0),
        };
        self.status = Some(s);
        s
    }

    /// Fast shutdown (SIGINT), then SIGKILL to the group once `timeout`
    /// has passed; returns once no process of the group is left, so the port is free.
    pub async fn stop(&mut self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        // SIGINT to the main process alone, as pgpool's own service unit does: it stops its
        // children itself. SIGTERM would be a smart shutdown that waits forever for clients
        // and cannot be escalated (NOTES Q7).
        if self.status.is_none() {
            match nix::sys::signal::kill(self.pgid, Signal::SIGINT) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(e) => tracing::warn!(error = %e, "pgpool-signal-failed"),
            }
        }
        if tokio::time::timeout_at(deadline, self.wait())
            .await
            .is_err()
        {
            tracing::warn!(timeout_s = timeout.as_secs_f64(), "pgpool-stop-timeout");
            self.signal(Signal::SIGKILL);
            self.wait().await;
        }
        // The main process is gone; its children may not be yet (it was SIGKILLed, or is
        // still winding them down). Wait for the group to empty, then force it.
        for round in 0..2 {
            for _ in 0..200 {
                crate::supervise::reap_strays(&[]);
                if !group_has_live_members(self.pgid) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if round == 0 {
                self.signal(Signal::SIGKILL);
            }
        }
        tracing::warn!(pgid = self.pgid.as_raw(), "pgpool-group-not-empty");
    }

    /// Signals the whole group; a group already gone is not an error.
    pub fn signal(&self, sig: Signal) {
        match killpg(self.pgid, sig) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => tracing::warn!(signal = %sig, error = %e, "pgpool-signal-failed"),
        }
    }
}

/// A small process forked from the launcher that outlives it: when the launcher dies without
/// saying goodbye (SIGKILL, OOM killer), the guard's end of a pipe reaches EOF, and the guard
/// stops pgpool's whole group (SIGINT, SIGKILL after the stop timeout) and removes the runtime
/// directory, which holds pool_passwd. A parent-death signal alone cannot do the second, and
/// pgpool ignores SIGINT once a smart shutdown (SIGTERM from the platform) is under way.
/// On a normal exit the launcher writes one byte: the guard leaves without touching anything.
struct Guard {
    pid: Pid,
    tell: Option<OwnedFd>,
}

impl Guard {
    fn start(pgid: Pid, dir: &Path, grace: Duration) -> Option<Guard> {
        // fork without exec is only sound in a process with a single thread (no lock can be
        // held by a thread that does not exist in the child). The launcher's runtime is
        // current-thread and nothing has spawned a blocking thread yet; check rather than trust.
        let threads = std::fs::read_dir("/proc/self/task").map(|d| d.count());
        if !matches!(threads, Ok(1)) {
            tracing::warn!("pgpool-guard-skipped");
            return None;
        }
        // CLOEXEC: the app and pgpool must not hold the write end, or EOF would never come.
        let (rd, wr) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "pgpool-guard-skipped");
                return None;
            }
        };
        let dir = dir.to_path_buf();
        // SAFETY: single-threaded (checked above); the child never returns into the runtime.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                drop(wr);
                guard_main(rd, pgid, &dir, grace)
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => Some(Guard {
                pid: child,
                tell: Some(wr),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "pgpool-guard-skipped");
                None
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(w) = self.tell.take() {
            let _ = nix::unistd::write(&w, b"x");
        }
        // It exits as soon as it reads the byte; bounded in case it was stopped or killed.
        use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
        for _ in 0..400 {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(5)),
                // Exited, or already reaped by `reap_strays` as PID 1.
                _ => return,
            }
        }
        tracing::warn!(pid = self.pid.as_raw(), "pgpool-guard-still-running");
    }
}

fn guard_main(rd: OwnedFd, pgid: Pid, dir: &Path, grace: Duration) -> ! {
    use nix::sys::signal::{SigHandler, signal};
    // The platform's SIGTERM, a terminal's SIGINT/SIGHUP: all meant for the launcher and app.
    for &sig in crate::supervise::FORWARDED.iter().chain(&[Signal::SIGPIPE]) {
        // SAFETY: SIG_IGN runs no code.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
    // SAFETY: SIG_DFL runs no code; the launcher's SIGCHLD handler belongs to its runtime.
    let _ = unsafe { signal(Signal::SIGCHLD, SigHandler::SigDfl) };
    // Out of the launcher's group, so `kill -9 -PGID` of the launcher's job leaves it standing.
    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
    // Hold nothing of the launcher's: not its stdout (a reader waiting for EOF would wait for
    // us), not pgpool's log pipes, not the runtime's sockets.
    let keep = rd.as_raw_fd();
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    for fd in fds.into_iter().filter(|&fd| fd != keep) {
        // SAFETY: this process is about to own no fds but `rd`; nothing else uses these.
        let _ = nix::unistd::close(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    }
    let mut b = [0u8; 1];
    let n = loop {
        match nix::unistd::read(&rd, &mut b) {
            Err(Errno::EINTR) => continue,
            r => break r,
        }
    };
    if n == Ok(0) {
        let gone = || !group_has_live_members(pgid);
        let wait_gone = |limit: Duration| {
            let until = std::time::Instant::now() + limit;
            while !gone() && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        let _ = killpg(pgid, Signal::SIGINT);
        wait_gone(grace);
        if !gone() {
            let _ = killpg(pgid, Signal::SIGKILL);
            wait_gone(Duration::from_secs(5));
        }
        let _ = std::fs::remove_dir_all(dir);
    }
    // _exit: this is a fork of the launcher; its exit handlers and buffers are not ours to run.
    // SAFETY: _exit has no preconditions.
    unsafe { nix::libc::_exit(0) }
}

/// True while a process of group `pgid` is alive. Zombies do not count: pgpool's main process,
/// orphaned by a dead launcher, stays a zombie until init gets round to reaping it (seconds,
/// on some hosts), and `kill(-pgid, 0)` would still count it.
fn group_has_live_members(pgid: Pid) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return killpg(pgid, None) != Err(Errno::ESRCH);
    };
    entries.flatten().any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // After the command name (in parentheses, may hold spaces): state ppid pgrp ...
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            return false;
        };
        let f: Vec<&str> = rest.split_whitespace().take(3).collect();
        f.len() == 3 && f[0] != "Z" && f[2].parse::<i32>().ok() == Some(pgid.as_raw())
    })
}

/// The environment pgpool gets: what a C program and its dynamic loader use, nothing of the app.
fn pgpool_needs(key: &std::ffi::OsStr) -> bool {
    let k = key.to_string_lossy();
    matches!(
        k.as_ref(),
        "PATH" | "HOME" | "LANG" | "TZ" | "TMPDIR" | "LD_LIBRARY_PATH" | "PGPOOLKEYFILE"
    ) || k.starts_with("LC_")
}

/// pgpool's severity words, mapped to ours. ERROR lines are mostly one client's failure (a
/// wrong password, a cancelled query), so they are warnings here, not launcher errors.
///
/// Only the main process speaks for pgpool as a whole: a child's FATAL is one client session
/// failing (during startup, every probe that arrives before the primary is found), so
/// children's lines are debug. Lines look like `main pid 123: LOG:  ...` (our
/// `log_line_prefix`).
fn relay_level(line: &str, main_pid: u32) -> Option<tracing::Level> {
    let level = severity(line)?;
    let from_main = line
        .split_once(" pid ")
        .and_then(|(_, rest)| rest.split(':').next())
        .and_then(|p| p.trim().parse::<u32>().ok())
        .is_none_or(|p| p == main_pid);
    Some(if from_main {
        level
    } else {
        tracing::Level::DEBUG
    })
}

fn severity(line: &str) -> Option<tracing::Level> {
    use tracing::Level;
    const WORDS: &[(&str, Option<Level>)] = &[
        ("PANIC:", Some(Level::ERROR)),
        ("FATAL:", Some(Level::ERROR)),
        ("ERROR:", Some(Level::WARN)),
        ("WARNING:", Some(Level::WARN)),
        ("NOTICE:", Some(Level::DEBUG)),
        ("LOG:", Some(Level::DEBUG)),
        ("INFO:", Some(Level::DEBUG)),
        ("DEBUG:", Some(Level::DEBUG)),
        // Continuation lines keep the level of the line they belong to.
        ("DETAIL:", None),
        ("HINT:", None),
        ("CONTEXT:", None),
        ("LOCATION:", None),
    ];
    // No frontend certificate is configured on purpose (the app talks plain TCP to loopback),
    // so pgpool's complaint about it is noise.
    if line.contains("could not load server certificate")
        || line.contains("could not load private key")
    {
        return Some(Level::DEBUG);
    }
    WORDS
        .iter()
        .filter_map(|(w, l)| line.find(w).map(|at| (at, *l)))
        .min_by_key(|(at, _)| *at)
        .map(|(_, l)| l.unwrap_or(Level::TRACE))
        .filter(|l| *l != Level::TRACE)
}

/// Removes the password, raw and percent-encoded, from relayed lines: pgpool does not print it
/// as far as we know, and this keeps it so if a future release starts to.
#[derive(Clone)]
struct Scrubber(Vec<String>);

impl Scrubber {
    fn new(password: &Secret) -> Self {
        let raw = password.expose().to_string();
        let enc = url::form_urlencoded::byte_serialize(raw.as_bytes()).collect::<String>();
        let pct = percent_encoding::utf8_percent_encode(&raw, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
        let mut v: Vec<String> = [raw, enc, pct]
            .into_iter()
            .filter(|s| s.len() >= 3)
            .collect();
        v.dedup();
        Scrubber(v)
    }

    fn apply(&self, line: &str) -> String {
        let mut out = line.to_string();
        for s in &self.0 {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_pgpool_severity() {
        use tracing::Level;
        assert_eq!(
            relay_level("main pid 1: FATAL:  bad", 1),
            Some(Level::ERROR)
        );
        assert_eq!(relay_level("main pid 1: ERROR:  bad", 1), Some(Level::WARN));
        assert_eq!(
            relay_level("child pid 2: FATAL:  auth", 1),
            Some(Level::DEBUG)
        );
        assert_eq!(
            relay_level("main pid 1: LOG:  started", 1),
            Some(Level::DEBUG)
        );
        assert_eq!(relay_level("main pid 1: DETAIL:  more", 1), None);
        assert_eq!(relay_level("no level", 1), None);
        assert_eq!(relay_level("FATAL:  no prefix", 1), Some(Level::ERROR));
        assert_eq!(
            relay_level("main pid 1: LOG:  ERROR: in text", 1),
            Some(Level::DEBUG)
        );
        assert_eq!(
            relay_level("WARNING:  could not load server certificate file \"\"", 1),
            Some(Level::DEBUG)
        );
    }

    #[test]
    fn scrubber_hides_the_password_in_every_encoding() {
        let s = Scrubber::new(&Secret::new("p@ss:w rd"));
        assert_eq!(s.apply("a p@ss:w rd b"), "a *** b");
        assert_eq!(s.apply("a p%40ss%3Aw%20rd b"), "a *** b");
        assert_eq!(s.apply("a p%40ss%3Aw+rd b"), "a *** b");
    }
}
