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
    /// Where its name starts in the string table.
    pub(crate) name_start: u32,
    /// Its name's length (a NUL follows it).
    pub(crate) name_len: u32,
    /// Its name's [`namehash::hash`] under the table's key.
    pub(crate) hash: u32,
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
}

/// The symbols of a loaded module, in table order, with a hash index of the exported ones.
///
/// The loader decodes every symbol into a slice first and then builds the table from it with
/// `SymbolTable::from_parts`, indexing them in one tight loop over memory it just wrote.
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

impl SymbolTable {
    /// A table over the string table `names` holding `symbols` (each with its name's
    /// [`namehash::hash`] under `key`), with the exported ones indexed (the first of duplicate
    /// names wins). `None` if a symbol's name and its NUL do not lie in `names`.
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

    /// A table over a string table holding `names`, one function symbol per name (`exported`
    /// or local), symbol `i` at address `0x1000 + i`.
    fn table(names: &[(&[u8], bool)]) -> SymbolTable {
        let key = namehash::key();
        let mut strings = vec![0u8];
        let mut symbols = Vec::new();
        for (i, &(name, exported)) in names.iter().enumerate() {
            symbols.push(LoadedSymbol {
                name_start: u32::try_from(strings.len()).unwrap(),
                name_len: u32::try_from(name.len()).unwrap(),
                hash: namehash::hash(key, name),
                kind: SymbolKind::Function,
                binding: if exported { Binding::Global } else { Binding::Local },
                addr: 0x1000 + i,
                exported,
                template: false,
            });
            strings.extend_from_slice(name);
            strings.push(0);
        }
        SymbolTable::from_parts(strings, symbols, key).unwrap()
    }

    #[test]
    fn exported_symbols_are_found_and_local_ones_are_not() {
        let many: Vec<alloc::string::String> = (0..100).map(|i| alloc::format!("f{i}")).collect();
        let mut names: Vec<(&[u8], bool)> = vec![(b"main", true), (b"helper", false), (b"main", true)];
        names.extend(many.iter().map(|n| (n.as_bytes(), true)));
        let t = table(&names);
        assert_eq!(t.lookup(b"main").map(|s| s.addr), Some(0x1000), "the first duplicate wins");
        assert_eq!(t.lookup(b"helper"), None, "local symbols are not indexed");
        assert_eq!(t.lookup(b"f57").map(|s| s.addr), Some(0x1000 + 3 + 57));
        assert_eq!(t.lookup(b"f100"), None);
        assert_eq!(t.lookup(b"mai"), None, "a prefix is not the name");
        assert_eq!(t.name(1), Some(&b"helper"[..]));
        assert_eq!(t.name_with_nul(1), Some(&b"helper\0"[..]));
        assert_eq!(t.len(), 103);
    }

    #[test]
    fn names_that_do_not_end_in_a_nul_inside_the_string_table_are_refused() {
        let strings = b"\0ab\0cd";
        let key = namehash::key();
        let at =
            |name_start: u32, name_len: u32| LoadedSymbol { name_start, name_len, ..LoadedSymbol::UNSET };
        let build = |symbol| SymbolTable::from_parts(strings.to_vec(), vec![symbol], key);
        assert!(build(at(1, 1)).is_none(), "no NUL after the name");
        assert!(build(at(4, 2)).is_none(), "at the end");
        assert!(build(at(9, 0)).is_none(), "past the end");
        assert!(build(at(u32::MAX, u32::MAX)).is_none(), "an end that overflows");
        let inside = build(at(2, 1)).expect("a name may start inside another");
        assert_eq!(inside.name(0), Some(&b"b"[..]));
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_loaded_symbol_takes_24_bytes() {
        // The symbol pass writes one per symbol and lookups read one per probe: kept small.
        assert_eq!(core::mem::size_of::<LoadedSymbol>(), 24);
    }
}
