//! Linking at write time ([`ModuleBuilder::link`]): for the linked layout
//! ([`crate::module::linked`]), the PC-relative references between a module's code and its
//! read-only data (a string constant's address loaded by the code, a switch's jump table in
//! rodata pointing back into the code, an unwind table's pointers), and the code's calls and
//! GOT loads of its imports (to the stub and the GOT slot the layout pins to each import),
//! resolved for good, as `ld` resolves them: the module no longer carries them, and a load no
//! longer checks or applies them.
//!
//! The code's GOT loads of the module's own symbols (a `-fPIC` object reads and writes its
//! global variables through the GOT) go through a GOT of the module's own, as `ld -shared`
//! builds one: a read-only section `.got` with one slot per symbol, each filled at load by an
//! absolute data relocation, and the loads linked to their slot. A load then relocates one
//! slot per variable instead of every instruction that reaches it (the writable data lies at
//! no fixed distance from the code).

use alloc::vec::Vec;

use super::specs::{DataSite, RelocSpec};
use super::{BuildError, ModuleBuilder};
use crate::kinds::{ModuleFlags, RelocKind, SectionType, SymbolKind};
use crate::module::{linked, DataLayout, DataRegion};

/// Where the parts of the image lie, from the start of the code, for the linked layout.
struct Image {
    /// Each code section's start in the code image, by builder section number.
    code_starts: Vec<Option<u64>>,
    /// Each rodata section's address (from the code's start), by builder section number.
    read_only_at: Vec<Option<u64>>,
    /// Each import's rank among the imports (its stub and GOT slot), by symbol index.
    import_rank: Vec<Option<u64>>,
    /// Each own symbol's slot in the module's own GOT (from the code's start), by symbol index.
    own_got: Vec<Option<u64>>,
    /// Bytes of code; where the stubs and the GOT start.
    code_size: u64,
    stubs: u64,
    got: u64,
}

/// The name of the module's own GOT section.
const OWN_GOT_SECTION: &[u8] = b".got";

/// The module's own GOT, as [`ModuleBuilder::add_own_got`] added it.
struct OwnGot {
    /// Its section (builder number).
    section: u32,
    /// Each symbol's slot, by symbol index.
    rank: Vec<Option<u64>>,
    /// How many sections and data relocations the module had before it.
    sections: usize,
    data_relocations: usize,
}

/// What one reference was linked to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Linked {
    /// Not linked: it stays a relocation.
    No,
    /// The code from the code (the same at any layout).
    Code,
    /// The code or the read-only data, from the read-only data or to it.
    ReadOnly,
    /// An import's stub or GOT slot.
    Import,
}

impl ModuleBuilder {
    /// Resolves every PC-relative reference (pc32, plt32) between the code and the read-only
    /// data, in either direction or within the read-only data, to a symbol the module defines,
    /// and every call (plt32) and GOT load (got_pc32) of an import from the code to the stub
    /// and GOT slot the linked layout pins to that import, writing `S + A - P` into the bytes
    /// and dropping the relocation; marks the module [`ModuleFlags::LINKED_READ_ONLY`] and
    /// [`ModuleFlags::LINKED_IMPORTS`] as it linked either. Returns how many it linked.
    ///
    /// The module must be complete (every section, symbol and import added): where the parts
    /// lie depends on the code's size and the number of imports. A module its reader refuses,
    /// a reference out of a 32-bit field's reach, or bytes only zero-filled in memory keep
    /// their relocations.
    pub fn link(&mut self) -> Result<usize, BuildError> {
        let own_got = self.add_own_got();
        let Some(image) = self.linked_image(own_got.as_ref())? else {
            if let Some(got) = own_got {
                self.remove_own_got(&got);
            }
            return Ok(0);
        };
        let mut linked = [0usize; 4];
        let mut relocations = core::mem::take(&mut self.relocations);
        relocations.retain(|r| {
            let done = self.link_one(&image, Site::Code(r.offset), r);
            linked[done as usize] += 1;
            done == Linked::No
        });
        self.relocations = relocations;
        let mut data_relocations = core::mem::take(&mut self.data_relocations);
        data_relocations.retain(|d| {
            let done = match d.at {
                DataSite::InSection(section, offset) => {
                    self.link_one(&image, Site::ReadOnly(section, offset), &d.relocation)
                }
                DataSite::InImage(_) => Linked::No,
            };
            linked[done as usize] += 1;
            done == Linked::No
        });
        self.data_relocations = data_relocations;
        if linked[Linked::ReadOnly as usize] > 0 {
            self.header.flags |= ModuleFlags::LINKED_READ_ONLY;
        }
        if linked[Linked::Import as usize] > 0 {
            self.header.flags |= ModuleFlags::LINKED_IMPORTS;
        }
        Ok(linked[1..].iter().sum())
    }

    /// Adds the module's own GOT: a read-only section with a slot for each symbol of the
    /// module's own that a GOT load of the code names (in the order first named), each filled
    /// by an abs64 data relocation; `None` (nothing added) if no GOT load names one.
    fn add_own_got(&mut self) -> Option<OwnGot> {
        let mut rank = alloc::vec![None; self.symbols.len()];
        let mut slots = 0u64;
        for r in &self.relocations {
            let got_load = r.wire.ok().and_then(|wire| RelocKind::from_wire(self.dialect, wire))
                == Some(RelocKind::GotPc32);
            if got_load && self.own_addressable(r.symbol) {
                if let Some(slot @ None) = rank.get_mut(r.symbol as usize) {
                    *slot = Some(slots);
                    slots += 1;
                }
            }
        }
        let bytes = usize::try_from(slots.checked_mul(linked::GOT_SLOT)?).ok()?;
        let filled: Vec<(u32, u64)> = rank
            .iter()
            .enumerate()
            .filter_map(|(symbol, slot)| {
                Some((u32::try_from(symbol).ok()?, (*slot)?.checked_mul(linked::GOT_SLOT)?))
            })
            .collect();
        if filled.is_empty() {
            return None;
        }
        let (sections, data_relocations) = (self.sections.len(), self.data_relocations.len());
        let section = self.add_rodata(OWN_GOT_SECTION, &alloc::vec![0; bytes]);
        for (symbol, at) in filled {
            self.add_data_relocation(section, at, symbol, RelocKind::Abs64, 0);
        }
        Some(OwnGot { section, rank, sections, data_relocations })
    }

    /// Takes the module's own GOT out again (the module is not linked).
    fn remove_own_got(&mut self, got: &OwnGot) {
        self.sections.truncate(got.sections);
        self.data_relocations.truncate(got.data_relocations);
    }

    /// Whether symbol `index` is one of the module's own that has an address: in its code or in
    /// one of its data sections.
    fn own_addressable(&self, index: u32) -> bool {
        let Some(spec) = self.symbols.get(index as usize) else { return false };
        let in_data = spec
            .section
            .and_then(|s| self.sections.get(s as usize))
            .is_some_and(|s| s.section_type.is_data());
        spec.kind.is_addressable() && (self.code_offset(index).is_some() || in_data)
    }

    /// The linked layout of the module as written now (its import count and data alignment as
    /// its reader finds them), with the slots of `own_got`; `None` if the reader refuses it or
    /// it has no read-only data.
    fn linked_image(&mut self, own_got: Option<&OwnGot>) -> Result<Option<Image>, BuildError> {
        let compression = self.compression.take();
        let written = self.build();
        self.compression = compression;
        let written = written?;
        let Ok(module) = crate::Module::parse(&written) else { return Ok(None) };
        let stubs = u64::from(module.import_count());
        let code_size = module.code_size();
        let Some(read_only) = linked::read_only_offset(code_size, stubs, module.data_alignment()) else {
            return Ok(None);
        };
        let (Some(stub_start), Some(got)) =
            (linked::stub_offset(code_size), linked::got_offset(read_only, module.read_only_size()))
        else {
            return Ok(None);
        };
        let mut import_rank = alloc::vec![None; self.symbols.len()];
        for (rank, symbol) in module.symbols().filter(|s| s.kind == SymbolKind::Import).enumerate() {
            if let Some(slot) = import_rank.get_mut(symbol.index as usize) {
                *slot = Some(rank as u64);
            }
        }
        let (mut code, mut layout) = (0u64, DataLayout::default());
        let mut image = Image {
            code_starts: Vec::with_capacity(self.sections.len()),
            read_only_at: Vec::with_capacity(self.sections.len()),
            import_rank,
            own_got: Vec::new(),
            code_size,
            stubs: stub_start,
            got,
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
        if let Some(got) = own_got {
            let start = image.read_only_at.get(got.section as usize).copied().flatten();
            image.own_got = got
                .rank
                .iter()
                .map(|rank| start?.checked_add(rank.as_ref()?.checked_mul(linked::GOT_SLOT)?))
                .collect();
        }
        Ok(Some(image))
    }

    /// Links relocation `r` at `site` if it is PC-relative, its symbol lies in the code or the
    /// read-only data, and its place in the code or the read-only data, or if it is a call or
    /// GOT load of an import from the code; says to what it did.
    fn link_one(&mut self, image: &Image, site: Site, r: &RelocSpec) -> Linked {
        let kind = r.wire.ok().and_then(|wire| RelocKind::from_wire(self.dialect, wire));
        let rank = image.import_rank.get(r.symbol as usize).copied().flatten();
        let (target, linked) = match (kind, rank, site) {
            (Some(RelocKind::Plt32), Some(rank), Site::Code(_)) => (
                rank.checked_mul(linked::STUB_SIZE).and_then(|at| at.checked_add(image.stubs)),
                Linked::Import,
            ),
            (Some(RelocKind::GotPc32), Some(rank), Site::Code(_)) => {
                (rank.checked_mul(linked::GOT_SLOT).and_then(|at| at.checked_add(image.got)), Linked::Import)
            }
            (Some(RelocKind::GotPc32), None, Site::Code(_)) => {
                (image.own_got.get(r.symbol as usize).copied().flatten(), Linked::ReadOnly)
            }
            (Some(RelocKind::Pc32 | RelocKind::Plt32), None, _) => {
                let target = self.linked_address(image, r.symbol);
                let within_code =
                    matches!(site, Site::Code(_)) && target.is_some_and(|t| t < image.code_size);
                (target, if within_code { Linked::Code } else { Linked::ReadOnly })
            }
            _ => (None, Linked::No),
        };
        let Some(target) = target else { return Linked::No };
        let Some((section, at, place)) = self.site_bytes(image, site) else { return Linked::No };
        let distance = i128::from(target) + i128::from(r.addend) - i128::from(place);
        let Ok(field) = i32::try_from(distance) else { return Linked::No };
        let bytes = self.sections.get_mut(section).and_then(|s| s.data.get_mut(at..at.checked_add(4)?));
        match bytes {
            Some(bytes) => {
                bytes.copy_from_slice(&field.to_le_bytes());
                linked
            }
            None => Linked::No,
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
    /// of a string at 4 in its rodata (pc32 at 3, addend -4), calls the import (plt32 at 10)
    /// and loads its address from the GOT (got_pc32 at 14), and whose rodata holds a
    /// jump-table entry pointing back at the code's byte 8 (pc32 at 8 of the rodata), and an
    /// absolute pointer at 16.
    fn module() -> ModuleBuilder {
        let mut b = ModuleBuilder::new(Dialect::S128);
        b.add_code(b".text", &[0x90; 20]);
        let rodata = b.add_rodata(b".rodata", &[0; 24]);
        let f = b.add_symbol(SymbolSpec::function(b"f", 0, 20));
        let string = b.add_symbol(SymbolSpec::data(b"string", rodata, 4, 4));
        let import = b.add_symbol(SymbolSpec::import(b"puts"));
        b.add_relocation(3, string, RelocKind::Pc32, -4);
        b.add_relocation(10, import, RelocKind::Plt32, -4);
        b.add_relocation(14, import, RelocKind::GotPc32, -4);
        b.add_data_relocation(rodata, 8, f, RelocKind::Pc32, 8);
        b.add_data_relocation(rodata, 16, f, RelocKind::Abs64, 0);
        b
    }

    fn field(bytes: &[u8], at: usize) -> i64 {
        i64::from(i32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()))
    }

    #[test]
    fn references_between_code_read_only_data_and_imports_are_written_into_the_bytes() {
        let mut b = module();
        assert_eq!(b.link(), Ok(4));
        let bytes = b.build().unwrap();
        let m = crate::Module::parse(&bytes).unwrap();
        let flags = m.header().flags;
        assert!(flags.contains(ModuleFlags::LINKED_READ_ONLY | ModuleFlags::LINKED_IMPORTS));
        // Code 20 bytes, the stub from 32 to 48: the read-only data at 48, its GOT at 72.
        let rodata = linked::read_only_offset(20, 1, m.data_alignment()).unwrap();
        let got = linked::got_offset(rodata, m.read_only_size()).unwrap();
        assert_eq!((rodata, got), (48, 72));
        let code = &b.sections[0].data;
        assert_eq!(field(code, 3), 48 + 4 - 4 - 3, "string - 4 - place");
        assert_eq!(field(code, 10), 32 - 4 - 10, "the import's stub - 4 - place");
        assert_eq!(field(code, 14), 72 - 4 - 14, "the import's GOT slot - 4 - place");
        assert_eq!(field(&b.sections[1].data, 8), 8 - (48 + 8), "f + 8 - place");
        // The absolute pointer needs the load address.
        let kept: Vec<_> = m.relocations().map(|r| (r.image, r.kind)).collect();
        assert_eq!(kept, [(RelocatedImage::Data, RelocKind::Abs64)]);
    }

    #[test]
    fn got_loads_of_the_modules_own_symbols_go_through_a_got_of_its_own() {
        // 24 bytes of code loading `v` (writable data) from the GOT twice and `f` once.
        let mut b = ModuleBuilder::new(Dialect::S128);
        b.add_code(b".text", &[0x90; 24]);
        let data = b.add_data(b".data", &[0; 8]);
        let f = b.add_symbol(SymbolSpec::function(b"f", 0, 24));
        let v = b.add_symbol(SymbolSpec::data(b"v", data, 0, 8));
        b.add_relocation(3, v, RelocKind::GotPc32, -4);
        b.add_relocation(10, f, RelocKind::GotPc32, -4);
        b.add_relocation(17, v, RelocKind::GotPc32, -4);
        assert_eq!(b.link(), Ok(3));
        let bytes = b.build().unwrap();
        let m = crate::Module::parse(&bytes).unwrap();
        assert!(m.header().flags.contains(ModuleFlags::LINKED_READ_ONLY));
        // The read-only region (the GOT alone) right after the code: v's slot at 24, f's at 32.
        let got = m.sections().find(|s| s.name == b".got").unwrap();
        assert_eq!((got.section_type, got.virtual_size), (SectionType::RoData, 16));
        assert_eq!(linked::read_only_offset(24, 0, m.data_alignment()), Some(24));
        let code = &b.sections[0].data;
        assert_eq!(field(code, 3), 24 - 4 - 3, "v's slot - 4 - place");
        assert_eq!(field(code, 10), 32 - 4 - 10, "f's slot - 4 - place");
        assert_eq!(field(code, 17), 24 - 4 - 17, "one slot per symbol");
        // Each slot is filled at load, the code never patched.
        let kept: Vec<_> = m.relocations().map(|r| (r.image, r.offset, r.symbol, r.kind)).collect();
        assert_eq!(
            kept,
            [(RelocatedImage::Data, 0, v, RelocKind::Abs64), (RelocatedImage::Data, 8, f, RelocKind::Abs64)]
        );
    }

    #[test]
    fn got_loads_of_imports_add_no_got_of_the_modules_own() {
        let mut b = module();
        b.link().unwrap();
        assert!(!b.sections.iter().any(|s| s.name == OWN_GOT_SECTION));
    }

    #[test]
    fn references_within_the_code_alone_leave_the_module_unmarked() {
        let mut b = ModuleBuilder::new(Dialect::S128);
        b.add_code(b".text", &[0x90; 20]);
        let f = b.add_symbol(SymbolSpec::function(b"f", 12, 8));
        b.add_relocation(3, f, RelocKind::Plt32, -4);
        assert_eq!(b.link(), Ok(1));
        assert_eq!(field(&b.sections[0].data, 3), 12 - 4 - 3);
        let bytes = b.build().unwrap();
        assert!(crate::Module::parse(&bytes).unwrap().header().flags.is_empty());
    }

    #[test]
    fn a_module_with_nothing_to_link_is_written_as_it_was() {
        let mut b = module();
        b.relocations.clear();
        b.data_relocations.remove(0);
        let before = b.build().unwrap();
        assert_eq!(b.link(), Ok(0));
        assert_eq!(b.build().unwrap(), before);
    }
}
