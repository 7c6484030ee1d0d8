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

use smf_runtime::lru::{Budget, ByteKey, LruCache};

use super::median;
use super::report::{self, Goal};
use crate::alloc_count::{allocations, held_bytes};
use crate::workspace_root;

extern "C" {
    fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
    fn dlclose(handle: *mut c_void) -> c_int;
    fn mmap(addr: *mut c_void, len: usize, prot: c_int, flags: c_int, fd: c_int, offset: i64) -> *mut c_void;
    fn munmap(addr: *mut c_void, len: usize) -> c_int;
    fn mincore(addr: *mut c_void, len: usize, vec: *mut u8) -> c_int;
}

/// Pages of the file at `path` in the page cache, and its pages in all (`mincore` of a
/// read-only mapping; `None` if that fails).
fn resident_pages(path: &std::path::Path) -> Option<(usize, usize)> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).ok()?;
    let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
    let page = 4096;
    let pages = len.div_ceil(page);
    // SAFETY: a fresh read-only shared mapping of an open file, unmapped below; nothing reads it.
    let map = unsafe { mmap(std::ptr::null_mut(), len, 1, 1, file.as_raw_fd(), 0) };
    if map as isize == -1 {
        return None;
    }
    let mut vec = vec![0u8; pages];
    // SAFETY: `map` is our mapping of `len` bytes; `vec` has one byte per page.
    let ok = unsafe { mincore(map, len, vec.as_mut_ptr()) } == 0;
    // SAFETY: our mapping.
    unsafe { munmap(map, len) };
    ok.then(|| (vec.iter().filter(|&&b| b & 1 != 0).count(), pages))
}

/// Keys like the shell's: paths of 40 bytes.
fn key(i: usize) -> String {
    format!("/srv/app/modules/lib/module-{i:011}.smf")
}

/// `path` as the shell keeps it in its cache (`shell/src/cache`): its bytes as one key.
fn path_key(path: &str) -> Box<ByteKey> {
    ByteKey::from_boxed_bytes(path.as_bytes().into())
}

/// `path` as the shell looks it up.
fn key_of(path: &std::path::Path) -> &ByteKey {
    ByteKey::new(path.as_os_str().as_encoded_bytes())
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
    // As the shell keys it: a path's bytes as one key, hashed by the core's keyed hasher.
    let hasher =
        smf_runtime::lru::KeyedHasher::new(std::hash::BuildHasher::hash_one(&RandomState::new(), 1u8));
    let ours: Mutex<LruCache<Box<ByteKey>, Arc<u64>, _>> =
        Mutex::new(LruCache::new(hasher, Budget { max_bytes: 0, max_entries: ENTRIES as u64 }));
    let theirs = Mutex::new(lru::LruCache::new(
        std::num::NonZeroUsize::new(ENTRIES).unwrap_or(std::num::NonZeroUsize::MIN),
    ));
    for k in &keys {
        let _ = ours.lock().unwrap().insert(path_key(k), Arc::clone(&value), 1);
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
                black_box(ours.lock().unwrap().get(key_of(path)).map(Arc::clone));
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
        black_box(ours.lock().unwrap().get(key_of(&paths[i])).map(Arc::clone));
    }
    let our_hit_allocs = allocations() - before;
    let before = allocations();
    for &i in &order {
        black_box(theirs.lock().unwrap().get(keys[i].as_str()).map(Arc::clone));
    }
    let their_hit_allocs = allocations() - before;
    // Evictions: keys made up front, so only the cache's own allocations are counted.
    let fresh: Vec<Box<ByteKey>> = (ENTRIES..ENTRIES + 1000).map(|i| path_key(&key(i))).collect();
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
    report::ratio("cache_hit_vs_lru_crate", times[1] / times[0], Goal::AtLeast(1.0));
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
    // Gets cycling through 16 modules: a thread's memo remembers a module hit twice among its
    // last eight locked hits, so each of these is a hit under the cache's lock.
    let cycling = smf::cache::ModuleCache::new(0, 0);
    let mut copies = Vec::new();
    for i in 0..16 {
        let copy = dir.join(format!("copy{i}.smf"));
        std::fs::copy(&smf, &copy).map_err(|e| e.to_string())?;
        cycling.get(&copy).map_err(|e| e.to_string())?;
        copies.push(copy);
    }
    let so_c = CString::new(so.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: a valid NUL-terminated path of our own freshly built library.
    let held = unsafe { dlopen(so_c.as_ptr(), 2) };
    if held.is_null() {
        return Err("dlopen failed".into());
    }
    let per = 2000;
    let mut handles: Vec<*mut c_void> = Vec::with_capacity(per);
    let (mut notice, mut every, mut opens, mut sync) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut locked = Vec::new();
    // What a hit under a lock of a cache shared between threads that hands out counted
    // references, keyed by a hash a caller cannot make collide, costs at least: a mutex taken
    // and given back, the path's keyed hash, a reference counted up and down.
    let (lock, counted) = (std::sync::Mutex::new(0u64), std::sync::Arc::new(0u8));
    let (hasher, key) = (smf_runtime::lru::KeyedHasher::per_process(), smf.as_os_str().as_encoded_bytes());
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
        let start = Instant::now();
        for i in 0..per {
            black_box(cycling.get(&copies[i % copies.len()]).ok());
        }
        locked.push(start.elapsed());
        // dlopen alone: each call finds the library loaded and counts one more reference; the
        // references are dropped after the timed part.
        let start = Instant::now();
        for _ in 0..per {
            // SAFETY: as above.
            handles.push(unsafe { dlopen(so_c.as_ptr(), 2) });
        }
        opens.push(start.elapsed());
        let start = Instant::now();
        for _ in 0..per {
            *black_box(&lock).lock().map_err(|e| e.to_string())? ^= hasher.hash_bytes(black_box(key));
            black_box(std::sync::Arc::clone(black_box(&counted)));
        }
        sync.push(start.elapsed());
        for h in handles.drain(..) {
            // SAFETY: handles just returned by dlopen; the library stays loaded through `held`.
            unsafe { dlclose(h) };
        }
    }
    let ns = |t: Vec<Duration>| median(t).as_nanos() as f64 / per as f64;
    let (notice, every, opens, sync, locked) = (ns(notice), ns(every), ns(opens), ns(sync), ns(locked));
    println!("cache: a ModuleCache::get hit versus dlopen of a library already loaded ({per} x {rounds})");
    println!("  ModuleCache::get, change notices      {notice:>7.1} ns (the thread's memo: no lock)");
    println!("  the same, cycling through 16 modules  {locked:>7.1} ns (each under the cache's lock)");
    println!("  ModuleCache::get, checking every get  {every:>7.1} ns (a stat per get)");
    println!("  dlopen of a loaded .so                {opens:>7.1} ns");
    println!(
        "  a mutex taken and given back, the path's keyed hash, an Arc cloned and dropped: {sync:.1} ns (a locked hit's floor: dlopen / it {:.2}x)",
        opens / sync
    );
    println!(
        "  ratio: dlopen / get {:.2}x (target >= 3); with a stat per get {:.2}x",
        opens / notice,
        opens / every
    );
    report::ratio("cache_hit_vs_dlopen_again", opens / notice, Goal::AtLeast(3.0));
    report::ratio("cache_hit_locked_vs_dlopen_again", opens / locked, Goal::Reported);
    report::ratio("cache_hit_sync_floor_vs_dlopen_again", opens / sync, Goal::Reported);
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
    let keys: Vec<String> = (0..ENTRIES).map(key).collect();
    let key_bytes: usize = keys.iter().map(String::len).sum();
    let before = held_bytes();
    let mut cache = LruCache::new(RandomState::new(), Budget::default());
    for k in keys {
        // As the shell's entry: the module's Arc and the file identity (six words), the key
        // boxed as the shell boxes it.
        let _ = cache.insert(path_key(&k), (Arc::clone(&value), [0u64; 6]), 1);
    }
    let grown = (held_bytes() - before).max(0) as u64;
    println!(
        "cache: bookkeeping per cached module: {} bytes ({} of them the 40-byte path key), target <= 256",
        grown / ENTRIES as u64,
        key_bytes / ENTRIES
    );
    report::footprint("bytes_per_cached_module", grown / ENTRIES as u64, Goal::AtMost(256.0));
    black_box(cache.len());
}

/// Asks the kernel to drop `paths` from the page cache (they were synced when written).
fn evict_from_page_cache(paths: &[PathBuf]) -> Result<(), String> {
    for path in paths {
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn cold_prefetch(rounds: usize) -> Result<(), String> {
    const MODULES: usize = 200;
    let dir = workspace_root().join("target").join("bench-cache");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (smf, so) = super::load::build(&dir)?;
    let (smf_bytes, so_bytes) =
        (std::fs::read(&smf).map_err(|e| e.to_string())?, std::fs::read(&so).map_err(|e| e.to_string())?);
    let cold = dir.join("cold");
    let _ = std::fs::remove_dir_all(&cold);
    std::fs::create_dir_all(&cold).map_err(|e| e.to_string())?;
    let write = |name: String, bytes: &[u8]| -> Result<PathBuf, String> {
        let path = cold.join(name);
        let file = std::fs::File::create(&path).map_err(|e| e.to_string())?;
        std::io::Write::write_all(&mut &file, bytes).map_err(|e| e.to_string())?;
        file.sync_all().map_err(|e| e.to_string())?;
        Ok(path)
    };
    let modules: Vec<PathBuf> =
        (0..MODULES).map(|i| write(format!("m{i}.smf"), &smf_bytes)).collect::<Result<_, _>>()?;
    let libraries: Vec<PathBuf> =
        (0..MODULES).map(|i| write(format!("lib{i}.so"), &so_bytes)).collect::<Result<_, _>>()?;
    let libraries_c: Vec<CString> = libraries
        .iter()
        .map(|p| CString::new(p.to_string_lossy().as_bytes()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let local = smf::cache::CacheLinking { local: true, ..Default::default() };
    let threads = 8;
    let (mut one_by_one, mut prefetched, mut dlopened) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        evict_from_page_cache(&modules)?;
        let cache = smf::cache::ModuleCache::new(0, 0);
        cache.set_linking(local.clone());
        let start = Instant::now();
        for path in &modules {
            cache.get(path).map_err(|e| e.to_string())?;
        }
        one_by_one.push(start.elapsed());
        drop(cache);

        evict_from_page_cache(&modules)?;
        let cache = smf::cache::ModuleCache::new(0, 0);
        cache.set_linking(local.clone());
        let start = Instant::now();
        let cached = cache.prefetch(&modules, threads);
        prefetched.push(start.elapsed());
        if cached != MODULES {
            return Err(format!("prefetch cached {cached} of {MODULES}"));
        }
        drop(cache);

        evict_from_page_cache(&libraries)?;
        let start = Instant::now();
        let handles: Vec<*mut c_void> = libraries_c
            .iter()
            // SAFETY: valid NUL-terminated paths of our own libraries; RTLD_NOW | RTLD_LOCAL.
            .map(|p| unsafe { dlopen(p.as_ptr(), 2) })
            .collect();
        dlopened.push(start.elapsed());
        for h in handles {
            if h.is_null() {
                return Err("dlopen failed".into());
            }
            // SAFETY: a handle dlopen just returned.
            unsafe { dlclose(h) };
        }
    }
    evict_from_page_cache(&modules)?;
    let residency = resident_pages(&modules[0])
        .map_or_else(|| "unknown".to_owned(), |(r, all)| format!("{r} of {all} pages"));
    let ms = |t: Vec<Duration>| median(t).as_secs_f64() * 1000.0;
    let (one_by_one, prefetched, dlopened) = (ms(one_by_one), ms(prefetched), ms(dlopened));
    println!("cache: {MODULES} modules whose files are not in the page cache (posix_fadvise DONTNEED first), {rounds} rounds");
    println!("  a file after DONTNEED: {residency} resident (the kernel may keep pages it chooses)");
    println!("  one get after another                 {one_by_one:>8.2} ms");
    println!("  prefetch on {threads} threads               {prefetched:>8.2} ms");
    println!("  dlopen of {MODULES} equivalent .so, one by one {dlopened:>8.2} ms");
    println!(
        "  ratio: one by one / prefetch {:.2}x (target >= 1.5); dlopen / prefetch {:.2}x",
        one_by_one / prefetched,
        dlopened / prefetched
    );
    report::ratio("prefetch_speedup", one_by_one / prefetched, Goal::AtLeast(1.5));
    Ok(())
}

pub(super) fn run(rounds: usize) -> Result<(), String> {
    lru_hits(rounds);
    module_cache_hit(rounds)?;
    cold_prefetch(rounds.min(20))?;
    zipf_hit_rate(if rounds < 50 { 200_000 } else { 2_000_000 });
    bookkeeping_bytes();
    Ok(())
}
