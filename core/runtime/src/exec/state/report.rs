//! What the allocator reports: page protections, reserved regions, statistics.

use super::*;

impl State {
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

    pub(crate) fn stats(&self) -> AllocatorStats {
        let mut stats = AllocatorStats {
            blocks_live: self.blocks_live,
            bytes_live: self.bytes_live,
            pages_recycled: self.dirty_pages,
            regions: self.regions.len(),
            protection_changes: self.protection_changes,
            patches: self.patches,
            ..AllocatorStats::default()
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
