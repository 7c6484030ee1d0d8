//! Strings from C, borrowed (no copy): one reader of a NUL-terminated argument, and the three
//! views the C ABI takes of it (bytes, UTF-8 text, a non-empty path), each refusing NULL with a
//! message naming the argument.

use std::ffi::{c_char, CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A C string argument's bytes (without its NUL); `what` names it in the error.
///
/// # Safety
/// `s` is NULL or points to a NUL-terminated string valid for `'a`.
unsafe fn c_bytes<'a>(s: *const c_char, what: &str) -> Result<&'a [u8], String> {
    if s.is_null() {
        return Err(format!("{what} is NULL"));
    }
    // SAFETY: non-null and NUL-terminated per the caller's contract.
    Ok(unsafe { CStr::from_ptr(s) }.to_bytes())
}

/// A name argument as bytes.
///
/// # Safety
/// As [`c_bytes`].
pub(crate) unsafe fn c_name<'a>(s: *const c_char) -> Result<&'a [u8], String> {
    // SAFETY: forwarded to our caller's contract.
    unsafe { c_bytes(s, "name") }
}

/// A string argument as UTF-8; `what` names it in the error.
///
/// # Safety
/// As [`c_bytes`].
pub(crate) unsafe fn c_str<'a>(s: *const c_char, what: &str) -> Result<&'a str, String> {
    // SAFETY: forwarded to our caller's contract.
    let bytes = unsafe { c_bytes(s, what) }?;
    std::str::from_utf8(bytes).map_err(|_| format!("{what} is not UTF-8"))
}

/// A path argument (not empty).
///
/// # Safety
/// As [`c_bytes`].
#[cfg_attr(not(feature = "rt"), allow(dead_code))]
pub(crate) unsafe fn c_path<'a>(s: *const c_char) -> Result<&'a Path, String> {
    // SAFETY: forwarded to our caller's contract.
    let bytes = unsafe { c_bytes(s, "path") }?;
    if bytes.is_empty() {
        return Err("path is empty".into());
    }
    Ok(Path::new(OsStr::from_bytes(bytes)))
}
