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
//! A module image's code run gets a trap page right before it (filled with faulting
//! instructions, sealed with the code, and kept sealed when the code is freed), and later
//! images go right after an existing trap page first. The kernel then seals and frees them by
//! moving the boundary between two mappings instead of splitting one and merging it back,
//! which halves the cost of both protection changes. Trap pages that guard no code are
//! released when a run would otherwise need a new region, and by [`super::ExecAllocator::trim`].
//!
//! Invariants:
//! - every live block lies in pages that are open for its batch or sealed, inside one region;
//! - a trap page holds no block; it is sealed only while right before code of its own batch's
//!   image (an abandoned batch releases it) and is released only while no code follows it;
//! - `live` of a page counts the live blocks overlapping it; free pages have `live == 0`;
//! - a batch's bump cursor only moves forward, so bytes handed out were never used before and
//!   are still zero (fresh, discarded or zeroed pages) — except in the leading bytes of a
//!   module image that its caller overwrites in full
//!   ([`super::CodeBatch::alloc_module_image`]), where recycled pages keep old bytes of
//!   this allocator's own until then.

#![allow(unsafe_code)]

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::kernel::Kernel;
use super::region::{Page, PageState, Region};
use super::{icache, BatchId, BlockInfo, Config, ExecError, MemoryKind, Stats, GRANULE};
use crate::bytes::align_up;
use crate::sys::Protection;

/// A block placed by the state: its address and size (the owned handle is made by `mod.rs`).
pub(crate) type Placed = (usize, usize);

/// Most pages a batch opens beyond what a block needs, when it grows a run.
const MAX_OPEN_AHEAD: usize = 64;

/// The largest alignment a module image may ask for (a module's data asks for at most 64 KiB);
/// a larger one is refused rather than reserving that much more address space to reach it.
const MAX_IMAGE_ALIGNMENT: usize = 1 << 20;

/// Freed pages kept committed (made read-write, zeroed on reuse) rather than discarded, so
/// that load/release cycles cost neither page faults nor a mapping change; past this many,
/// freed pages are discarded.
const RECYCLED_PAGES: usize = 512;

/// The protection of free pages: writable (zero, never executable), so that opening them
/// needs no protection change.
const FREE_PROTECTION: Protection = Protection::ReadWrite;

/// What a trap page is filled with: an instruction that faults at once (`int3` on x86-64; on
/// aarch64 a zero word is `udf #0`).
const TRAP_FILL: u8 = if cfg!(target_arch = "x86_64") { 0xCC } else { 0 };

#[derive(Debug)]
struct Batch {
    /// Whether its seal's protection changes are being made (outside the lock): its pages
    /// are left alone until the seal is finished.
    sealing: bool,
    /// Next free byte of the current run.
    cursor: usize,
    /// End of the current run (0 before the first allocation).
    end: usize,
    /// Every run of pages this batch opened: (start, length in bytes).
    runs: Vec<(usize, usize)>,
}

/// Work on pages just opened for a batch that the caller does after the allocator's lock is
/// released (the pages belong to its batch alone): zeroing recycled bytes, filling a new trap
/// page, faulting pages in ahead of the caller's writes.
#[derive(Debug, Default)]
pub(crate) struct Prep {
    /// Ranges to zero (adjacent ones merged); more than fit are zeroed under the lock.
    zero: [core::ops::Range<usize>; PREP_RANGES],
    zeros: usize,
    /// A trap page to fill.
    trap: Option<usize>,
    /// Pages to fault in, writable.
    populate: Option<core::ops::Range<usize>>,
}

/// Zeroing ranges a [`Prep`] holds (an image usually needs one or two).
const PREP_RANGES: usize = 4;

impl Prep {
    /// Adds `range` to zero; false if there is no room left.
    fn add_zero(&mut self, range: core::ops::Range<usize>) -> bool {
        if let Some(last) = self.zero[..self.zeros].last_mut() {
            if last.end == range.start {
                last.end = range.end;
                return true;
            }
        }
        if self.zeros == PREP_RANGES {
            return false;
        }
        self.zero[self.zeros] = range;
        self.zeros += 1;
        true
    }

    /// Does the work.
    ///
    /// # Safety
    /// The ranges are pages of the caller's open batch (read-write, referenced by nothing else),
    /// as [`State::take_prep`] hands them out right after opening them.
    pub(crate) unsafe fn run(self, kernel: &dyn Kernel, page: usize) {
        for range in &self.zero[..self.zeros] {
            // SAFETY: the caller's contract.
            unsafe { core::ptr::write_bytes(range.start as *mut u8, 0, range.len()) };
        }
        if let Some(trap) = self.trap {
            // SAFETY: the caller's contract: a page of its batch that holds no block.
            unsafe { core::ptr::write_bytes(trap as *mut u8, TRAP_FILL, page) };
        }
        if let Some(range) = self.populate {
            // An older kernel without MADV_POPULATE_WRITE simply faults them in on first write.
            // SAFETY: the caller's contract; populating changes no content.
            let _ = unsafe { kernel.populate(range.start as *mut u8, range.len()) };
        }
    }
}

/// A protection change the lock holder left for its caller to make after releasing the lock
/// (the pages are marked so that no one else touches them meanwhile), and whether it was made.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deferred {
    r: usize,
    first: usize,
    count: usize,
    addr: usize,
    len: usize,
    op: DeferredOp,
    /// Set by [`Deferred::run`] when the change was made.
    done: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeferredOp {
    /// Open pages of a batch become sealed: `protection` (if it differs from the open one),
    /// then the instruction cache is synchronized for code.
    Seal { protection: Option<Protection>, code: bool },
    /// Pages holding nothing become free: made read-write (recycled, kept committed) or
    /// discarded.
    Release { recycle: bool },
}

impl Deferred {
    /// Makes the change.
    ///
    /// # Safety
    /// `self` came from the lock holder's `take_deferred` on the allocator using `kernel`, and
    /// has not been run or committed: its pages are reserved for this change.
    pub(crate) unsafe fn run(&mut self, kernel: &dyn Kernel) -> Result<(), ExecError> {
        let addr = self.addr as *mut u8;
        match self.op {
            DeferredOp::Seal { protection, code } => {
                if let Some(protection) = protection {
                    // SAFETY: open pages of a batch being sealed: its owner has finished
                    // writing and nothing else references them.
                    unsafe { kernel.protect(addr, self.len, protection) }?;
                }
                if code {
                    // SAFETY: the range is mapped readable by us.
                    unsafe { icache::sync(self.addr, self.len) };
                }
            }
            DeferredOp::Release { recycle: true } => {
                // SAFETY: no live block lies in these pages (no code runs there any more): they
                // become plain read-write free pages, never executable.
                unsafe { kernel.protect(addr, self.len, FREE_PROTECTION) }?;
            }
            DeferredOp::Release { recycle: false } => {
                // SAFETY: no live block lies in these pages, so no code or reference uses them.
                unsafe { kernel.discard(addr, self.len, FREE_PROTECTION) }?;
            }
        }
        self.done = true;
        Ok(())
    }
}

/// A run of free pages found for a batch: `first` page of region `region`.
struct FreeRun {
    region: usize,
    first: usize,
    trap: Trap,
}

/// The trap page in front of a run of free pages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trap {
    /// None wanted.
    None,
    /// The page before the run is a sealed trap page already.
    Anchored,
    /// The page before the run is free: it becomes the run's trap page.
    New,
}

impl Trap {
    const fn new(wanted: bool) -> Self {
        if wanted {
            Trap::New
        } else {
            Trap::None
        }
    }
}

/// What to do with a run of pages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PageAction {
    Seal(MemoryKind),
    Release,
    Keep,
}

#[derive(Debug)]
pub(crate) struct State {
    config: Config,
    kernel: &'static dyn Kernel,
    page: usize,
    /// log2 of `page` (divisions by a variable page size are slow on the hot path).
    page_shift: u32,
    regions: Vec<Region>,
    blocks_live: usize,
    batches: BTreeMap<u64, Batch>,
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
    pub(crate) fn new(config: Config, kernel: &'static dyn Kernel) -> Self {
        let page = kernel.page_size();
        Self {
            config,
            kernel,
            page,
            page_shift: page.trailing_zeros(),
            regions: Vec::new(),
            blocks_live: 0,
            batches: BTreeMap::new(),
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

    fn open_protection(&self) -> Protection {
        if self.config.allow_rwx {
            Protection::ReadWriteExec
        } else {
            Protection::ReadWrite
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

    pub(crate) fn begin_batch(&mut self) -> BatchId {
        let id = self.next_batch;
        self.next_batch += 1;
        self.batches.insert(id, Batch { sealing: false, cursor: 0, end: 0, runs: Vec::new() });
        BatchId(id)
    }

    /// Opens `count` pages starting at page `first` of region `r` for `batch`. Recycled pages
    /// are zeroed, except the bytes in `overwritten` (addresses the caller writes in full before
    /// sealing). The pages of `overwritten` are faulted in with one call rather than one fault
    /// each; every other page (a module's bss, a large allocation) is committed only if and
    /// when it is written.
    fn open_pages(
        &mut self,
        r: usize,
        first: usize,
        count: usize,
        batch: u64,
        overwritten: &core::ops::Range<usize>,
    ) -> Result<(), ExecError> {
        let addr = self.regions[r].base + first * self.page;
        if self.open_protection() != FREE_PROTECTION {
            // SAFETY: the pages are free pages of our own reservation: nothing references them.
            unsafe { self.kernel.protect(addr as *mut u8, count * self.page, self.open_protection()) }?;
            self.protection_changes += 1;
        }
        let page = self.page;
        let mut uncommitted_overwritten = 0;
        for (i, p) in self.regions[r].pages[first..first + count].iter_mut().enumerate() {
            let at = addr + i * page;
            if !p.dirty && overwritten.start < at + page && at < overwritten.end {
                uncommitted_overwritten += 1;
            }
            if p.dirty {
                // Cleared so new blocks start zeroed, except the bytes the caller overwrites:
                // by the caller, after the lock (or here if the list is full).
                let kept = overwritten.start.clamp(at, at + page)..overwritten.end.clamp(at, at + page);
                for (start, end) in [(at, kept.start), (kept.end.max(kept.start), at + page)] {
                    if start < end && !self.prep.add_zero(start..end) {
                        // SAFETY: part of a free page of ours, read-write (free pages always
                        // are), that nothing references.
                        unsafe { core::ptr::write_bytes(start as *mut u8, 0, end - start) };
                    }
                }
                p.dirty = false;
                self.dirty_pages -= 1;
            }
        }
        if uncommitted_overwritten >= 2 {
            let from = overwritten.start.max(addr) & !(page - 1);
            let to = align_up(overwritten.end.min(addr + count * page), page).unwrap_or(from);
            self.prep.populate = Some(from..to);
        }
        self.regions[r].open(first, count, batch);
        Ok(())
    }

    /// Finds (or reserves) `count` contiguous free pages starting at a multiple of `align` (a
    /// power of two, at least a page). A `trapped` run (the code of a module image) comes with a
    /// trap page right before it: preferably one sealed already, else a free page that becomes
    /// one. Idle trap pages are reclaimed before a new region is reserved.
    fn find_free_run(&mut self, count: usize, align: usize, trapped: bool) -> Result<FreeRun, ExecError> {
        let page = self.page;
        if trapped {
            let anchored = self.regions.iter().enumerate().find_map(|(r, region)| {
                region.anchored_run(count, align, page).map(|first| FreeRun {
                    region: r,
                    first,
                    trap: Trap::Anchored,
                })
            });
            if let Some(run) = anchored {
                return Ok(run);
            }
        }
        let lead = usize::from(trapped);
        let first_fit = |regions: &[Region]| {
            regions.iter().enumerate().find_map(|(r, region)| {
                region.first_fit(count, align, lead, page).map(|first| FreeRun {
                    region: r,
                    first,
                    trap: Trap::new(trapped),
                })
            })
        };
        if let Some(run) = first_fit(&self.regions) {
            return Ok(run);
        }
        if self.reclaim_idle_traps()? {
            if let Some(run) = first_fit(&self.regions) {
                return Ok(run);
            }
        }
        // Room for the lead page and the run at the first multiple of `align` after it, in a
        // fresh reservation.
        let wanted = count
            .checked_add(lead)
            .and_then(|pages| pages.checked_mul(self.page))
            .and_then(|w| w.checked_add(align - self.page))
            .ok_or(ExecError::TooLarge { size: usize::MAX })?;
        let len = align_up(wanted.max(self.config.region_size), self.page)
            .ok_or(ExecError::TooLarge { size: wanted })?;
        let base = self.kernel.reserve(len)? as usize;
        let first = (align_up(base + lead * self.page, align).unwrap_or(base) - base) / self.page;
        self.regions.push(Region::new(base, len, self.page));
        Ok(FreeRun { region: self.regions.len() - 1, first, trap: Trap::new(trapped) })
    }

    /// Releases the sealed trap pages that guard no code (the page after them is free, or
    /// they end their region), so they can join a run again; returns whether there were any.
    fn reclaim_idle_traps(&mut self) -> Result<bool, ExecError> {
        let mut reclaimed = false;
        for r in 0..self.regions.len() {
            for trap in self.regions[r].idle_traps() {
                self.act(r, trap, 1, PageAction::Release)?;
                reclaimed = true;
            }
        }
        Ok(reclaimed)
    }

    /// Places a block of `size` bytes (already a multiple of the granule) aligned to `align`
    /// in `batch`'s open pages, opening more pages when needed; returns its address. The
    /// caller writes the block's first `overwritten` bytes in full (they need not be zeroed).
    /// A `trapped` block (a module image's code) that needs a new run gets a trap page before it.
    fn place(
        &mut self,
        batch: u64,
        size: usize,
        align: usize,
        overwritten: usize,
        trapped: bool,
    ) -> Result<usize, ExecError> {
        let (cursor, end) = {
            let b = self.batches.get(&batch).ok_or(ExecError::UnknownBatch)?;
            (b.cursor, b.end)
        };
        if end != 0 {
            let start = align_up(cursor, align).ok_or(ExecError::TooLarge { size })?;
            let stop = start.checked_add(size).ok_or(ExecError::TooLarge { size })?;
            if stop <= end {
                return Ok(start);
            }
            // Extend the current run if the pages after it are free in the same region,
            // opening ahead (as far as the run is long already, up to `MAX_OPEN_AHEAD`) so
            // that a large batch costs few protection changes. Pages still unused when the
            // batch is sealed are released.
            if let Some((r, first, needed)) = self.pages_of(end, stop) {
                let region = &self.regions[r];
                let run_pages =
                    self.batches.get(&batch).and_then(|b| b.runs.last()).map_or(0, |run| run.1 / self.page);
                let ahead = run_pages.clamp(1, MAX_OPEN_AHEAD);
                let last = first + region.free_run_from(first, (needed - first).max(ahead));
                if last >= needed && self.region_of(end - 1) == Some(r) {
                    let overwritten = start..start.saturating_add(overwritten.min(size));
                    self.open_pages(r, first, last - first, batch, &overwritten)?;
                    let new_end = self.regions[r].base + last * self.page;
                    let b = self.batches.get_mut(&batch).ok_or(ExecError::UnknownBatch)?;
                    if let Some(run) = b.runs.last_mut() {
                        run.1 += new_end - end;
                    }
                    b.end = new_end;
                    return Ok(start);
                }
            }
        }
        let count = size.div_ceil(self.page);
        let FreeRun { region: r, first, trap } = self.find_free_run(count, align.max(self.page), trapped)?;
        let start = self.regions[r].base + first * self.page;
        // A new trap page is opened with the run (its fill is written in full below).
        let lead = usize::from(trap == Trap::New);
        let opened = start - lead * self.page;
        let overwritten_range = opened..start.saturating_add(overwritten.min(size));
        self.open_pages(r, first - lead, count + lead, batch, &overwritten_range)?;
        if trap == Trap::New {
            // Filled by the caller, after the lock (see `Prep`).
            self.prep.trap = Some(opened);
            let page = &mut self.regions[r].pages[first - 1];
            page.trap = true;
            page.kind = MemoryKind::Code;
        }
        let b = self.batches.get_mut(&batch).ok_or(ExecError::UnknownBatch)?;
        b.cursor = start;
        b.end = start + count * self.page;
        b.runs.push((opened, (lead + count) * self.page));
        Ok(start)
    }

    pub(crate) fn alloc(&mut self, batch: BatchId, size: usize, align: usize) -> Result<Placed, ExecError> {
        self.alloc_overwritten(batch, size, align, 0)
    }

    /// Allocates a block whose first `overwritten` bytes the caller writes at once.
    fn alloc_overwritten(
        &mut self,
        batch: BatchId,
        size: usize,
        align: usize,
        overwritten: usize,
    ) -> Result<Placed, ExecError> {
        if size == 0 {
            return Err(ExecError::ZeroSize);
        }
        if !align.is_power_of_two() || align > self.page {
            return Err(ExecError::BadAlignment { align });
        }
        let size = align_up(size, GRANULE).ok_or(ExecError::TooLarge { size })?;
        let align = align.max(GRANULE);
        let start = self.place(batch.0, size, align, overwritten, false)?;
        let b = self.batches.get_mut(&batch.0).ok_or(ExecError::UnknownBatch)?;
        b.cursor = start + size;
        if let Some((r, first, last)) = self.pages_of(start, start + size) {
            let region = &mut self.regions[r];
            for page in &mut region.pages[first..last] {
                page.live += 1;
            }
            region.mark(start, size, true);
        }
        self.blocks_live += 1;
        self.bytes_live += size;
        Ok((start, size))
    }

    /// Opens room in `batch` for blocks of the sizes `lens` at `align` placed one after the
    /// other, faulting their pages in with one call: they are about to be written in full.
    pub(crate) fn prepare(
        &mut self,
        batch: BatchId,
        lens: impl Iterator<Item = usize>,
        align: usize,
    ) -> Result<(), ExecError> {
        if !align.is_power_of_two() || align > self.page {
            return Err(ExecError::BadAlignment { align });
        }
        let align = align.max(GRANULE);
        let mut total: usize = 0;
        for len in lens {
            if len == 0 {
                return Err(ExecError::ZeroSize);
            }
            let rounded = align_up(len.max(1), align).ok_or(ExecError::TooLarge { size: len })?;
            total = total.checked_add(rounded).ok_or(ExecError::TooLarge { size: len })?;
        }
        if total > 0 {
            self.place(batch.0, total, align, total, false)?;
        }
        Ok(())
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

    /// Allocates one contiguous run of segments in `batch` (a module image: code, read-only
    /// data, writable data), each a block of its own whose pages seal to its kind, starting at a
    /// multiple of `align` (at least a page), handed to `out` in order (`None` for an empty
    /// segment). The caller writes the image's first `overwritten` bytes in full before
    /// sealing, so they are not zeroed first in recycled pages.
    pub(crate) fn alloc_image(
        &mut self,
        batch: BatchId,
        segments: &[(usize, MemoryKind)],
        overwritten: usize,
        align: usize,
        mut out: impl FnMut(Option<Placed>),
    ) -> Result<(), ExecError> {
        if !align.is_power_of_two() || align > MAX_IMAGE_ALIGNMENT {
            return Err(ExecError::BadAlignment { align });
        }
        let unit = align.max(self.page);
        let mut total: usize = 0;
        for &(len, _) in segments {
            let rounded = align_up(len, unit).ok_or(ExecError::TooLarge { size: len })?;
            total = total.checked_add(rounded).ok_or(ExecError::TooLarge { size: len })?;
        }
        if total == 0 {
            return Err(ExecError::ZeroSize);
        }
        // Code first: its run gets a trap page before it (none needed where pages stay RWX).
        let trapped = !self.config.allow_rwx
            && segments.iter().find(|&&(len, _)| len > 0).is_some_and(|&(_, kind)| kind == MemoryKind::Code);
        let start = self.place(batch.0, total, unit, overwritten, trapped)?;
        let b = self.batches.get_mut(&batch.0).ok_or(ExecError::UnknownBatch)?;
        b.cursor = start + total;
        let mut at = start;

        for &(len, kind) in segments {
            if len == 0 {
                out(None);
                continue;
            }
            let size = align_up(len, unit).unwrap_or(len);
            if let Some((r, first, last)) = self.pages_of(at, at + size) {
                let region = &mut self.regions[r];
                for p in &mut region.pages[first..last] {
                    p.live += 1;
                    p.kind = kind;
                }
                region.mark(at, size, true);
            }
            self.blocks_live += 1;
            self.bytes_live += size;
            out(Some((at, size)));
            at += size;
        }
        Ok(())
    }

    /// Allocates a block in `batch` for `len` bytes of code that the caller copies in at once
    /// (and zeroes the rest of its last granule): its recycled bytes are not zeroed first.
    pub(crate) fn alloc_for_code(
        &mut self,
        batch: BatchId,
        len: usize,
        align: usize,
    ) -> Result<Placed, ExecError> {
        self.alloc_overwritten(batch, len, align, len)
    }

    /// Copies `bytes` to `addr` inside a live sealed block whose pages stay writable (data, or
    /// code in RWX mode).
    fn write_sealed(&mut self, addr: usize, bytes: &[u8]) -> Result<(), ExecError> {
        // SAFETY: the caller checked that `addr..addr+len` lies inside a live sealed block of
        // ours whose pages are read-write or, in RWX mode, read-write-execute; `bytes` cannot
        // overlap it (it is a shared reference to memory the caller owns, and the allocator
        // hands out no Rust reference into sealed blocks).
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len()) };
        Ok(())
    }

    /// Applies `action(page, index)` to pages `first..last` of region `r`, one syscall per run
    /// of pages with the same action.
    fn apply(
        &mut self,
        r: usize,
        first: usize,
        last: usize,
        action: impl Fn(&Page, usize) -> PageAction,
    ) -> Result<(), ExecError> {
        let mut i = first;
        while i < last {
            let kind = action(&self.regions[r].pages[i], i);
            let mut j = i + 1;
            while j < last && action(&self.regions[r].pages[j], j) == kind {
                j += 1;
            }
            self.act(r, i, j - i, kind)?;
            i = j;
        }
        Ok(())
    }

    /// Carries out one action on `count` pages from page `first` of region `r`.
    fn act(&mut self, r: usize, first: usize, count: usize, action: PageAction) -> Result<(), ExecError> {
        let addr = (self.regions[r].base + first * self.page) as *mut u8;
        let len = count * self.page;
        match action {
            PageAction::Seal(kind) if self.defer => {
                let target = self.sealed_protection(kind);
                let protection = (target != self.open_protection()).then_some(target);
                let op = DeferredOp::Seal { protection, code: kind == MemoryKind::Code };
                self.defer_change(r, first, count, op)?;
            }
            PageAction::Seal(kind) => {
                let target = self.sealed_protection(kind);
                if target != self.open_protection() {
                    // SAFETY: open pages of a batch being sealed: its owner has finished
                    // writing and nothing else references them.
                    unsafe { self.kernel.protect(addr, len, target) }?;
                    self.protection_changes += 1;
                }
                if kind == MemoryKind::Code {
                    // SAFETY: the range is mapped readable by us.
                    unsafe { icache::sync(addr as usize, len) };
                }
                self.regions[r].seal(first, count);
            }
            PageAction::Release => {
                let recycle = self.dirty_pages + count <= RECYCLED_PAGES;
                let pages = &self.regions[r].pages[first..first + count];
                let needs_protect = pages.iter().any(|p| self.protection_of(p) != FREE_PROTECTION);
                if self.defer && (needs_protect || !recycle) {
                    self.defer_change(r, first, count, DeferredOp::Release { recycle })?;
                    for page in &mut self.regions[r].pages[first..first + count] {
                        page.state = PageState::Releasing;
                    }
                    if recycle {
                        self.dirty_pages += count; // held for them; given back if the change fails
                    }
                    return Ok(());
                }
                if recycle {
                    if needs_protect {
                        // SAFETY: no live block lies in these pages (no code runs there any more):
                        // they become plain read-write free pages, never executable.
                        unsafe { self.kernel.protect(addr, len, FREE_PROTECTION) }?;
                        self.protection_changes += 1;
                    }
                    self.dirty_pages += count;
                } else {
                    // SAFETY: no live block lies in these pages, so no code or reference uses them.
                    unsafe { self.kernel.discard(addr, len, FREE_PROTECTION) }?;
                    self.protection_changes += 1;
                }
                self.regions[r].release(first, count, recycle);
            }
            PageAction::Keep => {}
        }
        Ok(())
    }

    /// Records a protection change for the caller to make outside the lock.
    fn defer_change(
        &mut self,
        r: usize,
        first: usize,
        count: usize,
        op: DeferredOp,
    ) -> Result<(), ExecError> {
        let (addr, len) = (self.regions[r].base + first * self.page, count * self.page);
        self.deferred.try_reserve(1).map_err(|_| ExecError::TooLarge { size: len })?;
        self.deferred.push(Deferred { r, first, count, addr, len, op, done: false });
        Ok(())
    }

    /// The protection changes the last operation left for the caller (run each with
    /// [`Deferred::run`] outside the lock, then hand them to [`State::finish_seal`] or
    /// [`State::finish_release`]).
    pub(crate) fn take_deferred(&mut self) -> Vec<Deferred> {
        self.defer = false;
        core::mem::take(&mut self.deferred)
    }

    /// Books the outcome of deferred changes: made seals become sealed pages, made releases
    /// free pages; a release that failed leaves its pages sealed and empty, for `trim` to retry.
    /// Gives the vector back for reuse.
    fn commit(&mut self, mut deferred: Vec<Deferred>) {
        for d in &deferred {
            match d.op {
                DeferredOp::Seal { protection, .. } if d.done => {
                    self.protection_changes += u64::from(protection.is_some());
                    self.regions[d.r].seal(d.first, d.count);
                }
                DeferredOp::Seal { .. } => {}
                DeferredOp::Release { recycle } if d.done => {
                    self.protection_changes += 1;
                    self.regions[d.r].release(d.first, d.count, recycle);
                }
                DeferredOp::Release { recycle } => {
                    for page in &mut self.regions[d.r].pages[d.first..d.first + d.count] {
                        page.state = PageState::Sealed;
                        page.trap = false;
                    }
                    if recycle {
                        self.dirty_pages -= d.count;
                    }
                }
            }
        }
        deferred.clear();
        if self.deferred.capacity() < deferred.capacity() {
            self.deferred = deferred;
        }
    }

    /// Starts sealing `batch`: its protection changes are left for the caller
    /// ([`State::take_deferred`]) and the batch's pages are left alone until
    /// [`State::finish_seal`].
    pub(crate) fn begin_seal(&mut self, batch: BatchId) -> Result<(), ExecError> {
        let b = self.batches.get_mut(&batch.0).ok_or(ExecError::UnknownBatch)?;
        b.sealing = true;
        let runs = core::mem::take(&mut b.runs);
        self.defer = true;
        let planned = self.seal_runs(batch.0, &runs);
        self.defer = false;
        if let Some(b) = self.batches.get_mut(&batch.0) {
            b.runs = runs;
        }
        planned
    }

    /// Finishes sealing `batch` with the outcome of its deferred changes (in order; the
    /// first failure, if any, is returned). The batch ends either way, as with [`State::seal`];
    /// blocks freed while the changes were made have their pages released now.
    pub(crate) fn finish_seal(
        &mut self,
        batch: BatchId,
        deferred: Vec<Deferred>,
        failure: Option<ExecError>,
    ) -> Result<(), ExecError> {
        let sealed_code =
            deferred.iter().any(|d| d.done && matches!(d.op, DeferredOp::Seal { code: true, .. }));
        self.commit(deferred);
        let b = self.batches.remove(&batch.0).ok_or(ExecError::UnknownBatch)?;
        if failure.is_some() {
            self.release_unused(batch.0, &b.runs);
        }
        // Blocks freed meanwhile: their pages were kept for the seal; release them now.
        for &(start, len) in &b.runs {
            let Some((r, first, last)) = self.pages_of(start, start + len) else { continue };
            let _ = self.apply(r, first, last, |p, _| match p.state {
                PageState::Sealed if p.live == 0 && !p.trap => PageAction::Release,
                _ => PageAction::Keep,
            });
        }
        if sealed_code {
            self.kernel.sync_other_threads();
        }
        self.release_empty_regions();
        failure.map_or(Ok(()), Err)
    }

    /// Frees the blocks starting at `addrs` (as [`State::free_many`]), leaving the protection
    /// changes of the pages they empty for the caller ([`State::take_deferred`], then
    /// [`State::finish_release`]).
    pub(crate) fn begin_release(&mut self, addrs: &[usize]) -> Result<(), ExecError> {
        self.defer = true;
        let result = self.free_many(addrs);
        self.defer = false;
        result
    }

    /// Books the outcome of a release's deferred changes; returns the first failure.
    pub(crate) fn finish_release(
        &mut self,
        deferred: Vec<Deferred>,
        failure: Option<ExecError>,
    ) -> Result<(), ExecError> {
        self.commit(deferred);
        self.release_empty_regions();
        failure.map_or(Ok(()), Err)
    }

    /// Seals (or, deferring, plans to seal) the open pages of `batch` in `runs`. A trap page is
    /// sealed only in front of code (an abandoned batch has none left); otherwise it is
    /// released with the batch's other empty pages.
    fn seal_runs(&mut self, batch: u64, runs: &[(usize, usize)]) -> Result<(), ExecError> {
        let mut result = Ok(());
        for &(start, len) in runs {
            let Some((r, first, last)) = self.pages_of(start, start + len) else { continue };
            let open = PageState::Open(batch);
            let pages = &mut self.regions[r].pages;
            for i in first..last {
                if pages[i].trap && pages[i].state == open {
                    let next = pages.get(i + 1);
                    pages[i].trap =
                        next.is_some_and(|n| n.state == open && n.live > 0 && n.kind == MemoryKind::Code);
                }
            }
            let action = |p: &Page, _| match p.state {
                PageState::Open(id) if id == batch && (p.live > 0 || p.trap) => PageAction::Seal(p.kind),
                PageState::Open(id) if id == batch => PageAction::Release,
                _ => PageAction::Keep,
            };
            result = self.apply(r, first, last, action);
            if result.is_err() {
                break;
            }
        }
        result
    }

    /// Releases the pages of an ended batch that hold no block (its open trap pages too:
    /// they guard no sealed code). Failures leave pages for [`State::trim`] to retry.
    fn release_unused(&mut self, batch: u64, runs: &[(usize, usize)]) {
        for &(start, len) in runs {
            let Some((r, first, last)) = self.pages_of(start, start + len) else { continue };
            let pages = &mut self.regions[r].pages;
            for page in &mut pages[first..last] {
                if page.state == PageState::Open(batch) && page.live == 0 {
                    page.trap = false;
                }
            }
            let _ = self.apply(r, first, last, |p, _| match p.state {
                PageState::Open(id) if id == batch && p.live == 0 => PageAction::Release,
                _ => PageAction::Keep,
            });
        }
    }

    /// Frees the blocks starting at `addrs`, then releases the pages they leave empty with one
    /// discard per run (a module's adjacent segments go back together).
    pub(crate) fn free_many(&mut self, addrs: &[usize]) -> Result<(), ExecError> {
        let mut touched: Vec<(usize, usize, usize)> = Vec::with_capacity(addrs.len());
        let mut failed = None;
        for &addr in addrs {
            match self.unmark(addr) {
                Some(pages) => touched.push(pages),
                None => failed = Some(ExecError::NotOwned { addr, len: 0 }),
            }
        }
        touched.sort_unstable();
        let (page, mut i) = (self.page, 0);
        while i < touched.len() {
            // Merge overlapping or adjacent page ranges of one region.
            let (r, first, mut last) = touched[i];
            let mut j = i + 1;
            while j < touched.len() && touched[j].0 == r && touched[j].1 <= last {
                last = last.max(touched[j].2);
                j += 1;
            }
            let base = self.regions[r].base;
            // Open pages need their batch's cursor; a released module has only sealed pages.
            let has_open =
                self.regions[r].pages[first..last].iter().any(|p| matches!(p.state, PageState::Open(_)));
            // (A batch being sealed keeps all its pages: its seal releases the empty ones.)
            let cursors: Vec<(u64, usize)> = if has_open {
                self.batches
                    .iter()
                    .map(|(&id, b)| (id, if b.sealing { usize::MAX } else { b.cursor }))
                    .collect()
            } else {
                Vec::new()
            };
            let released = self.apply(r, first, last, |p, i| match p.state {
                PageState::Sealed if p.live == 0 && !p.trap => PageAction::Release,
                // An open page below its batch's cursor will never receive another block.
                PageState::Open(id) if p.live == 0 => {
                    let cursor = cursors.iter().find(|(b, _)| *b == id).map(|&(_, c)| c);
                    if cursor.is_none_or(|c| c >= base + (i + 1) * page) {
                        PageAction::Release
                    } else {
                        PageAction::Keep
                    }
                }
                _ => PageAction::Keep,
            });
            // Pages that could not be released stay out of use until `trim` retries them.
            if let Err(e) = released {
                failed.get_or_insert(e);
            }
            i = j;
        }
        self.release_empty_regions();
        failed.map_or(Ok(()), Err)
    }

    /// Forgets the block starting at `addr` (bitmaps, counters, page counts) and returns the
    /// pages it covered; `None` if no live block starts there.
    fn unmark(&mut self, addr: usize) -> Option<(usize, usize, usize)> {
        let r = self.region_of(addr)?;
        let size = self.regions[r].block_size(addr)?;
        let (r, first, last) = self.pages_of(addr, addr + size)?;
        self.regions[r].mark(addr, size, false);
        self.blocks_live -= 1;
        self.bytes_live -= size;
        for p in &mut self.regions[r].pages[first..last] {
            p.live -= 1;
        }
        Some((r, first, last))
    }

    /// Ends an unsealed batch: its blocks stay (open, writable) until their owners free them,
    /// and the pages they leave empty are released then; pages holding nothing go now.
    pub(crate) fn abandon(&mut self, batch: BatchId) {
        if let Some(b) = self.batches.remove(&batch.0) {
            self.release_unused(batch.0, &b.runs);
            self.release_empty_regions();
        }
    }

    /// Replaces bytes of a sealed block: a writable copy of the touched pages is made, patched,
    /// sealed and moved over the originals, so no page is ever writable and executable and the
    /// other code on those pages keeps running.
    pub(crate) fn patch(&mut self, addr: usize, bytes: &[u8]) -> Result<(), ExecError> {
        let info = self.lookup(addr, bytes.len()).ok_or(ExecError::NotOwned { addr, len: bytes.len() })?;
        if !info.sealed {
            return Err(ExecError::NotSealed { addr });
        }
        match info.kind {
            MemoryKind::ReadWrite => return self.write_sealed(addr, bytes),
            MemoryKind::Code if self.config.allow_rwx => return self.write_sealed(addr, bytes),
            MemoryKind::Code | MemoryKind::ReadOnly => {}
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let first = addr & !(self.page - 1);
        let end = align_up(addr + bytes.len(), self.page).ok_or(ExecError::TooLarge { size: bytes.len() })?;
        let len = end - first;
        let copy = self.kernel.map_anonymous(len, Protection::ReadWrite)?;
        // SAFETY: `copy` is a fresh private mapping of `len` bytes; `first..end` are sealed,
        // readable pages of ours; the patch lies inside the copy.
        unsafe {
            core::ptr::copy_nonoverlapping(first as *const u8, copy, len);
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), copy.add(addr - first), bytes.len());
        }
        // SAFETY: `copy` is ours and about to be moved; nothing references it.
        let sealed =
            unsafe { self.kernel.protect(copy, len, self.sealed_protection(info.kind)) }.and_then(|()| {
                // SAFETY: `copy` is sealed and readable.
                unsafe { icache::sync(copy as usize, len) };
                // SAFETY: both ranges are ours; the caller holds the patched block exclusively and
                // the other blocks on these pages see identical bytes after the move.
                unsafe { self.kernel.move_over(copy, first as *mut u8, len) }
            });
        if let Err(e) = sealed {
            // SAFETY: the copy was never moved; it is ours alone.
            let _ = unsafe { self.kernel.unmap(copy, len) };
            return Err(e.into());
        }
        self.protection_changes += 3;
        self.patches += 1;
        self.kernel.sync_other_threads();
        Ok(())
    }

    /// Gives back what is kept for speed: idle trap pages become free pages, and free pages
    /// still committed for reuse are discarded (one call per run). Regions stay reserved.
    pub(crate) fn trim(&mut self) -> Result<(), ExecError> {
        self.release_stranded()?;
        self.reclaim_idle_traps()?;
        for r in 0..self.regions.len() {
            let mut i = 0;
            while i < self.regions[r].pages.len() {
                let pages = &self.regions[r].pages;
                let run = pages[i..].iter().take_while(|p| p.state == PageState::Free && p.dirty).count();
                if run == 0 {
                    i += 1;
                    continue;
                }
                let addr = (self.regions[r].base + i * self.page) as *mut u8;
                // SAFETY: free pages of ours: no block lies in them and nothing references them.
                unsafe { self.kernel.discard(addr, run * self.page, FREE_PROTECTION) }?;
                self.protection_changes += 1;
                for page in &mut self.regions[r].pages[i..i + run] {
                    page.dirty = false;
                }
                self.dirty_pages -= run;
                i += run;
            }
        }
        Ok(())
    }

    /// Releases pages that hold nothing but could not be released when they emptied (a
    /// protection change failed): sealed pages that are not trap pages, and open pages of
    /// batches that have ended.
    fn release_stranded(&mut self) -> Result<(), ExecError> {
        for r in 0..self.regions.len() {
            let batches = &self.batches;
            let stranded = |p: &Page| match p.state {
                PageState::Sealed => p.live == 0 && !p.trap,
                PageState::Open(id) => p.live == 0 && !batches.contains_key(&id),
                PageState::Free | PageState::Releasing => false,
            };
            if !self.regions[r].pages.iter().any(stranded) {
                continue;
            }
            let ended: Vec<bool> = self.regions[r].pages.iter().map(stranded).collect();
            let last = ended.len();
            self.apply(r, 0, last, |_, i| if ended[i] { PageAction::Release } else { PageAction::Keep })?;
        }
        self.release_empty_regions();
        Ok(())
    }

    /// Unmaps regions with no used page, keeping `spare_regions` of them reserved.
    fn release_empty_regions(&mut self) {
        let mut spare = 0;
        let page = self.page;
        let mut dirty_dropped = 0;
        self.regions.retain(|region| {
            if region.used > 0 {
                return true;
            }
            spare += 1;
            if spare <= self.config.spare_regions {
                return true;
            }
            // SAFETY: the region has no open or sealed page: nothing of ours lives in it.
            let kept =
                unsafe { self.kernel.unmap(region.base as *mut u8, region.pages.len() * page) }.is_err();
            if !kept {
                dirty_dropped += region.pages.iter().filter(|p| p.dirty).count();
            }
            kept
        });
        self.dirty_pages -= dirty_dropped;
    }

    /// The protection of the page holding `addr`, if a live block overlaps that page.
    pub(crate) fn protection_at(&self, addr: usize) -> Option<Protection> {
        let r = self.region_of(addr)?;
        let page = self.regions[r].pages[(addr - self.regions[r].base) / self.page];
        match page.state {
            _ if page.live == 0 => None,
            PageState::Open(_) => Some(self.open_protection()),
            PageState::Sealed => Some(self.sealed_protection(page.kind)),
            PageState::Free | PageState::Releasing => None,
        }
    }

    /// The address ranges reserved as regions.
    pub(crate) fn regions(&self) -> Vec<core::ops::Range<usize>> {
        self.regions.iter().map(|r| r.base..r.end(self.page)).collect()
    }

    pub(crate) fn stats(&self) -> Stats {
        let mut stats = Stats {
            blocks_live: self.blocks_live,
            bytes_live: self.bytes_live,
            regions: self.regions.len(),
            protection_changes: self.protection_changes,
            patches: self.patches,
            ..Stats::default()
        };
        for region in &self.regions {
            debug_assert!(region.bitmaps_agree(), "page bitmaps out of step at {:#x}", region.base);
            // Adjacent pages with one protection are one kernel mapping (patched pages, moved
            // in by mremap, may add a few that this estimate does not see).
            let mut previous = None;
            for page in &region.pages {
                let protection = match page.state {
                    PageState::Free => FREE_PROTECTION,
                    PageState::Open(_) => {
                        stats.pages_open += 1;
                        self.open_protection()
                    }
                    PageState::Sealed => {
                        if page.trap {
                            stats.trap_pages += 1;
                        } else {
                            stats.pages_sealed += 1;
                        }
                        self.sealed_protection(page.kind)
                    }
                    // On its way to free (its protection change is being made).
                    PageState::Releasing => FREE_PROTECTION,
                };
                if previous != Some(protection) {
                    stats.mappings += 1;
                    previous = Some(protection);
                }
            }
        }
        stats
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
