//! The `rt_*` memory kit: the syscalls only the shell's `rt_*` C exports (the Simple runtime's
//! SFFI memory API) make, never the loader: file mappings (`mmap(2)` of a file, `msync(2)`),
//! `mlock(2)`, usage advice (`madvise(2)`), and [`CheckedCopier`], the fault-tolerant copy out
//! of a mapping whose file may have shrunk. The loader never makes these calls, so they live
//! beside the exports that do; the raw `write(2)` the copy needs is the runtime's
//! ([`smf_runtime::sys::write_unchecked`]), argued once there.

use core::ptr;

use rustix::fd::BorrowedFd;
use rustix::mm::{self, MapFlags};

use smf_runtime::sys::{Protection, SysError, SysResult};

mod checked_copy;

pub(crate) use checked_copy::CheckedCopier;

/// The [`SysError`] of operation `op` from rustix's error.
fn err(op: &'static str) -> impl Fn(rustix::io::Errno) -> SysError {
    move |e| SysError { op, errno: e.raw_os_error() }
}

/// Maps `len` bytes of the open file `fd` from `offset` (`mmap(2)`), shared or private.
///
/// # Safety
/// `fd` is an open file descriptor for the duration of the call.
pub(crate) unsafe fn map_file(
    fd: i32,
    offset: u64,
    len: usize,
    prot: Protection,
    shared: bool,
) -> SysResult<*mut u8> {
    let flags = if shared { MapFlags::SHARED } else { MapFlags::PRIVATE };
    // SAFETY: the caller keeps `fd` open for the call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    // SAFETY: a fresh mapping at an address the kernel chooses aliases nothing of ours.
    let p = unsafe {
        mm::mmap(ptr::null_mut(), len, mm::ProtFlags::from_bits_truncate(prot.prot_bits()), flags, fd, offset)
    };
    p.map(|p| p.cast()).map_err(err("mmap"))
}

/// Flushes a shared file mapping (`msync(2)`).
///
/// # Safety
/// The range is a mapping of the caller's.
pub(crate) unsafe fn sync_file(addr: *mut u8, len: usize, asynchronous: bool) -> SysResult<()> {
    let flags = if asynchronous { mm::MsyncFlags::ASYNC } else { mm::MsyncFlags::SYNC };
    // SAFETY: forwarded to the caller's contract.
    unsafe { mm::msync(addr.cast(), len, flags) }.map_err(err("msync"))
}

/// Locks pages in memory (`mlock(2)`) or unlocks them (`munlock(2)`).
///
/// # Safety
/// The range is a mapping of the caller's.
pub(crate) unsafe fn lock_in_memory(addr: *mut u8, len: usize, locked: bool) -> SysResult<()> {
    // SAFETY: forwarded to the caller's contract.
    unsafe {
        if locked {
            mm::mlock(addr.cast(), len).map_err(err("mlock"))
        } else {
            mm::munlock(addr.cast(), len).map_err(err("munlock"))
        }
    }
}

/// Usage advice for [`advise`] (the SFFI's five).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Advice {
    /// `MADV_NORMAL`
    Normal,
    /// `MADV_RANDOM`
    Random,
    /// `MADV_SEQUENTIAL`
    Sequential,
    /// `MADV_WILLNEED`
    WillNeed,
    /// `MADV_DONTNEED`: private pages read back as zeros or the file's contents.
    DontNeed,
}

/// Gives the kernel usage advice (`madvise(2)`).
///
/// # Safety
/// The range is a mapping of the caller's; with [`Advice::DontNeed`] nothing may rely on its
/// private contents.
pub(crate) unsafe fn advise(addr: *mut u8, len: usize, advice: Advice) -> SysResult<()> {
    let advice = match advice {
        Advice::Normal => mm::Advice::Normal,
        Advice::Random => mm::Advice::Random,
        Advice::Sequential => mm::Advice::Sequential,
        Advice::WillNeed => mm::Advice::WillNeed,
        Advice::DontNeed => mm::Advice::LinuxDontNeed,
    };
    // SAFETY: forwarded to the caller's contract.
    unsafe { mm::madvise(addr.cast(), len, advice) }.map_err(err("madvise"))
}
