//! `smf_cache_*`: the module cache from C (`ffi.md`, "The module cache"), over
//! [`crate::cache::ModuleCache`].
//!
//! A `SmfCache *` is an opaque handle (`handles.rs`): `smf_cache_free` on another thread waits
//! for nothing and frees the cache when the last call using it returns; modules it handed out
//! stay valid until released.

use std::ffi::c_char;
use std::fmt::Write;
use std::sync::Arc;

use super::failure::LookupError;
use super::handles::Handles;
use super::imports::{Callback, LoadFlags, SmfLoadOptions};
use super::smf_module::{register, SmfModule};
use super::{c_name, c_path, guard, set_error, ArgError, FfiError};
use crate::cache::{CacheLinking, ModuleCache};
use crate::loader::ModuleError;
use smf_runtime::load::LoadError;

/// The opaque type behind `SmfCache *`.
#[repr(C)]
#[derive(Debug)]
pub struct SmfCache {
    _private: [u8; 0],
}

/// A cache's counters (`SmfCacheStats`): the Rust API's, laid out for C.
pub type SmfCacheStats = crate::cache::CacheStats;

/// Live caches by handle.
static CACHES: Handles<ModuleCache> = Handles::new("SmfCache", crate::fork::Lock::Caches);

/// The cache behind `c`, if it is a live handle (the Rust API's, for the other exports).
pub(super) fn cache_of(c: *const SmfCache) -> Result<Arc<ModuleCache>, FfiError> {
    Ok(CACHES.get(c)?)
}

/// Runs `f` with the live cache `c` and the path `path`, or says which is bad.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
unsafe fn with_path<T>(
    c: *const SmfCache,
    path: *const c_char,
    f: impl FnOnce(&ModuleCache, &std::path::Path) -> Result<T, FfiError>,
) -> Result<T, FfiError> {
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
    guard((), || Ok(CACHES.release(c)?))
}

/// The module at `path`: a new reference (release it), from the cache when the file is the
/// version cached, else loaded; NULL on error.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn smf_cache_get(c: *mut SmfCache, path: *const c_char) -> *mut SmfModule {
    // SAFETY: forwarded to our caller's contract.
    let get = || unsafe { with_path(c, path, |cache, path| Ok(cache.get(path)?)) };
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

/// `SMF_PREFETCH_*`: a path's outcome in `smf_cache_prefetch_report`.
pub mod prefetch_status {
    /// Loaded (or already cached).
    pub const OK: i32 = 0;
    /// NULL or empty.
    pub const BAD_PATH: i32 = 1;
    /// The file could not be read.
    pub const FILE_ERROR: i32 = 2;
    /// Not a module this library loads on this machine.
    pub const INVALID_MODULE: i32 = 3;
    /// An import did not resolve, or a relocation did not fit.
    pub const LINK_ERROR: i32 = 4;
    /// Memory could not be had.
    pub const NO_MEMORY: i32 = 5;
    /// The call failed as a whole.
    pub const NOT_TRIED: i32 = -1;
}

/// The `SMF_PREFETCH_*` outcome of a failed load.
fn status_of(error: &ModuleError) -> i32 {
    use std::io::ErrorKind;
    match error {
        ModuleError::Io(_, e) if e.kind() == ErrorKind::OutOfMemory => prefetch_status::NO_MEMORY,
        ModuleError::Io(..) => prefetch_status::FILE_ERROR,
        ModuleError::NotAModule(..) => prefetch_status::INVALID_MODULE,
        ModuleError::Load(_, LoadError::OutOfMemory { .. } | LoadError::Memory(_)) => {
            prefetch_status::NO_MEMORY
        }
        ModuleError::Load(
            _,
            LoadError::Unresolved { .. } | LoadError::NoAddress { .. } | LoadError::Relocation { .. },
        ) => prefetch_status::LINK_ERROR,
        ModuleError::Load(..) => prefetch_status::INVALID_MODULE,
    }
}

/// An empty vector with room for `n` items, or an error naming memory.
fn with_room<T>(n: usize) -> Result<Vec<T>, FfiError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| FfiError::NoRoomForPaths(n))?;
    Ok(v)
}

/// Prefetches the paths of `raw` (each NULL or NUL-terminated) into `cache`, writing each one's
/// outcome to `statuses` (empty, or as long as `raw`; left as they are when the call fails as a
/// whole); records the failures, in path order, as the thread's last error. Returns how many of
/// the paths are cached afterwards.
///
/// # Safety
/// Each pointer of `raw` is NULL or a NUL-terminated string.
unsafe fn prefetch(
    cache: &ModuleCache,
    raw: &[*const c_char],
    threads: u32,
    statuses: &mut [i32],
) -> Result<usize, FfiError> {
    // The paths to load, and where each is in `raw`; the failures, by index (`None`: a NULL
    // or empty path).
    let (mut paths, mut at) = (with_room::<&std::path::Path>(raw.len())?, with_room::<usize>(raw.len())?);
    let mut failures: Vec<(usize, Option<ModuleError>)> = with_room(raw.len())?;
    for (i, &p) in raw.iter().enumerate() {
        // SAFETY: NULL or NUL-terminated per the caller's contract.
        match unsafe { c_path(p) } {
            Ok(path) => {
                paths.push(path);
                at.push(i);
            }
            Err(_) => failures.push((i, None)),
        }
    }
    let threads = usize::try_from(threads).unwrap_or(usize::MAX);
    failures
        .extend(cache.prefetch_indexed(&paths, threads, &|_| {}).into_iter().map(|(k, e)| (at[k], Some(e))));
    statuses.fill(prefetch_status::OK);
    if failures.is_empty() {
        return Ok(paths.iter().filter(|p| cache.contains(p)).count());
    }
    failures.sort_unstable_by_key(|&(i, _)| i);
    let mut message = format!("prefetch: {} of {} paths failed: ", failures.len(), raw.len());
    for (n, (i, error)) in failures.iter().enumerate() {
        if let Some(status) = statuses.get_mut(*i) {
            *status = error.as_ref().map_or(prefetch_status::BAD_PATH, status_of);
        }
        // What `smf_last_error` cannot hold is not written.
        if message.len() <= super::error::MESSAGE_CAPACITY {
            let separator = if n == 0 { "" } else { "; " };
            let _ = match error {
                Some(error) => write!(message, "{separator}path {i}: {error}"),
                None if raw[*i].is_null() => write!(message, "{separator}path {i} is NULL"),
                None => write!(message, "{separator}path {i} is empty"),
            };
        }
    }
    set_error(&message);
    Ok(paths.iter().filter(|p| cache.contains(p)).count())
}

/// Loads the `n` paths into the cache on up to `threads` threads, the calling one included (0
/// counts as 1); each path loads or fails on its own, and the failures are recorded for
/// `smf_last_error`. Returns how many of the paths are cached after.
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
    // SAFETY: forwarded to our caller's contract (no statuses).
    unsafe { smf_cache_prefetch_report(c, paths, n, threads, std::ptr::null_mut()) }
}

/// `smf_cache_prefetch`, writing each path's `SMF_PREFETCH_*` outcome to `statuses[i]`
/// (an extension).
///
/// # Safety
/// As `smf_cache_prefetch`; `statuses` is NULL or writable for `n` `int32_t`.
#[no_mangle]
pub unsafe extern "C" fn smf_cache_prefetch_report(
    c: *mut SmfCache,
    paths: *const *const c_char,
    n: usize,
    threads: u32,
    statuses: *mut i32,
) -> usize {
    guard(0, || {
        let statuses: &mut [i32] = if statuses.is_null() || n == 0 {
            &mut []
        } else {
            // SAFETY: writable for `n` values per the caller's contract.
            unsafe { std::slice::from_raw_parts_mut(statuses, n) }
        };
        statuses.fill(prefetch_status::NOT_TRIED);
        let cache = cache_of(c)?;
        if n == 0 {
            return Ok(0);
        }
        if paths.is_null() {
            return Err(ArgError::Null("paths").into());
        }
        // SAFETY: the caller passes `n` readable pointers.
        let raw = unsafe { std::slice::from_raw_parts(paths, n) };
        // SAFETY: each is NULL or NUL-terminated per the caller's contract.
        unsafe { prefetch(&cache, raw, threads, statuses) }
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
            return Err(ArgError::Null("out").into());
        }
        let stats = cache_of(c).map(|cache| cache.stats());
        let value = stats.as_ref().map_or_else(|_| SmfCacheStats::default(), |s| *s);
        // SAFETY: non-null and writable per the caller's contract.
        unsafe { out.write(value) };
        stats.map(|_| ())
    })
}

/// The exported symbol `symbol` in the most recently used cached module exporting it, by the
/// cache's recency list ([`ModuleCache::resolve`]); NULL if none does. Valid while that module
/// stays cached or held.
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
            None => Err(LookupError::NotCached(crate::kept::kept(name)).into()),
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
            let flags = LoadFlags::of(options.flags)?;
            CacheLinking {
                resolver: options
                    .resolve
                    .map(|resolve| Arc::new(Callback::new(resolve, options.user)) as Arc<_>),
                process_symbols: flags.process_symbols,
                c_library: flags.c_library,
                local: flags.local,
                debug_info: flags.debug_info,
                open_needed: flags.open_needed,
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
