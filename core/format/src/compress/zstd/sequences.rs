//! A compressed block's sequences section (RFC 8878, "Sequences Section"): the count, the three
//! tables' modes and descriptions, then each sequence decoded from the backward bitstream and
//! executed at once: its literals copied, then its match copied from the output already made
//! in this frame. Repeat offsets and the tables carry from block to block of a frame
//! ([`FrameState`]).

use super::bits::Backward;
use super::fse::{State, Table};
use super::literals::Literals;
use super::output::Output;
use super::Fault;

/// The predefined literal-length distribution (accuracy 6).
pub(super) const LITERAL_LENGTHS_DEFAULT: [i16; 36] = [
    4, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 2, 1, 1, 1, 1, 1, -1, -1,
    -1, -1,
];
/// The predefined match-length distribution (accuracy 6).
const MATCH_LENGTHS_DEFAULT: [i16; 53] = [
    1, 4, 3, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1,
];
/// The predefined offset-code distribution (accuracy 5).
const OFFSETS_DEFAULT: [i16; 29] =
    [1, 1, 1, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1];

/// Literal-length codes past 15: base and extra bits.
const LITERAL_LENGTH_CODES: [(u32, u8); 20] = [
    (16, 1),
    (18, 1),
    (20, 1),
    (22, 1),
    (24, 2),
    (28, 2),
    (32, 3),
    (40, 3),
    (48, 4),
    (64, 6),
    (128, 7),
    (256, 8),
    (512, 9),
    (1024, 10),
    (2048, 11),
    (4096, 12),
    (8192, 13),
    (16384, 14),
    (32768, 15),
    (65536, 16),
];
/// Match-length codes past 31: base and extra bits.
const MATCH_LENGTH_CODES: [(u32, u8); 21] = [
    (35, 1),
    (37, 1),
    (39, 1),
    (41, 1),
    (43, 2),
    (47, 2),
    (51, 3),
    (59, 3),
    (67, 4),
    (83, 4),
    (99, 5),
    (131, 7),
    (259, 8),
    (515, 9),
    (1027, 10),
    (2051, 11),
    (4099, 12),
    (8195, 13),
    (16387, 14),
    (32771, 15),
    (65539, 16),
];

/// What a sequence table is: its predefined distribution and accuracy, and the largest symbol
/// and accuracy a block may describe.
struct Kind {
    default: &'static [i16],
    default_log: u8,
    most_symbol: usize,
    most_log: u8,
}

const LITERAL_LENGTHS: Kind =
    Kind { default: &LITERAL_LENGTHS_DEFAULT, default_log: 6, most_symbol: 35, most_log: 9 };
const OFFSETS: Kind = Kind { default: &OFFSETS_DEFAULT, default_log: 5, most_symbol: 31, most_log: 8 };
const MATCH_LENGTHS: Kind =
    Kind { default: &MATCH_LENGTHS_DEFAULT, default_log: 6, most_symbol: 52, most_log: 9 };

/// What a frame's blocks hand on to the next: the three sequence tables and the repeat
/// offsets.
pub(super) struct FrameState {
    literal_lengths: Table,
    offsets: Table,
    match_lengths: Table,
    /// Which tables a block has built (a "repeat" mode needs one).
    built: [bool; 3],
    repeats: [usize; 3],
}

impl FrameState {
    pub(super) const NEW: FrameState = FrameState {
        literal_lengths: Table::EMPTY,
        offsets: Table::EMPTY,
        match_lengths: Table::EMPTY,
        built: [false; 3],
        repeats: [1, 4, 8],
    };

    /// A new frame: no tables, the initial repeat offsets.
    pub(super) fn reset(&mut self) {
        self.built = [false; 3];
        self.repeats = [1, 4, 8];
    }
}

/// Decodes and executes the sequences section `data` (the rest of a compressed block) with
/// its `literals`, then copies the literals left over.
pub(super) fn execute(
    data: &[u8],
    literals: Literals<'_>,
    state: &mut FrameState,
    output: &mut Output<'_>,
) -> Result<(), Fault> {
    let (count, mut rest) = sequence_count(data)?;
    let mut copier = Copier { literals, read: 0 };
    if count == 0 {
        if !rest.is_empty() {
            return Err(Fault::Corrupt("bytes after a block's empty sequences section"));
        }
        return copier.rest_of_literals(output);
    }
    let (&modes, after) = rest.split_first().ok_or(Fault::Corrupt("a sequences section without modes"))?;
    rest = after;
    if modes & 3 != 0 {
        return Err(Fault::Corrupt("reserved bits set in a sequences section's modes"));
    }
    let built = &mut state.built;
    rest = set_table(&mut state.literal_lengths, &mut built[0], modes >> 6, rest, &LITERAL_LENGTHS)?;
    rest = set_table(&mut state.offsets, &mut built[1], (modes >> 4) & 3, rest, &OFFSETS)?;
    rest = set_table(&mut state.match_lengths, &mut built[2], (modes >> 2) & 3, rest, &MATCH_LENGTHS)?;
    let mut bits = Backward::new(rest)?;
    let mut literal_length = State::start(&state.literal_lengths, &mut bits);
    let mut offset = State::start(&state.offsets, &mut bits);
    let mut match_length = State::start(&state.match_lengths, &mut bits);
    for left in (0..count).rev() {
        let offset_code = u32::from(offset.symbol(&state.offsets));
        let offset_value = (1usize << offset_code) + bits.read(offset_code) as usize;
        let match_len = match_length_of(match_length.symbol(&state.match_lengths), &mut bits);
        let literal_len = literal_length_of(literal_length.symbol(&state.literal_lengths), &mut bits);
        let distance = state.repeat(offset_value, literal_len)?;
        copier.sequence(output, literal_len, distance, match_len)?;
        if left > 0 {
            literal_length.advance(&state.literal_lengths, &mut bits);
            match_length.advance(&state.match_lengths, &mut bits);
            offset.advance(&state.offsets, &mut bits);
        }
    }
    if !bits.is_exactly_consumed() {
        return Err(Fault::Corrupt("a sequences bitstream not read exactly to its start"));
    }
    copier.rest_of_literals(output)
}

/// The number of sequences and the bytes after it.
fn sequence_count(data: &[u8]) -> Result<(usize, &[u8]), Fault> {
    let short = Fault::Corrupt("a sequences section cut short");
    match *data {
        [] => Err(short),
        [first @ 0..=127, ref rest @ ..] => Ok((usize::from(first), rest)),
        [255, low, high, ref rest @ ..] => Ok((usize::from(low) + (usize::from(high) << 8) + 0x7F00, rest)),
        [first @ 128..=254, second, ref rest @ ..] => {
            Ok((((usize::from(first) - 128) << 8) + usize::from(second), rest))
        }
        _ => Err(short),
    }
}

/// Sets a table by its mode (0 predefined, 1 one symbol, 2 described, 3 the previous block's)
/// and returns the bytes after what it read.
fn set_table<'a>(
    table: &mut Table,
    built: &mut bool,
    mode: u8,
    data: &'a [u8],
    kind: &Kind,
) -> Result<&'a [u8], Fault> {
    let rest = match mode {
        0 => {
            table.build(kind.default, kind.default_log)?;
            data
        }
        1 => {
            let (&symbol, rest) =
                data.split_first().ok_or(Fault::Corrupt("a sequences section cut short"))?;
            if usize::from(symbol) > kind.most_symbol {
                return Err(Fault::Corrupt("an RLE sequence symbol out of range"));
            }
            table.rle(symbol);
            rest
        }
        2 => {
            let used = table.read(data, kind.most_symbol, kind.most_log)?;
            &data[used..]
        }
        _ => {
            if !*built {
                return Err(Fault::Corrupt("a repeated sequence table no block has built"));
            }
            data
        }
    };
    *built = true;
    Ok(rest)
}

/// A literal length: codes below 16 are the length itself.
fn literal_length_of(code: u8, bits: &mut Backward<'_>) -> usize {
    length_of(code, 16, 0, &LITERAL_LENGTH_CODES, bits)
}

/// A match length: codes below 32 are the length less 3.
fn match_length_of(code: u8, bits: &mut Backward<'_>) -> usize {
    length_of(code, 32, 3, &MATCH_LENGTH_CODES, bits)
}

/// The length `code` names: below `direct`, the code plus `plus`; from `direct` on, a base from
/// `codes` plus its extra bits read from the stream.
#[inline]
fn length_of(code: u8, direct: u8, plus: usize, codes: &[(u32, u8)], bits: &mut Backward<'_>) -> usize {
    match code.checked_sub(direct) {
        None => usize::from(code) + plus,
        Some(index) => {
            let (base, extra) = codes[usize::from(index)];
            base as usize + bits.read(u32::from(extra)) as usize
        }
    }
}

impl FrameState {
    /// The match distance an offset value names, updating the repeat offsets: values above 3
    /// are a distance plus 3; 1 to 3 name a repeat offset (shifted by one after no literals,
    /// where the last "repeat" is the first minus one).
    fn repeat(&mut self, offset_value: usize, literal_len: usize) -> Result<usize, Fault> {
        if offset_value > 3 {
            let distance = offset_value - 3;
            self.repeats = [distance, self.repeats[0], self.repeats[1]];
            return Ok(distance);
        }
        let index = offset_value - 1 + usize::from(literal_len == 0);
        let distance = match index {
            0 => return Ok(self.repeats[0]),
            3 => self.repeats[0] - 1,
            _ => self.repeats[index],
        };
        if distance == 0 {
            return Err(Fault::Corrupt("a repeat offset of zero"));
        }
        if index == 1 {
            self.repeats[1] = self.repeats[0];
        } else {
            self.repeats[2] = self.repeats[1];
            self.repeats[1] = self.repeats[0];
        }
        self.repeats[0] = distance;
        Ok(distance)
    }
}

/// Bytes copied at once where there is room (short copies as one fixed-size move, not a call).
const WIDE: usize = 16;

/// Copies a block's literals and matches into the output.
struct Copier<'a> {
    literals: Literals<'a>,
    /// Literals copied so far.
    read: usize,
}

impl Copier<'_> {
    /// One sequence: `literal_len` literals, then `match_len` bytes from `distance` back.
    fn sequence(
        &mut self,
        output: &mut Output<'_>,
        literal_len: usize,
        distance: usize,
        match_len: usize,
    ) -> Result<(), Fault> {
        self.copy_literals(output, literal_len)?;
        let at = output.at;
        if distance > at - output.frame_start {
            return Err(Fault::Corrupt("a match reaching before the frame's start"));
        }
        // Literals kept at the end of the output must not be overwritten before they are read.
        let limit = match self.literals {
            Literals::Placed { start, .. } => start + self.read,
            Literals::Input(_) => output.out.len(),
        };
        if match_len > limit - at {
            return Err(Fault::Overflow);
        }
        let from = at - distance;
        let chunks = match_len.div_ceil(WIDE);
        if distance >= WIDE && chunks * WIDE <= limit - at {
            // Whole chunks, each from bytes already final: the last may write past the match
            // into bytes not made yet (and not literals waiting), which later sequences write.
            for chunk in 0..chunks {
                output.out.copy_within(from + chunk * WIDE..from + (chunk + 1) * WIDE, at + chunk * WIDE);
            }
        } else if distance >= match_len {
            output.out.copy_within(from..from + match_len, at);
        } else if match_len <= 2 * WIDE {
            for i in 0..match_len {
                output.out[at + i] = output.out[from + i];
            }
        } else {
            // An overlapping match repeats the last `distance` bytes: copy what is already
            // there, doubling each time.
            let mut done = 0;
            while done < match_len {
                let chunk = (at + done - from).min(match_len - done);
                output.out.copy_within(from..from + chunk, at + done);
                done += chunk;
            }
        }
        output.at = at + match_len;
        Ok(())
    }

    fn copy_literals(&mut self, output: &mut Output<'_>, len: usize) -> Result<(), Fault> {
        if len > self.literals.len() - self.read {
            return Err(Fault::Corrupt("sequences use more literals than the block has"));
        }
        let at = output.at;
        let read = self.read;
        match self.literals {
            Literals::Input(bytes) => {
                if len <= WIDE && at + WIDE <= output.out.len() && read + WIDE <= bytes.len() {
                    // One chunk; the bytes past the literals are not made yet.
                    output.out[at..at + WIDE].copy_from_slice(&bytes[read..read + WIDE]);
                } else {
                    let place = output.out.get_mut(at..at + len).ok_or(Fault::Overflow)?;
                    place.copy_from_slice(&bytes[read..read + len]);
                }
            }
            // At or after the output's next byte (the matches before them fitted): a forward
            // copy that may overlap.
            Literals::Placed { start, .. } => {
                let from = start + read;
                if len <= WIDE && from - at >= WIDE && from + WIDE <= output.out.len() {
                    // One chunk, ending before the literals still waiting.
                    output.out.copy_within(from..from + WIDE, at);
                } else {
                    output.out.copy_within(from..from + len, at);
                }
            }
        }
        self.read += len;
        output.at = at + len;
        Ok(())
    }

    fn rest_of_literals(&mut self, output: &mut Output<'_>) -> Result<(), Fault> {
        let left = self.literals.len() - self.read;
        self.copy_literals(output, left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_offsets_follow_the_format_rules() {
        let mut state = FrameState::NEW;
        // A new distance (value - 3) goes to the front.
        assert_eq!(state.repeat(3 + 100, 5), Ok(100));
        assert_eq!(state.repeats, [100, 1, 4]);
        // With literals: 1 is the first (no change), 2 the second (swapped), 3 the third.
        assert_eq!(state.repeat(1, 5), Ok(100));
        assert_eq!(state.repeats, [100, 1, 4]);
        assert_eq!(state.repeat(2, 5), Ok(1));
        assert_eq!(state.repeats, [1, 100, 4]);
        assert_eq!(state.repeat(3, 5), Ok(4));
        assert_eq!(state.repeats, [4, 1, 100]);
        // Without literals, shifted by one: 1 is the second, 2 the third, 3 the first minus one.
        assert_eq!(state.repeat(1, 0), Ok(1));
        assert_eq!(state.repeats, [1, 4, 100]);
        assert_eq!(state.repeat(2, 0), Ok(100));
        assert_eq!(state.repeats, [100, 1, 4]);
        assert_eq!(state.repeat(3, 0), Ok(99));
        assert_eq!(state.repeats, [99, 100, 1]);
        // The first minus one, when the first is 1: zero, refused.
        let mut state = FrameState::NEW;
        assert_eq!(state.repeat(3, 0), Err(Fault::Corrupt("a repeat offset of zero")));
    }

    #[test]
    fn sequence_counts_take_one_two_or_three_bytes() {
        assert_eq!(sequence_count(&[0, 9]), Ok((0, &[9][..])));
        assert_eq!(sequence_count(&[127]), Ok((127, &[][..])));
        assert_eq!(sequence_count(&[128, 200]), Ok((200, &[][..])));
        assert_eq!(sequence_count(&[254, 1]), Ok(((126 << 8) + 1, &[][..])));
        assert_eq!(sequence_count(&[255, 1, 2]), Ok((0x7F00 + 1 + 512, &[][..])));
        assert!(
            sequence_count(&[255, 1]).is_err()
                && sequence_count(&[130]).is_err()
                && sequence_count(&[]).is_err()
        );
    }
}
