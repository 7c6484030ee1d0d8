//! The memory functions the compiler's generated code calls (`memcpy`, `memmove`, `memset`,
//! `memcmp`, `bcmp`, and `strlen`, which `CStr::from_ptr` calls), which a program without libc must define itself. `no_builtins` keeps the
//! compiler from recognizing these loops and turning them back into calls to themselves.

#![no_std]
#![no_builtins]
#![allow(unsafe_code)]

/// Copies `n` bytes from `src` to `dst` (non-overlapping).
///
/// # Safety
/// The C contract: both ranges are valid for `n` bytes and do not overlap.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    let mut i = 0;
    while i < n {
        // SAFETY: inside both ranges per the contract.
        unsafe { *dst.add(i) = *src.add(i) };
        i += 1;
    }
    dst
}

/// Copies `n` bytes from `src` to `dst`; the ranges may overlap.
///
/// # Safety
/// The C contract: both ranges are valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) {
        // SAFETY: forwards, each byte read before it can be overwritten.
        unsafe { memcpy(dst, src, n) }
    } else {
        let mut i = n;
        while i > 0 {
            i -= 1;
            // SAFETY: inside both ranges; backwards, so overlapping bytes are read first.
            unsafe { *dst.add(i) = *src.add(i) };
        }
        dst
    }
}

/// Sets `n` bytes at `dst` to `value`.
///
/// # Safety
/// The C contract: the range is valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, value: i32, n: usize) -> *mut u8 {
    // C converts the value to unsigned char: its low byte.
    let byte = value.to_le_bytes()[0];
    let mut i = 0;
    while i < n {
        // SAFETY: inside the range per the contract.
        unsafe { *dst.add(i) = byte };
        i += 1;
    }
    dst
}

/// Compares `n` bytes: negative, zero or positive as `a` sorts before, equal to or after `b`.
///
/// # Safety
/// The C contract: both ranges are valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: inside both ranges per the contract.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// Whether `n` bytes differ (zero if equal).
///
/// # Safety
/// As `memcmp`.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: forwarded.
    unsafe { memcmp(a, b, n) }
}

/// The length of the NUL-terminated string at `s`.
///
/// # Safety
/// The C contract: `s` points to a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: up to and including the terminator, per the contract.
    while unsafe { *s.add(n) } != 0 {
        n += 1;
    }
    n
}
