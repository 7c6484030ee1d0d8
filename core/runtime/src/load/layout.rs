//! Where the parts of a module's image go, worked out (overflow-checked) before anything is
//! allocated: `[code | stubs] [rodata | GOT] [data | bss]`, with room for as many stubs and GOT
//! slots as the module can need (the relocation stage hands them out). With
//! [`ReadOnlyData::WithCode`] (always, for a module linked for the format's linked layout) the
//! first two share the code segment, the read-only data where `smf_format::module::linked`
//! says; otherwise each part is a segment of its own. Every segment starts at a multiple of the largest alignment a section asks
//! for.

use super::relocate::{GOT_SLOT, STUB_SIZE};
use super::{LoadError, Overflow, ReadOnlyData};
use crate::exec::MemoryKind;
use smf_format::module::{linked, ModuleSymbols, ModuleTables};
use smf_format::ModuleFlags;

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
    /// What the image starts at a multiple of: the largest alignment a section asks for.
    pub(super) image_align: usize,
    /// Offset of the read-only region in the code segment, when it shares the code's pages.
    ro_in_code: Option<usize>,
}

impl Layout {
    /// The layout of a module with `module`'s tables, with room for `stubs` branch stubs and
    /// `gots` GOT slots.
    pub(super) fn new(
        module: &ModuleTables<'_>,
        stubs: usize,
        gots: usize,
        read_only_data: ReadOnlyData,
    ) -> Result<Self, LoadError> {
        let size = |v: u64, what| usize::try_from(v).map_err(|_| LoadError::too_large(what));
        let code = Overflow::CodeSize;
        let code_size = size(module.code_size(), code)?;
        let stub_start = align_up(code_size, STUB_SIZE, code)?;
        let code_and_stubs_len =
            if stubs == 0 { code_size } else { after(stub_start, stubs, STUB_SIZE, code)? };
        let read_only = Overflow::ReadOnlySize;
        let ro_size = size(module.read_only_size(), read_only)?;
        let got_start = align_up(ro_size, GOT_SLOT, read_only)?;
        let ro_len = if gots == 0 { ro_size } else { after(got_start, gots, GOT_SLOT, read_only)? };
        // Data sections lie at multiples of their alignment from their region's start.
        let data_align = size(module.data_alignment(), Overflow::DataAlignment)?;
        // Where the format's linked layout puts it: a module linked for it has its distances
        // from the code written into its bytes.
        let ro_in_code = match read_only_data {
            ReadOnlyData::WithCode if ro_len > 0 => Some(
                linked::read_only_offset(module.code_size(), stubs as u64, data_align as u64)
                    .and_then(|offset| usize::try_from(offset).ok())
                    .ok_or_else(|| LoadError::too_large(Overflow::CodeSegment))?,
            ),
            _ => None,
        };
        let rw_len = size(module.read_write_size(), Overflow::WritableSize)?;
        let image_align = data_align.max(size(module.code_alignment(), Overflow::CodeAlignment)?);
        Ok(Layout {
            code_size,
            stub_start,
            code_and_stubs_len,
            got_start,
            got_slots: gots,
            ro_len,
            rw_len,
            image_align,
            ro_in_code,
        })
    }

    /// The plan stage of a load: the layout of `module` (its symbols decoded, its relocations
    /// not yet) with room for the branch stubs and GOT slots it can need: a stub per import
    /// (only branches to imports go through stubs) and a GOT slot per relocation whose kind
    /// needs one, never more than one per symbol (a slot is per symbol).
    /// A module linked for the format's linked layout keeps its read-only data (and its GOT)
    /// with its code whatever `read_only_data` asks: its code reaches them at fixed distances;
    /// one linked to its imports has a GOT slot pinned to each, before those relocations ask
    /// for.
    pub(super) fn plan(module: &ModuleSymbols<'_>, read_only_data: ReadOnlyData) -> Result<Self, LoadError> {
        let tables = module.tables();
        let flags = tables.header().flags;
        let read_only_data =
            if flags.intersects(ModuleFlags::LINKED) { ReadOnlyData::WithCode } else { read_only_data };
        let stubs = module.import_count() as usize;
        let gots = tables.got_relocation_count().min(u64::from(tables.symbol_count()));
        // A module linked to its imports has the first slots pinned, one per import.
        let pinned = if flags.contains(ModuleFlags::LINKED_IMPORTS) { module.import_count() } else { 0 };
        let gots = usize::try_from(gots)
            .ok()
            .and_then(|gots| gots.checked_add(pinned as usize))
            .ok_or_else(|| LoadError::too_large(Overflow::GotSize))?;
        Layout::new(tables, stubs, gots, read_only_data)
    }

    /// Where the read-only region starts in the code segment, when it shares the code's pages.
    pub(super) const fn read_only_in_code(&self) -> Option<usize> {
        self.ro_in_code
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
                (after(offset, 1, self.ro_len, Overflow::CodeSegment)?, MemoryKind::Code),
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
            Some(offset) => {
                code_base.checked_add(offset).ok_or_else(|| LoadError::too_large(Overflow::ReadOnlyAddress))
            }
            None => Ok(ro_segment),
        }
    }
}

/// `start` plus `count` items of `size` bytes; if it overflows, `what` did not fit.
fn after(start: usize, count: usize, size: usize, what: Overflow) -> Result<usize, LoadError> {
    count.checked_mul(size).and_then(|n| start.checked_add(n)).ok_or_else(|| LoadError::too_large(what))
}

/// `value` rounded up to a multiple of `align` (a power of two); if it overflows, `what` did
/// not fit.
fn align_up(value: usize, align: usize, what: Overflow) -> Result<usize, LoadError> {
    smf_format::align_up(value, align).ok_or_else(|| LoadError::too_large(what))
}
