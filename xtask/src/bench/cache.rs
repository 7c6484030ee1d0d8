//! Benchmark "cache": the module cache, each number against a real alternative in one run.
//!
//! - a hit of the core's LRU (under a mutex, as the shell holds it) versus the `lru` crate with
//!   `String` keys doing the same (lock, look up, move to front, clone the value's `Arc`), and
//!   the allocations per hit and per eviction of each (counted by a per-thread counter in this
//!   program's global allocator). Target: at least as fast, zero allocations.
//! - a `ModuleCache::get` hit (by default: a lookup and a change-notice flag; and, for
//!   reference, checking every get with a `stat`) versus `dlopen` of a library that is already
//!   loaded. Target: 3x faster.
//! - the hit rate of the core's LRU on a Zipf-distributed trace (s = 1) over 10,000 modules with
//!   a budget of 1,000, reported.
//! - bytes of bookkeeping per cached module: heap bytes the core LRU allocates for 10,000
//!   entries keyed by 40-byte paths (entries as the shell's: an `Arc` and a file identity).
//!   Target: at most 256.

// dlopen is a C function; its call needs unsafe.
#![allow(unsafe_code)]

use std::collections::hash_map::RandomState;
use std::ffi::{c_char, c_int, c_void, CString};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smf_core::cache::{Budget, LruCache};

use super::median;
use crate::alloc_count::{allocations, held_bytes};
use crate::workspace_root;

extern "C" {
    fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
    fn dlclose(handle: *mut c_void) -> c_int;
}

/// Keys like the shell's: paths of 40 bytes.
fn key(i: usize) -> String {
    format!("/srv/app/modules/lib/module-{i:011}.smf")
}

/// A deterministic xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Median ns per operation of `op` run `per` times, over `rounds` rounds, interleaved with `other`.
fn per_op(rounds: usize, per: usize, ops: &mut [&mut dyn FnMut(usize)]) -> Vec<f64> {
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); ops.len()];
    for _ in 0..rounds {
        for (op, t) in ops.iter_mut().zip(&mut times) {
            let start = Instant::now();
            for i in 0..per {
                op(i);
            }
            t.push(start.elapsed());
        }
    }
    times.into_iter().map(|t| median(t).as_nanos() as f64 / per as f64).collect()
}

fn lru_hits(rounds: usize) {
    const ENTRIES: usize = 1000;
    let keys: Vec<String> = (0..ENTRIES).map(key).collect();
    let value = Arc::new(7u64);
    let ours: Mutex<LruCache<Box<std::ffi::OsStr>, Arc<u64>, RandomState>> =
        Mutex::new(LruCache::new(RandomState::new(), Budget { max_bytes: 0, max_entries: ENTRIES as u64 }));
    let theirs = Mutex::new(lru::LruCache::new(
        std::num::NonZeroUsize::new(ENTRIES).unwrap_or(std::num::NonZeroUsize::MIN),
    ));
    for k in &keys {
        let _ = ours.lock().unwrap().insert(
            PathBuf::from(k).into_os_string().into_boxed_os_str(),
            Arc::clone(&value),
            1,
        );
        theirs.lock().unwrap().put(k.clone(), Arc::clone(&value));
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let order: Vec<usize> = (0..4096).map(|_| rng.next() as usize % ENTRIES).collect();
    let paths: Vec<PathBuf> = keys.iter().map(PathBuf::from).collect();
    let per = order.len();
    let times = per_op(
        rounds,
        per,
        &mut [
            &mut |i| {
                let path = &paths[order[i]];
                black_box(ours.lock().unwrap().get(path.as_os_str()).map(Arc::clone));
            },
            &mut |i| {
                let k = &keys[order[i]];
                black_box(theirs.lock().unwrap().get(k.as_str()).map(Arc::clone));
            },
        ],
    );
    // Allocations per hit, and per eviction (a new key pushing the oldest out), each side.
    let before = allocations();
    for &i in &order {
        black_box(ours.lock().unwrap().get(paths[i].as_os_str()).map(Arc::clone));
    }
    let our_hit_allocs = allocations() - before;
    let before = allocations();
    for &i in &order {
        black_box(theirs.lock().unwrap().get(keys[i].as_str()).map(Arc::clone));
    }
    let their_hit_allocs = allocations() - before;
    // Evictions: keys made up front, so only the cache's own allocations are counted.
    let fresh: Vec<Box<std::ffi::OsStr>> = (ENTRIES..ENTRIES + 1000)
        .map(|i| PathBuf::from(key(i)).into_os_string().into_boxed_os_str())
        .collect();
    let fresh_strings: Vec<String> = (ENTRIES..ENTRIES + 1000).map(key).collect();
    let before = allocations();
    for path in fresh {
        let mut cache = ours.lock().unwrap();
        let _ = cache.insert(path, Arc::clone(&value), 1);
        drop(cache.pop_over_budget());
    }
    let our_evict_allocs = allocations() - before;
    let before = allocations();
    for k in fresh_strings {
        black_box(theirs.lock().unwrap().push(k, Arc::clone(&value)));
    }
    let their_evict_allocs = allocations() - before;
    println!(
        "cache: hit of 1,000 cached entries, path keys, under a mutex ({per} random hits x {rounds} rounds)"
    );
    println!(
        "  smf LruCache get + Arc clone      {:>7.1} ns   allocations per hit {}",
        times[0],
        our_hit_allocs as f64 / per as f64
    );
    println!(
        "  lru::LruCache<String> same        {:>7.1} ns   allocations per hit {}",
        times[1],
        their_hit_allocs as f64 / per as f64
    );
    println!("  ratio: lru / smf {:.2}x (target >= 1)", times[1] / times[0]);
    println!(
        "  allocations per eviction (insert of a new key, oldest out): smf {}, lru {}",
        our_evict_allocs as f64 / 1000.0,
        their_evict_allocs as f64 / 1000.0
    );
}

fn module_cache_hit(rounds: usize) -> Result<(), String> {
    let dir = workspace_root().join("target").join("bench-cache");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (smf, so) = super::load::build(&dir)?;
    let cache = smf::cache::ModuleCache::new(0, 0);
    cache.get(&smf).map_err(|e| e.to_string())?;
    let checking = smf::cache::ModuleCache::new(0, 0);
    checking.set_check_every_get(true);
    checking.get(&smf).map_err(|e| e.to_string())?;
    let so_c = CString::new(so.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: a valid NUL-terminated path of our own freshly built library.
    let held = unsafe { dlopen(so_c.as_ptr(), 2) };
    if held.is_null() {
        return Err("dlopen failed".into());
    }
    let per = 2000;
    let mut handles: Vec<*mut c_void> = Vec::with_capacity(per);
    let (mut notice, mut every, mut opens) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..per {
            black_box(cache.get(&smf).ok());
        }
        notice.push(start.elapsed());
        let start = Instant::now();
        for _ in 0..per {
            black_box(checking.get(&smf).ok());
        }
        every.push(start.elapsed());
        // dlopen alone: each call finds the library loaded and counts one more reference; the
        // references are dropped after the timed part.
        let start = Instant::now();
        for _ in 0..per {
            // SAFETY: as above.
            handles.push(unsafe { dlopen(so_c.as_ptr(), 2) });
        }
        opens.push(start.elapsed());
        for h in handles.drain(..) {
            // SAFETY: handles just returned by dlopen; the library stays loaded through `held`.
            unsafe { dlclose(h) };
        }
    }
    let ns = |t: Vec<Duration>| median(t).as_nanos() as f64 / per as f64;
    let (notice, every, opens) = (ns(notice), ns(every), ns(opens));
    println!("cache: a ModuleCache::get hit versus dlopen of a library already loaded ({per} x {rounds})");
    println!("  ModuleCache::get, change notices      {notice:>7.1} ns");
    println!("  ModuleCache::get, checking every get  {every:>7.1} ns (a stat per get)");
    println!("  dlopen of a loaded .so                {opens:>7.1} ns");
    println!("  ratio: dlopen / get {:.2}x (target >= 3); with a stat per get {:.2}x", opens / notice, opens / every);
    // SAFETY: the handle from the first dlopen.
    unsafe { dlclose(held) };
    Ok(())
}

fn zipf_hit_rate(accesses: usize) {
    const MODULES: usize = 10_000;
    const BUDGET: u64 = 1_000;
    // Zipf(s = 1) by inverse transform over the cumulative weights 1/k.
    let mut cumulative = Vec::with_capacity(MODULES);
    let mut total = 0.0;
    for k in 1..=MODULES {
        total += 1.0 / k as f64;
        cumulative.push(total);
    }
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let mut cache = LruCache::new(RandomState::new(), Budget { max_bytes: 0, max_entries: BUDGET });
    let (mut hits, mut misses) = (0u64, 0u64);
    for _ in 0..accesses {
        let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * total;
        let k = cumulative.partition_point(|&c| c < u).min(MODULES - 1);
        if cache.get(&k).is_some() {
            hits += 1;
        } else {
            misses += 1;
            let _ = cache.insert(k, (), 1);
            while cache.pop_over_budget().is_some() {}
        }
    }
    println!(
        "cache: Zipf (s = 1) trace of {accesses} gets over {MODULES} modules, budget {BUDGET}: hit rate {:.1}% ({hits} hits, {misses} misses)",
        100.0 * hits as f64 / (hits + misses) as f64
    );
}

fn bookkeeping_bytes() {
    const ENTRIES: usize = 10_000;
    let value = Arc::new(0u64);
    let keys: Vec<PathBuf> = (0..ENTRIES).map(|i| PathBuf::from(key(i))).collect();
    let key_bytes: usize = keys.iter().map(|k| k.as_os_str().len()).sum();
    let before = held_bytes();
    let mut cache = LruCache::new(RandomState::new(), Budget::default());
    for k in keys {
        // As the shell's entry: the module's Arc and the file identity (six words), the key
        // boxed as the shell boxes it.
        let _ = cache.insert(k.into_os_string().into_boxed_os_str(), (Arc::clone(&value), [0u64; 6]), 1);
    }
    let grown = (held_bytes() - before).max(0) as u64;
    println!(
        "cache: bookkeeping per cached module: {} bytes ({} of them the 40-byte path key), target <= 256",
        grown / ENTRIES as u64,
        key_bytes / ENTRIES
    );
    black_box(cache.len());
}

pub(super) fn run(rounds: usize) -> Result<(), String> {
    lru_hits(rounds);
    module_cache_hit(rounds)?;
    zipf_hit_rate(if rounds < 50 { 200_000 } else { 2_000_000 });
    bookkeeping_bytes();
    Ok(())
}
