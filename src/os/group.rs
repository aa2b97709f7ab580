//! Process groups: signalling one, knowing when it is empty, stopping one (the one way pgpool,
//! the app, and the guard after a dead launcher stop a group), and reaping strays as PID 1.

use std::future::Future;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::time::Instant;

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

/// What stopping a group came to, step by step, for the caller's own log lines: this module
/// knows no process by name, so it names no events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The leader outlived its deadline; the group is SIGKILLed next.
    TimedOut,
    /// The group was sent SIGKILL; the error, if that failed (a group already gone is not one).
    Killed(Option<Errno>),
    /// The leader is gone but members of its group are alive; the group is SIGKILLed next.
    MembersLeft,
    /// Members were still alive after that SIGKILL and another two seconds.
    NotEmpty,
}

/// Waits for a group's leader (`leader`: the wait for it, cancel-safe) until `deadline`, after
/// the caller has asked it to stop its own way; past the deadline SIGKILLs the whole group and
/// waits for the leader. Never the leader alone: its children would keep serving.
pub async fn stop<T>(
    pgid: Pid,
    leader: impl Future<Output = T>,
    deadline: Instant,
    tell: impl Fn(Step),
) -> T {
    let mut leader = std::pin::pin!(leader);
    if let Ok(v) = tokio::time::timeout_at(deadline, leader.as_mut()).await {
        return v;
    }
    tell(Step::TimedOut);
    tell(Step::Killed(signal(pgid, Signal::SIGKILL).err()));
    leader.await
}

/// Once the leader is gone, waits (2 s) for the rest of its group to exit, reaping strays as
/// PID 1; then SIGKILLs the group and waits as long again. Returns when the group is empty, or
/// after telling [`Step::NotEmpty`].
pub async fn empty(pgid: Pid, tell: impl Fn(Step)) {
    for round in 0..2 {
        for _ in 0..200 {
            reap_strays(&[]);
            if !has_live_members(pgid) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if round == 0 {
            tell(Step::MembersLeft);
            tell(Step::Killed(signal(pgid, Signal::SIGKILL).err()));
        }
    }
    tell(Step::NotEmpty);
}

/// The same stop for a process with no async runtime and no leader to wait for (the guard, a
/// fork of the launcher, after the launcher died): `first`, then SIGKILL to the group once
/// `grace` has passed with members alive, then up to 5 s more for the group to empty.
pub fn stop_blocking(pgid: Pid, first: Signal, grace: Duration) {
    let emptied_within = |limit: Duration| {
        let until = std::time::Instant::now() + limit;
        loop {
            if !has_live_members(pgid) {
                return true;
            }
            if std::time::Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let _ = signal(pgid, first);
    if !emptied_within(grace) {
        let _ = signal(pgid, Signal::SIGKILL);
        emptied_within(Duration::from_secs(5));
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A leader that does not exit and a member of its group: past the deadline both are
    /// SIGKILLed, and the group is then empty.
    #[tokio::test]
    async fn past_the_deadline_the_whole_group_is_killed() {
        let mut child = tokio::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = Pid::from_raw(child.id().unwrap() as i32);
        let steps = Mutex::new(Vec::new());
        let tell = |s| steps.lock().unwrap().push(s);
        let deadline = Instant::now() + Duration::from_millis(200);
        let status = stop(pgid, child.wait(), deadline, tell).await.unwrap();
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));
        empty(pgid, tell).await;
        assert_eq!(
            *steps.lock().unwrap(),
            vec![Step::TimedOut, Step::Killed(None)]
        );
        assert!(!has_live_members(pgid));
    }

    /// The guard's stop: a group that takes SIGINT ends on it; one that ignores it is SIGKILLed
    /// once the grace has passed, member and leader alike.
    #[test]
    fn the_blocking_stop_asks_first_then_kills_the_group() {
        use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
        let spawn = |script: &str| {
            let mut cmd = std::process::Command::new("sh");
            cmd.args(["-c", script]).process_group(0);
            // SAFETY: between fork and exec only signal(2), which is async-signal-safe. A shell
            // that started us in the background (`cmd &` without job control) left SIGINT
            // ignored, and an ignored signal stays ignored across exec: the polite group would
            // never end on it.
            unsafe {
                cmd.pre_exec(|| {
                    nix::sys::signal::signal(Signal::SIGINT, nix::sys::signal::SigHandler::SigDfl)
                        .map(|_| ())
                        .map_err(std::io::Error::from)
                });
            }
            cmd.spawn().unwrap()
        };
        let mut polite = spawn("exec sleep 30");
        let mut deaf = spawn("trap '' INT; sleep 30 & wait");
        // Let the shell install its trap before it is asked.
        std::thread::sleep(Duration::from_millis(200));
        for (child, ends_by) in [(&mut polite, Signal::SIGINT), (&mut deaf, Signal::SIGKILL)] {
            let pgid = Pid::from_raw(child.id() as i32);
            stop_blocking(pgid, Signal::SIGINT, Duration::from_millis(300));
            assert!(!has_live_members(pgid));
            assert_eq!(child.wait().unwrap().signal(), Some(ends_by as i32));
        }
    }

    #[tokio::test]
    async fn a_leader_that_exits_in_time_is_only_waited_for() {
        let mut child = tokio::process::Command::new("true")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = Pid::from_raw(child.id().unwrap() as i32);
        let steps = Mutex::new(Vec::new());
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = stop(pgid, child.wait(), deadline, |s| {
            steps.lock().unwrap().push(s)
        })
        .await
        .unwrap();
        assert!(status.success());
        assert!(steps.lock().unwrap().is_empty());
    }
}
