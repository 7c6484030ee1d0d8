//! One reserved region of the executable allocator: the state of each page and a bitmap index
//! of the live blocks in it (where each starts and ends: `granule_bits.rs`), and the searches
//! for free runs of pages. The allocator's policy (what to open, seal or release) lives in `state/`.

use alloc::vec::Vec;

use super::granule_bits::GranuleBits;
use super::{MemoryKind, GRANULE};
use smf_format::align_up;

/// Where a page is in its life: free (read-write, holding nothing), open for one batch
/// (read-write), sealed (to its kind's protection), or being released (holding nothing, its
/// protection change made by a thread outside the lock; no one else touches it meanwhile).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PageState {
    Free,
    Open(u64),
    Sealed,
    Releasing,
}

/// One page of a region.
#[derive(Clone, Copy, Debug)]
pub(super) struct Page {
    pub(super) state: PageState,
    /// Live blocks overlapping the page.
    pub(super) live: u32,
    /// What the page becomes when sealed (code unless an image segment says otherwise).
    pub(super) kind: MemoryKind,
    /// A free page that still holds old bytes (kept committed to avoid a page fault on reuse):
    /// zeroed before it is opened again.
    pub(super) dirty: bool,
    /// A trap page: filled with instructions that fault, sealed with the code run right after
    /// it, and kept sealed, holding no block, after that code is freed (why: the policy in
    /// `state/mod.rs`).
    pub(super) trap: bool,
    /// Bytes of the page may be committed since it was opened: a block was placed on it, it
    /// was zeroed when opened (it was dirty), or it is a trap page. An open page that is not
    /// touched holds nothing committed and goes back to free clean, with no syscall.
    pub(super) touched: bool,
    /// Mapped from a file ([`super::CodeBatch::map_file`]): when released, it is discarded
    /// (replaced by zero pages), never recycled, so no page of this allocator stays backed by
    /// a file beyond its block's life.
    pub(super) file: bool,
}

impl Page {
    pub(super) const FREE: Page = Page {
        state: PageState::Free,
        live: 0,
        kind: MemoryKind::Code,
        dirty: false,
        trap: false,
        touched: false,
        file: false,
    };

    /// A trap page that has been sealed (it holds no block and is never released with one).
    pub(super) fn is_sealed_trap(&self) -> bool {
        self.trap && self.state == PageState::Sealed
    }
}

/// Address space reserved in one piece.
#[derive(Debug)]
pub(super) struct Region {
    /// The first byte.
    pub(super) base: usize,
    pub(super) pages: Vec<Page>,
    /// Pages that are open, or sealed and not trap pages: a region whose only sealed pages
    /// are trap pages is empty.
    pub(super) used: usize,
    /// One bit per page: set on free pages (mirrors `pages`, so searches skip whole words).
    free: Vec<u64>,
    /// One bit per page: set on sealed trap pages.
    traps: Vec<u64>,
    /// One bit per page: set on sealed code pages, trap pages included (new code right after
    /// one seals by moving the boundary of its mapping).
    code: Vec<u64>,
    /// One bit per granule: set where a live block starts.
    starts: GranuleBits,
    /// One bit per granule: set on the last granule of a live block. Blocks never overlap, so
    /// the first end bit at or after a start bit ends that block: sizes need no other index.
    ends: GranuleBits,
}

impl Region {
    /// A region of `len` bytes (a multiple of `page`) reserved at `base`, all pages free.
    pub(super) fn new(base: usize, len: usize, page: usize) -> Self {
        let count = len / page;
        let mut free = alloc::vec![0; count.div_ceil(64)];
        set_bits(&mut free, 0..count, true);
        Self {
            base,
            pages: alloc::vec![Page::FREE; count],
            used: 0,
            free,
            traps: alloc::vec![0; count.div_ceil(64)],
            code: alloc::vec![0; count.div_ceil(64)],
            starts: GranuleBits::new(len / GRANULE),
            ends: GranuleBits::new(len / GRANULE),
        }
    }

    pub(super) fn end(&self, page: usize) -> usize {
        self.base + self.pages.len() * page
    }

    /// The granule `addr` (in this region) lies in.
    fn granule(&self, addr: usize) -> usize {
        (addr - self.base) / GRANULE
    }

    /// Marks (or unmarks) the block `addr..addr+size` in the start and end bitmaps.
    pub(super) fn mark(&mut self, addr: usize, size: usize, on: bool) {
        let (first, last) = (self.granule(addr), self.granule(addr + size - GRANULE));
        self.starts.set(first, on);
        self.ends.set(last, on);
    }

    /// The size of the live block starting at `addr`, if one does.
    pub(super) fn block_size(&self, addr: usize) -> Option<usize> {
        let first = self.granule(addr);
        if !self.starts.get(first) {
            return None;
        }
        let last = self.ends.first_at_or_after(first)?;
        Some(self.base + last * GRANULE + GRANULE - addr)
    }

    /// The last block start at or before `addr` (in this region).
    pub(super) fn start_at_or_before(&self, addr: usize) -> Option<usize> {
        let start = self.starts.last_at_or_before(self.granule(addr))?;
        Some(self.base + start * GRANULE)
    }

    /// Opens the free pages `first..first + count` for `batch`.
    pub(super) fn open(&mut self, first: usize, count: usize, batch: u64) {
        for page in &mut self.pages[first..first + count] {
            page.state = PageState::Open(batch);
        }
        set_bits(&mut self.free, first..first + count, false);
        self.used += count;
    }

    /// Seals the open pages `first..first + count` (their protection already changed); trap
    /// pages among them stop counting as used.
    pub(super) fn seal(&mut self, first: usize, count: usize) {
        for i in first..first + count {
            self.pages[i].state = PageState::Sealed;
            if self.pages[i].trap {
                self.used -= 1;
                set_bits(&mut self.traps, i..i + 1, true);
            }
            if self.pages[i].kind == MemoryKind::Code {
                set_bits(&mut self.code, i..i + 1, true);
            }
        }
    }

    /// Marks the pages `first..first + count` (sealed, or open and empty) as being released
    /// (their protection change is under way outside the lock). An open page takes
    /// `open_kind`, the kind whose sealed protection is the open one: should the change fail,
    /// the page is booked sealed with the protection it really has.
    pub(super) fn begin_release(&mut self, first: usize, count: usize, open_kind: MemoryKind) {
        for page in &mut self.pages[first..first + count] {
            if matches!(page.state, PageState::Open(_)) {
                page.kind = open_kind;
            }
            page.state = PageState::Releasing;
        }
        set_bits(&mut self.code, first..first + count, false);
    }

    /// Marks the pages `first..first + count`, whose release failed, sealed again: they hold
    /// nothing (not even a trap page's guard) and wait for `trim` to retry.
    pub(super) fn release_failed(&mut self, first: usize, count: usize) {
        for i in first..first + count {
            let page = &mut self.pages[i];
            page.state = PageState::Sealed;
            page.trap = false;
            if page.kind == MemoryKind::Code {
                set_bits(&mut self.code, i..i + 1, true);
            }
        }
    }

    /// Makes the pages `first..first + count` free again (`dirty`: still holding old bytes).
    pub(super) fn release(&mut self, first: usize, count: usize, dirty: bool) {
        let mut traps = 0;
        for page in &mut self.pages[first..first + count] {
            traps += usize::from(page.is_sealed_trap());
            *page = Page { dirty, ..Page::FREE };
        }
        self.used -= count - traps;
        set_bits(&mut self.free, first..first + count, true);
        set_bits(&mut self.traps, first..first + count, false);
        set_bits(&mut self.code, first..first + count, false);
    }

    /// Whether the page bitmaps agree with the pages' states (checked in debug builds).
    pub(super) fn bitmaps_agree(&self) -> bool {
        self.pages.iter().enumerate().all(|(i, p)| {
            let bit = |bits: &[u64]| bits[i / 64] >> (i % 64) & 1 == 1;
            bit(&self.free) == (p.state == PageState::Free)
                && bit(&self.traps) == p.is_sealed_trap()
                && bit(&self.code) == (p.state == PageState::Sealed && p.kind == MemoryKind::Code)
        })
    }

    /// How many pages from `first` on are free, counting up to `limit`.
    pub(super) fn free_run_from(&self, first: usize, limit: usize) -> usize {
        ones_from(&self.free, first, limit)
    }

    /// The sealed trap pages that guard no code: the page after them is free, or they end the
    /// region.
    pub(super) fn idle_traps(&self) -> Vec<usize> {
        let mut idle = Vec::new();
        let mut from = 0;
        while let Some(trap) = next_one(&self.traps, from) {
            if trap + 1 == self.pages.len() || ones_from(&self.free, trap + 1, 1) == 1 {
                idle.push(trap);
            }
            from = trap + 1;
        }
        idle
    }

    /// The first page of `count` free pages right after a sealed code page (a trap page or
    /// code), starting at a multiple of `align`.
    pub(super) fn anchored_run(&self, count: usize, align: usize, page: usize) -> Option<usize> {
        for (w, &code) in self.code.iter().enumerate() {
            // Sealed code pages whose next page is free.
            let next_free = (self.free[w] >> 1) | self.free.get(w + 1).map_or(0, |next| next << 63);
            let mut candidates = code & next_free;
            while candidates != 0 {
                let first = w * 64 + candidates.trailing_zeros() as usize + 1;
                candidates &= candidates - 1;
                let aligned = (self.base + first * page) & (align - 1) == 0;
                if aligned && ones_from(&self.free, first, count) == count {
                    return Some(first);
                }
            }
        }
        None
    }

    /// The first page of the first `count` free pages starting at a multiple of `align` with
    /// `lead` more free pages before them (a lead page becomes the run's trap page).
    pub(super) fn first_fit(&self, count: usize, align: usize, lead: usize, page: usize) -> Option<usize> {
        let mut from = 0;
        // Each stretch of free pages is `start..end`.
        while let Some(start) = next_one(&self.free, from) {
            let end = start + ones_from(&self.free, start, usize::MAX);
            let addr = self.base + (start + lead) * page;
            let first = align_up(addr, align).map(|aligned| (aligned - self.base) / page)?;
            if first.checked_add(count).is_some_and(|stop| stop <= end) {
                debug_assert!(self.pages[first - lead..first + count]
                    .iter()
                    .all(|p| p.state == PageState::Free));
                return Some(first);
            }
            from = end;
        }
        None
    }
}

impl Region {
    /// The first page of the highest `count` free pages from page `min` on, starting at a
    /// multiple of `align`: data goes at the top of a region, code at its bottom, so that each
    /// kind's pages stay together in a few kernel mappings.
    pub(super) fn last_fit(&self, count: usize, align: usize, min: usize, page: usize) -> Option<usize> {
        let mut below = self.pages.len();
        // Each stretch of free pages is `start..stop`, from the top down.
        while let Some(last) = prev_one(&self.free, below) {
            let stop = last + 1;
            let start = stop - ones_before(&self.free, stop);
            let lowest = start.max(min);
            if let Some(top) = stop.checked_sub(count).filter(|&top| top >= lowest) {
                let aligned = (self.base + top * page) & !(align - 1);
                if aligned >= self.base + lowest * page {
                    let first = (aligned - self.base) / page;
                    debug_assert!(self.pages[first..first + count]
                        .iter()
                        .all(|p| p.state == PageState::Free));
                    return Some(first);
                }
            }
            if start <= min {
                return None;
            }
            below = start;
        }
        None
    }
}

/// Sets (`on`) or clears the bits `range` of `bits`.
fn set_bits(bits: &mut [u64], range: core::ops::Range<usize>, on: bool) {
    let mut i = range.start;
    while i < range.end {
        let (word, bit) = (i / 64, i % 64);
        let n = (64 - bit).min(range.end - i);
        let mask = (u64::MAX >> (64 - n)) << bit;
        if on {
            bits[word] |= mask;
        } else {
            bits[word] &= !mask;
        }
        i += n;
    }
}

/// The number of consecutive set bits of `bits` from bit `from` on, counting up to `limit`.
fn ones_from(bits: &[u64], from: usize, limit: usize) -> usize {
    let mut count = 0;
    let mut i = from;
    while count < limit {
        let Some(&word) = bits.get(i / 64) else { break };
        // The shift brings in zeros: the run stops at the word's end at the latest.
        let ones = (word >> (i % 64)).trailing_ones() as usize;
        count += ones;
        if i % 64 + ones != 64 {
            // The run stopped inside the word.
            break;
        }
        i += ones;
    }
    count.min(limit)
}

/// The first set bit of `bits` at or after `from`.
fn next_one(bits: &[u64], from: usize) -> Option<usize> {
    let mut w = from / 64;
    let mut word = bits.get(w)? & (u64::MAX << (from % 64));
    loop {
        if word != 0 {
            return Some(w * 64 + word.trailing_zeros() as usize);
        }
        w += 1;
        word = *bits.get(w)?;
    }
}

/// The last set bit of `bits` before bit `end`.
fn prev_one(bits: &[u64], end: usize) -> Option<usize> {
    let mut w = end / 64;
    let mut word = if end % 64 == 0 { 0 } else { bits.get(w)? & (u64::MAX >> (64 - end % 64)) };
    loop {
        if word != 0 {
            return Some(w * 64 + 63 - word.leading_zeros() as usize);
        }
        w = w.checked_sub(1)?;
        word = *bits.get(w)?;
    }
}

/// How many consecutive set bits of `bits` end right before bit `end`.
fn ones_before(bits: &[u64], end: usize) -> usize {
    let mut count = 0;
    let mut i = end;
    while i > 0 {
        // Bits `0..used` of word `w` lie below `i`; shifted up, they lead the word (the shift
        // brings in zeros below them: the run stops at `used` at the most).
        let (w, used) = ((i - 1) / 64, (i - 1) % 64 + 1);
        let Some(&word) = bits.get(w) else { break };
        let ones = (word << (64 - used)).leading_ones() as usize;
        count += ones;
        if ones < used {
            break;
        }
        i -= ones;
    }
    count
}

#[cfg(test)]
#[path = "region_unit_tests.rs"]
mod tests;
