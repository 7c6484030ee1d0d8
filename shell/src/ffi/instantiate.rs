//! `smf_jit_*`: load-time instantiation from C (`ffi.md`, "Load-time instantiation"), over
//! [`crate::instantiate::Generics`].
//!
//! A `SmfJit *` is an opaque handle (`handles.rs`). The compiler callback runs with no lock of
//! the library held and may call `smf_jit_instantiate` (or resolve) again on its thread; its
//! failure message, given with `smf_jit_fail`, is kept per thread for the innermost compile.
//! Every call but `smf_jit_fail` records a message for `smf_last_error` when it does not
//! succeed.

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr};

use smf_runtime::instantiate::{InstantiateError, InstantiatorConfig, InstantiatorStats};

use super::cache::{cache_of, SmfCache};
use super::failure::About;
use super::handles::Handles;
pub use super::instantiate_callback::SmfCompileFn;
use super::instantiate_callback::{record_failure, CCompiler};
use super::instantiate_codes::code_of;
pub use super::instantiate_codes::*;
use super::{c_name, c_path, c_str, coded, guard, set_error, ArgError, FfiError};
use crate::instantiate::Generics;

/// The opaque type behind `SmfJit *`.
#[repr(C)]
#[derive(Debug)]
pub struct SmfJit {
    _private: [u8; 0],
}

/// `SmfJitConfig`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SmfJitConfig {
    /// Instantiation depth limit (`smf_jit_new` takes 0 as the default, 50).
    pub max_depth: u32,
    /// When false, every request is `SMF_JIT_NOT_FOUND`.
    pub enabled: bool,
    /// Whether instantiations are recorded in their module's note.sdn.
    pub update_metadata: bool,
}

/// `SmfJitStats` (an extension): the instantiator's counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SmfJitStats {
    /// Instantiations compiled and installed.
    pub instantiations: u64,
    /// Requests answered with code already there.
    pub cache_hits: u64,
    /// Compiles (or installs) that failed.
    pub compile_failures: u64,
    /// Bytes of code installed.
    pub code_bytes: u64,
    /// Requests that waited for another thread's compile of the same name.
    pub waits: u64,
}

impl From<InstantiatorStats> for SmfJitStats {
    fn from(s: InstantiatorStats) -> Self {
        Self {
            instantiations: s.instantiations,
            cache_hits: s.cache_hits,
            compile_failures: s.compile_failures,
            code_bytes: s.code_bytes,
            waits: s.waits,
        }
    }
}

static GENERICS: Handles<Generics> = Handles::new("SmfJit", crate::fork::Lock::Instantiators);

/// The live instantiator (C handle) whose installed code contains `addr`, for `rt_call_*`.
#[cfg_attr(not(feature = "rt"), allow(dead_code))]
pub(crate) fn generics_containing(addr: usize) -> Option<std::sync::Arc<Generics>> {
    GENERICS.find_live(|generics| generics.instantiator().contains_code(addr))
}

thread_local! {
    /// The text `smf_jit_note_sdn` last handed out on this thread.
    static NOTE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` (a panic is an internal error) and turns its outcome into an `SMF_JIT_*` code and
/// `*address` (NULL on failure), recording the message of any failure.
///
/// # Safety
/// `address` is NULL or writable.
unsafe fn answer(address: *mut *const c_void, f: impl FnOnce() -> Result<usize, FfiError>) -> i32 {
    let (found, code) = coded(f);
    if !address.is_null() {
        // SAFETY: writable per the caller's contract.
        unsafe { address.write(found as *const c_void) };
    }
    code
}

/// A new instantiator over the cache `cache` (which it keeps alive), compiling with `compile`
/// (called with `user`); NULL on error. `config.max_depth` 0 means the default, 50.
///
/// # Safety
/// `compile` is a function of the `SmfCompileFn` type; it and `user` may be called from any
/// thread that asks for an instantiation, until `smf_jit_free`.
#[no_mangle]
pub unsafe extern "C" fn smf_jit_new(
    cache: *mut SmfCache,
    config: SmfJitConfig,
    compile: Option<SmfCompileFn>,
    user: *mut c_void,
) -> *mut SmfJit {
    guard(std::ptr::null_mut(), || {
        let cache = cache_of(cache)?;
        let compile = compile.ok_or(ArgError::Null("the compiler callback"))?;
        let defaults = InstantiatorConfig::default();
        let config = InstantiatorConfig {
            max_depth: if config.max_depth == 0 { defaults.max_depth } else { config.max_depth },
            enabled: config.enabled,
            update_metadata: config.update_metadata,
            ..defaults
        };
        Ok(GENERICS.insert(Generics::new(cache, config, CCompiler { compile, user })) as *mut SmfJit)
    })
}

/// Frees the instantiator and the code it installed (nothing may run it afterwards). NULL is
/// a no-op.
#[no_mangle]
pub extern "C" fn smf_jit_free(j: *mut SmfJit) {
    guard((), || {
        if j.is_null() {
            return Ok(());
        }
        // The request running below would return code this free unmaps.
        if GENERICS.with(j, Generics::compiling_here)? {
            return Err(FfiError::FreeInCallback);
        }
        Ok(GENERICS.release(j)?)
    })
}

/// The code of `mangled_name` as the module at `module_path` offers it, instantiated on first
/// request; `SMF_JIT_*`.
///
/// # Safety
/// The strings are NULL or NUL-terminated; `address` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn smf_jit_instantiate(
    j: *mut SmfJit,
    module_path: *const c_char,
    mangled_name: *const c_char,
    address: *mut *const c_void,
) -> i32 {
    // SAFETY: forwarded to our caller's contract.
    unsafe {
        answer(address, || {
            if module_path.is_null() {
                return Err(ArgError::Null("path").into());
            }
            // A name already instantiated (the common case) is answered under the handle
            // table's read lock, without taking a reference to the instantiator, and without
            // reading the path (names are global: the path is only needed to instantiate).
            let bytes = c_name(mangled_name).map_err(|_| ArgError::Null("mangled name"))?;
            if let Ok(Some(found)) = GENERICS.with(j, |generics| generics.instantiated(bytes))? {
                return Ok(found);
            }
            let path = c_path(module_path)?;
            let name = c_str(mangled_name, "mangled name")?;
            let about = |error| FfiError::Generics {
                about: About::NameFrom(crate::kept::kept_str(name), path.to_path_buf()),
                error,
            };
            GENERICS.get(j)?.instantiate(path, name).map_err(about)
        })
    }
}

/// [`smf_jit_instantiate`] of each of the `n` names from the module at `module_path`, the code
/// of all those compiled here installed together: `SMF_JIT_OK` if every name is instantiated,
/// else the first failure's code (its message names it and counts the failures). Each name's
/// code (or NULL) goes to `addresses[i]` and its `SMF_JIT_*` to `statuses[i]` (either may be
/// NULL).
///
/// # Safety
/// `module_path` is NULL or NUL-terminated; `names` is NULL (with `n` 0) or points to `n`
/// pointers, each NULL or NUL-terminated; `addresses` and `statuses` are NULL or writable for
/// `n` values.
#[no_mangle]
pub unsafe extern "C" fn smf_jit_instantiate_batch(
    j: *mut SmfJit,
    module_path: *const c_char,
    names: *const *const c_char,
    n: usize,
    addresses: *mut *const c_void,
    statuses: *mut i32,
) -> i32 {
    let addresses: &mut [*const c_void] = if addresses.is_null() || n == 0 {
        &mut []
    } else {
        // SAFETY: writable for `n` values per the caller's contract (checked non-null).
        unsafe { std::slice::from_raw_parts_mut(addresses, n) }
    };
    let statuses: &mut [i32] = if statuses.is_null() || n == 0 {
        &mut []
    } else {
        // SAFETY: writable for `n` values per the caller's contract (checked non-null).
        unsafe { std::slice::from_raw_parts_mut(statuses, n) }
    };
    addresses.fill(std::ptr::null());
    statuses.fill(SMF_JIT_INVALID_ARGUMENT);
    let mut reported = false;
    let batch = || {
        let generics = GENERICS.get(j)?;
        // SAFETY: NULL or NUL-terminated per the caller's contract.
        let path = unsafe { c_path(module_path) }?;
        if n == 0 {
            return Ok(0);
        }
        if names.is_null() {
            return Err(ArgError::Null("names").into());
        }
        // SAFETY: `n` readable pointers per the caller's contract.
        let raw = unsafe { std::slice::from_raw_parts(names, n) };
        let mut texts: Vec<&str> = Vec::new();
        texts
            .try_reserve_exact(n)
            .map_err(|_| InstantiateError::OutOfMemory { bytes: n.saturating_mul(16) })?;
        for (i, &name) in raw.iter().enumerate() {
            // SAFETY: NULL or NUL-terminated per the caller's contract.
            let text = unsafe { c_name(name) }.map_err(|_| ArgError::NullItem("name", i))?;
            texts.push(std::str::from_utf8(text).map_err(|_| ArgError::NotUtf8Item("name", i))?);
        }
        let outcomes = generics.instantiate_many(path, &texts)?;
        reported = true;
        let (mut failed, mut first) = (0, None);
        for (i, outcome) in outcomes.iter().enumerate() {
            if let Some(status) = statuses.get_mut(i) {
                *status = outcome.as_ref().map_or_else(code_of, |_| SMF_JIT_OK);
            }
            match outcome {
                Ok(address) => {
                    if let Some(slot) = addresses.get_mut(i) {
                        *slot = *address as *const c_void;
                    }
                }
                Err(error) => {
                    failed += 1;
                    first.get_or_insert((i, error.clone()));
                }
            }
        }
        match first {
            None => Ok(0),
            Some((first, error)) => {
                let name = crate::kept::kept_str(texts[first]);
                let about = About::Batch { failed, of: n, first, name, path: path.to_path_buf() };
                Err(FfiError::Generics { about, error })
            }
        }
    };
    // SAFETY: the answer's address is NULL (nothing is written there).
    let code = unsafe { answer(std::ptr::null_mut(), batch) };
    if !reported {
        // The call failed as a whole: every name with its code.
        statuses.fill(code);
    }
    code
}

/// Called by the compiler callback before it returns nonzero: the failure's message (copied).
///
/// # Safety
/// `message` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn smf_jit_fail(j: *mut SmfJit, message: *const c_char) {
    guard((), || {
        GENERICS.get(j)?;
        let text = if message.is_null() {
            "(no message)".into()
        } else {
            // SAFETY: non-null and NUL-terminated per our caller's contract.
            let bytes = unsafe { CStr::from_ptr(message) }.to_bytes();
            // What the thread's message can hold (1 KiB), never a copy of a longer text.
            String::from_utf8_lossy(&bytes[..bytes.len().min(super::error::MESSAGE_CAPACITY)])
        };
        record_failure(text.into_owned());
        Ok(())
    })
}

/// The note.sdn of the module at `module_path` as it stands (instantiated entries moved to
/// "instantiations", status `jit_compiled`), with its `# END_NOTE` line, in `*text`/`*len`
/// (followed by a NUL not counted in `*len`): valid until this thread's next
/// `smf_jit_note_sdn`. 1 found, 0 no file at that path, -1 error.
///
/// # Safety
/// `module_path` is NULL or NUL-terminated; `text` and `len` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn smf_jit_note_sdn(
    j: *mut SmfJit,
    module_path: *const c_char,
    text: *mut *const u8,
    len: *mut usize,
) -> i32 {
    let found = guard(None, || {
        let generics = GENERICS.get(j)?;
        // SAFETY: forwarded to our caller's contract.
        let path = unsafe { c_path(module_path) }?;
        Ok(Some(generics.note_sdn(path)?))
    });
    let (status, bytes) = match found {
        Some(Some(note)) => (1, note.into_bytes()),
        Some(None) => {
            set_error("no module file at that path");
            (0, Vec::new())
        }
        None => (-1, Vec::new()),
    };
    let (ptr, n) = NOTE.with_borrow_mut(|kept| {
        *kept = bytes;
        let len = kept.len();
        // NUL-terminated as well (not counted in `len`), so C may use it as a string.
        kept.push(0);
        (if status == 1 { kept.as_ptr() } else { std::ptr::null() }, if status == 1 { len } else { 0 })
    });
    // SAFETY: writable per the caller's contract; the text lives in this thread's buffer until
    // its next call.
    unsafe {
        if !text.is_null() {
            text.write(ptr);
        }
        if !len.is_null() {
            len.write(n);
        }
    }
    status
}

/// The runtime's symbol lookup with instantiation as the fallback: an export of a cached
/// module, else an instantiation from the first cached module whose "possible" table lists
/// `name`; `SMF_JIT_*`.
///
/// # Safety
/// `name` is NULL or NUL-terminated; `address` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn smf_jit_resolve(
    j: *mut SmfJit,
    name: *const c_char,
    address: *mut *const c_void,
) -> i32 {
    // SAFETY: forwarded to our caller's contract.
    unsafe {
        answer(address, || {
            let generics = GENERICS.get(j)?;
            let name = c_str(name, "name")?;
            generics.resolve(name).map_err(|error| FfiError::Generics {
                about: About::Name(crate::kept::kept_str(name)),
                error,
            })
        })
    }
}

/// `smf_jit_resolve` of `base` with its `n` type arguments mangled as Simple does
/// (`base$T1_T2`).
///
/// # Safety
/// `base` and the `n` strings of `type_args` are NUL-terminated (`type_args` may be NULL when
/// `n` is 0); `address` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn smf_jit_resolve_generic(
    j: *mut SmfJit,
    base: *const c_char,
    type_args: *const *const c_char,
    n: usize,
    address: *mut *const c_void,
) -> i32 {
    // SAFETY: forwarded to our caller's contract.
    unsafe {
        answer(address, || {
            let generics = GENERICS.get(j)?;
            let base = c_str(base, "base name")?;
            if type_args.is_null() && n > 0 {
                return Err(ArgError::Null("type_args").into());
            }
            let mut args = Vec::new();
            args.try_reserve_exact(n)
                .map_err(|_| InstantiateError::OutOfMemory { bytes: n.saturating_mul(16) })?;
            for i in 0..n {
                args.push(c_str(*type_args.add(i), "a type argument")?);
            }
            let name = crate::instantiate::try_mangle(base, &args)?;
            generics.resolve(&name).map_err(|error| FfiError::Generics {
                about: About::Name(crate::kept::kept_str(&name)),
                error,
            })
        })
    }
}

/// Extension: the instantiator's counters into `*out`.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn smf_jit_stats(j: *const SmfJit, out: *mut SmfJitStats) {
    guard((), || {
        let stats = GENERICS.get(j)?.stats();
        if !out.is_null() {
            // SAFETY: writable per the caller's contract.
            unsafe { out.write(stats.into()) };
        }
        Ok(())
    })
}

/// Extension: at most `limit` instantiations from now on (more are `SMF_JIT_LIMIT_REACHED`).
#[no_mangle]
pub extern "C" fn smf_jit_set_max_instantiations(j: *mut SmfJit, limit: u64) {
    guard((), || {
        GENERICS.get(j)?.set_max_instantiations(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(())
    })
}
