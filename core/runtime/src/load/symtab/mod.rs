//! A loaded module's symbols: owned names, addresses and sizes, in table order
//! ([`SymbolTable`], filled by the link stage through `SymbolTableBuilder`), and the index of
//! the exported names that lookups make when they first need it (`lookup.rs`).

mod lookup;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::sync::atomic::AtomicU32;

use crate::lru::KeyedHasher;
pub(super) use lookup::bucket_count;
use lookup::NameIndex;
#[cfg(test)]
use lookup::SCANNED_LOOKUPS;
use smf_format::{Binding, SymbolKind};

/// One symbol of a loaded module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadedSymbol {
    /// Where its name starts in the string table.
    pub(crate) name_start: u32,
    /// Its name's length (a NUL follows it).
    pub(crate) name_len: u32,
    /// The size its entry gives, if below `u32::MAX` (in what would be padding); `u32::MAX`
    /// for a larger one, which the table keeps apart ([`SymbolTable::size`]).
    pub(crate) size: u32,
    /// What it names.
    pub kind: SymbolKind,
    /// Its binding.
    pub binding: Binding,
    /// Its address: where a defined symbol lives, where an import resolved to (0 for symbols
    /// without one: types, traits, templates, unresolved weak imports).
    pub addr: usize,
    /// Whether other modules can see it.
    pub exported: bool,
    /// Whether it is a generic template.
    pub template: bool,
}

impl LoadedSymbol {
    /// A placeholder for tests to fill in.
    #[cfg(test)]
    pub(crate) const UNSET: LoadedSymbol = LoadedSymbol {
        name_start: 0,
        name_len: 0,
        size: 0,
        kind: SymbolKind::Import,
        binding: Binding::Local,
        addr: 0,
        exported: false,
        template: false,
    };
}

/// The symbols of a loaded module, in table order, with a hash index of the exported ones
/// made when first needed (`lookup.rs` says when).
///
/// The loader fills it while it decodes the symbols, one `SymbolTableBuilder::push` per
/// symbol.
#[derive(Debug)]
pub struct SymbolTable {
    /// The string table: every name followed by a NUL, so names can be handed to C as they are.
    names: Vec<u8>,
    symbols: Vec<LoadedSymbol>,
    /// The sizes of `u32::MAX` bytes or more, by symbol index, in table order (rare: a
    /// symbol's own field holds the others).
    large_sizes: Vec<(usize, u64)>,
    /// The names' hasher ([`KeyedHasher::per_process`]).
    hasher: KeyedHasher,
    /// The index of the exported names, once made (while the memory for it cannot be had,
    /// lookups scan, and the next one tries again).
    index: spin::Once<NameIndex>,
    /// Lookups answered by scanning so far (counted up to `SCANNED_LOOKUPS`).
    scans: AtomicU32,
}

impl Default for SymbolTable {
    fn default() -> Self {
        Self::over(Vec::new(), Vec::new(), Vec::new(), KeyedHasher::per_process())
    }
}

impl Clone for SymbolTable {
    fn clone(&self) -> Self {
        let table =
            Self::over(self.names.clone(), self.symbols.clone(), self.large_sizes.clone(), self.hasher);
        if let Some(index) = self.index.get() {
            table.index.call_once(|| index.clone());
        }
        table
    }
}

/// A [`SymbolTable`] being filled, symbol by symbol, in table order.
pub(crate) struct SymbolTableBuilder {
    table: SymbolTable,
    /// How many symbols it takes.
    capacity: usize,
}

/// Why [`SymbolTableBuilder::push`] refused a symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The table holds as many symbols as it was made for.
    Full,
    /// The name is not followed by a NUL inside the string table.
    NameOutside,
    /// No memory to keep a size of `u32::MAX` bytes or more.
    OutOfMemory,
}

impl SymbolTableBuilder {
    /// An empty table over the string table `names` for up to `capacity` symbols, whose hashes
    /// are [`KeyedHasher::hash32`]es under `hasher`; `None` if the memory for it cannot be had.
    pub(crate) fn new(names: Vec<u8>, capacity: usize, hasher: KeyedHasher) -> Option<Self> {
        let symbols = super::fallible::with_capacity(capacity)?;
        Some(Self { table: SymbolTable::over(names, symbols, Vec::new(), hasher), capacity })
    }

    /// Appends `symbol`, whose name lies at `name_start..name_start + name_len` followed by a
    /// NUL (the table hands names to C as they are), with the size its entry gives; refused
    /// if the name is not there or the table is full, or if a size of `u32::MAX` bytes or
    /// more finds no memory to be kept in.
    #[inline(always)]
    pub(crate) fn push(&mut self, mut symbol: LoadedSymbol, size: u64) -> Result<(), Refused> {
        let table = &mut self.table;
        if table.symbols.len() == self.capacity {
            return Err(Refused::Full);
        }
        let end = (symbol.name_start as usize).checked_add(symbol.name_len as usize);
        if end.and_then(|end| table.names.get(end)) != Some(&0) {
            return Err(Refused::NameOutside);
        }
        symbol.size = match u32::try_from(size) {
            Ok(small) if small != u32::MAX => small,
            _ => {
                let large = (table.symbols.len(), size);
                super::fallible::push(&mut table.large_sizes, large).ok_or(Refused::OutOfMemory)?;
                u32::MAX
            }
        };
        table.symbols.push(symbol);
        Ok(())
    }

    /// The table, holding the symbols pushed so far.
    pub(crate) fn finish(self) -> SymbolTable {
        self.table
    }
}

impl SymbolTable {
    /// A table of `symbols` (with their `large_sizes`) over the string table `names`, not
    /// indexed.
    fn over(
        names: Vec<u8>,
        symbols: Vec<LoadedSymbol>,
        large_sizes: Vec<(usize, u64)>,
        hasher: KeyedHasher,
    ) -> Self {
        Self { names, symbols, large_sizes, hasher, index: spin::Once::new(), scans: AtomicU32::new(0) }
    }

    /// Whether two symbols have the same name.
    #[inline(never)]
    fn same_name(&self, a: &LoadedSymbol, b: &LoadedSymbol) -> bool {
        // Slices compare their lengths first.
        self.name_of(a).is_some_and(|name| self.name_of(b) == Some(name))
    }

    fn name_of(&self, s: &LoadedSymbol) -> Option<&[u8]> {
        self.names.get(s.name_start as usize..)?.get(..s.name_len as usize)
    }

    /// The number of symbols.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// Symbol `index`.
    pub fn get(&self, index: usize) -> Option<&LoadedSymbol> {
        self.symbols.get(index)
    }

    /// Every symbol's address, in table order, to be set once the image is placed.
    pub(crate) fn addresses_mut(&mut self) -> impl ExactSizeIterator<Item = &mut usize> {
        self.symbols.iter_mut().map(|symbol| &mut symbol.addr)
    }

    /// The string table: every symbol's name, each followed by a NUL (a symbol's name starts
    /// at [`SymbolTable::name_offset`]).
    pub fn names(&self) -> &[u8] {
        &self.names
    }

    /// Where symbol `index`'s name starts in [`SymbolTable::names`].
    pub fn name_offset(&self, index: usize) -> Option<u32> {
        self.symbols.get(index).map(|s| s.name_start)
    }

    /// The size symbol `index`'s entry gives.
    pub fn size(&self, index: usize) -> Option<u64> {
        match self.symbols.get(index)?.size {
            u32::MAX => {
                let at = self.large_sizes.binary_search_by_key(&index, |&(i, _)| i).ok()?;
                self.large_sizes.get(at).map(|&(_, size)| size)
            }
            small => Some(u64::from(small)),
        }
    }

    /// The name of symbol `index`.
    pub fn name(&self, index: usize) -> Option<&[u8]> {
        self.symbols.get(index).and_then(|s| self.name_of(s))
    }

    /// The name of symbol `index` with its terminating NUL.
    pub fn name_with_nul(&self, index: usize) -> Option<&[u8]> {
        let s = self.symbols.get(index)?;
        self.names.get(s.name_start as usize..)?.get(..s.name_len as usize + 1)
    }

    /// All symbols in table order.
    pub fn iter(&self) -> impl Iterator<Item = &LoadedSymbol> {
        self.symbols.iter()
    }
}
