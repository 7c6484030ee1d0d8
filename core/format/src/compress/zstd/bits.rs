//! Zstandard's two bit orders (RFC 8878, "Bitstreams"): table descriptions are read forward,
//! lowest bit first ([`Forward`]); Huffman and FSE streams are written forward and read
//! backward, from a marker bit in their last byte down to their first bit ([`Backward`]).
//! Reads past either end give zeros and are remembered, so a caller checks once, at the end,
//! that a stream held exactly what it decoded.

use super::Fault;

/// The low `n` bits set (`n` at most 63).
const fn mask(n: u32) -> u64 {
    (1u64 << n) - 1
}

/// Bits read forward, lowest first, from the start of `data`.
pub(super) struct Forward<'a> {
    data: &'a [u8],
    /// Bits read so far (may pass the end: those bits read as zero).
    position: usize,
}

impl<'a> Forward<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Forward { data, position: 0 }
    }

    /// The next `n` bits (at most 25) without consuming them.
    pub(super) fn peek(&self, n: u32) -> u32 {
        let byte = self.position / 8;
        let mut word = 0u32;
        for i in 0..4 {
            let value = self.data.get(byte + i).copied().unwrap_or(0);
            word |= u32::from(value) << (8 * i);
        }
        ((word >> (self.position % 8)) as u64 & mask(n)) as u32
    }

    pub(super) fn skip(&mut self, n: u32) {
        self.position += n as usize;
    }

    /// The next `n` bits (at most 25).
    pub(super) fn read(&mut self, n: u32) -> u32 {
        let value = self.peek(n);
        self.skip(n);
        value
    }

    /// Whole bytes the bits read so far take, or [`Fault::Corrupt`] if they ran past the end.
    pub(super) fn bytes_used(&self) -> Result<usize, Fault> {
        let bytes = self.position.div_ceil(8);
        if bytes > self.data.len() {
            return Err(Fault::Corrupt("a table description runs past its block"));
        }
        Ok(bytes)
    }
}

/// Bits a refill leaves held at least (unless the stream runs out): a Huffman run or a
/// sequence's state updates read within them without checking.
pub(super) const FILLED: u32 = 56;

/// Bits read backward: from below the marker (the highest set bit of the last byte) down to
/// the first byte's lowest bit.
pub(super) struct Backward<'a> {
    /// `data[..unread]` is not in `held` yet.
    data: &'a [u8],
    unread: usize,
    /// The next bit is bit `held - 1`; bits above `held` are stale.
    container: u64,
    held: u32,
    /// Bits asked for beyond the stream's start.
    overshot: bool,
}

impl<'a> Backward<'a> {
    /// A stream over all of `data`, which must end in a byte holding the marker.
    pub(super) fn new(data: &'a [u8]) -> Result<Self, Fault> {
        Self::named(data, "a bitstream's last byte has no marker bit")
    }

    /// [`Backward::new`], a last byte without the marker refused as `unmarked` says.
    pub(super) fn named(data: &'a [u8], unmarked: &'static str) -> Result<Self, Fault> {
        let Some((&last, rest)) = data.split_last() else {
            return Err(Fault::Corrupt("an empty bitstream"));
        };
        if last == 0 {
            return Err(Fault::Corrupt(unmarked));
        }
        let held = 7 - last.leading_zeros();
        let mut bits =
            Backward { data, unread: rest.len(), container: u64::from(last), held, overshot: false };
        bits.refill();
        Ok(bits)
    }

    /// Loads whole bytes until at least [`FILLED`] bits are held or the data is all loaded;
    /// never more than 63 (a shift by the bits held stays below 64).
    #[inline]
    fn refill(&mut self) {
        if self.held >= FILLED {
            return;
        }
        if let Some(word) = self.data[..self.unread].last_chunk::<8>() {
            let word = u64::from_le_bytes(*word);
            // 1 to 7 bytes: what fits below 64 bits.
            let bytes = (63 - self.held) / 8;
            self.container = (self.container << (8 * bytes)) | (word >> (64 - 8 * bytes));
            self.held += 8 * bytes;
            self.unread -= bytes as usize;
            return;
        }
        while self.held < FILLED && self.unread > 0 {
            self.unread -= 1;
            self.container = (self.container << 8) | u64::from(self.data[self.unread]);
            self.held += 8;
        }
    }

    /// Loads what it can and returns the bits held: at least [`FILLED`], unless the stream is
    /// nearly read (a caller then reads through [`Backward::peek`]).
    #[inline]
    pub(super) fn fill(&mut self) -> u32 {
        self.refill();
        self.held
    }

    /// The next `n` bits when at least `n` are held (after [`Backward::fill`]).
    #[inline]
    pub(super) fn peek_held(&self, n: u32) -> u64 {
        (self.container >> (self.held - n)) & mask(n)
    }

    /// Consumes `n` bits when at least `n` are held.
    #[inline]
    pub(super) fn skip_held(&mut self, n: u32) {
        self.held -= n;
    }

    /// The next `n` bits (at most 56), zeros past the start, without consuming them.
    #[inline]
    pub(super) fn peek(&mut self, n: u32) -> u64 {
        if self.held < n {
            self.refill();
            if self.held < n {
                return (self.container << (n - self.held)) & mask(n);
            }
        }
        (self.container >> (self.held - n)) & mask(n)
    }

    /// Consumes `n` bits (at most 56) already peeked.
    #[inline]
    pub(super) fn skip(&mut self, n: u32) {
        if n > self.held {
            self.overshot = true;
            self.held = 0;
        } else {
            self.held -= n;
        }
    }

    /// The next `n` bits (at most 56).
    #[inline]
    pub(super) fn read(&mut self, n: u32) -> u64 {
        if self.held >= n {
            self.held -= n;
            return (self.container >> self.held) & mask(n);
        }
        self.read_refilled(n)
    }

    /// [`Backward::read`] when fewer than `n` bits are held.
    #[inline(never)]
    fn read_refilled(&mut self, n: u32) -> u64 {
        let value = self.peek(n);
        self.skip(n);
        value
    }

    /// Whether more bits were asked for than the stream holds.
    pub(super) fn overshot(&self) -> bool {
        self.overshot
    }

    /// Whether every bit was read, and none beyond.
    pub(super) fn is_exactly_consumed(&self) -> bool {
        !self.overshot && self.held == 0 && self.unread == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_bits_come_lowest_first_and_zeros_past_the_end() {
        let mut bits = Forward::new(&[0b1010_0110, 0xFF]);
        assert_eq!(bits.read(3), 0b110);
        assert_eq!(bits.read(5), 0b10100);
        assert_eq!(bits.read(4), 0xF);
        assert_eq!(bits.bytes_used(), Ok(2));
        assert_eq!(bits.read(8), 0x0F);
        assert!(bits.bytes_used().is_err());
    }

    #[test]
    fn backward_bits_start_below_the_marker_and_end_exactly() {
        // Written forward: 0b1_0110 then 0b011, marker above: last byte 0b0000_1011 holds
        // marker (bit 3) and 0b011; first byte holds 0xB6.
        let data = [0xB6, 0b0000_1011];
        let mut bits = Backward::new(&data).unwrap();
        assert_eq!(bits.read(3), 0b011);
        assert_eq!(bits.read(4), 0xB);
        assert!(!bits.is_exactly_consumed());
        assert_eq!(bits.read(4), 0x6);
        assert!(bits.is_exactly_consumed());
        assert_eq!(bits.read(2), 0);
        assert!(bits.overshot() && !bits.is_exactly_consumed());
    }

    #[test]
    fn backward_bits_across_many_refills_match_a_bit_by_bit_reading() {
        let data: alloc::vec::Vec<u8> = (1..=40u8).map(|i| i.wrapping_mul(37) | 1).collect();
        let total = (data.len() - 1) * 8 + (7 - data[39].leading_zeros() as usize);
        let bit = |i: usize| (data[i / 8] >> (i % 8)) & 1;
        let mut bits = Backward::new(&data).unwrap();
        let mut next = total;
        for width in [1u32, 7, 13, 31, 56, 3, 0, 17, 24, 9].iter().cycle() {
            if next < *width as usize {
                break;
            }
            let expected = (0..*width as usize).fold(0u64, |v, k| (v << 1) | u64::from(bit(next - 1 - k)));
            assert_eq!(bits.read(*width), expected, "{width} bits below {next}");
            next -= *width as usize;
        }
        assert!(!bits.overshot());
        bits.read(next as u32);
        assert!(bits.is_exactly_consumed());
    }

    #[test]
    fn a_last_byte_holding_only_its_marker_then_reads_of_no_bits_stay_in_range() {
        // The marker alone in the last byte: the first refill loads whole bytes only, so at
        // most 63 bits are held and a read of 0 bits shifts by less than 64.
        let mut data = [0xAB; 17];
        data[16] = 0x01;
        let mut bits = Backward::new(&data).unwrap();
        assert_eq!(bits.read(0), 0);
        assert!((FILLED..64).contains(&bits.fill()), "{}", bits.fill());
        assert_eq!(bits.peek_held(0), 0);
        assert_eq!(bits.read(8), 0xAB);
        assert_eq!(bits.read(16), 0xABAB);
    }

    #[test]
    fn a_stream_without_a_marker_is_refused() {
        assert!(Backward::new(&[]).is_err());
        assert!(Backward::new(&[5, 0]).is_err());
    }
}
