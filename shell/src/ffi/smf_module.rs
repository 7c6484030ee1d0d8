//! `smf_module_*`: loading modules from C (`ffi.md`, section "smf_*: the loader").
//!
//! A `SmfModule *` is a handle the library handed out (`handles.rs`: an opaque value, never
//! dereferenced, never repeated, marked with its type, looked up before anything is touched, so
//! a stale, foreign or wrongly typed pointer is an error, not a crash). The handle table keeps
//! one strong reference per handle and counts the C side's references
//! (`smf_module_retain`/`smf_module_release`); modules loaded here join a process-wide registry
//! whose exports resolve the imports of later loads (the first module loaded wins a name).

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use super::failure::LookupError;
use super::handles::Handles;
use super::{c_name, guard, ArgError, FfiError};
use crate::loader::{self, LoadRequest, SharedModule};

/// The opaque type behind `SmfModule *`.
#[repr(C)]
#[derive(Debug)]
pub struct SmfModule {
    _private: [u8; 0],
}

/// Live module handles, each with the C references it has.
static MODULES: Handles<SharedModule> = Handles::new("SmfModule", crate::fork::Lock::Modules);

/// A new handle (one C reference) to `module`.
pub(super) fn register(module: Arc<SharedModule>) -> *mut SmfModule {
    MODULES.insert_shared(module) as *mut SmfModule
}

/// The module behind `m`, if `m` is a live handle: a reference of its own, so the module
/// stays alive while the caller uses it even if another thread releases the handle.
fn module_of(m: *const SmfModule) -> Result<Arc<SharedModule>, FfiError> {
    Ok(MODULES.get(m)?)
}

/// Runs `f` with the module behind `m`, if `m` is a live handle (the handle table is not
/// locked while `f` runs).
fn with_module<T>(
    m: *const SmfModule,
    f: impl FnOnce(&SharedModule) -> Result<T, FfiError>,
) -> Result<T, FfiError> {
    f(&*module_of(m)?)
}

/// Loads the module at `path` (parse, validate, install code W^X, relocate); NULL on error.
/// `smf_module_load_ex(path, NULL)`: imports resolve against host symbols and earlier loads.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn smf_module_load(path: *const c_char) -> *mut SmfModule {
    guard(std::ptr::null_mut(), || {
        // SAFETY: forwarded to our caller's contract.
        let path = unsafe { super::c_path(path) }?;
        let module = loader::load(&LoadRequest::path(path))?;
        Ok(register(module))
    })
}

/// Loads a module from `len` bytes at `bytes`; NULL on error.
///
/// # Safety
/// `bytes` is NULL or readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn smf_module_load_bytes(bytes: *const u8, len: usize) -> *mut SmfModule {
    guard(std::ptr::null_mut(), || {
        if bytes.is_null() {
            return Err(ArgError::Null("bytes").into());
        }
        // SAFETY: the caller passes `len` readable bytes; they are only read during the load.
        let data = unsafe { std::slice::from_raw_parts(bytes, len) };
        let module = loader::load(&LoadRequest::bytes(data))?;
        Ok(register(module))
    })
}

/// Drops one reference; the last frees the module (once no other module links to it). NULL is
/// a no-op.
#[no_mangle]
pub extern "C" fn smf_module_release(m: *mut SmfModule) {
    // The last reference frees the image unless another module still links to it.
    guard((), || Ok(MODULES.release(m)?));
}

/// Adds a reference; returns `m` (NULL if `m` is not a live handle).
#[no_mangle]
pub extern "C" fn smf_module_retain(m: *mut SmfModule) -> *mut SmfModule {
    guard(std::ptr::null_mut(), || Ok(MODULES.retain(m).map(|()| m)?))
}

/// The module's dialect: 0 S128, 1 R96, 2 R72; -1 on error.
#[no_mangle]
pub extern "C" fn smf_module_dialect(m: *const SmfModule) -> i32 {
    guard(-1, || with_module(m, |module| Ok(module.loaded().dialect().abi_code())))
}

/// The address of the defined, exported symbol `name`, or NULL.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn smf_module_symbol(m: *const SmfModule, name: *const c_char) -> *const c_void {
    guard(std::ptr::null(), || {
        // SAFETY: forwarded to our caller's contract.
        let name = unsafe { c_name(name) }?;
        with_module(m, |module| {
            let address = module.symbol(name).ok_or_else(|| {
                LookupError::NoExport(crate::kept::kept(name), super::failure::module_path(module))
            })?;
            Ok(address as *const c_void)
        })
    })
}

/// A C function pointer type (`SmfFunction`): callers cast it to the function's real type.
pub type SmfFunction = Option<unsafe extern "C" fn()>;

/// The address of the defined, exported function `name` as a function pointer (so that ISO C
/// callers cast it to their type without going through `void *`), or NULL if there is no such
/// export or it is not a function.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn smf_module_function(m: *const SmfModule, name: *const c_char) -> SmfFunction {
    guard(None, || {
        // SAFETY: forwarded to our caller's contract.
        let name = unsafe { c_name(name) }?;
        with_module(m, |module| {
            let loaded = module.loaded();
            if loaded.symbol(name).is_none() {
                return Err(LookupError::NoExport(
                    crate::kept::kept(name),
                    super::failure::module_path(module),
                )
                .into());
            }
            // SAFETY: C callers cast the pointer to the function's real type before calling it
            // (the header's contract); here it is only handed out, valid while the caller
            // holds the module.
            let function = unsafe { loaded.function::<unsafe extern "C" fn()>(name) };
            let function = function.ok_or_else(|| {
                LookupError::NotAFunction(crate::kept::kept(name), super::failure::module_path(module))
            })?;
            Ok(Some(function.get()))
        })
    })
}

/// The entry point, or NULL unless the module is executable.
#[no_mangle]
pub extern "C" fn smf_module_entry(m: *const SmfModule) -> *const c_void {
    guard(std::ptr::null(), || {
        with_module(m, |module| {
            let entry = module.loaded().entry().ok_or(LookupError::NoEntryPoint)?;
            Ok(entry as *const c_void)
        })
    })
}

/// Number of symbols (all of them, in table order).
#[no_mangle]
pub extern "C" fn smf_module_symbol_count(m: *const SmfModule) -> usize {
    guard(0, || with_module(m, |module| Ok(module.loaded().symbols().len())))
}

/// The name of symbol `index` (NUL-terminated, valid while the module lives), NULL past the end.
#[no_mangle]
pub extern "C" fn smf_module_symbol_name(m: *const SmfModule, index: usize) -> *const c_char {
    guard(std::ptr::null(), || {
        with_module(m, |module| {
            let symbols = module.loaded().symbols();
            let count = symbols.len();
            let name = symbols.name_with_nul(index).ok_or(LookupError::NoSymbol { index, count })?;
            Ok(name.as_ptr().cast())
        })
    })
}

/// One symbol of a loaded module (`SmfSymbolInfo`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SmfSymbolInfo {
    /// Its name (NUL-terminated, valid while the module is held).
    pub name: *const c_char,
    /// `SMF_SYMBOL_*`.
    pub kind: i32,
    /// `SMF_BIND_*`.
    pub binding: i32,
    /// False for an import.
    pub defined: bool,
    /// Where it lives in this process (for an import, what it resolved to), or NULL.
    pub address: *const c_void,
    /// The size its entry gives.
    pub size: u64,
}

/// `SMF_SYMBOL_*`: what a symbol is.
pub mod symbol_kind {
    /// An import (what it names is not known here).
    pub const NONE: i32 = 0;
    /// A function.
    pub const FUNCTION: i32 = 1;
    /// Data or a constant.
    pub const DATA: i32 = 2;
    /// A type.
    pub const TYPE: i32 = 3;
    /// A generic template.
    pub const TEMPLATE: i32 = 4;
    /// A trait or an actor.
    pub const OTHER: i32 = 5;
}

/// Fills `out` with symbol `index` of the module, in table order: 0 ok, -1 past the end or on
/// error.
///
/// # Safety
/// `out` is NULL or writable for an `SmfSymbolInfo`.
#[no_mangle]
pub unsafe extern "C" fn smf_module_symbol_info(
    m: *const SmfModule,
    index: usize,
    out: *mut SmfSymbolInfo,
) -> i32 {
    use smf_format::{Binding, SymbolKind};
    guard(-1, || {
        if out.is_null() {
            return Err(ArgError::Null("out").into());
        }
        with_module(m, |module| {
            let symbols = module.loaded().symbols();
            let (Some(symbol), Some(name), Some(size)) =
                (symbols.get(index), symbols.name_with_nul(index), symbols.size(index))
            else {
                return Err(LookupError::NoSymbol { index, count: symbols.len() }.into());
            };
            let kind = match symbol.kind {
                _ if symbol.template => symbol_kind::TEMPLATE,
                SymbolKind::Import => symbol_kind::NONE,
                SymbolKind::Function => symbol_kind::FUNCTION,
                SymbolKind::Data | SymbolKind::Constant => symbol_kind::DATA,
                SymbolKind::Type => symbol_kind::TYPE,
                SymbolKind::Trait | SymbolKind::Actor => symbol_kind::OTHER,
            };
            let binding = match symbol.binding {
                Binding::Local => 0,
                Binding::Global => 1,
                Binding::Weak => 2,
            };
            let info = SmfSymbolInfo {
                name: name.as_ptr().cast(),
                kind,
                binding,
                defined: symbol.kind != SymbolKind::Import,
                address: symbol.addr as *const c_void,
                size,
            };
            // SAFETY: non-null and writable per the caller's contract.
            unsafe { out.write(info) };
            Ok(0)
        })
    })
}

/// Calls the function symbol `name` with `nargs` (at most 6) integer arguments; 0 ok, -1 error.
///
/// # Safety
/// `name` is NULL or NUL-terminated; `args` is readable for `nargs` values (or NULL when 0);
/// `result` is NULL or writable. The function must take integer arguments and return one.
#[no_mangle]
pub unsafe extern "C" fn smf_module_call(
    m: *const SmfModule,
    name: *const c_char,
    args: *const i64,
    nargs: usize,
    result: *mut i64,
) -> i32 {
    guard(-1, || {
        // SAFETY: forwarded to our caller's contract.
        let name = unsafe { c_name(name) }?;
        if nargs > 6 {
            return Err(crate::loader::CallError::TooManyArguments(nargs).into());
        }
        if nargs > 0 && args.is_null() {
            return Err(ArgError::Null("args").into());
        }
        let args = if nargs == 0 {
            &[][..]
        } else {
            // SAFETY: the caller passes `nargs` readable values.
            unsafe { std::slice::from_raw_parts(args, nargs) }
        };
        // Held until the call returns: a release on another thread cannot free the code.
        let module = module_of(m)?;
        // SAFETY: the caller vouches for the function's integer signature.
        let value = unsafe { module.call_integers(Some(name), args) }?;
        drop(module);
        if !result.is_null() {
            // SAFETY: the caller passes a writable result or NULL.
            unsafe { *result = value };
        }
        Ok(0)
    })
}

/// Hands out `bytes` (owned by a live module) through C out-parameters: 1 found, 0 absent.
///
/// # Safety
/// `ptr` and `len` are NULL or writable.
unsafe fn out_bytes(found: Option<&[u8]>, ptr: *mut *const u8, len: *mut usize) -> Result<i32, FfiError> {
    if ptr.is_null() || len.is_null() {
        return Err(ArgError::Null("output pointer").into());
    }
    let (p, l) = found.map_or((std::ptr::null(), 0), |b| (b.as_ptr(), b.len()));
    // SAFETY: both are non-null, and writable per the caller's contract.
    unsafe {
        *ptr = p;
        *len = l;
    }
    Ok(i32::from(found.is_some()))
}

/// The module's note.sdn text (without its terminator): 1 found, 0 absent, -1 error. The text
/// stays valid while the module lives.
///
/// # Safety
/// `text` and `len` are writable (or NULL, which is an error).
#[no_mangle]
pub unsafe extern "C" fn smf_module_note_sdn(
    m: *const SmfModule,
    text: *mut *const u8,
    len: *mut usize,
) -> i32 {
    // SAFETY: forwarded to our caller's contract.
    guard(-1, || with_module(m, |module| unsafe { out_bytes(module.loaded().note_sdn(), text, len) }))
}

/// The template-code entry of the template symbol `name`: 1 found, 0 absent, -1 error.
///
/// # Safety
/// `name` is NULL or NUL-terminated; `bytes` and `len` are writable.
#[no_mangle]
pub unsafe extern "C" fn smf_module_template(
    m: *const SmfModule,
    name: *const c_char,
    bytes: *mut *const u8,
    len: *mut usize,
) -> i32 {
    guard(-1, || {
        // SAFETY: forwarded to our caller's contract.
        let name = unsafe { c_name(name) }?;
        // SAFETY: forwarded to our caller's contract.
        with_module(m, |module| unsafe { out_bytes(module.loaded().template(name), bytes, len) })
    })
}
