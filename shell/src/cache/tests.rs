//! How the cache watches a cached version: by its identity at the first hits, by a notice from
//! [`WATCH_FROM_HIT`] on (taken before the `stat` that proves the version current), a fresh
//! version read again under a notice, never for a path ending in a link, and not while every
//! get checks.

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
    let first = crate::loader::load_version_with(&path, &options).unwrap();
    assert!(first.1.fresh, "just written");
    let first_module = Arc::clone(&first.0);
    let (module, kept, watching) = watched(&path, None, Ok(first), &options).unwrap();
    assert!(!Arc::ptr_eq(&first_module, &module), "read again");
    assert_eq!(kept, identity);
    assert!(matches!(watching, Watching::Notice(_)));
    // Under a notice taken before the read: kept as read.
    let second = crate::loader::load_version_with(&path, &options).unwrap();
    let second_module = Arc::clone(&second.0);
    let (module, _, watching) = watched(&path, Some(notice()), Ok(second), &options).unwrap();
    assert!(Arc::ptr_eq(&second_module, &module));
    assert!(matches!(watching, Watching::Notice(_)));
}
