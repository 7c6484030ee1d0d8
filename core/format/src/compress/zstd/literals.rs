//! A compressed block's literals section (RFC 8878, "Literals Section"): raw (read where they
//! lie in the input), RLE, or Huffman-coded in one or four streams with a tree described in the
//! block or repeated from the frame's previous one. Decoded literals are placed at the very end
//! of the output buffer, where no byte of this block can be written before they are read (the
//! sequences check it as they copy), so a block needs no buffer of its own.

use super::bits::{Backward, FILLED};
use super::fse::{State, Table};
use super::output::Output;
use super::{Fault, MOST_BLOCK};

/// The longest Huffman code (`Max_Number_of_Bits`).
const MOST_BITS: u32 = 11;

/// Where a block's literals are.
#[derive(Clone, Copy)]
pub(super) enum Literals<'a> {
    /// Stored raw in the block.
    Input(&'a [u8]),
    /// Decoded into `out[start..start + len]`.
    Placed { start: usize, len: usize },
}

impl Literals<'_> {
    pub(super) fn len(&self) -> usize {
        match self {
            Literals::Input(bytes) => bytes.len(),
            Literals::Placed { len, .. } => *len,
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Code {
    symbol: u8,
    bits: u8,
}

/// A Huffman decoding table: indexed by the next `max_bits` bits of a stream.
pub(super) struct Huffman {
    codes: [Code; 1 << MOST_BITS],
    max_bits: u32,
    built: bool,
}

impl Huffman {
    pub(super) const NEW: Huffman =
        Huffman { codes: [Code { symbol: 0, bits: 0 }; 1 << MOST_BITS], max_bits: 0, built: false };

    /// A new frame: no tree to repeat.
    pub(super) fn reset(&mut self) {
        self.built = false;
    }
}

/// Reads the literals section at the start of `block`: where the literals are, and the bytes
/// after the section.
pub(super) fn read<'a>(
    block: &'a [u8],
    huffman: &mut Huffman,
    output: &mut Output<'_>,
) -> Result<(Literals<'a>, &'a [u8]), Fault> {
    let short = Fault::Corrupt("a literals section cut short");
    let first = *block.first().ok_or(short)?;
    let byte = |i: usize| block.get(i).copied().map(usize::from).ok_or(short);
    let kind = first & 3;
    let format = (first >> 2) & 3;
    if kind < 2 {
        let (len, header) = match format {
            0 | 2 => (usize::from(first >> 3), 1),
            1 => (usize::from(first >> 4) + (byte(1)? << 4), 2),
            _ => (usize::from(first >> 4) + (byte(1)? << 4) + (byte(2)? << 12), 3),
        };
        if len > MOST_BLOCK {
            return Err(Fault::Corrupt("more literals than a block holds"));
        }
        let body = &block[header..];
        if kind == 0 {
            let bytes = body.get(..len).ok_or(short)?;
            return Ok((Literals::Input(bytes), &body[len..]));
        }
        let (&value, rest) = body.split_first().ok_or(short)?;
        let (start, place) = place(output, len)?;
        place.fill(value);
        return Ok((Literals::Placed { start, len }, rest));
    }
    let (header, width, streams) = match format {
        0 => (3, 10, 1),
        1 => (3, 10, 4),
        2 => (4, 14, 4),
        _ => (5, 18, 4),
    };
    let sizes = (0..header)
        .try_fold(0u64, |v, i| -> Result<u64, Fault> { Ok(v | ((byte(i)? as u64) << (8 * i))) })?;
    let len = ((sizes >> 4) & ((1 << width) - 1)) as usize;
    let stored = ((sizes >> (4 + width)) & ((1 << width) - 1)) as usize;
    if len > MOST_BLOCK {
        return Err(Fault::Corrupt("more literals than a block holds"));
    }
    let data = block.get(header..header + stored).ok_or(short)?;
    let rest = &block[header + stored..];
    let streams_data = if kind == 2 {
        &data[huffman.read_tree(data)?..]
    } else if huffman.built {
        data
    } else {
        return Err(Fault::Corrupt("literals repeating a Huffman tree no block has described"));
    };
    if streams == 4 && len < 6 {
        // As libzstd: four streams of fewer than 6 literals are not split that way.
        return Err(Fault::Corrupt("four Huffman streams for fewer than 6 literals"));
    }
    let (start, place) = place(output, len)?;
    if streams == 1 {
        huffman.decode(streams_data, place)?;
    } else {
        huffman.decode_four(streams_data, place)?;
    }
    Ok((Literals::Placed { start, len }, rest))
}

/// The last `len` bytes of the output, where decoded literals wait: [`Fault::Overflow`] if the
/// block's output would not fit.
fn place<'o>(output: &'o mut Output<'_>, len: usize) -> Result<(usize, &'o mut [u8]), Fault> {
    let total = output.out.len();
    if len > total - output.at {
        return Err(Fault::Overflow);
    }
    Ok((total - len, &mut output.out[total - len..]))
}

impl Huffman {
    /// Reads a tree description at the start of `data` and builds the table; returns the bytes
    /// it took.
    fn read_tree(&mut self, data: &[u8]) -> Result<usize, Fault> {
        let short = Fault::Corrupt("a Huffman tree description cut short");
        let (&header, rest) = data.split_first().ok_or(short)?;
        let mut weights = [0u8; 256];
        let (count, used) = if header >= 128 {
            // Four bits a weight, the first in the high half.
            let count = usize::from(header) - 127;
            let packed = rest.get(..count.div_ceil(2)).ok_or(short)?;
            for (i, weight) in weights[..count].iter_mut().enumerate() {
                let byte = packed[i / 2];
                *weight = if i % 2 == 0 { byte >> 4 } else { byte & 15 };
            }
            (count, 1 + packed.len())
        } else {
            let stored = rest.get(..usize::from(header)).ok_or(short)?;
            (fse_weights(stored, &mut weights)?, 1 + stored.len())
        };
        self.build(&mut weights, count)?;
        Ok(used)
    }

    /// Builds the table from the `count` weights given (the last symbol's is implied: the one
    /// that fills the code space to a power of two).
    fn build(&mut self, weights: &mut [u8; 256], count: usize) -> Result<(), Fault> {
        let bad = Fault::Corrupt("Huffman weights that do not make a prefix code");
        let mut total = 0u32;
        for &weight in &weights[..count] {
            if u32::from(weight) > MOST_BITS {
                return Err(bad);
            }
            if weight > 0 {
                total += 1 << (weight - 1);
            }
        }
        if total == 0 || count >= 256 {
            return Err(bad);
        }
        let max_bits = total.ilog2() + 1;
        let left = (1u32 << max_bits) - total;
        if max_bits > MOST_BITS || !left.is_power_of_two() {
            return Err(bad);
        }
        weights[count] = (left.ilog2() + 1) as u8;
        // A prefix code has an even number of longest codes, at least two (as libzstd checks).
        let longest = weights[..=count].iter().filter(|&&w| w == 1).count();
        if longest < 2 || longest % 2 == 1 {
            return Err(bad);
        }
        // Codes in order of weight, then of symbol; a weight-w symbol has 2^(w-1) entries.
        let mut position = 0;
        for weight in 1..=max_bits as u8 {
            for (symbol, _) in weights[..=count].iter().enumerate().filter(|(_, &w)| w == weight) {
                let entries = 1usize << (weight - 1);
                let code = Code { symbol: symbol as u8, bits: max_bits as u8 + 1 - weight };
                self.codes[position..position + entries].fill(code);
                position += entries;
            }
        }
        self.max_bits = max_bits;
        self.built = true;
        Ok(())
    }

    /// Decodes one stream, exactly filling `place`.
    fn decode(&self, stream: &[u8], place: &mut [u8]) -> Result<(), Fault> {
        let mut bits = huffman_stream(stream)?;
        let done = self.decode_held(core::slice::from_mut(&mut bits), &mut [&mut place[..]]);
        self.finish(&mut bits, &mut place[done..])
    }

    /// Decodes four streams after their jump table, each filling its quarter of `place`.
    fn decode_four(&self, data: &[u8], place: &mut [u8]) -> Result<(), Fault> {
        let bad = Fault::Corrupt("a four-stream jump table past its literals");
        let (jumps, streams) = data.split_first_chunk::<6>().ok_or(bad)?;
        let quarter = place.len().div_ceil(4);
        if 3 * quarter > place.len() {
            return Err(bad);
        }
        let size = |k: usize| usize::from(u16::from_le_bytes([jumps[2 * k], jumps[2 * k + 1]]));
        let (first, rest) = streams.split_at_checked(size(0)).ok_or(bad)?;
        let (second, rest) = rest.split_at_checked(size(1)).ok_or(bad)?;
        let (third, fourth) = rest.split_at_checked(size(2)).ok_or(bad)?;
        let mut bits = [
            huffman_stream(first)?,
            huffman_stream(second)?,
            huffman_stream(third)?,
            huffman_stream(fourth)?,
        ];
        let (one, rest) = place.split_at_mut(quarter);
        let (two, rest) = rest.split_at_mut(quarter);
        let (three, four) = rest.split_at_mut(quarter);
        let mut parts = [one, two, three, four];
        // The four in step while all have bits held (independent work for the processor),
        // then each to its end.
        let done = self.decode_held(&mut bits, &mut parts);
        for (stream, part) in bits.iter_mut().zip(parts) {
            self.finish(stream, &mut part[done..])?;
        }
        Ok(())
    }

    /// Decodes from each stream into its part in step, a run of symbols at a time while every
    /// stream holds the bits of a whole run and every part has room for one: the symbols each
    /// part received.
    #[inline]
    fn decode_held(&self, streams: &mut [Backward<'_>], parts: &mut [&mut [u8]]) -> usize {
        let max_bits = self.max_bits;
        let run = (FILLED / max_bits) as usize;
        let shortest = parts.iter().map(|part| part.len()).min().unwrap_or(0);
        let mut done = 0;
        while done + run <= shortest && streams.iter_mut().all(|bits| bits.fill() >= FILLED) {
            for (bits, part) in streams.iter_mut().zip(parts.iter_mut()) {
                for byte in &mut part[done..done + run] {
                    let code = self.codes[bits.peek_held(max_bits) as usize];
                    *byte = code.symbol;
                    bits.skip_held(u32::from(code.bits));
                }
            }
            done += run;
        }
        done
    }

    /// Decodes the rest of a stream into `place` one symbol at a time, reading zeros past its
    /// start, and checks it ends exactly there.
    fn finish(&self, bits: &mut Backward<'_>, place: &mut [u8]) -> Result<(), Fault> {
        for byte in place.iter_mut() {
            let code = self.codes[bits.peek(self.max_bits) as usize];
            *byte = code.symbol;
            bits.skip(u32::from(code.bits));
        }
        if !bits.is_exactly_consumed() {
            return Err(Fault::Corrupt("a Huffman stream not read exactly to its start"));
        }
        Ok(())
    }
}

/// FSE-coded weights (two interleaved states over one stream): their count.
fn fse_weights(stored: &[u8], weights: &mut [u8; 256]) -> Result<usize, Fault> {
    let mut table = Table::EMPTY;
    // Symbols up to 255 may be counted, as libzstd reads it; a weight past the longest code
    // is refused once decoded (`Huffman::build`).
    let used = table.read(stored, 255, 6)?;
    let mut bits = Backward::new(&stored[used..])?;
    let mut states = [State::start(&table, &mut bits), State::start(&table, &mut bits)];
    let mut count = 0;
    let mut push = |weight: u8| {
        *weights
            .get_mut(count)
            .filter(|_| count < 255)
            .ok_or(Fault::Corrupt("more than 255 Huffman weights"))? = weight;
        count += 1;
        Ok::<(), Fault>(())
    };
    // Each state in turn emits and advances; once the stream is overdrawn, the other state
    // emits its last symbol and the weights end.
    for turn in 0.. {
        let (this, other) = (turn % 2, 1 - turn % 2);
        push(states[this].symbol(&table))?;
        states[this].advance(&table, &mut bits);
        if bits.overshot() {
            push(states[other].symbol(&table))?;
            break;
        }
    }
    Ok(count)
}

/// The bits of a Huffman stream (its last byte without the marker named as a Huffman
/// stream's: libzstd's fast decoder lets that one through, where the RFC refuses it).
fn huffman_stream(data: &[u8]) -> Result<Backward<'_>, Fault> {
    Backward::named(data, "a Huffman stream's last byte has no marker bit")
}
