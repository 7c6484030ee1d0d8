//! The cases of the `smf_*` functions: the thread's error, modules and what they hold, host
//! symbols, `smf_addr_info`, caches and instantiators.

use std::ffi::{c_void, CStr, CString};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use smf::ffi::addr::{self as addr_ffi, SmfAddrInfo};
use smf::ffi::cache::{self as cache_ffi, SmfCacheStats};
use smf::ffi::error as error_ffi;
use smf::ffi::imports::{self as imports_ffi, SmfLoadOptions, SMF_LOAD_LOCAL, SMF_LOAD_NO_DEBUG_INFO};
use smf::ffi::instantiate::{self as jit_ffi, SmfCompileFn, SmfJit, SmfJitConfig, SmfJitStats};
use smf::ffi::smf_module::{self as module_ffi, symbol_kind, SmfSymbolInfo};
use smf::ffi::{rt_exec, set_error};
use smf_format::write::samples;
use smf_format::Dialect;

use super::{error_mentions, loaded, no_files, nothing_recorded, reads, write_rich, Case, Taken, RICH};
use crate::{c_path, resolve_any, return_three, sweep, write_large, Cache, Module};

/// The cases, in the header's order.
pub(super) const CASES: &[Case] = &[
    case!(smf_last_error, false, no_files),
    case!(smf_clear_error, false, no_files),
    case!(smf_take_error, false, no_files),
    case!(smf_module_load_bytes_ex, true, write_large),
    case!(smf_module_release, false, no_files),
    case!(smf_module_retain, false, no_files),
    case!(smf_module_dialect, false, no_files),
    case!(smf_module_symbol, false, no_files),
    case!(smf_module_function, false, no_files),
    case!(smf_module_entry, false, no_files),
    case!(smf_module_symbol_count, false, no_files),
    case!(smf_module_symbol_name, false, no_files),
    case!(smf_module_symbol_info, false, no_files),
    case!(smf_module_call, false, no_files),
    case!(smf_module_note_sdn, false, no_files),
    case!(smf_module_template, false, no_files),
    case!(smf_host_define, false, no_files),
    case!(smf_host_undefine, false, no_files),
    case!(smf_addr_info, false, no_files),
    case!(smf_cache_new, false, no_files),
    case!(smf_cache_free, false, write_rich),
    case!(smf_cache_contains, false, write_rich),
    case!(smf_cache_evict, false, write_rich),
    case!(smf_cache_clear, false, write_rich),
    case!(smf_cache_prefetch_report, true, write_four_large),
    case!(smf_cache_stats, false, write_rich),
    case!(smf_cache_resolve, false, write_rich),
    case!(smf_cache_set_load_options, false, no_files),
    case!(smf_cache_check_every_get, false, write_rich),
    case!(smf_jit_new, false, no_files),
    case!(smf_jit_free, false, write_rich),
    case!(smf_jit_fail, false, write_rich),
    case!(smf_jit_stats, false, write_rich),
    case!(smf_jit_set_max_instantiations, false, write_rich),
];

// ---- The thread's error -----------------------------------------------------------------------

fn smf_last_error(_: &Path) {
    sweep(
        || (),
        |()| {
            set_error("recorded");
            // SAFETY: the thread's NUL-terminated buffer.
            unsafe { reads(error_ffi::smf_last_error(), b"recorded") }
        },
    );
}

fn smf_clear_error(_: &Path) {
    sweep(
        || (),
        |()| {
            set_error("recorded");
            error_ffi::smf_clear_error();
            nothing_recorded()
        },
    );
}

fn smf_take_error(_: &Path) {
    sweep(
        || (),
        |()| {
            set_error("recorded");
            // SAFETY: NULL or the thread's NUL-terminated taken text.
            let taken = unsafe { reads(error_ffi::smf_take_error(), b"recorded") };
            taken && nothing_recorded()
        },
    );
}

// ---- Modules --------------------------------------------------------------------------------

fn smf_module_load_bytes_ex(dir: &Path) {
    let bytes = std::fs::read(dir.join("large.smf")).unwrap();
    let options =
        SmfLoadOptions { resolve: Some(resolve_any), user: std::ptr::null_mut(), flags: SMF_LOAD_LOCAL };
    sweep(Module::default, |m| {
        // SAFETY: `bytes.len()` readable bytes, options whose callback may be called.
        m.keep(unsafe { imports_ffi::smf_module_load_bytes_ex(bytes.as_ptr(), bytes.len(), &options) })
    });
}

fn smf_module_release(_: &Path) {
    let prepare = || {
        let module = loaded();
        Taken::new(module.0.replace(0) as *mut module_ffi::SmfModule, |m| module_ffi::smf_module_release(m))
    };
    sweep(prepare, |m| {
        let handle = m.take();
        module_ffi::smf_module_release(handle);
        // The last reference: the handle is stale now.
        nothing_recorded() && module_ffi::smf_module_retain(handle).is_null()
    });
}

fn smf_module_retain(_: &Path) {
    sweep(
        || (loaded(), Module::default()),
        |(m, again)| again.keep(module_ffi::smf_module_retain(m.get())) && again.get() == m.get(),
    );
}

fn smf_module_dialect(_: &Path) {
    sweep(loaded, |m| module_ffi::smf_module_dialect(m.get()) == 1);
}

fn smf_module_symbol(_: &Path) {
    // SAFETY: a live module, a NUL-terminated name.
    sweep(loaded, |m| !unsafe { module_ffi::smf_module_symbol(m.get(), c"answer".as_ptr()) }.is_null());
}

fn smf_module_function(_: &Path) {
    // SAFETY: as above.
    sweep(loaded, |m| unsafe { module_ffi::smf_module_function(m.get(), c"answer".as_ptr()) }.is_some());
}

fn smf_module_entry(_: &Path) {
    sweep(loaded, |m| !module_ffi::smf_module_entry(m.get()).is_null());
}

fn smf_module_symbol_count(_: &Path) {
    // `answer`, `identity` and `List`.
    sweep(loaded, |m| module_ffi::smf_module_symbol_count(m.get()) == 3);
}

fn smf_module_symbol_name(_: &Path) {
    // SAFETY: NULL or a name valid while the module lives.
    sweep(loaded, |m| unsafe { reads(module_ffi::smf_module_symbol_name(m.get(), 0), b"answer") });
}

fn smf_module_symbol_info(_: &Path) {
    sweep(loaded, |m| {
        let mut info = SmfSymbolInfo {
            name: std::ptr::null(),
            kind: -1,
            binding: -1,
            defined: false,
            address: std::ptr::null(),
            size: 0,
        };
        // SAFETY: a writable `SmfSymbolInfo`.
        let code = unsafe { module_ffi::smf_module_symbol_info(m.get(), 0, &mut info) };
        // SAFETY: the name is NULL or valid while the module lives.
        let named = unsafe { reads(info.name, b"answer") };
        code == 0 && info.kind == symbol_kind::FUNCTION && info.defined && named
    });
}

fn smf_module_call(_: &Path) {
    sweep(loaded, |m| {
        let mut result = 0;
        // SAFETY: `answer` takes no argument and returns an integer; a writable result.
        let code = unsafe {
            module_ffi::smf_module_call(m.get(), c"answer".as_ptr(), std::ptr::null(), 0, &mut result)
        };
        code == 0 && result == 42
    });
}

fn smf_module_note_sdn(_: &Path) {
    sweep(loaded, |m| {
        let (mut text, mut len) = (std::ptr::null(), 0);
        // SAFETY: writable out pointers.
        let found = unsafe { module_ffi::smf_module_note_sdn(m.get(), &mut text, &mut len) };
        // SAFETY: `len` bytes at `text` while the module lives.
        found == 1 && unsafe { std::slice::from_raw_parts(text, len) }.starts_with(b"# generics.smf")
    });
}

fn smf_module_template(_: &Path) {
    sweep(loaded, |m| {
        let (mut bytes, mut len) = (std::ptr::null(), 0);
        // SAFETY: a NUL-terminated name, writable out pointers.
        let found =
            unsafe { module_ffi::smf_module_template(m.get(), c"List".as_ptr(), &mut bytes, &mut len) };
        found == 1 && len > 0
    });
}

// ---- Host symbols and addresses --------------------------------------------------------------

/// The host symbol the cases define.
const HOST_SYMBOL: &CStr = c"oom_host_symbol";

fn smf_host_define(_: &Path) {
    let address = resolve_any as *const c_void;
    // SAFETY: a NUL-terminated name.
    sweep(|| (), |()| unsafe { imports_ffi::smf_host_define(HOST_SYMBOL.as_ptr(), address) } == 0);
}

fn smf_host_undefine(_: &Path) {
    let prepare = || {
        // SAFETY: a NUL-terminated name.
        let code =
            unsafe { imports_ffi::smf_host_define(HOST_SYMBOL.as_ptr(), resolve_any as *const c_void) };
        assert_eq!(code, 0, "{}", smf::ffi::last_error());
    };
    // SAFETY: a NUL-terminated name.
    sweep(prepare, |()| unsafe { imports_ffi::smf_host_undefine(HOST_SYMBOL.as_ptr()) } == 0);
}

fn smf_addr_info(_: &Path) {
    let prepare = || {
        let module = loaded();
        // SAFETY: a live module, a NUL-terminated name.
        let answer = unsafe { module_ffi::smf_module_symbol(module.get(), c"answer".as_ptr()) };
        (module, answer as usize)
    };
    sweep(prepare, |(_, answer)| {
        let mut info = SmfAddrInfo {
            module_path: std::ptr::null(),
            module_code: std::ptr::null(),
            symbol_name: std::ptr::null(),
            symbol_address: std::ptr::null(),
            offset: 0,
        };
        // SAFETY: a writable `SmfAddrInfo`.
        let found = unsafe { addr_ffi::smf_addr_info((answer + 1) as *const c_void, &mut info) };
        // SAFETY: the name is NULL or valid while the module lives.
        found == 1 && info.offset == 1 && unsafe { reads(info.symbol_name, b"answer") }
    });
}

// ---- Caches ---------------------------------------------------------------------------------

/// A cache holding [`RICH`] (no limit set).
fn cached(path: &CStr) -> Cache {
    let cache = Cache::new();
    // SAFETY: a live cache, a NUL-terminated path.
    assert!(Module::default().keep(unsafe { cache_ffi::smf_cache_get(cache.0, path.as_ptr()) }));
    cache
}

fn smf_cache_new(_: &Path) {
    sweep(
        || Taken::empty(|c| cache_ffi::smf_cache_free(c)),
        |c| {
            let cache = cache_ffi::smf_cache_new(64 << 20, 16);
            c.put(cache);
            !cache.is_null()
        },
    );
}

fn smf_cache_free(dir: &Path) {
    let path = c_path(dir, RICH);
    let prepare = || {
        let cache = cached(&path);
        let handle = cache.0;
        // The `Taken` frees it instead (unless the call does).
        std::mem::forget(cache);
        Taken::new(handle, |c| cache_ffi::smf_cache_free(c))
    };
    sweep(prepare, |c| {
        let cache = c.take();
        cache_ffi::smf_cache_free(cache);
        if !nothing_recorded() {
            return false;
        }
        // Freed: the handle is stale now.
        cache_ffi::smf_cache_clear(cache);
        !nothing_recorded()
    });
}

fn smf_cache_contains(dir: &Path) {
    let path = c_path(dir, RICH);
    // SAFETY: a live cache, a NUL-terminated path.
    sweep(|| cached(&path), |c| unsafe { cache_ffi::smf_cache_contains(c.0, path.as_ptr()) });
}

fn smf_cache_evict(dir: &Path) {
    let path = c_path(dir, RICH);
    // SAFETY: as above.
    sweep(
        || cached(&path),
        |c| unsafe {
            cache_ffi::smf_cache_evict(c.0, path.as_ptr())
                && !cache_ffi::smf_cache_contains(c.0, path.as_ptr())
        },
    );
}

fn smf_cache_clear(dir: &Path) {
    let path = c_path(dir, RICH);
    sweep(
        || cached(&path),
        |c| {
            cache_ffi::smf_cache_clear(c.0);
            // SAFETY: as above.
            nothing_recorded() && !unsafe { cache_ffi::smf_cache_contains(c.0, path.as_ptr()) }
        },
    );
}

/// Four modules of 20,000 symbols.
fn write_four_large(dir: &Path) {
    let module = samples::large(Dialect::R96, 20_000, 0);
    for i in 0..4 {
        std::fs::write(dir.join(format!("large{i}.smf")), &module).unwrap();
    }
}

fn smf_cache_prefetch_report(dir: &Path) {
    let paths: Vec<CString> = (0..4).map(|i| c_path(dir, &format!("large{i}.smf"))).collect();
    let pointers: Vec<*const std::ffi::c_char> = paths.iter().map(|p| p.as_ptr()).collect();
    sweep(Cache::new, |c| {
        let mut statuses = [-2; 4];
        // SAFETY: a live cache, 4 NUL-terminated paths, room for 4 statuses.
        let cached = unsafe {
            cache_ffi::smf_cache_prefetch_report(c.0, pointers.as_ptr(), 4, 4, statuses.as_mut_ptr())
        };
        cached == 4 && statuses == [cache_ffi::prefetch_status::OK; 4]
    });
}

fn smf_cache_stats(dir: &Path) {
    let path = c_path(dir, RICH);
    sweep(
        || cached(&path),
        |c| {
            let mut stats = SmfCacheStats::default();
            // SAFETY: a writable `SmfCacheStats`.
            unsafe { cache_ffi::smf_cache_stats(c.0, &mut stats) };
            nothing_recorded() && (stats.modules, stats.misses) == (1, 1)
        },
    );
}

fn smf_cache_resolve(dir: &Path) {
    let path = c_path(dir, RICH);
    // SAFETY: a live cache, a NUL-terminated name.
    sweep(|| cached(&path), |c| !unsafe { cache_ffi::smf_cache_resolve(c.0, c"answer".as_ptr()) }.is_null());
}

fn smf_cache_set_load_options(_: &Path) {
    let options = SmfLoadOptions {
        resolve: Some(resolve_any),
        user: std::ptr::null_mut(),
        flags: SMF_LOAD_LOCAL | SMF_LOAD_NO_DEBUG_INFO,
    };
    sweep(Cache::new, |c| {
        // SAFETY: options whose callback may be called from any thread.
        unsafe { cache_ffi::smf_cache_set_load_options(c.0, &options) };
        nothing_recorded()
    });
}

fn smf_cache_check_every_get(dir: &Path) {
    let path = c_path(dir, RICH);
    sweep(
        || cached(&path),
        |c| {
            cache_ffi::smf_cache_check_every_get(c.0, true);
            nothing_recorded()
        },
    );
}

// ---- Instantiators --------------------------------------------------------------------------

const CONFIG: SmfJitConfig = SmfJitConfig { max_depth: 0, enabled: true, update_metadata: true };

/// An instantiator compiling with `compile`, over a cache holding the module at `path` (read
/// before, so that a request reads no file); freed when dropped unless taken, then its cache.
struct Instantiator {
    jit: Taken<*mut SmfJit>,
    _cache: Cache,
}

/// [`Instantiator`], with `identity$i64` instantiated if `instantiate` (no limit set).
fn instantiator(path: &CStr, compile: SmfCompileFn, instantiate: bool) -> Instantiator {
    let cache = cached(path);
    // SAFETY: a callback of the right type.
    let jit = unsafe { jit_ffi::smf_jit_new(cache.0, CONFIG, Some(compile), std::ptr::null_mut()) };
    assert!(!jit.is_null(), "{}", smf::ffi::last_error());
    let jit = Taken::new(jit, |j| jit_ffi::smf_jit_free(j));
    if instantiate {
        assert_eq!(instantiated(&jit, path), jit_ffi::SMF_JIT_OK, "{}", smf::ffi::last_error());
    }
    Instantiator { jit, _cache: cache }
}

/// `smf_jit_instantiate` of `identity$i64` from the module at `path`: its code, and where it is.
fn instantiate_identity(jit: &Taken<*mut SmfJit>, path: &CStr) -> (i32, usize) {
    let mut address = std::ptr::null();
    // SAFETY: a live instantiator, NUL-terminated strings, a writable out pointer.
    let code = unsafe {
        jit_ffi::smf_jit_instantiate(jit.get(), path.as_ptr(), c"identity$i64".as_ptr(), &mut address)
    };
    (code, address as usize)
}

/// [`instantiate_identity`]'s code.
fn instantiated(jit: &Taken<*mut SmfJit>, path: &CStr) -> i32 {
    instantiate_identity(jit, path).0
}

fn smf_jit_new(_: &Path) {
    let prepare = || (Taken::empty(|j| jit_ffi::smf_jit_free(j)), Cache::new());
    sweep(prepare, |(j, c)| {
        // SAFETY: a callback of the right type.
        let jit = unsafe { jit_ffi::smf_jit_new(c.0, CONFIG, Some(return_three), std::ptr::null_mut()) };
        j.put(jit);
        !jit.is_null()
    });
}

fn smf_jit_free(dir: &Path) {
    let path = c_path(dir, RICH);
    let prepare = || {
        let jit = instantiator(&path, return_three, false);
        let (code, address) = instantiate_identity(&jit.jit, &path);
        assert_eq!(code, jit_ffi::SMF_JIT_OK, "{}", smf::ffi::last_error());
        (jit, address)
    };
    sweep(prepare, |(j, address)| {
        jit_ffi::smf_jit_free(j.jit.take());
        // Freed with the code it installed.
        nothing_recorded() && !rt_exec::rt_is_executable(i64::try_from(*address).unwrap())
    });
}

/// The instantiator [`fail_to_compile`] reports its failures to.
static FAILING: AtomicUsize = AtomicUsize::new(0);

/// The message [`fail_to_compile`] reports.
const FAILURE: &CStr = c"no code generator for this template (reported with smf_jit_fail)";

/// A compiler callback that fails, as `smf.h` says: `smf_jit_fail`, then nonzero.
unsafe extern "C" fn fail_to_compile(
    _user: *mut c_void,
    _name: *const std::ffi::c_char,
    _type_args: *const std::ffi::c_char,
    _template: *const u8,
    _template_len: usize,
    _code: *mut *const u8,
    _code_len: *mut usize,
) -> i32 {
    // SAFETY: a NUL-terminated message.
    unsafe { jit_ffi::smf_jit_fail(FAILING.load(Ordering::Relaxed) as *mut SmfJit, FAILURE.as_ptr()) };
    1
}

fn smf_jit_fail(dir: &Path) {
    let path = c_path(dir, RICH);
    let prepare = || {
        let jit = instantiator(&path, fail_to_compile, false);
        FAILING.store(jit.jit.get() as usize, Ordering::Relaxed);
        jit
    };
    sweep(prepare, |j| {
        instantiated(&j.jit, &path) == jit_ffi::SMF_JIT_COMPILE_ERROR && error_mentions(FAILURE.to_bytes())
    });
}

fn smf_jit_stats(dir: &Path) {
    let path = c_path(dir, RICH);
    sweep(
        || instantiator(&path, return_three, true),
        |j| {
            let mut stats = SmfJitStats::default();
            // SAFETY: a writable `SmfJitStats`.
            unsafe { jit_ffi::smf_jit_stats(j.jit.get(), &mut stats) };
            nothing_recorded() && stats.instantiations == 1
        },
    );
}

fn smf_jit_set_max_instantiations(dir: &Path) {
    let path = c_path(dir, RICH);
    sweep(
        || instantiator(&path, return_three, false),
        |j| {
            jit_ffi::smf_jit_set_max_instantiations(j.jit.get(), 0);
            nothing_recorded()
        },
    );
}
