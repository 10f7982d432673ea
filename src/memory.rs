//! Giving freed memory back to the OS (glibc).
//!
//! Every HTTP connection and every session runs on a thread of its own, and glibc gives threads
//! their own malloc arenas (up to eight per core), each of which keeps what was freed in it.
//! A burst of large requests then leaves hundreds of MiB resident that nothing uses: 100,000
//! malformed requests took the broker from 9 to 297 MiB RSS and it stayed there. So the broker
//! uses at most two arenas ([`limit_arenas`], at start) and hands free pages back every
//! `reaper_interval` ([`trim`], from the reaper thread).
//!
//! Elsewhere (musl, other systems) both are no-ops.

/// At most two malloc arenas. Call before threads are started.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; M_ARENA_MAX takes any positive int.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Return the free pages of every arena to the OS (`malloc_trim`). Takes each arena's lock in
/// turn; a few milliseconds at most.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
