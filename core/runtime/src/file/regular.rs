//! Reading a regular file: left alone for the settle time, within the size limit, its ends
//! checked first when it is large, read whole at offsets, unchanged across the read.

use alloc::vec::Vec;
use core::time::Duration;

use super::{Clock, FileIdentity, ReadError, ReadLimits, Version};
use super::{CHECK_ENDS_FROM, FRESH_FOR, READ_ATTEMPTS, SETTLE_ROUNDS};
use crate::sys::{self, FileStatus, OpenFile};
use smf_format::detect::{check_ends, END_BYTES};

/// Reads the regular file `file`, whose status was `before`, whole into `buffer`; its length
/// and the identity of the version read.
pub(super) fn read(
    file: &OpenFile,
    mut before: FileStatus,
    limits: &ReadLimits,
    clock: Clock,
    buffer: &mut Vec<u8>,
) -> Result<Version, ReadError> {
    let limit = limits.max_bytes;
    let longest_wait = limits.settle.saturating_mul(SETTLE_ROUNDS);
    let mut waited = Duration::ZERO;
    let mut attempts = 0;
    while attempts < READ_ATTEMPTS {
        // A file changed within the settle time may be in the middle of a rewrite, unless
        // nobody has it open for writing (then whoever wrote it is done: a program that wrote
        // and closed it, a file renamed into place).
        let unsettled =
            unsettled_for(&before, limits.settle, clock).filter(|_| file.open_for_writing() != Some(false));
        if let Some(wait) = unsettled {
            if waited >= longest_wait {
                return Err(ReadError::StillChanging { waited });
            }
            sys::sleep(wait);
            waited = waited.saturating_add(wait);
            before = file.status().map_err(ReadError::Sys)?;
            continue;
        }
        attempts += 1;
        let len = before.size;
        if len > limit {
            return Err(ReadError::TooLarge { len, limit });
        }
        if len >= CHECK_ENDS_FROM {
            check_file_ends(file, len)?;
        }
        let wanted = usize::try_from(len).map_err(|_| ReadError::TooLarge { len, limit })?;
        // A size of 0 may not be the file's (see `read_unsized`).
        let filled = match wanted {
            0 => read_unsized(file, limit, buffer)?,
            _ => read_at_most(file, wanted, buffer)?,
        };
        let after = file.status().map_err(ReadError::Sys)?;
        let whole = filled == wanted || wanted == 0;
        if whole && FileIdentity::of(&before) == FileIdentity::of(&after) {
            let fresh = changed_within(&after, limits.settle.max(FRESH_FOR), clock);
            return Ok(Version {
                len: filled,
                identity: FileIdentity::of(&after),
                followed_link: false,
                fresh,
            });
        }
        before = after;
    }
    Err(ReadError::Torn)
}

/// How much longer the file must be left alone before the settle time has passed since its
/// status last changed; `None` if it has, if its time lies in the future (a clock elsewhere, as
/// on a network file system, says nothing about writes here) or if there is no clock.
fn unsettled_for(status: &FileStatus, settle: Duration, clock: Clock) -> Option<Duration> {
    let age = clock()?.checked_sub(changed_at(status))?;
    settle.checked_sub(age).filter(|left| !left.is_zero())
}

/// Whether `status` last changed less than `window` ago by `clock`; also when that cannot be
/// told (no clock, a time ahead of it): a version is never taken for settled when it may not be.
fn changed_within(status: &FileStatus, window: Duration, clock: Clock) -> bool {
    match clock() {
        Some(now) => now.checked_sub(changed_at(status)).is_none_or(|age| age < window),
        None => true,
    }
}

/// When `status` last changed (its status-change time; before the epoch reads as the epoch).
fn changed_at(status: &FileStatus) -> Duration {
    let (secs, nanos) = status.ctime;
    Duration::new(u64::try_from(secs).unwrap_or(0), u32::try_from(nanos).unwrap_or(0).min(999_999_999))
}

/// Refuses a file of `len` bytes whose ends show it cannot be a module. A file that shrank
/// under the check is left to the read, whose comparison sees the change.
fn check_file_ends(file: &OpenFile, len: u64) -> Result<(), ReadError> {
    let mut head = [0u8; END_BYTES];
    let mut tail = [0u8; END_BYTES];
    let n = usize::try_from(len).map_or(END_BYTES, |len| len.min(END_BYTES));
    let Some(tail_at) = len.checked_sub(n as u64) else { return Ok(()) };
    if !read_exact_at(file, &mut head[..n], 0)? || !read_exact_at(file, &mut tail[..n], tail_at)? {
        return Ok(());
    }
    check_ends(&head[..n], &tail[..n], len).map_err(ReadError::NotAModule)
}

/// Fills `buf` from `offset`; `false` if the file ended first.
fn read_exact_at(file: &OpenFile, buf: &mut [u8], offset: u64) -> Result<bool, ReadError> {
    let mut filled = 0;
    while filled < buf.len() {
        // An offset past the largest one is past any file's end.
        let Some(at) = offset.checked_add(filled as u64) else { return Ok(false) };
        match file.read_at(&mut buf[filled..], at).map_err(ReadError::Sys)? {
            0 => return Ok(false),
            n => filled += n,
        }
    }
    Ok(true)
}

/// Reads a regular file whose size says 0 into `buffer` to its end, within `limit` bytes; how
/// many it read. The files of procfs and sysfs, and of some FUSE file systems, have content
/// their size does not show; a file that is empty reads as such at the cost of one read.
fn read_unsized(file: &OpenFile, limit: u64, buffer: &mut Vec<u8>) -> Result<usize, ReadError> {
    // One byte past the limit tells a file over it.
    let most = usize::try_from(limit.saturating_add(1)).unwrap_or(usize::MAX);
    buffer.clear();
    let mut room = 0;
    loop {
        let filled = buffer.len();
        if filled == room {
            // Room doubles from a page (the whole of most such files) up to `most`.
            room = room.saturating_mul(2).max(4096).min(most);
            buffer
                .try_reserve_exact(room - filled)
                .map_err(|_| ReadError::OutOfMemory { bytes: room as u64 })?;
        }
        if file.read_at_appending(buffer, room - filled, filled as u64).map_err(ReadError::Sys)? == 0 {
            break;
        }
        if buffer.len() as u64 > limit {
            return Err(ReadError::TooLarge { len: buffer.len() as u64, limit });
        }
    }
    Ok(buffer.len())
}

/// Reads up to `len` bytes from offset 0 into `buffer`; how many it read (fewer if the file
/// shrank meanwhile).
fn read_at_most(file: &OpenFile, len: usize, buffer: &mut Vec<u8>) -> Result<usize, ReadError> {
    // A file too large for memory is an error, never an abort. Nothing is zeroed: the kernel
    // writes every byte the buffer ends up holding.
    buffer.clear();
    buffer.try_reserve_exact(len).map_err(|_| ReadError::OutOfMemory { bytes: len as u64 })?;
    while buffer.len() < len {
        let filled = buffer.len();
        if file.read_at_appending(buffer, len - filled, filled as u64).map_err(ReadError::Sys)? == 0 {
            break;
        }
    }
    Ok(buffer.len())
}
