//! How the cache watches a cached version: by its identity at the first hits, by a notice from
//! [`WATCH_FROM_HIT`] on (taken before the `stat` that proves the version current), a fresh
//! version read again under a notice, never for a path ending in a link, and not while every
//! get checks; hits through a thread's memo: without the lock, never of a changed or evicted
//! version, never keeping one alive, a second chance at eviction.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smf_format::write::samples;
use smf_format::Dialect;

use super::cached::watching_loaded;
use super::*;
use crate::file::ReadVersion;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("smf-cache-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Loads `path` into `cache` as a process that watches nothing yet does: the version checked
/// by its identity. (This test process may watch already: another test's notice started the
/// watcher, and then loads take their notice before reading.)
fn load_unwatched(cache: &ModuleCache, path: &Path) -> Arc<SharedModule> {
    let loaded = cache.get(path).unwrap();
    cache.lock().lru.get_mut(key(path)).unwrap().watching = Watching::Identity { hits: 0 };
    loaded
}

/// Renames a new file (another dialect's module) over `path`, then gets it until `cache` gives
/// a module other than `loaded` (the notice is asynchronous), for at most five seconds.
fn replace_until_reloaded(cache: &ModuleCache, path: &Path, loaded: &Arc<SharedModule>) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, samples::return_42(Dialect::R72)).unwrap();
    std::fs::rename(&temporary, path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Arc::ptr_eq(loaded, &cache.get(path).unwrap()) {
        assert!(Instant::now() < deadline, "the new version never loaded");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// How the version of `path` in `cache` is watched, as text (`None`: not cached).
fn watching(cache: &ModuleCache, path: &Path) -> Option<String> {
    let state = cache.lock();
    state.lru.peek(key(path)).map(|cached| match &cached.watching {
        Watching::Notice(_) => "notice".to_owned(),
        Watching::Identity { hits } => format!("identity after {hits} hits"),
        Watching::Never => "never".to_owned(),
    })
}

#[test]
fn a_version_checked_by_its_identity_is_watched_from_its_watch_from_hit() {
    let dir = scratch("settled");
    let path = dir.join("m.smf");
    std::fs::write(&path, samples::return_42(Dialect::R96)).unwrap();
    let cache = ModuleCache::new(0, 0);
    let loaded = load_unwatched(&cache, &path);
    for hit in 1..WATCH_FROM_HIT {
        assert!(Arc::ptr_eq(&loaded, &cache.get(&path).unwrap()));
        assert_eq!(watching(&cache, &path).unwrap(), format!("identity after {hit} hits"));
    }
    assert!(Arc::ptr_eq(&loaded, &cache.get(&path).unwrap()), "the hit that takes the notice");
    assert_eq!(watching(&cache, &path).unwrap(), "notice");
    assert_eq!(cache.stats().hits, u64::from(WATCH_FROM_HIT));
    // The process watches now: the next load takes its notice before reading.

    // The notice sees a rename over the file (asynchronously).
    replace_until_reloaded(&cache, &path, &loaded);
    assert_eq!(watching(&cache, &path).unwrap(), "notice");
}

#[test]
fn an_identity_that_changed_before_its_watch_from_hit_reloads_at_once() {
    let dir = scratch("changed");
    let path = dir.join("m.smf");
    std::fs::write(&path, samples::return_42(Dialect::R96)).unwrap();
    let cache = ModuleCache::new(0, 0);
    let loaded = load_unwatched(&cache, &path);
    // Rewritten in place, another size: the very next get compares and sees it.
    std::fs::write(&path, samples::return_42(Dialect::S128)).unwrap();
    let again = cache.get(&path).unwrap();
    assert!(!Arc::ptr_eq(&loaded, &again));
    assert_eq!(cache.stats().misses, 2);
}

#[test]
fn checking_every_get_never_counts_towards_a_watch() {
    let dir = scratch("every-get");
    let path = dir.join("m.smf");
    std::fs::write(&path, samples::return_42(Dialect::R96)).unwrap();
    let cache = ModuleCache::new(0, 0);
    load_unwatched(&cache, &path);
    cache.set_check_every_get(true);
    for _ in 0..2 * WATCH_FROM_HIT {
        cache.get(&path).unwrap();
    }
    assert_eq!(watching(&cache, &path).unwrap(), "identity after 0 hits");
    cache.set_check_every_get(false);
    cache.get(&path).unwrap();
    assert_eq!(watching(&cache, &path).unwrap(), "identity after 1 hits");
}

#[test]
fn a_fresh_version_read_unwatched_is_read_again_under_a_notice_and_a_link_is_never_watched() {
    let dir = scratch("fresh");
    let path = dir.join("m.smf");
    std::fs::write(&path, samples::return_42(Dialect::R96)).unwrap();
    let identity = FileIdentity::at(&path).unwrap();
    let fresh = ReadVersion { identity, followed_link: false, fresh: true };
    let settled = ReadVersion { fresh: false, ..fresh };
    let linked = ReadVersion { followed_link: true, ..fresh };
    assert!(matches!(watching_loaded(None, &settled), Watching::Identity { hits: 0 }));
    assert!(matches!(watching_loaded(None, &linked), Watching::Never));
    assert!(matches!(watching_loaded(None, &fresh), Watching::Never), "fresh, and not watched");
    let notice = || crate::watch::watch(&path).unwrap();
    assert!(matches!(watching_loaded(Some(notice()), &fresh), Watching::Notice(_)));
    assert!(matches!(watching_loaded(Some(notice()), &linked), Watching::Never));

    // Read while nothing watched it, and fresh: read again, under a notice.
    let options = crate::imports::LinkOptions::default();
    let first =
        crate::loader::load_file(&path, &crate::loader::LoadRequest::path(&path).linked(options)).unwrap();
    assert!(first.1.fresh, "just written");
    let first_module = Arc::clone(&first.0);
    let (module, kept, watching) = watched(&path, None, Ok(first), &options).unwrap();
    assert!(!Arc::ptr_eq(&first_module, &module), "read again");
    assert_eq!(kept, identity);
    assert!(matches!(watching, Watching::Notice(_)));
    // Under a notice taken before the read: kept as read.
    let second =
        crate::loader::load_file(&path, &crate::loader::LoadRequest::path(&path).linked(options)).unwrap();
    let second_module = Arc::clone(&second.0);
    let (module, _, watching) = watched(&path, Some(notice()), Ok(second), &options).unwrap();
    assert!(Arc::ptr_eq(&second_module, &module));
    assert!(matches!(watching, Watching::Notice(_)));
}

/// `path` written and loaded into `cache`, watched by a notice, and got by this thread until
/// its memo holds it (two locked hits); the module.
fn remembered(cache: &ModuleCache, path: &Path, dialect: Dialect) -> Arc<SharedModule> {
    std::fs::write(path, samples::return_42(dialect)).unwrap();
    let loaded = cache.get(path).unwrap();
    cache.lock().lru.get_mut(key(path)).unwrap().watching =
        Watching::Notice(crate::watch::watch(path).unwrap());
    for _ in 0..2 {
        assert!(Arc::ptr_eq(&loaded, &cache.get(path).unwrap()));
    }
    loaded
}

#[test]
fn a_module_a_thread_gets_again_and_again_is_hit_without_the_lock_and_counted() {
    let dir = scratch("memo");
    let path = dir.join("m.smf");
    let cache = Arc::new(ModuleCache::new(0, 0));
    // A thread makes the module its memo's; then, while this thread holds the cache's lock,
    // it gets the module again (and counts the hit after the lock is released).
    let (ready, go) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
    let (got, done) = std::sync::mpsc::channel();
    let worker = {
        let (cache, path) = (Arc::clone(&cache), path.clone());
        std::thread::spawn(move || {
            let loaded = remembered(&cache, &path, Dialect::R96);
            ready.0.send(()).unwrap();
            go.1.recv().unwrap();
            got.send(Arc::ptr_eq(&loaded, &cache.get(&path).unwrap())).unwrap();
        })
    };
    ready.1.recv().unwrap();
    let held = cache.lock();
    go.0.send(()).unwrap();
    let same = done.recv_timeout(Duration::from_secs(10)).expect("a remembered hit took no lock");
    drop(held);
    worker.join().unwrap();
    assert!(same);
    // One miss, two locked hits, one through the memo.
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.hits), (1, 3));
}

#[test]
fn a_remembered_module_changed_on_disk_or_evicted_is_not_hit_and_not_kept() {
    let dir = scratch("memo-change");
    let path = dir.join("m.smf");
    let cache = ModuleCache::new(0, 0);
    let loaded = remembered(&cache, &path, Dialect::R96);
    assert!(Arc::ptr_eq(&loaded, &cache.get(&path).unwrap()), "through the memo");
    // Replaced: once the notice fires, the memo's hit is refused and the new version loads.
    replace_until_reloaded(&cache, &path, &loaded);
    // Another remembered, then evicted: the memo neither hits it nor keeps it alive.
    let other = dir.join("n.smf");
    let current = remembered(&cache, &other, Dialect::S128);
    assert!(Arc::ptr_eq(&current, &cache.get(&other).unwrap()));
    let misses = cache.stats().misses;
    let gone = Arc::downgrade(&current);
    drop(current);
    assert!(cache.evict(&other));
    assert!(gone.upgrade().is_none(), "freed once the cache let it go");
    let again = cache.get(&other).unwrap();
    assert_eq!(cache.stats().misses, misses + 1, "loaded anew");
    assert!(gone.upgrade().is_none());
    drop(again);
}

#[test]
fn a_module_hit_through_a_memo_gets_a_second_chance_at_eviction() {
    let dir = scratch("memo-evict");
    let (a, b, c) = (dir.join("a.smf"), dir.join("b.smf"), dir.join("c.smf"));
    let cache = ModuleCache::new(0, 2);
    std::fs::write(&b, samples::return_42(Dialect::R72)).unwrap();
    std::fs::write(&c, samples::return_42(Dialect::S128)).unwrap();
    cache.get(&b).unwrap();
    let module = remembered(&cache, &a, Dialect::R96);
    cache.get(&b).unwrap();
    // b is the most recent in the list (a hit); a is hit through the memo (the list unchanged).
    assert!(Arc::ptr_eq(&module, &cache.get(&a).unwrap()));
    let recency: Vec<PathBuf> = cache.modules().into_iter().map(|(p, _)| p).collect();
    assert_eq!(recency, [b.clone(), a.clone()]);
    // c pushes one out: b, not a.
    cache.get(&c).unwrap();
    assert!(cache.contains(&a) && cache.contains(&c) && !cache.contains(&b));
    assert_eq!(cache.stats().evictions, 1);
}

#[test]
fn a_path_is_cached_under_its_bytes_as_given() {
    use std::os::unix::ffi::OsStrExt as _;
    let dir = scratch("bytes");
    // Not UTF-8: a path is bytes, and the key is those bytes.
    let path = dir.join(OsStr::from_bytes(b"m\xff.smf"));
    std::fs::write(&path, samples::return_42(Dialect::R96)).unwrap();
    let cache = ModuleCache::new(0, 0);
    let loaded = cache.get(&path).unwrap();
    assert!(cache.contains(&path));
    assert_eq!(cache.modules().into_iter().map(|(p, _)| p).collect::<Vec<_>>(), std::slice::from_ref(&path));
    // The same file by another spelling of its path is another key.
    let spelled = dir.join(".").join(OsStr::from_bytes(b"m\xff.smf"));
    assert!(!cache.contains(&spelled));
    assert!(!Arc::ptr_eq(&loaded, &cache.get(&spelled).unwrap()));
    assert_eq!(cache.modules().len(), 2);
    assert!(cache.evict(&path));
    assert!(!cache.contains(&path));
    assert!(cache.contains(&spelled));
}
