//! The only `unsafe` in ikc: `fork`.
//!
//! # Safety
//!
//! After `fork` in a process with several threads, the child may only call
//! async-signal-safe functions (nix's `fork` documentation, POSIX). ikc's
//! stronger rule makes the child unrestricted: the supervisor process is
//! single-threaded when it forks. It never starts a tokio runtime or a
//! thread, and its logging writes synchronously. Debug builds check the
//! thread count before each fork.

use nix::unistd::{ForkResult, Pid};

/// Which side of a fork this is.
pub(crate) enum Forked {
    /// The supervisor, with the new worker's pid.
    Parent(Pid),
    /// The new worker.
    Child,
}

/// Threads of this process, from `/proc/self/task`.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(1, Iterator::count)
}

/// Forks a worker process.
pub(crate) fn fork() -> nix::Result<Forked> {
    debug_assert_eq!(
        thread_count(),
        1,
        "the supervisor must be single-threaded when it forks"
    );
    // SAFETY: the supervisor is single-threaded (see the module docs, checked
    // above in debug builds), so the child is a full copy of the only thread
    // and may run any code afterwards, not only async-signal-safe functions.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        ForkResult::Child => Ok(Forked::Child),
    }
}
