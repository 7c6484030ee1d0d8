//! A loaded module's symbols: owned names and addresses, with a hash index over the exported
//! ones built at load time with the process's keyed hash of the validated names
//! ([`KeyedHasher::hash32`], a strongly universal family under the process's random key; the
//! file's stored FNV-1a hashes are never trusted, and no file can be prepared to fill one bucket
//! chain).

use alloc::vec::Vec;

use super::HashedName;
use crate::lru::KeyedHasher;
use smf_format::{Binding, SymbolKind};

/// One symbol of a loaded module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadedSymbol {
    /// Where its name starts in the string table.
    pub(crate) name_start: u32,
    /// Its name's length (a NUL follows it).
    pub(crate) name_len: u32,
    /// Its name's [`KeyedHasher::hash32`] under the table's hasher, if it is exported (the
    /// index and [`super::ExportIndex`] hold exported symbols only); 0 for the others.
    pub(crate) hash: u32,
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
/// The loader builds it while it decodes the symbols, one `SymbolTableBuilder::push` per
/// symbol, so each exported symbol is indexed while its entry is still at hand.
#[derive(Clone, Debug)]
pub struct SymbolTable {
    /// The string table: every name followed by a NUL, so names can be handed to C as they are.
    names: Vec<u8>,
    symbols: Vec<LoadedSymbol>,
    /// Each symbol's size from its entry, in table order (apart: lookups never read it).
    sizes: Vec<u64>,
    /// Open addressing: symbol index + 1 per bucket, 0 for empty; the length is a power of two
    /// of at least twice the number of symbols.
    buckets: Vec<u32>,
    /// The names' hasher ([`KeyedHasher::per_process`]).
    hasher: KeyedHasher,
}

impl Default for SymbolTable {
    fn default() -> Self {
        Self {
            names: Vec::new(),
            symbols: Vec::new(),
            sizes: Vec::new(),
            buckets: Vec::new(),
            hasher: KeyedHasher::per_process(),
        }
    }
}

/// A [`SymbolTable`] being filled, symbol by symbol, in table order.
pub(crate) struct SymbolTableBuilder {
    table: SymbolTable,
    /// How many symbols it takes (the index is sized for them).
    capacity: usize,
}

impl SymbolTableBuilder {
    /// An empty table over the string table `names` for up to `capacity` symbols, whose hashes
    /// are [`KeyedHasher::hash32`]es under `hasher`; `None` if the memory for it cannot be had.
    pub(crate) fn new(names: Vec<u8>, capacity: usize, hasher: KeyedHasher) -> Option<Self> {
        let table = SymbolTable {
            names,
            symbols: super::fallible::with_capacity(capacity)?,
            sizes: super::fallible::with_capacity(capacity)?,
            buckets: super::fallible::filled(0, bucket_count(capacity))?,
            hasher,
        };
        Some(Self { table, capacity })
    }

    /// Appends `symbol`, whose name lies at `name_start..name_start + name_len` followed by a
    /// NUL (the table hands names to C as they are), with the size its entry gives; if it is
    /// exported, hashes the name (filling in `hash`) and indexes the symbol, unless a symbol of
    /// the same name is indexed already (the first of duplicate names wins). `None` if the
    /// name is not there, or the table is full.
    #[inline(always)]
    pub(crate) fn push(&mut self, mut symbol: LoadedSymbol, size: u64) -> Option<()> {
        let table = &mut self.table;
        if table.symbols.len() == self.capacity {
            return None;
        }
        let start = symbol.name_start as usize;
        let end = start.checked_add(symbol.name_len as usize)?;
        if table.names.get(end) != Some(&0) {
            return None;
        }
        if symbol.exported {
            // The name, at `start..end`, is followed by its NUL and the rest of the table.
            symbol.hash = table.hasher.hash32_within(table.names.get(start..)?, end - start);
            let slot = u32::try_from(table.symbols.len() + 1).ok()?;
            let mask = table.buckets.len() - 1;
            let mut b = symbol.hash as usize & mask;
            // Never full: at most half the buckets are taken.
            loop {
                match *table.buckets.get(b)? {
                    0 => {
                        table.buckets[b] = slot;
                        break;
                    }
                    taken => {
                        let other = table.symbols.get(taken as usize - 1)?;
                        if other.hash == symbol.hash && table.same_name(other, &symbol) {
                            break; // a duplicate: the first one stays indexed
                        }
                    }
                }
                b = (b + 1) & mask;
            }
        }
        table.symbols.push(symbol);
        table.sizes.push(size);
        Some(())
    }

    /// The table, holding the symbols pushed so far.
    pub(crate) fn finish(self) -> SymbolTable {
        self.table
    }
}

impl SymbolTable {
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
        self.sizes.get(index).copied()
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

    /// The exported symbol named `name`.
    #[inline]
    pub fn lookup(&self, name: &[u8]) -> Option<&LoadedSymbol> {
        self.lookup_by(name, self.hasher.hash32(name))
    }

    /// [`SymbolTable::lookup`] of a name whose hash is at hand (hashed again only if this
    /// table hashes under another key than the process's: tests build such tables).
    #[inline]
    pub fn lookup_hashed(&self, name: HashedName<'_>) -> Option<&LoadedSymbol> {
        let hash =
            if self.hasher.is_per_process() { name.hash32() } else { self.hasher.hash32(name.bytes()) };
        self.lookup_by(name.bytes(), hash)
    }

    /// The exported symbol named `name`, whose hash under this table's key is `hash`.
    #[inline(always)]
    fn lookup_by(&self, name: &[u8], hash: u32) -> Option<&LoadedSymbol> {
        let len = name.len();
        // Most names fit a word: compared as that word.
        let Some(word) = short_word(name) else {
            return self.lookup_long(name, hash);
        };
        self.probe(hash, len, |s| {
            match self.names.get(s.name_start as usize..).and_then(|n| n.first_chunk::<8>()) {
                Some(stored) => u64::from_le_bytes(*stored) & low_bytes(len) == word,
                // Fewer than eight bytes to the table's end.
                None => self.name_of(s) == Some(name),
            }
        })
    }

    /// [`SymbolTable::lookup`] of a name longer than a word (out of line, so that the short
    /// names' path keeps its registers).
    #[inline(never)]
    fn lookup_long(&self, name: &[u8], hash: u32) -> Option<&LoadedSymbol> {
        let len = name.len();
        self.probe(hash, len, |s| self.name_of(s) == Some(name))
    }

    /// The indexed symbol whose hash is `hash` and whose name, of `len` bytes, `is_name`
    /// accepts.
    #[inline(always)]
    fn probe(&self, hash: u32, len: usize, is_name: impl Fn(&LoadedSymbol) -> bool) -> Option<&LoadedSymbol> {
        let mask = self.buckets.len().checked_sub(1)?;
        let mut b = hash as usize & mask;
        loop {
            // An empty bucket (0) ends the search.
            let slot = (*self.buckets.get(b)? as usize).checked_sub(1)?;
            let s = self.symbols.get(slot)?;
            if s.hash == hash && s.name_len as usize == len && is_name(s) {
                return Some(s);
            }
            b = (b + 1) & mask;
        }
    }
}

/// A name of at most eight bytes as one little-endian word, zero-padded; `None` for a longer
/// name.
#[inline(always)]
fn short_word(name: &[u8]) -> Option<u64> {
    // In at most two loads, overlapping where the name is shorter than 8 bytes (the bytes both
    // hold are the same, so or-ing them is harmless): a copy of a variable length would call
    // `memcpy`.
    let len = name.len();
    Some(match name {
        [] => 0,
        [a] => u64::from(*a),
        [a, b] => u64::from(u16::from_le_bytes([*a, *b])),
        [a, b, c] => u64::from(u16::from_le_bytes([*a, *b])) | u64::from(*c) << 16,
        _ if len > 8 => return None,
        _ => {
            let (first, last) = (name.first_chunk::<4>()?, name.last_chunk::<4>()?);
            let last = u64::from(u32::from_le_bytes(*last));
            u64::from(u32::from_le_bytes(*first)) | last << (8 * (len - 4))
        }
    })
}

/// A mask of the low `len` bytes of a word (`len` at most 8).
#[inline(always)]
const fn low_bytes(len: usize) -> u64 {
    if len >= 8 {
        u64::MAX
    } else {
        (1 << (8 * len)) - 1
    }
}

/// Buckets for an index of up to `count` symbols: a power of two, at least twice `count`, so
/// that the index stays at most half full.
pub(super) fn bucket_count(count: usize) -> usize {
    count.saturating_mul(2).checked_next_power_of_two().unwrap_or(usize::MAX).max(8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// A table over a string table holding `names`, one function symbol per name (`exported`
    /// or local), symbol `i` at address `0x1000 + i`.
    fn table(names: &[(&[u8], bool)]) -> SymbolTable {
        table_under(KeyedHasher::per_process(), names)
    }

    /// [`table`] hashed under `key`.
    fn table_under(key: KeyedHasher, names: &[(&[u8], bool)]) -> SymbolTable {
        let mut strings = vec![0u8];
        let mut symbols = Vec::new();
        for (i, &(name, exported)) in names.iter().enumerate() {
            symbols.push(LoadedSymbol {
                name_start: u32::try_from(strings.len()).unwrap(),
                name_len: u32::try_from(name.len()).unwrap(),
                hash: key.hash32(name),
                kind: SymbolKind::Function,
                binding: if exported { Binding::Global } else { Binding::Local },
                addr: 0x1000 + i,
                exported,
                template: false,
            });
            strings.extend_from_slice(name);
            strings.push(0);
        }
        let mut builder = SymbolTableBuilder::new(strings, symbols.len(), key).unwrap();
        for symbol in symbols {
            builder.push(symbol, 0).expect("a valid symbol");
        }
        builder.finish()
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
        // Each name lies in the string table where its offset says, followed by a NUL.
        for (i, &(name, _)) in names.iter().enumerate() {
            let at = t.name_offset(i).unwrap() as usize;
            assert_eq!(&t.names()[at..=at + name.len()], [name, b"\0"].concat(), "symbol {i}");
        }
        assert_eq!(t.name_offset(names.len()), None);
        assert!(!t.is_empty() && table(&[]).is_empty());
        assert_eq!(t.len(), 103);
    }

    #[test]
    fn a_name_hashed_at_hand_is_found_as_by_its_bytes_whatever_the_tables_key() {
        let long = b"a_function_name_longer_than_a_word";
        let names: [(&[u8], bool); 3] = [(b"main", true), (long, true), (b"helper", false)];
        for key in [KeyedHasher::per_process(), KeyedHasher::new(7)] {
            let t = table_under(key, &names);
            for name in [&b"main"[..], long, b"helper", b"none"] {
                assert_eq!(t.lookup_hashed(HashedName::new(name)), t.lookup(name), "{key:?}");
            }
            let found = |name| t.lookup_hashed(HashedName::new(name)).map(|s| s.addr);
            assert_eq!((found(b"main"), found(long)), (Some(0x1000), Some(0x1001)), "{key:?}");
        }
    }

    #[test]
    fn names_that_do_not_end_in_a_nul_inside_the_string_table_are_refused() {
        let strings = b"\0ab\0cd";
        let key = KeyedHasher::per_process();
        let at =
            |name_start: u32, name_len: u32| LoadedSymbol { name_start, name_len, ..LoadedSymbol::UNSET };
        let push = |symbol| SymbolTableBuilder::new(strings.to_vec(), 1, key).unwrap().push(symbol, 0);
        assert!(push(at(1, 1)).is_none(), "no NUL after the name");
        assert!(push(at(4, 2)).is_none(), "at the end");
        assert!(push(at(9, 0)).is_none(), "past the end");
        assert!(push(at(u32::MAX, u32::MAX)).is_none(), "an end that overflows");
        let mut builder = SymbolTableBuilder::new(strings.to_vec(), 1, key).unwrap();
        assert!(builder.push(at(2, 1), 0).is_some(), "a name may start inside another");
        assert!(builder.push(at(2, 1), 0).is_none(), "a full table takes no more");
        assert_eq!(builder.finish().name(0), Some(&b"b"[..]));
    }

    #[test]
    fn names_of_every_length_are_found_wherever_they_lie() {
        // Names of 1 to 20 bytes; the last ones lie within eight bytes of the table's end,
        // where a word cannot be loaded. (An export needs a name: no empty one is indexed.)
        let long: Vec<u8> = (b'a'..=b'z').collect();
        let names: Vec<(&[u8], bool)> = (1..=20).rev().map(|len| (&long[..len], true)).collect();
        let t = table(&names);
        assert_eq!(t.lookup(b""), None);
        for len in 1..=20 {
            assert_eq!(t.lookup(&long[..len]).map(|s| s.addr), Some(0x1000 + 20 - len), "len {len}");
            // The same bytes with one more or one changed are another name.
            let mut other = long[..len].to_vec();
            other.push(b'!');
            assert_eq!(t.lookup(&other), None, "len {len} + 1");
            other.pop();
            other[len - 1] = b'?';
            assert_eq!(t.lookup(&other), None, "len {len}, last byte changed");
        }
    }

    #[test]
    fn two_exported_names_with_the_same_hash_are_both_found() {
        // Under these keys the two names' 32-bit hashes collide (found by searching `g` and 8
        // hex digits; of one length, so only their bytes tell them apart): the second is
        // another name in the same probe chain, not a duplicate.
        let key = KeyedHasher::with_keys(1, 2);
        let (first, second): (&[u8], &[u8]) = (b"g09e345d8", b"ga3970a01");
        assert_eq!(key.hash32(first), key.hash32(second), "the names collide");
        let table_of = |names: &[&[u8]]| {
            let mut strings = vec![0u8];
            let mut symbols = Vec::new();
            for (i, name) in names.iter().enumerate() {
                symbols.push(LoadedSymbol {
                    name_start: u32::try_from(strings.len()).unwrap(),
                    name_len: u32::try_from(name.len()).unwrap(),
                    addr: 0x1000 + i,
                    exported: true,
                    ..LoadedSymbol::UNSET
                });
                strings.extend_from_slice(name);
                strings.push(0);
            }
            let mut builder = SymbolTableBuilder::new(strings, names.len(), key).unwrap();
            for symbol in symbols {
                builder.push(symbol, 0).unwrap();
            }
            builder.finish()
        };
        let t = table_of(&[first, second, first]);
        assert_eq!(t.lookup(first).map(|s| s.addr), Some(0x1000), "the first of two duplicates");
        assert_eq!(t.lookup(second).map(|s| s.addr), Some(0x1001));
        // A lookup that finds the hash still compares the name.
        assert_eq!(table_of(&[first]).lookup(second), None);
    }

    #[test]
    fn short_words_and_their_masks_cover_exactly_the_name() {
        let bytes = *b"abcdefghi";
        for len in 0..=8 {
            let mut padded = [0u8; 8];
            padded[..len].copy_from_slice(&bytes[..len]);
            let word = u64::from_le_bytes(padded);
            assert_eq!(short_word(&bytes[..len]), Some(word), "len {len}");
            assert_eq!(u64::from_le_bytes(*b"abcdefgh") & low_bytes(len), word, "mask of len {len}");
        }
        assert_eq!(short_word(&bytes), None, "nine bytes are not short");
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_loaded_symbol_takes_24_bytes() {
        // The symbol pass writes one per symbol and lookups read one per probe: kept small.
        assert_eq!(core::mem::size_of::<LoadedSymbol>(), 24);
    }
}
