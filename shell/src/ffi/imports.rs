//! What modules link against, from C (`ffi.md`, "Imports"): host symbols
//! (`smf_host_define`/`smf_host_undefine`) and loads with options (`smf_module_load_ex`,
//! `smf_module_load_bytes_ex`: a resolver callback, the process's symbols, the C library, local
//! loads).
//! The lookup order itself is [`crate::imports`]'.

use std::ffi::{c_char, c_void};
use std::fmt;

use smf_runtime::load::{Resolved, Resolver};

use super::smf_module::{register, SmfModule};
use super::{c_name, guard, ArgError, FfiError};
use crate::imports::{define_host, undefine_host, LinkOptions};
use crate::loader::{self, LoadRequest};

/// A resolver callback: the address of `name`, or NULL for "not mine".
pub type SmfResolveFn = Option<unsafe extern "C" fn(user: *mut c_void, name: *const c_char) -> *const c_void>;

/// `SMF_LOAD_PROCESS_SYMBOLS`: the process's global symbols are asked after the resolver.
pub const SMF_LOAD_PROCESS_SYMBOLS: u32 = 1;
/// `SMF_LOAD_LOCAL`: the module's exports are not offered to later loads.
pub const SMF_LOAD_LOCAL: u32 = 2;
/// `SMF_LOAD_NO_C_LIBRARY` (extension): the C library and libm are not the last resort.
pub const SMF_LOAD_NO_C_LIBRARY: u32 = 4;
/// `SMF_LOAD_NO_DEBUG_INFO` (extension): the module is not described to debuggers and
/// profilers (GDB's JIT interface, the perf map).
pub const SMF_LOAD_NO_DEBUG_INFO: u32 = 8;
/// `SMF_LOAD_NO_NEEDED` (extension): the shared libraries the module names as needed are not
/// opened (`crate::needed`).
pub const SMF_LOAD_NO_NEEDED: u32 = 16;

/// What a load's `SMF_LOAD_*` flags ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LoadFlags {
    /// `SMF_LOAD_PROCESS_SYMBOLS`.
    pub(crate) process_symbols: bool,
    /// Not `SMF_LOAD_NO_C_LIBRARY`.
    pub(crate) c_library: bool,
    /// `SMF_LOAD_LOCAL`.
    pub(crate) local: bool,
    /// Not `SMF_LOAD_NO_DEBUG_INFO`.
    pub(crate) debug_info: bool,
    /// Not `SMF_LOAD_NO_NEEDED`.
    pub(crate) open_needed: bool,
}

impl LoadFlags {
    /// The flags `flags` holds, if it holds only `SMF_LOAD_*` bits.
    pub(crate) fn of(flags: u32) -> Result<Self, ArgError> {
        let known = SMF_LOAD_PROCESS_SYMBOLS
            | SMF_LOAD_LOCAL
            | SMF_LOAD_NO_C_LIBRARY
            | SMF_LOAD_NO_DEBUG_INFO
            | SMF_LOAD_NO_NEEDED;
        if flags & !known != 0 {
            return Err(ArgError::UnknownFlags(flags));
        }
        Ok(LoadFlags {
            process_symbols: flags & SMF_LOAD_PROCESS_SYMBOLS != 0,
            c_library: flags & SMF_LOAD_NO_C_LIBRARY == 0,
            local: flags & SMF_LOAD_LOCAL != 0,
            debug_info: flags & SMF_LOAD_NO_DEBUG_INFO == 0,
            open_needed: flags & SMF_LOAD_NO_NEEDED == 0,
        })
    }
}

/// How a load links (`SmfLoadOptions`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SmfLoadOptions {
    /// Asked after host symbols and earlier loads; may be NULL.
    pub resolve: SmfResolveFn,
    /// Passed to `resolve`.
    pub user: *mut c_void,
    /// `SMF_LOAD_*` bits.
    pub flags: u32,
}

/// A C resolver callback as a [`Resolver`].
pub(crate) struct Callback {
    resolve: unsafe extern "C" fn(*mut c_void, *const c_char) -> *const c_void,
    user: *mut c_void,
}

impl Callback {
    /// The callback `resolve`, handed `user`.
    pub(crate) fn new(
        resolve: unsafe extern "C" fn(*mut c_void, *const c_char) -> *const c_void,
        user: *mut c_void,
    ) -> Self {
        Self { resolve, user }
    }
}

// SAFETY: a cache's callback is called from its prefetch threads; `smf_cache_set_load_options`
// makes the caller promise that the callback and its `user` pointer may be used from any thread.
#[allow(unsafe_code)]
unsafe impl Send for Callback {}
// SAFETY: as for `Send`: the callback is only called, never mutated, and the caller promised it
// may be called from several threads.
#[allow(unsafe_code)]
unsafe impl Sync for Callback {}

impl Resolver for Callback {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        // Names reach resolvers validated: NUL-free (the string table ends each with its NUL).
        let name = std::ffi::CString::new(name).ok()?;
        #[allow(unsafe_code)]
        // SAFETY: the caller of the load promised a callback that takes its `user` pointer and
        // a NUL-terminated name valid for the call.
        let addr = unsafe { (self.resolve)(self.user, name.as_ptr()) };
        (!addr.is_null()).then(|| Resolved { addr: addr as usize, keepalive: None })
    }

    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        out.write_str("the load's resolver callback")
    }
}

/// The options a C caller passed: flags, and the callback as a resolver.
///
/// # Safety
/// `options` is NULL or points to a valid `SmfLoadOptions`.
unsafe fn read_options(options: *const SmfLoadOptions) -> (u32, Option<Callback>) {
    if options.is_null() {
        return (0, None);
    }
    // SAFETY: non-null and valid per the caller's contract; copied out.
    let options = unsafe { *options };
    let callback = options.resolve.map(|resolve| Callback::new(resolve, options.user));
    (options.flags, callback)
}

/// Runs `load` with the link options `options` asks for.
///
/// # Safety
/// As [`read_options`].
unsafe fn with_link_options<T>(
    options: *const SmfLoadOptions,
    load: impl FnOnce(&LinkOptions<'_>) -> Result<T, FfiError>,
) -> Result<T, FfiError> {
    // SAFETY: forwarded to our caller's contract.
    let (flags, callback) = unsafe { read_options(options) };
    let flags = LoadFlags::of(flags)?;
    let link = LinkOptions {
        resolver: callback.as_ref().map(|c| c as &dyn Resolver),
        process_symbols: flags.process_symbols,
        c_library: flags.c_library,
        local: flags.local,
        debug_info: flags.debug_info,
        open_needed: flags.open_needed,
    };
    load(&link)
}

/// Defines host symbol `name` at `address` for every later load: 0 ok (also when defined again
/// with the same address), -1 on a NULL or empty name, a NULL address, or a name defined with
/// another address.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn smf_host_define(name: *const c_char, address: *const c_void) -> i32 {
    guard(-1, || {
        // SAFETY: forwarded to our caller's contract.
        let name = unsafe { c_name(name) }?;
        define_host(name, address as usize)
            .map_err(|error| FfiError::HostDefine { name: crate::kept::kept(name), error })?;
        Ok(0)
    })
}

/// Removes host symbol `name`: 0 removed, -1 not defined. Modules linked already keep the
/// address they got.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn smf_host_undefine(name: *const c_char) -> i32 {
    guard(-1, || {
        // SAFETY: forwarded to our caller's contract.
        let name = unsafe { c_name(name) }?;
        if undefine_host(name) {
            Ok(0)
        } else {
            Err(FfiError::HostUndefined(crate::kept::kept(name)))
        }
    })
}

/// Loads the module at `path` with `options` (NULL: as `smf_module_load`); NULL on error.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `options` is NULL or a valid `SmfLoadOptions`
/// whose callback, if any, may be called (at most once per distinct name) during the call.
#[no_mangle]
pub unsafe extern "C" fn smf_module_load_ex(
    path: *const c_char,
    options: *const SmfLoadOptions,
) -> *mut SmfModule {
    guard(std::ptr::null_mut(), || {
        // SAFETY: forwarded to our caller's contract.
        let path = unsafe { super::c_path(path) }?;
        // SAFETY: forwarded to our caller's contract.
        let module = unsafe {
            with_link_options(options, |link| Ok(loader::load(&LoadRequest::path(path).linked(*link))?))
        }?;
        Ok(register(module))
    })
}

/// Loads a module from `len` bytes at `bytes` with `options` (NULL: as
/// `smf_module_load_bytes`); NULL on error.
///
/// # Safety
/// `bytes` is NULL or readable for `len` bytes; `options` as for `smf_module_load_ex`.
#[no_mangle]
pub unsafe extern "C" fn smf_module_load_bytes_ex(
    bytes: *const u8,
    len: usize,
    options: *const SmfLoadOptions,
) -> *mut SmfModule {
    guard(std::ptr::null_mut(), || {
        if bytes.is_null() {
            return Err(ArgError::Null("bytes").into());
        }
        // SAFETY: the caller passes `len` readable bytes; they are only read during the load.
        let data = unsafe { std::slice::from_raw_parts(bytes, len) };
        // SAFETY: forwarded to our caller's contract.
        let module = unsafe {
            with_link_options(options, |link| Ok(loader::load(&LoadRequest::bytes(data).linked(*link))?))
        }?;
        Ok(register(module))
    })
}
