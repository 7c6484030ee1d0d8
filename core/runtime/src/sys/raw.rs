//! The one raw system call of the crate, for what rustix offers no call for (`fcntl`'s lease
//! commands) or offers only over references (`write` from memory Rust may not read): three
//! integer arguments, x86-64 and aarch64 (elsewhere every call fails with `ENOSYS`), the
//! kernel's `-errno` turned into rustix's [`Errno`].

use rustix::io::Errno;

/// System call numbers where this crate runs.
#[cfg(target_arch = "x86_64")]
pub(crate) mod number {
    /// `write(2)`.
    pub(crate) const WRITE: usize = 1;
    /// `fcntl(2)`.
    pub(crate) const FCNTL: usize = 72;
}

/// System call numbers where this crate runs.
#[cfg(target_arch = "aarch64")]
pub(crate) mod number {
    /// `write(2)`.
    pub(crate) const WRITE: usize = 64;
    /// `fcntl(2)`.
    pub(crate) const FCNTL: usize = 25;
}

/// System call numbers where this crate runs (none here: every call is `ENOSYS`).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) mod number {
    /// `write(2)`.
    pub(crate) const WRITE: usize = usize::MAX;
    /// `fcntl(2)`.
    pub(crate) const FCNTL: usize = usize::MAX;
}

/// System call `number` with arguments `a`, `b`, `c`: its result, or the error it returned.
///
/// # Safety
/// The call, with these arguments, is one the caller may make: memory it reads or writes
/// through an argument is the caller's to give for that.
#[allow(unsafe_code)]
pub(crate) unsafe fn syscall3(number: usize, a: usize, b: usize, c: usize) -> Result<usize, Errno> {
    let ret: isize;
    // SAFETY: the call is the caller's to make (above); the registers the kernel clobbers are
    // declared, and memory is not declared untouched (the compiler assumes the call may read
    // and write any).
    #[cfg(target_arch = "x86_64")]
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") number as isize => ret,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    // SAFETY: as above.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        core::arch::asm!(
            "svc 0",
            in("x8") number,
            inlateout("x0") a as isize => ret,
            in("x1") b,
            in("x2") c,
            options(nostack),
        );
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = (number, a, b, c);
        ret = -(Errno::NOSYS.raw_os_error() as isize);
    }
    // The kernel returns -errno in -4095..=-1, else the result.
    match usize::try_from(ret) {
        Ok(n) => Ok(n),
        Err(_) => Err(Errno::from_raw_os_error(i32::try_from(-ret).unwrap_or(i32::MAX))),
    }
}
