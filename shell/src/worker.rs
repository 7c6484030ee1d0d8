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
//! The library's threads are the C library's (`pthread_create`): the change watcher's, which
//! outlives the call starting it ([`spawn_detached`]), and a prefetch's workers, which share
//! the caller's work and are joined before it returns ([`run_alongside`]). std's start of a
//! thread, in a Rust program, maps the thread's signal stack in the new thread and ends the
//! process when it cannot, at a moment no caller chose (a load under memory pressure);
//! `pthread_create` fails with an error the caller handles, and the thread then needs nothing
//! more.

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
    // A panic ends this thread only (unwinding out of this function would end the process).
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
    std::ptr::null_mut()
}

/// Starts a thread named `name` (at most 15 bytes) running `work`, detached (never joined):
/// false if the C library could not start it (no memory for its stack, the process's thread
/// limit), `work` then dropped here. See the module documentation for why not std's threads.
#[allow(unsafe_code)] // pthread_create and the work handed over as a raw pointer
pub(crate) fn spawn_detached(name: &CStr, work: impl FnOnce() + Send + 'static) -> bool {
    let argument = Box::into_raw(Box::new(Box::new(work) as Work));
    // SAFETY: the start routine takes ownership of `argument`, which stays valid until it does
    // (it is freed here only if no thread was started).
    let Some(thread) = (unsafe { create(DETACHED_STACK, start_detached, argument.cast()) }) else {
        // SAFETY: no thread took it: still ours, from `Box::into_raw` above.
        drop(unsafe { Box::from_raw(argument) });
        return false;
    };
    // SAFETY: a thread just started; its name is NUL-terminated and at most 15 bytes (else
    // the call fails, which only leaves the thread unnamed); detached once, by its creator.
    unsafe {
        pthread_setname_np(thread, name.as_ptr());
        pthread_detach(thread);
    }
    true
}

/// `pthread_attr_t`'s room (glibc: 56 bytes on 64-bit targets, 64 on aarch64; musl: 56).
#[repr(C, align(8))]
struct Attributes([u8; 64]);

#[allow(unsafe_code)]
extern "C" {
    fn pthread_attr_init(attributes: *mut Attributes) -> i32;
    fn pthread_attr_setstacksize(attributes: *mut Attributes, size: usize) -> i32;
    fn pthread_attr_destroy(attributes: *mut Attributes) -> i32;
    fn pthread_join(thread: std::ffi::c_ulong, result: *mut *mut c_void) -> i32;
}

/// A detached thread's stack: std's default for spawned threads (the C library's default is
/// the stack limit, 8 MiB usually).
const DETACHED_STACK: usize = 2 << 20;

/// Starts a thread of `stack` bytes of stack (the C library's default size where it refuses
/// that one) running `start(argument)`; `None` if it could not be started.
///
/// # Safety
/// `argument` is what `start` expects, valid for as long as the thread uses it.
#[allow(unsafe_code)] // pthread_attr_* and pthread_create
unsafe fn create(
    stack: usize,
    start: extern "C" fn(*mut c_void) -> *mut c_void,
    argument: *mut c_void,
) -> Option<std::ffi::c_ulong> {
    let mut attributes = Attributes([0; 64]);
    let mut thread: std::ffi::c_ulong = 0;
    // SAFETY: the attributes are initialized before use and destroyed once; the argument is
    // forwarded to our caller's contract.
    unsafe {
        let sized = pthread_attr_init(&mut attributes) == 0;
        if sized {
            pthread_attr_setstacksize(&mut attributes, stack);
        }
        let attributes_pointer: *const c_void =
            if sized { std::ptr::from_ref(&attributes).cast() } else { std::ptr::null() };
        let started = pthread_create(&mut thread, attributes_pointer, start, argument) == 0;
        if sized {
            pthread_attr_destroy(&mut attributes);
        }
        started.then_some(thread)
    }
}

/// What a shared thread returns when its work panicked.
const PANICKED: *mut c_void = std::ptr::dangling_mut::<c_void>();

/// A shared thread's start: marks it one the library started, then runs the work it borrows.
#[allow(unsafe_code)] // the work handed over as a raw pointer
extern "C" fn start_shared<F: Fn() + Sync>(argument: *mut c_void) -> *mut c_void {
    mark();
    // SAFETY: `argument` is the `&F` `run_alongside` passed, which joins this thread before the
    // borrow ends.
    let work = unsafe { &*argument.cast_const().cast::<F>() };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(()) => std::ptr::null_mut(),
        Err(_) => PANICKED,
    }
}

/// Threads started by [`run_alongside`], joined when dropped (also while the calling thread's
/// share unwinds: none outlives the work it borrows).
struct Shared(Vec<std::ffi::c_ulong>);

impl Shared {
    /// Joins every thread; whether one's work panicked.
    #[allow(unsafe_code)] // pthread_join
    fn join(&mut self) -> bool {
        let mut panicked = false;
        for thread in self.0.drain(..) {
            let mut result = std::ptr::null_mut();
            // SAFETY: a thread started by `run_alongside` and not joined yet (drained).
            unsafe { pthread_join(thread, &mut result) };
            panicked |= result == PANICKED;
        }
        panicked
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.join();
    }
}

/// Runs `work` on up to `extra` threads of the C library's (`stack` bytes of stack each) and on
/// the calling thread, returning once every one is done: how many threads started (fewer where
/// the C library could not start more: memory, the process's thread limit; the others do
/// their share, down to the calling thread alone). A panic in a thread's work is raised again
/// here once all are joined. See the module documentation for why not std's threads.
#[allow(unsafe_code)] // threads borrowing the work until they are joined
pub(crate) fn run_alongside<F: Fn() + Sync>(extra: usize, stack: usize, work: &F) -> usize {
    let mut threads = Shared(Vec::new());
    if extra > 0 && threads.0.try_reserve_exact(extra).is_ok() {
        let argument = std::ptr::from_ref(work).cast_mut().cast::<c_void>();
        for _ in 0..extra {
            // SAFETY: the argument is `work`, which outlives every thread started (joined by
            // `threads` before this returns or unwinds).
            let Some(thread) = (unsafe { create(stack, start_shared::<F>, argument) }) else { break };
            threads.0.push(thread);
        }
    }
    let started = threads.0.len();
    work();
    assert!(!threads.join(), "a library thread's work panicked");
    started
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

    #[test]
    fn shared_work_runs_on_every_thread_started_and_all_are_joined_before_the_return() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Mutex;
        let runs = AtomicUsize::new(0);
        let marked = Mutex::new(Vec::new());
        let work = || {
            runs.fetch_add(1, Ordering::Relaxed);
            marked.lock().unwrap().push(super::keeps_state());
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let started = super::run_alongside(3, 256 << 10, &work);
        assert_eq!(started, 3);
        // Every run is done (joined): the calling thread's and each thread's.
        assert_eq!(runs.load(Ordering::Relaxed), 4);
        let mut marked = marked.into_inner().unwrap();
        marked.sort_unstable();
        assert_eq!(marked, [false, false, false, true], "only the library's threads are marked");
        assert_eq!(super::run_alongside(0, 256 << 10, &|| ()), 0);
    }

    #[test]
    fn a_detached_thread_runs_its_work_marked() {
        let (send, receive) = std::sync::mpsc::channel();
        assert!(super::spawn_detached(c"smf-test", move || send.send(super::keeps_state()).unwrap()));
        assert_eq!(receive.recv_timeout(std::time::Duration::from_secs(10)), Ok(false));
    }
}
