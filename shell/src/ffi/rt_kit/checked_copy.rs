//! [`CheckedCopier`]: copying memory that may fault (a file mapping whose file shrank) through
//! the kernel, which reports `EFAULT` where a plain read would raise `SIGBUS`. The source is
//! handed to `write(2)` as a raw pointer: no Rust reference is ever made to it.

use smf_runtime::sys::{write_unchecked, SysError, SysResult};

use super::err;

/// Copies memory through the kernel (a non-blocking pipe: `write(2)` then `read(2)`), so that a
/// source page that cannot be read (unmapped, or beyond the end of a file that shrank under a
/// file mapping) fails with `EFAULT` instead of killing the process with `SIGBUS`/`SIGSEGV`.
#[derive(Debug)]
pub(crate) struct CheckedCopier {
    read: rustix::fd::OwnedFd,
    write: rustix::fd::OwnedFd,
}

impl CheckedCopier {
    /// A copier with a pipe of its own (`pipe2(2)`, close-on-exec, non-blocking).
    pub(crate) fn new() -> SysResult<Self> {
        use rustix::pipe::{pipe_with, PipeFlags};
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).map_err(err("pipe2"))?;
        Ok(Self { read, write })
    }

    /// Copies `src` into `dst` (of the same length); a page of `src` that cannot be read fails
    /// the copy with `EFAULT` (`dst` then holds the bytes before it).
    ///
    /// # Safety
    /// `src` is `dst.len()` bytes of address space the caller may name (a mapping of its own);
    /// Rust code never reads it here, only the kernel does.
    pub(crate) unsafe fn copy(&self, src: *const u8, dst: &mut [u8]) -> SysResult<()> {
        use rustix::fd::AsFd;
        let mut done = 0;
        while done < dst.len() {
            let written = loop {
                // SAFETY: `src + done .. src + dst.len()` is address space the caller may name
                // (our contract); only the kernel reads it, and no reference to it is made.
                match unsafe { write_unchecked(self.write.as_fd(), src.wrapping_add(done), dst.len() - done) }
                {
                    Err(e) if e.errno == rustix::io::Errno::INTR.raw_os_error() => {}
                    other => break other?,
                }
            };
            let mut read = 0;
            while read < written {
                match rustix::io::read(&self.read, &mut dst[done + read..done + written]) {
                    Ok(0) => {
                        return Err(SysError { op: "read", errno: rustix::io::Errno::IO.raw_os_error() })
                    }
                    Ok(n) => read += n,
                    Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(err("read")(e)),
                }
            }
            done += written;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smf_runtime::sys::{page_size, reserve, unmap, Protection};

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot make the pipe, write and mmap syscalls")]
    fn a_checked_copy_copies_readable_bytes_and_refuses_a_page_it_cannot_read() {
        let copier = CheckedCopier::new().unwrap();
        let src: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        let mut dst = vec![0u8; src.len()];
        // SAFETY: `src` is readable for its length.
        unsafe { copier.copy(src.as_ptr(), &mut dst) }.unwrap();
        assert_eq!(dst, src, "more than a pipe's capacity, copied whole");
        let page = page_size();
        let hole = reserve(page, Protection::None).unwrap();
        let mut small = [0u8; 16];
        // SAFETY: a reservation of ours, never read by Rust code.
        let refused = unsafe { copier.copy(hole, &mut small) }.unwrap_err();
        assert_eq!((refused.op, refused.errno), ("write", rustix::io::Errno::FAULT.raw_os_error()));
        // SAFETY: reserved above, unused.
        unsafe { unmap(hole, page) }.unwrap();
    }
}
