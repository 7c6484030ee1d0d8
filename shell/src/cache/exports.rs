//! The cached modules' exports by name, for [`super::ModuleCache::resolve`]: one hash lookup
//! whatever the number of cached modules, made outside the cache's lock.
//!
//! The cache hands each module it caches over as it caches it (`added`, under its lock: a
//! pointer pushed); the index takes their exports in at the next resolve, under a lock of its
//! own. Modules hold their entries weakly: a module evicted and released leaves its entries
//! until a sweep (as the table doubles), one evicted but still held is told apart
//! by the cache at each resolve. A cache nobody resolves in hands over nothing unboundedly: past
//! twice its size, the pending modules are dropped and the index is rebuilt from the cache at the
//! next resolve.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use smf_runtime::load::ExportIndex;

use super::{key, ModuleCache};
use crate::loader::SharedModule;

/// A cached version: its number in the cache (never reused), and the module.
pub(super) type Added = (u64, Weak<SharedModule>);

/// The index (see the module documentation).
#[derive(Default)]
pub(super) struct CachedExports {
    /// (name hash, version number) of every export of every indexed version.
    index: ExportIndex<u64>,
    /// The indexed versions, weakly.
    modules: HashMap<u64, Weak<SharedModule>>,
    /// How many versions the last sweep kept: the next runs when there are twice as many.
    swept: usize,
}

impl CachedExports {
    /// Forgets everything (before a rebuild).
    pub(super) fn clear(&mut self) {
        *self = Self::default();
    }

    /// Takes in the exports of `added`'s live modules. Memory that cannot be had leaves a
    /// module out (its names then resolve to none of its exports), never aborts.
    pub(super) fn take_in(&mut self, added: impl IntoIterator<Item = Added>) {
        for (number, module) in added {
            let Some(live) = module.upgrade() else { continue };
            if self.modules.try_reserve(1).is_err() || self.index.insert(number, live.loaded()).is_err() {
                continue;
            }
            self.modules.insert(number, module);
        }
        // Released modules go in sweeps that run as the table doubles: a pass over it costs
        // each module taken in since the last one constant time.
        if self.modules.len() >= 2 * self.swept.max(64) {
            self.modules.retain(|_, m| m.strong_count() > 0);
            let modules = &self.modules;
            self.index.retain(|number| modules.contains_key(number));
            self.swept = self.modules.len();
        }
    }

    /// The live indexed versions that export `name`, with the symbol's address.
    pub(super) fn exporting(&self, name: &[u8]) -> Vec<(u64, Arc<SharedModule>, usize)> {
        let mut found = Vec::new();
        for number in self.index.candidates(name) {
            let Some(module) = self.modules.get(&number).and_then(Weak::upgrade) else { continue };
            let Some(addr) = module.symbol(name) else { continue };
            if found.try_reserve(1).is_ok() {
                found.push((number, module, addr));
            }
        }
        found
    }
}

impl ModuleCache {
    /// The address of the exported symbol `name` in the most recently used cached module that
    /// exports it (by the recency list: hits through a thread's memo do not move a module in
    /// it). It stays valid while that module is cached or held.
    ///
    /// One lookup in an index of the cached modules' exports (`exports.rs`), whatever their
    /// number; the cache's lock is held to take the modules cached since the last resolve and,
    /// after the lookup, to choose among the few that export the name, never for a pass over
    /// the cache (but one rebuild after twice its size went by without a resolve).
    pub fn resolve(&self, name: &[u8]) -> Option<usize> {
        let (added, rebuild) = {
            let mut state = self.lock();
            let rebuild = std::mem::take(&mut state.rebuild_exports).then(|| {
                state
                    .lru
                    .iter()
                    .map(|(_, cached)| (cached.number, Arc::downgrade(&cached.module)))
                    .collect::<Vec<_>>()
            });
            (std::mem::take(&mut state.added), rebuild)
        };
        let exporting = {
            let mut exports = crate::sync::lock(&self.locked.exports);
            if let Some(all) = rebuild {
                exports.clear();
                exports.take_in(all);
            }
            exports.take_in(added);
            exports.exporting(name)
        };
        if exporting.is_empty() {
            return None;
        }
        // The most recently used of those still cached in that version.
        let state = self.lock();
        let cached_at = |number: u64, module: &SharedModule| {
            let path = module.path()?;
            let cached = state.lru.peek(key(path)).filter(|cached| cached.number == number)?;
            Some(cached.used_at.get())
        };
        let chosen =
            exporting.iter().filter_map(|(number, module, addr)| Some((cached_at(*number, module)?, *addr)));
        let addr = chosen.max_by_key(|&(used_at, _)| used_at).map(|(_, addr)| addr);
        drop(state);
        // The modules found are let go outside the lock (an evicted one may be freed here).
        drop(exporting);
        addr
    }
}
