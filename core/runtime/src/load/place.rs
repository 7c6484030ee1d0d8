//! The allocate and place stages of a load: the image's blocks taken from the batch as the
//! [`Layout`] plans them ([`Image::allocate`]), each data section copied to its place
//! ([`Image::place_data`]), and the code copied into its still-writable block
//! ([`Image::copy_code`]), where the relocation stage patches it.

use alloc::vec::Vec;

use super::layout::Layout;
use super::{fallible, Invariant, LoadError, Overflow};
use crate::exec::{Block, CodeBatch};
use core::ops::Range;

use super::mapped::Mappable;
use crate::sys::OpenFile;
use smf_format::compress::Payload;
use smf_format::module::{DataRegion, ModuleTables};

/// Code-section tails (the zeros between a section's bytes and its virtual size) up to this
/// many bytes in all are written by the loader (all of them when the code is no larger, which
/// spares counting them); larger ones are left to zero pages.
const WRITTEN_TAILS: u64 = 64 << 10;

/// A module's image while it is being built: its blocks (open in the load's batch) and where
/// each region starts.
#[derive(Debug)]
pub(super) struct Image<'a> {
    /// The code segment: code, stubs and, with [`super::ReadOnlyData::WithCode`], the
    /// read-only region.
    pub(super) code: Option<Block<'a>>,
    /// The read-only segment, when the read-only region has one of its own.
    pub(super) read_only: Option<Block<'a>>,
    /// The writable segment (data and bss).
    pub(super) read_write: Option<Block<'a>>,
    /// Address of the code (0 without code).
    pub(super) code_base: usize,
    /// Address of the read-only region.
    pub(super) read_only_base: usize,
    /// Address of the writable region.
    pub(super) read_write_base: usize,
    /// Whether the zeros after each code section's bytes are written by [`Image::copy_code`]
    /// (otherwise the allocator hands the code's pages out zeroed).
    zero_tails: bool,
    /// Where the read-only region starts in the code block when the loader writes all of it
    /// (its sections' bytes by [`Image::place_data`], the stub room before it and the zeros
    /// between and after its sections by [`Image::copy_code`]), so that the allocator need not
    /// zero it first; `None` when the allocator does.
    read_only_written: Option<usize>,
    /// The part of the code block mapped from the module's file ([`Image::map_code`]), which
    /// [`Image::copy_code`] leaves as it is.
    pub(super) mapped: Range<usize>,
}

impl<'a> Image<'a> {
    /// The allocate stage: the blocks `layout` plans for `module`, from `batch`.
    pub(super) fn allocate(
        batch: &mut CodeBatch<'a>,
        layout: &Layout,
        module: &ModuleTables<'_>,
        mapped: Range<usize>,
    ) -> Result<Self, LoadError> {
        // The code copy writes every byte of the code (sections and their zeroed tails), so
        // its pages need not be zeroed first, unless the tails are large: they are then left
        // to the allocator's zero pages, so a huge virtual size commits no memory.
        let zero_tails = module.code_size() <= WRITTEN_TAILS || code_tails(module) <= WRITTEN_TAILS;
        // The read-only region in the code's block likewise, unless its zeros are large.
        let read_only_written = layout
            .read_only_in_code()
            .filter(|_| zero_tails && read_only_gaps(module).is_some_and(|gaps| gaps <= WRITTEN_TAILS));
        let overwritten = match read_only_written {
            _ if !zero_tails => 0,
            Some(at) => usize::try_from(module.read_only_size())
                .ok()
                .and_then(|size| at.checked_add(size))
                .ok_or_else(|| LoadError::too_large(Overflow::CodeSegment))?,
            None => layout.code_size,
        };
        let (code, read_only, read_write) = if layout.is_empty() {
            (None, None, None)
        } else {
            let segments = layout.segments()?;
            let mut blocks =
                batch.alloc_module_image_mapping(&segments, overwritten, mapped, layout.image_align)?;
            let mut take = |i: usize| blocks.get_mut(i).and_then(Option::take);
            (take(0), take(1), take(2))
        };
        let base = |b: &Option<Block<'_>>| b.as_ref().map_or(0, Block::addr);
        let code_base = base(&code);
        let read_write_base = base(&read_write);
        let mut image = Image {
            code,
            read_only,
            read_write,
            code_base,
            read_only_base: 0,
            read_write_base,
            zero_tails,
            read_only_written,
            mapped: 0..0,
        };
        match layout.read_only_base(code_base, base(&image.read_only)) {
            Ok(at) => image.read_only_base = at,
            Err(error) => {
                image.scrub_code(batch);
                return Err(error);
            }
        }
        Ok(image)
    }

    /// Zeroes the code block (its batch still open) of an image whose load failed before its
    /// code was written and relocated in full: the allocator handed its bytes out unzeroed on
    /// the loader's promise to write them ([`CodeBatch::alloc_module_image`]'s `overwritten`).
    pub(super) fn scrub_code(&self, batch: &mut CodeBatch<'a>) {
        if let Some(bytes) = self.code.as_ref().and_then(|code| batch.block_mut(code).ok()) {
            bytes.fill(0);
        }
    }

    /// The place stage for data: copies every data section of `module` to its place in its
    /// region (the module's data layout).
    pub(super) fn place_data(
        &self,
        batch: &mut CodeBatch<'a>,
        module: &ModuleTables<'_>,
    ) -> Result<(), LoadError> {
        for placement in module.data_sections() {
            let (base, overflow) = match placement.region {
                DataRegion::ReadOnly => (self.read_only_base, Overflow::ReadOnlyAddress),
                DataRegion::ReadWrite => (self.read_write_base, Overflow::WritableAddress),
            };
            let addr = offset_from(base, placement.offset, overflow)?;
            let payload = module.payload(&placement.section);
            if !payload.is_empty() {
                let len = usize::try_from(placement.section.virtual_size)
                    .map_err(|_| LoadError::too_large(Overflow::DataOffset))?;
                let block = self.block_holding(addr, len, Invariant::DataOutsideImage)?;
                let place = batch.block_mut(block)?.get_mut(addr - block.addr()..);
                // The block holds the section's virtual size, which holds its payload.
                let place = place.ok_or_else(|| LoadError::internal(Invariant::DataOutsideImage))?;
                payload
                    .write_into(place)
                    .map_err(|problem| LoadError::Format(placement.section.decompression_error(problem)))?;
            }
        }
        Ok(())
    }

    /// The place stage for code: writes every code section's bytes, then zeros up to its
    /// virtual size (the sections lie back to back), into `code`, the code block's bytes.
    /// Maps what `planned` says of the code from `file`, the module's file (`mapped.rs`), into
    /// the code block; what could not be is copied by [`Image::copy_code`].
    pub(super) fn map_code(&mut self, batch: &mut CodeBatch<'a>, planned: &Mappable, file: &OpenFile) {
        if let Some(code) = self.code.as_ref() {
            self.mapped = super::mapped::map_code(batch, code, planned, file);
        }
    }

    pub(super) fn copy_code(&self, code: &mut [u8], module: &ModuleTables<'_>) -> Result<(), LoadError> {
        let mapped = self.mapped.clone();
        for (section, offset) in module.code_sections() {
            let too_large = |_| LoadError::too_large(Overflow::CodeSection);
            let at = usize::try_from(offset).map_err(too_large)?;
            let len = usize::try_from(section.virtual_size).map_err(too_large)?;
            // Validation keeps every code section inside the code, which the block holds, and
            // its bytes within its virtual size.
            let payload = module.payload(&section);
            let written = usize::try_from(payload.len()).map_err(too_large)?;
            let place = at
                .checked_add(len)
                .and_then(|end| code.get_mut(at..end))
                .filter(|place| place.len() >= written)
                .ok_or_else(|| LoadError::internal(Invariant::CodeSectionOutsideCode))?;
            match payload {
                // The part mapped from the file (`mapped.rs`: whole pages of raw bytes) is there.
                Payload::Raw(bytes) if mapped.start < at + written && at < mapped.end => {
                    let skip = mapped.start.max(at) - at..mapped.end.min(at + written) - at;
                    for part in [0..skip.start, skip.end..written] {
                        let (to, from) = (place.get_mut(part.clone()), bytes.get(part));
                        match (to, from) {
                            (Some(to), Some(from)) if to.len() == from.len() => to.copy_from_slice(from),
                            _ => return Err(LoadError::internal(Invariant::CodeSectionOutsideCode)),
                        }
                    }
                }
                _ => payload
                    .write_into(place)
                    .map_err(|problem| LoadError::Format(section.decompression_error(problem)))?,
            }
            if let (true, Some(tail)) = (self.zero_tails, place.get_mut(written..)) {
                tail.fill(0);
            }
        }
        if let Some(at) = self.read_only_written {
            zero_around_read_only_data(code, module, at)?;
        }
        Ok(())
    }

    /// The block holding `addr..addr+len`; if none does, `outside` is the broken invariant.
    pub(super) fn block_holding(
        &self,
        addr: usize,
        len: usize,
        outside: Invariant,
    ) -> Result<&Block<'a>, LoadError> {
        [&self.code, &self.read_only, &self.read_write]
            .into_iter()
            .filter_map(Option::as_ref)
            .find(|b| b.contains(addr, len))
            .ok_or_else(|| LoadError::internal(outside))
    }

    /// The image's blocks, to be kept by the loaded module.
    pub(super) fn into_blocks(self) -> Result<Vec<Block<'a>>, LoadError> {
        let mut blocks = fallible::with_capacity(3)
            .ok_or(LoadError::OutOfMemory { bytes: fallible::bytes_of::<Block<'_>>(3) })?;
        blocks.extend([self.code, self.read_only, self.read_write].into_iter().flatten());
        Ok(blocks)
    }
}

/// `base + offset`, an address inside the image; `overflow` says where, if it does not fit.
pub(super) fn offset_from(base: usize, offset: u64, overflow: Overflow) -> Result<usize, LoadError> {
    usize::try_from(offset)
        .ok()
        .and_then(|o| base.checked_add(o))
        .ok_or_else(|| LoadError::too_large(overflow))
}

/// Writes the zeros of `code` (a code block holding the read-only region at `at`) that
/// nothing else writes: from the end of the code to `at` (the stub room, whose unused stubs
/// stay zero), and the read-only region's bytes outside its sections' payloads (alignment
/// padding, tails up to virtual sizes); the payloads are [`Image::place_data`]'s.
fn zero_around_read_only_data(
    code: &mut [u8],
    module: &ModuleTables<'_>,
    at: usize,
) -> Result<(), LoadError> {
    let outside = || LoadError::internal(Invariant::DataOutsideImage);
    let size = |n: u64| usize::try_from(n).map_err(|_| outside());
    let mut zero = |from: usize, to: usize| code.get_mut(from..to).map(|gap| gap.fill(0)).ok_or_else(outside);
    zero(size(module.code_size())?, at)?;
    let end = at.checked_add(size(module.read_only_size())?).ok_or_else(outside)?;
    let mut cursor = at;
    // Read-only sections come in table order at increasing offsets (the data layout).
    for placement in module.data_sections().filter(|p| p.region == DataRegion::ReadOnly) {
        let start = at.checked_add(size(placement.offset)?).ok_or_else(outside)?;
        zero(cursor, start)?;
        cursor = start.checked_add(size(module.payload(&placement.section).len())?).ok_or_else(outside)?;
    }
    zero(cursor, end)
}

/// Bytes of the read-only region that are not its sections' payloads (padding, and tails up
/// to virtual sizes); `None` if they cannot be counted.
fn read_only_gaps(module: &ModuleTables<'_>) -> Option<u64> {
    let payloads = module
        .data_sections()
        .filter(|p| p.region == DataRegion::ReadOnly)
        .try_fold(0u64, |sum, p| sum.checked_add(module.payload(&p.section).len()))?;
    module.read_only_size().checked_sub(payloads)
}

/// Bytes of zeros between code sections' bytes and their virtual sizes.
fn code_tails(module: &ModuleTables<'_>) -> u64 {
    let written: u64 = module.code_sections().map(|(section, _)| module.payload(&section).len()).sum();
    module.code_size().saturating_sub(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{ExecAllocator, ExecConfig, SimulatedKernel};
    use crate::load::ReadOnlyData;
    use smf_format::write::{ModuleBuilder, SectionSpec, SymbolSpec};
    use smf_format::{Dialect, SectionFlags, SectionType};

    fn module_file() -> Vec<u8> {
        let mut b = ModuleBuilder::new(Dialect::S128);
        let (read, write, exec) = (SectionFlags::READ, SectionFlags::WRITE, SectionFlags::EXEC);
        let mut code = SectionSpec::new(SectionType::Code, b".text", read | exec, alloc::vec![0xC3; 3], 16);
        code.virtual_size = 8;
        b.add_section(code);
        b.add_code(b".text2", &[0x90; 4]);
        b.add_section(SectionSpec::new(SectionType::RoData, b".rodata", read, b"ro".to_vec(), 8));
        b.add_section(SectionSpec::new(SectionType::Data, b".data", read | write, b"rw!".to_vec(), 16));
        b.add_symbol(SymbolSpec::function(b"f", 0, 1));
        b.build().unwrap()
    }

    #[test]
    fn data_sections_are_copied_to_their_regions_and_code_back_to_back_with_zeroed_tails() {
        let file = module_file();
        let module = ModuleTables::check(&file, &smf_format::ParseOptions::default()).unwrap();
        let symbols = module.decode_symbols(|_, _| Ok::<(), ()>(())).unwrap();
        static K: SimulatedKernel = SimulatedKernel::new();
        let exec = ExecAllocator::with_kernel(ExecConfig::default(), &K);
        let mut batch = exec.batch();
        let layout = Layout::plan(&symbols, ReadOnlyData::NotExecutable).unwrap();
        let image = Image::allocate(&mut batch, &layout, &module, 0..0).unwrap();
        assert!(image.code.is_some() && image.read_only.is_some() && image.read_write.is_some());

        image.place_data(&mut batch, &module).unwrap();
        let ro = batch.block_mut(image.read_only.as_ref().unwrap()).unwrap();
        assert_eq!(&ro[..2], b"ro");
        let rw = batch.block_mut(image.read_write.as_ref().unwrap()).unwrap();
        assert_eq!(&rw[..3], b"rw!");

        // A recycled page may hold old bytes: the copy overwrites every byte of the code.
        let code_block = image.code.as_ref().unwrap();
        let code = batch.block_mut(code_block).unwrap();
        code.fill(0xEE);
        image.copy_code(code, &module).unwrap();
        assert_eq!(&code[..12], &[0xC3, 0xC3, 0xC3, 0, 0, 0, 0, 0, 0x90, 0x90, 0x90, 0x90]);
        // What is mapped from the file is left as it is; the rest is written around it.
        code.fill(0xEE);
        let image = Image { mapped: 1..2, ..image };
        let code = batch.block_mut(image.code.as_ref().unwrap()).unwrap();
        image.copy_code(code, &module).unwrap();
        assert_eq!(&code[..12], &[0xC3, 0xEE, 0xC3, 0, 0, 0, 0, 0, 0x90, 0x90, 0x90, 0x90]);
    }

    #[test]
    fn read_only_data_in_the_code_block_is_written_whole_padding_and_stub_room_zeroed() {
        let mut b = ModuleBuilder::new(Dialect::S128);
        b.add_code(b".text", &[0x90; 5]);
        let read = SectionFlags::READ;
        let mut first = SectionSpec::new(SectionType::RoData, b".rodata", read, b"abc".to_vec(), 4);
        first.virtual_size = 6;
        b.add_section(first);
        b.add_section(SectionSpec::new(SectionType::RoData, b".rodata2", read, b"xy".to_vec(), 8));
        b.add_symbol(SymbolSpec::function(b"f", 0, 1));
        b.add_symbol(SymbolSpec::import(b"g"));
        let file = b.build().unwrap();
        let module = ModuleTables::check(&file, &smf_format::ParseOptions::default()).unwrap();
        let symbols = module.decode_symbols(|_, _| Ok::<(), ()>(())).unwrap();
        static K: SimulatedKernel = SimulatedKernel::new();
        let exec = ExecAllocator::with_kernel(ExecConfig::default(), &K);
        let mut batch = exec.batch();
        let layout = Layout::plan(&symbols, ReadOnlyData::WithCode).unwrap();
        let image = Image::allocate(&mut batch, &layout, &module, 0..0).unwrap();
        // Code 5 bytes, one stub at 16..32, the read-only region at 32: `abc` then 3 zeros to
        // its virtual size, 2 of padding, `xy` at 8 (10 bytes in all).
        let at = layout.read_only_in_code().unwrap();
        assert_eq!((at, image.read_only_written), (32, Some(32)));
        // A recycled page may hold old bytes: every byte up to the GOT is written.
        let code_block = image.code.as_ref().unwrap();
        batch.block_mut(code_block).unwrap().fill(0xEE);
        image.place_data(&mut batch, &module).unwrap();
        let code = batch.block_mut(code_block).unwrap();
        image.copy_code(code, &module).unwrap();
        assert_eq!(&code[..5], &[0x90; 5]);
        assert!(code[5..32].iter().all(|&b| b == 0), "stub room: {:?}", &code[5..32]);
        assert_eq!(&code[32..42], b"abc\0\0\0\0\0xy");

        // Zeros past 64 KiB in all are left to the allocator's zero pages, as code tails are.
        let mut b = ModuleBuilder::new(Dialect::S128);
        b.add_code(b".text", &[0x90; 5]);
        let mut large = SectionSpec::new(SectionType::RoData, b".rodata", read, b"abc".to_vec(), 4);
        large.virtual_size = WRITTEN_TAILS + 4;
        b.add_section(large);
        b.add_symbol(SymbolSpec::function(b"f", 0, 1));
        let file = b.build().unwrap();
        let module = ModuleTables::check(&file, &smf_format::ParseOptions::default()).unwrap();
        let symbols = module.decode_symbols(|_, _| Ok::<(), ()>(())).unwrap();
        let layout = Layout::plan(&symbols, ReadOnlyData::WithCode).unwrap();
        let image = Image::allocate(&mut batch, &layout, &module, 0..0).unwrap();
        assert_eq!((layout.read_only_in_code(), image.read_only_written), (Some(8), None));
        assert_eq!(read_only_gaps(&module), Some(WRITTEN_TAILS + 1));
    }

    #[test]
    fn an_address_outside_every_block_is_refused() {
        let file = module_file();
        let module = ModuleTables::check(&file, &smf_format::ParseOptions::default()).unwrap();
        let symbols = module.decode_symbols(|_, _| Ok::<(), ()>(())).unwrap();
        static K: SimulatedKernel = SimulatedKernel::new();
        let exec = ExecAllocator::with_kernel(ExecConfig::default(), &K);
        let mut batch = exec.batch();
        let layout = Layout::plan(&symbols, ReadOnlyData::WithCode).unwrap();
        let image = Image::allocate(&mut batch, &layout, &module, 0..0).unwrap();
        assert!(image.read_only.is_none(), "read-only data shares the code's block");
        assert!(image.block_holding(image.read_only_base, 2, Invariant::GotOutsideImage).is_ok());
        assert_eq!(
            image.block_holding(usize::MAX - 4, 2, Invariant::GotOutsideImage).unwrap_err(),
            LoadError::Internal(Invariant::GotOutsideImage)
        );
        assert_eq!(
            offset_from(usize::MAX, 1, Overflow::CodeAddress),
            Err(LoadError::TooLarge(Overflow::CodeAddress))
        );
    }
}
