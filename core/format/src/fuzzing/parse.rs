//! The `parse` target: every way of parsing a module, and every walk a valid one allows.
//!
//! Nothing here skips an integrity check: the format layer never rejects a file for a wrong
//! stored name hash (it recomputes hashes), so the fuzzer reaches every validation step as is.

use crate::kinds::{arch_name, platform_name, Binding};
use crate::{Dialect, Module, ParseOptions, SectionType};

/// Parses `data` in every way a caller can, and walks everything a valid module exposes.
///
/// Returns how many items were visited, so the optimizer cannot drop the walk.
pub fn fuzz_one(data: &[u8]) -> usize {
    let mut visited = 0;
    let auto = Module::parse(data);
    for dialect in Dialect::ALL {
        let options = ParseOptions { dialect: Some(dialect), max_image_bytes: 1 << 24 };
        match Module::parse_with(data, &options) {
            Ok(module) => visited += walk(&module),
            Err(error) => visited += super::formatted(&error),
        }
    }
    match auto {
        Ok(module) => visited += walk(&module),
        Err(error) => visited += super::formatted(&error),
    }
    visited
}

fn walk(module: &Module<'_>) -> usize {
    let mut visited = described(module);
    visited += module.sections().count();
    visited += module.code_sections().count() + module.data_sections().count();
    visited += module.symbols().count();
    // Per-symbol lookups scan the table: a few of them cover the code, all would be O(n^2).
    for symbol in module.symbols().take(8) {
        if let Some(found) = module.find_export(symbol.name) {
            visited += found.name.len().min(1);
        }
        visited += module.template_of(&symbol).map_or(0, |t| t.params().count());
    }
    #[cfg(feature = "alloc")]
    {
        visited += module
            .template_entries()
            .unwrap_or_default()
            .iter()
            .map(|(_, t)| t.params().count())
            .sum::<usize>();
    }
    visited += module.relocations().count();
    if let Some(note) = module.note_sdn() {
        for table in note.tables() {
            visited += table.columns().count();
            for row in table.rows() {
                visited += row.fields().map(|f| f.chars().count()).sum::<usize>();
            }
        }
    }
    if let Some(code) = module.template_code() {
        visited += code.short_entries().take(1 << 16).count();
    }
    if let Some(meta) = module.template_meta() {
        visited += meta.entries().count();
    }
    visited
}

/// What `smf inspect` names of a valid module (its header, its sections' and symbols' kinds),
/// with the wire values of each kind read back as the kind.
fn described(module: &Module<'_>) -> usize {
    let header = module.header();
    let mut visited = arch_name(header.arch).len() + platform_name(header.platform).len();
    visited += header.flags.names().map(str::len).sum::<usize>();
    for section in module.sections() {
        let kind = section.section_type;
        assert_eq!(SectionType::from_wire(kind.to_wire()), kind, "a section type reads back otherwise");
        visited += kind.name().len() + usize::from(kind.is_data());
    }
    for symbol in module.symbols().take(64) {
        assert_eq!(Binding::from_wire(symbol.binding.to_wire()), Some(symbol.binding));
        visited += symbol.kind.name().len() + symbol.binding.name().len();
    }
    for relocation in module.relocations().take(64) {
        visited += relocation.kind.name().len();
    }
    visited
}
