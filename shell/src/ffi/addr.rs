//! `smf_addr_info`: what an address is in, as `dladdr` says it of shared libraries: the loaded
//! module whose code holds it, and the function (exported or not) and the offset in it.

use std::ffi::c_char;
use std::ffi::c_void;

use super::{guard, ArgError};
use crate::loader;

/// What `smf_addr_info` says of an address (`SmfAddrInfo`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SmfAddrInfo {
    /// The module's file, or NULL for a module loaded from bytes.
    pub module_path: *const c_char,
    /// Where the module's code starts.
    pub module_code: *const c_void,
    /// The function the address is in, or NULL when no function symbol covers it.
    pub symbol_name: *const c_char,
    /// Where that function starts (NULL without one).
    pub symbol_address: *const c_void,
    /// The address's distance from `symbol_address` (from `module_code` without a function).
    pub offset: usize,
}

/// Fills `info` with what `addr` is in: 1 when it lies in the code of a loaded module, 0 when
/// it does not (not an error: nothing is recorded), -1 on a NULL `info`. The strings stay valid
/// while the module stays loaded.
///
/// # Safety
/// `info` is NULL or writable for an `SmfAddrInfo`.
#[no_mangle]
pub unsafe extern "C" fn smf_addr_info(addr: *const c_void, info: *mut SmfAddrInfo) -> i32 {
    guard(-1, || {
        if info.is_null() {
            return Err(ArgError::Null("info").into());
        }
        let Some(module) = loader::code_containing(addr as usize) else { return Ok(0) };
        let (code, _) = module.loaded().code();
        let module_path = module.path_c().map_or(std::ptr::null(), |p| p.as_ptr());
        let found = match module.function_at_with_nul(addr as usize) {
            Some((name, offset)) => SmfAddrInfo {
                module_path,
                module_code: code as *const c_void,
                symbol_name: name.as_ptr().cast(),
                symbol_address: (addr as usize - offset) as *const c_void,
                offset,
            },
            None => SmfAddrInfo {
                module_path,
                module_code: code as *const c_void,
                symbol_name: std::ptr::null(),
                symbol_address: std::ptr::null(),
                offset: addr as usize - code,
            },
        };
        // SAFETY: non-null and writable per the caller's contract.
        unsafe { info.write(found) };
        Ok(1)
    })
}
