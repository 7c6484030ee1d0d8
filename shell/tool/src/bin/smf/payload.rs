//! A section's bytes as a load puts them in memory (before the zeroed tail): as stored, or its
//! compressed frame decompressed. What `verify` checks and `disasm` reads.

use std::borrow::Cow;

use smf_core::compress::Payload;
use smf_core::{Module, Section};

/// `section`'s bytes in memory; the error names the section and its frame's file offset when a
/// frame does not decompress to exactly the length it states. A stated length is at most the
/// section's virtual size, which validation holds within the image limit.
pub(crate) fn bytes_in_memory<'a>(
    module: &Module<'a>,
    section: &Section<'a>,
) -> Result<Cow<'a, [u8]>, smf_core::Error> {
    match module.payload(section) {
        Payload::Raw(bytes) => Ok(bytes.into()),
        payload => {
            let mut bytes = vec![0; usize::try_from(payload.len()).unwrap_or(usize::MAX)];
            payload.write_into(&mut bytes).map_err(|problem| section.decompression_error(problem))?;
            Ok(bytes.into())
        }
    }
}
