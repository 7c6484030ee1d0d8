//! Reading a stream (a FIFO, a pipe, a terminal, a device), opened non-blocking, to its end:
//! each piece waited for at most the idle limit, the whole at most the size limit.

use alloc::vec::Vec;

use super::{ReadError, ReadLimits};
use crate::sys::OpenFile;

/// Bytes read from a stream at a time.
const CHUNK: usize = 64 << 10;

/// Reads `file` to its end into `buffer`; its length.
pub(super) fn read(file: &OpenFile, limits: &ReadLimits, buffer: &mut Vec<u8>) -> Result<usize, ReadError> {
    buffer.clear();
    let mut chunk = [0u8; CHUNK];
    loop {
        // Wait for bytes, or for the writer to close (a FIFO without a writer yet waits for one).
        if !file.wait_readable(limits.stream_idle).map_err(ReadError::Sys)? {
            return Err(ReadError::Idle { idle: limits.stream_idle });
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
