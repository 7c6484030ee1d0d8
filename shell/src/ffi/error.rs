//! `smf_last_error`: the last failure's message, per thread. Success never clears it.

use std::cell::RefCell;
use std::ffi::{c_char, CString};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `message` as this thread's last error (interior NULs become spaces).
pub fn set_error(message: &str) {
    let clean = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = clean);
}

/// This thread's last error message ("" when none was recorded).
pub fn last_error() -> String {
    LAST_ERROR.with(|e| e.borrow().to_string_lossy().into_owned())
}

/// Forgets this thread's last error.
pub fn clear_error() {
    LAST_ERROR.with(|e| *e.borrow_mut() = CString::default());
}

/// Forgets the calling thread's last error (an extension to the spec's ABI).
#[no_mangle]
pub extern "C" fn smf_clear_error() {
    clear_error();
}

/// The last error recorded on the calling thread, or "" if none. The pointer stays valid until
/// the next failing call on the same thread.
#[no_mangle]
pub extern "C" fn smf_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}
