//! A small process forked from the launcher that outlives it, to clean up after a launcher
//! that died without saying goodbye.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::log::{self, event};
use crate::os::{group, memory, proc, signals};

/// A small process forked from the launcher that outlives it: when the launcher dies without
/// saying goodbye (SIGKILL, OOM killer), the guard's end of a pipe reaches EOF, and the guard
/// stops pgpool's whole group (SIGINT, SIGKILL after the stop timeout) and removes the runtime
/// directory, which holds pool_passwd. A parent-death signal alone cannot do the second, and
/// pgpool ignores SIGINT once a smart shutdown (SIGTERM from the platform) is under way.
/// On a normal exit the launcher writes one byte: the guard leaves without touching anything.
pub struct Guard {
    pid: Pid,
    tell: Option<OwnedFd>,
}

impl Guard {
    pub fn start(pgid: Pid, dir: &Path, grace: Duration) -> Option<Guard> {
        // fork without exec is only sound in a process with a single thread (no lock can be
        // held by a thread that does not exist in the child). The launcher's runtime is
        // current-thread and nothing has spawned a blocking thread yet; check rather than trust.
        if !matches!(proc::own_threads(), Ok(1)) {
            event!(log::events::PGPOOL_GUARD_SKIPPED);
            return None;
        }
        // CLOEXEC: the app and pgpool must not hold the write end, or EOF would never come.
        let (rd, wr) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
            Ok(p) => p,
            Err(e) => {
                event!(log::events::PGPOOL_GUARD_SKIPPED, error = %e);
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
                event!(log::events::PGPOOL_GUARD_SKIPPED, error = %e);
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
        event!(
            log::events::PGPOOL_GUARD_STILL_RUNNING,
            pid = self.pid.as_raw()
        );
    }
}

fn guard_main(rd: OwnedFd, pgid: Pid, dir: &Path, grace: Duration) -> ! {
    // The platform's SIGTERM, a terminal's SIGINT/SIGHUP: all meant for the launcher and app.
    signals::detach_from_launcher_signals();
    // Out of the launcher's group, so `kill -9 -PGID` of the launcher's job leaves it standing.
    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
    // The launcher's free pages are ours too until either side writes one: give them back.
    memory::trim();
    // Hold nothing of the launcher's: not its stdout (a reader waiting for EOF would wait for
    // us), not pgpool's log pipes, not the runtime's sockets.
    let keep = rd.as_raw_fd();
    for fd in proc::own_fds().into_iter().filter(|&fd| fd != keep) {
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
        group::stop_blocking(pgid, Signal::SIGINT, grace);
        let _ = std::fs::remove_dir_all(dir);
    }
    // _exit: this is a fork of the launcher; its exit handlers and buffers are not ours to run.
    // SAFETY: _exit has no preconditions.
    unsafe { nix::libc::_exit(0) }
}
