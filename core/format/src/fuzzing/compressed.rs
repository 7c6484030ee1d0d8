//! The `compressed` target: a compressed section's frame on its own, over any bytes (a section
//! payload as a module would carry it), and the writer's frames read back.

use crate::compress::{frame, Frame, Method, FRAME_HEADER};

/// The largest virtual size tried: 2^20 bytes (a frame decompressed into more would only
/// repeat the same paths, slower).
const LARGEST_SIZE_SHIFT: u8 = 20;

/// The first byte of `data` picks the method (its top bit: zstd, else lz4) and the section's
/// virtual size (a power of two up to 2^[`LARGEST_SIZE_SHIFT`]); the rest is a compressed
/// section's payload. The frame is checked as validation
/// checks it, then decompressed into a place of that size, filled beforehand: a frame accepted
/// never states more than the place holds; decompression writes nothing past the stated
/// length, and succeeds only with exactly that many bytes. Then the payload itself is
/// compressed by the writer and must read back whole. Returns the bytes decompressed.
pub fn fuzz_compressed(data: &[u8]) -> usize {
    let Some((&size, payload)) = data.split_first() else { return 0 };
    let virtual_size = 1usize << ((size & 0x7F) % (LARGEST_SIZE_SHIFT + 1));
    let method = method_of(size);
    let mut made = 0;
    match Frame::of(method, payload, virtual_size as u64) {
        Err(problem) => made += super::formatted(&problem_text(problem)),
        Ok(checked) => {
            let stated = usize::try_from(checked.decompressed_len).unwrap_or(usize::MAX);
            assert!(stated <= virtual_size, "a frame stating {stated} bytes accepted for {virtual_size}");
            let mut place = alloc::vec![0xA5; virtual_size];
            match checked.decompress_into(&mut place) {
                Ok(()) => made += stated,
                Err(problem) => made += super::formatted(&problem_text(problem)),
            }
            assert!(place[stated..].iter().all(|&b| b == 0xA5), "bytes written past the stated {stated}");
        }
    }
    // What the writer makes of the same bytes reads back as they were.
    let written = frame(method, payload);
    assert!(written.len() >= FRAME_HEADER);
    let read = Frame::of(method, &written, payload.len() as u64).expect("the writer's frame is valid");
    let mut back = alloc::vec![0; payload.len()];
    read.decompress_into(&mut back).expect("the writer's frame decompresses");
    assert_eq!(back, payload, "the writer's frame does not read back");
    made
}

/// The method a first byte picks: zstd with its top bit (where the build has it), else lz4.
fn method_of(byte: u8) -> Method {
    #[cfg(feature = "zstd")]
    if byte & 0x80 != 0 {
        return Method::Zstd;
    }
    let _ = byte;
    Method::Lz4
}

/// A problem as a user reads it: in the error naming its section.
fn problem_text(problem: crate::CompressionProblem) -> crate::Error {
    crate::Error::new(crate::ErrorKind::BadCompressedSection { index: 0, problem }, 0)
}
