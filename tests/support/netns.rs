//! A network namespace of the test's own, so that a test may drop a node's packets with
//! iptables (`etc/test-cluster node DIR N cut`) without touching this machine's firewall.
//!
//! [`enter`] moves the calling thread into a new namespace with only a loopback device, up.
//! Namespaces are per thread on Linux and inherited by what the thread then starts: the
//! cluster, the launcher and pgpool (processes), the load (a thread). A libtest test runs on a
//! thread of its own, so each test that enters gets a fresh namespace and leaves the others
//! in the host's.

use std::process::Command;

/// Enters a fresh network namespace, or panics saying why it cannot: a test that needs one
/// never runs without it.
pub fn enter() {
    // SAFETY: unshare(2) changes only this thread's network namespace; no memory is touched.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert!(
        rc == 0,
        "cannot make a network namespace for this test (unshare(CLONE_NEWNET): {}); it needs \
         root or CAP_SYS_ADMIN",
        std::io::Error::last_os_error()
    );
    let out = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` (iproute2) to bring up loopback: {e}"));
    assert!(
        out.status.success(),
        "ip link set lo up in the test's namespace failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// This thread's namespace is not the one PID 1 is in.
pub fn is_private() -> bool {
    let ns = |p: &str| std::fs::read_link(p).ok();
    ns("/proc/thread-self/ns/net") != ns("/proc/1/ns/net")
}
