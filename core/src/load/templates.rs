//! The templates a loaded module keeps for load-time instantiation: a copy of its template-code
//! section and each template symbol's entry in it, indexed by name. Entries are located by the
//! rules [`Module`]'s own reader applies ([`crate::Module::template_entries`]): an entry runs
//! to the next entry another template symbol points at, or to the end of the section, and one
//! that does not parse is left out.
//!
//! A load sorts the entries' offsets once and the index by name hash once (`n log n` for `n`
//! template symbols); finding a template is then a binary search, so asking for every template
//! of a module costs `n log n` too, never `n²`.

use alloc::vec::Vec;

use super::symtab::SymbolTable;
use super::{entries, fallible, LoadError};
use crate::cache::KeyedHasher;
use crate::Module;

/// A loaded module's templates.
#[derive(Debug, Default)]
pub(super) struct Templates {
    /// The template-code section's bytes (empty without templates).
    code: Vec<u8>,
    /// Every template symbol whose entry parses, sorted by (name hash, symbol index).
    index: Vec<Entry>,
}

/// One template symbol's entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    /// Its name's [`KeyedHasher::hash32`] under the process's key.
    hash: u32,
    /// Its index in the symbol table (of duplicate names, the first one's entry is found).
    symbol: u32,
    /// Where its entry starts and ends in the section.
    start: usize,
    end: usize,
}

impl Templates {
    /// The templates of `module`, whose symbols (validated) are `symbols`.
    pub(super) fn copy(module: &Module<'_>, symbols: &SymbolTable) -> Result<Self, LoadError> {
        let Some(section) = module.template_code().filter(|_| module.dialect().has_symbol_extension()) else {
            return Ok(Self::default());
        };
        let count = symbols.iter().filter(|s| s.template).count();
        if count == 0 {
            return Ok(Self::default());
        }
        let oom = |bytes| LoadError::OutOfMemory { bytes };
        // Every template symbol's entry offset; sorted, each entry's end is the next one.
        let mut starts: Vec<(u32, u64)> =
            fallible::with_capacity(count).ok_or(oom(fallible::bytes_of::<(u32, u64)>(count)))?;
        for (index, _) in symbols.iter().enumerate().filter(|(_, s)| s.template) {
            let view = entries::symbol_entries_from(module, index).next().ok_or(LoadError::Internal)?;
            let index = u32::try_from(index).map_err(|_| LoadError::Internal)?;
            starts.push((index, view.template_offset()));
        }
        let mut offsets: Vec<u64> =
            fallible::with_capacity(count).ok_or(oom(fallible::bytes_of::<u64>(count)))?;
        offsets.extend(starts.iter().map(|&(_, offset)| offset));
        crate::sort::heapsort(&mut offsets);
        offsets.dedup();

        let hasher = KeyedHasher::per_process();
        let mut index: Vec<Entry> =
            fallible::with_capacity(count).ok_or(oom(fallible::bytes_of::<Entry>(count)))?;
        for &(symbol, offset) in &starts {
            let next = offsets.partition_point(|&o| o <= offset);
            let end = offsets.get(next).copied().unwrap_or(section.len());
            // Parsing an entry reads its prefix and at most 255 parameter names, whatever its
            // extent: bounded per symbol.
            let Ok(entry) = section.entry_at(offset, end) else { continue };
            let name = symbols.name(symbol as usize).ok_or(LoadError::Internal)?;
            let start = usize::try_from(offset).map_err(|_| LoadError::Internal)?;
            let end = start.checked_add(entry.bytes.len()).ok_or(LoadError::Internal)?;
            index.push(Entry { hash: hasher.hash32(name), symbol, start, end });
        }
        crate::sort::heapsort(&mut index);
        let code = fallible::copied(section.bytes()).ok_or(oom(section.bytes().len()))?;
        Ok(Self { code, index })
    }

    /// The template-code entry of the template symbol `name` (the first such symbol whose
    /// entry parses).
    pub(super) fn entry(&self, symbols: &SymbolTable, name: &[u8]) -> Option<&[u8]> {
        let hash = KeyedHasher::per_process().hash32(name);
        let first = self.index.partition_point(|e| e.hash < hash);
        let mut found = self.index.get(first..)?.iter().take_while(|e| e.hash == hash);
        let entry = found.find(|e| symbols.name(e.symbol as usize) == Some(name))?;
        self.code.get(entry.start..entry.end)
    }
}
