//! Modules whose exports resolve the imports of later loads: the process's [`registry`] (what
//! loads linked as the process links join), any [`Registry`] of one's own, and [`Libraries`]
//! held strongly (the `smf run --lib` modules).

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use smf_runtime::load::{ExportIndex, HashedName, Resolved, Resolver};

use super::SharedModule;
use crate::sync::lock;

/// The process's registry: modules loaded with [`Linking::Process`](super::Linking::Process) (the C ABI's
/// `smf_module_load*` among them) that are not local, in load order.
pub fn registry() -> &'static Registry {
    static REGISTRY: Registry = Registry::new();
    crate::fork::hold_at_fork(crate::fork::Lock::Registry, &REGISTRY.inner);
    &REGISTRY
}

/// A set of modules whose exports resolve imports; each resolved import keeps its module alive
/// from the importer. Modules are held weakly and resolve in the order they were added (the
/// first one exporting a name wins).
///
/// With a few modules, an import is looked up in each in turn. With more, imports are found
/// through an index of every added module's exports ([`ExportIndex`]), brought up to date at the
/// first resolution after modules were added: a load's imports cost about the same with
/// thousands of modules registered as with a few, and a module is indexed only once something
/// is resolved after it was added. Released modules are forgotten in sweeps that run as the
/// registry doubles, so load/release churn keeps it small; while it lists few modules, a
/// resolution forgets them first (each import would otherwise step over every module released
/// since the last sweep: up to 16 of them in a loop that loads and releases).
#[derive(Debug)]
pub struct Registry {
    inner: Mutex<RegistryInner>,
    /// How many modules `inner` lists, stored under its lock as that changes and read without
    /// it: a resolution against a registry listing none (a process's first load, or one whose
    /// modules were all released and forgotten) takes no lock. A load racing an `add` sees the
    /// registry before or after it, as with the lock.
    listed: AtomicUsize,
}

#[derive(Debug)]
struct RegistryInner {
    /// Modules by the order they were added (released ones until the next sweep).
    modules: BTreeMap<u64, Weak<SharedModule>>,
    /// The order number of the next module added.
    next: u64,
    /// Modules added since the index was last brought up to date.
    pending: Vec<u64>,
    /// Set when a module could not be listed in `pending` (no memory): the index is then
    /// made again from every module when memory allows, and imports are asked of each module
    /// meanwhile.
    unlisted: bool,
    /// Every exported symbol of the indexed modules, by module order number.
    index: ExportIndex<u64>,
    /// Modules kept after the last sweep; the next runs when there are twice as many.
    swept: usize,
    /// Released modules forgotten since the last sweep while their exports stay in the index
    /// ([`RegistryInner::forget_released`]); as many as the sweep kept make the next sweep run.
    forgotten: usize,
}

/// Fewest entries at which the registry sweeps released modules out.
const SWEEP_FLOOR: usize = 16;

/// Up to this many modules, imports are looked up module by module (cheaper than indexing
/// every export of every module, when there are few modules to ask).
const UNINDEXED_MODULES: usize = 16;

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// An empty registry.
    pub const fn new() -> Self {
        Self {
            inner: Mutex::new(RegistryInner {
                modules: BTreeMap::new(),
                next: 0,
                pending: Vec::new(),
                unlisted: false,
                index: ExportIndex::new(),
                swept: 0,
                forgotten: 0,
            }),
            listed: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RegistryInner> {
        lock(&self.inner)
    }

    /// Adds a module (held weakly: the registry never keeps a module alive).
    pub fn add(&self, module: &Arc<SharedModule>) {
        let mut inner = self.lock();
        let order = inner.next;
        inner.next += 1;
        inner.modules.insert(order, Arc::downgrade(module));
        if inner.pending.try_reserve(1).is_ok() {
            inner.pending.push(order);
        } else {
            inner.unlisted = true;
        }
        if inner.modules.len() >= 2 * inner.swept.max(SWEEP_FLOOR) {
            inner.sweep();
        }
        self.listed.store(inner.modules.len(), Ordering::Release);
    }

    /// Live modules, in the order they were added.
    pub fn modules(&self) -> Vec<Arc<SharedModule>> {
        self.lock().modules.values().filter_map(Weak::upgrade).collect()
    }

    /// How many modules the registry still tracks: the live ones, plus released ones not yet
    /// swept out (at most as many again as there were after the last sweep).
    pub fn tracked(&self) -> usize {
        self.lock().modules.len()
    }
}

impl RegistryInner {
    /// Forgets released modules and their index entries.
    fn sweep(&mut self) {
        self.modules.retain(|_, m| m.strong_count() > 0);
        let modules = &self.modules;
        self.pending.retain(|order| modules.contains_key(order));
        self.index.retain(|order| modules.contains_key(order));
        self.swept = self.modules.len();
        self.forgotten = 0;
    }

    /// Forgets the modules released since the last sweep, if there are any, from the list and
    /// the pending list, in a pass over a list short enough to be scanned whole; their exports
    /// leave the index at the next sweep, which runs once as many have been forgotten as the
    /// last one kept (so that the index never holds more than that of released modules).
    fn forget_released(&mut self) {
        if self.modules.values().all(|m| m.strong_count() > 0) {
            return;
        }
        let listed = self.modules.len();
        self.modules.retain(|_, m| m.strong_count() > 0);
        self.forgotten += listed - self.modules.len();
        if self.forgotten >= self.swept.max(SWEEP_FLOOR) {
            self.sweep();
            return;
        }
        let modules = &self.modules;
        self.pending.retain(|order| modules.contains_key(order));
    }

    /// Indexes the exports of the modules added since the last call; false if the memory
    /// for the index cannot be had (the modules not indexed stay pending).
    fn index_pending(&mut self) -> bool {
        if self.unlisted {
            let mut all = Vec::new();
            if all.try_reserve_exact(self.modules.len()).is_err() {
                return false;
            }
            all.extend(self.modules.keys().copied());
            self.index.retain(|_| false);
            self.pending = all;
            self.unlisted = false;
        }
        while let Some(&order) = self.pending.last() {
            if let Some(module) = self.modules.get(&order).and_then(Weak::upgrade) {
                if self.index.insert(order, module.loaded()).is_err() {
                    return false;
                }
            }
            self.pending.pop();
        }
        true
    }

    /// The first-added live module exporting `name` (asking each in turn), and the symbol's
    /// address.
    fn scan(&self, name: HashedName<'_>) -> Option<(Arc<SharedModule>, usize)> {
        self.modules.values().filter_map(Weak::upgrade).find_map(|module| {
            let addr = module.symbol_hashed(name)?;
            Some((module, addr))
        })
    }

    /// The first-added live module exporting `name`, and the symbol's address.
    fn find(&self, name: HashedName<'_>) -> Option<(Arc<SharedModule>, usize)> {
        let mut found: Option<(u64, Arc<SharedModule>, usize)> = None;
        for order in self.index.candidates_hashed(name) {
            if found.as_ref().is_some_and(|(first, ..)| *first < order) {
                continue;
            }
            let Some(module) = self.modules.get(&order).and_then(Weak::upgrade) else { continue };
            if let Some(addr) = module.symbol_hashed(name) {
                found = Some((order, module, addr));
            }
        }
        found.map(|(_, module, addr)| (module, addr))
    }
}

impl Resolver for Registry {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        self.resolve_hashed(HashedName::new(name))
    }

    fn resolve_hashed(&self, name: HashedName<'_>) -> Option<Resolved> {
        if self.listed.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut inner = self.lock();
        if inner.modules.len() <= 2 * UNINDEXED_MODULES {
            inner.forget_released();
            self.listed.store(inner.modules.len(), Ordering::Release);
        }
        // Module by module while there are few, or while memory for the index cannot be had.
        let (module, addr) = if inner.modules.len() <= UNINDEXED_MODULES || !inner.index_pending() {
            inner.scan(name)?
        } else {
            inner.find(name)?
        };
        drop(inner);
        let keepalive: Arc<dyn Any + Send + Sync> = module;
        Some(Resolved { addr, keepalive: Some(keepalive) })
    }

    fn describe(&self, out: &mut dyn std::fmt::Write) -> std::fmt::Result {
        let live = self.lock().modules.values().filter(|m| m.strong_count() > 0).count();
        let s = if live == 1 { "" } else { "s" };
        write!(out, "{live} loaded module{s}")
    }
}

/// Modules held strongly, resolving in order (the `smf run --lib` libraries).
#[derive(Debug, Default)]
pub struct Libraries(pub Vec<Arc<SharedModule>>);

impl Resolver for Libraries {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        self.resolve_hashed(HashedName::new(name))
    }

    fn resolve_hashed(&self, name: HashedName<'_>) -> Option<Resolved> {
        self.0.iter().find_map(|m| {
            let addr = m.symbol_hashed(name)?;
            let keepalive: Arc<dyn Any + Send + Sync> = m.clone();
            Some(Resolved { addr, keepalive: Some(keepalive) })
        })
    }

    fn describe(&self, out: &mut dyn std::fmt::Write) -> std::fmt::Result {
        match self.0.len() {
            1 => out.write_str("1 library"),
            n => write!(out, "{n} libraries"),
        }
    }
}

#[cfg(test)]
mod tests {
    use smf_format::write::{samples, ModuleBuilder, SymbolSpec};
    use smf_format::Dialect;

    use super::*;
    use crate::loader::{load, LoadRequest};

    /// A module exporting `name` (returning 42).
    fn exporting(name: &str) -> Arc<SharedModule> {
        let mut b = ModuleBuilder::new(Dialect::R96);
        b.add_code(b".text", &samples::RETURN_42);
        b.add_symbol(SymbolSpec::function(name.as_bytes(), 0, 6));
        load(&LoadRequest::bytes(&b.build().unwrap()).resolver_only(&())).unwrap()
    }

    #[test]
    fn modules_left_out_of_the_pending_list_are_indexed_with_the_rest_when_memory_returns() {
        let registry = Registry::new();
        let modules: Vec<Arc<SharedModule>> = (0..40).map(|i| exporting(&format!("f{i}"))).collect();
        for (i, module) in modules.iter().enumerate() {
            registry.add(module);
            if i == 20 {
                // As if listing module 20 had found no memory.
                let mut inner = registry.lock();
                inner.pending.pop();
                inner.unlisted = true;
            }
        }
        for (i, module) in modules.iter().enumerate() {
            let found = registry.resolve(format!("f{i}").as_bytes()).map(|r| r.addr);
            assert_eq!(found, module.symbol(format!("f{i}").as_bytes()), "f{i}");
        }
        assert!(!registry.lock().unlisted, "the index was made again");
    }

    #[test]
    fn while_few_modules_are_listed_a_resolution_forgets_the_released_ones_first() {
        let registry = Registry::new();
        let kept = exporting("kept");
        registry.add(&kept);
        for i in 0..5 {
            let released = exporting(&format!("gone{i}"));
            registry.add(&released);
        }
        assert_eq!(registry.tracked(), 6, "released modules stay listed until something looks");
        assert_eq!(registry.lock().pending.len(), 6);
        assert!(registry.resolve(b"gone3").is_none(), "a released module resolves nothing");
        assert_eq!(registry.tracked(), 1, "the resolution forgot the released ones");
        assert_eq!(registry.lock().pending, [0], "and their places in the pending list");
        assert_eq!(registry.resolve(b"kept").map(|r| r.addr), kept.symbol(b"kept"));
    }

    #[test]
    fn a_registry_whose_modules_are_all_released_and_forgotten_lists_none_until_the_next_add() {
        let registry = Registry::new();
        assert!(registry.resolve(b"f").is_none(), "an empty registry resolves nothing");
        let first = exporting("f");
        registry.add(&first);
        assert_eq!(registry.resolve(b"f").map(|r| r.addr), first.symbol(b"f"));
        drop(first);
        assert!(registry.resolve(b"f").is_none());
        assert_eq!((registry.tracked(), registry.listed.load(Ordering::Relaxed)), (0, 0));
        // The next module added is found again: the count follows every change.
        let second = exporting("f");
        registry.add(&second);
        assert_eq!(registry.listed.load(Ordering::Relaxed), 1);
        assert_eq!(registry.resolve(b"f").map(|r| r.addr), second.symbol(b"f"));
    }

    #[test]
    fn modules_forgotten_between_sweeps_leave_the_index_at_the_next_one() {
        // 17 modules stay: the index is in use. One more is added, found, released and
        // forgotten, over and over: the index keeps its exports only until the next sweep.
        let registry = Registry::new();
        let kept: Vec<Arc<SharedModule>> = (0..17).map(|i| exporting(&format!("kept{i}"))).collect();
        kept.iter().for_each(|m| registry.add(m));
        for i in 0..200 {
            let churn = exporting("churn");
            registry.add(&churn);
            assert_eq!(registry.resolve(b"churn").map(|r| r.addr), churn.symbol(b"churn"), "round {i}");
            drop(churn);
            assert!(registry.resolve(b"churn").is_none(), "round {i}");
            let inner = registry.lock();
            assert_eq!(inner.modules.len(), 17, "round {i}: the released one is forgotten");
            assert!(inner.index.len() <= 17 + 17, "round {i}: {} exports indexed", inner.index.len());
        }
        assert_eq!(registry.resolve(b"kept16").map(|r| r.addr), kept[16].symbol(b"kept16"));
    }
}
