//! `rt_*` file mappings (the SFFI `mmap.spl` spec): map a file, read bytes and strings out of
//! it, sync, lock, advise, unmap. Every address must lie inside a mapping or allocation made by
//! this library; anything else fails before memory is touched.

use std::ffi::c_char;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use super::rt_kit::{self, Advice};

use super::rt_error::{Owned, RtError};
use super::rt_owned::{self, FileMap, Owner, PROT_EXEC, PROT_WRITE};
use super::{c_path, guard, non_negative, ArgError, FfiError};

/// MAP_SHARED as the spec numbers it.
pub(crate) const MAP_SHARED: i32 = 1;
/// MAP_PRIVATE.
pub(crate) const MAP_PRIVATE: i32 = 2;

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
    let page = crate::process::page_size();
    let first = start & !(page - 1);
    let end = (start + len.max(1)).div_ceil(page) * page;
    (first, end - first)
}

/// # Safety
/// `path` is NULL or a NUL-terminated string.
unsafe fn map_file(
    path: *const c_char,
    prot: i32,
    flags: i32,
    offset: i64,
    length: i64,
) -> Result<RtMapping, FfiError> {
    // SAFETY: forwarded to our caller's contract.
    let path = unsafe { c_path(path) }?;
    let protection = rt_owned::protection_from_bits(prot)?;
    if prot & PROT_EXEC != 0 {
        return Err(RtError::ExecutableFile.into());
    }
    let shared = match flags {
        MAP_SHARED => true,
        MAP_PRIVATE => false,
        other => return Err(RtError::MapFlags(other).into()),
    };
    let offset = non_negative(offset, "offset")?;
    let length = non_negative(length, "length")?;
    let page = crate::process::page_size();
    if offset % page != 0 {
        return Err(RtError::UnalignedOffset { offset, page }.into());
    }
    let writable = shared && prot & PROT_WRITE != 0;
    // Non-blocking: a FIFO without a writer must not hang the open (it is refused below).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(writable)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| RtError::File(path.to_path_buf(), e))?;
    let metadata = file.metadata().map_err(|e| RtError::File(path.to_path_buf(), e))?;
    if !metadata.is_file() {
        return Err(RtError::NotRegularFile(path.to_path_buf()).into());
    }
    let file_len = metadata.len();
    let available = usize::try_from(file_len.saturating_sub(offset as u64)).unwrap_or(usize::MAX);
    let len = if length == 0 { available } else { length };
    if len == 0 {
        return Err(RtError::NothingToMap { path: path.to_path_buf(), offset, file_len }.into());
    }
    if len > available {
        return Err(RtError::PastEnd { path: path.to_path_buf(), len, offset, file_len }.into());
    }
    // SAFETY: `file` stays open for the call (the mapping keeps its own reference after).
    let addr = unsafe { rt_kit::map_file(file.as_raw_fd(), offset as u64, len, protection, shared) }?;
    let mapped = len.div_ceil(page) * page;
    let map = FileMap { addr: addr as usize, len, mapped, prot: std::sync::RwLock::new(prot) };
    rt_owned::files().insert(addr as usize, std::sync::Arc::new(map));
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
    // SAFETY: forwarded to our caller's contract.
    guard(RtMapping { address: 0, size: 0 }, || unsafe { map_file(path, prot, flags, offset, length) })
}

/// Unmaps a whole mapping made by `rt_mmap_file` (`size` as returned, or its page-rounded size).
/// The pages go once no other call is still reading them.
#[no_mangle]
pub extern "C" fn rt_munmap(address: i64, size: i64) -> bool {
    guard(false, || {
        let (start, size) = rt_owned::range(address, 0, size)?;
        let mut files = rt_owned::files();
        let map = files.get(&start).ok_or(RtError::NotAStart(start, Owned::Mapping))?;
        if size != map.len && size != map.mapped {
            return Err(RtError::SizeMismatch { size, actual: map.len, of: Owned::Mapping }.into());
        }
        let map = files.remove(&start);
        drop(files);
        drop(map); // unmaps unless a call is still reading it
        Ok(true)
    })
}

/// Copies `length` bytes at `address + offset` into `dst`; returns `length`, or -1. Bytes a
/// mapped file no longer has (it was truncated) are an error, not a crash.
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
            return Err(ArgError::Null("dst").into());
        }
        let owner = rt_owned::owner_of(start, len)?;
        // SAFETY: `dst` is the caller's buffer of at least `len` bytes.
        let dst = unsafe { std::slice::from_raw_parts_mut(dst, len) };
        rt_owned::read_owned(&owner, start, dst)?;
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
            return Err(ArgError::Null("dst").into());
        }
        let owner = rt_owned::owner_of(start, 0)?;
        let mut available = owner.start() + owner.len() - start;
        if max_length > 0 {
            available = available.min(max_length);
        }
        // Read in chunks until the NUL, copying only what `dst` holds: a long string in a
        // large mapping costs a scan, never a copy of its own.
        let mut chunk = [0u8; 4096];
        let mut len = 0;
        loop {
            let n = (available - len).min(chunk.len());
            if n == 0 {
                break;
            }
            rt_owned::read_owned(&owner, start + len, &mut chunk[..n])?;
            let text = chunk[..n].iter().position(|&b| b == 0).unwrap_or(n);
            let copy = text.min(dst_cap.saturating_sub(len));
            if copy > 0 {
                // SAFETY: `dst` is the caller's buffer of `dst_cap` bytes and `len + copy` is at
                // most `dst_cap`; `chunk` is ours.
                unsafe { std::ptr::copy_nonoverlapping(chunk.as_ptr(), dst.add(len), copy) };
            }
            len += text;
            if text < n {
                break;
            }
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
        let meta = std::fs::metadata(path).map_err(|e| RtError::File(path.to_path_buf(), e))?;
        Ok(i64::try_from(meta.len()).map_err(|_| RtError::FileSizeOverflows(path.to_path_buf()))?)
    })
}

/// The page size in bytes.
#[no_mangle]
pub extern "C" fn rt_get_page_size() -> i64 {
    guard(-1, || Ok(crate::process::page_size() as i64))
}

/// Checks `address..+size` and hands its owner (kept alive meanwhile) and page span to `f`.
fn with_owned_pages<T>(
    address: i64,
    size: i64,
    f: impl FnOnce(&Owner, usize, usize) -> Result<T, FfiError>,
) -> Result<T, FfiError> {
    let (start, len) = rt_owned::range(address, 0, size)?;
    if len == 0 {
        return Err(RtError::ZeroSize.into());
    }
    let owner = rt_owned::owner_of(start, len)?;
    let (first, span) = page_span(start, len);
    f(&owner, first, span)
}

/// Flushes a shared file mapping's changes to the file.
#[no_mangle]
pub extern "C" fn rt_msync(address: i64, size: i64, is_async: bool) -> bool {
    guard(false, || {
        with_owned_pages(address, size, |owner, first, span| {
            if !matches!(owner, Owner::File { .. }) {
                return Err(RtError::NotAFileMapping.into());
            }
            // SAFETY: the pages belong to a live file mapping of ours.
            unsafe { rt_kit::sync_file(first as *mut u8, span, is_async) }?;
            Ok(true)
        })
    })
}

fn lock_pages(address: i64, size: i64, locked: bool) -> bool {
    guard(false, || {
        with_owned_pages(address, size, |_, first, span| {
            // SAFETY: the pages belong to a live mapping or allocation of ours.
            unsafe { rt_kit::lock_in_memory(first as *mut u8, span, locked) }?;
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
            other => return Err(RtError::Advice(other).into()),
        };
        with_owned_pages(address, size, |owner, first, span| {
            if advice == Advice::DontNeed {
                if let Owner::Alloc(alloc) = owner {
                    if !matches!(*alloc.phase(), rt_owned::Phase::Open(_)) {
                        return Err(RtError::DontNeedOnCode.into());
                    }
                }
            }
            // SAFETY: the pages belong to a live mapping or allocation of ours; DONTNEED on
            // code was refused above.
            unsafe { rt_kit::advise(first as *mut u8, span, advice) }?;
            Ok(true)
        })
    })
}
