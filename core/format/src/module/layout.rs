//! The data image's layout: each data section at the next multiple of its alignment in its
//! region (read-only or read-write).

use super::*;

/// Running layout of the data image: each section at the next multiple of its alignment in its
/// region, in table order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DataLayout {
    /// Bytes of the read-only region so far.
    pub(crate) read_only: u64,
    /// Bytes of the read-write region so far.
    pub(crate) read_write: u64,
    /// The largest alignment placed so far.
    pub(crate) alignment: u64,
}

impl Default for DataLayout {
    fn default() -> Self {
        Self { read_only: 0, read_write: 0, alignment: 1 }
    }
}

impl DataLayout {
    /// Where the writable region starts in the data image, the space data relocation offsets
    /// are in: the read-only size rounded up to the largest alignment; `None` on overflow.
    pub(crate) fn writable_start(&self) -> Option<u64> {
        self.read_only.checked_next_multiple_of(self.alignment.max(1))
    }

    /// Places `section`, returning its region and offset; `None` on a bad alignment or overflow.
    pub(super) fn place(&mut self, section: &Section<'_>) -> Option<(DataRegion, u64)> {
        self.place_raw(section.section_type, section.alignment, section.virtual_size)
    }

    /// Places a data section of `section_type` with `alignment` and `virtual_size` bytes
    /// ([`DataLayout::place`], for a writer that has no [`Section`]).
    pub(crate) fn place_raw(
        &mut self,
        section_type: SectionType,
        alignment: u64,
        virtual_size: u64,
    ) -> Option<(DataRegion, u64)> {
        if !alignment_ok(alignment) {
            return None;
        }
        let align = alignment.max(1);
        let (region, cursor) = match section_type {
            SectionType::RoData => (DataRegion::ReadOnly, &mut self.read_only),
            _ => (DataRegion::ReadWrite, &mut self.read_write),
        };
        let offset = cursor.checked_add(align - 1)? & !(align - 1);
        *cursor = offset.checked_add(virtual_size)?;
        self.alignment = self.alignment.max(align);
        Some((region, offset))
    }
}
