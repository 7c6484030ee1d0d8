//! Reading a stream (a FIFO, a pipe, a terminal, a device), opened non-blocking, to its end:
//! each piece waited for at most the idle limit, the whole for at most the total limit and up to
//! the size limit.

use alloc::vec::Vec;
use core::time::Duration;

use super::{Clock, ReadError, ReadLimits};
use crate::sys::{OpenFile, Readiness};

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
    let idle = ReadError::Idle { idle: limits.stream_idle };
    let opened = monotonic();
    // Since when the stream has sent nothing (its idle time runs from there, however many
    // signals interrupt the waits in between).
    let mut quiet_since = opened;
    let mut chunk = [0u8; CHUNK];
    loop {
        // What is left of the total and of the idle time (none known without a clock).
        let now = monotonic();
        let left = |since: Option<Duration>, limit: Duration| match (since, now) {
            (Some(since), Some(now)) => Some(limit.saturating_sub(now.saturating_sub(since))),
            _ => None,
        };
        let (total_left, idle_left) =
            (left(opened, limits.stream_total), left(quiet_since, limits.stream_idle));
        if total_left == Some(Duration::ZERO) {
            return Err(too_slow);
        }
        if idle_left == Some(Duration::ZERO) {
            return Err(idle);
        }
        let idle_left = idle_left.unwrap_or(limits.stream_idle);
        let wait = total_left.map_or(idle_left, |total_left| total_left.min(idle_left));
        // Wait for bytes, or for the writer to close (a FIFO without a writer yet waits for one).
        match file.wait_readable(wait).map_err(ReadError::Sys)? {
            Readiness::Ready => {}
            Readiness::TimedOut => return Err(if wait < idle_left { too_slow } else { idle }),
            // Without a clock, no part of a deadline can be told to be left: the wait counts
            // as whole, so that no signal can stretch it.
            Readiness::Interrupted if now.is_none() => {
                return Err(if wait < idle_left { too_slow } else { idle });
            }
            Readiness::Interrupted => continue,
        }
        let n = match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                quiet_since = monotonic();
                n
            }
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
