//! A loaded module's symbols: owned names and addresses, with a hash index over the exported
//! ones made when lookups first need it (below), with the process's keyed hash of the
//! validated names ([`KeyedHasher::hash32`], a strongly universal family under the process's
//! random key; the file's stored FNV-1a hashes are never trusted, and no file can be prepared
//! to fill one bucket chain).
//!
//! A load pays only for what it uses: most loads are followed by a few lookups (an entry
//! point, a handful of functions), which a scan of the exported names answers for less than
//! hashing every name would cost. The first `SCANNED_LOOKUPS` (4) lookups scan; the next one
//! makes the index (as does anything that needs the names' hashes: [`super::ExportIndex`]).
//! A scan costs about 4 instructions a symbol, indexing about 55 (hashing the name, placing
//! it): a table looked up often pays at most a third more than with an index made at load,
//! one looked up a few times a tenth of it or less. Scanning and the index find the same
//! symbol: the first exported one of the name, in table order.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use super::HashedName;
use crate::lru::KeyedHasher;
use smf_format::{Binding, SymbolKind};

/// Lookups of a table answered by scanning before its index is made.
pub(crate) const SCANNED_LOOKUPS: u32 = 4;

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
/// made when first needed (the module docs say when).
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
    /// Lookups answered by scanning so far (counted up to [`SCANNED_LOOKUPS`]).
    scans: AtomicU32,
}

/// The exported names' hash index: open addressing, at most half full.
#[derive(Clone, Debug)]
struct NameIndex {
    /// Per bucket: the name's hash and its symbol's index + 1 (0 for an empty bucket); a
    /// power of two of them.
    buckets: Vec<(u32, u32)>,
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

impl NameIndex {
    /// The index of `table`'s exported symbols (the first of duplicate names indexed);
    /// `None` if the memory for it cannot be had.
    fn of(table: &SymbolTable) -> Option<Self> {
        let exported = table.symbols.iter().filter(|s| s.exported).count();
        let mut buckets = super::fallible::filled((0u32, 0u32), bucket_count(exported))?;
        let mask = buckets.len() - 1;
        for (index, symbol) in table.symbols.iter().enumerate().filter(|(_, s)| s.exported) {
            let start = symbol.name_start as usize;
            // The name is followed by its NUL and the rest of the table (checked when pushed).
            let hash = table.hasher.hash32_within(table.names.get(start..)?, symbol.name_len as usize);
            let slot = u32::try_from(index + 1).ok()?;
            let mut b = hash as usize & mask;
            // Never full: at most half the buckets are taken.
            loop {
                match *buckets.get(b)? {
                    (_, 0) => {
                        buckets[b] = (hash, slot);
                        break;
                    }
                    (other_hash, other) => {
                        let other = table.symbols.get(other as usize - 1)?;
                        if other_hash == hash && table.same_name(other, symbol) {
                            break; // a duplicate: the first one stays indexed
                        }
                    }
                }
                b = (b + 1) & mask;
            }
        }
        Some(NameIndex { buckets })
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

    /// The hashes of the exported names (each name once: the first of duplicates), under
    /// this table's key; the index is made if it was not. `None` if the memory for it cannot
    /// be had.
    pub(crate) fn exported_hashes(&self) -> Option<impl Iterator<Item = u32> + '_> {
        let index = self.made_index()?;
        Some(index.buckets.iter().filter(|&&(_, slot)| slot != 0).map(|&(hash, _)| hash))
    }

    /// Whether the index of exported names has been made.
    #[cfg(test)]
    pub(crate) fn is_indexed(&self) -> bool {
        self.index.is_completed()
    }

    /// The index, if a lookup now should use it: once made, or made now, after
    /// [`SCANNED_LOOKUPS`] lookups scanned.
    #[inline(always)]
    fn index_for_lookup(&self) -> Option<&NameIndex> {
        if let Some(index) = self.index.get() {
            return Some(index);
        }
        if self.scans.load(Ordering::Relaxed) < SCANNED_LOOKUPS {
            self.scans.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.made_index()
    }

    /// The index, made now if it was not (out of line: once per table, unless the memory for
    /// it cannot be had: then `None`, and the next call tries again).
    #[cold]
    #[inline(never)]
    fn made_index(&self) -> Option<&NameIndex> {
        self.index.try_call_once(|| NameIndex::of(self).ok_or(())).ok()
    }

    /// The exported symbol named `name`.
    #[inline]
    pub fn lookup(&self, name: &[u8]) -> Option<&LoadedSymbol> {
        match self.index_for_lookup() {
            Some(index) => self.lookup_by(index, name, self.hasher.hash32(name)),
            None => self.scan(name),
        }
    }

    /// [`SymbolTable::lookup`] of a name whose hash is at hand (hashed again only if this
    /// table hashes under another key than the process's: tests build such tables).
    #[inline]
    pub fn lookup_hashed(&self, name: HashedName<'_>) -> Option<&LoadedSymbol> {
        let Some(index) = self.index_for_lookup() else { return self.scan(name.bytes()) };
        let hash =
            if self.hasher.is_per_process() { name.hash32() } else { self.hasher.hash32(name.bytes()) };
        self.lookup_by(index, name.bytes(), hash)
    }

    /// The first exported symbol named `name`, in table order, found by comparing names.
    #[inline(never)]
    fn scan(&self, name: &[u8]) -> Option<&LoadedSymbol> {
        let len = name.len();
        match short_word(name) {
            Some(word) => self
                .symbols
                .iter()
                .find(|s| s.exported && s.name_len as usize == len && self.is_short_name(s, word, name)),
            None => self
                .symbols
                .iter()
                .find(|s| s.exported && s.name_len as usize == len && self.name_of(s) == Some(name)),
        }
    }

    /// Whether `s`'s name, of `name`'s length (at most a word), is `name`, which is `word`
    /// as [`short_word`] gives it.
    #[inline(always)]
    fn is_short_name(&self, s: &LoadedSymbol, word: u64, name: &[u8]) -> bool {
        match self.names.get(s.name_start as usize..).and_then(|n| n.first_chunk::<8>()) {
            Some(stored) => u64::from_le_bytes(*stored) & low_bytes(name.len()) == word,
            // Fewer than eight bytes to the table's end.
            None => self.name_of(s) == Some(name),
        }
    }

    /// The exported symbol named `name`, whose hash under this table's key is `hash`, in
    /// `index`.
    #[inline(always)]
    fn lookup_by(&self, index: &NameIndex, name: &[u8], hash: u32) -> Option<&LoadedSymbol> {
        let len = name.len();
        // Most names fit a word: compared as that word.
        let Some(word) = short_word(name) else {
            return self.lookup_long(index, name, hash);
        };
        self.probe(index, hash, len, |s| self.is_short_name(s, word, name))
    }

    /// [`SymbolTable::lookup`] of a name longer than a word (out of line, so that the short
    /// names' path keeps its registers).
    #[inline(never)]
    fn lookup_long(&self, index: &NameIndex, name: &[u8], hash: u32) -> Option<&LoadedSymbol> {
        let len = name.len();
        self.probe(index, hash, len, |s| self.name_of(s) == Some(name))
    }

    /// The indexed symbol whose hash is `hash` and whose name, of `len` bytes, `is_name`
    /// accepts.
    #[inline(always)]
    fn probe(
        &self,
        index: &NameIndex,
        hash: u32,
        len: usize,
        is_name: impl Fn(&LoadedSymbol) -> bool,
    ) -> Option<&LoadedSymbol> {
        let mask = index.buckets.len().checked_sub(1)?;
        let mut b = hash as usize & mask;
        loop {
            // An empty bucket (slot 0) ends the search.
            let (stored, slot) = *index.buckets.get(b)?;
            let s = self.symbols.get((slot as usize).checked_sub(1)?)?;
            if stored == hash && s.name_len as usize == len && is_name(s) {
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
                size: 0,
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

    /// `t`, indexed.
    fn indexed(t: SymbolTable) -> SymbolTable {
        assert!(t.exported_hashes().is_some());
        assert!(t.is_indexed());
        t
    }

    /// The address a lookup of `name` finds in the table of `names`, scanning (a fresh table)
    /// and through its index, which must agree.
    fn found(names: &[(&[u8], bool)], name: &[u8]) -> Option<usize> {
        let scanned = table(names).lookup(name).map(|s| s.addr);
        let t = indexed(table(names));
        assert_eq!(t.lookup(name).map(|s| s.addr), scanned, "{:?}", core::str::from_utf8(name));
        scanned
    }

    #[test]
    fn exported_symbols_are_found_and_local_ones_are_not() {
        let many: Vec<alloc::string::String> = (0..100).map(|i| alloc::format!("f{i}")).collect();
        let mut names: Vec<(&[u8], bool)> = vec![(b"main", true), (b"helper", false), (b"main", true)];
        names.extend(many.iter().map(|n| (n.as_bytes(), true)));
        assert_eq!(found(&names, b"main"), Some(0x1000), "the first duplicate wins");
        assert_eq!(found(&names, b"helper"), None, "local symbols are not indexed");
        assert_eq!(found(&names, b"f57"), Some(0x1000 + 3 + 57));
        assert_eq!(found(&names, b"f100"), None);
        assert_eq!(found(&names, b"mai"), None, "a prefix is not the name");
        let t = table(&names);
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
    fn lookups_scan_until_the_index_pays_and_then_use_it_finding_the_same_symbols() {
        let many: Vec<alloc::string::String> = (0..200).map(|i| alloc::format!("function_{i}")).collect();
        let mut names: Vec<(&[u8], bool)> = vec![(b"dup", true), (b"hidden", false), (b"dup", true)];
        names.extend(many.iter().map(|n| (n.as_bytes(), true)));
        let asked: Vec<&[u8]> = vec![b"dup", b"hidden", b"function_7", b"function_199", b"nothing"];
        // Each asked of a table of its own: a scan.
        let first: Vec<_> = asked.iter().map(|name| table(&names).lookup(name).map(|s| s.addr)).collect();
        assert_eq!(first, [Some(0x1000), None, Some(0x1000 + 3 + 7), Some(0x1000 + 3 + 199), None]);
        let t = table(&names);
        for _ in 0..SCANNED_LOOKUPS {
            assert!(t.lookup_hashed(HashedName::new(b"function_1")).is_some());
        }
        assert!(!t.is_indexed(), "{SCANNED_LOOKUPS} lookups scan");
        let again: Vec<_> = asked.iter().map(|name| t.lookup(name).map(|s| s.addr)).collect();
        assert!(t.is_indexed(), "the next one makes the index");
        assert_eq!(again, first, "and finds what the scans found");
        // Its hashes: each exported name once, under the table's key.
        let mut hashes: Vec<u32> = t.exported_hashes().unwrap().collect();
        hashes.sort_unstable();
        // names[2..]: the second `dup` (the first's hash), then the functions.
        let mut expected: Vec<u32> = names[2..].iter().map(|(name, _)| t.hasher.hash32(name)).collect();
        expected.sort_unstable();
        assert_eq!(hashes, expected);
    }

    #[test]
    fn a_name_hashed_at_hand_is_found_as_by_its_bytes_whatever_the_tables_key() {
        let long = b"a_function_name_longer_than_a_word";
        let names: [(&[u8], bool); 3] = [(b"main", true), (long, true), (b"helper", false)];
        for key in [KeyedHasher::per_process(), KeyedHasher::new(7)] {
            for t in [table_under(key, &names), indexed(table_under(key, &names))] {
                for name in [&b"main"[..], long, b"helper", b"none"] {
                    assert_eq!(t.lookup_hashed(HashedName::new(name)), t.lookup(name), "{key:?}");
                }
                let found = |name| t.lookup_hashed(HashedName::new(name)).map(|s| s.addr);
                assert_eq!((found(b"main"), found(long)), (Some(0x1000), Some(0x1001)), "{key:?}");
            }
        }
    }

    #[test]
    fn names_that_do_not_end_in_a_nul_inside_the_string_table_are_refused() {
        let strings = b"\0ab\0cd";
        let key = KeyedHasher::per_process();
        let at =
            |name_start: u32, name_len: u32| LoadedSymbol { name_start, name_len, ..LoadedSymbol::UNSET };
        let push = |symbol| SymbolTableBuilder::new(strings.to_vec(), 1, key).unwrap().push(symbol, 0);
        assert_eq!(push(at(1, 1)), Err(Refused::NameOutside), "no NUL after the name");
        assert_eq!(push(at(4, 2)), Err(Refused::NameOutside), "at the end");
        assert_eq!(push(at(9, 0)), Err(Refused::NameOutside), "past the end");
        assert_eq!(push(at(u32::MAX, u32::MAX)), Err(Refused::NameOutside), "an end that overflows");
        let mut builder = SymbolTableBuilder::new(strings.to_vec(), 1, key).unwrap();
        assert_eq!(builder.push(at(2, 1), 0), Ok(()), "a name may start inside another");
        assert_eq!(builder.push(at(2, 1), 0), Err(Refused::Full), "a full table takes no more");
        assert_eq!(builder.finish().name(0), Some(&b"b"[..]));
    }

    #[test]
    fn sizes_of_every_magnitude_are_given_back_as_pushed() {
        let sizes = [0, 1, 4096, u64::from(u32::MAX) - 1, u64::from(u32::MAX), 1 << 40, u64::MAX, 7];
        let strings = [&b"\0"[..], &b"s\0".repeat(sizes.len())].concat();
        let mut builder = SymbolTableBuilder::new(strings, sizes.len(), KeyedHasher::per_process()).unwrap();
        for (i, &size) in sizes.iter().enumerate() {
            let name_start = u32::try_from(1 + 2 * i).unwrap();
            builder.push(LoadedSymbol { name_start, name_len: 1, ..LoadedSymbol::UNSET }, size).unwrap();
        }
        let t = builder.finish();
        let given: Vec<_> = (0..=sizes.len()).map(|i| t.size(i)).collect();
        let expected: Vec<_> = sizes.iter().map(|&s| Some(s)).chain([None]).collect();
        assert_eq!(given, expected);
        assert_eq!(t.large_sizes.len(), 3, "only those of u32::MAX bytes or more are kept apart");
        assert_eq!(t.clone().size(6), Some(u64::MAX), "a clone keeps them");
    }

    #[test]
    fn names_of_every_length_are_found_wherever_they_lie() {
        // Names of 1 to 20 bytes; the last ones lie within eight bytes of the table's end,
        // where a word cannot be loaded. (An export needs a name: no empty one is indexed.)
        let long: Vec<u8> = (b'a'..=b'z').collect();
        let names: Vec<(&[u8], bool)> = (1..=20).rev().map(|len| (&long[..len], true)).collect();
        assert_eq!(found(&names, b""), None);
        for len in 1..=20 {
            assert_eq!(found(&names, &long[..len]), Some(0x1000 + 20 - len), "len {len}");
            // The same bytes with one more or one changed are another name.
            let mut other = long[..len].to_vec();
            other.push(b'!');
            assert_eq!(found(&names, &other), None, "len {len} + 1");
            other.pop();
            other[len - 1] = b'?';
            assert_eq!(found(&names, &other), None, "len {len}, last byte changed");
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
        let t = indexed(table_of(&[first, second, first]));
        assert_eq!(t.lookup(first).map(|s| s.addr), Some(0x1000), "the first of two duplicates");
        assert_eq!(t.lookup(second).map(|s| s.addr), Some(0x1001));
        // A lookup that finds the hash still compares the name.
        assert_eq!(indexed(table_of(&[first])).lookup(second), None);
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
