//! Sealing and releasing pages: the protection changes planned under the lock and made
//! outside it ([`Deferred`]), then booked; freeing blocks; ending batches; giving memory
//! back (`trim`).

#![allow(unsafe_code)]

use super::*;

/// A protection change the lock holder left for its caller to make after releasing the lock
/// (the pages are marked so that no one else touches them meanwhile), and whether it was made.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deferred {
    /// The first page's index in its region. The region itself is found again by `addr` when
    /// the change is booked: regions before it may have been unmapped meanwhile (by this
    /// operation or another thread's), shifting every index after theirs, while the region of
    /// pages being changed stays (they count as used).
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

/// What to do with a run of pages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum PageAction {
    Seal(MemoryKind),
    Release,
    /// Open pages that were never touched (nothing committed, already free's protection):
    /// free again, clean, with no syscall. [`State::apply`] picks it for `Release`.
    Forget,
    Keep,
}

impl State {
    /// Applies `action(page, index)` to pages `first..last` of region `r`, one syscall per run
    /// of pages with the same action.
    fn apply(
        &mut self,
        r: usize,
        first: usize,
        last: usize,
        action: impl Fn(&Page, usize) -> PageAction,
    ) -> Result<(), ExecError> {
        self.apply_seeing(r, first, last, |_, page, i| action(page, i))
    }

    /// [`State::apply`] with an `action` that also sees the state (the open batches): each
    /// page's action is decided just before its run is acted on, so it sees the pages before it
    /// changed already, and the others as they were.
    fn apply_seeing(
        &mut self,
        r: usize,
        first: usize,
        last: usize,
        action: impl Fn(&State, &Page, usize) -> PageAction,
    ) -> Result<(), ExecError> {
        let action = |state: &State, i: usize| {
            let page = &state.regions[r].pages[i];
            match action(state, page, i) {
                PageAction::Release
                    if !page.touched
                        && matches!(page.state, PageState::Open(_))
                        && state.protection_of(page) == FREE_PROTECTION =>
                {
                    PageAction::Forget
                }
                other => other,
            }
        };
        let mut i = first;
        while i < last {
            let kind = action(self, i);
            let mut j = i + 1;
            while j < last && action(self, j) == kind {
                j += 1;
            }
            self.act(r, i, j - i, kind)?;
            i = j;
        }
        Ok(())
    }

    /// Carries out one action on `count` pages from page `first` of region `r`.
    pub(super) fn act(
        &mut self,
        r: usize,
        first: usize,
        count: usize,
        action: PageAction,
    ) -> Result<(), ExecError> {
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
                    let open_kind = self.open_kind();
                    self.regions[r].begin_release(first, count, open_kind);
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
            PageAction::Forget => self.regions[r].release(first, count, false),
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
        self.deferred.push(Deferred { first, count, addr, len, op, done: false });
        Ok(())
    }

    /// The protection changes the last operation left for the caller (run each with
    /// [`Deferred::run`] outside the lock, then hand them to [`State::finish_seal`] or
    /// [`State::finish_release`]).
    pub(crate) fn take_deferred(&mut self) -> Vec<Deferred> {
        core::mem::take(&mut self.deferred)
    }

    /// Books the outcome of deferred changes: made seals become sealed pages, made releases
    /// free pages; a release that failed leaves its pages sealed and empty, for `trim` to retry.
    /// Gives the vector back for reuse.
    fn commit(&mut self, mut deferred: Vec<Deferred>) {
        for d in &deferred {
            // The pages of a pending change keep their region reserved (they count as used).
            let Some(r) = self.region_of(d.addr) else {
                debug_assert!(false, "a region with a pending change was unmapped");
                continue;
            };
            match d.op {
                DeferredOp::Seal { protection, .. } if d.done => {
                    self.protection_changes += u64::from(protection.is_some());
                    self.regions[r].seal(d.first, d.count);
                }
                DeferredOp::Seal { .. } => {}
                DeferredOp::Release { recycle } if d.done => {
                    self.protection_changes += 1;
                    self.regions[r].release(d.first, d.count, recycle);
                }
                DeferredOp::Release { recycle } => {
                    self.regions[r].release_failed(d.first, d.count);
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
        let sealed_code =
            deferred.iter().any(|d| d.done && matches!(d.op, DeferredOp::Seal { code: true, .. }));
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
        let (page, mut i) = (self.page, 0);
        while i < ranges.len() {
            // Merge overlapping or adjacent page ranges of one region.
            let (r, first, mut last) = ranges[i];
            let mut j = i + 1;
            while j < ranges.len() && ranges[j].0 == r && ranges[j].1 <= last {
                last = last.max(ranges[j].2);
                j += 1;
            }
            let base = self.regions[r].base;
            let released = self.apply_seeing(r, first, last, |state, p, i| match p.state {
                PageState::Sealed if p.live == 0 && !p.trap => PageAction::Release,
                // An open page outside its batch's room for more blocks will never receive
                // another block. A batch being sealed keeps all its pages: their protection is
                // being changed outside the lock, and its seal releases the empty ones.
                PageState::Open(id) if p.live == 0 => {
                    let (start, end) = (base + i * page, base + (i + 1) * page);
                    let room = state.batches.get(id).map(|b| match b.sealing {
                        true => (0, usize::MAX),
                        false => (b.cursor, b.end),
                    });
                    if room.is_none_or(|(cursor, stop)| end <= cursor || start >= stop) {
                        PageAction::Release
                    } else {
                        PageAction::Keep
                    }
                }
                _ => PageAction::Keep,
            });
            if let Err(e) = released {
                failed.get_or_insert(e);
            }
            i = j;
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
            let batches = &self.batches;
            let stranded = |p: &Page| match p.state {
                PageState::Sealed => p.live == 0 && !p.trap,
                PageState::Open(id) => p.live == 0 && !batches.contains(id),
                PageState::Free | PageState::Releasing => false,
            };
            if !self.regions[r].pages.iter().any(stranded) {
                continue;
            }
            let last = self.regions[r].pages.len();
            self.apply_seeing(r, 0, last, |state, p, _| {
                let ended = match p.state {
                    PageState::Sealed => p.live == 0 && !p.trap,
                    PageState::Open(id) => p.live == 0 && !state.batches.contains(id),
                    PageState::Free | PageState::Releasing => false,
                };
                if ended {
                    PageAction::Release
                } else {
                    PageAction::Keep
                }
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
            crate::sort::heapsort(ranges);
        }
        ranges
    }
}

/// Sorts `runs` (start, length) and merges the ones that overlap, so that sealing plans each
/// page once: a batch can open pages it released itself earlier (after its blocks there were
/// freed), and planned changes do not mark pages, so an overlapping run would plan the same
/// seal twice and book it twice. Runs that only touch stay apart (they may lie in different
/// regions).
fn disjoint(runs: &mut Vec<(usize, usize)>) {
    crate::sort::heapsort(runs);
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
