//! Placing module images' data at the top of regions: read-only segments (and every data
//! segment outside a batch of many) in whole pages of their own, and in a batch of many the
//! writable segments packed one after another in a data run that the batch opens with room
//! for more, so that many small modules share data pages as they share code pages.

use super::*;

impl State {
    /// Opens `size` bytes (whole pages) of data at the top of a region for `batch`, starting at
    /// a multiple of `align` (at least a page), the first `overwritten` bytes left for the
    /// caller to write; returns the address. With `above`, in region `above.0` from page
    /// `above.1` on (room its caller made sure of).
    pub(super) fn place_data(
        &mut self,
        batch: u64,
        size: usize,
        align: usize,
        overwritten: usize,
        above: Option<(usize, usize)>,
    ) -> Result<usize, ExecError> {
        let page = self.page;
        let (r, first) = match above {
            Some((r, min)) => {
                let first = self.regions[r].last_fit(size / page, align, min, page);
                (r, first.ok_or(ExecError::TooLarge { size })?)
            }
            None => self.find_data_run(size, align)?,
        };
        Ok(self.open_data_run(batch, r, first, size / page, overwritten.min(size))?.start)
    }

    /// Opens `count` pages from page `first` of region `r` for `batch` as a run of data, the
    /// first `overwritten` bytes left for the caller to write; returns its bytes.
    fn open_data_run(
        &mut self,
        batch: u64,
        r: usize,
        first: usize,
        count: usize,
        overwritten: usize,
    ) -> Result<core::ops::Range<usize>, ExecError> {
        let (start, len) = (self.regions[r].base + first * self.page, count * self.page);
        let b = self.batches.get_mut(batch).ok_or(ExecError::UnknownBatch)?;
        b.runs.try_reserve(1).map_err(|_| ExecError::TooLarge { size: len })?;
        self.open_pages(r, first, count, batch, &(start..start + overwritten))?;
        let b = self.batches.get_mut(batch).ok_or(ExecError::UnknownBatch)?;
        b.runs.push((start, len));
        Ok(start..start + len)
    }

    /// Finds (or reserves) `size` bytes of free pages at the top of a region, starting at a
    /// multiple of `align`: (region, first page). Idle trap pages are reclaimed before a new
    /// region is reserved.
    fn find_data_run(&mut self, size: usize, align: usize) -> Result<(usize, usize), ExecError> {
        let (page, count) = (self.page, size / self.page);
        let last_fit = |state: &State| {
            (0..state.regions.len())
                .find_map(|r| state.regions[r].last_fit(count, align, 0, page).map(|first| (r, first)))
        };
        let mut found = last_fit(self);
        if found.is_none() && self.reclaim_idle_traps()? {
            found = last_fit(self);
        }
        if let Some(found) = found {
            return Ok(found);
        }
        let wanted = size.checked_add(align - page).ok_or(ExecError::TooLarge { size })?;
        let len = align_up(wanted.max(self.config.region_size.min(MAX_REGION)), page)
            .ok_or(ExecError::TooLarge { size: wanted })?;
        let base = self.kernel.reserve(len)? as usize;
        self.regions.push(Region::new(base, len, page));
        let r = self.regions.len() - 1;
        let first = self.regions[r].last_fit(count, align, 0, page).ok_or(ExecError::TooLarge { size })?;
        Ok((r, first))
    }

    /// Places `size` bytes (a multiple of `align`) of a module image's writable data in
    /// `batch`'s data run at a multiple of `align`, zeroed where recycled; returns the
    /// address. The run lies in region `above.0` (the code's), a new one from page `above.1`
    /// on (room its caller made sure of, at a multiple of `run_align`). A new run opens the
    /// clean free pages after the block too (up to [`NEW_RUN_AHEAD`]) for the batch's next
    /// images' data; what is left unused goes back at the seal, clean, with no syscall.
    pub(super) fn place_packed_data(
        &mut self,
        batch: u64,
        size: usize,
        align: usize,
        run_align: usize,
        above: (usize, usize),
    ) -> Result<usize, ExecError> {
        let too_large = ExecError::TooLarge { size };
        let (r, min) = above;
        let b = self.batches.get(batch).ok_or(ExecError::UnknownBatch)?;
        if b.data_end != 0 {
            let start = align_up(b.data_cursor, align).ok_or(too_large)?;
            let stop = start.checked_add(size).ok_or(too_large)?;
            if stop <= b.data_end && self.region_of(start) == Some(r) {
                let b = self.batches.get_mut(batch).ok_or(ExecError::UnknownBatch)?;
                b.data_cursor = stop;
                return Ok(start);
            }
        }
        let page = self.page;
        let count = align_up(size, page).ok_or(too_large)? / page;
        let (first, ahead) = self.data_run_with_room(r, count, run_align, min).ok_or(too_large)?;
        let run = self.open_data_run(batch, r, first, count + ahead, 0)?;
        let b = self.batches.get_mut(batch).ok_or(ExecError::UnknownBatch)?;
        (b.data_cursor, b.data_end) = (run.start + size, run.end);
        Ok(run.start)
    }

    /// The highest `count` free pages of region `r` from page `min` on at a multiple of
    /// `align`, preferring a place with room for [`NEW_RUN_AHEAD`] more after them: (first
    /// page, how many clean free pages follow them there, up to that many).
    fn data_run_with_room(&self, r: usize, count: usize, align: usize, min: usize) -> Option<(usize, usize)> {
        let region = &self.regions[r];
        if self.open_protection() == FREE_PROTECTION {
            if let Some(first) = region.last_fit(count + NEW_RUN_AHEAD, align, min, self.page) {
                let after = region.pages.get(first + count..).unwrap_or_default().iter().take(NEW_RUN_AHEAD);
                return Some((first, after.take_while(|p| !p.dirty).count()));
            }
        }
        // Opening pages ahead would cost a protection change, and so would giving them back.
        region.last_fit(count, align, min, self.page).map(|first| (first, 0))
    }
}
