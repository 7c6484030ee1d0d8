//! Writing to standard error without libc (`write(2)` on descriptor 2).

#![allow(unsafe_code)]

use core::fmt;

/// Standard error, unbuffered.
pub struct Stderr;

impl fmt::Write for Stderr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // SAFETY: descriptor 2 is the process's standard error for its whole life (this
        // program never closes it); writing to a closed one fails harmlessly with EBADF.
        let fd = unsafe { rustix::fd::BorrowedFd::borrow_raw(2) };
        let mut rest = s.as_bytes();
        while !rest.is_empty() {
            match rustix::io::write(fd, rest) {
                Ok(0) => return Err(fmt::Error),
                Ok(n) => rest = &rest[n..],
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return Err(fmt::Error),
            }
        }
        Ok(())
    }
}

/// Bytes shown as ASCII, anything else as `?`.
pub struct Ascii<'a>(pub &'a [u8]);

impl fmt::Display for Ascii<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|&b| {
            fmt::Write::write_char(f, if b.is_ascii() && !b.is_ascii_control() { b as char } else { '?' })
        })
    }
}
