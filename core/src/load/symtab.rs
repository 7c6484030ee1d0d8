//! A loaded module's symbols: owned names and addresses, with a hash index over the exported
//! ones built at load time from recomputed FNV-1a hashes (the file's stored hashes are never
//! trusted).

use alloc::vec;
use alloc::vec::Vec;

use crate::{fnv1a, Binding, SymbolKind};

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
    /// Its size as stored.
    pub size: u64,
    /// Whether other modules can see it.
    pub exported: bool,
    /// Whether it is a generic template.
    pub template: bool,
}

/// The symbols of a loaded module, in table order, with a hash index of the exported ones.
#[derive(Clone, Debug, Default)]
pub struct SymbolTable {
    /// Every name followed by a NUL, so names can be handed to C as they are.
    names: Vec<u8>,
    symbols: Vec<LoadedSymbol>,
    /// Open addressing: symbol index + 1 per bucket, 0 for empty; the length is a power of two.
    buckets: Vec<u32>,
}

impl SymbolTable {
    /// An empty table with room for `count` symbols and `name_bytes` bytes of names.
    pub fn with_capacity(count: usize, name_bytes: usize) -> Self {
        Self {
            names: Vec::with_capacity(name_bytes + count),
            symbols: Vec::with_capacity(count),
            buckets: Vec::new(),
        }
    }

    /// Appends a symbol (the index is built by [`SymbolTable::build_index`]).
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        name: &[u8],
        kind: SymbolKind,
        binding: Binding,
        addr: usize,
        size: u64,
        exported: bool,
        template: bool,
    ) {
        let name_start = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.extend_from_slice(name);
        self.names.push(0);
        self.symbols.push(LoadedSymbol {
            name_start,
            name_len: u32::try_from(name.len()).unwrap_or(u32::MAX),
            hash: fnv1a(name),
            kind,
            binding,
            addr,
            size,
            exported,
            template,
        });
    }

    /// Sets the address of symbol `index` (before [`SymbolTable::build_index`]; no effect past
    /// the end).
    pub fn set_addr(&mut self, index: usize, addr: usize) {
        if let Some(s) = self.symbols.get_mut(index) {
            s.addr = addr;
        }
    }

    /// Builds the hash index of exported symbols (the first of duplicate names wins).
    pub fn build_index(&mut self) {
        let exported = self.symbols.iter().filter(|s| s.exported).count();
        let len = (exported * 2).next_power_of_two().max(8);
        self.buckets = vec![0; len];
        let mask = len - 1;
        for (i, s) in self.symbols.iter().enumerate() {
            if !s.exported {
                continue;
            }
            let name = &self.names[s.name_start as usize..][..s.name_len as usize];
            let mut b = s.hash as usize & mask;
            loop {
                match self.buckets[b] {
                    0 => {
                        self.buckets[b] = u32::try_from(i + 1).unwrap_or(0);
                        break;
                    }
                    taken => {
                        let other = &self.symbols[taken as usize - 1];
                        if other.hash == s.hash && self.name_of(other) == name {
                            break; // duplicate: keep the first
                        }
                    }
                }
                b = (b + 1) & mask;
            }
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
        self.lookup_hashed(name, fnv1a(name))
    }

    /// [`SymbolTable::lookup`] with the name's FNV-1a hash already computed.
    pub fn lookup_hashed(&self, name: &[u8], hash: u32) -> Option<&LoadedSymbol> {
        if self.buckets.is_empty() {
            return None;
        }
        let mask = self.buckets.len() - 1;
        let mut b = hash as usize & mask;
        loop {
            let slot = self.buckets[b];
            if slot == 0 {
                return None;
            }
            let s = &self.symbols[slot as usize - 1];
            if s.hash == hash && self.name_of(s) == name {
                return Some(s);
            }
            b = (b + 1) & mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_symbols_are_found_and_local_ones_are_not() {
        let mut t = SymbolTable::with_capacity(4, 32);
        t.push(b"main", SymbolKind::Function, Binding::Global, 0x1000, 6, true, false);
        t.push(b"helper", SymbolKind::Function, Binding::Local, 0x1010, 6, false, false);
        t.push(b"main", SymbolKind::Function, Binding::Global, 0x2000, 6, true, false);
        for i in 0..100u32 {
            let name = alloc::format!("f{i}");
            t.push(name.as_bytes(), SymbolKind::Data, Binding::Weak, i as usize, 8, true, false);
        }
        t.build_index();
        assert_eq!(t.lookup(b"main").map(|s| s.addr), Some(0x1000), "the first duplicate wins");
        assert_eq!(t.lookup(b"helper"), None);
        assert_eq!(t.lookup(b"f57").map(|s| s.addr), Some(57));
        assert_eq!(t.lookup(b"f100"), None);
        assert_eq!(t.name_with_nul(1), Some(&b"helper\0"[..]));
        assert_eq!(t.len(), 103);
    }
}
