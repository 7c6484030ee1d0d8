//! What the library knows of `fork`: a generation, counted up in each child by a
//! `pthread_atfork` child handler (registered when something first needs it), by which state
//! made for the parent is told from the child's own. A child has the parent's memory but only
//! the thread that forked: the change watcher's thread stayed in the parent, so the notices it
//! would have set ([`crate::watch`]) never fire in the child; they answer by their generation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

/// How many forks lie between the process that started the library's watching and this one.
static GENERATION: AtomicU64 = AtomicU64::new(0);

extern "C" {
    /// The C library's (glibc, musl; std links it).
    fn pthread_atfork(
        prepare: Option<extern "C" fn()>,
        parent: Option<extern "C" fn()>,
        child: Option<extern "C" fn()>,
    ) -> i32;
}

/// Runs in the child of every `fork` (the C library calls it before `fork` returns there).
extern "C" fn in_child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// Counts forks from now on (once per process; children inherit the registration).
pub(crate) fn count_forks() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        #[allow(unsafe_code)]
        // SAFETY: the handler only increments an atomic (async-signal-safe, as a child
        // handler must be); the registration outlives nothing it points to.
        let _ = unsafe { pthread_atfork(None, None, Some(in_child)) };
    });
}

/// This process's generation: 0 in the process that called [`count_forks`] first, one more in
/// each child forked since.
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}
