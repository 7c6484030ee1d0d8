//! Opening pages for a batch: finding (or reserving) free runs, placing blocks and module
//! images in them, and the work left for the caller after the lock ([`Prep`]).

#![allow(unsafe_code)]

use super::act::PageAction;
use super::*;

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

/// The least alignment of an image's code or writable data packed in a batch of many: a
/// cache line (no two modules' data share one), which is also more than any module's code got
/// by chance before packing where its writer declared less than it needed (the S128 writer
/// declares 16 for every code section).
const PACKED_ALIGNMENT: usize = 64;

impl Prep {
    /// Adds `range` to zero (nothing to do for an empty one); false if there is no room left.
    fn add_zero(&mut self, range: core::ops::Range<usize>) -> bool {
        if range.is_empty() {
            return true;
        }
        if let Some(last) = self.zero[..self.zeros].last_mut() {
            if last.end == range.start {
                last.end = range.end;
                return true;
            }
        }
        let Some(slot) = self.zero.get_mut(self.zeros) else {
            return false;
        };
        *slot = range;
        self.zeros += 1;
        true
    }

    /// Leaves `skipped` (whole pages the caller maps from a file) out of the pages to fault
    /// in: what follows it is kept (what precedes it, a module's trap page, is written anyway),
    /// or, if nothing does, what precedes it.
    pub(super) fn skip_populating(&mut self, skipped: core::ops::Range<usize>) {
        let Some(range) = self.populate.as_mut() else { return };
        if skipped.start < range.end && range.start < skipped.end {
            if skipped.end < range.end {
                range.start = skipped.end;
            } else {
                range.end = skipped.start.max(range.start);
            }
        }
        if range.start >= range.end {
            self.populate = None;
        }
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

/// Room a module image's data needs in the same region as its code, above it (so that the
/// code reaches it with 32-bit PC-relative references).
#[derive(Clone, Copy)]
struct DataRoom {
    /// Pages.
    count: usize,
    /// Where they may start: a multiple of this (a power of two, at least a page).
    align: usize,
}

impl State {
    /// Whether region `r` has room for `data` (if any is wanted) from page `above` on.
    fn data_fits(&self, r: usize, above: usize, data: Option<DataRoom>) -> bool {
        data.is_none_or(|d| self.regions[r].last_fit(d.count, d.align, above, self.page).is_some())
    }

    /// Opens `count` pages starting at page `first` of region `r` for `batch`. Recycled pages
    /// are zeroed, except the bytes in `overwritten` (addresses the caller writes in full before
    /// sealing). The pages of `overwritten` are faulted in with one call rather than one fault
    /// each; every other page (a module's bss, a large allocation) is committed only if and
    /// when it is written.
    pub(super) fn open_pages(
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
            // The page's bytes.
            let this = addr + i * page..addr + (i + 1) * page;
            if overwritten.start < this.end && this.start < overwritten.end {
                uncommitted_overwritten += usize::from(!p.dirty);
                // The caller writes it, or the populate below commits it, whether or not a
                // block is placed there after all: it is never given back as clean.
                p.touched = true;
            }
            if p.dirty {
                // Cleared so new blocks start zeroed, except the bytes the caller overwrites:
                // by the caller, after the lock (or here if the list is full).
                let kept = overwritten.start.clamp(this.start, this.end)
                    ..overwritten.end.clamp(this.start, this.end);
                for (start, end) in [(this.start, kept.start), (kept.end.max(kept.start), this.end)] {
                    if !self.prep.add_zero(start..end) {
                        // SAFETY: part of a free page of ours, read-write (free pages always
                        // are), that nothing references.
                        unsafe { core::ptr::write_bytes(start as *mut u8, 0, end - start) };
                    }
                }
                p.dirty = false;
                p.touched = true;
                self.dirty_pages -= 1;
            }
        }
        if uncommitted_overwritten >= 2 {
            // What the caller overwrites overlaps two of these pages or more, and ends in them;
            // it starts before them (in a run grown), or in them at a page boundary.
            let from = overwritten.start.max(addr);
            let to = align_up(overwritten.end, page).unwrap_or(from);
            debug_assert!(from % page == 0 && to <= addr + count * page);
            self.prep.populate = Some(from..to);
        }
        self.regions[r].open(first, count, batch);
        Ok(())
    }

    /// Finds (or reserves) `count` contiguous free pages starting at a multiple of `align` (a
    /// power of two, at least a page). A `trapped` run (the code of a module image) comes with a
    /// trap page right before it: preferably one sealed already, else a free page that becomes
    /// one. Idle trap pages are reclaimed before a new region is reserved.
    fn find_free_run(
        &mut self,
        count: usize,
        align: usize,
        trapped: bool,
        data: Option<DataRoom>,
    ) -> Result<FreeRun, ExecError> {
        let page = self.page;
        if trapped {
            let anchored = (0..self.regions.len()).find_map(|r| {
                let first = self.regions[r].anchored_run(count, align, page)?;
                self.data_fits(r, first + count, data).then_some(FreeRun {
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
        let first_fit = |state: &State| {
            (0..state.regions.len()).find_map(|r| {
                let first = state.regions[r].first_fit(count, align, lead, page)?;
                state.data_fits(r, first + count, data).then_some(FreeRun {
                    region: r,
                    first,
                    trap: Trap::new(trapped),
                })
            })
        };
        if let Some(run) = first_fit(self) {
            return Ok(run);
        }
        if self.reclaim_idle_traps()? {
            if let Some(run) = first_fit(self) {
                return Ok(run);
            }
        }
        // Room for the lead page and the run at the first multiple of `align` after it, then
        // for the data at a multiple of its alignment, in a fresh reservation.
        let data_room = data.map_or(Some(0), |d| {
            d.count.checked_mul(self.page).and_then(|bytes| bytes.checked_add(d.align - self.page))
        });
        let wanted = count
            .checked_add(lead)
            .and_then(|pages| pages.checked_mul(self.page))
            .and_then(|w| w.checked_add(align - self.page))
            .and_then(|w| w.checked_add(data_room?))
            .ok_or(ExecError::TooLarge { size: usize::MAX })?;
        let len = align_up(wanted.max(self.config.region_size.min(MAX_REGION)), self.page)
            .ok_or(ExecError::TooLarge { size: wanted })?;
        let base = self.kernel.reserve(len)? as usize;
        let first = (align_up(base + lead * self.page, align).unwrap_or(base) - base) / self.page;
        self.regions.push(Region::new(base, len, self.page));
        Ok(FreeRun { region: self.regions.len() - 1, first, trap: Trap::new(trapped) })
    }

    /// Releases the sealed trap pages that guard no code (the page after them is free, or
    /// they end their region), so they can join a run again; returns whether there were any.
    pub(super) fn reclaim_idle_traps(&mut self) -> Result<bool, ExecError> {
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
    /// With `data`, the block is a module image's code and its region must have room for the
    /// image's data above the pages the batch has open there.
    fn place(
        &mut self,
        batch: u64,
        size: usize,
        align: usize,
        overwritten: usize,
        trapped: bool,
        data: Option<DataRoom>,
    ) -> Result<usize, ExecError> {
        let (cursor, end, opens_ahead) = {
            let b = self.batches.get(batch).ok_or(ExecError::UnknownBatch)?;
            (b.cursor, b.end, b.opens_ahead)
        };
        if end != 0 {
            let start = align_up(cursor, align).ok_or(ExecError::TooLarge { size })?;
            let stop = start.checked_add(size).ok_or(ExecError::TooLarge { size })?;
            let room_above = |state: &State| {
                data.is_none()
                    || state.pages_of(end - 1, end).is_some_and(|(r, _, last)| state.data_fits(r, last, data))
            };
            if stop <= end && room_above(self) {
                return Ok(start);
            }
            // Extend the current run if the pages after it are free in the same region,
            // opening ahead (as far as the run is long already, up to `MAX_OPEN_AHEAD`) so
            // that a large batch costs few protection changes. Pages still unused when the
            // batch is sealed are released.
            if let Some((r, first, needed)) = self.pages_of(end, stop) {
                let region = &self.regions[r];
                // As far as the run holds blocks already (not its pages opened ahead).
                let used_pages = self
                    .batches
                    .get(batch)
                    .and_then(|b| b.current_run().map(|run| b.cursor.saturating_sub(run.0)))
                    .map_or(0, |used| used / self.page);
                let ahead = used_pages.clamp(1, MAX_OPEN_AHEAD);
                let last = first + region.free_run_from(first, (needed - first).max(ahead));
                if last >= needed && self.region_of(end - 1) == Some(r) && self.data_fits(r, last, data) {
                    let overwritten = start..start.saturating_add(overwritten.min(size));
                    self.open_pages(r, first, last - first, batch, &overwritten)?;
                    let new_end = self.regions[r].base + last * self.page;
                    let b = self.batches.get_mut(batch).ok_or(ExecError::UnknownBatch)?;
                    if let Some(run) = b.current_run_mut() {
                        run.1 += new_end - end;
                    }
                    b.end = new_end;
                    return Ok(start);
                }
            }
        }
        let count = size.div_ceil(self.page);
        let FreeRun { region: r, first, trap } =
            self.find_free_run(count, align.max(self.page), trapped, data)?;
        let start = self.regions[r].base + first * self.page;
        let ahead = if opens_ahead { self.clean_pages_ahead(r, first + count, data) } else { 0 };
        // A new trap page is opened with the run (its fill is written in full below).
        let lead = usize::from(trap == Trap::New);
        let opened = start - lead * self.page;
        let overwritten_range = opened..start.saturating_add(overwritten.min(size));
        self.open_pages(r, first - lead, count + lead + ahead, batch, &overwritten_range)?;
        if trap == Trap::New {
            // Filled by the caller, after the lock (see `Prep`).
            self.prep.trap = Some(opened);
            let page = &mut self.regions[r].pages[first - 1];
            page.trap = true;
            page.touched = true;
            page.kind = MemoryKind::Code;
        }
        let b = self.batches.get_mut(batch).ok_or(ExecError::UnknownBatch)?;
        b.cursor = start;
        b.end = start + (count + ahead) * self.page;
        b.runs.push((opened, (lead + count + ahead) * self.page));
        Ok(start)
    }

    /// How many free pages from page `from` of region `r` on are clean (nothing committed), up
    /// to [`NEW_RUN_AHEAD`]: a new run of a batch of many opens them too, leaving room (with `data` still fitting
    /// above) for its batch's next blocks, so that the code of a batch of modules stays in one
    /// run, sealed with one protection change, even while other threads open runs beside it.
    /// What is left unused goes back at the seal, clean, with no syscall.
    fn clean_pages_ahead(&self, r: usize, from: usize, data: Option<DataRoom>) -> usize {
        if self.open_protection() != FREE_PROTECTION {
            // Opening them would cost a protection change, and so would giving them back.
            return 0;
        }
        let pages = &self.regions[r].pages;
        let clean = pages
            .get(from..)
            .unwrap_or_default()
            .iter()
            .take(NEW_RUN_AHEAD)
            .take_while(|p| p.state == PageState::Free && !p.dirty)
            .count();
        if self.data_fits(r, from + clean, data) {
            clean
        } else {
            0
        }
    }

    pub(crate) fn alloc(
        &mut self,
        batch: BatchId,
        size: usize,
        align: usize,
    ) -> Result<PlacedBlock, ExecError> {
        self.alloc_overwritten(batch, size, align, 0)
    }

    /// Allocates a block whose first `overwritten` bytes the caller writes at once.
    fn alloc_overwritten(
        &mut self,
        batch: BatchId,
        size: usize,
        align: usize,
        overwritten: usize,
    ) -> Result<PlacedBlock, ExecError> {
        if size == 0 {
            return Err(ExecError::ZeroSize);
        }
        if !align.is_power_of_two() || align > self.page {
            return Err(ExecError::BadAlignment { align });
        }
        let size = align_up(size, GRANULE).ok_or(ExecError::TooLarge { size })?;
        let align = align.max(GRANULE);
        let start = self.place(batch.0, size, align, overwritten, false, None)?;
        let b = self.batches.get_mut(batch.0).ok_or(ExecError::UnknownBatch)?;
        b.cursor = start + size;
        if let Some((r, first, last)) = self.pages_of(start, start + size) {
            let region = &mut self.regions[r];
            for page in &mut region.pages[first..last] {
                page.live += 1;
                page.touched = true;
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
        // Where the blocks end, placed one after the other at `align` as the caller's
        // allocations place them: the caller writes them (the padding between them belongs to
        // no block), and nothing after the last one goes unzeroed.
        let mut extent: usize = 0;
        for len in lens {
            if len == 0 {
                return Err(ExecError::ZeroSize);
            }
            let at = align_up(extent, align).ok_or(ExecError::TooLarge { size: len })?;
            let size = align_up(len, GRANULE).ok_or(ExecError::TooLarge { size: len })?;
            extent = at.checked_add(size).ok_or(ExecError::TooLarge { size: len })?;
        }
        if extent > 0 {
            self.place(batch.0, extent, align, extent, false, None)?;
        }
        Ok(())
    }

    /// Allocates a module image's segments in `batch` (code, read-only data, writable data),
    /// each a block of its own whose pages seal to its kind, starting at a multiple of `align`,
    /// handed to `out` in order (`None` for an empty segment). Data segments take whole pages
    /// (each page seals to one kind), and so does code, except in a batch that opens ahead (a
    /// batch of many): there an image's code packs after the batch's previous block, and its
    /// writable data (if it has code) after the batch's previous image's data, at `align` but
    /// at least [`PACKED_ALIGNMENT`], so that many small modules share code pages and data
    /// pages. The code lies from the bottom of a region (after earlier code, so that sealed
    /// code stays in few mappings), the data at the top of the same region: every reference
    /// inside the image stays within a region. The caller writes the first `overwritten` bytes
    /// of the first segment (a module's code) in full before sealing, so they are not zeroed
    /// first in recycled pages (except packed writable data, zeroed in full).
    pub(crate) fn alloc_image(
        &mut self,
        batch: BatchId,
        segments: &[(usize, MemoryKind)],
        (overwritten, mapped): (usize, core::ops::Range<usize>),
        align: usize,
        mut out: impl FnMut(Option<PlacedBlock>),
    ) -> Result<(), ExecError> {
        if !align.is_power_of_two() || align > MAX_IMAGE_ALIGNMENT {
            return Err(ExecError::BadAlignment { align });
        }
        // An image with no code keeps whole pages: its data then lies in one region with no
        // code to place it above, found as a whole.
        let has_code = segments.iter().any(|&(len, kind)| kind == MemoryKind::Code && len > 0);
        let packs = has_code && self.batches.get(batch.0).ok_or(ExecError::UnknownBatch)?.opens_ahead;
        let (unit, packed_unit) = (align.max(self.page), align.max(PACKED_ALIGNMENT));
        // Code and writable data pack in a batch of many; read-only data never does.
        let packed_kind = |kind| packs && kind != MemoryKind::ReadOnly;
        let unit_of = |kind| if packed_kind(kind) { packed_unit } else { unit };
        // Which running total (and cursor) a segment counts in: code, whole-page data, packed
        // data.
        let slot_of = |kind| match kind {
            MemoryKind::Code => 0,
            _ if packed_kind(kind) => 2,
            _ => 1,
        };
        let mut totals = [0usize; 3];
        for &(len, kind) in segments {
            let rounded = align_up(len, unit_of(kind)).ok_or(ExecError::TooLarge { size: len })?;
            let total = &mut totals[slot_of(kind)];
            *total = total.checked_add(rounded).ok_or(ExecError::TooLarge { size: len })?;
        }
        let [code, paged, packed] = totals;
        if totals == [0; 3] {
            return Err(ExecError::ZeroSize);
        }
        // What the caller overwrites lies in the first segment, at the start of its block
        // (bytes past it are zeroed like the rest; packed writable data, which a loader's
        // image never puts first, is zeroed in full).
        let (first_len, first_kind) =
            segments.iter().copied().find(|&(len, _)| len > 0).unwrap_or((0, MemoryKind::Code));
        let mut overwritten_at = [0usize; 3];
        overwritten_at[slot_of(first_kind)] = overwritten.min(first_len);
        // Where each place's next block goes.
        let mut at = [0usize; 3];
        if code > 0 {
            // Room above the code for the data as whole pages, however much of it packs.
            let packed_pages = align_up(packed, unit).ok_or(ExecError::TooLarge { size: packed })?;
            let data_bytes = paged.checked_add(packed_pages).ok_or(ExecError::TooLarge { size: packed })?;
            let data_pages = data_bytes / self.page;
            let room = (data_pages > 0).then_some(DataRoom { count: data_pages, align: unit });
            // A trap page before the code run unless it follows sealed code (none needed where
            // pages stay RWX).
            at[0] = self.place(
                batch.0,
                code,
                unit_of(MemoryKind::Code),
                overwritten_at[0],
                !self.config.allow_rwx,
                room,
            )?;
            // What the caller maps from a file is not faulted in first.
            self.prep.skip_populating(at[0] + mapped.start..at[0] + mapped.end);
            let b = self.batches.get_mut(batch.0).ok_or(ExecError::UnknownBatch)?;
            b.cursor = at[0] + code;
        }
        // The data goes above the batch's open code pages in the code's region (`place` made
        // sure of room).
        let above = if code > 0 && (paged > 0 || packed > 0) {
            let end = self.batches.get(batch.0).ok_or(ExecError::UnknownBatch)?.end;
            let (r, _, last) = self.pages_of(end - 1, end).ok_or(ExecError::TooLarge { size: code })?;
            Some((r, last))
        } else {
            None
        };
        if paged > 0 {
            at[1] = self.place_data(batch.0, paged, unit, overwritten_at[1], above)?;
        }
        if packed > 0 {
            // Only an image with code packs: `above` is its code's.
            let above = above.ok_or(ExecError::TooLarge { size: packed })?;
            at[2] = self.place_packed_data(batch.0, packed, packed_unit, unit, above)?;
        }
        for &(len, kind) in segments {
            if len == 0 {
                out(None);
                continue;
            }
            let size = align_up(len, unit_of(kind)).unwrap_or(len);
            let at = &mut at[slot_of(kind)];
            if let Some((r, first, last)) = self.pages_of(*at, *at + size) {
                let region = &mut self.regions[r];
                for p in &mut region.pages[first..last] {
                    p.live += 1;
                    p.touched = true;
                    p.kind = kind;
                }
                region.mark(*at, size, true);
            }
            self.blocks_live += 1;
            self.bytes_live += size;
            out(Some((*at, size)));
            *at += size;
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
    ) -> Result<PlacedBlock, ExecError> {
        self.alloc_overwritten(batch, len, align, len)
    }

    /// Books `addr..addr + len` as mapped from a file by the caller once the lock is released
    /// ([`super::super::CodeBatch::map_file`]): whole pages, each open for `batch` and holding
    /// a live block. Released, they are discarded, not recycled.
    pub(crate) fn mark_mapped(&mut self, batch: BatchId, addr: usize, len: usize) -> Result<(), ExecError> {
        let refused = ExecError::NotMappable { addr, len };
        if len == 0 || addr % self.page != 0 || len % self.page != 0 {
            return Err(refused);
        }
        let (r, first, last) = self.pages_of(addr, addr.checked_add(len).ok_or(refused)?).ok_or(refused)?;
        let pages = &mut self.regions[r].pages[first..last];
        if pages.iter().any(|p| p.state != PageState::Open(batch.0) || p.live == 0) {
            return Err(refused);
        }
        for page in pages {
            page.file = true;
            page.touched = true;
        }
        Ok(())
    }
}
