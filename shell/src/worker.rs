//! Threads the library starts for itself (a prefetch's workers) keep nothing per thread that
//! needs a destructor: registering one is an allocation the C library makes on first use, and
//! glibc ends the process when it fails (memory pressure on a fresh thread). Such a thread is
//! marked here, with a flag that needs no destructor itself, and the thread-locals that keep
//! something (the file reader's buffer, the module cache's memo) do without on it.
//!
//! What such a thread allocates, it allocates fallibly wherever the size grows with the input
//! or the process's history: the file's bytes, a load's tables, a chunk's bookkeeping, the
//! cache's entry and its list of modules added, the registry's list of modules to index, the
//! change watcher's tables (a path goes unwatched, a module unindexed until memory returns,
//! rather than the process ending). Left infallible are pieces of a fixed size, allocated once
//! per file: the module's shared record and its path, a node of the index of code, an error's
//! message.

use std::cell::Cell;

thread_local! {
    /// This thread is one the library started (no destructor: nothing to register).
    static WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as one the library started, for the rest of its life.
pub(crate) fn mark() {
    WORKER.set(true);
}

/// Whether the calling thread keeps per-thread state with a destructor (it is not one the
/// library started).
pub(crate) fn keeps_state() -> bool {
    !WORKER.get()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_marked_thread_keeps_no_state_and_others_do() {
        assert!(super::keeps_state());
        std::thread::spawn(|| {
            super::mark();
            assert!(!super::keeps_state());
        })
        .join()
        .unwrap();
        assert!(super::keeps_state(), "the mark is the thread's alone");
    }
}
