//! Linking at write time ([`ModuleBuilder::link_read_only`]): the PC-relative references
//! between a module's code and its read-only data (a string constant's address loaded by the
//! code, a switch's jump table in rodata pointing back into the code, an unwind table's
//! pointers) resolved for good for the linked layout ([`crate::module::linked`]), as `ld`
//! resolves them: the module no longer carries them, and a load no longer checks or applies
//! them.

use alloc::vec::Vec;

use super::specs::{DataSite, RelocSpec};
use super::{BuildError, ModuleBuilder};
use crate::kinds::{ModuleFlags, RelocKind, SectionType};
use crate::module::{linked, DataLayout, DataRegion};

/// Where the parts of the image lie, from the start of the code, for the linked layout.
struct Image {
    /// Each code section's start in the code image, by builder section number.
    code_starts: Vec<Option<u64>>,
    /// Each rodata section's address (from the code's start), by builder section number.
    read_only_at: Vec<Option<u64>>,
}

impl ModuleBuilder {
    /// Resolves every PC-relative reference (pc32, plt32) between the code and the read-only
    /// data, in either direction or within the read-only data, to a symbol the module defines,
    /// writing `S + A - P` into the bytes and dropping the relocation; marks the module
    /// [`ModuleFlags::LINKED_READ_ONLY`] if any was. Returns how many were.
    ///
    /// The module must be complete (every section, symbol and import added): where the
    /// read-only data lies depends on the code's size and the number of imports. A module its
    /// reader refuses, a reference out of a 32-bit field's reach, or bytes only zero-filled in
    /// memory keep their relocations.
    pub fn link_read_only(&mut self) -> Result<usize, BuildError> {
        let Some(image) = self.linked_image()? else { return Ok(0) };
        let mut linked = 0;
        let mut relocations = core::mem::take(&mut self.relocations);
        relocations.retain(|r| {
            let done = self.link_one(&image, Site::Code(r.offset), r);
            linked += usize::from(done);
            !done
        });
        self.relocations = relocations;
        let mut data_relocations = core::mem::take(&mut self.data_relocations);
        data_relocations.retain(|d| {
            let done = match d.at {
                DataSite::InSection(section, offset) => {
                    self.link_one(&image, Site::ReadOnly(section, offset), &d.relocation)
                }
                DataSite::InImage(_) => false,
            };
            linked += usize::from(done);
            !done
        });
        self.data_relocations = data_relocations;
        if linked > 0 {
            self.header.flags |= ModuleFlags::LINKED_READ_ONLY;
        }
        Ok(linked)
    }

    /// The linked layout of the module as written now (its import count and data alignment as
    /// its reader finds them); `None` if the reader refuses it or it has no read-only data.
    fn linked_image(&mut self) -> Result<Option<Image>, BuildError> {
        let compression = self.compression.take();
        let written = self.build();
        self.compression = compression;
        let written = written?;
        let Ok(module) = crate::Module::parse(&written) else { return Ok(None) };
        if module.read_only_size() == 0 {
            return Ok(None);
        }
        let stubs = u64::from(module.import_count());
        let Some(read_only) = linked::read_only_offset(module.code_size(), stubs, module.data_alignment())
        else {
            return Ok(None);
        };
        let (mut code, mut layout) = (0u64, DataLayout::default());
        let mut image = Image {
            code_starts: Vec::with_capacity(self.sections.len()),
            read_only_at: Vec::with_capacity(self.sections.len()),
        };
        for s in &self.sections {
            let size = s.virtual_size.max(s.data.len() as u64);
            let (mut code_start, mut read_only_at) = (None, None);
            if s.section_type == SectionType::Code {
                code_start = Some(code);
                code = code.checked_add(size).ok_or(BuildError::TooLarge)?;
            } else if s.section_type.is_data() {
                let place =
                    layout.place_raw(s.section_type, s.alignment, size).ok_or(BuildError::TooLarge)?;
                if let (DataRegion::ReadOnly, at) = place {
                    read_only_at = Some(read_only.checked_add(at).ok_or(BuildError::TooLarge)?);
                }
            }
            image.code_starts.push(code_start);
            image.read_only_at.push(read_only_at);
        }
        Ok(Some(image))
    }

    /// Links relocation `r` at `site` if it is PC-relative, its symbol lies in the code or the
    /// read-only data, and its place in the code or the read-only data; `true` if it did.
    fn link_one(&mut self, image: &Image, site: Site, r: &RelocSpec) -> bool {
        let kind = r.wire.ok().and_then(|wire| RelocKind::from_wire(self.dialect, wire));
        if !matches!(kind, Some(RelocKind::Pc32 | RelocKind::Plt32)) {
            return false;
        }
        let Some(target) = self.linked_address(image, r.symbol) else { return false };
        let Some((section, at, place)) = self.site_bytes(image, site) else { return false };
        let distance = i128::from(target) + i128::from(r.addend) - i128::from(place);
        let Ok(field) = i32::try_from(distance) else { return false };
        let bytes = self.sections.get_mut(section).and_then(|s| s.data.get_mut(at..at.checked_add(4)?));
        match bytes {
            Some(bytes) => {
                bytes.copy_from_slice(&field.to_le_bytes());
                true
            }
            None => false,
        }
    }

    /// Symbol `index`'s address from the code's start in the linked layout, if it lies in the
    /// code or the read-only data.
    fn linked_address(&self, image: &Image, index: u32) -> Option<u64> {
        if let Some(offset) = self.code_offset(index) {
            return Some(offset);
        }
        let spec = self.symbols.get(index as usize)?;
        let section = spec.section?;
        if !spec.kind.is_addressable() {
            return None;
        }
        image.read_only_at.get(section as usize).copied().flatten()?.checked_add(spec.value)
    }

    /// The section, the offset of the patched bytes in its payload and their address from the
    /// code's start, for a relocation at `site`; `None` where it is not in the code or the
    /// read-only data.
    fn site_bytes(&self, image: &Image, site: Site) -> Option<(usize, usize, u64)> {
        match site {
            Site::Code(offset) => {
                // The code section holding `offset` (the last starting at or before it).
                let (section, start) = image
                    .code_starts
                    .iter()
                    .enumerate()
                    .filter_map(|(i, start)| Some((i, (*start)?)))
                    .take_while(|&(_, start)| start <= offset)
                    .last()?;
                let at = usize::try_from(offset - start).ok()?;
                Some((section, at, offset))
            }
            Site::ReadOnly(section, offset) => {
                let base = image.read_only_at.get(section as usize).copied().flatten()?;
                Some((section as usize, usize::try_from(offset).ok()?, base.checked_add(offset)?))
            }
        }
    }
}

/// Where a relocation patches.
#[derive(Clone, Copy)]
enum Site {
    /// An offset in the code image.
    Code(u64),
    /// A data section (builder number) and an offset in it.
    ReadOnly(u32, u64),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::RelocatedImage;
    use crate::write::SymbolSpec;
    use crate::Dialect;

    /// A module of 20 bytes of code and one import (so one stub), whose code loads the address
    /// of a string at 4 in its rodata (pc32 at 3, addend -4) and calls the import (plt32 at
    /// 10), and whose rodata holds a jump-table entry pointing back at the code's byte 8 (pc32
    /// at 8 of the rodata), and an absolute pointer at 16.
    fn module() -> ModuleBuilder {
        let mut b = ModuleBuilder::new(Dialect::S128);
        b.add_code(b".text", &[0x90; 20]);
        let rodata = b.add_rodata(b".rodata", &[0; 24]);
        let f = b.add_symbol(SymbolSpec::function(b"f", 0, 20));
        let string = b.add_symbol(SymbolSpec::data(b"string", rodata, 4, 4));
        let import = b.add_symbol(SymbolSpec::import(b"puts"));
        b.add_relocation(3, string, RelocKind::Pc32, -4);
        b.add_relocation(10, import, RelocKind::Plt32, -4);
        b.add_data_relocation(rodata, 8, f, RelocKind::Pc32, 8);
        b.add_data_relocation(rodata, 16, f, RelocKind::Abs64, 0);
        b
    }

    #[test]
    fn references_between_code_and_read_only_data_are_written_into_the_bytes() {
        let mut b = module();
        assert_eq!(b.link_read_only(), Ok(2));
        let bytes = b.build().unwrap();
        let m = crate::Module::parse(&bytes).unwrap();
        assert!(m.header().flags.contains(ModuleFlags::LINKED_READ_ONLY));
        // Code 20 bytes, the stub from 32 to 48: the read-only data at 48.
        let rodata = linked::read_only_offset(20, 1, m.data_alignment()).unwrap();
        assert_eq!(rodata, 48);
        let code = &b.sections[0].data;
        let field = i32::from_le_bytes(code[3..7].try_into().unwrap());
        assert_eq!(i64::from(field), 48 + 4 - 4 - 3, "string - 4 - place");
        let read_only = &b.sections[1].data;
        let entry = i32::from_le_bytes(read_only[8..12].try_into().unwrap());
        assert_eq!(i64::from(entry), 8 - (48 + 8), "f + 8 - place");
        // The import's call and the absolute pointer need the load address.
        let kept: Vec<_> = m.relocations().map(|r| (r.image, r.kind)).collect();
        assert_eq!(
            kept,
            [(RelocatedImage::Data, RelocKind::Abs64), (RelocatedImage::Code, RelocKind::Plt32)]
        );
    }

    #[test]
    fn a_module_with_nothing_to_link_is_written_as_it_was() {
        let mut b = module();
        b.relocations.remove(0);
        b.data_relocations.remove(0);
        let before = b.build().unwrap();
        assert_eq!(b.link_read_only(), Ok(0));
        assert_eq!(b.build().unwrap(), before);
    }
}
