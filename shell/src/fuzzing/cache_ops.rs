//! The `cache_ops` target: a [`ModuleCache`] on a small budget driven by a sequence of
//! operations decoded from the input (get, evict, clear, resolve, prefetch, a module file
//! replaced by another version or by bytes that are no module, a held module let go), with
//! the cache's promises checked after every step: the budgets hold, every module a caller
//! still holds runs and is the version it was loaded as, a get answers with the file's
//! current version, and the statistics add up. At the end every module is released: the
//! process's allocator holds no block more than before.
//!
//! The input chooses whether gets check the file's identity every time
//! ([`ModuleCache::set_check_every_get`]) or trust change notices, as the cache does by
//! default; then a module got again and again is hit through the thread's memo, and a
//! replaced file's notice arrives asynchronously: a get may answer a version the file held
//! since the cache last knew it (never one older than a get already answered), and after an
//! eviction it answers the current one.

use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};

use super::module_files::{self, Version, SLOTS};
use crate::cache::{CacheStats, ModuleCache};
use crate::loader::SharedModule;

/// Most operations one input runs.
const MAX_OPERATIONS: usize = 64;
/// Most modules held by the "caller" at once.
const MAX_HELD: usize = 8;

/// The budget: bytes in pages (0: unlimited) and modules (0: unlimited).
#[derive(Arbitrary, Debug)]
struct Budget {
    pages: u8,
    modules: u8,
    /// Whether gets trust change notices (and may hit through the thread's memo) instead of
    /// checking the file's identity every time.
    notices: bool,
}

/// One operation.
#[derive(Arbitrary, Debug)]
enum Operation {
    /// Get a slot's module; hold it if asked.
    Get { slot: u8, hold: bool },
    /// Replace a slot's file with another version.
    Write { slot: u8, version: u8 },
    /// Replace a slot's file with bytes that are no module.
    Corrupt { slot: u8 },
    /// Evict a slot.
    Evict { slot: u8 },
    /// Evict everything.
    Clear,
    /// Resolve a slot's function by name among the cached modules.
    Resolve { slot: u8 },
    /// Prefetch the slots of a bit mask on a few threads.
    Prefetch { mask: u8, threads: u8 },
    /// Let go of a held module.
    Release { index: u8 },
}

/// A module the caller holds, and what its function must return.
struct Held {
    module: Arc<SharedModule>,
    slot: u8,
    value: i64,
}

/// What one input did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheOpsRun {
    /// Operations run.
    pub operations: usize,
    /// Gets answered through the thread's memo ([`ModuleCache::memo_hits`]).
    pub memo_hits: u64,
}

/// Runs the operations `data` decodes to; returns how many ran.
pub fn fuzz_cache_ops(data: &[u8]) -> usize {
    run_cache_ops(data).operations
}

/// [`fuzz_cache_ops`], telling what the input did.
pub fn run_cache_ops(data: &[u8]) -> CacheOpsRun {
    let mut input = Unstructured::new(data);
    let Ok(budget) = Budget::arbitrary(&mut input) else { return CacheOpsRun::default() };
    let page = smf_runtime::sys::page_size() as u64;
    let (max_bytes, max_modules) = (u64::from(budget.pages % 16) * page, u64::from(budget.modules % 5));
    let before = crate::process::exec().stats();
    let mut files = [Version::Module(0); SLOTS as usize];
    let mut replaced = Vec::new();
    for (slot, version) in (0..SLOTS).zip(files) {
        module_files::write(slot, version, &mut replaced);
    }
    let cache = ModuleCache::new(max_bytes, max_modules);
    cache.set_check_every_get(!budget.notices);
    // Per slot, the versions a get may answer, oldest first: the current one alone when every
    // get checks; with notices, also those written since the cache last knew the file.
    let mut answerable: Vec<Vec<Version>> = files.iter().map(|&version| vec![version]).collect();
    let mut held: Vec<Held> = Vec::new();
    let mut ran = 0;
    let mut gets = 0;
    while ran < MAX_OPERATIONS {
        let Ok(operation) = Operation::arbitrary(&mut input) else { break };
        let stats_before = cache.stats();
        match operation {
            Operation::Get { slot, hold } => {
                let slot = slot % SLOTS;
                gets += 1;
                let got = cache.get(&module_files::path(slot));
                let versions = &mut answerable[usize::from(slot)];
                match got {
                    Ok(module) => {
                        let value = call(&module, slot);
                        let answered = versions.iter().position(|version| {
                            matches!(version, Version::Module(v) if module_files::value(slot, *v) == value)
                        });
                        let Some(at) = answered else {
                            panic!("slot {slot} answered {value}, none of {versions:?}")
                        };
                        // Nothing older than this answer comes back.
                        versions.drain(..at);
                        if hold && held.len() < MAX_HELD {
                            held.push(Held { module, slot, value });
                        }
                    }
                    Err(error) => {
                        // A get that reads the file reads it as it is now.
                        assert_eq!(files[usize::from(slot)], Version::Garbage, "slot {slot}: {error}");
                        let _ = smf_format::fuzzing::formatted(&error);
                        // A file that does not load leaves the cache.
                        *versions = vec![Version::Garbage];
                    }
                }
            }
            Operation::Write { slot, version } => {
                let slot = slot % SLOTS;
                files[usize::from(slot)] = Version::Module(version % 8);
                module_files::write(slot, files[usize::from(slot)], &mut replaced);
                written(&mut answerable[usize::from(slot)], files[usize::from(slot)], budget.notices);
            }
            Operation::Corrupt { slot } => {
                let slot = slot % SLOTS;
                files[usize::from(slot)] = Version::Garbage;
                module_files::write(slot, Version::Garbage, &mut replaced);
                written(&mut answerable[usize::from(slot)], Version::Garbage, budget.notices);
            }
            Operation::Evict { slot } => {
                let slot = slot % SLOTS;
                let path = module_files::path(slot);
                let was = cache.contains(&path);
                assert_eq!(cache.evict(&path), was, "evict says whether the module was cached");
                assert!(!cache.contains(&path));
                answerable[usize::from(slot)] = vec![files[usize::from(slot)]];
            }
            Operation::Clear => {
                cache.clear();
                assert_eq!(cache.stats().modules, 0);
                answerable = files.iter().map(|&version| vec![version]).collect();
            }
            Operation::Resolve { slot } => {
                let slot = slot % SLOTS;
                let name = module_files::function_name(slot);
                if let Some(addr) = cache.resolve(&name) {
                    let cached = cache.modules().into_iter().any(|(_, m)| m.symbol(&name) == Some(addr));
                    assert!(cached, "resolve gave an address no cached module exports");
                }
            }
            Operation::Prefetch { mask, threads } => {
                let paths: Vec<_> =
                    (0..SLOTS).filter(|s| mask >> s & 1 == 1).map(module_files::path).collect();
                let cached = cache.prefetch(&paths, usize::from(threads % 3) + 1);
                assert!(cached <= paths.len());
            }
            Operation::Release { index } => {
                if !held.is_empty() {
                    held.swap_remove(usize::from(index) % held.len());
                }
            }
        }
        check(&cache, &stats_before, &held, gets);
        ran += 1;
    }
    let memo_hits = cache.memo_hits();
    drop(held);
    drop(cache);
    let after = crate::process::exec().stats();
    assert_eq!(after.blocks_live, before.blocks_live, "blocks left behind once every module was released");
    CacheOpsRun { operations: ran, memo_hits }
}

/// The versions a get of a slot may answer once `version` is written to its file: that one
/// alone when every get checks the file, else also those before it until a get sees it.
fn written(versions: &mut Vec<Version>, version: Version, notices: bool) {
    if !notices {
        versions.clear();
    }
    versions.push(version);
}

/// What must hold after every step.
fn check(cache: &ModuleCache, before: &CacheStats, held: &[Held], gets: u64) {
    let stats = cache.stats();
    // Within budget, but for the newest module alone, which stays however large it is.
    let over_modules = stats.max_modules > 0 && stats.modules > stats.max_modules;
    let over_bytes = stats.max_bytes > 0 && stats.bytes > stats.max_bytes;
    assert!(!(over_modules || over_bytes) || stats.modules == 1, "over the budget: {stats:?}");
    assert_eq!(stats.modules, cache.modules().len() as u64, "the count is the modules cached");
    for counter in [
        (stats.hits, before.hits),
        (stats.misses, before.misses),
        (stats.evictions, before.evictions),
        (stats.load_failures, before.load_failures),
    ] {
        assert!(counter.0 >= counter.1, "a counter went back: {before:?} -> {stats:?}");
    }
    assert!(stats.hits + stats.misses >= gets, "every get is a hit or a miss: {stats:?}, {gets} gets");
    for module in held {
        assert_eq!(call(&module.module, module.slot), module.value, "a held module changed under its holder");
    }
}

/// Calls `slot`'s function in `module`.
fn call(module: &SharedModule, slot: u8) -> i64 {
    let name = module_files::function_name(slot);
    // SAFETY: the modules of `module_files` export this function, which takes no argument and
    // returns an integer.
    #[allow(unsafe_code)]
    let value = unsafe { module.call_integers(Some(&name), &[]) };
    value.unwrap_or_else(|e| panic!("{e}"))
}
