//! The allocator's bookkeeping (all of it outside executable memory) and the protection
//! changes it decides. Everything here runs under the allocator's lock.
//!
//! Address space comes in regions reserved `PROT_NONE`. Each page of a region is free (no
//! access, no memory), open for one batch (read-write), or sealed (read-execute). A batch
//! bump-allocates blocks in its open pages and never shares them with another batch; sealing
//! turns all of a batch's open pages read-execute with one `mprotect` per contiguous run. A
//! sealed page never becomes writable again and never receives new blocks. A page whose last
//! block is freed is discarded back to free; a region with no used page is unmapped (one spare
//! empty region is kept to avoid thrashing).
//!
//! Invariants:
//! - every live block lies in pages that are open for its batch or sealed, inside one region;
//! - `live` of a page counts the live blocks overlapping it; free pages have `live == 0`;
//! - a batch's bump cursor only moves forward, so bytes handed out were never used before and
//!   are still zero (fresh or discarded pages).

#![allow(unsafe_code)]

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::{icache, BatchId, Block, BlockInfo, Config, ExecError, Stats, GRANULE};
use crate::sys::{self, Protection};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PageState {
    Free,
    Open(u64),
    Sealed,
}

#[derive(Clone, Copy, Debug)]
struct Page {
    state: PageState,
    live: u32,
}

#[derive(Debug)]
struct Region {
    base: usize,
    pages: Vec<Page>,
    /// Pages that are not free.
    used: usize,
}

impl Region {
    fn end(&self, page: usize) -> usize {
        self.base + self.pages.len() * page
    }
}

#[derive(Debug)]
struct Batch {
    /// Next free byte of the current run.
    cursor: usize,
    /// End of the current run (0 before the first allocation).
    end: usize,
    /// Every run of pages this batch opened: (start, length in bytes).
    runs: Vec<(usize, usize)>,
}

#[derive(Clone, Copy, Debug)]
struct BlockMeta {
    size: usize,
    batch: u64,
}

/// What to do with a run of pages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PageAction {
    Seal,
    Release,
    Keep,
}

#[derive(Debug)]
pub(crate) struct State {
    config: Config,
    page: usize,
    regions: Vec<Region>,
    blocks: BTreeMap<usize, BlockMeta>,
    batches: BTreeMap<u64, Batch>,
    next_batch: u64,
    bytes_live: usize,
    protection_changes: u64,
    patches: u64,
}

const fn align_up(value: usize, align: usize) -> Option<usize> {
    match value.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

impl State {
    pub(crate) fn new(config: Config) -> Self {
        Self {
            config,
            page: sys::page_size(),
            regions: Vec::new(),
            blocks: BTreeMap::new(),
            batches: BTreeMap::new(),
            next_batch: 1,
            bytes_live: 0,
            protection_changes: 0,
            patches: 0,
        }
    }

    pub(crate) const fn page_size(&self) -> usize {
        self.page
    }

    fn open_protection(&self) -> Protection {
        if self.config.allow_rwx {
            Protection::ReadWriteExec
        } else {
            Protection::ReadWrite
        }
    }

    fn sealed_protection(&self) -> Protection {
        if self.config.allow_rwx {
            Protection::ReadWriteExec
        } else {
            Protection::ReadExec
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
        let first = (start - region.base) / self.page;
        let last = (end - 1 - region.base) / self.page + 1;
        Some((r, first, last))
    }

    pub(crate) fn begin_batch(&mut self) -> BatchId {
        let id = self.next_batch;
        self.next_batch += 1;
        self.batches.insert(id, Batch { cursor: 0, end: 0, runs: Vec::new() });
        BatchId(id)
    }

    /// Opens `count` pages starting at page `first` of region `r` for `batch`.
    fn open_pages(&mut self, r: usize, first: usize, count: usize, batch: u64) -> Result<(), ExecError> {
        let addr = self.regions[r].base + first * self.page;
        // SAFETY: the pages are free pages of our own reservation: nothing references them.
        unsafe { sys::protect(addr as *mut u8, count * self.page, self.open_protection()) }?;
        self.protection_changes += 1;
        let region = &mut self.regions[r];
        for page in &mut region.pages[first..first + count] {
            page.state = PageState::Open(batch);
        }
        region.used += count;
        Ok(())
    }

    /// Finds (or reserves) `count` contiguous free pages; returns (region, first page).
    fn find_free_run(&mut self, count: usize) -> Result<(usize, usize), ExecError> {
        for (r, region) in self.regions.iter().enumerate() {
            let mut run = 0;
            for (i, page) in region.pages.iter().enumerate() {
                run = if page.state == PageState::Free { run + 1 } else { 0 };
                if run == count {
                    return Ok((r, i + 1 - count));
                }
            }
        }
        let wanted = count.checked_mul(self.page).ok_or(ExecError::TooLarge { size: usize::MAX })?;
        let len = align_up(wanted.max(self.config.region_size), self.page)
            .ok_or(ExecError::TooLarge { size: wanted })?;
        let base = sys::reserve(len)? as usize;
        self.regions.push(Region {
            base,
            pages: alloc::vec![Page { state: PageState::Free, live: 0 }; len / self.page],
            used: 0,
        });
        Ok((self.regions.len() - 1, 0))
    }

    /// Places a block of `size` bytes (already a multiple of the granule) aligned to `align`
    /// in `batch`'s open pages, opening more pages when needed; returns its address.
    fn place(&mut self, batch: u64, size: usize, align: usize) -> Result<usize, ExecError> {
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
            // Extend the current run if the pages after it are free in the same region.
            if let Some((r, first, last)) = self.pages_of(end, stop) {
                if self.regions[r].pages[first..last].iter().all(|p| p.state == PageState::Free)
                    && self.region_of(end - 1) == Some(r)
                {
                    self.open_pages(r, first, last - first, batch)?;
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
        let (r, first) = self.find_free_run(count)?;
        self.open_pages(r, first, count, batch)?;
        let start = self.regions[r].base + first * self.page;
        let b = self.batches.get_mut(&batch).ok_or(ExecError::UnknownBatch)?;
        b.cursor = start;
        b.end = start + count * self.page;
        b.runs.push((start, count * self.page));
        Ok(start)
    }

    pub(crate) fn alloc(&mut self, batch: BatchId, size: usize, align: usize) -> Result<Block, ExecError> {
        if size == 0 {
            return Err(ExecError::ZeroSize);
        }
        if !align.is_power_of_two() || align > self.page {
            return Err(ExecError::BadAlignment { align });
        }
        let size = align_up(size, GRANULE).ok_or(ExecError::TooLarge { size })?;
        let align = align.max(GRANULE);
        let start = self.place(batch.0, size, align)?;
        let b = self.batches.get_mut(&batch.0).ok_or(ExecError::UnknownBatch)?;
        b.cursor = start + size;
        if let Some((r, first, last)) = self.pages_of(start, start + size) {
            for page in &mut self.regions[r].pages[first..last] {
                page.live += 1;
            }
        }
        self.blocks.insert(start, BlockMeta { size, batch: batch.0 });
        self.bytes_live += size;
        Ok(Block { addr: start, size })
    }

    /// The live block containing `addr..addr+len`.
    pub(crate) fn lookup(&self, addr: usize, len: usize) -> Option<BlockInfo> {
        let end = addr.checked_add(len)?;
        let (&start, meta) = self.blocks.range(..=addr).next_back()?;
        if end > start + meta.size {
            return None;
        }
        let sealed = self
            .pages_of(start, start + meta.size)
            .is_some_and(|(r, first, _)| self.regions[r].pages[first].state == PageState::Sealed);
        Some(BlockInfo { block: Block { addr: start, size: meta.size }, batch: BatchId(meta.batch), sealed })
    }

    /// Copies `bytes` to `addr` inside a live, still writable block.
    pub(crate) fn write(&mut self, addr: usize, bytes: &[u8]) -> Result<(), ExecError> {
        let info = self.lookup(addr, bytes.len()).ok_or(ExecError::NotOwned { addr, len: bytes.len() })?;
        if info.sealed && !self.config.allow_rwx {
            return Err(ExecError::Sealed { addr });
        }
        // SAFETY: `addr..addr+len` lies inside a live block of ours whose pages are open
        // (read-write) or, in RWX mode, read-write-execute; `bytes` cannot overlap it (it is a
        // shared reference to memory the caller owns, and nobody holds a reference into ours).
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len()) };
        Ok(())
    }

    /// Applies `action` to every page of `pages` (region `r`, indices), one syscall per run.
    fn apply(&mut self, r: usize, pages: &[(usize, PageAction)]) -> Result<(), ExecError> {
        let mut i = 0;
        while i < pages.len() {
            let (first, action) = pages[i];
            let mut j = i + 1;
            while j < pages.len() && pages[j].1 == action && pages[j].0 == pages[j - 1].0 + 1 {
                j += 1;
            }
            let count = j - i;
            let addr = (self.regions[r].base + first * self.page) as *mut u8;
            let len = count * self.page;
            match action {
                PageAction::Seal => {
                    if !self.config.allow_rwx {
                        // SAFETY: open pages of a batch being sealed: its owner has finished
                        // writing and nothing else references them.
                        unsafe { sys::protect(addr, len, Protection::ReadExec) }?;
                        self.protection_changes += 1;
                    }
                    // SAFETY: the range is mapped readable by us.
                    unsafe { icache::sync(addr as usize, len) };
                    for page in &mut self.regions[r].pages[first..first + count] {
                        page.state = PageState::Sealed;
                    }
                }
                PageAction::Release => {
                    // SAFETY: no live block lies in these pages, so no code or reference uses them.
                    unsafe { sys::discard(addr, len) }?;
                    self.protection_changes += 1;
                    let region = &mut self.regions[r];
                    for page in &mut region.pages[first..first + count] {
                        page.state = PageState::Free;
                    }
                    region.used -= count;
                }
                PageAction::Keep => {}
            }
            i = j;
        }
        Ok(())
    }

    pub(crate) fn seal(&mut self, batch: BatchId) -> Result<(), ExecError> {
        let b = self.batches.remove(&batch.0).ok_or(ExecError::UnknownBatch)?;
        let mut sealed_any = false;
        for &(start, len) in &b.runs {
            let Some((r, first, last)) = self.pages_of(start, start + len) else { continue };
            let actions: Vec<(usize, PageAction)> = (first..last)
                .map(|i| {
                    let page = self.regions[r].pages[i];
                    let action = match page.state {
                        PageState::Open(id) if id == batch.0 && page.live > 0 => PageAction::Seal,
                        PageState::Open(id) if id == batch.0 => PageAction::Release,
                        _ => PageAction::Keep,
                    };
                    (i, action)
                })
                .collect();
            sealed_any |= actions.iter().any(|(_, a)| *a == PageAction::Seal);
            self.apply(r, &actions)?;
        }
        if sealed_any {
            icache::sync_other_threads();
        }
        self.release_empty_regions();
        Ok(())
    }

    /// Frees the block starting at `addr`.
    pub(crate) fn free(&mut self, addr: usize) -> Result<(), ExecError> {
        let meta = self.blocks.remove(&addr).ok_or(ExecError::NotOwned { addr, len: 0 })?;
        self.bytes_live -= meta.size;
        let cursor = self.batches.get(&meta.batch).map(|b| b.cursor);
        let Some((r, first, last)) = self.pages_of(addr, addr + meta.size) else { return Ok(()) };
        let page = self.page;
        let base = self.regions[r].base;
        let mut actions = Vec::new();
        for i in first..last {
            let p = &mut self.regions[r].pages[i];
            p.live -= 1;
            let page_end = base + (i + 1) * page;
            let action = match p.state {
                PageState::Sealed if p.live == 0 => PageAction::Release,
                // An open page below the batch's cursor will never receive another block.
                PageState::Open(_) if p.live == 0 && cursor.is_none_or(|c| c >= page_end) => {
                    PageAction::Release
                }
                _ => PageAction::Keep,
            };
            actions.push((i, action));
        }
        self.apply(r, &actions)?;
        self.release_empty_regions();
        Ok(())
    }

    /// Drops an unsealed batch: frees its blocks and releases its pages.
    pub(crate) fn abandon(&mut self, batch: BatchId) -> Result<(), ExecError> {
        let b = self.batches.get(&batch.0).ok_or(ExecError::UnknownBatch)?;
        let runs = b.runs.clone();
        for &(start, len) in &runs {
            let addrs: Vec<usize> = self
                .blocks
                .range(start..start + len)
                .filter(|(_, m)| m.batch == batch.0)
                .map(|(&a, _)| a)
                .collect();
            for addr in addrs {
                self.free(addr)?;
            }
        }
        // Seal with no live blocks left releases every page still open for the batch.
        self.seal(batch)
    }

    /// Replaces bytes of a sealed block: a writable copy of the touched pages is made, patched,
    /// sealed and moved over the originals, so no page is ever writable and executable and the
    /// other code on those pages keeps running.
    pub(crate) fn patch(&mut self, addr: usize, bytes: &[u8]) -> Result<(), ExecError> {
        let info = self.lookup(addr, bytes.len()).ok_or(ExecError::NotOwned { addr, len: bytes.len() })?;
        if !info.sealed || self.config.allow_rwx {
            return self.write(addr, bytes);
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let first = addr & !(self.page - 1);
        let end = align_up(addr + bytes.len(), self.page).ok_or(ExecError::TooLarge { size: bytes.len() })?;
        let len = end - first;
        let copy = sys::map_anonymous(len, Protection::ReadWrite)?;
        // SAFETY: `copy` is a fresh private mapping of `len` bytes; `first..end` are sealed,
        // readable pages of ours; the patch lies inside the copy.
        unsafe {
            core::ptr::copy_nonoverlapping(first as *const u8, copy, len);
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), copy.add(addr - first), bytes.len());
        }
        // SAFETY: `copy` is ours and about to be moved; nothing references it.
        let sealed = unsafe { sys::protect(copy, len, Protection::ReadExec) }.and_then(|()| {
            // SAFETY: `copy` is sealed and readable.
            unsafe { icache::sync(copy as usize, len) };
            // SAFETY: both ranges are ours; the caller holds the patched block exclusively and
            // the other blocks on these pages see identical bytes after the move.
            unsafe { sys::move_over(copy, first as *mut u8, len) }
        });
        if let Err(e) = sealed {
            // SAFETY: the copy was never moved; it is ours alone.
            let _ = unsafe { sys::unmap(copy, len) };
            return Err(e.into());
        }
        self.protection_changes += 3;
        self.patches += 1;
        icache::sync_other_threads();
        Ok(())
    }

    /// Unmaps regions with no used page, keeping `spare_regions` of them reserved.
    fn release_empty_regions(&mut self) {
        let mut spare = 0;
        let page = self.page;
        self.regions.retain(|region| {
            if region.used > 0 {
                return true;
            }
            spare += 1;
            if spare <= self.config.spare_regions {
                return true;
            }
            // SAFETY: the region has no open or sealed page: nothing of ours lives in it.
            unsafe { sys::unmap(region.base as *mut u8, region.pages.len() * page) }.is_err()
        });
    }

    /// The protection of the page holding `addr`, if a live block overlaps that page.
    pub(crate) fn protection_at(&self, addr: usize) -> Option<Protection> {
        let r = self.region_of(addr)?;
        let page = self.regions[r].pages[(addr - self.regions[r].base) / self.page];
        match page.state {
            _ if page.live == 0 => None,
            PageState::Open(_) => Some(self.open_protection()),
            PageState::Sealed => Some(self.sealed_protection()),
            PageState::Free => None,
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        let mut stats = Stats {
            blocks_live: self.blocks.len(),
            bytes_live: self.bytes_live,
            regions: self.regions.len(),
            protection_changes: self.protection_changes,
            patches: self.patches,
            ..Stats::default()
        };
        for region in &self.regions {
            let mut previous = None;
            for page in &region.pages {
                let class = match page.state {
                    PageState::Free => 0,
                    PageState::Open(_) => 1,
                    PageState::Sealed => 2,
                };
                stats.pages_open += usize::from(class == 1);
                stats.pages_sealed += usize::from(class == 2);
                if previous != Some(class) {
                    stats.mappings += 1;
                    previous = Some(class);
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
            let _ = unsafe { sys::unmap(region.base as *mut u8, region.pages.len() * self.page) };
        }
    }
}
