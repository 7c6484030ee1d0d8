//! Finite State Entropy tables (RFC 8878, "FSE"): a table description's normalized counts read
//! from the block, the decoding table spread from them, and a state walking it over a backward
//! bitstream. One table shape serves all four uses (literal lengths, match lengths, offsets up
//! to accuracy 9, Huffman weights up to 6), held inline: nothing is allocated.

use super::bits::{Backward, Forward};
use super::Fault;

/// The largest accuracy log any use allows (literal and match lengths).
pub(super) const MOST_LOG: u8 = 9;

/// Symbols a description may give counts to: every byte value (the Huffman weights'
/// description may count symbols it never decodes, as libzstd reads it; the sequence tables
/// stop at 53).
const MOST_SYMBOLS: usize = 256;

/// One state of a decoding table: the symbol it emits, and the next state's base and the bits
/// read to add to it.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(super) struct Cell {
    pub(super) symbol: u8,
    bits: u8,
    base: u16,
}

/// A decoding table of `1 << log` states.
#[derive(Clone)]
pub(super) struct Table {
    cells: [Cell; 1 << MOST_LOG],
    log: u8,
}

impl Table {
    /// A table that is not yet built (a repeat of it is refused until one is).
    pub(super) const EMPTY: Table =
        Table { cells: [Cell { symbol: 0, bits: 0, base: 0 }; 1 << MOST_LOG], log: 0 };

    /// The one-state table of RLE mode: always `symbol`, reading no bits.
    pub(super) fn rle(&mut self, symbol: u8) {
        self.log = 0;
        self.cells[0] = Cell { symbol, bits: 0, base: 0 };
    }

    /// Reads a description from the start of `data` (symbols up to `most_symbol`, accuracy up
    /// to `most_log`), builds the table from it, and returns the bytes the description took.
    pub(super) fn read(&mut self, data: &[u8], most_symbol: usize, most_log: u8) -> Result<usize, Fault> {
        let mut counts = [0i16; MOST_SYMBOLS];
        let (log, symbols, used) = read_counts(data, most_symbol, most_log, &mut counts)?;
        self.build(&counts[..symbols], log)?;
        Ok(used)
    }

    /// Builds the table of the normalized `counts` (-1: a symbol less probable than one state)
    /// at accuracy `log`, which must add up to `1 << log` states.
    pub(super) fn build(&mut self, counts: &[i16], log: u8) -> Result<(), Fault> {
        let size = 1usize << log;
        let total: usize = counts.iter().map(|&c| c.unsigned_abs() as usize).sum();
        if total != size || counts.len() > MOST_SYMBOLS || log > MOST_LOG {
            return Err(Fault::Corrupt("an FSE distribution does not fill its table"));
        }
        self.log = log;
        // Each symbol's next state number, starting at its count.
        let mut next = [0u16; MOST_SYMBOLS];
        // Symbols less probable than one state take one state each at the top.
        let mut high = size;
        for (symbol, &count) in counts.iter().enumerate() {
            if count == -1 {
                high -= 1;
                self.cells[high].symbol = symbol as u8;
                next[symbol] = 1;
            } else {
                next[symbol] = count.max(0) as u16;
            }
        }
        // The others spread over the rest, stepping so that a symbol's states scatter.
        let step = (size >> 1) + (size >> 3) + 3;
        let mut position = 0;
        for (symbol, &count) in counts.iter().enumerate() {
            for _ in 0..count.max(0) {
                self.cells[position].symbol = symbol as u8;
                position = (position + step) & (size - 1);
                while position >= high {
                    position = (position + step) & (size - 1);
                }
            }
        }
        for cell in &mut self.cells[..size] {
            let number = next[usize::from(cell.symbol)];
            next[usize::from(cell.symbol)] += 1;
            let bits = u32::from(log) - number.ilog2();
            cell.bits = bits as u8;
            cell.base = ((u32::from(number) << bits) - size as u32) as u16;
        }
        Ok(())
    }
}

/// A position in a table.
#[derive(Clone, Copy)]
pub(super) struct State(u16);

impl State {
    /// The first state: `log` bits of the stream.
    #[inline]
    pub(super) fn start(table: &Table, bits: &mut Backward<'_>) -> State {
        State(bits.read(u32::from(table.log)) as u16)
    }

    /// The symbol this state emits.
    #[inline]
    pub(super) fn symbol(self, table: &Table) -> u8 {
        table.cells[usize::from(self.0)].symbol
    }

    /// The next state, reading its bits.
    #[inline]
    pub(super) fn advance(&mut self, table: &Table, bits: &mut Backward<'_>) {
        let cell = table.cells[usize::from(self.0)];
        self.0 = cell.base + bits.read(u32::from(cell.bits)) as u16;
    }
}

/// Reads normalized counts from the start of `data` into `counts`: returns the accuracy log,
/// the number of symbols described and the bytes used.
fn read_counts(
    data: &[u8],
    most_symbol: usize,
    most_log: u8,
    counts: &mut [i16; MOST_SYMBOLS],
) -> Result<(u8, usize, usize), Fault> {
    let mut bits = Forward::new(data);
    let log = bits.read(4) as u8 + 5;
    if log > most_log {
        return Err(Fault::Corrupt("an FSE accuracy log beyond its use's limit"));
    }
    // States not yet given to a symbol, plus one; a count takes `width` or `width - 1` bits,
    // the width shrinking as the states left do.
    let mut remaining: i32 = (1 << log) + 1;
    let mut threshold: i32 = 1 << log;
    let mut width = u32::from(log) + 1;
    let mut symbol = 0usize;
    while remaining > 1 {
        if symbol > most_symbol {
            return Err(Fault::Corrupt("an FSE description gives counts past its last symbol"));
        }
        let short_values = 2 * threshold - 1 - remaining;
        let low = bits.peek(width - 1) as i32;
        let value = if low < short_values {
            bits.skip(width - 1);
            low
        } else {
            let full = bits.read(width) as i32;
            if full >= threshold {
                full - short_values
            } else {
                full
            }
        };
        let count = value - 1;
        counts[symbol] = count as i16;
        symbol += 1;
        remaining -= count.abs();
        if count == 0 {
            // Then 2-bit repeat counts of more zero-count symbols, 3 meaning "and more".
            loop {
                let repeat = bits.read(2) as usize;
                symbol += repeat;
                if symbol > most_symbol {
                    return Err(Fault::Corrupt("an FSE description gives counts past its last symbol"));
                }
                if repeat != 3 {
                    break;
                }
            }
        }
        if remaining <= 1 {
            break;
        }
        while remaining < threshold {
            width -= 1;
            threshold >>= 1;
        }
    }
    if remaining != 1 {
        return Err(Fault::Corrupt("an FSE description's counts do not add up to its table"));
    }
    Ok((log, symbol, bits.bytes_used()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_predefined_literal_lengths_spread_as_the_format_lists_them() {
        // RFC 8878 Appendix A lists the predefined literal-length table's first states.
        let mut table = Table::EMPTY;
        table.build(&super::super::sequences::LITERAL_LENGTHS_DEFAULT, 6).unwrap();
        let first: alloc::vec::Vec<(u8, u8, u16)> =
            table.cells[..6].iter().map(|c| (c.symbol, c.bits, c.base)).collect();
        assert_eq!(first, [(0, 4, 0), (0, 4, 16), (1, 5, 32), (3, 5, 0), (4, 5, 0), (6, 5, 0)]);
        // The less-probable symbols take the top states, the last symbol at the very top.
        assert_eq!((table.cells[63].symbol, table.cells[63].bits), (32, 6));
        assert_eq!((table.cells[60].symbol, table.cells[60].bits), (35, 6));
    }

    #[test]
    fn a_distribution_that_does_not_fill_its_table_is_refused() {
        let mut table = Table::EMPTY;
        assert!(table.build(&[20, 10], 5).is_err());
        assert!(table.build(&[20, 13], 5).is_err());
        assert!(table.build(&[32], 5).is_ok());
    }

    #[test]
    fn descriptions_beyond_their_limits_or_cut_short_are_refused() {
        let mut table = Table::EMPTY;
        // Accuracy 5 + 15 = 20.
        assert!(table.read(&[0x0F, 0, 0, 0], 35, 9).is_err());
        // Accuracy 5, then nothing: reads zeros past the end.
        assert!(table.read(&[0x00], 35, 9).is_err());
    }
}
