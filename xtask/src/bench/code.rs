//! Machine code the benchmarks install, and the baseline they install it against: one
//! anonymous page per function, written, then made executable (`mmap` + `write` + `mprotect`,
//! the Simple runtime's original approach).

// Running the installed functions needs `transmute` of their addresses; the baseline maps and
// protects memory itself.
#![allow(unsafe_code)]

use smf_runtime::sys::{self, Protection};

/// An `N`-byte function returning `value` (x86-64 `mov eax, imm32; ret`, or aarch64
/// `movz x0, #imm16; ret`), padded with traps.
pub(crate) fn returning<const N: usize>(value: u16) -> [u8; N] {
    let mut code = [0u8; N];
    if cfg!(target_arch = "aarch64") {
        code.chunks_exact_mut(4).for_each(|c| c.copy_from_slice(&0xD420_0000u32.to_le_bytes())); // brk #0
        code[..4].copy_from_slice(&(0xD280_0000u32 | (u32::from(value) << 5)).to_le_bytes());
        code[4..8].copy_from_slice(&0xD65F_03C0u32.to_le_bytes());
    } else {
        code.fill(0xCC); // int3
        code[0] = 0xB8;
        code[1..5].copy_from_slice(&u32::from(value).to_le_bytes());
        code[5] = 0xC3;
    }
    code
}

/// Calls the function at `addr` and checks it returns `expected`.
pub(crate) fn check(addr: usize, expected: u16) -> Result<(), String> {
    // SAFETY: callers pass the address of sealed code of a `returning(expected)`.
    let f = unsafe { smf_runtime::exec::function_pointer::<extern "C" fn() -> i64>(addr) }
        .ok_or_else(|| format!("function {expected} has no address"))?;
    match f() {
        got if got == i64::from(expected) => Ok(()),
        got => Err(format!("function {expected} returned {got}")),
    }
}

/// The baseline: `code` on an anonymous page of its own, written, then made read-execute.
pub(crate) fn map_write_protect(code: &[u8], page: usize) -> Result<usize, String> {
    let p = sys::map_anonymous(page, Protection::ReadWrite).map_err(|e| e.to_string())?;
    // SAFETY: `p` is a fresh writable page of ours; callers' code is shorter than a page.
    unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), p, code.len().min(page)) };
    // SAFETY: the page is ours and nothing references it.
    unsafe { sys::protect(p, page, Protection::ReadExec) }.map_err(|e| e.to_string())?;
    Ok(p as usize)
}

/// Unmaps baseline pages.
pub(crate) fn unmap_pages(pages: Vec<usize>, page: usize) -> Result<(), String> {
    for p in pages {
        // SAFETY: mapped by `map_write_protect`; its code is no longer used.
        unsafe { sys::unmap(p as *mut u8, page) }.map_err(|e| e.to_string())?;
    }
    Ok(())
}
