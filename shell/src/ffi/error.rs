//! `smf_last_error`: the last failure's message, per thread. Success never clears it;
//! `smf_take_error` reads and clears it, as `dlerror` does.
//!
//! C++ names a message quotes are demangled where the process has a C++ runtime
//! (`demangle.rs`).
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
    /// The message `smf_take_error` last handed out (valid until its next call on the thread).
    static TAKEN_ERROR: UnsafeCell<[u8; MESSAGE_CAPACITY]> = const { UnsafeCell::new([0; MESSAGE_CAPACITY]) };
}

/// Writes a message into a thread's buffer as stored: interior NULs become spaces, and a
/// message too long for the buffer is cut at a character boundary and ends with "...". Nothing
/// is allocated, whatever the message's length.
struct Bounded<'b> {
    buffer: &'b mut [u8; MESSAGE_CAPACITY],
    len: usize,
    /// The length to cut back to if the message does not fit: the last character boundary
    /// that leaves room for "..." and the NUL.
    cut: usize,
    overflowed: bool,
}

impl std::fmt::Write for Bounded<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = MESSAGE_CAPACITY - 1;
        for c in s.chars() {
            if self.overflowed {
                return Ok(());
            }
            let c = if c == '\0' { ' ' } else { c };
            let n = c.len_utf8();
            if self.len + n > room {
                self.overflowed = true;
                return Ok(());
            }
            c.encode_utf8(&mut self.buffer[self.len..self.len + n]);
            self.len += n;
            if self.len <= room - 3 {
                self.cut = self.len;
            }
        }
        Ok(())
    }
}

/// Records the message `args` formats as this thread's last error (without allocating, but
/// for the C++ runtime's demangling of the C++ names it quotes).
pub fn set_error_fmt(args: std::fmt::Arguments<'_>) {
    LAST_ERROR.with(|cell| {
        // SAFETY: the buffer belongs to this thread alone and no Rust reference to it lives
        // outside these short accesses (C holds only a raw pointer, and reads it on this
        // thread, never during this write).
        let buffer = unsafe { &mut *cell.get() };
        let mut out = Bounded { buffer, len: 0, cut: 0, overflowed: false };
        let mut demangling = super::demangle::Demangling::new(&mut out);
        let _ = std::fmt::write(&mut demangling, args);
        let _ = demangling.finish();
        let end = if out.overflowed {
            out.buffer[out.cut..out.cut + 3].copy_from_slice(b"...");
            out.cut + 3
        } else {
            out.len
        };
        out.buffer[end] = 0;
    });
}

/// Records `message` as this thread's last error.
pub fn set_error(message: &str) {
    set_error_fmt(format_args!("{message}"));
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

/// The last error recorded on the calling thread, which is then forgotten; NULL if none was
/// recorded since the last call (or `smf_clear_error`), as `dlerror` does. The text stays
/// valid until the thread's next call of `smf_take_error` (a buffer of its own, which later
/// failures do not touch).
#[no_mangle]
pub extern "C" fn smf_take_error() -> *const c_char {
    let taken = LAST_ERROR.with(|last| {
        TAKEN_ERROR.with(|taken| {
            // SAFETY: both buffers belong to this thread alone; no Rust reference to either
            // outlives this call (C holds raw pointers and reads them on this thread, never
            // during it).
            let (last, taken) = unsafe { (&mut *last.get(), &mut *taken.get()) };
            if last[0] == 0 {
                return None;
            }
            *taken = *last;
            last[0] = 0;
            Some(taken.as_ptr())
        })
    });
    taken.map_or(std::ptr::null(), |p| p.cast::<c_char>())
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
    fn taking_the_error_reads_and_clears_it_and_the_text_outlives_later_failures() {
        use std::ffi::CStr;
        clear_error();
        assert!(smf_take_error().is_null(), "nothing recorded");
        set_error("first failure");
        let taken = smf_take_error();
        // SAFETY: a non-null pointer from smf_take_error points at a NUL-terminated message.
        let text = || unsafe { CStr::from_ptr(taken) }.to_str().unwrap().to_owned();
        assert_eq!(text(), "first failure");
        assert_eq!(last_error(), "", "taken means forgotten");
        assert!(smf_take_error().is_null(), "and taken once");
        set_error("second failure");
        assert_eq!(text(), "first failure", "a later failure does not touch the taken text");
        assert_eq!(last_error(), "second failure");
    }

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
