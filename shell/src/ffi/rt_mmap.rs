//! `rt_*` file mappings (the SFFI `mmap.spl` spec): map a file, read bytes and strings out of
//! it, sync, lock, advise, unmap. Every address must lie inside a mapping or allocation made by
//! this library; anything else fails before memory is touched.

use std::ffi::c_char;
use std::os::fd::AsRawFd;

use smf_core::sys::{self, Advice, Protection};

use super::rt_owned::{self, FileMap, Owner, PROT_EXEC, PROT_READ, PROT_WRITE};
use super::{c_path, guard, non_negative};

/// MAP_SHARED as the spec numbers it.
const MAP_SHARED: i32 = 1;
/// MAP_PRIVATE.
const MAP_PRIVATE: i32 = 2;

/// The spec's `(address, size)` pair.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtMapping {
    /// Start of the mapping, 0 on error.
    pub address: i64,
    /// Bytes mapped, 0 on error.
    pub size: i64,
}

/// The page-aligned span `start..start+len` rounded out to whole pages.
fn page_span(start: usize, len: usize) -> (usize, usize) {
    let page = sys::page_size();
    let first = start & !(page - 1);
    let end = (start + len.max(1)).div_ceil(page) * page;
    (first, end - first)
}

pub(crate) fn protection_from_bits(prot: i32) -> Result<Protection, String> {
    match prot {
        0 => Ok(Protection::None),
        PROT_READ => Ok(Protection::Read),
        p if p == PROT_READ | PROT_WRITE => Ok(Protection::ReadWrite),
        p if p == PROT_READ | PROT_EXEC => Ok(Protection::ReadExec),
        p if p & PROT_WRITE != 0 && p & PROT_EXEC != 0 => {
            Err("PROT_WRITE|PROT_EXEC together is refused (W^X)".into())
        }
        other => Err(format!("protection {other} is not supported (use 0, READ, READ|WRITE or READ|EXEC)")),
    }
}

fn map_file(
    path: *const c_char,
    prot: i32,
    flags: i32,
    offset: i64,
    length: i64,
) -> Result<RtMapping, String> {
    // SAFETY: the C caller passes a NUL-terminated path or NULL.
    let path = unsafe { c_path(path) }?;
    let protection = protection_from_bits(prot)?;
    let shared = match flags {
        MAP_SHARED => true,
        MAP_PRIVATE => false,
        other => return Err(format!("flags {other}: use MAP_SHARED (1) or MAP_PRIVATE (2)")),
    };
    let offset = non_negative(offset, "offset")?;
    let length = non_negative(length, "length")?;
    let page = sys::page_size();
    if offset % page != 0 {
        return Err(format!("offset {offset} is not a multiple of the page size {page}"));
    }
    let writable = shared && prot & PROT_WRITE != 0;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(writable)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let file_len = file.metadata().map_err(|e| format!("{}: {e}", path.display()))?.len();
    let available = usize::try_from(file_len.saturating_sub(offset as u64)).unwrap_or(usize::MAX);
    let len = if length == 0 { available } else { length };
    if len == 0 {
        return Err(format!(
            "{}: nothing to map at offset {offset} (file is {file_len} bytes)",
            path.display()
        ));
    }
    if len > available {
        return Err(format!(
            "{}: {len} bytes at offset {offset} run past the end of the file ({file_len} bytes)",
            path.display()
        ));
    }
    // SAFETY: `file` stays open for the call (the mapping keeps its own reference after).
    let addr = unsafe { sys::map_file(file.as_raw_fd(), offset as u64, len, protection, shared) }
        .map_err(|e| e.to_string())?;
    let mapped = len.div_ceil(page) * page;
    rt_owned::files().insert(addr as usize, FileMap { len, mapped, prot });
    Ok(RtMapping { address: addr as i64, size: len as i64 })
}

/// Maps `length` bytes of the file at `path` from `offset` (length 0: to the end of the file).
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rt_mmap_file(
    path: *const c_char,
    prot: i32,
    flags: i32,
    offset: i64,
    length: i64,
) -> RtMapping {
    guard(RtMapping { address: 0, size: 0 }, || map_file(path, prot, flags, offset, length))
}

/// Unmaps a whole mapping made by `rt_mmap_file` (`size` as returned, or its page-rounded size).
#[no_mangle]
pub extern "C" fn rt_munmap(address: i64, size: i64) -> bool {
    guard(false, || {
        let (start, size) = rt_owned::range(address, 0, size)?;
        let mut files = rt_owned::files();
        let map = *files
            .get(&start)
            .ok_or_else(|| format!("{start:#x} is not the start of a mapping made by rt_mmap_file"))?;
        if size != map.len && size != map.mapped {
            return Err(format!("size {size} does not match the mapping ({} bytes)", map.len));
        }
        // SAFETY: the mapping is ours (registered by rt_mmap_file) and is removed from the
        // registry under the same lock, so no other rt_* call can be reading it.
        unsafe { sys::unmap(start as *mut u8, map.mapped) }.map_err(|e| e.to_string())?;
        files.remove(&start);
        Ok(true)
    })
}

/// Copies `length` bytes at `address + offset` into `dst`; returns `length`, or -1.
///
/// # Safety
/// `dst` is NULL or writable for `length` bytes.
#[no_mangle]
pub unsafe extern "C" fn rt_mmap_read_bytes(address: i64, offset: i64, length: i64, dst: *mut u8) -> i64 {
    guard(-1, || {
        let (start, len) = rt_owned::range(address, offset, length)?;
        if len == 0 {
            return Ok(0);
        }
        if dst.is_null() {
            return Err("dst is NULL".into());
        }
        let (allocs, files) = (rt_owned::allocs(), rt_owned::files());
        let owner = rt_owned::owner_of(&allocs, &files, start, len)?;
        if !owner.readable() {
            return Err(format!("{start:#x} is in a mapping without PROT_READ"));
        }
        // SAFETY: the source lies inside a live, readable mapping of ours (checked above, kept
        // alive by the registry locks); `dst` is the caller's buffer of at least `len` bytes.
        unsafe { std::ptr::copy(start as *const u8, dst, len) };
        Ok(length)
    })
}

/// Reads the string at `address + offset` (to the first NUL, or `max_length` bytes when it is
/// positive, never past the mapping), copies up to `dst_cap` bytes of it, returns its length.
///
/// # Safety
/// `dst` is NULL (with `dst_cap` 0) or writable for `dst_cap` bytes.
#[no_mangle]
pub unsafe extern "C" fn rt_mmap_read_string(
    address: i64,
    offset: i64,
    max_length: i64,
    dst: *mut u8,
    dst_cap: i64,
) -> i64 {
    guard(-1, || {
        let (start, _) = rt_owned::range(address, offset, 0)?;
        let max_length = non_negative(max_length, "max_length")?;
        let dst_cap = non_negative(dst_cap, "dst_cap")?;
        if dst.is_null() && dst_cap > 0 {
            return Err("dst is NULL".into());
        }
        let (allocs, files) = (rt_owned::allocs(), rt_owned::files());
        let owner = rt_owned::owner_of(&allocs, &files, start, 0)?;
        if !owner.readable() {
            return Err(format!("{start:#x} is in a mapping without PROT_READ"));
        }
        let mut available = owner.start() + owner.len() - start;
        if max_length > 0 {
            available = available.min(max_length);
        }
        // SAFETY: `start..start+available` lies inside a live readable mapping of ours.
        let bytes = unsafe { std::slice::from_raw_parts(start as *const u8, available) };
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(available);
        let copy = len.min(dst_cap);
        if copy > 0 {
            // SAFETY: `dst` is the caller's buffer of `dst_cap >= copy` bytes.
            unsafe { std::ptr::copy(bytes.as_ptr(), dst, copy) };
        }
        Ok(len as i64)
    })
}

/// The size of the file at `path`, or -1.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rt_file_size_for_mmap(path: *const c_char) -> i64 {
    guard(-1, || {
        // SAFETY: the C caller passes a NUL-terminated path or NULL.
        let path = unsafe { c_path(path) }?;
        let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        i64::try_from(meta.len()).map_err(|_| "file size does not fit in int64_t".into())
    })
}

/// The page size in bytes.
#[no_mangle]
pub extern "C" fn rt_get_page_size() -> i64 {
    sys::page_size() as i64
}

/// Checks `address..+size` and hands the owner and page span to `f` under the registry locks.
fn with_owned_pages<T>(
    address: i64,
    size: i64,
    f: impl FnOnce(Owner, usize, usize) -> Result<T, String>,
) -> Result<T, String> {
    let (start, len) = rt_owned::range(address, 0, size)?;
    if len == 0 {
        return Err("size is 0".into());
    }
    let (allocs, files) = (rt_owned::allocs(), rt_owned::files());
    let owner = rt_owned::owner_of(&allocs, &files, start, len)?;
    let (first, span) = page_span(start, len);
    f(owner, first, span)
}

/// Flushes a shared file mapping's changes to the file.
#[no_mangle]
pub extern "C" fn rt_msync(address: i64, size: i64, is_async: bool) -> bool {
    guard(false, || {
        with_owned_pages(address, size, |owner, first, span| {
            if !matches!(owner, Owner::File { .. }) {
                return Err("rt_msync needs a mapping made by rt_mmap_file".into());
            }
            // SAFETY: the pages belong to a live file mapping of ours.
            unsafe { sys::sync_file(first as *mut u8, span, is_async) }.map_err(|e| e.to_string())?;
            Ok(true)
        })
    })
}

fn lock_pages(address: i64, size: i64, locked: bool) -> bool {
    guard(false, || {
        with_owned_pages(address, size, |_, first, span| {
            // SAFETY: the pages belong to a live mapping or allocation of ours.
            unsafe { sys::lock(first as *mut u8, span, locked) }.map_err(|e| e.to_string())?;
            Ok(true)
        })
    })
}

/// Locks the pages of `address..+size` in memory.
#[no_mangle]
pub extern "C" fn rt_mlock(address: i64, size: i64) -> bool {
    lock_pages(address, size, true)
}

/// Unlocks the pages of `address..+size`.
#[no_mangle]
pub extern "C" fn rt_munlock(address: i64, size: i64) -> bool {
    lock_pages(address, size, false)
}

/// Gives usage advice (0 normal, 1 random, 2 sequential, 3 willneed, 4 dontneed).
#[no_mangle]
pub extern "C" fn rt_madvise(address: i64, size: i64, advice: i32) -> bool {
    guard(false, || {
        let advice = match advice {
            0 => Advice::Normal,
            1 => Advice::Random,
            2 => Advice::Sequential,
            3 => Advice::WillNeed,
            4 => Advice::DontNeed,
            other => return Err(format!("advice {other} is not one of 0..=4")),
        };
        with_owned_pages(address, size, |owner, first, span| {
            if advice == Advice::DontNeed {
                if let Owner::Alloc { start, .. } = owner {
                    if crate::runtime::exec().lookup(start, 1).is_some_and(|b| b.sealed) {
                        return Err("MADV_DONTNEED would erase sealed code".into());
                    }
                }
            }
            // SAFETY: the pages belong to a live mapping or allocation of ours; DONTNEED on
            // code was refused above.
            unsafe { sys::advise(first as *mut u8, span, advice) }.map_err(|e| e.to_string())?;
            Ok(true)
        })
    })
}
