//! The module cache from Rust: hits and misses, LRU order, both budgets, evicting a module
//! someone holds, a file replaced by rename (hot reload) or truncated while cached, resolving
//! across cached modules, the C library resolved by default (and not when turned off), prefetch
//! on two threads then all hits, eight threads getting, evicting, resolving and calling over a
//! small budget with every result checked, threads hitting through their memos while files
//! change and modules leave, and a process that loads its modules and gets each once starting
//! no change watcher.

#![cfg(target_arch = "x86_64")]
// Test values are small; calling cached code goes through the (unsafe) integer call.
#![allow(clippy::cast_possible_truncation, unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use smf::cache::ModuleCache;
use smf::loader::SharedModule;
use smf_format::write::{ModuleBuilder, SymbolSpec};
use smf_format::Dialect;
use smf_tests::linking::returning;

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    smf_tests::scratch("cache", name)
}

/// Writes `bytes` as a new file renamed over `path` (as compilers write their output).
fn replace(path: &Path, bytes: &[u8]) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, bytes).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

fn call(module: &SharedModule, name: &str) -> i64 {
    // SAFETY: every module here exports functions returning an integer.
    unsafe { module.call_integers(Some(name.as_bytes()), &[]) }.unwrap()
}

/// Files `m0.smf`.. in `dir`, module `i` exporting `f{i}` returning `i`.
fn files(dir: &Path, count: usize, data: usize) -> Vec<PathBuf> {
    (0..count)
        .map(|i| {
            let path = dir.join(format!("m{i}.smf"));
            std::fs::write(&path, returning(&format!("f{i}"), i as u8, data)).unwrap();
            path
        })
        .collect()
}

#[test]
fn hits_misses_and_the_least_recently_used_leaving_first() {
    let dir = scratch("lru");
    let paths = files(&dir, 4, 0);
    let cache = ModuleCache::new(0, 3);
    let first = cache.get(&paths[0]).unwrap();
    assert!(Arc::ptr_eq(&first, &cache.get(&paths[0]).unwrap()), "a hit is the same module");
    cache.get(&paths[1]).unwrap();
    cache.get(&paths[2]).unwrap();
    cache.get(&paths[0]).unwrap(); // 0 is now the most recent; 1 the least
    cache.get(&paths[3]).unwrap();
    assert!(!cache.contains(&paths[1]), "the least recently used left");
    for i in [0, 2, 3] {
        assert!(cache.contains(&paths[i]), "{i}");
    }
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.evictions, stats.modules), (2, 4, 1, 3));
    assert!(stats.load_ns_p50 > 0 && stats.load_ns_p50 <= stats.load_ns_max, "{stats:?}");
    assert!(cache.get(&dir.join("missing.smf")).is_err());
    assert_eq!(cache.stats().load_failures, 1);
}

#[test]
fn the_byte_budget_evicts_and_an_evicted_module_stays_usable_while_held() {
    let dir = scratch("bytes");
    let paths = files(&dir, 3, 100_000);
    let one = {
        let probe = ModuleCache::new(0, 0);
        probe.get(&paths[0]).unwrap().loaded().image_bytes() as u64
    };
    let cache = ModuleCache::new(2 * one + one / 2, 0);
    let held = cache.get(&paths[0]).unwrap();
    cache.get(&paths[1]).unwrap();
    cache.get(&paths[2]).unwrap();
    assert!(!cache.contains(&paths[0]));
    assert_eq!(cache.stats().bytes, 2 * one);
    assert_eq!(call(&held, "f0"), 0, "evicted but held: still loaded");
    assert!(cache.evict(&paths[1]));
    assert!(!cache.evict(&paths[1]));
    cache.clear();
    assert_eq!(cache.stats().modules, 0);
}

/// Gets `path` until its module's `version` is `want` (the change notice is asynchronous);
/// panics after five seconds.
fn get_until(cache: &ModuleCache, path: &Path, want: i64) -> Arc<SharedModule> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if let Ok(module) = cache.get(path) {
            if call(&module, "version") == want {
                return module;
            }
        }
        assert!(std::time::Instant::now() < deadline, "version {want} never loaded");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// `module`, got from `cache` for `path`, once a get gives it again: the rename's notice may
/// still be on its way when the new version loads by its file's identity, and then marks that
/// version for one more load (of the same file). Panics after five seconds of gets giving a new
/// module each time (nothing cached).
fn settled(cache: &ModuleCache, path: &Path, mut module: Arc<SharedModule>) -> Arc<SharedModule> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let again = cache.get(path).unwrap();
        if Arc::ptr_eq(&module, &again) {
            return again;
        }
        assert!(std::time::Instant::now() < deadline, "every get loaded anew");
        module = again;
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn a_file_replaced_by_rename_is_noticed_and_reloaded_and_the_old_version_keeps_running() {
    let dir = scratch("reload");
    let path = dir.join("hot.smf");
    std::fs::write(&path, returning("version", 1, 0)).unwrap();
    let cache = ModuleCache::new(0, 0);
    let old = cache.get(&path).unwrap();
    assert_eq!(call(&old, "version"), 1);
    // Unchanged: a hit (by the file's identity, or by notice where this process watches).
    assert!(Arc::ptr_eq(&old, &cache.get(&path).unwrap()));
    replace(&path, &returning("version", 2, 0));
    let new = settled(&cache, &path, get_until(&cache, &path, 2));
    assert_eq!(call(&old, "version"), 1, "the old handle still runs its version");
    assert_eq!(call(&new, "version"), 2);
    assert!(Arc::ptr_eq(&new, &cache.get(&path).unwrap()), "and the new one is cached");
    assert_eq!(cache.stats().modules, 1);
    // Another rename, into a watched directory again (the notice is one-shot, then renewed).
    replace(&path, &returning("version", 3, 0));
    get_until(&cache, &path, 3);
}

#[test]
fn checking_every_get_sees_each_change_at_the_next_get_and_truncation_never_faults() {
    let dir = scratch("every-get");
    let path = dir.join("hot.smf");
    std::fs::write(&path, returning("version", 1, 0)).unwrap();
    let cache = ModuleCache::new(0, 0);
    cache.set_check_every_get(true);
    let old = cache.get(&path).unwrap();
    replace(&path, &returning("version", 2, 0));
    let new = cache.get(&path).unwrap();
    assert_eq!(call(&new, "version"), 2, "the very next get loads the new version");
    assert_eq!(call(&old, "version"), 1);

    // Rewritten in place, then truncated while cached: noticed, never a fault.
    std::fs::write(&path, returning("version", 3, 0)).unwrap();
    assert_eq!(call(&cache.get(&path).unwrap(), "version"), 3);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(10).unwrap();
    assert!(cache.get(&path).is_err(), "a truncated file does not load");
    assert!(!cache.contains(&path), "and its stale version left the cache");
    assert_eq!(call(&new, "version"), 2);
}

#[test]
fn resolve_finds_an_export_across_cached_modules() {
    let dir = scratch("resolve");
    let paths = files(&dir, 3, 0);
    let cache = ModuleCache::new(0, 0);
    for path in &paths {
        cache.get(path).unwrap();
    }
    for (i, path) in paths.iter().enumerate() {
        let module = cache.get(path).unwrap();
        assert_eq!(cache.resolve(format!("f{i}").as_bytes()), module.symbol(format!("f{i}").as_bytes()));
    }
    assert_eq!(cache.resolve(b"nowhere"), None);
}

#[test]
fn resolve_takes_the_most_recently_used_module_that_is_still_cached() {
    let dir = scratch("resolve-recency");
    let (a, b) = (dir.join("a.smf"), dir.join("b.smf"));
    std::fs::write(&a, returning("version", 1, 0)).unwrap();
    std::fs::write(&b, returning("version", 2, 0)).unwrap();
    let cache = ModuleCache::new(0, 0);
    let (first, second) = (cache.get(&a).unwrap(), cache.get(&b).unwrap());
    let at = |module: &SharedModule| module.symbol(b"version");
    assert_eq!(cache.resolve(b"version"), at(&second), "the later get");
    cache.set_check_every_get(true); // every get takes the lock and moves the module
    cache.get(&a).unwrap();
    assert_eq!(cache.resolve(b"version"), at(&first), "a moved to the front");
    // Evicted but still held: no longer the cache's to offer.
    assert!(cache.evict(&a));
    assert_eq!(cache.resolve(b"version"), at(&second));
    // Replaced by a new version: the new one's.
    replace(&b, &returning("version", 3, 0));
    let third = get_until(&cache, &b, 3);
    assert_eq!(cache.resolve(b"version"), at(&third));
    assert_eq!(call(&first, "version") + call(&second, "version"), 3, "the old versions still run");
    cache.clear();
    assert_eq!(cache.resolve(b"version"), None);
}

#[test]
fn resolving_a_name_costs_the_same_with_few_or_many_cached_modules() {
    let dir = scratch("resolve-scale");
    let paths = files(&dir, 1024, 0);
    let cache_of = |paths: &[PathBuf]| {
        let cache = ModuleCache::new(0, 0);
        for path in paths {
            cache.get(path).unwrap();
        }
        assert_eq!(cache.resolve(b"f0"), cache.get(&paths[0]).unwrap().symbol(b"f0"), "indexed");
        cache
    };
    let (few, many) = (cache_of(&paths[..16]), cache_of(&paths));
    let names: Vec<Vec<u8>> = (0..5000).map(|i| format!("unknown_{i}").into_bytes()).collect();
    let time = |cache: &ModuleCache| {
        let start = smf_tests::thread_cpu_time();
        for name in &names {
            assert_eq!(cache.resolve(name), None);
        }
        assert!(cache.resolve(b"f7").is_some());
        smf_tests::thread_cpu_time() - start
    };
    let mut fastest = [std::time::Duration::MAX; 2];
    for _ in 0..3 {
        for (cache, best) in [&few, &many].into_iter().zip(&mut fastest) {
            *best = (*best).min(time(cache));
        }
    }
    let [few_time, many_time] = fastest;
    // A pass over the cached modules would cost 64 times as much for 64 times the modules.
    assert!(many_time < few_time * 3, "16 modules: {few_time:?}, 1024: {many_time:?}");
}

#[test]
fn the_c_library_resolves_by_default_and_not_when_turned_off() {
    let dir = scratch("c_library");
    let path = dir.join("calls_strlen.smf");
    std::fs::write(&path, smf_tests::linking::importer(&["strlen"])).unwrap();
    let text = c"eleven char";
    let strlen_through = |module: &SharedModule| {
        // SAFETY: `call_strlen` jumps to strlen with the caller's first argument, a C string.
        unsafe { module.call_integers(Some(b"call_strlen"), &[text.as_ptr() as i64]) }.unwrap()
    };
    let cache = ModuleCache::new(0, 0);
    assert_eq!(strlen_through(&cache.get(&path).unwrap()), 11);

    let without = ModuleCache::new(0, 0);
    without.set_linking(smf::cache::CacheLinking { c_library: false, ..smf::cache::CacheLinking::default() });
    let message = without.get(&path).unwrap_err().to_string();
    assert!(message.contains("unresolved import `strlen`"), "{message}");
}

#[test]
fn prefetch_on_two_threads_then_every_get_hits() {
    let dir = scratch("prefetch");
    let mut paths = files(&dir, 24, 0);
    paths.push(dir.join("missing.smf"));
    let cache = ModuleCache::new(0, 0);
    assert_eq!(cache.prefetch(&paths, 2), 24);
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.load_failures, stats.modules), (25, 1, 24));
    for (i, path) in paths[..24].iter().enumerate() {
        assert_eq!(call(&cache.get(path).unwrap(), &format!("f{i}")), i as i64);
    }
    assert_eq!(cache.stats().hits, 24);
    // Cleared in batches (24 modules is more than one batch of 16): every entry leaves.
    let held = cache.get(&paths[0]).unwrap();
    cache.clear();
    assert_eq!((cache.stats().modules, cache.stats().bytes), (0, 0));
    assert!(paths[..24].iter().all(|p| !cache.contains(p)));
    assert_eq!(call(&held, "f0"), 0, "a held module outlives the clear");
}

/// Whether this process runs the cache's change watcher (its thread is named `smf-watch`),
/// waiting up to `within` for it (a new thread names itself once it runs).
fn watcher_runs(within: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        let named = std::fs::read_dir("/proc/self/task").unwrap().any(|task| {
            let comm = std::fs::read_to_string(task.unwrap().path().join("comm")).unwrap_or_default();
            comm.trim_end() == "smf-watch"
        });
        if named || std::time::Instant::now() > deadline {
            return named;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The bundled example modules that load alone (files of the checkout, not written by tests).
fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    [
        "return42.r72.smf",
        "return42.r96.smf",
        "return42.s128.smf",
        "recursion.smf",
        "strings.smf",
        "mathlib.smf",
    ]
    .iter()
    .map(|name| dir.join(name))
    .collect()
}

/// Waits until no file of `paths` reads as fresh (`smf_runtime::file::Version::fresh`): a fresh
/// file is watched from its load (a change right after its read may leave the same identity).
fn wait_until_not_fresh(paths: &[PathBuf]) {
    let limits = smf::file::limits_from_env();
    for path in paths {
        while smf::file::with_module_version(path, limits, |_, version| version.fresh).unwrap() {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// In a process of its own (the watcher is process-wide): loads of files that are not fresh,
/// prefetched and each gotten once, start no watcher (whose inotify instance costs a process
/// milliseconds to set up and, at exit, to tear down); a path gotten `WATCH_FROM_HIT` times
/// does.
#[test]
fn a_process_that_loads_its_modules_and_gets_each_once_starts_no_watcher() {
    wait_until_not_fresh(&examples());
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "no_watcher_child", "--nocapture", "--test-threads", "1"])
        .env("SMF_NO_WATCHER_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("loaded and gotten once: watcher false"), "{stdout}");
    assert!(stdout.contains("gotten repeatedly: watcher true"), "{stdout}");
}

/// The child of the test above (does nothing unless it is asked to).
#[test]
fn no_watcher_child() {
    if std::env::var_os("SMF_NO_WATCHER_CHILD").is_none() {
        return;
    }
    let paths = examples();
    let cache = ModuleCache::new(0, 0);
    assert_eq!(cache.prefetch(&paths[..3], 2), 3);
    for path in &paths {
        cache.get(path).unwrap();
    }
    let within = std::time::Duration::from_millis(200);
    println!("loaded and gotten once: watcher {}", watcher_runs(within));
    for _ in 0..smf::cache::WATCH_FROM_HIT {
        cache.get(&paths[0]).unwrap();
    }
    println!("gotten repeatedly: watcher {}", watcher_runs(within * 25));
}

/// A prefetch retries the files that failed on an unresolved import while a round loads one of
/// them: a file is one miss and, if it never loads, one failure, however often it was tried.
#[test]
fn prefetch_counts_each_path_once_however_often_it_retried_it() {
    use smf_tests::linking::importer;
    let dir = scratch("prefetch-retries");
    let write = |name: &str, bytes: Vec<u8>| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    // In this order on one thread, `needs_provider` fails first and loads on the retry;
    // `needs_nobody` fails every round.
    let paths = [
        write("needs_provider.smf", importer(&["prefetch_retry_provided"])),
        write("needs_nobody.smf", importer(&["prefetch_retry_nowhere"])),
        write("provider.smf", returning("prefetch_retry_provided", 3, 0)),
        dir.join("missing.smf"),
    ];
    let cache = ModuleCache::new(0, 0);
    let failures = cache.prefetch_reporting(&paths, 1, &|_| {});
    let failed: Vec<&Path> = failures.iter().map(|(path, _)| path.as_path()).collect();
    assert_eq!(failed, [&paths[1], &paths[3]]);
    assert!(failures[0].1.to_string().contains("prefetch_retry_nowhere"), "{}", failures[0].1);
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.load_failures, stats.modules), (4, 2, 2), "{stats:?}");
    assert!(cache.contains(&paths[0]) && cache.contains(&paths[2]));
}

/// A prefetch loads files in chunks sealed together; a module whose import another module of
/// its chunk provides still loads (on the retry, once that module is in).
#[test]
fn prefetch_in_chunks_links_modules_to_their_chunk_mates() {
    use smf_tests::linking::importer;
    let dir = scratch("prefetch-chunks");
    let paths: Vec<PathBuf> = (0..48)
        .map(|i| {
            let path = dir.join(format!("m{i}.smf"));
            let bytes = match i % 2 {
                0 => returning(&format!("chunk_mate_{i}"), i as u8, 100),
                _ => importer(&[&format!("chunk_mate_{}", i - 1)]),
            };
            std::fs::write(&path, bytes).unwrap();
            path
        })
        .collect();
    let cache = ModuleCache::new(0, 0);
    let failures = cache.prefetch_reporting(&paths, 1, &|_| {});
    assert!(failures.is_empty(), "{failures:?}");
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.load_failures, stats.modules), (48, 0, 48), "{stats:?}");
    for (i, path) in paths.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
        let module = cache.get(path).unwrap();
        assert_eq!(call(&module, &format!("call_chunk_mate_{}", i - 1)), (i - 1) as i64);
    }
    // A path given twice in one chunk loads once; its second get is a hit.
    let twice: Vec<&PathBuf> = paths[..8].iter().step_by(2).flat_map(|p| [p, p]).collect();
    let cache = ModuleCache::new(0, 0);
    assert_eq!(cache.prefetch(&twice.into_iter().cloned().collect::<Vec<_>>(), 1), 8);
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.hits, stats.modules), (4, 4, 4), "{stats:?}");
}

/// A path that is a symbolic link changes where its directory's watch cannot see (its target
/// may be anywhere): the cache compares the file's identity at every get instead.
#[test]
fn a_path_that_is_a_symbolic_link_is_checked_at_every_get() {
    let dir = scratch("link");
    std::fs::create_dir_all(dir.join("targets")).unwrap();
    let target = dir.join("targets/hot.smf");
    std::fs::write(&target, returning("version", 1, 0)).unwrap();
    let link = dir.join("hot.smf");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let cache = ModuleCache::new(0, 0);
    let old = cache.get(&link).unwrap();
    assert_eq!(call(&old, "version"), 1);
    assert!(Arc::ptr_eq(&old, &cache.get(&link).unwrap()), "unchanged: a hit");
    replace(&target, &returning("version", 2, 0));
    assert_eq!(call(&cache.get(&link).unwrap(), "version"), 2, "the next get sees the new target");
    let other = dir.join("targets/other.smf");
    std::fs::write(&other, returning("version", 3, 0)).unwrap();
    let moved = dir.join("moved.smf");
    std::os::unix::fs::symlink(&other, &moved).unwrap();
    std::fs::rename(&moved, &link).unwrap();
    assert_eq!(call(&cache.get(&link).unwrap(), "version"), 3, "and a link pointed elsewhere");
}

#[test]
fn eight_threads_get_evict_resolve_and_call_over_a_small_budget() {
    let dir = scratch("stress");
    let paths = files(&dir, 12, 0);
    let cache = ModuleCache::new(0, 4);
    let rounds = 400;
    std::thread::scope(|scope| {
        for t in 0..8usize {
            let (cache, paths) = (&cache, &paths);
            scope.spawn(move || {
                let mut seed = t as u64 * 7919 + 1;
                for _ in 0..rounds {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let i = (seed >> 33) as usize % paths.len();
                    match (seed >> 40) % 4 {
                        0 => {
                            // Evicting a module others may be calling: their handles keep it.
                            cache.evict(&paths[i]);
                        }
                        1 => {
                            // Whatever module resolves `f{i}` was cached and returns i when called
                            // through a module we hold.
                            if cache.resolve(format!("f{i}").as_bytes()).is_some() {
                                let module = cache.get(&paths[i]).unwrap();
                                assert_eq!(call(&module, &format!("f{i}")), i as i64);
                            }
                        }
                        _ => {
                            let module = cache.get(&paths[i]).unwrap();
                            assert_eq!(call(&module, &format!("f{i}")), i as i64);
                        }
                    }
                }
            });
        }
    });
    let stats = cache.stats();
    assert!(stats.modules <= 4, "{stats:?}");
    assert_eq!(stats.load_failures, 0);
    assert!(stats.hits + stats.misses >= 8 * rounds / 2, "{stats:?}");
}

#[test]
fn threads_hitting_their_memos_while_others_load_evict_and_replace_files_get_what_a_lock_would() {
    // Four threads get two hot modules again and again (their memos hit them without the
    // lock); one thread cycles through cold modules over a budget of four (evictions: every
    // memo stale) and replaces a hot file with its next version now and then. Each get gives
    // a version no older than the last that thread saw, every get is counted once, and the
    // last version is what a get finds in the end.
    let dir = scratch("memos");
    let hot: Vec<PathBuf> = (0..2).map(|i| dir.join(format!("hot{i}.smf"))).collect();
    for path in &hot {
        std::fs::write(path, returning("version", 1, 0)).unwrap();
    }
    let cold = files(&dir, 6, 0);
    let cache = ModuleCache::new(0, 4);
    let (rounds, churns, versions) = (3000usize, 120usize, 5i64);
    let gets = std::sync::atomic::AtomicU64::new(0);
    let churned = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        for t in 0..4usize {
            let (cache, hot, gets, churned) = (&cache, &hot, &gets, &churned);
            scope.spawn(move || {
                let mut seen = [1i64; 2];
                // At least `rounds`, and for as long as the churn lasts.
                let mut round = 0;
                while round < rounds || !churned.load(std::sync::atomic::Ordering::Relaxed) {
                    round += 1;
                    let i = (round / 16 + t) % 2;
                    let module = cache.get(&hot[i]).unwrap();
                    let version = call(&module, "version");
                    assert!(version >= seen[i], "thread {t}: version {version} after {}", seen[i]);
                    seen[i] = version;
                    gets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
        let (cache, cold, hot, gets, churned) = (&cache, &cold, &hot, &gets, &churned);
        scope.spawn(move || {
            for round in 0..churns {
                let i = round % cold.len();
                assert_eq!(call(&cache.get(&cold[i]).unwrap(), &format!("f{i}")), i as i64);
                gets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if round % (churns / versions as usize) == 0 {
                    let version = 2 + (round / (churns / versions as usize)) as i64;
                    replace(&hot[0], &returning("version", version.min(versions) as u8, 0));
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            churned.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    });
    let stats = cache.stats();
    assert_eq!(stats.hits + stats.misses, gets.into_inner(), "{stats:?}");
    assert_eq!(stats.load_failures, 0);
    assert!(stats.modules <= 4, "{stats:?}");
    get_until(&cache, &hot[0], versions);
}

/// An executable module's header may announce how many files to prefetch at start-up: the
/// helper prefetches that many of the runtime's candidates, and nothing without the hint.
#[test]
fn the_prefetch_hint_of_an_executable_module_is_honoured() {
    let dir = scratch("hint");
    let candidates = files(&dir, 6, 0);
    let executable = |hint: u8, count: u8| {
        let mut b = ModuleBuilder::new(Dialect::S128);
        b.add_code(b".text", &[0xB8, 42, 0, 0, 0, 0xC3]);
        b.add_symbol(SymbolSpec::function(b"main", 0, 6));
        b.entry_point(0);
        b.header(|h| {
            h.prefetch_hint = hint;
            h.prefetch_file_count = count;
        });
        b.build().unwrap()
    };
    let app = dir.join("app.smf");
    std::fs::write(&app, executable(1, 4)).unwrap();
    let cache = ModuleCache::new(0, 0);
    assert_eq!(cache.prefetch_announced(&app, &candidates).unwrap(), 4);
    for (i, path) in candidates.iter().enumerate() {
        assert_eq!(cache.contains(path), i < 4, "{i}");
    }
    std::fs::write(&app, executable(0, 4)).unwrap();
    let cache = ModuleCache::new(0, 0);
    assert_eq!(cache.prefetch_announced(&app, &candidates).unwrap(), 0);
    assert_eq!(cache.stats().misses, 0, "no hint, no loads");
    std::fs::write(&app, executable(1, 200)).unwrap();
    assert_eq!(cache.prefetch_announced(&app, &candidates).unwrap(), 6, "at most the candidates");
    assert!(cache.prefetch_announced(&dir.join("missing.smf"), &candidates).is_err());
}

#[test]
fn a_forked_child_sees_a_file_replaced_after_the_fork() {
    // It forks: alone, so that the child has no other test's threads to inherit.
    if !smf_tests::alone("a_forked_child_sees_a_file_replaced_after_the_fork") {
        return;
    }
    extern "C" {
        fn fork() -> i32;
        fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
        fn _exit(status: i32) -> !;
    }
    let dir = scratch("fork");
    let path = dir.join("hot.smf");
    std::fs::write(&path, returning("version", 1, 0)).unwrap();
    wait_until_not_fresh(std::slice::from_ref(&path));
    let cache = ModuleCache::new(0, 0);
    // Gets until the path is watched by a notice, which only the watcher thread sets.
    for _ in 0..8 {
        assert_eq!(call(&cache.get(&path).unwrap(), "version"), 1);
    }
    assert!(watcher_runs(std::time::Duration::from_secs(5)), "the parent watches");
    // SAFETY: the child (this test runs alone) replaces the file, gets it until it sees the new
    // version or five seconds passed, and leaves through _exit, running nothing of the parent's.
    let child = unsafe { fork() };
    if child == 0 {
        replace(&path, &returning("version", 2, 0));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut seen = 0;
        while seen != 2 && std::time::Instant::now() < deadline {
            seen = cache.get(&path).map_or(0, |module| call(&module, "version"));
        }
        // SAFETY: ends the child at once.
        unsafe { _exit(if seen == 2 { 0 } else { 1 }) };
    }
    let mut status = -1;
    // SAFETY: our child, and a status to write.
    assert_eq!(unsafe { waitpid(child, &mut status, 0) }, child);
    assert_eq!(
        status, 0,
        "the child got the version replaced after the fork (its parent's watcher is not its own)"
    );
    // The parent's own watcher saw the replacement too.
    get_until(&cache, &path, 2);
}
