//! This program's global allocator: the system's, counting per thread the allocations made and
//! the bytes held, for benchmarks that report allocations and memory (`bench cache`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// (allocations, bytes held) by this thread: frees and shrinks count back.
    static COUNTS: Cell<(u64, i64)> = const { Cell::new((0, 0)) };
}

/// The system allocator, counting.
struct Counting;

fn count(new: u64, bytes: i64) {
    let _ = COUNTS.try_with(|c| {
        let (n, held) = c.get();
        c.set((n + new, held + bytes));
    });
}

// SAFETY: every method forwards to `System` unchanged; the counter is a const-initialized
// thread-local `Cell`, which never allocates and cannot re-enter the allocator.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(1, layout.size() as i64);
        // SAFETY: our caller's contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(0, -(layout.size() as i64));
        // SAFETY: our caller's contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(1, new_size as i64 - layout.size() as i64);
        // SAFETY: our caller's contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Allocations (and reallocations) this thread made so far.
pub(crate) fn allocations() -> u64 {
    COUNTS.with(|c| c.get().0)
}

/// Bytes this thread holds: allocated minus freed (by this thread) so far.
pub(crate) fn held_bytes() -> i64 {
    COUNTS.with(|c| c.get().1)
}
