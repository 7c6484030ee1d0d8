//! The relocations: of the code image, of the data sections (data relocations) and of the
//! call arrays; each one that cannot be carried is a problem naming where it is.

use object::elf;
use object::{Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget, SymbolSection};
use smf_format::write::SymbolSpec;
use smf_format::{Binding, RelocKind, SectionType, SymbolKind};

use super::Packer;
use crate::pack::call_arrays::ArraySlot;
use crate::pack::carried::{Carried, Patched};
use crate::pack::elf::{relocation_kind, Refused};
use crate::pack::PackError;

impl<'d, 'f> Packer<'d, 'f> {
    /// Object `f`'s relocations: of the code image, and of the data sections (data
    /// relocations, `docs/format.md`); each one that cannot be carried is a problem.
    pub(super) fn add_relocations(&mut self, f: usize) {
        let file = &self.files[f];
        for section in file.sections() {
            if let Some(&slot) = self.call_arrays.get(&(f, section.index())) {
                self.add_call_array_entries(f, &section, slot);
                continue;
            }
            let placed = match self.placed.get(&(f, section.index())) {
                Some(&Carried::Code { offset, section, within, .. }) => {
                    Patched::Code { base: offset, section, within }
                }
                Some(&Carried::Data { section, base }) => Patched::Data { section, base },
                None => match self.unwind.get(&(f, section.index())) {
                    Some(&(section, base)) => Patched::Data { section, base },
                    None => continue, // relocations of dropped sections go with them
                },
            };
            for (offset, relocation) in section.relocations() {
                if let Err(refused) = self.add_relocation(f, placed, (offset, section.size()), &relocation) {
                    if let Some(error) = refused.at(self.site(f, section.index(), offset)) {
                        self.problem(f, error);
                    }
                }
            }
        }
    }

    /// Relocation `relocation` at `offset` of an ELF section (of `section_size` bytes) of object
    /// `f` placed as `placed`.
    pub(super) fn add_relocation(
        &mut self,
        f: usize,
        placed: Patched,
        (offset, section_size): (u64, u64),
        relocation: &object::Relocation,
    ) -> Result<(), Refused> {
        let RelocationFlags::Elf { r_type } = relocation.flags() else {
            return Err(Refused::NotElf);
        };
        let kind = match relocation_kind(r_type) {
            Some(kind) => kind,
            None => return Err(Refused::Type { r_type, target: self.target_name(f, relocation.target()) }),
        };
        if offset.checked_add(kind.width()).is_none_or(|end| end > section_size) {
            return Err(Refused::OutsideSection);
        }
        let symbol = self.relocation_symbol(f, relocation.target())?;
        let (base, code_section, within) = match placed {
            Patched::Code { base, section, within } => (base, section, within),
            Patched::Data { section, base } => {
                if !kind.applies_to_data() {
                    return Err(Refused::DataKind(kind));
                }
                let (symbol, addend) = self.section_relative(symbol, kind, relocation.addend());
                self.builder.add_data_relocation(section, base + offset, symbol, kind, addend);
                return Ok(());
            }
        };
        // A GOT load of a symbol this object defines becomes a direct reference, unless the
        // module is linked and the symbol is writable data: the load then goes through the
        // module's own GOT (`ModuleBuilder::link`), whose one slot a load relocates, where a
        // direct reference would be one more relocation of the code.
        let relaxable = matches!(r_type, elf::R_X86_64_GOTPCRELX | elf::R_X86_64_REX_GOTPCRELX)
            && !(self.links && self.in_writable_data(symbol));
        // Only this ELF section's bytes, where it lies in the merged SMF section: an
        // instruction is never read across into the section before it.
        let part = usize::try_from(within).ok().zip(usize::try_from(section_size).ok());
        let kind = match (usize::try_from(offset), part) {
            (Ok(at), Some((start, len))) if relaxable && self.defined_here(f, relocation.target()) => self
                .builder
                .section_data_mut(code_section)
                .and_then(|code| code.get_mut(start..start.checked_add(len)?))
                .and_then(|code| crate::pack::relax::relax_got_load(code, at, relocation.addend()))
                .unwrap_or(kind),
            _ => kind,
        };
        // Linked here, as `ld` links it: a PC-relative reference from the code to the code
        // is the same at every load address (the module's own symbols are never interposed).
        let site = part.zip(usize::try_from(offset).ok()).and_then(|((start, _), at)| start.checked_add(at));
        if let (Some(site), Some(place)) = (site, base.checked_add(offset)) {
            if self.link_within_code(code_section, site, place, symbol, kind, relocation.addend()) {
                return Ok(());
            }
        }
        // Relocations against local symbols of other sections keep their ELF meaning:
        // the local symbol's own value already holds its offset.
        let (symbol, addend) = self.section_relative(symbol, kind, relocation.addend());
        self.builder.add_relocation(base + offset, symbol, kind, addend);
        Ok(())
    }

    /// A reference `symbol + addend` of `kind` to a local variable or label of a data section
    /// (a string constant's `.LC0`), as one to the start of its section with the symbol's
    /// offset added, as `as` writes references to local symbols: the module then carries one
    /// symbol per section where it carried one per string, and each costs every load. Other
    /// symbols, and GOT kinds (a slot holds the symbol's own address), stay as they are.
    fn section_relative(&mut self, symbol: u32, kind: RelocKind, addend: i64) -> (u32, i64) {
        if kind.uses_got() {
            return (symbol, addend);
        }
        let Some(spec) = self.builder.symbol(symbol) else { return (symbol, addend) };
        let local_data = spec.binding == Binding::Local && spec.kind != SymbolKind::Function;
        let (Some(section), true) = (spec.section, local_data) else { return (symbol, addend) };
        let Some(addend) = i64::try_from(spec.value).ok().and_then(|value| addend.checked_add(value)) else {
            return (symbol, addend);
        };
        let start = match self.data_section_symbols.get(&section) {
            Some(&start) => start,
            None => {
                let name = self.builder.section_mut(section).map(|s| s.name.clone()).unwrap_or_default();
                let start = self
                    .builder
                    .add_symbol(SymbolSpec::data(&name, section, 0, 0).with_binding(Binding::Local));
                self.data_section_symbols.insert(section, start);
                start
            }
        };
        (start, addend)
    }

    /// Whether SMF symbol `symbol` lies in a writable data section (data or bss): at no fixed
    /// distance from the code.
    fn in_writable_data(&self, symbol: u32) -> bool {
        let section = self.builder.symbol(symbol).and_then(|spec| spec.section);
        let kind = section.and_then(|s| self.builder.section(s)).map(|s| s.section_type);
        matches!(kind, Some(SectionType::Data | SectionType::Bss))
    }

    /// Writes `S + A - P` into the code at `at` of SMF section `code_section` (code offset
    /// `place`) when `kind` is PC-relative and `symbol` lies in the code: the relocation is
    /// then done for good and the module does not carry it. `false` if it stays a relocation
    /// (another kind, a target outside the code, a distance out of the field's reach).
    fn link_within_code(
        &mut self,
        code_section: u32,
        at: usize,
        place: u64,
        symbol: u32,
        kind: RelocKind,
        addend: i64,
    ) -> bool {
        if !matches!(kind, RelocKind::Pc32 | RelocKind::Plt32) {
            return false;
        }
        let Some(target) = self.builder.code_offset(symbol) else { return false };
        let distance = i128::from(target) + i128::from(addend) - i128::from(place);
        let Ok(field) = i32::try_from(distance) else { return false };
        let site =
            self.builder.section_data_mut(code_section).and_then(|code| code.get_mut(at..at.checked_add(4)?));
        match site {
            Some(site) => {
                site.copy_from_slice(&field.to_le_bytes());
                true
            }
            None => false,
        }
    }

    /// The entries of object `f`'s call array `section`, each an `R_X86_64_64` relocation,
    /// as data relocations of the module's array where `slot` says they go; every entry that
    /// is not one is a problem.
    pub(super) fn add_call_array_entries(
        &mut self,
        f: usize,
        section: &object::Section<'d, 'f>,
        slot: ArraySlot,
    ) {
        let bytes = section.data().map_or(0, <[u8]>::len);
        let (entries, size) = (bytes.div_ceil(8), bytes as u64);
        let mut relocated = vec![false; entries];
        for (offset, relocation) in section.relocations() {
            // An entry is 8 bytes of the array: one patching bytes past its end is refused as
            // one in data is (the partial entry counted once).
            if offset.checked_add(8).is_none_or(|end| end > size) {
                let at = self.site(f, section.index(), offset);
                self.problem(f, PackError::RelocationOutsideSection(at));
                if let Some(entry) = relocated.get_mut((offset / 8) as usize) {
                    *entry = true;
                }
                continue;
            }
            let r_type = match relocation.flags() {
                RelocationFlags::Elf { r_type } => r_type,
                _ => {
                    let at = self.site(f, section.index(), offset);
                    self.problem(f, PackError::NotElfRelocation(at));
                    continue;
                }
            };
            let Some(place) = slot.place(offset).filter(|_| r_type == elf::R_X86_64_64) else {
                let at = self.site(f, section.index(), offset);
                self.problem(f, PackError::CallArrayEntry { at, r_type: Some(r_type.0) });
                continue;
            };
            match self.relocation_symbol(f, relocation.target()) {
                Ok(symbol) => {
                    self.builder.add_data_relocation(
                        slot.section,
                        place,
                        symbol,
                        RelocKind::Abs64,
                        relocation.addend(),
                    );
                }
                Err(refused) => {
                    if let Some(error) = refused.at(self.site(f, section.index(), offset)) {
                        self.problem(f, error);
                    }
                }
            }
            if let Some(entry) = relocated.get_mut((offset / 8) as usize) {
                *entry = true;
            }
        }
        for entry in relocated.iter().enumerate().filter(|(_, done)| !**done).map(|(entry, _)| entry) {
            let at = self.site(f, section.index(), entry as u64 * 8);
            self.problem(f, PackError::CallArrayEntry { at, r_type: None });
        }
    }

    /// The SMF symbol a relocation of object `f` refers to.
    pub(super) fn relocation_symbol(&mut self, f: usize, target: RelocationTarget) -> Result<u32, Refused> {
        match target {
            RelocationTarget::Symbol(index) => match self.symbols.get(&(f, index)) {
                Some(&s) => Ok(s),
                None => match self.files[f].symbol_by_index(index)?.section() {
                    SymbolSection::Section(section) => Ok(self.section_symbol(f, section)?),
                    SymbolSection::Common => Err(Refused::Reported),
                    _ => Err(Refused::Symbol),
                },
            },
            RelocationTarget::Section(index) => Ok(self.section_symbol(f, index)?),
            _ => Err(Refused::AbsoluteTarget),
        }
    }

    /// Whether a relocation's target (in object `f`) is defined in a section this module
    /// carries, by `f` or by another object it links to.
    pub(super) fn defined_here(&self, f: usize, target: RelocationTarget) -> bool {
        match target {
            RelocationTarget::Symbol(index) => self.files[f].symbol_by_index(index).is_ok_and(|s| {
                let in_f = s.section_index().is_some_and(|i| self.placed.contains_key(&(f, i)))
                    || (s.is_common() && self.symbols.contains_key(&(f, index)));
                let elsewhere = s.name_bytes().is_ok_and(|n| {
                    !n.is_empty() && !s.is_local() && self.definitions.get(n).is_some_and(|d| d.at.0 != f)
                });
                in_f || elsewhere
            }),
            RelocationTarget::Section(index) => self.placed.contains_key(&(f, index)),
            _ => false,
        }
    }
}
