//! `smf_last_error`: the last failure's message, per thread. Success never clears it.
//!
//! Each thread's message lives in a fixed buffer of its own, so the pointer `smf_last_error()`
//! returns stays valid for the thread's whole life: a later failure replaces the text in place
//! (as C programmers expect of `dlerror`), and the idiom
//! `printf("%d %s", f(h), smf_last_error())` never reads freed memory, whichever argument C
//! evaluates first. Messages longer than the buffer are cut at a character boundary and end
//! with "...".

use std::cell::UnsafeCell;
use std::ffi::c_char;

/// Bytes a message can take, its terminating NUL included.
pub const MESSAGE_CAPACITY: usize = 1024;

thread_local! {
    static LAST_ERROR: UnsafeCell<[u8; MESSAGE_CAPACITY]> = const { UnsafeCell::new([0; MESSAGE_CAPACITY]) };
}

/// `message` as stored: interior NULs become spaces, and a message too long for the buffer is
/// cut at a character boundary and ends with "...".
fn stored(message: &str) -> Vec<u8> {
    let room = MESSAGE_CAPACITY - 1;
    let mut text = message.replace('\0', " ");
    if text.len() > room {
        let mut cut = room - 3;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text.into_bytes()
}

/// Records `message` as this thread's last error.
pub fn set_error(message: &str) {
    let bytes = stored(message);
    LAST_ERROR.with(|cell| {
        // SAFETY: the buffer belongs to this thread alone and no Rust reference to it lives
        // outside these short accesses (C holds only a raw pointer, and reads it on this
        // thread, never during this write).
        let buffer = unsafe { &mut *cell.get() };
        buffer[..bytes.len()].copy_from_slice(&bytes);
        buffer[bytes.len()] = 0;
    });
}

/// This thread's last error message ("" when none was recorded).
pub fn last_error() -> String {
    LAST_ERROR.with(|cell| {
        // SAFETY: as in `set_error`; this is a read on the owning thread.
        let buffer = unsafe { &*cell.get() };
        let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
        String::from_utf8_lossy(&buffer[..end]).into_owned()
    })
}

/// Forgets this thread's last error.
pub fn clear_error() {
    set_error("");
}

/// Forgets the calling thread's last error (an extension to the spec's ABI).
#[no_mangle]
pub extern "C" fn smf_clear_error() {
    clear_error();
}

/// The last error recorded on the calling thread, or "" if none. The pointer stays valid for
/// the thread's life; the next failure on the thread replaces the text it points to.
#[no_mangle]
pub extern "C" fn smf_last_error() -> *const c_char {
    LAST_ERROR.with(|cell| cell.get().cast::<c_char>().cast_const())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pointer_outlives_later_failures_and_long_messages_are_cut() {
        set_error("first");
        let p = smf_last_error();
        set_error(&"é".repeat(2000));
        assert_eq!(p, smf_last_error(), "one buffer per thread");
        let text = last_error();
        assert!(text.len() < MESSAGE_CAPACITY && text.ends_with("...") && text.starts_with("éé"));
        set_error("a\0b");
        assert_eq!(last_error(), "a b");
        clear_error();
        assert_eq!(last_error(), "");
    }
}
