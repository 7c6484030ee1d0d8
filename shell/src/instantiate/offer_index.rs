//! Which cached modules offer a name: an index over every cached module's "possible" names
//! (keyed hash of the name, and the module's slot), kept in step with the cache through its
//! generation. Resolving a name that no module offers is then one hash lookup, whatever the
//! number of cached modules and the size of their notes; a change to the cache costs the names
//! of the modules that came or went, never a pass over the others.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use hashbrown::HashTable;
use smf_runtime::instantiate::InstantiateError;
use smf_runtime::lru::KeyedHasher;

use crate::loader::SharedModule;

/// One indexed module: its path, its version (weakly: the index keeps nothing alive, and the
/// allocation it keeps makes the pointer unique), and the hashes of the names it offers.
struct Indexed {
    path: PathBuf,
    module: Weak<SharedModule>,
    hashes: Vec<u64>,
}

/// The index (see the module documentation).
pub(super) struct OfferIndex {
    /// The cache generation it reflects (`None`: never synced).
    generation: Option<u64>,
    slots: Vec<Option<Indexed>>,
    free: Vec<usize>,
    /// (name hash, slot) for every name of every indexed module.
    by_name: HashTable<(u64, usize)>,
    hasher: KeyedHasher,
}

fn out_of_memory(bytes: usize) -> InstantiateError {
    InstantiateError::OutOfMemory { bytes }
}

impl OfferIndex {
    pub(super) fn new() -> Self {
        Self {
            generation: None,
            slots: Vec::new(),
            free: Vec::new(),
            by_name: HashTable::new(),
            hasher: KeyedHasher::per_process(),
        }
    }

    /// Whether the index reflects the cache at `generation`.
    pub(super) fn is_current(&self, generation: u64) -> bool {
        self.generation == Some(generation)
    }

    /// Brings the index in step with `cached` (the cache's modules at `generation`): modules no
    /// longer cached, or cached in another version, leave; new ones come in with the names
    /// `names_of(path, module, each)` gives. On an error the index is left unsynced (the next
    /// call tries again).
    pub(super) fn sync(
        &mut self,
        generation: u64,
        cached: &[(PathBuf, Arc<SharedModule>)],
        mut names_of: impl FnMut(&Path, &Arc<SharedModule>, &mut dyn FnMut(&str)) -> Result<(), InstantiateError>,
    ) -> Result<(), InstantiateError> {
        self.generation = None;
        let mut current: HashMap<&Path, *const SharedModule> = HashMap::new();
        current.try_reserve(cached.len()).map_err(|_| out_of_memory(cached.len().saturating_mul(32)))?;
        current.extend(cached.iter().map(|(path, module)| (path.as_path(), Arc::as_ptr(module))));
        for slot in 0..self.slots.len() {
            let Some(indexed) = &self.slots[slot] else { continue };
            if current.get(indexed.path.as_path()) == Some(&indexed.module.as_ptr()) {
                current.remove(indexed.path.as_path()); // indexed already
            } else {
                self.remove(slot)?;
            }
        }
        for (path, module) in cached {
            if current.contains_key(path.as_path()) {
                self.add(path, module, &mut names_of)?;
            }
        }
        self.generation = Some(generation);
        Ok(())
    }

    /// Takes the module in `slot` out of the index.
    fn remove(&mut self, slot: usize) -> Result<(), InstantiateError> {
        self.free
            .try_reserve(1)
            .map_err(|_| out_of_memory(self.free.len().saturating_add(1).saturating_mul(8)))?;
        let Some(indexed) = self.slots[slot].take() else { return Ok(()) };
        for hash in indexed.hashes {
            if let Ok(entry) = self.by_name.find_entry(hash, |&(h, s)| h == hash && s == slot) {
                entry.remove();
            }
        }
        self.free.push(slot);
        Ok(())
    }

    /// Indexes `module` (at `path`) with the names `names_of` gives.
    fn add(
        &mut self,
        path: &Path,
        module: &Arc<SharedModule>,
        names_of: &mut impl FnMut(&Path, &Arc<SharedModule>, &mut dyn FnMut(&str)) -> Result<(), InstantiateError>,
    ) -> Result<(), InstantiateError> {
        let mut hashes: Vec<u64> = Vec::new();
        let mut failed = false;
        names_of(path, module, &mut |name| {
            if hashes.try_reserve(1).is_ok() {
                hashes.push(self.hasher.hash_bytes(name.as_bytes()));
            } else {
                failed = true;
            }
        })?;
        if failed {
            return Err(out_of_memory(hashes.len().saturating_mul(16)));
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots
                    .try_reserve(1)
                    .map_err(|_| out_of_memory(self.slots.len().saturating_add(1).saturating_mul(64)))?;
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        let bytes = self.by_name.len().saturating_add(hashes.len()).saturating_mul(16);
        self.by_name.try_reserve(hashes.len(), |&(hash, _)| hash).map_err(|_| out_of_memory(bytes))?;
        for &hash in &hashes {
            self.by_name.insert_unique(hash, (hash, slot), |&(hash, _)| hash);
        }
        let mut owned = PathBuf::new();
        owned
            .as_mut_os_string()
            .try_reserve_exact(path.as_os_str().len())
            .map_err(|_| out_of_memory(path.as_os_str().len()))?;
        owned.push(path);
        self.slots[slot] = Some(Indexed { path: owned, module: Arc::downgrade(module), hashes });
        Ok(())
    }

    /// The indexed modules one of whose names hashes as `name` does: a superset of those
    /// offering it, which the caller checks. Empty, without allocating, for a name none offers.
    pub(super) fn candidates<'s>(&'s self, name: &str) -> impl Iterator<Item = &'s Path> + 's {
        let hash = self.hasher.hash_bytes(name.as_bytes());
        self.by_name
            .iter_hash(hash)
            .filter(move |&&(h, _)| h == hash)
            .filter_map(|&(_, slot)| self.slots.get(slot)?.as_ref().map(|indexed| indexed.path.as_path()))
    }
}
