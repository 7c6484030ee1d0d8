//! Sealing and releasing pages through [`super::act`]'s runs: ending batches (sealed or
//! abandoned), freeing blocks, and giving memory back (`trim`).

#![allow(unsafe_code)]

use super::act::{Deferred, PageAction};
use super::*;

impl State {
    /// Starts sealing `batch`: its protection changes are left for the caller
    /// ([`State::take_deferred`]) and the batch's pages are left alone until
    /// [`State::finish_seal`].
    pub(crate) fn begin_seal(&mut self, batch: BatchId) -> Result<(), ExecError> {
        let b = self.batches.get_mut(batch.0).ok_or(ExecError::UnknownBatch)?;
        b.sealing = true;
        let mut runs = core::mem::take(&mut b.runs);
        // A run whose pages were all released went with its region if that emptied; a region
        // reserved since may lie at the same addresses. Only runs inside a live region hold
        // pages of the batch (merged with a stale one, a live run would lie in no region).
        runs.retain(|&(start, len)| self.pages_of(start, start + len).is_some());
        disjoint(&mut runs);
        self.defer = true;
        let planned = self.seal_runs(batch.0, &runs);
        self.defer = false;
        if let Some(b) = self.batches.get_mut(batch.0) {
            b.runs = runs;
        }
        planned
    }

    /// Finishes sealing `batch` with the outcome of its deferred changes (in order; the
    /// first failure, if any, is returned). The batch ends either way: after a failure, pages
    /// sealed so far stay sealed, the rest stay open (its blocks remain valid until freed) and
    /// its empty pages are released. Blocks freed while the changes were made have their pages
    /// released now.
    pub(crate) fn finish_seal(
        &mut self,
        batch: BatchId,
        deferred: Vec<Deferred>,
        failure: Option<ExecError>,
    ) -> Result<(), ExecError> {
        let sealed_code = deferred.iter().any(Deferred::made_code_executable);
        self.commit(deferred);
        let b = self.batches.remove(batch.0).ok_or(ExecError::UnknownBatch)?;
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
                    pages[i].trap = guards_code(pages.get(i + 1), open);
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
    /// they guard no sealed code, and a released page is no trap). Failures leave pages for
    /// [`State::trim`] to retry.
    fn release_unused(&mut self, batch: u64, runs: &[(usize, usize)]) {
        for &(start, len) in runs {
            let Some((r, first, last)) = self.pages_of(start, start + len) else { continue };
            let _ = self.apply(r, first, last, |p, _| match p.state {
                PageState::Open(id) if id == batch && p.live == 0 => PageAction::Release,
                _ => PageAction::Keep,
            });
        }
    }

    /// Frees the blocks starting at `addrs`, then releases the pages they leave empty with one
    /// discard per run (a module's adjacent segments go back together). Nothing is allocated:
    /// the page ranges to check are merged as they come (blocks freed in address order make one
    /// range) into a list of fixed size, released whenever it fills.
    pub(crate) fn free_many(&mut self, addrs: &[usize]) -> Result<(), ExecError> {
        let mut touched = Touched::default();
        let mut failed = None;
        for &addr in addrs {
            let Some(pages) = self.unmark(addr) else {
                failed = Some(ExecError::NotOwned { addr, len: 0 });
                continue;
            };
            if !touched.add(pages) {
                self.release_touched(&mut touched, &mut failed);
                touched.add(pages);
            }
        }
        self.release_touched(&mut touched, &mut failed);
        self.release_empty_regions();
        failed.map_or(Ok(()), Err)
    }

    /// Releases the pages of `touched`'s ranges that hold no block any more, and empties it. A
    /// failed release is kept in `failed` (unless it holds an error already); its pages stay
    /// out of use until `trim` retries them.
    fn release_touched(&mut self, touched: &mut Touched, failed: &mut Option<ExecError>) {
        let ranges = touched.take_sorted();
        let (page, mut next) = (self.page, 0);
        while next < ranges.len() {
            // Merge overlapping or adjacent page ranges of one region (the first with itself).
            let (r, first, mut last) = ranges[next];
            debug_assert!(first < last, "`pages_of` gives no empty range");
            while next < ranges.len() && ranges[next].0 == r && ranges[next].1 <= last {
                last = last.max(ranges[next].2);
                next += 1;
            }
            let base = self.regions[r].base;
            let released = self.apply_seeing(r, first, last, |state, p, i| match p.state {
                PageState::Sealed if p.live == 0 && !p.trap => PageAction::Release,
                // An open page outside its batch's room for more blocks will never receive
                // another block. A batch being sealed keeps all its pages: their protection is
                // being changed outside the lock, and its seal releases the empty ones.
                PageState::Open(id) if p.live == 0 => {
                    let (start, end) = (base + i * page, base + (i + 1) * page);
                    let kept = state.batches.get(id).is_some_and(|b| b.sealing || b.has_room_in(start, end));
                    if kept {
                        PageAction::Keep
                    } else {
                        PageAction::Release
                    }
                }
                _ => PageAction::Keep,
            });
            if let Err(e) = released {
                failed.get_or_insert(e);
            }
        }
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
        if let Some(b) = self.batches.remove(batch.0) {
            self.release_unused(batch.0, &b.runs);
            self.release_empty_regions();
        }
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
            if !self.regions[r].pages.iter().any(|p| stranded(p, &self.batches)) {
                continue;
            }
            let last = self.regions[r].pages.len();
            self.apply_seeing(r, 0, last, |state, p, _| match stranded(p, &state.batches) {
                true => PageAction::Release,
                false => PageAction::Keep,
            })?;
        }
        self.release_empty_regions();
        Ok(())
    }

    /// Unmaps regions with no used page, keeping `spare_regions` of them reserved.
    fn release_empty_regions(&mut self) {
        let mut spare = 0;
        let page = self.page;
        let mut dirty_dropped = 0;
        let batches = &mut self.batches;
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
                // A batch's run there is gone with it (a region reserved later may take its
                // addresses: growing the run into that one would leave pages out of its seal).
                batches.forget_range(region.base..region.end(page));
            }
            kept
        });
        self.dirty_pages -= dirty_dropped;
    }
}

/// Page ranges `(region, first page, last page + 1)` whose pages may have emptied, merged as
/// they are added: a fixed list, so that freeing allocates nothing.
#[derive(Default)]
struct Touched {
    ranges: [(usize, usize, usize); TOUCHED_RANGES],
    len: usize,
}

/// Ranges a [`Touched`] holds before its pages are released.
const TOUCHED_RANGES: usize = 32;

impl Touched {
    /// Adds `range`, merged into the last one if they overlap or meet in one region; false if
    /// the list is full.
    fn add(&mut self, range: (usize, usize, usize)) -> bool {
        let (r, first, last) = range;
        if let Some(prev) = self.ranges[..self.len].last_mut() {
            if prev.0 == r && first <= prev.2 && prev.1 <= last {
                *prev = (r, prev.1.min(first), prev.2.max(last));
                return true;
            }
        }
        if self.len == TOUCHED_RANGES {
            return false;
        }
        self.ranges[self.len] = range;
        self.len += 1;
        true
    }

    /// The ranges in order, the list emptied (they stay readable until the next `add`).
    fn take_sorted(&mut self) -> &[(usize, usize, usize)] {
        let ranges = &mut self.ranges[..core::mem::take(&mut self.len)];
        if !ranges.is_sorted() {
            smf_format::sort::heapsort(ranges);
        }
        ranges
    }
}

/// Whether `page` holds nothing but was not released when it emptied: a sealed page that is
/// not a trap page, or an open page of a batch that has ended.
fn stranded(page: &Page, batches: &Batches) -> bool {
    match page.state {
        PageState::Sealed => page.live == 0 && !page.trap,
        PageState::Open(id) => page.live == 0 && !batches.contains(id),
        PageState::Free | PageState::Releasing => false,
    }
}

/// Whether a trap page of a batch (whose pages are `open`) still guards code: the page after it
/// is the batch's and holds code. (Code freed before the seal gave its pages back at once, but
/// for a page the batch's cursor is still in: one left holding no block goes back at the seal,
/// with the trap page before it.)
fn guards_code(next: Option<&Page>, open: PageState) -> bool {
    next.is_some_and(|n| n.state == open && n.live > 0 && n.kind == MemoryKind::Code)
}

/// Sorts `runs` (start, length) and merges the ones that overlap, so that sealing plans each
/// page once: a batch can open pages it released itself earlier (after its blocks there were
/// freed), and planned changes do not mark pages, so an overlapping run would plan the same
/// seal twice and book it twice. Runs that only touch stay apart (they may lie in different
/// regions).
pub(super) fn disjoint(runs: &mut Vec<(usize, usize)>) {
    smf_format::sort::heapsort(runs);
    let mut kept = 0;
    for i in 0..runs.len() {
        let (start, len) = runs[i];
        if kept > 0 && start < runs[kept - 1].0 + runs[kept - 1].1 {
            let last = &mut runs[kept - 1];
            last.1 = last.1.max(start + len - last.0);
        } else {
            runs[kept] = (start, len);
            kept += 1;
        }
    }
    runs.truncate(kept);
}
