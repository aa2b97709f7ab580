//! How a child is spawned, as small wrappers applied in order to a `tokio::process::Command`
//! (after process-wrap's `CommandWrapper`): each one changes the command before spawn, mostly
//! through a `pre_exec` hook, and says why it exists. pgpool and the app pick the ones they need.
//!
//! Every `pre_exec` hook runs between fork and exec, so it makes only async-signal-safe calls
//! and never allocates.

use std::os::fd::BorrowedFd;

use nix::sys::signal::{SigHandler, Signal};
use tokio::process::Command;

/// One change to a command before it is spawned.
pub trait Wrap {
    fn pre_spawn(&self, cmd: &mut Command);
}

/// Applies `wraps` in order.
pub fn wrap(cmd: &mut Command, wraps: &[&dyn Wrap]) {
    for w in wraps {
        w.pre_spawn(cmd);
    }
}

/// The child leads a process group of its own: a Ctrl-C or a signal sent to the launcher's group
/// does not reach it behind our back, and stopping it can reach every process it forks.
pub struct ProcessGroup;

impl Wrap for ProcessGroup {
    fn pre_spawn(&self, cmd: &mut Command) {
        cmd.process_group(0);
    }
}

/// The child gets this signal when the launcher dies (even by SIGKILL). If the launcher died
/// between fork and the `prctl`, the signal would never come: the child then fails to start.
pub struct ParentDeath(pub Signal);

impl Wrap for ParentDeath {
    fn pre_spawn(&self, cmd: &mut Command) {
        let (sig, parent) = (self.0, nix::unistd::getpid());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(sig)?;
                if nix::unistd::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
                }
                Ok(())
            });
        }
    }
}

/// The child's umask, for programs that create files with the mode they inherit.
pub struct Umask(pub u32);

impl Wrap for Umask {
    fn pre_spawn(&self, cmd: &mut Command) {
        let mode = nix::sys::stat::Mode::from_bits_truncate(self.0);
        // SAFETY: umask is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::stat::umask(mode);
                Ok(())
            });
        }
    }
}

/// The child's group becomes the terminal's foreground when `take` is true (see
/// [`owns_terminal`]), so Ctrl-C goes to it and only to it; and it gets the default SIGTTOU and
/// SIGTTIN back, which the launcher ignores for itself.
pub struct Foreground {
    pub take: bool,
}

impl Wrap for Foreground {
    fn pre_spawn(&self, cmd: &mut Command) {
        let take = self.take;
        // SAFETY: tcsetpgrp, getpid and signal are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if take {
                    // SIGTTOU is still ignored here (inherited), which lets a background group
                    // take the terminal.
                    let stdin = BorrowedFd::borrow_raw(0);
                    let _ = nix::unistd::tcsetpgrp(stdin, nix::unistd::getpid());
                }
                let _ = nix::sys::signal::signal(Signal::SIGTTOU, SigHandler::SigDfl);
                let _ = nix::sys::signal::signal(Signal::SIGTTIN, SigHandler::SigDfl);
                Ok(())
            });
        }
    }
}

/// True when stdin is a terminal whose foreground group is ours.
pub fn owns_terminal() -> bool {
    // SAFETY: fd 0 is open (or the calls fail harmlessly with EBADF).
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    nix::unistd::isatty(stdin).unwrap_or(false)
        && nix::unistd::tcgetpgrp(stdin).is_ok_and(|pg| pg == nix::unistd::getpgrp())
}

/// Makes the launcher's group the terminal's foreground again, after a [`Foreground`] child.
pub fn reclaim_terminal() {
    // SAFETY: fd 0 is open for the launcher's whole life.
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    let _ = nix::unistd::tcsetpgrp(stdin, nix::unistd::getpgrp());
}
