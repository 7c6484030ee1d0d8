//! Finding a loaded module's exported symbol by name, with the process's keyed hash of the
//! validated names ([`KeyedHasher::hash32`](crate::lru::KeyedHasher::hash32), a strongly
//! universal family under the process's random key; the file's stored FNV-1a hashes are never
//! trusted, and no file can be prepared to fill one bucket chain).
//!
//! A load pays only for what it uses: most loads are followed by a few lookups (an entry
//! point, a handful of functions), which a scan of the exported names answers for less than
//! hashing every name would cost. The first [`SCANNED_LOOKUPS`] lookups scan; the next one
//! makes the index (as does anything that needs the names' hashes:
//! [`ExportIndex`](crate::load::ExportIndex)). A scan costs about 4 instructions a symbol,
//! indexing about 55 (hashing the name, placing it): a table looked up often pays at most a
//! third more than with an index made at load, one looked up a few times a tenth of it or
//! less. Scanning and the index find the same symbol: the first exported one of the name, in
//! table order. While the memory for the index cannot be had, lookups scan and the next one
//! tries again.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::{LoadedSymbol, SymbolTable};
use crate::load::HashedName;

/// Lookups of a table answered by scanning before its index is made.
pub(crate) const SCANNED_LOOKUPS: u32 = 4;

/// The exported names' hash index: open addressing, at most half full.
#[derive(Clone, Debug)]
pub(super) struct NameIndex {
    /// Per bucket: the name's hash and its symbol's index + 1 (0 for an empty bucket); a
    /// power of two of them.
    buckets: Vec<(u32, u32)>,
}

impl NameIndex {
    /// The index of `table`'s exported symbols (the first of duplicate names indexed);
    /// `None` if the memory for it cannot be had.
    fn of(table: &SymbolTable) -> Option<Self> {
        let exported = table.symbols.iter().filter(|s| s.exported).count();
        let mut buckets = crate::load::fallible::filled((0u32, 0u32), bucket_count(exported))?;
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

    /// The index, made now if it was not (out of line: lookups reach it once per table, then
    /// find the index made; unless its memory cannot be had: then `None`, and the next call
    /// tries again).
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
pub(super) fn short_word(name: &[u8]) -> Option<u64> {
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
pub(super) const fn low_bytes(len: usize) -> u64 {
    if len >= 8 {
        u64::MAX
    } else {
        (1 << (8 * len)) - 1
    }
}

/// Buckets for an index of up to `count` symbols: a power of two, at least twice `count`, so
/// that the index stays at most half full.
pub(crate) fn bucket_count(count: usize) -> usize {
    count.saturating_mul(2).checked_next_power_of_two().unwrap_or(usize::MAX).max(8)
}
