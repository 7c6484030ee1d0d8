//! `CodeArena`: append-only executable memory for small pieces of code installed one at a time
//! (load-time instantiations), with no syscall per piece.
//!
//! A batch makes code executable with a protection change (`mprotect`) when it is sealed: for
//! one function of a few dozen bytes that syscall, the page fault and the mapping cost far more
//! than the copy. The arena instead maps each region of anonymous shared memory (`memfd`)
//! twice: a **read-execute view**, whose addresses it hands out, and a **read-write view** it
//! writes through. Installing is a bump of the region's cursor under the lock, a copy outside
//! it, and the instruction-cache maintenance the architecture needs.
//!
//! W^X holds for every mapping: no page is ever writable and executable at once; a page of the
//! read-execute view never becomes writable and one of the read-write view never executable.
//! The writable alias exists only while its region is being filled: when a region is full (the
//! next piece does not fit) it is retired, and its read-write view is unmapped as soon as the
//! last copy into it finishes, so that installed code is then immutable. Only the arena knows
//! the writable view's address; code is only ever appended to bytes nobody has been given.
//!
//! A kernel without `memfd_create` (or a sandbox forbidding it, or the test simulation) makes
//! [`CodeArena::install`] fail; callers fall back to a sealed batch per piece. Everything the
//! arena maps is unmapped when it is dropped: installed code lives exactly as long as its arena.

#![allow(unsafe_code)]

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::kernel::Kernel;
use super::lock::Lock;
use super::{icache, ExecError, GRANULE};
use crate::sys::Protection;

/// The writer-count bit that says the region is retired (no new pieces go into it).
const RETIRED: usize = 1 << (usize::BITS - 1);

/// One shared-memory region and its two views.
struct Region {
    /// The read-execute view: what addresses handed out point into.
    exec: usize,
    /// The read-write view; 0 once unmapped.
    write: AtomicUsize,
    len: usize,
    /// Copies into the write view in progress, with [`RETIRED`] once the region is full.
    writers: AtomicUsize,
}

impl Region {
    /// Ends one copy; unmaps the write view if the region is retired and this was the last.
    fn copy_done(&self, kernel: &dyn Kernel) {
        if self.writers.fetch_sub(1, Ordering::AcqRel) == RETIRED + 1 {
            self.unmap_write_view(kernel);
        }
    }

    /// Retires the region (called once, under the arena's lock); unmaps its write view now if
    /// no copy is running (else the last copy does).
    fn retire(&self, kernel: &dyn Kernel) {
        if self.writers.fetch_or(RETIRED, Ordering::AcqRel) == 0 {
            self.unmap_write_view(kernel);
        }
    }

    fn unmap_write_view(&self, kernel: &dyn Kernel) {
        let write = self.write.swap(0, Ordering::AcqRel);
        if write != 0 {
            // SAFETY: the write view is ours and no copy uses it any more (retired, no writers).
            // If unmapping fails the view stays mapped (still never executable) and `Drop`
            // tries again.
            if unsafe { kernel.unmap(write as *mut u8, self.len) }.is_err() {
                self.write.store(write, Ordering::Release);
            }
        }
    }
}

/// Bookkeeping under the lock: the regions (the last one is being filled) and its cursor.
struct Regions {
    /// Every region (from `Box::leak`, freed when the arena is dropped): raw, so that a
    /// region stays put, and pointers to it valid, while the vector grows (copies use it
    /// unlocked).
    all: Vec<NonNull<Region>>,
    /// Bytes used in the last region.
    cursor: usize,
    /// Bytes of code installed (before rounding).
    installed: usize,
}

// SAFETY: the regions are heap allocations the arena owns, made of atomics and constants.
unsafe impl Send for Regions {}

impl Regions {
    /// The region being filled.
    fn last(&self) -> Option<&Region> {
        // SAFETY: regions live until the arena is dropped.
        self.all.last().map(|r| unsafe { r.as_ref() })
    }

    fn iter(&self) -> impl Iterator<Item = &Region> {
        // SAFETY: as above.
        self.all.iter().map(|r| unsafe { r.as_ref() })
    }
}

/// Append-only executable memory through a second, writable mapping (see the module doc).
pub struct CodeArena {
    kernel: &'static dyn Kernel,
    region_size: usize,
    regions: Lock<Regions>,
}

impl fmt::Debug for CodeArena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeArena")
            .field("region_size", &self.region_size)
            .field("installed", &self.installed_bytes())
            .finish_non_exhaustive()
    }
}

/// Statistics of a [`CodeArena`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArenaStats {
    /// Regions mapped.
    pub regions: usize,
    /// Regions whose writable view is still mapped (at most the one being filled, plus any
    /// whose last copy is finishing or whose unmapping failed).
    pub writable_regions: usize,
    /// Bytes of code installed (before rounding to [`GRANULE`]).
    pub installed_bytes: usize,
}

impl CodeArena {
    /// An arena mapping `region_size` bytes at a time (rounded up to pages; larger pieces get
    /// a region of their own), through `kernel`. Maps nothing until the first install.
    pub fn new(kernel: &'static dyn Kernel, region_size: usize) -> Self {
        Self {
            kernel,
            region_size: region_size.max(1),
            regions: Lock::new(Regions { all: Vec::new(), cursor: 0, installed: 0 }),
        }
    }

    /// Copies `code` into executable memory and returns its address (aligned to
    /// [`GRANULE`]), valid until the arena is dropped.
    pub fn install(&self, code: &[u8]) -> Result<usize, ExecError> {
        if code.is_empty() {
            return Err(ExecError::ZeroSize);
        }
        let size =
            code.len().checked_next_multiple_of(GRANULE).ok_or(ExecError::TooLarge { size: code.len() })?;
        let (region, offset) = self.reserve(size, code.len())?;
        // SAFETY: regions are boxed and freed only when the arena is dropped, which `&self`
        // rules out for the rest of this call.
        let region = unsafe { &*region };
        let write = region.write.load(Ordering::Acquire);
        // SAFETY: `offset..offset+size` of the region was reserved for this call alone, lies
        // inside the region, and its write view stays mapped while we count as a writer.
        unsafe { core::ptr::copy_nonoverlapping(code.as_ptr(), (write + offset) as *mut u8, code.len()) };
        // SAFETY: both views of the range are mapped (read-write, read-execute).
        unsafe { icache::sync_alias(write + offset, region.exec + offset, code.len()) };
        self.kernel.sync_other_threads();
        region.copy_done(self.kernel);
        Ok(region.exec + offset)
    }

    /// Reserves `size` bytes in the region being filled (or a new one) for `code_len` bytes of
    /// code, and counts the caller as a writer of that region.
    fn reserve(&self, size: usize, code_len: usize) -> Result<(*const Region, usize), ExecError> {
        let mut regions = self.regions.lock();
        let cursor = regions.cursor;
        if let Some(last) = regions.last().filter(|r| r.len - cursor >= size) {
            last.writers.fetch_add(1, Ordering::AcqRel);
            let last: *const Region = last;
            regions.cursor += size;
            regions.installed += code_len;
            return Ok((last, cursor));
        }
        regions.all.try_reserve(1).map_err(|_| ExecError::TooLarge { size })?;
        // New regions are rare (one per `region_size` bytes of code): mapped under the lock,
        // like the allocator's.
        let region = NonNull::from(Box::leak(Box::new(self.map_region(size)?)));
        // SAFETY: just made; freed only when the arena is dropped.
        let placed = unsafe { region.as_ref() };
        placed.writers.fetch_add(1, Ordering::AcqRel);
        regions.installed += code_len;
        if size > self.region_size {
            // A piece larger than a region gets one of its own, retired at once (its write
            // view goes when this copy ends); the region being filled stays the last.
            placed.retire(self.kernel);
            let at = regions.all.len().saturating_sub(1);
            regions.all.insert(at, region);
            return Ok((placed, 0));
        }
        if let Some(full) = regions.last() {
            full.retire(self.kernel);
        }
        regions.all.push(region);
        regions.cursor = size;
        Ok((placed, 0))
    }

    /// Maps a region of at least `size` bytes, both views; on failure, maps nothing.
    fn map_region(&self, size: usize) -> Result<Region, ExecError> {
        let page = self.kernel.page_size();
        let len =
            size.max(self.region_size).checked_next_multiple_of(page).ok_or(ExecError::TooLarge { size })?;
        let memory = self.kernel.shared_memory()?;
        self.kernel.resize_shared(&memory, len)?;
        let write = self.kernel.map_shared(&memory, len, Protection::ReadWrite)?;
        let exec = match self.kernel.map_shared(&memory, len, Protection::ReadExec) {
            Ok(exec) => exec,
            Err(e) => {
                // SAFETY: mapped just above, handed to nobody.
                let _ = unsafe { self.kernel.unmap(write, len) };
                return Err(e.into());
            }
        };
        // Pages are not faulted in ahead (`MADV_POPULATE_WRITE` would zero the whole region at
        // once, measured slower per function than faulting in the pages as copies reach them).
        // `memory` (the descriptor) closes here; the mappings keep the memory.
        Ok(Region {
            exec: exec as usize,
            write: AtomicUsize::new(write as usize),
            len,
            writers: AtomicUsize::new(0),
        })
    }

    /// Whether `addr..addr+len` lies inside code this arena handed out space for.
    pub fn contains(&self, addr: usize, len: usize) -> bool {
        let Some(end) = addr.checked_add(len) else { return false };
        let regions = self.regions.lock();
        let inside = regions.iter().any(|r| addr >= r.exec && end <= r.exec + r.len);
        inside
    }

    /// Bytes of code installed so far.
    pub fn installed_bytes(&self) -> usize {
        self.regions.lock().installed
    }

    /// Regions, writable views and bytes installed.
    pub fn stats(&self) -> ArenaStats {
        let regions = self.regions.lock();
        ArenaStats {
            regions: regions.all.len(),
            writable_regions: regions.iter().filter(|r| r.write.load(Ordering::Acquire) != 0).count(),
            installed_bytes: regions.installed,
        }
    }
}

impl Drop for CodeArena {
    fn drop(&mut self) {
        // The arena is dropped: nothing runs its code or copies into it any more.
        for region in core::mem::take(&mut self.regions.lock().all) {
            // SAFETY: made with `Box::leak`, freed once, here.
            let region = unsafe { Box::from_raw(region.as_ptr()) };
            let write = region.write.swap(0, Ordering::AcqRel);
            // SAFETY: both views are ours and unused from now on.
            unsafe {
                if write != 0 {
                    let _ = self.kernel.unmap(write as *mut u8, region.len);
                }
                let _ = self.kernel.unmap(region.exec as *mut u8, region.len);
            }
        }
    }
}
