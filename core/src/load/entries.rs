//! The loader's fast paths over the module's raw tables: symbol entries decoded straight from
//! their bytes when they are plain (nearly every symbol of a module), and relocation sections
//! walked as whole fixed-size entries.
//!
//! The format's rules are not restated here: the kind a symbol's entry declares is
//! [`SymbolKind::of_entry`]'s, where its value points is [`locate_symbol`]'s, both shared with
//! [`Module`]'s full decoder. What the fast path skips is only the work the full decoder does
//! for error reports and for entries it leaves to it (templates, and any entry that fails a
//! check, for which it answers `None`). `tests/tests/malformed.rs` checks that the loader
//! accepts no module full validation refuses, with the same symbols.

use crate::kinds::{Binding, SectionType, SymbolKind, SYMBOL_FLAG_TEMPLATE};
use crate::module::{locate_symbol, Symbol, SymbolTarget};
use crate::wire::relocation::RELOCATION_ENTRY_SIZE;
use crate::wire::SymbolView;
use crate::Module;

/// What the loader keeps of a decoded symbol until it is placed (its name stays in the string
/// table, found by offset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PendingSymbol {
    /// Where its name starts in the string table.
    pub(super) name_offset: u32,
    /// What it names.
    pub(super) kind: SymbolKind,
    /// Its binding.
    pub(super) binding: Binding,
    /// Whether it is a generic template.
    pub(super) template: bool,
    /// Where its value points.
    pub(super) target: SymbolTarget,
}

impl PendingSymbol {
    /// Whether other modules may see it ([`Symbol::is_exported`]'s rule).
    pub(super) fn is_exported(&self) -> bool {
        Symbol::visible_outside(self.kind, self.binding)
    }
}

impl From<Symbol<'_>> for PendingSymbol {
    fn from(s: Symbol<'_>) -> Self {
        let template = s.is_template();
        Self { name_offset: s.name_offset, kind: s.kind, binding: s.binding, template, target: s.target }
    }
}

/// The symbol table's entries from symbol `first` on, in order, one view each (the table holds
/// exactly the symbol count's entries: parsing cut it to that length).
pub(super) fn symbol_entries_from<'a>(
    module: &Module<'a>,
    first: usize,
) -> impl Iterator<Item = SymbolView<'a>> {
    let dialect = module.dialect();
    let size = dialect.symbol_entry_size();
    let table = module.symbol_table_bytes();
    let rest = first.checked_mul(size).and_then(|at| table.get(at..)).unwrap_or_default();
    rest.chunks_exact(size).map(move |entry| SymbolView::new_unchecked(entry, dialect))
}

/// The symbol whose whole entry is `view` when it is a plain one (not a template), decoded by
/// the rules [`Module::symbol_checked`] applies, except finding where its name ends: the caller
/// must refuse a name without its NUL. `data_section_size(index)` is the virtual size of
/// section `index` when it is a data, rodata or bss section (`None` otherwise), which the
/// caller has at hand. `None` for any other entry, valid or not, which
/// [`Module::symbol_checked`] decodes.
#[inline(always)]
pub(super) fn plain_symbol(
    module: &Module<'_>,
    view: &SymbolView<'_>,
    data_section_size: impl FnOnce(u32) -> Option<u64>,
) -> Option<PendingSymbol> {
    let head = view.head()?;
    let name_offset = head.name_offset();
    if name_offset as usize >= module.strings().len() || head.flags() & SYMBOL_FLAG_TEMPLATE != 0 {
        return None;
    }
    let dialect = module.dialect();
    let declared = SymbolKind::from_wire(dialect, head.sym_type())?;
    let binding = Binding::from_wire(head.binding())?;

    let (value, size) = (head.value(), head.size());
    let kind = SymbolKind::of_entry(dialect, declared, binding, value, size, false);
    let target =
        locate_symbol(kind, || view.section_index(), value, size, module.code_size(), data_section_size)?;
    Some(PendingSymbol { name_offset, kind, binding, template: false, target })
}

/// Calls `f(entries, first_index, file_offset)` on every relocation section's entries, in
/// table order (whole entries; with the index of the section's first relocation and the file
/// offset of its first entry), for loops that check them as [`Module::decode_relocation`] does.
#[inline(always)]
pub(super) fn for_each_relocation_table<'a, E>(
    module: &Module<'a>,
    mut f: impl FnMut(RelocationEntries<'a>, u64, u64) -> Result<(), E>,
) -> Result<(), E> {
    let mut first = 0u64;
    for section in module.sections() {
        if section.section_type == SectionType::Relocations {
            let entries = RelocationEntries(section.data.chunks_exact(RELOCATION_ENTRY_SIZE));
            let count = entries.0.len() as u64;
            f(entries, first, section.file_offset)?;
            first += count;
        }
    }
    Ok(())
}

/// Where `entry`, one of the module's relocation entries, lies: its index (in table order,
/// across sections) and its file offset; `None` if it is not one of them. Found by address, so
/// that loops over the entries need not count them.
pub(super) fn relocation_position(
    module: &Module<'_>,
    entry: &[u8; RELOCATION_ENTRY_SIZE],
) -> Option<(u64, u64)> {
    let addr = entry.as_ptr() as usize;
    let found = for_each_relocation_table(module, |entries, first, at| {
        let Some(first_entry) = entries.0.clone().next() else { return Ok(()) };
        let offset = addr.wrapping_sub(first_entry.as_ptr() as usize);
        // On an entry boundary of this section: sections that overlap the file's bytes at
        // another alignment do not claim it. (Where two sections hold the same entry, the
        // first one's copy is the one a pass reaches first.)
        if offset < entries.0.len() * RELOCATION_ENTRY_SIZE && offset % RELOCATION_ENTRY_SIZE == 0 {
            let offset = offset as u64;
            let index = first.checked_add(offset / RELOCATION_ENTRY_SIZE as u64);
            return Err(index.zip(at.checked_add(offset)));
        }
        Ok(())
    });
    found.err().flatten()
}

/// The whole entries of one relocation section, as fixed-size arrays.
pub(super) struct RelocationEntries<'a>(core::slice::ChunksExact<'a, u8>);

impl<'a> Iterator for RelocationEntries<'a> {
    type Item = &'a [u8; RELOCATION_ENTRY_SIZE];

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        // Every chunk is exactly one entry long, so `first_chunk` always succeeds.
        self.0.by_ref().find_map(<[u8]>::first_chunk)
    }
}

/// Every symbol's size, in table order, read from the raw entries (validated by the symbol
/// pass already); `None` if the memory for them cannot be had.
pub(super) fn symbol_sizes(module: &Module<'_>) -> Option<alloc::vec::Vec<u64>> {
    let mut sizes = super::fallible::with_capacity(module.symbol_count() as usize)?;
    let table = module.symbol_table_bytes();
    sizes.extend(crate::wire::symbol::sizes(table, module.dialect().symbol_entry_size()));
    Some(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write::{ModuleBuilder, SectionSpec, SymbolSpec};
    use crate::{Dialect, RelocKind};
    use alloc::vec::Vec;

    #[test]
    fn relocation_entries_are_found_by_address_across_sections() {
        let mut b = ModuleBuilder::new(Dialect::S128);
        b.add_code(b".text", &[0xC3; 64]);
        b.add_symbol(SymbolSpec::function(b"f", 0, 1));
        // A section of three raw entries (first in the table), then the builder's two.
        let mut raw = alloc::vec![0u8; 3 * RELOCATION_ENTRY_SIZE];
        for (i, entry) in raw.chunks_exact_mut(RELOCATION_ENTRY_SIZE).enumerate() {
            entry[0] = 8 * u8::try_from(i).unwrap();
            entry[12] = RelocKind::Abs64.to_wire(Dialect::S128).unwrap();
        }
        b.add_section(SectionSpec::new(SectionType::Relocations, b".rela.raw", 0, raw, 8));
        b.add_relocation(40, 0, RelocKind::Abs64, 0);
        b.add_relocation(48, 0, RelocKind::Abs64, 0);
        let file = b.build().unwrap();
        let module = Module::parse(&file).unwrap();
        let sections: Vec<_> =
            module.sections().filter(|s| s.section_type == SectionType::Relocations).collect();
        assert_eq!(sections.len(), 2);

        let mut index = 0;
        for section in &sections {
            for (i, entry) in section.data.chunks_exact(RELOCATION_ENTRY_SIZE).enumerate() {
                let entry: &[u8; RELOCATION_ENTRY_SIZE] = entry.try_into().unwrap();
                let at = section.file_offset + (i * RELOCATION_ENTRY_SIZE) as u64;
                assert_eq!(relocation_position(&module, entry), Some((index, at)));
                assert_eq!(&file[usize::try_from(at).unwrap()..][..RELOCATION_ENTRY_SIZE], entry);
                index += 1;
            }
        }
        assert_eq!(index, 5);
        // Bytes inside a section but not on an entry boundary, and bytes elsewhere, are no entry.
        let misaligned: &[u8; RELOCATION_ENTRY_SIZE] = sections[0].data[8..32].try_into().unwrap();
        assert_eq!(relocation_position(&module, misaligned), None);
        let elsewhere: &[u8; RELOCATION_ENTRY_SIZE] = file[..RELOCATION_ENTRY_SIZE].try_into().unwrap();
        assert_eq!(relocation_position(&module, elsewhere), None);
    }
}
