//! [`ExportIndex`]: the exported names of many loaded modules, indexed together, so that a
//! resolver over thousands of modules finds a name with one hash lookup instead of asking each
//! module in turn.
//!
//! The index hashes names with the process's keyed hash
//! ([`KeyedHasher::hash32`](crate::keyed_hash::KeyedHasher::hash32) under
//! [`per_process`](crate::keyed_hash::KeyedHasher::per_process)), as a [`LoadedModule`]'s own
//! index does (indexing a module takes the hashes of its index, which is made then if
//! lookups had not made it yet) and a load does for each import ([`HashedName`]): looking
//! up an import hashes nothing. Callers see keys of their
//! own choosing (an order number, a cache slot) and confirm a candidate with
//! [`LoadedModule::symbol_hashed`].

use hashbrown::HashTable;

use super::{HashedName, LoadedModule};
use crate::keyed_hash::spread;

/// The exports of many modules by name, each module under a key of the caller's.
#[derive(Debug)]
pub struct ExportIndex<K> {
    /// (name hash, key) of every export of every indexed module.
    table: HashTable<(u32, K)>,
}

/// Memory for the index could not be had; nothing was added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexFull;

fn entry_hash<K>(&(hash, _): &(u32, K)) -> u64 {
    spread(hash)
}

impl<K> Default for ExportIndex<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K> ExportIndex<K> {
    /// An empty index.
    pub const fn new() -> Self {
        Self { table: HashTable::new() }
    }

    /// How many exports are indexed (over all modules).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Keeps only the modules whose key `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.table.retain(|(_, key)| keep(key));
    }
}

impl<K: Copy> ExportIndex<K> {
    /// Indexes every export of `module` under `key`, all or nothing. Adding a key twice
    /// indexes its exports twice; remove it first with [`ExportIndex::retain`].
    pub fn insert(&mut self, key: K, module: &LoadedModule<'_>) -> Result<(), IndexFull> {
        // A module's table hashes its names under the process's key, as `candidates` does.
        let hashes = || module.symbols().exported_hashes().ok_or(IndexFull);
        self.table.try_reserve(hashes()?.count(), entry_hash).map_err(|_| IndexFull)?;
        for hash in hashes()? {
            self.table.insert_unique(spread(hash), (hash, key), entry_hash);
        }
        Ok(())
    }

    /// The keys of the modules that may export `name`: every module that does, and rarely one
    /// whose export only shares the name's hash (check with [`LoadedModule::symbol`]). In no
    /// particular order.
    pub fn candidates<'s>(&'s self, name: &[u8]) -> impl Iterator<Item = K> + 's {
        self.candidates_hashed(HashedName::new(name))
    }

    /// [`ExportIndex::candidates`] of a name whose hash is at hand.
    pub fn candidates_hashed<'s>(&'s self, name: HashedName<'_>) -> impl Iterator<Item = K> + 's {
        let hash = name.hash32();
        self.table.iter_hash(spread(hash)).filter(move |(h, _)| *h == hash).map(|&(_, key)| key)
    }
}
