//! The app process and the loop that watches it beside pgpool. One `select!` decides what
//! happens to every signal and every exit:
//! - a signal is forwarded to the app (the app decides when to stop; pgpool keeps serving it);
//! - the app exits: pgpool is stopped after it, and its status becomes ours;
//! - pgpool dies: the app is stopped (SIGTERM, SIGKILL after a grace period), we fail;
//! - unless we were told to stop and pgpool exited cleanly: on Heroku the platform sends
//!   SIGTERM to pgpool too, and its smart shutdown ends as soon as the draining app has closed
//!   its sessions, often before the app itself exits. Then the app's exit code still counts.

use std::ffi::OsString;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Result, anyhow};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::exit::Code;
use crate::log::{self, event};
use crate::os::group::{self, reap_strays};
use crate::os::signals::{Signals, is_terminating};
use crate::os::spawn;
use crate::pgpool::Pgpool;
use crate::watch::SideTasks;

/// The app, spawned with the launcher's stdin, stdout and stderr.
pub struct App {
    child: Child,
    pid: Pid,
    took_terminal: bool,
}

impl App {
    pub fn spawn(command: &[OsString], vars: &[(String, String)]) -> std::io::Result<App> {
        let mut cmd = Command::new(&command[0]);
        cmd.args(&command[1..])
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        let took_terminal = spawn::owns_terminal();
        spawn::wrap(
            &mut cmd,
            &[
                // Its own group, so a signal sent to the launcher's group reaches it once
                // (through us), and pgpool never sees a Ctrl-C meant for it.
                &spawn::ProcessGroup,
                // A SIGKILLed launcher takes pgpool with it; the app, left without its
                // database, is asked to stop the way the launcher would have asked.
                &spawn::ParentDeath(Signal::SIGTERM),
                &spawn::Foreground {
                    take: took_terminal,
                },
            ],
        );
        let child = cmd.spawn()?;
        let pid = Pid::from_raw(child.id().map(|p| p as i32).unwrap_or(0));
        Ok(App {
            child,
            pid,
            took_terminal,
        })
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    pub fn forward(&self, sig: Signal) {
        forward(self.pid, sig);
    }

    pub async fn wait(&mut self) -> ExitStatus {
        let s = match self.child.wait().await {
            Ok(s) => s,
            Err(_) => std::os::unix::process::ExitStatusExt::from_raw(1 << 8),
        };
        if self.took_terminal {
            spawn::reclaim_terminal();
            self.took_terminal = false;
        }
        s
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: Duration) -> ExitStatus {
        self.forward(Signal::SIGTERM);
        self.wait_or_kill(grace).await
    }

    /// Waits up to `grace` for an app that was already told to stop, then SIGKILLs its whole
    /// process group (the one we made for it), so no worker of it is left behind.
    pub async fn wait_or_kill(&mut self, grace: Duration) -> ExitStatus {
        let pid = self.pid;
        let deadline = tokio::time::Instant::now() + grace;
        group::stop(pid, self.wait(), deadline, |step| match step {
            group::Step::TimedOut => {
                event!(log::events::APP_STOP_TIMEOUT, grace_s = grace.as_secs_f64())
            }
            group::Step::Killed(failed) => {
                if let Some(e) = failed {
                    event!(log::events::APP_KILL_FAILED, error = %e);
                }
                // In case the app left its group (setsid): the leader itself.
                forward(pid, Signal::SIGKILL);
            }
            group::Step::MembersLeft | group::Step::NotEmpty => {}
        })
        .await
    }
}

/// Sends the app a signal.
fn forward(pid: Pid, sig: Signal) {
    match kill(pid, sig) {
        // The app may have exited already; its exit is handled by the loop.
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => event!(log::events::FORWARD_FAILED, signal = %sig, error = %e),
    }
}

/// Runs the app beside a ready pgpool until one of them ends; returns the launcher's code.
/// The side tasks are stopped as soon as the launch starts to end (a stop signal, or either
/// process exiting).
pub async fn run(
    app: &mut App,
    pgpool: &mut Pgpool,
    signals: &mut Signals,
    side: &SideTasks,
    stop_timeout: Duration,
    app_stop_timeout: Duration,
) -> Result<Code> {
    // Set once a signal that asks the app to stop has been forwarded.
    let mut stopping = false;
    loop {
        tokio::select! {
            // Signals first: a SIGTERM that arrived with pgpool's exit must be counted before
            // that exit is judged.
            biased;
            sig = signals.recv() => {
                if sig == Signal::SIGCHLD {
                    reap_strays(&[app.pid(), pgpool.pid()]);
                } else {
                    event!(log::events::FORWARD, signal = %sig);
                    stopping |= is_terminating(sig);
                    // Not SIGHUP: many apps take it as "reload" and keep running, and should
                    // keep their monitoring and repairs. (Its exit, if it does exit, counts.)
                    if matches!(sig, Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT) {
                        side.stop();
                    }
                    app.forward(sig);
                }
            }
            status = app.wait() => {
                side.stop();
                event!(log::events::APP_EXITED, status = %status);
                pgpool.stop(stop_timeout).await;
                event!(log::events::PGPOOL_STOPPED);
                return Ok(Code::from_status(status));
            }
            status = pgpool.wait() => {
                side.stop();
                if stopping && status.success() {
                    // Someone else (the platform) asked pgpool to stop as well; the app is
                    // already draining, so it gets its grace period and no second signal.
                    event!(log::events::PGPOOL_EXITED_WHILE_STOPPING, status = %status);
                    let app_status = app.wait_or_kill(app_stop_timeout).await;
                    event!(log::events::APP_EXITED, status = %app_status);
                    pgpool.stop(stop_timeout).await;
                    return Ok(Code::from_status(app_status));
                }
                let why = pgpool.last_error().await.map(|l| format!(": {l}")).unwrap_or_default();
                app.stop(app_stop_timeout).await;
                pgpool.stop(stop_timeout).await;
                // The one line that says what happened (printed by main).
                return Err(anyhow!("pgpool exited unexpectedly ({status}){why}; the app was stopped"));
            }
        }
    }
}
