//! The signals the launcher takes, and the one stream they arrive on. Handlers are installed
//! once, before any child exists, so nothing is lost between spawning pgpool and the loop that
//! decides what each signal means (launch/supervise.rs).

use anyhow::{Result, anyhow};
use nix::sys::signal::{SigHandler, Signal};
use tokio::signal::unix::{SignalKind, signal};

/// The signals forwarded to the app: every one tini forwards but SIGPIPE and the realtime ones
/// (`NOT_FORWARDED` says why), so that start-pgpool can stand where tini stands (PID 1, or
/// between a platform and the app) and no signal sent to it ends it by its default action. The guard that outlives a killed launcher ignores the same ones
/// (they are meant for the launcher and app).
pub const FORWARDED: &[Signal] = &[
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGALRM,
    Signal::SIGPWR,
    Signal::SIGVTALRM,
    Signal::SIGPROF,
    Signal::SIGXCPU,
    Signal::SIGXFSZ,
    Signal::SIGIO,
    Signal::SIGURG,
    Signal::SIGSTKFLT,
    // tini forwards these two as well: a SIGTSTP stops the app, not the launcher that watches
    // it; a SIGCONT resumes it.
    Signal::SIGTSTP,
    Signal::SIGCONT,
];

/// Every other signal, and why it is not forwarded (README, "Shutdown"); only the unit test that
/// keeps the two lists covering every signal reads it. Realtime signals (SIGRTMIN..) are in
/// neither: no platform sends them, and their default action still ends the launcher.
#[cfg(test)]
const NOT_FORWARDED: &[(Signal, &str)] = &[
    (Signal::SIGCHLD, "the launcher's own: it reaps its children"),
    (
        Signal::SIGPIPE,
        "the launcher's own writes to a closed pipe or socket raise it; ignored, as Rust does",
    ),
    (
        Signal::SIGTTIN,
        "ignored, as tini does, so the launcher can take the terminal back",
    ),
    (
        Signal::SIGTTOU,
        "ignored, as tini does, so the launcher can take the terminal back",
    ),
    (Signal::SIGFPE, "synchronous: the launcher's own fault"),
    (Signal::SIGILL, "synchronous: the launcher's own fault"),
    (Signal::SIGSEGV, "synchronous: the launcher's own fault"),
    (Signal::SIGBUS, "synchronous: the launcher's own fault"),
    (Signal::SIGABRT, "synchronous: the launcher's own abort"),
    (Signal::SIGTRAP, "synchronous: a debugger's breakpoint"),
    (
        Signal::SIGSYS,
        "synchronous: the launcher's own bad system call",
    ),
    (Signal::SIGKILL, "cannot be caught"),
    (Signal::SIGSTOP, "cannot be caught"),
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
    /// Registers every handler at once; needs a tokio runtime entered.
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
        let mut futs: Vec<_> = self
            .streams
            .iter_mut()
            .map(|(sig, s)| {
                let sig = *sig;
                Box::pin(async move {
                    s.recv().await;
                    sig
                })
            })
            .collect();
        // The first of the streams to yield (no extra crate for one call site).
        std::future::poll_fn(move |cx| {
            for f in futs.iter_mut() {
                if let std::task::Poll::Ready(s) = f.as_mut().poll(cx) {
                    return std::task::Poll::Ready(s);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
}

/// In a forked process that will not exec: ignore every signal meant for the launcher and its
/// app, and give SIGCHLD back its default (the launcher's handler belongs to its runtime).
pub fn detach_from_launcher_signals() {
    for &sig in FORWARDED.iter().chain(&[Signal::SIGPIPE]) {
        // SAFETY: SIG_IGN runs no code.
        let _ = unsafe { nix::sys::signal::signal(sig, SigHandler::SigIgn) };
    }
    // SAFETY: SIG_DFL runs no code.
    let _ = unsafe { nix::sys::signal::signal(Signal::SIGCHLD, SigHandler::SigDfl) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signal_is_forwarded_or_says_why_not() {
        for sig in Signal::iterator() {
            let forwarded = FORWARDED.contains(&sig);
            let kept = NOT_FORWARDED.iter().any(|(s, _)| *s == sig);
            assert!(
                forwarded != kept,
                "{sig}: forwarded {forwarded}, not forwarded {kept}"
            );
        }
        assert_eq!(
            FORWARDED.len() + NOT_FORWARDED.len(),
            Signal::iterator().count()
        );
    }

    #[test]
    fn the_signals_a_dyno_gets_are_forwarded() {
        for sig in [
            Signal::SIGTERM,
            Signal::SIGALRM,
            Signal::SIGPWR,
            Signal::SIGUSR1,
        ] {
            assert!(FORWARDED.contains(&sig), "{sig}");
        }
        for sig in [Signal::SIGCHLD, Signal::SIGPIPE, Signal::SIGSEGV] {
            assert!(!FORWARDED.contains(&sig), "{sig}");
        }
    }
}
