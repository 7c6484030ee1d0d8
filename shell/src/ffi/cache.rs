//! `smf_cache_*`: the module cache from C (`ffi.md`, "The module cache"), over
//! [`crate::cache::ModuleCache`].
//!
//! A `SmfCache *` is an opaque handle (`handles.rs`): `smf_cache_free` on another thread waits
//! for nothing and frees the cache when the last call using it returns; modules it handed out
//! stay valid until released.

use std::ffi::c_char;
use std::path::PathBuf;
use std::sync::Arc;

use super::handles::Handles;
use super::imports::{Callback, SmfLoadOptions, SMF_LOAD_LOCAL, SMF_LOAD_PROCESS_SYMBOLS};
use super::smf_module::{c_name, register, SmfModule};
use super::{c_path, guard};
use crate::cache::{CacheLinking, ModuleCache};

/// The opaque type behind `SmfCache *`.
#[repr(C)]
#[derive(Debug)]
pub struct SmfCache {
    _private: [u8; 0],
}

/// A cache's counters (`SmfCacheStats`): the Rust API's, laid out for C.
pub type SmfCacheStats = crate::cache::CacheStats;

/// Live caches by handle.
static CACHES: Handles<ModuleCache> = Handles::new("SmfCache");

/// The cache behind `c`, if it is a live handle (the Rust API's, for the other exports).
pub(super) fn cache_of(c: *const SmfCache) -> Result<Arc<ModuleCache>, String> {
    CACHES.get(c)
}

/// Runs `f` with the live cache `c` and the path `path`, or says which is bad.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
unsafe fn with_path<T>(
    c: *const SmfCache,
    path: *const c_char,
    f: impl FnOnce(&ModuleCache, &std::path::Path) -> Result<T, String>,
) -> Result<T, String> {
    let cache = cache_of(c)?;
    // SAFETY: forwarded to our caller's contract.
    let path = unsafe { c_path(path) }?;
    f(&cache, path)
}

/// A new cache evicting the least recently used module past `max_bytes` of module images or
/// `max_modules` modules (0: unlimited).
#[no_mangle]
pub extern "C" fn smf_cache_new(max_bytes: u64, max_modules: u64) -> *mut SmfCache {
    guard(std::ptr::null_mut(), || {
        Ok(CACHES.insert(ModuleCache::new(max_bytes, max_modules)) as *mut SmfCache)
    })
}

/// Frees the cache; modules it handed out stay valid until released. NULL is a no-op.
#[no_mangle]
pub extern "C" fn smf_cache_free(c: *mut SmfCache) {
    // Dropped outside the table's lock (it may free modules).
    guard((), || CACHES.remove(c))
}

/// The module at `path`: a new reference (release it), from the cache when the file is the
/// version cached, else loaded; NULL on error.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn smf_cache_get(c: *mut SmfCache, path: *const c_char) -> *mut SmfModule {
    // SAFETY: forwarded to our caller's contract.
    let get = || unsafe { with_path(c, path, |cache, path| cache.get(path).map_err(|e| e.to_string())) };
    guard(std::ptr::null_mut(), || get().map(register))
}

/// Whether `path` is cached (the file is not checked); false on error.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn smf_cache_contains(c: *const SmfCache, path: *const c_char) -> bool {
    // SAFETY: forwarded to our caller's contract.
    guard(false, || unsafe { with_path(c, path, |cache, path| Ok(cache.contains(path))) })
}

/// Forgets `path`'s module (handles to it stay valid); false if it was not cached or on error.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn smf_cache_evict(c: *mut SmfCache, path: *const c_char) -> bool {
    // SAFETY: forwarded to our caller's contract.
    guard(false, || unsafe { with_path(c, path, |cache, path| Ok(cache.evict(path))) })
}

/// Forgets every module (handles to them stay valid).
#[no_mangle]
pub extern "C" fn smf_cache_clear(c: *mut SmfCache) {
    guard((), || {
        cache_of(c)?.clear();
        Ok(())
    })
}

/// Loads the `n` paths into the cache on `threads` worker threads (0 counts as 1); failures
/// are counted in the statistics, not fatal. Returns how many of the paths are cached after.
///
/// # Safety
/// `paths` is NULL (with `n` 0) or points to `n` pointers, each NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn smf_cache_prefetch(
    c: *mut SmfCache,
    paths: *const *const c_char,
    n: usize,
    threads: u32,
) -> usize {
    guard(0, || {
        let cache = cache_of(c)?;
        if n == 0 {
            return Ok(0);
        }
        if paths.is_null() {
            return Err("paths is NULL".into());
        }
        // SAFETY: the caller passes `n` readable pointers.
        let raw = unsafe { std::slice::from_raw_parts(paths, n) };
        let mut owned: Vec<PathBuf> = Vec::with_capacity(n);
        for &p in raw {
            // SAFETY: each is NULL or NUL-terminated per the caller's contract.
            owned.push(unsafe { c_path(p) }?.to_path_buf());
        }
        Ok(cache.prefetch(&owned, threads as usize))
    })
}

/// Fills `out` with the cache's counters; zeros on error.
///
/// # Safety
/// `out` is NULL or points to writable memory for an `SmfCacheStats`.
#[no_mangle]
pub unsafe extern "C" fn smf_cache_stats(c: *const SmfCache, out: *mut SmfCacheStats) {
    guard((), || {
        if out.is_null() {
            return Err("out is NULL".into());
        }
        let stats = cache_of(c).map(|cache| cache.stats());
        let value = stats.clone().unwrap_or_default();
        // SAFETY: non-null and writable per the caller's contract.
        unsafe { out.write(value) };
        stats.map(|_| ())
    })
}

/// The exported symbol `symbol` in the most recently used cached module exporting it; NULL if
/// none does. Valid while that module stays cached or held.
///
/// # Safety
/// `symbol` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn smf_cache_resolve(
    c: *mut SmfCache,
    symbol: *const c_char,
) -> *const std::ffi::c_void {
    guard(std::ptr::null(), || {
        let cache = cache_of(c)?;
        // SAFETY: forwarded to our caller's contract.
        let name = unsafe { c_name(symbol) }?;
        match cache.resolve(name) {
            Some(addr) => Ok(addr as *const std::ffi::c_void),
            None => Err(format!("no cached module exports `{}`", String::from_utf8_lossy(name))),
        }
    })
}

/// How the cache's misses and prefetches link from now on (copied; NULL: the defaults). The
/// callback may be called from prefetch threads.
///
/// # Safety
/// `options` is NULL or a valid `SmfLoadOptions`; its callback must be callable from any thread
/// for as long as the cache uses these options.
#[no_mangle]
pub unsafe extern "C" fn smf_cache_set_load_options(c: *mut SmfCache, options: *const SmfLoadOptions) {
    guard((), || {
        let cache = cache_of(c)?;
        let linking = if options.is_null() {
            CacheLinking::default()
        } else {
            // SAFETY: non-null and valid per the caller's contract; copied out.
            let options = unsafe { *options };
            if options.flags & !(SMF_LOAD_PROCESS_SYMBOLS | SMF_LOAD_LOCAL) != 0 {
                return Err(format!("unknown load flags {:#x}", options.flags));
            }
            CacheLinking {
                resolver: options
                    .resolve
                    .map(|resolve| Arc::new(Callback::new(resolve, options.user)) as Arc<_>),
                process_symbols: options.flags & SMF_LOAD_PROCESS_SYMBOLS != 0,
                local: options.flags & SMF_LOAD_LOCAL != 0,
            }
        };
        cache.set_linking(linking);
        Ok(())
    })
}

/// Extension: whether every `smf_cache_get` compares the file's identity (a `stat`) instead of
/// trusting change notices; with it, the next get after a change always sees the change.
#[no_mangle]
pub extern "C" fn smf_cache_check_every_get(c: *mut SmfCache, on: bool) {
    guard((), || {
        cache_of(c)?.set_check_every_get(on);
        Ok(())
    })
}
