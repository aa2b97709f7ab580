//! The app process and the loop that watches it beside pgpool. One `select!` decides what
//! happens to every signal and every exit:
//! - a signal is forwarded to the app (the app decides when to stop; pgpool keeps serving it);
//! - the app exits: pgpool is stopped after it, and its status becomes ours;
//! - pgpool dies: the app is stopped (SIGTERM, SIGKILL after a grace period), we fail;
//! - unless we were told to stop and pgpool exited cleanly: on Heroku the platform sends
//!   SIGTERM to pgpool too, and its smart shutdown ends as soon as the draining app has closed
//!   its sessions, often before the app itself exits. Then the app's exit code still counts.

use std::ffi::OsString;
use std::os::fd::BorrowedFd;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Result, anyhow};
use nix::errno::Errno;
use nix::sys::signal::{SigHandler, Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

use crate::exit::Code;
use crate::pgpool::Pgpool;

/// The signals the launcher takes; all but SIGCHLD are forwarded to the app.
pub const FORWARDED: &[Signal] = &[
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Signals that end the launch while the app has not started yet.
pub fn is_terminating(sig: Signal) -> bool {
    matches!(
        sig,
        Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP | Signal::SIGQUIT
    )
}

pub struct Signals {
    streams: Vec<(Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    /// Registers every handler at once, before any child exists, so nothing is lost between
    /// spawning pgpool and entering the loop.
    pub fn install() -> Result<Signals> {
        let mut streams = Vec::new();
        for &sig in FORWARDED.iter().chain([Signal::SIGCHLD].iter()) {
            let s = signal(SignalKind::from_raw(sig as i32))
                .map_err(|e| anyhow!("cannot handle {sig}: {e}"))?;
            streams.push((sig, s));
        }
        // A launcher in the background of a terminal must still be able to take the terminal
        // back from the app after it exits (tini does the same).
        // SAFETY: setting a disposition to SIG_IGN runs no code in a handler.
        unsafe {
            let _ = nix::sys::signal::signal(Signal::SIGTTOU, SigHandler::SigIgn);
            let _ = nix::sys::signal::signal(Signal::SIGTTIN, SigHandler::SigIgn);
        }
        Ok(Signals { streams })
    }

    /// The next signal; cancel-safe.
    pub async fn recv(&mut self) -> Signal {
        let futs = self.streams.iter_mut().map(|(sig, s)| {
            let sig = *sig;
            Box::pin(async move {
                s.recv().await;
                sig
            })
        });
        futures_select_all(futs).await
    }
}

/// The first of several futures to finish (no extra crate for one call site).
async fn futures_select_all<F: std::future::Future<Output = Signal> + Unpin>(
    futs: impl Iterator<Item = F>,
) -> Signal {
    let mut futs: Vec<F> = futs.collect();
    std::future::poll_fn(move |cx| {
        for f in futs.iter_mut() {
            if let std::task::Poll::Ready(s) = std::pin::Pin::new(f).poll(cx) {
                return std::task::Poll::Ready(s);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

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
            .stderr(Stdio::inherit())
            // Its own group, so a signal sent to the launcher's group reaches it once (through
            // us), and pgpool never sees a Ctrl-C meant for it.
            .process_group(0);
        let took_terminal = owns_terminal();
        let parent = nix::unistd::getpid();
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // A SIGKILLed launcher takes pgpool with it; the app, left without its
                // database, is asked to stop the way the launcher would have asked.
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
                if nix::unistd::getppid() != parent {
                    // No allocation between fork and exec.
                    return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
                }
                if took_terminal {
                    // The app's group becomes the terminal's foreground, so Ctrl-C goes to it
                    // (and only to it). SIGTTOU is ignored here (inherited), which lets a
                    // background group take the terminal.
                    let stdin = BorrowedFd::borrow_raw(0);
                    let _ = nix::unistd::tcsetpgrp(stdin, nix::unistd::getpid());
                }
                let _ = nix::sys::signal::signal(Signal::SIGTTOU, SigHandler::SigDfl);
                let _ = nix::sys::signal::signal(Signal::SIGTTIN, SigHandler::SigDfl);
                Ok(())
            });
        }
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
        match kill(self.pid, sig) {
            // The app may have exited already; its exit is handled by the loop.
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => tracing::warn!(signal = %sig, error = %e, "forward-failed"),
        }
    }

    pub async fn wait(&mut self) -> ExitStatus {
        let s = match self.child.wait().await {
            Ok(s) => s,
            Err(_) => std::os::unix::process::ExitStatusExt::from_raw(1 << 8),
        };
        if self.took_terminal {
            // SAFETY: fd 0 is open for the launcher's whole life.
            let stdin = unsafe { BorrowedFd::borrow_raw(0) };
            let _ = nix::unistd::tcsetpgrp(stdin, nix::unistd::getpgrp());
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
        match tokio::time::timeout(grace, self.wait()).await {
            Ok(s) => s,
            Err(_) => {
                tracing::warn!(grace_s = grace.as_secs_f64(), "app-stop-timeout");
                match nix::sys::signal::killpg(self.pid, Signal::SIGKILL) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(e) => tracing::warn!(error = %e, "app-kill-failed"),
                }
                // In case the app left its group (setsid): the leader itself.
                self.forward(Signal::SIGKILL);
                self.wait().await
            }
        }
    }
}

/// True when stdin is a terminal whose foreground group is ours: then the app gets it.
fn owns_terminal() -> bool {
    // SAFETY: fd 0 is open (or the calls fail harmlessly with EBADF).
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    nix::unistd::isatty(stdin).unwrap_or(false)
        && nix::unistd::tcgetpgrp(stdin).is_ok_and(|pg| pg == nix::unistd::getpgrp())
}

/// Runs the app beside a ready pgpool until one of them ends; returns the launcher's code.
/// `shutdown` turns true as soon as the launch starts to end (a stop signal, or either
/// process exiting), for the tasks that run beside the app.
pub async fn run(
    app: &mut App,
    pgpool: &mut Pgpool,
    signals: &mut Signals,
    shutdown: &tokio::sync::watch::Sender<bool>,
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
                    tracing::debug!(signal = %sig, "forward");
                    stopping |= is_terminating(sig);
                    // Not SIGHUP: many apps take it as "reload" and keep running, and should
                    // keep their monitoring and repairs. (Its exit, if it does exit, counts.)
                    if matches!(sig, Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT) {
                        shutdown.send_replace(true);
                    }
                    app.forward(sig);
                }
            }
            status = app.wait() => {
                shutdown.send_replace(true);
                tracing::info!(status = %status, "app-exited");
                pgpool.stop(stop_timeout).await;
                tracing::info!("pgpool-stopped");
                return Ok(Code::from_status(status));
            }
            status = pgpool.wait() => {
                shutdown.send_replace(true);
                if stopping && status.success() {
                    // Someone else (the platform) asked pgpool to stop as well; the app is
                    // already draining, so it gets its grace period and no second signal.
                    tracing::info!(status = %status, "pgpool-exited-while-stopping");
                    let app_status = app.wait_or_kill(app_stop_timeout).await;
                    tracing::info!(status = %app_status, "app-exited");
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

/// As PID 1 (a container entrypoint), orphans are re-parented to us and must be reaped, or
/// they stay zombies. Only our own zombie children that tokio does not own are reaped, by pid:
/// a `waitpid(-1)` could steal the app's or pgpool's status from tokio.
pub fn reap_strays(exclude: &[Pid]) {
    let me = nix::unistd::getpid();
    if me.as_raw() != 1 {
        return;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if exclude.contains(&Pid::from_raw(pid)) {
            continue;
        }
        if proc_state_and_parent(pid) == Some(('Z', me.as_raw())) {
            let _ = nix::sys::wait::waitpid(
                Pid::from_raw(pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
        }
    }
}

/// A process's state letter and parent pid, from `/proc/PID/stat`.
pub fn proc_state_and_parent(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields resume after the command name, which is in parentheses and may hold spaces.
    let mut f = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = f.next()?.chars().next()?;
    Some((state, f.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_gives_state_and_parent() {
        let me = std::process::id() as i32;
        let (state, ppid) = proc_state_and_parent(me).unwrap();
        assert!(state.is_ascii_uppercase(), "{state}");
        assert_eq!(ppid, nix::unistd::getppid().as_raw());
        assert_eq!(proc_state_and_parent(-1), None);
    }
}
