//! Acting on runs of pages: at most one protection change per run of pages with the same action
//! (seal, release, forget, keep), made at once or, while the lock is held only for
//! bookkeeping, planned under the lock as a [`Deferred`] change made outside it and booked
//! afterwards.

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
    /// Whether this change was made and made code executable (other threads must then
    /// synchronize their instruction streams).
    pub(super) fn made_code_executable(&self) -> bool {
        self.done && matches!(self.op, DeferredOp::Seal { code: true, .. })
    }

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
    /// Open pages of a batch become sealed to their kind: only planned (by
    /// [`State::begin_seal`]), the change left for the caller to make outside the lock.
    Seal(MemoryKind),
    Release,
    /// Pages holding nothing that were mapped from a file: discarded, never recycled.
    /// [`State::apply`] picks it for `Release`, so that a module's file-backed code and its
    /// other pages go back in separate runs (the others recycled).
    DiscardFile,
    /// Open pages that were never touched (nothing committed, already free's protection):
    /// free again, clean, with no syscall. [`State::apply`] picks it for `Release`.
    Forget,
    Keep,
}

impl State {
    /// Applies `action(page, index)` to pages `first..last` of region `r`, one syscall per run
    /// of pages with the same action.
    pub(super) fn apply(
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
    pub(super) fn apply_seeing(
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
                PageAction::Release if page.file => PageAction::DiscardFile,
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
            PageAction::Seal(kind) => {
                // Only a batch's seal seals pages, and always outside the lock.
                let target = self.sealed_protection(kind);
                let protection = (target != self.open_protection()).then_some(target);
                let op = DeferredOp::Seal { protection, code: kind == MemoryKind::Code };
                self.defer_change(r, first, count, op)?;
            }
            PageAction::Release | PageAction::DiscardFile => {
                let pages = &self.regions[r].pages[first..first + count];
                // A page mapped from a file is discarded: kept, it would keep the file's pages
                // (and the file) in the process, and fault if the file shrank.
                let recycle = action == PageAction::Release
                    && self.dirty_pages + count <= RECYCLED_PAGES
                    && !pages.iter().any(|p| p.file);
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
    pub(super) fn commit(&mut self, mut deferred: Vec<Deferred>) {
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
}
