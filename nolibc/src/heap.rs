//! The heap without libc: a bump allocator over anonymous mappings. A loader run is short and
//! allocates little (the file, the module's bookkeeping), so freed memory is not reused;
//! allocations of a quarter chunk or more get mappings of their own, unmapped when freed.

#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};

use rustix::mm::{MapFlags, ProtFlags};

/// Bytes mapped at a time for small allocations.
const CHUNK: usize = 1 << 20;

/// The current chunk: its next free byte and its end (0 and 0 before the first).
struct Bump {
    next: usize,
    end: usize,
}

/// The heap: the bump state behind a spin lock (the chunk's next byte and end change together).
pub struct Heap {
    locked: AtomicBool,
    bump: UnsafeCell<Bump>,
}

// SAFETY: `bump` is only touched while `locked` is held (see `with_bump`).
unsafe impl Sync for Heap {}

impl Heap {
    pub const fn new() -> Self {
        Self { locked: AtomicBool::new(false), bump: UnsafeCell::new(Bump { next: 0, end: 0 }) }
    }

    fn with_bump<T>(&self, f: impl FnOnce(&mut Bump) -> T) -> T {
        while self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            core::hint::spin_loop();
        }
        // SAFETY: the lock is ours until the store below, so no other reference exists.
        let result = f(unsafe { &mut *self.bump.get() });
        self.locked.store(false, Ordering::Release);
        result
    }
}

fn map(len: usize) -> *mut u8 {
    // SAFETY: a fresh private anonymous mapping at an address the kernel picks aliases nothing.
    let mapped = unsafe {
        rustix::mm::mmap_anonymous(
            ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE,
        )
    };
    mapped.map_or(ptr::null_mut(), |p| p.cast())
}

fn page_rounded(len: usize) -> Option<usize> {
    len.checked_next_multiple_of(4096)
}

/// Whether `layout` gets a mapping of its own.
fn own_mapping(layout: Layout) -> bool {
    layout.size() >= CHUNK / 4 || layout.align() > 4096
}

// SAFETY: every block handed out is fresh, aligned as asked and never handed out twice: the
// bump moves under a lock, and blocks of their own mappings are the kernel's fresh pages.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if own_mapping(layout) {
            return page_rounded(layout.size()).map_or(ptr::null_mut(), map);
        }
        self.with_bump(|bump| {
            // Sizes here are below a quarter chunk and alignments at most a page: no overflow.
            let start = (bump.next + layout.align() - 1) & !(layout.align() - 1);
            if bump.next == 0 || start + layout.size() > bump.end {
                let chunk = map(CHUNK);
                if chunk.is_null() {
                    return ptr::null_mut();
                }
                // A page-aligned chunk: the block starts it.
                bump.next = chunk as usize + layout.size();
                bump.end = chunk as usize + CHUNK;
                return chunk;
            }
            bump.next = start + layout.size();
            start as *mut u8
        })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if own_mapping(layout) {
            if let Some(len) = page_rounded(layout.size()) {
                // SAFETY: a mapping of its own made by `alloc` with this length, now unused.
                let _ = unsafe { rustix::mm::munmap(ptr.cast(), len) };
            }
        }
    }
}
