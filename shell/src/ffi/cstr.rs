//! Strings from C, borrowed (no copy): one reader of a NUL-terminated argument, and the three
//! views the C ABI takes of it (bytes, UTF-8 text, a non-empty path), each refusing NULL with an
//! [`ArgError`] naming the argument.

use std::ffi::{c_char, CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::failure::ArgError;

/// A C string argument's bytes (without its NUL); `what` names it in the error.
///
/// # Safety
/// `s` is NULL or points to a NUL-terminated string valid for `'a`.
unsafe fn c_bytes<'a>(s: *const c_char, what: &'static str) -> Result<&'a [u8], ArgError> {
    if s.is_null() {
        return Err(ArgError::Null(what));
    }
    // SAFETY: non-null and NUL-terminated per the caller's contract.
    Ok(unsafe { CStr::from_ptr(s) }.to_bytes())
}

/// A name argument as bytes.
///
/// # Safety
/// As [`c_bytes`].
pub(crate) unsafe fn c_name<'a>(s: *const c_char) -> Result<&'a [u8], ArgError> {
    // SAFETY: forwarded to our caller's contract.
    unsafe { c_bytes(s, "name") }
}

/// A string argument as UTF-8; `what` names it in the error.
///
/// # Safety
/// As [`c_bytes`].
pub(crate) unsafe fn c_str<'a>(s: *const c_char, what: &'static str) -> Result<&'a str, ArgError> {
    // SAFETY: forwarded to our caller's contract.
    let bytes = unsafe { c_bytes(s, what) }?;
    std::str::from_utf8(bytes).map_err(|_| ArgError::NotUtf8(what))
}

/// A path argument (not empty).
///
/// # Safety
/// As [`c_bytes`].
#[cfg_attr(not(feature = "rt"), allow(dead_code))]
pub(crate) unsafe fn c_path<'a>(s: *const c_char) -> Result<&'a Path, ArgError> {
    // SAFETY: forwarded to our caller's contract.
    let bytes = unsafe { c_bytes(s, "path") }?;
    if bytes.is_empty() {
        return Err(ArgError::EmptyPath);
    }
    Ok(Path::new(OsStr::from_bytes(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_empty_and_invalid_arguments_are_typed_errors_naming_the_argument() {
        // SAFETY: NULL, or NUL-terminated literals.
        unsafe {
            assert_eq!(c_name(std::ptr::null()), Err(ArgError::Null("name")));
            assert_eq!(c_str(std::ptr::null(), "base name"), Err(ArgError::Null("base name")));
            assert_eq!(c_str(c"\xff".as_ptr(), "base name"), Err(ArgError::NotUtf8("base name")));
            assert_eq!(c_path(c"".as_ptr()), Err(ArgError::EmptyPath));
            assert_eq!(c_path(std::ptr::null()), Err(ArgError::Null("path")));
            assert_eq!(c_path(c"a.smf".as_ptr()), Ok(Path::new("a.smf")));
        }
    }
}
