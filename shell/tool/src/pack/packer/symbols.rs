//! The symbols: which object defines each global name, one SMF symbol per carried ELF
//! symbol, references linked to their definitions, section symbols added as relocations need them.

use object::{Object, ObjectSection, ObjectSymbol, SectionIndex, SymbolSection};
use smf_format::write::SymbolSpec;
use smf_format::Binding;

use super::{Definition, Packer};
use crate::pack::call_arrays;
use crate::pack::elf::{binding_of, is_indirect};
use crate::pack::{Note, PackError};

impl<'d, 'f> Packer<'d, 'f> {
    /// Which object defines each global or weak name: a strong definition wins over a common
    /// symbol, and a common symbol over weak definitions (the ELF rule `ld` follows); two
    /// strong ones are an error, as a static linker has it; of several common symbols of one
    /// name the first stands for all (`allocate_commons` gives it the largest size). A C++
    /// definition every object using it carries (a template's static member, an inline
    /// function's static local: `STB_GNU_UNIQUE` where GCC has it, weak otherwise) merges as a
    /// weak one does: the first is the one every object links to.
    pub(super) fn find_definitions(&mut self) {
        for (f, file) in self.files.iter().enumerate() {
            for symbol in file.symbols() {
                let common = symbol.is_common();
                let placed =
                    common || symbol.section_index().is_some_and(|i| self.placed.contains_key(&(f, i)));
                if !placed
                    || !(symbol.is_global() || symbol.is_weak())
                    || symbol.kind() == object::SymbolKind::Section
                {
                    continue;
                }
                let name = match symbol.name_bytes() {
                    Ok([]) => {
                        self.problem(f, PackError::UnnamedGlobal { index: symbol.index().0 });
                        continue;
                    }
                    Ok(name) => name.to_vec(),
                    Err(error) => {
                        self.problem(f, PackError::Elf(error));
                        continue;
                    }
                };
                let here = Definition { at: (f, symbol.index()), weak: merges(&symbol) && !common, common };
                match self.definitions.get(&name) {
                    None => {}
                    Some(there) if here.rank() > there.rank() => {}
                    Some(there) if here.rank() == 2 && there.rank() == 2 => {
                        let error = PackError::DefinedTwice {
                            name: String::from_utf8_lossy(&name).into_owned(),
                            first: self.names[there.at.0].to_owned(),
                            second: self.names[f].to_owned(),
                        };
                        self.problem(f, error);
                        continue;
                    }
                    Some(_) => continue,
                }
                self.definitions.insert(name, here);
            }
        }
    }

    /// One SMF symbol per ELF symbol of object `f` that is defined in a placed section or
    /// undefined (section symbols are added when relocations need them:
    /// [`Packer::section_symbol`]); a reference to a name another object defines (an undefined
    /// symbol, or a weak definition a strong one overrides) links to that definition instead.
    pub(super) fn add_symbols(&mut self, f: usize) {
        let file = &self.files[f];
        for symbol in file.symbols() {
            let name = match symbol.name_bytes() {
                Ok(name) => name,
                Err(error) => {
                    self.problem(f, PackError::Elf(error));
                    continue;
                }
            };
            // An indirect function is its stub already (`ifunc.rs`).
            if is_indirect(&symbol) && self.symbols.contains_key(&(f, symbol.index())) {
                continue;
            }
            // A symbol without a name can be linked to by no other object or module: local.
            let binding = if name.is_empty() { Binding::Local } else { binding_of(&symbol) };
            let linked = binding != Binding::Local;
            if let Some(definition) =
                self.definitions.get(name).filter(|d| linked && d.at != (f, symbol.index()))
            {
                self.references.push(((f, symbol.index()), definition.at));
                continue;
            }
            if let Some(handle) =
                self.dso_handle.filter(|_| symbol.is_undefined() && name == call_arrays::DSO_HANDLE)
            {
                self.symbols.insert((f, symbol.index()), handle);
                continue;
            }
            if let Some(&(_, own)) =
                self.registering.iter().find(|(own, _)| symbol.is_undefined() && name == *own)
            {
                self.symbols.insert((f, symbol.index()), own);
                continue;
            }
            let spec = match symbol.section() {
                // The linker defines _GLOBAL_OFFSET_TABLE_; SMF modules have their own GOT
                // slots, so a relocation that really needs it fails with a clear error.
                SymbolSection::Undefined if !name.is_empty() && name != b"_GLOBAL_OFFSET_TABLE_" => {
                    if let Some(&import) = self.imports.get(name) {
                        self.symbols.insert((f, symbol.index()), import);
                        continue;
                    }
                    let binding = if symbol.is_weak() { Binding::Weak } else { Binding::Global };
                    Some(SymbolSpec::import(name).with_binding(binding))
                }
                // Allocated by `allocate_commons` (or refused there, in R72).
                SymbolSection::Common => continue,
                SymbolSection::Section(index) if symbol.kind() != object::SymbolKind::Section => {
                    if !self.placed.contains_key(&(f, index)) {
                        continue;
                    }
                    let extent = (symbol.address(), symbol.size());
                    let Some(size) = self.size_within_section(f, index, name, extent) else { continue };
                    let placed = self.placed.get(&(f, index));
                    placed.map(|p| p.symbol(name, symbol.address(), size).with_binding(binding))
                }
                _ => None,
            };
            if let Some(mut spec) = spec {
                // A dialect that marks imports by value (S128) reads a non-local symbol of
                // value 0 and size 0 as an import: a definition there (an assembler label
                // without .size at the start of the code) gets size 1 so it stays one.
                let defined = spec.kind != smf_format::SymbolKind::Import;
                let looks_imported = spec.value == 0 && spec.size == 0 && spec.binding != Binding::Local;
                if defined && looks_imported && self.dialect.marks_imports_by_value() {
                    spec.size = 1;
                }
                let index = self.builder.add_symbol(spec);
                if !defined {
                    self.imports.insert(name.to_vec(), index);
                }
                self.symbols.insert((f, symbol.index()), index);
            }
        }
    }

    /// The size of symbol `name` at `value`, defined in section `index` of object `f`, cut at the
    /// section's end with a note if it runs past it (a size is what debuggers and profilers
    /// read; `ld` takes any); `None`, with a problem, if the symbol starts past the end.
    pub(super) fn size_within_section(
        &mut self,
        f: usize,
        index: SectionIndex,
        name: &[u8],
        (value, size): (u64, u64),
    ) -> Option<u64> {
        let section_size = self.files[f].section_by_index(index).map_or(0, |s| s.size());
        let name = String::from_utf8_lossy(name).into_owned();
        if value > section_size {
            self.problem(f, PackError::SymbolOutsideSection { symbol: name, value, section_size });
            return None;
        }
        let room = section_size - value;
        if size > room {
            let text = format!("symbol {name}: size {size} runs past the end of its section, cut to {room}");
            self.notes.push(Note { routine: false, text });
        }
        Some(size.min(room))
    }

    /// Links each reference to another object's definition to that definition's SMF symbol.
    pub(super) fn link_references(&mut self) {
        for (reference, definition) in std::mem::take(&mut self.references) {
            if let Some(&index) = self.symbols.get(&definition) {
                self.symbols.insert(reference, index);
            }
        }
    }

    /// The local symbol standing for section `index` (its start), added the first time a
    /// relocation names it.
    pub(super) fn section_symbol(&mut self, f: usize, index: SectionIndex) -> Result<u32, PackError> {
        if let Some(&s) = self.section_symbols.get(&(f, index)) {
            return Ok(s);
        }
        let section = self.files[f].section_by_index(index)?;
        let name = section.name().unwrap_or("").as_bytes().to_vec();
        let Some(spec) = self.placed.get(&(f, index)).map(|p| p.symbol(&name, 0, 0)) else {
            return Err(PackError::UnloadedSection { section: String::from_utf8_lossy(&name).into_owned() });
        };
        let s = self.builder.add_symbol(spec.with_binding(Binding::Local));
        self.section_symbols.insert((f, index), s);
        Ok(s)
    }
}

/// Whether a definition of `symbol` gives way to another of the same name: weak, or one of
/// GCC's unique globals (`STB_GNU_UNIQUE`: one definition per process, which the static linker
/// keeps once among the objects that all carry it).
fn merges(symbol: &object::Symbol<'_, '_>) -> bool {
    let unique = matches!(symbol.flags(), object::SymbolFlags::Elf { st_info, .. }
        if st_info.st_bind() == object::elf::STB_GNU_UNIQUE);
    symbol.is_weak() || unique
}
