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
//!
//! A thread that outlives the call starting it (the change watcher's) is started with
//! `pthread_create` itself ([`spawn_detached`]): std's start of a thread, in a Rust program,
//! maps the thread's signal stack in the new thread and ends the process when it cannot, at a
//! moment no caller chose (a load under memory pressure); `pthread_create` fails with an error
//! the caller handles, and the thread then needs nothing more.

use std::cell::Cell;
use std::ffi::{c_void, CStr};

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

#[allow(unsafe_code)]
extern "C" {
    /// The C library's (glibc, musl; std links it). `pthread_t` is an `unsigned long` on Linux.
    fn pthread_create(
        thread: *mut std::ffi::c_ulong,
        attributes: *const c_void,
        start: extern "C" fn(*mut c_void) -> *mut c_void,
        argument: *mut c_void,
    ) -> i32;
    fn pthread_detach(thread: std::ffi::c_ulong) -> i32;
    fn pthread_setname_np(thread: std::ffi::c_ulong, name: *const std::ffi::c_char) -> i32;
}

/// The work a detached thread runs.
type Work = Box<dyn FnOnce() + Send>;

/// A detached thread's start: marks it one the library started, then runs its work.
#[allow(unsafe_code)] // the work handed over as a raw pointer
extern "C" fn start_detached(argument: *mut c_void) -> *mut c_void {
    // SAFETY: `argument` is the `Box<Work>` `spawn_detached` leaked for this thread alone.
    let work = unsafe { Box::from_raw(argument.cast::<Work>()) };
    mark();
    work();
    std::ptr::null_mut()
}

/// Starts a thread named `name` (at most 15 bytes) running `work`, detached (never joined):
/// false if the C library could not start it (no memory for its stack, the process's thread
/// limit), `work` then dropped here. See the module documentation for why not std's threads.
#[allow(unsafe_code)] // pthread_create and the work handed over as a raw pointer
pub(crate) fn spawn_detached(name: &CStr, work: impl FnOnce() + Send + 'static) -> bool {
    let argument = Box::into_raw(Box::new(Box::new(work) as Work));
    let mut thread: std::ffi::c_ulong = 0;
    // SAFETY: default attributes; the start routine takes ownership of `argument`, which stays
    // valid until it does (it is freed here only if no thread was started).
    let started = unsafe { pthread_create(&mut thread, std::ptr::null(), start_detached, argument.cast()) };
    if started != 0 {
        // SAFETY: no thread took it: still ours, from `Box::into_raw` above.
        drop(unsafe { Box::from_raw(argument) });
        return false;
    }
    // SAFETY: a thread just started; its name is NUL-terminated and at most 15 bytes (else
    // the call fails, which only leaves the thread unnamed); detached once, by its creator.
    unsafe {
        pthread_setname_np(thread, name.as_ptr());
        pthread_detach(thread);
    }
    true
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
