//! The heap without libc: a bump allocator over anonymous mappings. A loader run is short and
//! allocates little (the file, the module's bookkeeping), so freed memory is not reused;
//! allocations of a chunk or more get mappings of their own, unmapped when freed.

#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

use rustix::mm::{MapFlags, ProtFlags};

/// Bytes mapped at a time for small allocations.
const CHUNK: usize = 1 << 20;

/// The heap: the current chunk's next free byte and its end.
pub struct Heap {
    next: AtomicUsize,
    end: AtomicUsize,
}

impl Heap {
    pub const fn new() -> Self {
        Self { next: AtomicUsize::new(0), end: AtomicUsize::new(0) }
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

// SAFETY: every block handed out is fresh, aligned as asked, and never handed out twice; the
// bump is a compare-and-swap, so threads (the core may start none, but could) never share bytes.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= CHUNK / 4 || layout.align() > 4096 {
            return page_rounded(layout.size()).map_or(ptr::null_mut(), map);
        }
        loop {
            let (next, end) = (self.next.load(Ordering::Acquire), self.end.load(Ordering::Acquire));
            let start = (next + layout.align() - 1) & !(layout.align() - 1);
            if next != 0 && start + layout.size() <= end {
                if self
                    .next
                    .compare_exchange(next, start + layout.size(), Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return start as *mut u8;
                }
                continue;
            }
            let chunk = map(CHUNK);
            if chunk.is_null() {
                return ptr::null_mut();
            }
            // A new chunk: take our block from its start, then publish the rest.
            let base = chunk as usize;
            self.end.store(base + CHUNK, Ordering::Release);
            self.next.store(base + layout.size(), Ordering::Release);
            return chunk;
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= CHUNK / 4 || layout.align() > 4096 {
            if let Some(len) = page_rounded(layout.size()) {
                // SAFETY: a mapping of its own made by `alloc` with this length, now unused.
                let _ = unsafe { rustix::mm::munmap(ptr.cast(), len) };
            }
        }
    }
}
