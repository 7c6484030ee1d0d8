//! How the cache watches a cached version: by its identity at the first hits, by a notice from
//! [`WATCH_FROM_HIT`] on (taken before the `stat` that proves the version current), at once
//! when the file was fresh, never for a path ending in a link, and not while every get checks.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smf_core::write::samples;
use smf_core::Dialect;

use super::*;

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
    cache.lock().lru.get_mut(path.as_os_str()).unwrap().watching = Watching::Identity { hits: 0 };
    loaded
}

/// How the version of `path` in `cache` is watched, as text (`None`: not cached).
fn watching(cache: &ModuleCache, path: &Path) -> Option<String> {
    let state = cache.lock();
    state.lru.peek(path.as_os_str()).map(|cached| match &cached.watching {
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
    let temporary = dir.join("m.tmp");
    std::fs::write(&temporary, samples::return_42(Dialect::R72)).unwrap();
    std::fs::rename(&temporary, &path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Arc::ptr_eq(&loaded, &cache.get(&path).unwrap()) {
        assert!(Instant::now() < deadline, "the new version never loaded");
        std::thread::sleep(Duration::from_millis(1));
    }
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
fn a_fresh_version_is_watched_from_its_load_a_link_never_and_one_changed_since_its_read_is_not() {
    let dir = scratch("fresh");
    let path = dir.join("m.smf");
    std::fs::write(&path, samples::return_42(Dialect::R96)).unwrap();
    let identity = FileIdentity::at(&path).unwrap();
    let fresh = ReadVersion { identity, followed_link: false, fresh: true };
    assert!(matches!(watching_loaded(&path, None, &fresh), Watching::Notice(_)));
    let settled = ReadVersion { fresh: false, ..fresh };
    assert!(matches!(watching_loaded(&path, None, &settled), Watching::Identity { hits: 0 }));
    let linked = ReadVersion { followed_link: true, ..fresh };
    assert!(matches!(watching_loaded(&path, None, &linked), Watching::Never));
    // A notice taken before the read is kept.
    let before = crate::watch::watch(&path).unwrap();
    assert!(matches!(watching_loaded(&path, Some(before), &settled), Watching::Notice(_)));
    // Changed between the read and the notice: left to the next get's `stat`.
    std::fs::write(&path, samples::return_42(Dialect::S128)).unwrap();
    assert!(matches!(watching_loaded(&path, None, &fresh), Watching::Identity { hits: 0 }));
}
