//! The runtime's module cache: modules by path, bounded by resident bytes and module count,
//! least recently used out first ([`smf_runtime::lru::LruCache`]), loaded on a miss, prefetched
//! on worker threads, reloaded when their file is replaced.
//!
//! **Hot reload.** A cached module is reloaded when its file changes: replaced on disk (a new
//! file renamed over the path, as compilers and build tools write it) or rewritten in place.
//! Handles to the old version stay valid until released. How a change is noticed:
//! - by the file's identity (one `stat`: device, inode, size, modification and status-change
//!   times, [`FileIdentity`]) compared with the version cached, at each of a path's first
//!   [`WATCH_FROM_HIT`] hits after a load: the next get after a change sees it. That holds
//!   for a version that is not *fresh* (its file last changed at least
//!   [`smf_runtime::file::FRESH_FOR`] before the read, and the settle time): any later change
//!   moves the file's times past the version's.
//! - from then on, through a change notice (`watch.rs`: inotify watches on the files'
//!   directories, read by one thread that marks a cached version stale within microseconds of
//!   the change), taken before the `stat` that proves the file still the version cached (that
//!   hit may cost milliseconds: the process's first watch starts the watcher's thread, and the
//!   kernel takes up to ~10 ms to add a watch on some directories). Later hits cost no
//!   syscall: a hash lookup, a flag load and a list move under the lock. The notice is
//!   asynchronous: a get racing the rename may return the old version once more. Watching
//!   waits for repeated hits because the watcher costs a process milliseconds (the watches,
//!   and at exit the teardown of the inotify instance, which waits for a grace period of the
//!   kernel's): a process that loads its modules, runs and exits never starts it.
//! - once the process watches, loads take their notice before reading. A fresh version read
//!   before that (a change right after the read may have left the same identity) starts the
//!   watch and is read again at once, under its notice.
//! - with [`ModuleCache::set_check_every_get`], and for paths that cannot be watched (symbolic
//!   links, inotify unavailable), every get compares the file's identity, at the price of that
//!   `stat`.
//!
//! The forced form is [`ModuleCache::evict`] and a `get`. A file that vanished or no longer
//! loads is an error and leaves the cache; a module is never read from its file after it is
//! loaded (the loader copies what it keeps), so a file truncated while cached cannot fault the
//! process.
//!
//! **Locking.** One lock guards the bookkeeping (the LRU and the counters): a hit is a hash lookup
//! and a list move under it. Loads, `stat`s and the dropping of evicted modules (whose memory may
//! be unmapped then) happen outside it. Two threads missing the same path both load it; the cache
//! keeps the later one. A module a thread gets again and again (hit twice among its last eight hits
//! under the lock, watched by a notice) is hit without the lock, through the thread's memo
//! (`memo.rs`), while no module was cached, replaced, evicted or forgotten since and its notice has
//! not fired: the same hit, counted, in 28-37 ns (`cargo xtask bench cache`) where the locked one
//! took 51-64 (a probe alternating this and the commit before; the memo's bookkeeping adds 4-6 ns
//! to a hit that takes the lock). Such a hit does not move the module in the recency list; it flags
//! it, and eviction gives a flagged module a second chance (the clock algorithm's approximation of
//! the least recently used, where the list alone would evict a module some thread uses all the
//! time).
//!
//! Prefetch is in `prefetch.rs`, the statistics in `stats.rs`, the threads' memos in `memo.rs`.

mod cached;
mod exports;
mod linking;
mod memo;
mod prefetch;
mod stats;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use smf_runtime::lru::stats::Counters;
use smf_runtime::lru::{Budget, ByteKey, KeyedHasher, LruCache};

use crate::file::FileIdentity;
use crate::loader::{self, LoadRequest, ModuleError, SharedModule};
use crate::watch::Notice;

use cached::{watched, Cached, Freshness, Loaded, Watching};

pub use linking::CacheLinking;
pub use stats::CacheStats;

/// The hit from which a version is watched, when its load did not watch it: the ones before
/// compare the file's identity (see the module documentation).
pub const WATCH_FROM_HIT: u32 = 4;

struct State {
    /// Keyed by the path's bytes ([`key`]: a `Path` hashes and compares component by component,
    /// at twice the cost of a hit).
    lru: LruCache<Box<ByteKey>, Cached, KeyedHasher>,
    stats: Counters,
    /// The recency clock: counts the moves to the front of the recency list.
    clock: u64,
    /// The number of the next version cached.
    next_number: u64,
    /// Versions cached since the export index last took them in (`exports.rs`).
    added: Vec<exports::Added>,
    /// `added` was given up (it grew past twice the cache): the index is rebuilt from the
    /// cache at the next resolve.
    rebuild_exports: bool,
}

impl State {
    /// The recency clock, moved on: a version made the most recent now records it.
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Hands `cached` to the export index's next update (or gives the updates up for a
    /// rebuild, past twice the cache's size or where memory cannot be had).
    fn added(&mut self, cached: &Cached) {
        if self.rebuild_exports {
            return;
        }
        let bound =
            usize::try_from(self.lru.len()).unwrap_or(usize::MAX).saturating_mul(2).saturating_add(64);
        let room = self.added.len() < bound && self.added.try_reserve(1).is_ok();
        if room {
            self.added.push((cached.number, Arc::downgrade(&cached.module)));
        } else {
            self.added = Vec::new();
            self.rebuild_exports = true;
        }
    }
}

/// The cache's key hasher (SipHash-1-3 under the process's random key: callers choose the paths).
fn process_hasher() -> KeyedHasher {
    KeyedHasher::per_process()
}

/// `path`'s key in the cache: its bytes, as given (no components compared, no `.` or `//`
/// folded: a path written two ways is cached twice).
fn key(path: &Path) -> &ByteKey {
    ByteKey::new(path.as_os_str().as_bytes())
}

/// Evicted modules are dropped, outside the lock, this many at a time.
const DROP_BATCH: usize = 16;

/// What a get counts in the statistics when it loads: a get, both; a prefetch counts each file
/// once, however often it tries it.
#[derive(Clone, Copy)]
struct Counting {
    /// A load counts as a miss.
    miss: bool,
    /// A failed load counts as a load failure.
    failure: bool,
}

impl Counting {
    const EACH: Self = Self { miss: true, failure: true };
    /// A prefetch's first try of a file (its failures are counted at the end, once each).
    const MISS: Self = Self { miss: true, failure: false };
    /// A prefetch's retry.
    const NONE: Self = Self { miss: false, failure: false };
}

/// A module cache (see the module documentation).
///
/// ```
/// use std::path::Path;
/// use std::sync::Arc;
///
/// use smf::cache::ModuleCache;
///
/// // At most 64 MiB of images and 100 modules; past either, the least recently used leaves.
/// let cache = ModuleCache::new(64 << 20, 100);
/// let path = Path::new("../examples/recursion.smf");
/// let first = cache.get(path)?; // loaded
/// let again = cache.get(path)?; // a hit: the same module (its file's identity compared)
/// assert!(Arc::ptr_eq(&first, &again));
/// assert_eq!(cache.stats().hits, 1);
/// # Ok::<(), smf::loader::ModuleError>(())
/// ```
pub struct ModuleCache {
    /// This cache's identity in threads' memos (never reused).
    id: u64,
    /// Hits through threads' memos, which take no lock (`memo.rs`).
    memo_hits: AtomicU64,
    /// What its locks guard (apart, so that a fork can keep it alive while holding them).
    locked: Arc<Locked>,
    /// Compare the file's identity on every get, notices or not.
    check_every_get: AtomicBool,
    /// Counts changes to which modules are cached (a module cached, replaced, evicted,
    /// forgotten): one unchanged value means the same modules.
    generation: AtomicU64,
}

/// A cache's state under its locks, none taken while another of them is held.
struct Locked {
    state: Mutex<State>,
    linking: RwLock<CacheLinking>,
    /// The cached modules' exports, for [`ModuleCache::resolve`] (its own lock, taken after
    /// the state's is released, never with it).
    exports: Mutex<exports::CachedExports>,
}

impl crate::fork::Hold for Locked {
    fn hold(&'static self) -> Box<dyn std::any::Any> {
        let state = crate::sync::lock(&self.state);
        let exports = crate::sync::lock(&self.exports);
        Box::new((state, exports, crate::sync::write(&self.linking)))
    }
}

impl Drop for ModuleCache {
    /// Its modules released here, taken out under the lock: a fork on another thread may be
    /// keeping the locked state alive a moment longer, and its last reference must not
    /// release modules (run their destructors, close libraries) inside the fork's handlers.
    fn drop(&mut self) {
        self.clear();
    }
}

impl std::fmt::Debug for ModuleCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleCache").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

/// A bookkeeping allocation refused (a prefetch's [`ModuleCache::get_many`]).
#[derive(Clone, Copy, Debug)]
struct OutOfMemory;

impl ModuleCache {
    /// An empty cache evicting past `max_bytes` of module images or `max_modules` modules
    /// (0: unlimited).
    pub fn new(max_bytes: u64, max_modules: u64) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let budget = Budget { max_bytes, max_entries: max_modules };
        let locked = Arc::new(Locked {
            state: Mutex::new(State {
                lru: LruCache::new(process_hasher(), budget),
                stats: Counters::default(),
                clock: 0,
                next_number: 0,
                added: Vec::new(),
                rebuild_exports: false,
            }),
            exports: Mutex::new(exports::CachedExports::default()),
            linking: RwLock::new(CacheLinking::default()),
        });
        crate::fork::hold_object_at_fork(crate::fork::Object::Cache, &locked);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            memo_hits: AtomicU64::new(0),
            locked,
            check_every_get: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        }
    }

    /// A number that changes whenever the set of cached modules changes (a module cached,
    /// replaced by a new version, evicted or forgotten), so that an index over them knows when
    /// to look again.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Records a change of the cached modules (called with the state locked).
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Whether every get compares the file's identity (a `stat`) instead of trusting change
    /// notices: the next get after a change that gives the file another identity then always
    /// sees it (see the module documentation).
    pub fn set_check_every_get(&self, on: bool) {
        self.check_every_get.store(on, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.locked.state)
    }

    /// Sets how misses and prefetches link from now on.
    pub fn set_linking(&self, linking: CacheLinking) {
        *crate::sync::write(&self.locked.linking) = linking;
    }

    /// The module at `path`: the cached one if its file is the version cached, else loaded
    /// (and cached).
    pub fn get(&self, path: &Path) -> Result<Arc<SharedModule>, ModuleError> {
        self.get_counted(path, Counting::EACH)
    }

    /// [`ModuleCache::get`], counting in the statistics what `counting` says.
    fn get_counted(&self, path: &Path, counting: Counting) -> Result<Arc<SharedModule>, ModuleError> {
        match self.current(path) {
            Some(module) => Ok(module),
            None => self.load(path, counting),
        }
    }

    /// The cached module at `path` if its file is the version cached (a hit, counted).
    fn current(&self, path: &Path) -> Option<Arc<SharedModule>> {
        let every_get = self.check_every_get.load(Ordering::Relaxed);
        if !every_get {
            if let Some(module) = memo::hit(self.id, self.generation(), path) {
                self.memo_hits.fetch_add(1, Ordering::Relaxed);
                return Some(module);
            }
        }
        // The cached version's identity, when only a stat can tell whether it is current.
        let (identity, watch) = {
            let mut state = self.lock();
            // Read under the lock, which every change of the cached modules holds.
            let generation = self.generation();
            let now = state.tick();
            let cached = state.lru.get_mut(key(path))?;
            cached.used_at.set(now);
            match cached.freshness(every_get) {
                Freshness::Current => {
                    let module = Arc::clone(&cached.module);
                    // Made the most recent: a use flagged before is seen now.
                    if let Some(used) = cached.used.as_ref().filter(|used| used.load(Ordering::Relaxed)) {
                        used.store(false, Ordering::Relaxed);
                    }
                    let forgotten = match &cached.watching {
                        Watching::Notice(notice) if memo::hit_before(&cached.module) => {
                            memo::remember(memo::LockedHit {
                                cache: self.id,
                                generation,
                                path,
                                module: &cached.module,
                                notice,
                                used: &mut cached.used,
                            })
                        }
                        _ => None,
                    };
                    state.stats.hits += 1;
                    drop(state);
                    drop(forgotten);
                    return Some(module);
                }
                Freshness::Unknown { identity, watch } => (identity, watch),
                Freshness::Stale => return None,
            }
        };
        // Outside the lock: the notice if the path is to be watched from now on, then the
        // stat, then the hit if the file is the version cached (watched from then on).
        let notice = watch.then(|| crate::watch::watch(path));
        if !FileIdentity::at(path).is_ok_and(|now| now == identity) {
            return None;
        }
        let mut state = self.lock();
        let now = state.tick();
        let cached = state.lru.get_mut(key(path)).filter(|c| c.identity == identity)?;
        cached.used_at.set(now);
        let unwatched = match &cached.watching {
            Watching::Identity { .. } => true,
            Watching::Notice(inherited) => inherited.is_orphaned(),
            Watching::Never => false,
        };
        if let (Some(notice), true) = (notice, unwatched) {
            cached.watching = notice.map_or(Watching::Never, Watching::Notice);
        }
        let module = Arc::clone(&cached.module);
        state.stats.hits += 1;
        Some(module)
    }

    /// [`ModuleCache::get_counted`] of several paths (`Err` if its bookkeeping could not be
    /// allocated: nothing was loaded then): the ones not current in the cache are
    /// loaded together (`loader::load_together`: one seal for all) and cached.
    fn get_many<P: AsRef<Path>>(
        &self,
        paths: &[P],
        counting: Counting,
    ) -> Result<Vec<Result<Arc<SharedModule>, ModuleError>>, OutOfMemory> {
        // Its bookkeeping is allocated fallibly (a prefetch's worker threads call it; an
        // allocation refused there would end the process): the results, the paths missed and
        // the sets that tell a path given twice.
        let n = paths.len();
        let mut hits: Vec<Option<Arc<SharedModule>>> = Vec::new();
        let mut missed: Vec<&Path> = Vec::new();
        let mut first_misses: HashSet<&OsStr> = HashSet::new();
        let mut seen: HashSet<&OsStr> = HashSet::new();
        let mut results = Vec::new();
        hits.try_reserve_exact(n).map_err(|_| OutOfMemory)?;
        missed.try_reserve_exact(n).map_err(|_| OutOfMemory)?;
        first_misses.try_reserve(n).map_err(|_| OutOfMemory)?;
        seen.try_reserve(n).map_err(|_| OutOfMemory)?;
        results.try_reserve_exact(n).map_err(|_| OutOfMemory)?;
        hits.extend(paths.iter().map(|p| self.current(p.as_ref())));
        // A path given twice loads once (its second get is then a hit). Paths are told apart
        // by their bytes, as the cache keys them, through a keyed hash (not by comparing each
        // with every other: a quadratic cost in the number of paths).
        for (path, hit) in paths.iter().zip(&hits) {
            if hit.is_none() && first_misses.insert(path.as_ref().as_os_str()) {
                missed.push(path.as_ref());
            }
        }
        let mut loaded = match missed.as_slice() {
            [] => Vec::new(),
            [path] => vec![self.load(path, counting)],
            _ => self.load_together(&missed, counting),
        }
        .into_iter();
        results.extend(hits.into_iter().zip(paths).map(|(hit, path)| match hit {
            Some(module) => Ok(module),
            // A path given again: what its first occurrence loaded, as a get.
            None if !seen.insert(path.as_ref().as_os_str()) => self.get_counted(path.as_ref(), counting),
            None => {
                // One result per missed path, in order (loaded alone if one lacked, which
                // it cannot).
                loaded.next().unwrap_or_else(|| self.load(path.as_ref(), counting))
            }
        }));
        Ok(results)
    }

    /// A miss: loads `path` outside the lock, then caches it (or forgets the stale entry).
    fn load(&self, path: &Path, counting: Counting) -> Result<Arc<SharedModule>, ModuleError> {
        let linking = crate::sync::read(&self.locked.linking).clone();
        let started = Instant::now();
        // Where the process watches already, the notice first: a change landing during the
        // read still marks this version stale.
        let notice = crate::watch::watch_if_started(path);
        let options = linking.options();
        let loaded = watched(
            path,
            notice,
            loader::load_file(path, &LoadRequest::path(path).linked(options)),
            &options,
        );
        let elapsed = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.cache_loaded(path, loaded, elapsed, counting)
    }

    /// Misses loaded together (`loader::load_together`), then cached; each load's time
    /// in the statistics is its share of the whole.
    fn load_together(
        &self,
        paths: &[&Path],
        counting: Counting,
    ) -> Vec<Result<Arc<SharedModule>, ModuleError>> {
        let linking = crate::sync::read(&self.locked.linking).clone();
        let started = Instant::now();
        let notices: Vec<Option<Notice>> =
            paths.iter().map(|path| crate::watch::watch_if_started(path)).collect();
        let options = linking.options();
        let loaded: Vec<_> = loader::load_together(paths, &options)
            .into_iter()
            .zip(notices)
            .zip(paths)
            .map(|((loaded, notice), path)| watched(path, notice, loaded, &options))
            .collect();
        let share = started.elapsed().as_nanos() / paths.len().max(1) as u128;
        let elapsed = u64::try_from(share).unwrap_or(u64::MAX);
        loaded
            .into_iter()
            .zip(paths)
            .map(|(loaded, path)| self.cache_loaded(path, loaded, elapsed, counting))
            .collect()
    }

    /// Caches what a load of `path` gave (or forgets the stale entry if it failed).
    fn cache_loaded(
        &self,
        path: &Path,
        loaded: Result<Loaded, ModuleError>,
        elapsed: u64,
        counting: Counting,
    ) -> Result<Arc<SharedModule>, ModuleError> {
        // The key to keep, copied before the lock (`None` if memory for it cannot be had).
        let owned = loaded.is_ok().then(|| ByteKey::try_boxed(key(path).as_bytes())).flatten();
        let mut state = self.lock();
        state.stats.misses += u64::from(counting.miss);
        match loaded {
            Ok((module, identity, watching)) => {
                state.stats.load_times.record(elapsed);
                let bytes = module.loaded().image_bytes() as u64;
                let (number, now) = (state.next_number, state.tick());
                state.next_number += 1;
                let cached = Cached {
                    number,
                    used_at: std::cell::Cell::new(now),
                    module: Arc::clone(&module),
                    identity,
                    watching,
                    used: None,
                };
                state.added(&cached);
                let replaced = owned.and_then(|owned| state.lru.insert(owned, cached, bytes).ok());
                self.changed();
                // Not cached when memory for the entry cannot be had: the module still loads.
                let replaced = replaced.unwrap_or_default();
                self.evict_over_budget(state, replaced);
                Ok(module)
            }
            Err(error) => {
                state.stats.load_failures += u64::from(counting.failure);
                let stale = state.lru.remove(key(path));
                if stale.is_some() {
                    self.changed();
                }
                drop(state);
                drop(stale);
                Err(error)
            }
        }
    }

    /// Takes modules over the budget out under `state` (counting them as evictions), then drops
    /// them and `replaced` only after releasing the lock.
    fn evict_over_budget<'c>(&'c self, state: MutexGuard<'c, State>, replaced: Option<Cached>) {
        self.drain(state, |state| {
            // A module hit through a memo since it was last moved to the front stays once more
            // (moved to the front: the most recent now).
            let now = state.clock + 1;
            let used_since = |cached: &Cached| {
                let used = cached.used.as_ref().is_some_and(|used| used.swap(false, Ordering::Relaxed));
                if used {
                    cached.used_at.set(now);
                }
                used
            };
            let (_, evicted) = state.lru.pop_over_budget_unless(used_since)?;
            self.changed();
            state.stats.evictions += 1;
            Some(evicted)
        });
        drop(replaced);
    }

    /// Removes the entries `take` hands out under the lock, and drops them outside it, a batch
    /// at a time (no allocation), until `take` has none left. Returns with the lock released.
    fn drain<'c>(&'c self, mut state: MutexGuard<'c, State>, take: impl Fn(&mut State) -> Option<Cached>) {
        loop {
            let mut batch: heapless::Vec<Cached, DROP_BATCH> = heapless::Vec::new();
            while !batch.is_full() {
                match take(&mut state) {
                    Some(cached) => {
                        let _ = batch.push(cached);
                    }
                    None => break,
                }
            }
            let more = batch.is_full();
            drop(state);
            drop(batch);
            if !more {
                return;
            }
            state = self.lock();
        }
    }

    /// Whether `path` is cached (its file is not checked).
    pub fn contains(&self, path: &Path) -> bool {
        self.lock().lru.contains(key(path))
    }

    /// Forgets `path`'s module (handles to it stay valid); false if it was not cached.
    pub fn evict(&self, path: &Path) -> bool {
        let mut state = self.lock();
        let removed = state.lru.remove(key(path));
        if removed.is_some() {
            self.changed();
        }
        drop(state);
        removed.is_some()
    }

    /// Forgets every module (handles to them stay valid).
    pub fn clear(&self) {
        self.drain(self.lock(), |state| {
            let (_, cached) = state.lru.pop_lru()?;
            self.changed();
            Some(cached)
        });
    }

    /// The cached modules with their paths, most recently used first by the recency list (a
    /// snapshot: the modules stay valid while the returned handles are held).
    pub fn modules(&self) -> Vec<(PathBuf, Arc<SharedModule>)> {
        let state = self.lock();
        state
            .lru
            .iter()
            .map(|(path, cached)| {
                (PathBuf::from(OsStr::from_bytes(path.as_bytes())), Arc::clone(&cached.module))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
