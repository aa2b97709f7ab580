//! The pgpool process: its life as a child in its own process group. Stopping is always by
//! group (docs/pgpool.md, "Signals and stopping": SIGKILL of the main pid leaves ~36 children
//! serving), and its output becomes our log lines (relay.rs).

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::guard::Guard;
use super::relay;
use super::runtime_dir::{File, RuntimeDir};
use crate::log::{self, event};
use crate::os::{group, spawn};
use crate::secret::Secret;

/// The running pgpool: its main process, which leads its own process group.
pub struct Pgpool {
    child: Child,
    pgid: Pid,
    status: Option<ExitStatus>,
    last_error: relay::LastError,
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
        let files = dir.files();
        let mut cmd = Command::new(bin);
        cmd.arg("-n")
            .arg("-D")
            .arg("-f")
            .arg(files.path(File::PgpoolConf))
            .arg("-F")
            .arg(files.path(File::PcpConf))
            .arg("-a")
            .arg(files.path(File::PoolHba))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // pgpool needs none of the app's configuration: an allowlist keeps the URLs (and so the
        // password) and every other app secret out of the environment of its ~40 processes
        // (/proc/PID/environ), while an apt-installed pgpool still finds its libraries.
        cmd.env_clear()
            .envs(std::env::vars_os().filter(|(k, _)| pgpool_needs(k)));
        spawn::wrap(
            &mut cmd,
            &[
                // A Ctrl-C meant for the app must not reach it, and stopping it can reach every
                // child it forks.
                &spawn::ProcessGroup,
                // pgpool writes pgpool_status with its inherited umask (docs/pgpool.md, "umask
                // and pgpool_status").
                &spawn::Umask(0o077),
                // If the launcher is SIGKILLed, pgpool gets SIGINT: a fast shutdown in which
                // pgpool itself stops all of its children. (Measured: after `kill -9` of the
                // launcher the whole group was gone within a second; the guard covers the
                // cases where pgpool ignores SIGINT, e.g. during a smart shutdown.)
                &spawn::ParentDeath(Signal::SIGINT),
            ],
        );
        let mut child = cmd
            .spawn()
            .with_context(|| format!("PGPOOL_BIN: cannot start {}", bin.display()))?;
        let pid = child.id().context("pgpool exited at once")?;
        let guard = Guard::start(Pid::from_raw(pid as i32), dir.path(), stop_timeout);
        let last_error = relay::LastError::default();
        let scrub = relay::Scrubber::new(password);
        let mut relays = Vec::new();
        if let Some(s) = child.stderr.take() {
            relays.push(relay::start(s, pid, scrub.clone(), last_error.clone()));
        }
        if let Some(s) = child.stdout.take() {
            relays.push(relay::start(s, pid, scrub, last_error.clone()));
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
        // and cannot be escalated (docs/pgpool.md, "Signals and stopping").
        if self.status.is_none() {
            match nix::sys::signal::kill(self.pgid, Signal::SIGINT) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(e) => {
                    event!(log::events::PGPOOL_SIGNAL_FAILED, signal = %Signal::SIGINT, error = %e)
                }
            }
        }
        let pgid = self.pgid;
        let tell = move |step| match step {
            group::Step::TimedOut => {
                event!(
                    log::events::PGPOOL_STOP_TIMEOUT,
                    timeout_s = timeout.as_secs_f64()
                )
            }
            group::Step::Killed(Some(e)) => {
                event!(log::events::PGPOOL_SIGNAL_FAILED, signal = %Signal::SIGKILL, error = %e)
            }
            group::Step::Killed(None) => {}
            // pgpool's main process exits after its children; one left means main never
            // signalled it (docs/pgpool.md, "Signals and stopping").
            group::Step::MembersLeft => {
                event!(log::events::PGPOOL_CHILDREN_LEFT, pgid = pgid.as_raw())
            }
            group::Step::NotEmpty => {
                event!(log::events::PGPOOL_GROUP_NOT_EMPTY, pgid = pgid.as_raw())
            }
        };
        group::stop(pgid, self.wait(), deadline, tell).await;
        // The main process is gone; its children may not be yet (it was SIGKILLed, or is
        // still winding them down).
        group::empty(pgid, tell).await;
    }
}

/// The environment pgpool gets: what a C program and its dynamic loader use, nothing of the app.
/// ASAN_OPTIONS too: a sanitizer build of pgpool (`PGPOOL_SANITIZE=address etc/build-pgpool`)
/// reads where to write its reports from it; it holds no secret.
fn pgpool_needs(key: &std::ffi::OsStr) -> bool {
    let k = key.to_string_lossy();
    matches!(
        k.as_ref(),
        "PATH"
            | "HOME"
            | "LANG"
            | "TZ"
            | "TMPDIR"
            | "LD_LIBRARY_PATH"
            | "PGPOOLKEYFILE"
            | "ASAN_OPTIONS"
    ) || k.starts_with("LC_")
}
