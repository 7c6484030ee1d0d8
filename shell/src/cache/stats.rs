//! What a cache reports: its counters, contents and budgets at one moment ([`CacheStats`]).

use std::sync::atomic::Ordering;

use super::ModuleCache;

/// A cache's counters and contents at one moment; laid out as the C ABI's `SmfCacheStats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Gets answered from the cache.
    pub hits: u64,
    /// Gets that loaded.
    pub misses: u64,
    /// Modules that left because of a budget.
    pub evictions: u64,
    /// Loads that failed.
    pub load_failures: u64,
    /// Modules resident now.
    pub modules: u64,
    /// Their image bytes.
    pub bytes: u64,
    /// The module budget (0: unlimited).
    pub max_modules: u64,
    /// The byte budget (0: unlimited).
    pub max_bytes: u64,
    /// Median load time of misses (ns, within 12%).
    pub load_ns_p50: u64,
    /// Their 99th percentile (ns, within 12%).
    pub load_ns_p99: u64,
    /// Their maximum (ns, exact).
    pub load_ns_max: u64,
}

impl ModuleCache {
    /// The counters and contents now.
    pub fn stats(&self) -> CacheStats {
        let state = self.lock();
        let times = &state.stats.load_times;
        let budget = state.lru.budget();
        CacheStats {
            hits: state.stats.hits + self.memo_hits.load(Ordering::Relaxed),
            misses: state.stats.misses,
            evictions: state.stats.evictions,
            load_failures: state.stats.load_failures,
            modules: state.lru.len(),
            bytes: state.lru.bytes(),
            max_modules: budget.max_entries,
            max_bytes: budget.max_bytes,
            load_ns_p50: times.quantile(0.5),
            load_ns_p99: times.quantile(0.99),
            load_ns_max: times.max(),
        }
    }

    /// Hits made without the lock, through threads' memos (`memo.rs`); [`CacheStats::hits`]
    /// counts them too.
    pub fn memo_hits(&self) -> u64 {
        self.memo_hits.load(Ordering::Relaxed)
    }
}
