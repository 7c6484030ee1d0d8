//! The allocator's bookkeeping (all of it outside executable memory) and the protection
//! changes it decides. Everything here runs under the allocator's lock.
//!
//! Address space comes in regions reserved read-write without committed memory. Each page of a
//! region is free (read-write, zero, never executable), open for one batch (read-write), or
//! sealed (read-execute, read-only or read-write by the page's kind). Free pages are already
//! writable, so opening pages for a batch costs no protection change. A batch
//! bump-allocates blocks in its open pages and never shares them with another batch; sealing
//! turns all of a batch's open pages read-execute with one `mprotect` per contiguous run. A
//! sealed page never becomes writable again and never receives new blocks. A page whose last
//! block is freed goes back to free: made read-write and kept committed for reuse (zeroed
//! then), or discarded once [`RECYCLED_PAGES`] are kept; a region with no used page is
//! unmapped (one spare empty region is kept to avoid thrashing).
//!
//! **Where pages go.** Code grows from the bottom of a region, each module image's code
//! right after sealed code where there is room; a module image's data (read-only and writable
//! segments) goes at the top of the same region, above its code, so that every reference
//! inside the image stays within the region (32-bit PC-relative reach) while each kind's pages
//! stay together: the kernel keeps a region in a few mappings (sealed code, then free and
//! writable pages, which share a protection) however many modules it holds, where placing each
//! image's segments back to back cost two or three mappings per module. In a batch of many,
//! images' code packs at each image's alignment after the batch's previous block, as blocks
//! do, and their writable data packs likewise in a data run of the batch at the top of the
//! region, so that many small modules share code pages and data pages (read-only data apart
//! from the code keeps pages of its own: each page seals to one kind).
//!
//! **Trap pages** (the one place their reason is written). A module image's code run that
//! does not follow sealed code gets a trap page right before it (filled with faulting
//! instructions, `int3` or `udf`, sealed with the code, and kept sealed when the code is
//! freed). The kernel then seals code, and frees it, by moving the boundary between the
//! read-execute mapping before it and the free pages' read-write one, instead of splitting a
//! mapping and merging it back, which halves the cost of both protection changes. Trap pages
//! that guard no code are released when a run would otherwise need a new region, and by
//! [`super::ExecAllocator::trim`].
//!
//! Invariants:
//! - every live block lies in pages that are open for its batch or sealed, inside one region;
//! - a trap page holds no block; it is sealed only while right before code of its own batch's
//!   image (an abandoned batch releases it) and is released only while no code follows it;
//! - `live` of a page counts the live blocks overlapping it; free pages have `live == 0`;
//! - a batch's bump cursors (its run's and its data run's) only move forward, so bytes handed
//!   out were never used before and are still zero (fresh, discarded or zeroed pages) —
//!   except in the leading bytes of a module image that its caller overwrites in full, or
//!   zeroes if it gives up ([`super::CodeBatch::alloc_module_image`]), where recycled pages
//!   keep old bytes of this allocator's own until then.
//!
//! The state and its small helpers are here; `batches.rs` keeps the open batches, `open.rs`
//! opens pages and places blocks and images' code, `data.rs` places images' data, `act.rs`
//! changes the protection of runs of pages (at once, or deferred to outside the lock),
//! `release.rs` seals and releases pages (and ends batches), `patch.rs` patches sealed
//! blocks, `report.rs` answers what the allocator reports.

#![allow(unsafe_code)]

mod act;
mod batches;
mod data;
mod open;
mod patch;
mod release;
mod report;

pub(crate) use act::Deferred;
pub(crate) use open::Prep;

use batches::Batches;

use alloc::vec::Vec;

use super::kernel::Kernel;
use super::region::{Page, PageState, Region};
use super::{icache, AllocatorStats, BatchId, BlockInfo, ExecConfig, ExecError, MemoryKind, GRANULE};
use crate::sys::Protection;
use smf_format::align_up;

/// A block placed by the state: its address and size (the owned handle is made by `mod.rs`).
pub(crate) type PlacedBlock = (usize, usize);

/// Most pages a batch opens beyond what a block needs, when it grows a run.
const MAX_OPEN_AHEAD: usize = 64;

/// Most clean pages a batch opens beyond what a block needs, when it starts a run.
const NEW_RUN_AHEAD: usize = 32;

/// The largest region reserved for more than one image's need (a larger `region_size` is cut
/// to it): an image's data goes at the top of its code's region, so its code must reach the
/// whole region with 32-bit PC-relative references.
const MAX_REGION: usize = 1 << 30;

/// The largest alignment a module image may ask for (a module's data asks for at most 64 KiB);
/// a larger one is refused rather than reserving that much more address space to reach it.
const MAX_IMAGE_ALIGNMENT: usize = 1 << 20;

/// Freed pages kept committed (made read-write, zeroed on reuse) rather than discarded, so
/// that load/release cycles cost neither page faults nor a mapping change; past this many,
/// freed pages are discarded.
pub(super) const RECYCLED_PAGES: usize = 512;

/// The protection of free pages: writable (zero, never executable), so that opening them
/// needs no protection change.
const FREE_PROTECTION: Protection = Protection::ReadWrite;

/// What a trap page is filled with: an instruction that faults at once (`int3` on x86-64; on
/// aarch64 a zero word is `udf #0`).
const TRAP_FILL: u8 = if cfg!(target_arch = "x86_64") { 0xCC } else { 0 };

#[derive(Debug)]
pub(crate) struct State {
    config: ExecConfig,
    kernel: &'static dyn Kernel,
    page: usize,
    /// log2 of `page` (divisions by a variable page size are slow on the hot path).
    page_shift: u32,
    regions: Vec<Region>,
    blocks_live: usize,
    batches: Batches,
    next_batch: u64,
    bytes_live: usize,
    /// Free pages that are dirty (kept committed for reuse).
    dirty_pages: usize,
    /// Work on the pages opened last, for the caller to do outside the lock.
    prep: Prep,
    /// While set, protection changes are recorded in `deferred` instead of made.
    defer: bool,
    /// The protection changes left for the caller (see [`Deferred`]).
    deferred: Vec<Deferred>,
    protection_changes: u64,
    patches: u64,
}

impl State {
    pub(crate) fn new(config: ExecConfig, kernel: &'static dyn Kernel) -> Self {
        let page = kernel.page_size();
        Self {
            config,
            kernel,
            page,
            page_shift: page.trailing_zeros(),
            regions: Vec::new(),
            blocks_live: 0,
            batches: Batches::default(),
            next_batch: 1,
            bytes_live: 0,
            dirty_pages: 0,
            prep: Prep::default(),
            defer: false,
            deferred: Vec::new(),
            protection_changes: 0,
            patches: 0,
        }
    }

    pub(crate) const fn page_size(&self) -> usize {
        self.page
    }

    /// The kernel.
    pub(crate) fn kernel(&self) -> &'static dyn Kernel {
        self.kernel
    }

    /// The work on the pages opened by the last operation, which the caller does once the lock
    /// is released (see [`Prep::run`]).
    pub(crate) fn take_prep(&mut self) -> Prep {
        core::mem::take(&mut self.prep)
    }

    pub(crate) fn open_protection(&self) -> Protection {
        if self.config.allow_rwx {
            Protection::ReadWriteExec
        } else {
            Protection::ReadWrite
        }
    }

    /// The kind whose sealed protection is the open one (what an open page is booked as when
    /// a change to release it fails).
    const fn open_kind(&self) -> MemoryKind {
        if self.config.allow_rwx {
            MemoryKind::Code
        } else {
            MemoryKind::ReadWrite
        }
    }

    fn sealed_protection(&self, kind: MemoryKind) -> Protection {
        match kind {
            MemoryKind::Code if self.config.allow_rwx => Protection::ReadWriteExec,
            MemoryKind::Code => Protection::ReadExec,
            MemoryKind::ReadOnly => Protection::Read,
            MemoryKind::ReadWrite => Protection::ReadWrite,
        }
    }

    /// The protection a page has now.
    fn protection_of(&self, page: &Page) -> Protection {
        match page.state {
            PageState::Free => FREE_PROTECTION,
            PageState::Open(_) => self.open_protection(),
            PageState::Sealed | PageState::Releasing => self.sealed_protection(page.kind),
        }
    }

    fn region_of(&self, addr: usize) -> Option<usize> {
        self.regions.iter().position(|r| addr >= r.base && addr < r.end(self.page))
    }

    /// (region, first page index, one past the last page index) covering `start..end`.
    fn pages_of(&self, start: usize, end: usize) -> Option<(usize, usize, usize)> {
        let r = self.region_of(start)?;
        let region = &self.regions[r];
        if end > region.end(self.page) || end <= start {
            return None;
        }
        let first = (start - region.base) >> self.page_shift;
        let last = ((end - 1 - region.base) >> self.page_shift) + 1;
        Some((r, first, last))
    }

    /// Opens a batch; one that `opens_ahead` takes clean pages ahead with each new run.
    pub(crate) fn begin_batch(&mut self, opens_ahead: bool) -> BatchId {
        let id = self.next_batch;
        self.next_batch += 1;
        self.batches.begin(id, opens_ahead);
        BatchId(id)
    }

    /// The live block containing `addr..addr+len`.
    pub(crate) fn lookup(&self, addr: usize, len: usize) -> Option<BlockInfo> {
        let end = addr.checked_add(len)?;
        let r = self.region_of(addr)?;
        let region = &self.regions[r];
        let start = region.start_at_or_before(addr)?;
        let size = region.block_size(start)?;
        if end > start + size {
            return None;
        }
        let page = region.pages[(start - region.base) >> self.page_shift];
        let (batch, sealed) = match page.state {
            PageState::Open(id) => (Some(BatchId(id)), false),
            _ => (None, true),
        };
        Some(BlockInfo { addr: start, size, batch, sealed, kind: page.kind })
    }
}

impl Drop for State {
    fn drop(&mut self) {
        for region in &self.regions {
            // SAFETY: the allocator is being dropped: by the API contract no block of it is in
            // use any more (its users hold `&ExecAllocator`, which cannot outlive it).
            let _ = unsafe { self.kernel.unmap(region.base as *mut u8, region.pages.len() * self.page) };
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::exec::{ExecAllocator, ExecConfig, SimulatedKernel};

    #[test]
    fn the_pages_of_a_range_are_found_only_for_a_non_empty_range_inside_one_region() {
        static K: SimulatedKernel = SimulatedKernel::new();
        const PAGE: usize = 4096;
        let exec =
            ExecAllocator::with_kernel(ExecConfig { region_size: 16 * PAGE, ..ExecConfig::default() }, &K);
        let mut batch = exec.batch();
        let _block = batch.alloc(64, 16).unwrap();
        let state = exec.state.lock();
        let (base, end) = (state.regions[0].base, state.regions[0].end(PAGE));
        assert_eq!(state.pages_of(base, base + 1), Some((0, 0, 1)));
        assert_eq!(state.pages_of(base + PAGE + 1, end), Some((0, 1, 16)));
        assert_eq!(state.pages_of(base + PAGE, base + PAGE), None, "an empty range");
        assert_eq!(state.pages_of(base + 2 * PAGE, base + PAGE), None, "a backward range");
        assert_eq!(state.pages_of(base, end + 1), None, "past the region's end");
        assert_eq!(state.pages_of(end, end + 1), None, "outside every region");
    }

    #[test]
    fn runs_that_overlap_are_merged_and_runs_that_only_touch_stay_apart() {
        let mut runs = alloc::vec![(0x5000, 0x1000), (0x1000, 0x2000), (0x2000, 0x2000), (0x4000, 0x1000)];
        super::release::disjoint(&mut runs);
        assert_eq!(runs, [(0x1000, 0x3000), (0x4000, 0x1000), (0x5000, 0x1000)]);
        let mut apart = alloc::vec![(0x2000, 0x3000), (0x1000, 0x1000), (0x6000, 0x1000)];
        super::release::disjoint(&mut apart);
        assert_eq!(apart, [(0x1000, 0x1000), (0x2000, 0x3000), (0x6000, 0x1000)], "touching, then a gap");
    }
}
