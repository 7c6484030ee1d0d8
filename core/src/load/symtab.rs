//! A loaded module's symbols: owned names and addresses, with a hash index over the exported
//! ones built at load time with the loader's own keyed hash of the validated names
//! (`load::namehash`; the file's stored FNV-1a hashes are never trusted).

use alloc::vec;
use alloc::vec::Vec;

use super::namehash;
use crate::{Binding, SymbolKind};

/// One symbol of a loaded module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadedSymbol {
    name_start: u32,
    name_len: u32,
    hash: u32,
    /// What it names.
    pub kind: SymbolKind,
    /// Its binding.
    pub binding: Binding,
    /// Its address (0 for symbols without one: types, traits, templates, unresolved weak imports).
    pub addr: usize,
    /// Whether other modules can see it.
    pub exported: bool,
    /// Whether it is a generic template.
    pub template: bool,
}

/// The symbols of a loaded module, in table order, with a hash index of the exported ones.
///
/// Built in one pass: [`SymbolTable::new`] takes the module's string table (names stay where
/// the file put them, NUL-terminated) and the symbol count, which bounds the index's size;
/// [`SymbolTable::push`] appends a symbol and indexes it if it is exported.
#[derive(Clone, Debug, Default)]
pub struct SymbolTable {
    /// The string table: every name followed by a NUL, so names can be handed to C as they are.
    names: Vec<u8>,
    symbols: Vec<LoadedSymbol>,
    /// Open addressing: symbol index + 1 per bucket, 0 for empty; the length is a power of two
    /// of at least twice the number of symbols.
    buckets: Vec<u32>,
    /// The key of the names' hashes ([`namehash::key`]).
    key: u64,
}

impl LoadedSymbol {
    /// A placeholder, overwritten before a table is built from it.
    pub(crate) const UNSET: LoadedSymbol = LoadedSymbol {
        name_start: 0,
        name_len: 0,
        hash: 0,
        kind: SymbolKind::Import,
        binding: Binding::Local,
        addr: 0,
        exported: false,
        template: false,
    };

    /// The symbol `symbol` describes, named by the `name_len` bytes at `name_start` in the
    /// string table, whose FNV-1a hash is `hash`; no address yet.
    #[inline(always)]
    pub(crate) const fn new(name_start: u32, name_len: u32, hash: u32, symbol: &NewSymbol) -> Self {
        LoadedSymbol {
            name_start,
            name_len,
            hash,
            kind: symbol.kind,
            binding: symbol.binding,
            addr: 0,
            exported: symbol.exported,
            template: symbol.template,
        }
    }

    /// Sets its address.
    #[inline(always)]
    pub(crate) fn set_addr(&mut self, addr: usize) {
        self.addr = addr;
    }
}

/// A symbol to append to a [`SymbolTable`].
#[derive(Clone, Copy, Debug)]
pub struct NewSymbol {
    /// Where its name starts in the string table (it ends at the next NUL).
    pub name_offset: u32,
    /// What it names.
    pub kind: SymbolKind,
    /// Its binding.
    pub binding: Binding,
    /// Whether other modules can see it (only these are indexed).
    pub exported: bool,
    /// Whether it is a generic template.
    pub template: bool,
}

impl SymbolTable {
    /// An empty table over the string table `strings` (copied), with room for `count` symbols.
    pub fn new(strings: &[u8], count: usize) -> Self {
        Self {
            names: strings.to_vec(),
            symbols: Vec::with_capacity(count),
            buckets: vec![0; bucket_count(count)],
            key: namehash::key(),
        }
    }

    /// A table over the string table `names` holding `symbols` (each made by
    /// [`LoadedSymbol::new`] with its name's [`namehash`] under `key`), with the exported ones
    /// indexed (the first of duplicate names
    /// wins). `None` if a symbol's name and its NUL do not lie in `names`. The loader's way to
    /// build a table: it decodes all symbols into a slice first, then indexes them in one tight
    /// loop over memory it just wrote.
    pub(crate) fn from_parts(names: Vec<u8>, symbols: Vec<LoadedSymbol>, key: u64) -> Option<Self> {
        let mut buckets = vec![0; bucket_count(symbols.len())];
        for (index, symbol) in symbols.iter().enumerate() {
            let name_end = (symbol.name_start as usize).checked_add(symbol.name_len as usize)?;
            if names.get(name_end) != Some(&0) {
                return None;
            }
            if symbol.exported {
                insert(&mut buckets, &symbols, &names, index)?;
            }
        }
        Some(Self { names, symbols, buckets, key })
    }

    /// Appends a symbol, indexing it if it is exported (the first of duplicate names wins), and
    /// returns its name. Returns `None`, appending nothing, if its name does not lie
    /// NUL-terminated in the string table or the index has no room left (it holds at least the
    /// count given to [`SymbolTable::new`], and stays at most half full). The name is measured
    /// and hashed in one pass.
    pub fn push(&mut self, symbol: NewSymbol) -> Option<&[u8]> {
        let start = symbol.name_offset as usize;
        let index = self.symbols.len();
        let (len, hash) = namehash::hash_until_nul(self.key, self.names.get(start..)?)?;
        if index >= self.buckets.len() / 2 {
            return None;
        }
        self.symbols.push(LoadedSymbol::new(symbol.name_offset, u32::try_from(len).ok()?, hash, &symbol));
        if symbol.exported {
            insert(&mut self.buckets, &self.symbols, &self.names, index)?;
        }
        Some(&self.names[start..start + len])
    }

    /// Sets the address of symbol `index` (no effect past the end).
    pub fn set_addr(&mut self, index: usize, addr: usize) {
        if let Some(s) = self.symbols.get_mut(index) {
            s.addr = addr;
        }
    }

    fn name_of(&self, s: &LoadedSymbol) -> &[u8] {
        &self.names[s.name_start as usize..][..s.name_len as usize]
    }

    /// Number of symbols.
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

    /// The name of symbol `index`.
    pub fn name(&self, index: usize) -> Option<&[u8]> {
        self.symbols.get(index).map(|s| self.name_of(s))
    }

    /// The name of symbol `index` with its terminating NUL.
    pub fn name_with_nul(&self, index: usize) -> Option<&[u8]> {
        self.symbols.get(index).map(|s| &self.names[s.name_start as usize..][..s.name_len as usize + 1])
    }

    /// All symbols in table order.
    pub fn iter(&self) -> impl Iterator<Item = &LoadedSymbol> {
        self.symbols.iter()
    }

    /// The exported symbol named `name`.
    pub fn lookup(&self, name: &[u8]) -> Option<&LoadedSymbol> {
        if self.buckets.is_empty() {
            return None;
        }
        let hash = namehash::hash(self.key, name);
        let mask = self.buckets.len() - 1;
        let mut b = hash as usize & mask;
        loop {
            let slot = self.buckets[b];
            if slot == 0 {
                return None;
            }
            let s = &self.symbols[slot as usize - 1];
            if s.hash == hash && s.name_len as usize == name.len() && same_bytes(self.name_of(s), name) {
                return Some(s);
            }
            b = (b + 1) & mask;
        }
    }
}

/// Enters symbol `index` of `symbols` (exported, its name inside `names`) in the open-addressing
/// index `buckets`, unless a symbol of the same name is there already. `None` if its slot
/// number does not fit a bucket.
#[inline(always)]
fn insert(buckets: &mut [u32], symbols: &[LoadedSymbol], names: &[u8], index: usize) -> Option<()> {
    let slot = u32::try_from(index + 1).ok()?;
    let symbol = symbols.get(index)?;
    let name_of = |s: &LoadedSymbol| names.get(s.name_start as usize..)?.get(..s.name_len as usize);
    let name = name_of(symbol)?;
    let mask = buckets.len() - 1;
    let mut b = symbol.hash as usize & mask;
    loop {
        match buckets[b] {
            0 => break,
            taken => {
                let other = symbols.get(taken as usize - 1)?;
                if other.hash == symbol.hash
                    && other.name_len == symbol.name_len
                    && name_of(other) == Some(name)
                {
                    return Some(()); // duplicate: keep the first
                }
            }
        }
        b = (b + 1) & mask;
    }
    buckets[b] = slot;
    Some(())
}

/// Buckets for an index of up to `count` symbols: a power of two, at least twice `count`, so
/// that the index stays at most half full.
fn bucket_count(count: usize) -> usize {
    count.saturating_mul(2).checked_next_power_of_two().unwrap_or(usize::MAX).max(8)
}

/// Whether two names of the same length are equal, compared inline: names are short, and the
/// hashes already matched, so a call to `memcmp` would cost more than the comparison.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.iter().zip(b).all(|(x, y)| x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A string table holding `names` and the matching symbols.
    fn table(names: &[(&[u8], Binding, bool)]) -> SymbolTable {
        let mut strings = vec![0u8];
        let mut offsets = Vec::new();
        for (name, _, _) in names {
            offsets.push(u32::try_from(strings.len()).unwrap());
            strings.extend_from_slice(name);
            strings.push(0);
        }
        let mut t = SymbolTable::new(&strings, names.len());
        for (i, &(name, binding, exported)) in names.iter().enumerate() {
            let symbol = NewSymbol {
                name_offset: offsets[i],
                kind: SymbolKind::Function,
                binding,
                exported,
                template: false,
            };
            assert_eq!(t.push(symbol), Some(name));
            t.set_addr(i, 0x1000 + i);
        }
        t
    }

    #[test]
    fn exported_symbols_are_found_and_local_ones_are_not() {
        let many: Vec<alloc::string::String> = (0..100).map(|i| alloc::format!("f{i}")).collect();
        let mut names: Vec<(&[u8], Binding, bool)> = vec![
            (b"main", Binding::Global, true),
            (b"helper", Binding::Local, false),
            (b"main", Binding::Global, true),
        ];
        names.extend(many.iter().map(|n| (n.as_bytes(), Binding::Weak, true)));
        let t = table(&names);
        assert_eq!(t.lookup(b"main").map(|s| s.addr), Some(0x1000), "the first duplicate wins");
        assert_eq!(t.lookup(b"helper"), None);
        assert_eq!(t.lookup(b"f57").map(|s| s.addr), Some(0x1000 + 3 + 57));
        assert_eq!(t.lookup(b"f100"), None);
        assert_eq!(t.name_with_nul(1), Some(&b"helper\0"[..]));
        assert_eq!(t.len(), 103);
    }

    #[test]
    fn names_outside_the_string_table_and_extra_symbols_are_refused() {
        let mut t = SymbolTable::new(b"\0ab\0cd", 2);
        let symbol = |name_offset| NewSymbol {
            name_offset,
            kind: SymbolKind::Data,
            binding: Binding::Global,
            exported: true,
            template: false,
        };
        assert_eq!(t.push(symbol(4)), None, "no NUL after the name");
        assert_eq!(t.push(symbol(6)), None, "at the end");
        assert_eq!(t.push(symbol(9)), None, "past the end");
        assert_eq!(t.push(symbol(2)), Some(&b"b"[..]), "a name may start inside another");
        // Room for 2 symbols means 8 buckets (the minimum), which stay at most half full.
        for _ in 0..3 {
            assert_eq!(t.push(symbol(1)), Some(&b"ab"[..]));
        }
        assert_eq!(t.push(symbol(1)), None, "the index would be more than half full");
        assert_eq!(t.len(), 4);
        assert_eq!(t.name(0), Some(&b"b"[..]));
        assert_eq!(t.lookup(b"ab").map(|s| s.name_len), Some(2));
    }

    #[test]
    fn a_table_built_from_decoded_symbols_indexes_the_exported_ones() {
        let strings = b"\0main\0helper\0";
        let key = namehash::key();
        let symbol = |name_offset: u32, exported| NewSymbol {
            name_offset,
            kind: SymbolKind::Function,
            binding: if exported { Binding::Global } else { Binding::Local },
            exported,
            template: false,
        };
        let decoded = |name_offset: u32, len: u32, exported| {
            let name = &strings[name_offset as usize..][..len as usize];
            LoadedSymbol::new(name_offset, len, namehash::hash(key, name), &symbol(name_offset, exported))
        };
        let symbols = vec![decoded(1, 4, true), decoded(6, 6, false), decoded(1, 4, true)];
        let mut t = SymbolTable::from_parts(strings.to_vec(), symbols, key).unwrap();
        for i in 0..3 {
            t.set_addr(i, 0x100 + i);
        }
        assert_eq!(t.lookup(b"main").map(|s| s.addr), Some(0x100), "the first duplicate wins");
        assert_eq!(t.lookup(b"helper"), None, "local symbols are not indexed");
        assert_eq!(t.name(1), Some(&b"helper"[..]));
        assert_eq!(t.len(), 3);
        // A name whose end is not a NUL inside the string table is refused.
        assert!(SymbolTable::from_parts(strings.to_vec(), vec![decoded(1, 3, true)], key).is_none());
        let past_the_end = LoadedSymbol::new(13, 4, 0, &symbol(13, false));
        assert!(SymbolTable::from_parts(strings.to_vec(), vec![past_the_end], key).is_none());
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_loaded_symbol_takes_24_bytes() {
        // The symbol pass writes one per symbol and lookups read one per probe: kept small.
        assert_eq!(core::mem::size_of::<LoadedSymbol>(), 24);
    }
}
