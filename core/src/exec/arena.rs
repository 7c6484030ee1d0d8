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

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
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
    all: Vec<Arc<Region>>,
    /// Bytes used in the last region.
    cursor: usize,
}

/// Append-only executable memory through a second, writable mapping (see the module doc).
pub struct CodeArena {
    kernel: &'static dyn Kernel,
    region_size: usize,
    regions: Lock<Regions>,
    installed: AtomicUsize,
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
            regions: Lock::new(Regions { all: Vec::new(), cursor: 0 }),
            installed: AtomicUsize::new(0),
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
        let (region, offset) = self.reserve(size)?;
        let write = region.write.load(Ordering::Acquire);
        // SAFETY: `offset..offset+size` of the region was reserved for this call alone, lies
        // inside the region, and its write view stays mapped while we count as a writer.
        unsafe { core::ptr::copy_nonoverlapping(code.as_ptr(), (write + offset) as *mut u8, code.len()) };
        // SAFETY: both views of the range are mapped (read-write, read-execute).
        unsafe { icache::sync_alias(write + offset, region.exec + offset, code.len()) };
        self.kernel.sync_other_threads();
        region.copy_done(self.kernel);
        self.installed.fetch_add(code.len(), Ordering::Relaxed);
        Ok(region.exec + offset)
    }

    /// Reserves `size` bytes in the region being filled (or a new one) and counts the caller as
    /// a writer of it.
    fn reserve(&self, size: usize) -> Result<(Arc<Region>, usize), ExecError> {
        let mut regions = self.regions.lock();
        if let Some(last) = regions.all.last().filter(|r| r.len - regions.cursor >= size) {
            let (last, offset) = (Arc::clone(last), regions.cursor);
            last.writers.fetch_add(1, Ordering::AcqRel);
            regions.cursor += size;
            return Ok((last, offset));
        }
        regions.all.try_reserve(1).map_err(|_| ExecError::TooLarge { size })?;
        // New regions are rare (one per `region_size` bytes of code): mapped under the lock,
        // like the allocator's.
        let region = Arc::new(self.map_region(size)?);
        region.writers.fetch_add(1, Ordering::AcqRel);
        if size > self.region_size {
            // A piece larger than a region gets one of its own, retired at once (its write
            // view goes when this copy ends); the region being filled stays the last.
            region.retire(self.kernel);
            let at = regions.all.len().saturating_sub(1);
            regions.all.insert(at, Arc::clone(&region));
            return Ok((region, 0));
        }
        if let Some(full) = regions.all.last() {
            full.retire(self.kernel);
        }
        regions.all.push(Arc::clone(&region));
        regions.cursor = size;
        Ok((region, 0))
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
        // Fault the writable pages in now, in one call, rather than one fault per page as
        // pieces are copied; a kernel without it faults them in on first write.
        // SAFETY: the view is ours and read-write.
        let _ = unsafe { self.kernel.populate(write, len) };
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
        regions.all.iter().any(|r| addr >= r.exec && end <= r.exec + r.len)
    }

    /// Bytes of code installed so far.
    pub fn installed_bytes(&self) -> usize {
        self.installed.load(Ordering::Relaxed)
    }

    /// Regions, writable views and bytes installed.
    pub fn stats(&self) -> ArenaStats {
        let regions = self.regions.lock();
        ArenaStats {
            regions: regions.all.len(),
            writable_regions: regions.all.iter().filter(|r| r.write.load(Ordering::Acquire) != 0).count(),
            installed_bytes: self.installed_bytes(),
        }
    }
}

impl Drop for CodeArena {
    fn drop(&mut self) {
        // The arena is dropped: nothing runs its code or copies into it any more.
        for region in core::mem::take(&mut self.regions.lock().all) {
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
