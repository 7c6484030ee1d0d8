//! The open batches, by id: a vector in id order (ids only grow, so a new batch goes at the
//! end), searched by bisection. A handful are open at once (one per load in progress), so this
//! is smaller and no slower than a tree map.

use alloc::vec::Vec;

/// A batch's bookkeeping.
#[derive(Debug)]
pub(super) struct Batch {
    /// Whether its seal's protection changes are being made (outside the lock): its pages
    /// are left alone until the seal is finished.
    pub(super) sealing: bool,
    /// Whether each new run it opens takes clean pages ahead ([`super::State::place`]).
    pub(super) opens_ahead: bool,
    /// Next free byte of the current run.
    pub(super) cursor: usize,
    /// End of the current run (0 before the first allocation).
    pub(super) end: usize,
    /// Next free byte of the current data run (a batch of many packs its images' writable
    /// data there).
    pub(super) data_cursor: usize,
    /// End of the current data run (0 before the first).
    pub(super) data_end: usize,
    /// Every run of pages this batch opened: (start, length in bytes), for blocks and for
    /// module data.
    pub(super) runs: Vec<(usize, usize)>,
}

impl Batch {
    /// The run its cursor is in (the one ending at `end`; the runs opened for module data since
    /// may follow it in `runs`).
    pub(super) fn current_run(&self) -> Option<&(usize, usize)> {
        self.runs.iter().rev().find(|&&(start, len)| start + len == self.end)
    }

    /// Whether the page `start..end` lies in the batch's room for more blocks: after the
    /// cursor of its current run or of its current data run.
    pub(super) fn has_room_in(&self, start: usize, end: usize) -> bool {
        let inside = |(cursor, stop): (usize, usize)| end > cursor && start < stop;
        inside((self.cursor, self.end)) || inside((self.data_cursor, self.data_end))
    }

    /// [`Batch::current_run`], to grow.
    pub(super) fn current_run_mut(&mut self) -> Option<&mut (usize, usize)> {
        let end = self.end;
        self.runs.iter_mut().rev().find(|&&mut (start, len)| start + len == end)
    }
}

/// Open batches in id order.
#[derive(Debug, Default)]
pub(super) struct Batches(Vec<(u64, Batch)>);

impl Batches {
    /// Adds a new batch; `id` is larger than every id added before.
    pub(super) fn begin(&mut self, id: u64, opens_ahead: bool) {
        debug_assert!(self.0.last().is_none_or(|&(last, _)| last < id));
        let batch = Batch {
            sealing: false,
            opens_ahead,
            cursor: 0,
            end: 0,
            data_cursor: 0,
            data_end: 0,
            runs: Vec::new(),
        };
        self.0.push((id, batch));
    }

    fn position(&self, id: u64) -> Option<usize> {
        self.0.binary_search_by_key(&id, |&(i, _)| i).ok()
    }

    /// The open batch `id`.
    pub(super) fn get(&self, id: u64) -> Option<&Batch> {
        self.position(id).map(|i| &self.0[i].1)
    }

    /// The open batch `id`, to change.
    pub(super) fn get_mut(&mut self, id: u64) -> Option<&mut Batch> {
        self.position(id).map(|i| &mut self.0[i].1)
    }

    /// Whether batch `id` is open.
    pub(super) fn contains(&self, id: u64) -> bool {
        self.position(id).is_some()
    }

    /// Ends batch `id`, handing back its bookkeeping.
    pub(super) fn remove(&mut self, id: u64) -> Option<Batch> {
        self.position(id).map(|i| self.0.remove(i).1)
    }

    /// Forgets every batch's runs inside `range` (a region being unmapped: they hold no page
    /// any more); a batch whose current run was there starts a new one at its next block. (A
    /// data run needs no reset: its pages after its cursor stay open, so its region empties
    /// only once it is used up, and a used-up data run is never grown: the next image's data
    /// opens a new one.)
    pub(super) fn forget_range(&mut self, range: core::ops::Range<usize>) {
        for (_, batch) in &mut self.0 {
            batch.runs.retain(|&(start, _)| !range.contains(&start));
            if batch.end > range.start && batch.end <= range.end {
                (batch.cursor, batch.end) = (0, 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Batch, Batches};

    #[test]
    fn batches_are_found_by_id_after_others_end() {
        let mut batches = Batches::default();
        for id in [1, 2, 5, 9] {
            batches.begin(id, false);
        }
        batches.get_mut(5).unwrap().cursor = 50;
        assert!(batches.remove(2).is_some());
        assert!(batches.remove(2).is_none());
        assert!(!batches.contains(2) && batches.contains(1) && batches.contains(9));
        assert_eq!(batches.get(5).map(|b| b.cursor), Some(50));
        assert!(batches.get(3).is_none());
        batches.begin(10, true);
        let ids: alloc::vec::Vec<u64> = batches.0.iter().map(|&(id, _)| id).collect();
        assert_eq!(ids, [1, 5, 9, 10]);
    }

    #[test]
    fn a_batch_s_room_is_what_lies_after_each_cursor_up_to_its_run_s_end() {
        let mut batches = Batches::default();
        batches.begin(1, true);
        let batch = batches.get_mut(1).unwrap();
        (batch.cursor, batch.end, batch.data_cursor, batch.data_end) = (0x1800, 0x3000, 0x9000, 0xA000);
        let page = |batch: &Batch, start: usize| batch.has_room_in(start, start + 0x1000);
        assert!(page(batch, 0x1000) && page(batch, 0x2000), "the cursor's page and the next");
        assert!(!page(batch, 0x0000) && !page(batch, 0x3000), "before the cursor, at the run's end");
        assert!(!batch.has_room_in(0x800, 0x1800), "bytes ending at the cursor");
        assert!(page(batch, 0x9000) && !page(batch, 0x8000) && !page(batch, 0xA000), "the data run's");
        (batch.data_cursor, batch.data_end) = (0, 0);
        assert!(!page(batch, 0x0000), "no data run yet: no room at the bottom");
    }
}
