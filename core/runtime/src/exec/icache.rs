//! Instruction-cache synchronization after writing code.
//!
//! x86-64 keeps instruction fetch coherent with data writes: nothing to do. aarch64 does not:
//! the written range is cleaned from the data cache to the point of unification and invalidated
//! in the instruction cache (`dc cvau`, `ic ivau`, with barriers), then every other thread is
//! made to serialize its instruction stream (`membarrier` SYNC_CORE, through
//! [`super::Kernel::sync_other_threads`]) before running new code.

#![allow(unsafe_code)]

/// Makes the instruction cache coherent with the bytes in `addr..addr+len` (written through
/// this address, or into the file it maps): the data cache is cleaned to the point of
/// unification and the instruction cache invalidated, by this address (the data cache is
/// physically tagged, so the clean reaches bytes the kernel wrote through its own mapping).
///
/// # Safety
/// The range is mapped readable by the caller.
#[cfg(target_arch = "aarch64")]
pub(crate) unsafe fn sync(addr: usize, len: usize) {
    use core::arch::asm;
    if len == 0 {
        return;
    }
    let ctr: u64;
    // SAFETY: CTR_EL0 is readable from EL0 on Linux (the kernel enables or emulates it).
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    let dline = 4usize << ((ctr >> 16) & 0xf);
    let iline = 4usize << (ctr & 0xf);
    let end = addr + len;
    let mut line = addr & !(dline - 1);
    while line < end {
        // SAFETY: cache maintenance by address on memory the caller mapped readable.
        unsafe { asm!("dc cvau, {}", in(reg) line, options(nostack, preserves_flags)) };
        line += dline;
    }
    // SAFETY: barriers have no memory-safety preconditions.
    unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
    let mut line = addr & !(iline - 1);
    while line < end {
        // SAFETY: as above.
        unsafe { asm!("ic ivau, {}", in(reg) line, options(nostack, preserves_flags)) };
        line += iline;
    }
    // SAFETY: barriers have no memory-safety preconditions.
    unsafe { asm!("dsb ish", "isb", options(nostack, preserves_flags)) };
}

/// As on aarch64; nothing to do on this architecture, whose instruction fetch is coherent with
/// data writes (through any mapping, and the kernel's).
///
/// # Safety
/// The range is mapped readable by the caller.
#[cfg(not(target_arch = "aarch64"))]
pub(crate) unsafe fn sync(_addr: usize, _len: usize) {}
