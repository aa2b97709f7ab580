//! The launcher's own heap, kept small: an idle dyno's launcher, guard and pgpool together are
//! held to 35 MiB (docs/pgpool.md, "What an idle dyno costs the servers"). Measured on the
//! release build, idle: launcher and guard 10.8 MiB as glibc leaves them, 7.0 MiB with both
//! calls below.

/// One malloc arena for the whole process. glibc gives each new thread an arena of its own, and
/// a thread's freed memory stays in it after the thread ends: the start-up TLS checks (a thread
/// per server, each loading OpenSSL's tables) left about 1 MiB in each of three arenas. The
/// launcher's few threads rarely allocate at once, so sharing one costs nothing measurable.
/// Call before any thread starts.
pub fn one_arena() {
    // SAFETY: mallopt only sets an allocator parameter; nothing else runs yet.
    unsafe { nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1) };
}

/// Gives the free pages of the heap back to the kernel. Called after the start-up TLS checks,
/// whose threads allocate most, and in the guard right after its fork: a free page the two
/// still share is copied for the launcher the first time it allocates on it.
pub fn trim() {
    // SAFETY: malloc_trim only returns free memory; it is thread-safe.
    unsafe { nix::libc::malloc_trim(0) };
}
