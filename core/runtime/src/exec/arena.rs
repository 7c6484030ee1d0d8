//! `CodeArena`: append-only executable memory for small pieces of code installed one at a time
//! or a batch at a time (load-time instantiations), with one syscall per install and no
//! writable mapping of code, ever.
//!
//! A batch makes code executable with a protection change (`mprotect`) when it is sealed, and
//! a sealed page is never reopened: one function of a few dozen bytes then costs a page, a
//! mapping, a page fault and two protection changes. The arena instead backs each region with
//! anonymous shared memory (`memfd`) mapped **once, read-execute**: the addresses it hands out
//! point into that view, and code is written into the file with `pwrite`, so that the kernel
//! copies it in and the new bytes appear in the executable view. Installing is a bump of the
//! region's cursor under the lock, one `pwrite` outside it, and the instruction-cache
//! maintenance the architecture needs.
//!
//! W^X holds through every mapping: no page of the arena is ever mapped writable, so no
//! address, leaked or guessed, lets anyone write into installed code; only a syscall on the
//! region's descriptor could, and that descriptor (close-on-exec) is open only while its region
//! is being filled: it is closed once the region is full and the last write into it has
//! returned. Code is only ever appended to bytes nobody has been given.
//!
//! A forked child starts with its parent's mappings, shared ones included: the same files, the
//! same cursors. Were it to append where its parent does, each would overwrite the other's new
//! code under live callers. So a region is filled by the process that mapped it alone: a
//! child's first install retires the region it inherited (never writing into it again) and maps
//! one of its own.
//!
//! A kernel without `memfd_create` (or a sandbox forbidding it, or the test simulation) makes
//! [`CodeArena::install`] fail with an error whose operation is `memfd_create`; callers fall
//! back to sealed batches. Everything the arena maps is unmapped when it is dropped: installed
//! code lives exactly as long as its arena.

#![allow(unsafe_code)]

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use super::kernel::Kernel;
use super::lock::{Guard, Lock};
use super::{icache, ExecError, GRANULE};
use crate::sys::{Protection, SharedMemory};

/// One region of code: its read-execute mapping of the region's file (named apart from the
/// allocator's `region::Region`, a reservation of pages).
#[derive(Clone, Copy, Debug)]
struct CodeRegion {
    exec: usize,
    len: usize,
}

impl CodeRegion {
    fn contains(&self, addr: usize, end: usize) -> bool {
        addr >= self.exec && end <= self.exec + self.len
    }
}

/// The region being filled: its view, its file and the bytes used, by the process that mapped
/// it.
struct Filling {
    region: CodeRegion,
    /// The process filling it (a forked child has its parent's, and leaves it alone).
    process: u32,
    /// Shared with the installs writing into it now; the last one to let go closes it.
    file: Arc<SharedMemory>,
    cursor: usize,
}

/// Bookkeeping under the lock.
struct Regions {
    /// Every region's executable view, for lookups and the final unmap.
    all: Vec<CodeRegion>,
    /// The region new code goes to, if any.
    filling: Option<Filling>,
    /// Bytes of code installed (before rounding).
    installed: usize,
}

/// Where one install writes: the file, the offset in it, and the address it runs at.
struct Reserved {
    file: Arc<SharedMemory>,
    offset: usize,
    exec: usize,
}

/// Append-only executable memory written through its file (see the module doc).
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
    /// Regions mapped (each read-execute, never writable).
    pub regions: usize,
    /// Whether a region is being filled (its file open, for the writes to come).
    pub filling: bool,
    /// Bytes of code installed (before rounding to [`GRANULE`]).
    pub installed_bytes: usize,
}

/// A [`CodeArena`]'s lock, held ([`CodeArena::hold`]) until this is dropped.
pub struct ArenaHeld<'a> {
    _guard: Guard<'a, Regions>,
}

impl fmt::Debug for ArenaHeld<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ArenaHeld")
    }
}

impl CodeArena {
    /// An arena mapping `region_size` bytes at a time (rounded up to pages; larger pieces get
    /// a region of their own), through `kernel`. Maps nothing until the first install.
    pub fn new(kernel: &'static dyn Kernel, region_size: usize) -> Self {
        Self {
            kernel,
            region_size: region_size.max(1),
            regions: Lock::new(Regions { all: Vec::new(), filling: None, installed: 0 }),
        }
    }

    /// Copies `code` into executable memory and returns its address (aligned to
    /// [`GRANULE`]), valid until the arena is dropped. `code` may hold several functions
    /// laid out by the caller (a batch): they are written with one syscall.
    pub fn install(&self, code: &[u8]) -> Result<usize, ExecError> {
        if code.is_empty() {
            return Err(ExecError::ZeroSize);
        }
        let size =
            code.len().checked_next_multiple_of(GRANULE).ok_or(ExecError::TooLarge { size: code.len() })?;
        let reserved = self.reserve(size, code.len())?;
        // The bytes at `offset..offset+size` were reserved for this call alone: nobody has
        // their address yet, and nothing else writes there.
        if let Err(e) = self.kernel.write_shared(&reserved.file, reserved.offset, code) {
            // The reserved range stays unused (never handed out); the region stays mapped.
            self.regions.lock().installed -= code.len();
            return Err(e.into());
        }
        // SAFETY: the executable view of the range is mapped (readable) until the arena is
        // dropped, which `&self` rules out for the rest of this call.
        unsafe { icache::sync(reserved.exec, code.len()) };
        self.kernel.sync_other_threads();
        // Dropping `reserved.file` here closes the file if its region was retired meanwhile.
        Ok(reserved.exec)
    }

    /// Takes the arena's lock until the returned value is dropped: for a caller that must
    /// keep its bookkeeping still (around `fork`, as [`crate::exec::ExecAllocator::hold`]).
    pub fn hold(&self) -> ArenaHeld<'_> {
        ArenaHeld { _guard: self.regions.lock() }
    }

    /// Reserves `size` bytes in the region being filled (or a new one) for `code_len` bytes of
    /// code: the file to write them to, where, and where they run.
    fn reserve(&self, size: usize, code_len: usize) -> Result<Reserved, ExecError> {
        let process = self.kernel.process_id();
        let (inherited, retired);
        let reserved = {
            let mut regions = self.regions.lock();
            // A region a parent process was filling when this one forked is its parent's to fill.
            inherited = regions.filling.take_if(|filling| filling.process != process);
            if let Some(filling) = regions.filling.as_mut().filter(|f| f.region.len - f.cursor >= size) {
                let offset = filling.cursor;
                filling.cursor += size;
                let reserved =
                    Reserved { file: Arc::clone(&filling.file), offset, exec: filling.region.exec + offset };
                regions.installed += code_len;
                return Ok(reserved);
            }
            regions.all.try_reserve(1).map_err(|_| ExecError::TooLarge { size })?;
            // New regions are rare (one per `region_size` bytes of code): mapped under the lock,
            // like the allocator's.
            let (region, file) = self.map_region(size)?;
            regions.all.push(region);
            regions.installed += code_len;
            if size > self.region_size {
                // A piece larger than a region gets one of its own, whose file closes when this
                // install is done; the region being filled stays.
                return Ok(Reserved { file: Arc::new(file), offset: 0, exec: region.exec });
            }
            let file = Arc::new(file);
            let reserved = Reserved { file: Arc::clone(&file), offset: 0, exec: region.exec };
            retired = regions.filling.replace(Filling { region, process, file, cursor: size });
            reserved
        };
        // The full region's file (or the parent's) is closed here, outside the lock (or by its
        // last write).
        drop((retired, inherited));
        Ok(reserved)
    }

    /// Maps a region of at least `size` bytes read-execute, and its file; on failure, maps
    /// nothing.
    fn map_region(&self, size: usize) -> Result<(CodeRegion, SharedMemory), ExecError> {
        let page = self.kernel.page_size();
        let len =
            size.max(self.region_size).checked_next_multiple_of(page).ok_or(ExecError::TooLarge { size })?;
        let file = self.kernel.shared_memory()?;
        self.kernel.resize_shared(&file, len)?;
        let exec = self.kernel.map_shared(&file, len, Protection::ReadExec)?;
        Ok((CodeRegion { exec: exec as usize, len }, file))
    }

    /// Whether `addr..addr+len` lies inside code this arena handed out space for.
    pub fn contains(&self, addr: usize, len: usize) -> bool {
        let Some(end) = addr.checked_add(len) else { return false };
        let regions = self.regions.lock();
        let inside = regions.all.iter().any(|r| r.contains(addr, end));
        inside
    }

    /// Bytes of code installed so far.
    pub fn installed_bytes(&self) -> usize {
        self.regions.lock().installed
    }

    /// Regions, whether one is being filled, and bytes installed.
    pub fn stats(&self) -> ArenaStats {
        let regions = self.regions.lock();
        ArenaStats {
            regions: regions.all.len(),
            filling: regions.filling.is_some(),
            installed_bytes: regions.installed,
        }
    }
}

impl Drop for CodeArena {
    fn drop(&mut self) {
        // The arena is dropped: nothing runs its code or writes into it any more.
        let regions = self.regions.get_mut();
        regions.filling = None;
        for region in core::mem::take(&mut regions.all) {
            // SAFETY: the view is ours and unused from now on.
            let _ = unsafe { self.kernel.unmap(region.exec as *mut u8, region.len) };
        }
    }
}
