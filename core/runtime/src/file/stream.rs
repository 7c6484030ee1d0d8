//! Reading a stream (a FIFO, a pipe, a terminal, a device), opened non-blocking, to its end:
//! each piece waited for at most the idle limit, the whole for at most the total limit and up to
//! the size limit.

use alloc::vec::Vec;
use core::time::Duration;

use super::{Clock, ReadError, ReadLimits};
use crate::sys::OpenFile;

/// Bytes read from a stream at a time.
const CHUNK: usize = 64 << 10;

/// Reads `file` to its end into `buffer`, its deadline by `monotonic`; its length.
pub(super) fn read(
    file: &OpenFile,
    limits: &ReadLimits,
    monotonic: Clock,
    buffer: &mut Vec<u8>,
) -> Result<usize, ReadError> {
    buffer.clear();
    let too_slow = ReadError::StreamTooSlow { total: limits.stream_total };
    let opened = monotonic();
    let mut chunk = [0u8; CHUNK];
    loop {
        // What is left of the total (none known without a clock).
        let left = opened.and_then(|opened| {
            let now = monotonic()?;
            Some(limits.stream_total.saturating_sub(now.saturating_sub(opened)))
        });
        if left == Some(Duration::ZERO) {
            return Err(too_slow);
        }
        let wait = left.map_or(limits.stream_idle, |left| left.min(limits.stream_idle));
        // Wait for bytes, or for the writer to close (a FIFO without a writer yet waits for one).
        if !file.wait_readable(wait).map_err(ReadError::Sys)? {
            return Err(if wait < limits.stream_idle { too_slow } else { ReadError::Idle { idle: wait } });
        }
        let n = match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.would_block() => continue,
            Err(e) => return Err(ReadError::Sys(e)),
        };
        // Both are below `isize::MAX`: no overflow.
        let total = buffer.len() + n;
        if total as u64 > limits.max_bytes {
            return Err(ReadError::StreamTooLarge { limit: limits.max_bytes });
        }
        buffer.try_reserve(n).map_err(|_| ReadError::OutOfMemory { bytes: total as u64 })?;
        buffer.extend_from_slice(&chunk[..n]);
    }
    Ok(buffer.len())
}
