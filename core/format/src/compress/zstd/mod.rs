//! A Zstandard decoder (RFC 8878) that writes straight into its final place: the whole output
//! is the window, so matches copy from the bytes already written, decoded literals wait at the
//! output's end until read, and nothing is allocated or copied twice (the tables, some 10 KB,
//! live in one [`Decoder`] on the stack). Frames are decoded one after another (skippable ones
//! skipped); dictionaries are not supported (a frame naming one is refused). Every length a
//! frame claims is checked against the bytes it has and the room left, so no input makes it
//! read or write out of bounds, loop without consuming input, or take more than linear time.

// Narrowing casts here are of bit fields the format bounds where they are read: symbols below
// 256, states below 512, counts of at most 16 bits, values masked to the bits read.
#![allow(clippy::cast_possible_truncation)]

mod bits;
mod fse;
mod literals;
mod output;
mod sequences;
mod xxh64;

use literals::Huffman;
use output::Output;
use sequences::FrameState;

/// The most bytes one block makes or holds (`Block_Maximum_Size`).
const MOST_BLOCK: usize = 128 << 10;

/// A Zstandard frame's magic number, and the pattern of skippable frames' (low 4 bits free).
const MAGIC: u32 = 0xFD2F_B528;
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;

/// Why decoding stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The data breaks the format (what, for a reader of the code and its tests).
    Corrupt(&'static str),
    /// The data makes more bytes than the output holds.
    Overflow,
}

/// The tables one frame's blocks share.
struct Decoder {
    huffman: Huffman,
    sequences: FrameState,
}

/// Decodes the frames of `data` into the start of `out`; returns the bytes made.
pub(crate) fn decode(data: &[u8], out: &mut [u8]) -> Result<usize, Fault> {
    let mut decoder = Decoder { huffman: Huffman::NEW, sequences: FrameState::NEW };
    let mut rest = data;
    let mut made = 0;
    while let Some((magic, after)) = rest.split_first_chunk::<4>() {
        let magic = u32::from_le_bytes(*magic);
        if magic & !0xF == SKIPPABLE_MAGIC {
            let (size, after) =
                after.split_first_chunk::<4>().ok_or(Fault::Corrupt("a skippable frame cut short"))?;
            let size = u32::from_le_bytes(*size) as usize;
            rest = after.get(size..).ok_or(Fault::Corrupt("a skippable frame cut short"))?;
            continue;
        }
        if magic != MAGIC {
            return Err(Fault::Corrupt("not a Zstandard frame"));
        }
        let (end, left) = decoder.frame(after, out, made)?;
        made = end;
        rest = left;
    }
    if !rest.is_empty() {
        return Err(Fault::Corrupt("bytes after the last frame"));
    }
    Ok(made)
}

/// A frame header's fields that decoding uses.
struct Header {
    content_size: Option<u64>,
    checksum: bool,
    /// The most bytes a block holds or makes: the window size, at most 128 KiB.
    block_limit: usize,
}

/// The largest window a frame may declare: 2^31 bytes, libzstd's limit (our decoder needs no
/// window buffer, so this is conformance, not cost).
const MOST_WINDOW_LOG: u32 = 31;

impl Decoder {
    /// Decodes one frame (after its magic) into `out` from `start`; returns where its output
    /// ends and the input after it.
    fn frame<'a>(
        &mut self,
        data: &'a [u8],
        out: &mut [u8],
        start: usize,
    ) -> Result<(usize, &'a [u8]), Fault> {
        let (header, mut rest) = frame_header(data)?;
        self.huffman.reset();
        self.sequences.reset();
        let mut output = Output { out, frame_start: start, at: start };
        loop {
            let (block, after) =
                rest.split_first_chunk::<3>().ok_or(Fault::Corrupt("a block header cut short"))?;
            let block = u32::from_le_bytes([block[0], block[1], block[2], 0]);
            let (last, kind, size) = (block & 1 == 1, (block >> 1) & 3, (block >> 3) as usize);
            if size > header.block_limit {
                return Err(Fault::Corrupt("a block larger than its frame's window or 128 KiB"));
            }
            rest = match kind {
                0 => {
                    let bytes = after.get(..size).ok_or(Fault::Corrupt("a raw block cut short"))?;
                    let at = output.at;
                    output.out.get_mut(at..at + size).ok_or(Fault::Overflow)?.copy_from_slice(bytes);
                    output.at += size;
                    &after[size..]
                }
                1 => {
                    let (&byte, after) =
                        after.split_first().ok_or(Fault::Corrupt("an RLE block cut short"))?;
                    let at = output.at;
                    output.out.get_mut(at..at + size).ok_or(Fault::Overflow)?.fill(byte);
                    output.at += size;
                    after
                }
                2 => {
                    let bytes = after.get(..size).ok_or(Fault::Corrupt("a compressed block cut short"))?;
                    self.block(bytes, &mut output, header.block_limit)?;
                    &after[size..]
                }
                _ => return Err(Fault::Corrupt("a reserved block type")),
            };
            if last {
                break;
            }
        }
        let made = &output.out[start..output.at];
        if header.content_size.is_some_and(|size| size != made.len() as u64) {
            return Err(Fault::Corrupt("a frame making other than its stated content size"));
        }
        if header.checksum {
            let (sum, after) =
                rest.split_first_chunk::<4>().ok_or(Fault::Corrupt("a content checksum cut short"))?;
            if u32::from_le_bytes(*sum) != xxh64::xxh64(made) as u32 {
                return Err(Fault::Corrupt("a content checksum that does not match"));
            }
            rest = after;
        }
        Ok((output.at, rest))
    }

    /// Decodes one compressed block.
    fn block(&mut self, data: &[u8], output: &mut Output<'_>, limit: usize) -> Result<(), Fault> {
        let block_start = output.at;
        let (literals, rest) = literals::read(data, &mut self.huffman, output)?;
        sequences::execute(rest, literals, &mut self.sequences, output)?;
        if output.at - block_start > limit {
            return Err(Fault::Corrupt("a block making more than its frame's window or 128 KiB"));
        }
        Ok(())
    }
}

/// The frame header after the magic: its fields, and the bytes after it.
fn frame_header(data: &[u8]) -> Result<(Header, &[u8]), Fault> {
    let short = Fault::Corrupt("a frame header cut short");
    let (&descriptor, mut rest) = data.split_first().ok_or(short)?;
    if descriptor & 0x08 != 0 {
        return Err(Fault::Corrupt("a frame header's reserved bit set"));
    }
    let single_segment = descriptor & 0x20 != 0;
    let mut window = None;
    if !single_segment {
        // The window descriptor: the whole output is the window here, so it bounds only how
        // large a block may be.
        let (&byte, after) = rest.split_first().ok_or(short)?;
        let log = 10 + u32::from(byte >> 3);
        if log > MOST_WINDOW_LOG {
            return Err(Fault::Corrupt("a window larger than 2 GiB"));
        }
        let base = 1u64 << log;
        window = Some(base + base / 8 * u64::from(byte & 7));
        rest = after;
    }
    let dictionary_bytes = [0, 1, 2, 4][usize::from(descriptor & 3)];
    let (dictionary, after) = rest.split_at_checked(dictionary_bytes).ok_or(short)?;
    if dictionary.iter().any(|&b| b != 0) {
        return Err(Fault::Corrupt("a frame that needs a dictionary"));
    }
    rest = after;
    let size_bytes = match descriptor >> 6 {
        0 if single_segment => 1,
        0 => 0,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let (size, after) = rest.split_at_checked(size_bytes).ok_or(short)?;
    let value = size.iter().rev().fold(0u64, |v, &b| (v << 8) | u64::from(b));
    let content_size = match size_bytes {
        0 => None,
        2 => Some(value + 256),
        _ => Some(value),
    };
    // A single-segment frame's window is its content.
    let window = window.or(content_size).unwrap_or(0);
    let block_limit = usize::try_from(window).unwrap_or(usize::MAX).min(MOST_BLOCK);
    Ok((Header { content_size, checksum: descriptor & 0x04 != 0, block_limit }, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame of `blocks` (header bytes and contents) with a single-segment header stating
    /// `content` bytes (one byte), a checksum when given.
    fn frame(content: u8, blocks: &[&[u8]], checksum: Option<u32>) -> alloc::vec::Vec<u8> {
        let descriptor = 0x20 | if checksum.is_some() { 0x04 } else { 0 };
        let mut bytes = alloc::vec![0x28, 0xB5, 0x2F, 0xFD, descriptor, content];
        for block in blocks {
            bytes.extend_from_slice(block);
        }
        if let Some(sum) = checksum {
            bytes.extend_from_slice(&sum.to_le_bytes());
        }
        bytes
    }

    /// A block header: last, type, size.
    fn header(last: bool, kind: u32, size: u32) -> [u8; 3] {
        let value = u32::from(last) | (kind << 1) | (size << 3);
        [value as u8, (value >> 8) as u8, (value >> 16) as u8]
    }

    #[test]
    fn raw_and_rle_blocks_make_their_bytes_and_the_checksum_is_checked() {
        let raw = [&header(false, 0, 3)[..], b"abc"].concat();
        let rle = [&header(true, 1, 4)[..], b"z"].concat();
        let sum = xxh64::xxh64(b"abczzzz") as u32;
        let mut out = [0; 7];
        assert_eq!(decode(&frame(7, &[&raw, &rle], Some(sum)), &mut out), Ok(7));
        assert_eq!(&out, b"abczzzz");
        assert_eq!(
            decode(&frame(7, &[&raw, &rle], Some(sum ^ 1)), &mut out),
            Err(Fault::Corrupt("a content checksum that does not match"))
        );
        // Stating 8 bytes of content while making 7.
        assert!(matches!(decode(&frame(8, &[&raw, &rle], None), &mut [0; 8]), Err(Fault::Corrupt(_))));
        // More than the output holds.
        assert_eq!(decode(&frame(7, &[&raw, &rle], None), &mut [0; 6]), Err(Fault::Overflow));
    }

    #[test]
    fn reserved_fields_dictionaries_and_stray_bytes_are_refused() {
        let last = [&header(true, 0, 1)[..], b"x"].concat();
        let mut out = [0; 1];
        assert_eq!(decode(&frame(1, &[&last], None), &mut out), Ok(1));
        let reserved_block = [&header(true, 3, 1)[..], b"x"].concat();
        assert_eq!(
            decode(&frame(1, &[&reserved_block], None), &mut out),
            Err(Fault::Corrupt("a reserved block type"))
        );
        let mut reserved_bit = frame(1, &[&last], None);
        reserved_bit[4] |= 0x08;
        assert_eq!(decode(&reserved_bit, &mut out), Err(Fault::Corrupt("a frame header's reserved bit set")));
        // Dictionary 7 (a one-byte id after the descriptor).
        let mut dictionary = frame(1, &[&last], None);
        dictionary[4] |= 0x01;
        dictionary.insert(5, 7);
        assert_eq!(decode(&dictionary, &mut out), Err(Fault::Corrupt("a frame that needs a dictionary")));
        let mut stray = frame(1, &[&last], None);
        stray.push(0);
        assert_eq!(decode(&stray, &mut out), Err(Fault::Corrupt("bytes after the last frame")));
        let mut skippable = alloc::vec![0x5F, 0x2A, 0x4D, 0x18, 10, 0, 0, 0, 1, 2];
        assert_eq!(decode(&skippable, &mut out), Err(Fault::Corrupt("a skippable frame cut short")));
        skippable.extend_from_slice(&[0; 8]);
        skippable.extend(frame(1, &[&last], None));
        assert_eq!(decode(&skippable, &mut out), Ok(1));
        assert_eq!(decode(&[], &mut out), Ok(0));
    }

    #[test]
    fn a_block_past_its_window_or_128_kib_is_refused_before_it_is_read() {
        let refused = Err(Fault::Corrupt("a block larger than its frame's window or 128 KiB"));
        // Single segment: the window is the content, 7 bytes stated, a block of 8.
        let rle = [&header(true, 1, 8)[..], b"a"].concat();
        assert_eq!(decode(&frame(7, &[&rle], None), &mut [0; 8]), refused);
        // A window of 2^31 + 7/8 of it (descriptor 0, window byte 0xAF): 128 KiB at most.
        let huge = header(true, 1, (MOST_BLOCK + 1) as u32);
        let mut bytes = alloc::vec![0x28, 0xB5, 0x2F, 0xFD, 0x00, 0xAF];
        bytes.extend_from_slice(&[&huge[..], b"a"].concat());
        let mut out = alloc::vec![0; MOST_BLOCK + 1];
        assert_eq!(decode(&bytes, &mut out), refused);
        // A window byte past 2^31 (log 32).
        bytes[5] = 22 << 3;
        assert_eq!(decode(&bytes, &mut out), Err(Fault::Corrupt("a window larger than 2 GiB")));
    }
}
