//! Instruction-cache synchronization after writing code.
//!
//! x86-64 keeps instruction fetch coherent with data writes: nothing to do. aarch64 does not:
//! the written range is cleaned from the data cache to the point of unification and invalidated
//! in the instruction cache (`dc cvau`, `ic ivau`, with barriers), then every other thread is
//! made to serialize its instruction stream (`membarrier` SYNC_CORE, through
//! [`super::Kernel::sync_other_threads`]) before running new code.

#![allow(unsafe_code)]

/// Makes the instruction cache coherent with the bytes in `addr..addr+len`.
///
/// # Safety
/// The range is mapped readable by the caller.
pub(crate) unsafe fn sync(addr: usize, len: usize) {
    // SAFETY: forwarded to the caller's contract.
    unsafe { sync_alias(addr, addr, len) }
}

/// Makes the instruction cache coherent for `len` bytes written through `written` and run at
/// `run` (the same memory mapped twice, or the same address): the data cache is cleaned by the
/// address written, the instruction cache invalidated by the address run.
///
/// # Safety
/// Both ranges are mapped readable by the caller.
#[cfg(target_arch = "aarch64")]
pub(crate) unsafe fn sync_alias(written: usize, run: usize, len: usize) {
    use core::arch::asm;
    if len == 0 {
        return;
    }
    let ctr: u64;
    // SAFETY: CTR_EL0 is readable from EL0 on Linux (the kernel enables or emulates it).
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    let dline = 4usize << ((ctr >> 16) & 0xf);
    let iline = 4usize << (ctr & 0xf);
    let end = written + len;
    let mut line = written & !(dline - 1);
    while line < end {
        // SAFETY: cache maintenance by address on memory the caller mapped readable.
        unsafe { asm!("dc cvau, {}", in(reg) line, options(nostack, preserves_flags)) };
        line += dline;
    }
    // SAFETY: barriers have no memory-safety preconditions.
    unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
    let end = run + len;
    let mut line = run & !(iline - 1);
    while line < end {
        // SAFETY: as above.
        unsafe { asm!("ic ivau, {}", in(reg) line, options(nostack, preserves_flags)) };
        line += iline;
    }
    // SAFETY: barriers have no memory-safety preconditions.
    unsafe { asm!("dsb ish", "isb", options(nostack, preserves_flags)) };
}

/// As on aarch64; nothing to do on this architecture, whose instruction fetch is coherent with
/// data writes (through any mapping).
///
/// # Safety
/// Both ranges are mapped readable by the caller.
#[cfg(not(target_arch = "aarch64"))]
pub(crate) unsafe fn sync_alias(_written: usize, _run: usize, _len: usize) {}
