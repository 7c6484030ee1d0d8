//! A section's bytes as a load puts them in memory (before the zeroed tail): as stored, or its
//! compressed frame decompressed. What `verify` checks and `disasm` reads.

use std::borrow::Cow;

use smf_format::compress::Payload;
use smf_format::{Module, Section};

/// Why a section's bytes could not be had in memory.
#[derive(Debug)]
pub(crate) enum PayloadError {
    /// Its frame does not decompress to exactly the length it states (the error names the
    /// section and the frame's file offset).
    Format(smf_format::Error),
    /// The memory for its stated length could not be had.
    OutOfMemory {
        /// The length.
        bytes: u64,
    },
}

impl std::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PayloadError::Format(error) => write!(f, "{error}"),
            PayloadError::OutOfMemory { bytes } => {
                write!(f, "out of memory for a section of {bytes} bytes decompressed")
            }
        }
    }
}

/// `section`'s bytes in memory. A stated length is at most the section's virtual size, which
/// validation holds within the image limit; memory for it is asked for, never assumed (a
/// failure is an error, not an abort).
pub(crate) fn bytes_in_memory<'a>(
    module: &Module<'a>,
    section: &Section<'a>,
) -> Result<Cow<'a, [u8]>, PayloadError> {
    match module.payload(section) {
        Payload::Raw(bytes) => Ok(bytes.into()),
        payload => {
            let mut bytes = Vec::new();
            match usize::try_from(payload.len()) {
                Ok(len) if bytes.try_reserve_exact(len).is_ok() => bytes.resize(len, 0),
                _ => return Err(PayloadError::OutOfMemory { bytes: payload.len() }),
            }
            payload
                .write_into(&mut bytes)
                .map_err(|problem| PayloadError::Format(section.decompression_error(problem)))?;
            Ok(bytes.into())
        }
    }
}
