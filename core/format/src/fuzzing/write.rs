//! The `write` target: the module writer (`ModuleBuilder`, what `smf pack` and every tool that
//! makes modules write through) driven by operations decoded from the input: code, data,
//! read-only data, bss and call-array sections; symbols of every kind (defined, imported,
//! templates); relocations by kind and raw wire byte, in code and in data; a note, templates
//! in either form, template metadata; the header's placement, stub, entry point and flags. The
//! writer either refuses what it was given with a typed error, or writes a module that the
//! reader either refuses with a typed error (raw wire bytes and made-up offsets may make one)
//! or reads back with the symbols that were added, in order, with their names and kinds, and
//! the note that was set; whatever it wrote is then walked as the `parse` target walks input.

use alloc::string::String;
use alloc::vec::Vec;

use super::input::Input;

use crate::template::{MetaCategory, TemplateKind};
use crate::write::{ModuleBuilder, SectionSpec, SymbolSpec, TemplateSpec};
use crate::{
    CallArray, Dialect, HeaderPlacement, Module, ModuleFlags, RelocKind, SectionFlags, SectionType,
    SymbolKind,
};

/// Most operations one input makes.
const MAX_OPS: usize = 64;

/// A name: a few letters, sometimes the input's bytes as they are (NULs and all).
fn a_name(input: &mut Input<'_>) -> Vec<u8> {
    let pick = input.byte();
    if pick & 0xC0 == 0xC0 {
        return input.raw();
    }
    let mut name = alloc::vec![b's', b'a' + pick % 26];
    name.extend_from_slice(alloc::format!("{}", pick / 26).as_bytes());
    name
}

/// A symbol kind by byte.
fn kind(b: u8) -> SymbolKind {
    [SymbolKind::Function, SymbolKind::Data, SymbolKind::Import, SymbolKind::Type, SymbolKind::Constant]
        [usize::from(b) % 5]
}

/// A relocation kind by byte, among every kind but none and the aarch64 GOT pair (some not in
/// every dialect: the writer refuses those).
fn reloc_kind(b: u8) -> RelocKind {
    let kinds = &RelocKind::ALL[1..9];
    kinds[usize::from(b) % kinds.len()]
}

/// Builds the module `data` describes and checks the writer against the reader; returns the
/// number of symbols read back (or bytes formatted for a refusal).
pub fn fuzz_write(data: &[u8]) -> usize {
    let mut input = Input::new(data);
    let dialect = Dialect::ALL[usize::from(input.byte()) % Dialect::ALL.len()];
    let mut b = ModuleBuilder::new(dialect);
    // What the reader must find: every symbol added, in order; the note.
    let mut symbols: Vec<(Vec<u8>, SymbolKind)> = Vec::new();
    let mut note: Option<String> = None;
    let mut sections = 0u32;
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.byte() % 16 {
            0 => {
                let code = input.raw();
                b.add_code(b".text", &code);
                sections += 1;
            }
            1 => {
                let bytes = input.raw();
                b.add_data(b".data", &bytes);
                sections += 1;
            }
            2 => {
                let bytes = input.raw();
                b.add_rodata(b".rodata", &bytes);
                sections += 1;
            }
            3 => {
                let size = input.small(8);
                b.add_bss(b".bss", size);
                sections += 1;
            }
            4 => {
                let (name, k, value, size) =
                    (a_name(&mut input), kind(input.byte()), input.small(4), input.small(1));
                let spec = match k {
                    SymbolKind::Import => SymbolSpec::import(&name),
                    SymbolKind::Data => {
                        SymbolSpec::data(&name, u32::from(input.byte()) % (sections + 1), value, size)
                    }
                    other => SymbolSpec::new(&name, other, value, size),
                };
                // A dialect that marks imports by value reads any global symbol of value 0 and
                // size 0 as an import (the one rule, `SymbolKind::import_by_value`).
                let local = spec.binding == crate::Binding::Local;
                let by_value = SymbolKind::import_by_value(dialect, local, spec.value, spec.size, false);
                let read_as = if by_value { SymbolKind::Import } else { k };
                b.add_symbol(spec);
                symbols.push((name, read_as));
            }
            5 => {
                let (offset, symbol, kind, addend) = (
                    input.small(4),
                    u32::from(input.byte()),
                    reloc_kind(input.byte()),
                    i64::from(input.byte() as i8),
                );
                b.add_relocation(offset, symbol, kind, addend);
            }
            6 => {
                let (section, offset, symbol) =
                    (u32::from(input.byte()) % (sections + 1), input.small(8), input.byte());
                b.add_data_relocation(section, offset, u32::from(symbol), reloc_kind(input.byte()), 0);
            }
            7 => {
                let (offset, symbol, wire) = (input.small(4), u32::from(input.byte()), input.byte());
                b.add_raw_relocation(offset, symbol, wire, -4);
            }
            8 => {
                let (offset, symbol, wire) = (input.small(8), u32::from(input.byte()), input.byte());
                b.add_raw_data_relocation(offset, symbol, wire, 0);
            }
            9 => {
                let text = String::from_utf8_lossy(&input.raw()).into_owned();
                b.note_sdn(&text);
                note = Some(String::from(text.trim_end_matches('\n')));
            }
            10 => {
                let kinds =
                    [TemplateKind::Function, TemplateKind::Struct, TemplateKind::Trait, TemplateKind::Enum];
                let kind = kinds[usize::from(input.byte()) % kinds.len()];
                let name = a_name(&mut input);
                let params = (0..input.byte() % 4).map(|_| a_name(&mut input)).collect();
                let spec = TemplateSpec { kind, name: name.clone(), params, body: input.raw() };
                let read_as = match kind {
                    TemplateKind::Function => SymbolKind::Function,
                    TemplateKind::Trait => SymbolKind::Trait,
                    _ => SymbolKind::Type,
                };
                b.add_template_symbol(spec);
                symbols.push((name, read_as));
            }
            11 => {
                let categories = [
                    MetaCategory::Functions,
                    MetaCategory::Structs,
                    MetaCategory::Enums,
                    MetaCategory::Traits,
                ];
                let category = categories[usize::from(input.byte()) % categories.len()];
                let name = a_name(&mut input);
                b.add_template_meta(category, &name, u32::from(input.byte()));
            }
            12 => {
                let short = input.byte() & 1 == 1;
                b.short_form_templates(short);
            }
            13 => {
                let placement =
                    if input.byte() & 1 == 1 { HeaderPlacement::Trailer } else { HeaderPlacement::Start };
                b.placement(placement);
                let stub = input.raw();
                b.stub(&stub);
            }
            14 => {
                let (array, symbol) = (input.byte(), u32::from(input.byte()));
                let array = if array & 1 == 1 { CallArray::Constructors } else { CallArray::Destructors };
                b.add_call_array(array, &[(symbol, 0)]);
                sections += 1;
            }
            _ => {
                let (entry, flags) = (input.small(16), input.byte());
                b.entry_point(entry);
                b.header(|h| h.flags = ModuleFlags::from_bits_retain(u32::from(flags)));
                let spec = SectionSpec::new(SectionType::Data, b".extra", SectionFlags::READ, input.raw(), 8);
                b.add_section(spec);
                sections += 1;
            }
        }
    }
    let bytes = match b.build() {
        Ok(bytes) => bytes,
        Err(error) => return super::formatted(&error),
    };
    let read = match Module::parse(&bytes) {
        Ok(module) => read_back(&module, &symbols, note.as_deref()),
        Err(error) => super::formatted(&error),
    };
    read + super::fuzz_one(&bytes).min(1)
}

/// Checks that `module` holds `symbols` (names and kinds, in order) and the `note`; returns
/// the number of symbols.
fn read_back(module: &Module<'_>, symbols: &[(Vec<u8>, SymbolKind)], note: Option<&str>) -> usize {
    let read: Vec<(&[u8], SymbolKind)> = module.symbols().map(|s| (s.name, s.kind)).collect();
    assert_eq!(read.len(), symbols.len(), "symbols written {symbols:?}, read back {read:?}");
    for (i, ((name, kind), (read_name, read_kind))) in symbols.iter().zip(&read).enumerate() {
        assert_eq!((&name[..], *kind), (*read_name, *read_kind), "symbol {i} reads back otherwise");
    }
    if let Some(note) = note.filter(|n| !n.is_empty()) {
        let text = module.note_sdn().map(|n| n.text());
        assert_eq!(text, Some(note), "the note reads back otherwise");
    }
    read.len()
}
