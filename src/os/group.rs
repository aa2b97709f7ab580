//! Process groups: signalling one, knowing when it is empty, and reaping strays as PID 1.

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::proc;

/// Signals the whole group; a group already gone is not an error.
pub fn signal(pgid: Pid, sig: Signal) -> nix::Result<()> {
    match killpg(pgid, sig) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(e),
    }
}

/// True while a process of group `pgid` is alive (zombies do not count; see
/// [`proc::group_has_live_members`]), asking the kernel where `/proc` cannot be read.
pub fn has_live_members(pgid: Pid) -> bool {
    proc::group_has_live_members(pgid.as_raw())
        .unwrap_or_else(|| killpg(pgid, None) != Err(Errno::ESRCH))
}

/// As PID 1 (a container entrypoint), orphans are re-parented to us and must be reaped, or
/// they stay zombies. Only our own zombie children that tokio does not own are reaped, by pid:
/// a `waitpid(-1)` could steal the app's or pgpool's status from tokio.
pub fn reap_strays(exclude: &[Pid]) {
    let me = nix::unistd::getpid();
    if me.as_raw() != 1 {
        return;
    }
    for pid in proc::pids() {
        if exclude.contains(&Pid::from_raw(pid)) {
            continue;
        }
        if proc::stat(pid).is_some_and(|s| s.is_zombie() && s.ppid == me.as_raw()) {
            let _ = nix::sys::wait::waitpid(
                Pid::from_raw(pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
        }
    }
}
