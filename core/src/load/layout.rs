//! Where the parts of a module's image go, worked out (overflow-checked) before anything is
//! allocated: `[code | stubs] [rodata | GOT] [data | bss]`, with room for as many stubs and GOT
//! slots as the module can need (the relocation pass hands them out). With
//! [`ReadOnlyData::WithCode`] the first two share the code segment; otherwise each part is a
//! segment of its own. Every segment starts at a multiple of the largest data alignment.

use super::{LoadError, ReadOnlyData, STUB_SIZE};
use crate::exec::MemoryKind;
use crate::Module;

/// Bytes of one GOT slot.
const GOT_SLOT: usize = 8;

/// The offsets and lengths of one module's image.
#[derive(Clone, Copy, Debug)]
pub(super) struct Layout {
    /// Bytes of code (all code sections).
    pub(super) code_size: usize,
    /// Offset of the stub area in the code segment.
    pub(super) stub_start: usize,
    /// Bytes of code plus the stub area after it (the code segment before any rodata).
    pub(super) code_and_stubs_len: usize,
    /// Offset of the GOT in the read-only region.
    pub(super) got_start: usize,
    /// GOT slots there is room for.
    pub(super) got_slots: usize,
    /// Read-only data and GOT room.
    pub(super) ro_len: usize,
    /// Writable data and bss.
    pub(super) rw_len: usize,
    /// The largest alignment a data section asks for.
    pub(super) data_align: usize,
    /// Offset of the read-only region in the code segment, when it shares the code's pages.
    ro_in_code: Option<usize>,
}

impl Layout {
    /// The layout of `module` with room for `stubs` branch stubs and `gots` GOT slots.
    pub(super) fn new(
        module: &Module<'_>,
        stubs: usize,
        gots: usize,
        read_only_data: ReadOnlyData,
    ) -> Result<Self, LoadError> {
        let size = |v: u64| usize::try_from(v).map_err(|_| LoadError::TooLarge);
        let code_size = size(module.code_size())?;
        let stub_start = align_up(code_size, STUB_SIZE)?;
        let code_and_stubs_len = if stubs == 0 { code_size } else { after(stub_start, stubs, STUB_SIZE)? };
        let ro_size = size(module.read_only_size())?;
        let got_start = align_up(ro_size, GOT_SLOT)?;
        let ro_len = if gots == 0 { ro_size } else { after(got_start, gots, GOT_SLOT)? };
        // Data sections lie at multiples of their alignment from their region's start.
        let data_align = size(module.data_alignment())?;
        let ro_in_code = match read_only_data {
            ReadOnlyData::WithCode if ro_len > 0 => {
                Some(align_up(code_and_stubs_len, data_align.max(GOT_SLOT))?)
            }
            _ => None,
        };
        let rw_len = size(module.read_write_size())?;
        Ok(Layout {
            code_size,
            stub_start,
            code_and_stubs_len,
            got_start,
            got_slots: gots,
            ro_len,
            rw_len,
            data_align,
            ro_in_code,
        })
    }

    /// The layout of `module` with room for `stubs` branch stubs and as many GOT slots as it
    /// can need. Room for a slot per symbol is taken when it fits in the pages the image needs
    /// anyway (the tail of the page the read-only data ends in, usually), which spares
    /// counting the GOT-relative relocations ([`super::link::got_bound`], a pass over all
    /// relocations); otherwise they are counted.
    pub(super) fn with_got_room(
        module: &Module<'_>,
        stubs: usize,
        page: usize,
        read_only_data: ReadOnlyData,
    ) -> Result<Self, LoadError> {
        let symbols = module.symbol_count() as usize;
        let roomy = Layout::new(module, stubs, symbols, read_only_data)?;
        if symbols == 0 || roomy.pages(page)? == Layout::new(module, stubs, 0, read_only_data)?.pages(page)? {
            return Ok(roomy);
        }
        Layout::new(module, stubs, super::link::got_bound(module)?, read_only_data)
    }

    /// Pages the image takes.
    fn pages(&self, page: usize) -> Result<usize, LoadError> {
        let unit = self.data_align.max(page);
        self.segments()?.iter().try_fold(0, |total: usize, &(len, _)| {
            total.checked_add(align_up(len, unit)? / page).ok_or(LoadError::TooLarge)
        })
    }

    /// Whether the image has no bytes at all.
    pub(super) const fn is_empty(&self) -> bool {
        self.code_and_stubs_len == 0 && self.ro_len == 0 && self.rw_len == 0
    }

    /// The segments to ask the allocator for: code, read-only, writable (an empty one gets no
    /// block).
    pub(super) fn segments(&self) -> Result<[(usize, MemoryKind); 3], LoadError> {
        Ok(match self.ro_in_code {
            Some(offset) => [
                (after(offset, 1, self.ro_len)?, MemoryKind::Code),
                (0, MemoryKind::ReadOnly),
                (self.rw_len, MemoryKind::ReadWrite),
            ],
            None => [
                (self.code_and_stubs_len, MemoryKind::Code),
                (self.ro_len, MemoryKind::ReadOnly),
                (self.rw_len, MemoryKind::ReadWrite),
            ],
        })
    }

    /// The read-only region's address, given where the code segment and the read-only segment
    /// (if it has one of its own) were placed.
    pub(super) fn read_only_base(&self, code_base: usize, ro_segment: usize) -> Result<usize, LoadError> {
        match self.ro_in_code {
            Some(offset) => code_base.checked_add(offset).ok_or(LoadError::TooLarge),
            None => Ok(ro_segment),
        }
    }
}

/// `start` plus `count` items of `size` bytes.
fn after(start: usize, count: usize, size: usize) -> Result<usize, LoadError> {
    count.checked_mul(size).and_then(|n| start.checked_add(n)).ok_or(LoadError::TooLarge)
}

/// `value` rounded up to a multiple of `align` (a power of two).
fn align_up(value: usize, align: usize) -> Result<usize, LoadError> {
    crate::bytes::align_up(value, align).ok_or(LoadError::TooLarge)
}
