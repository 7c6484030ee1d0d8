//! Little-endian reads at explicit offsets and checked range arithmetic.
//!
//! Everything that reads file bytes goes through these helpers: they never index out of bounds
//! (they return `None` instead), never cast pointers and never read unaligned structs.

/// `bytes[at..at+N]` as an array, or `None` when it does not fit.
#[inline]
pub(crate) fn array_at<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    let end = at.checked_add(N)?;
    bytes.get(at..end)?.try_into().ok()
}

/// Little-endian `u16` at `at`.
#[inline]
pub(crate) fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    array_at(bytes, at).map(u16::from_le_bytes)
}

/// Little-endian `u32` at `at`.
#[inline]
pub(crate) fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    array_at(bytes, at).map(u32::from_le_bytes)
}

/// Little-endian `u64` at `at`.
#[inline]
pub(crate) fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    array_at(bytes, at).map(u64::from_le_bytes)
}

/// Little-endian `i64` at `at`.
#[inline]
pub(crate) fn i64_at(bytes: &[u8], at: usize) -> Option<i64> {
    array_at(bytes, at).map(i64::from_le_bytes)
}

/// The byte range `start..start+len` if it lies within `0..limit`, with every step checked.
#[inline]
pub(crate) fn range_within(start: u64, len: u64, limit: u64) -> Option<core::ops::Range<usize>> {
    let end = start.checked_add(len)?;
    if end > limit {
        return None;
    }
    Some(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
}

/// `value` rounded up to a multiple of `align` (a power of two); `None` on overflow.
pub const fn align_up(value: usize, align: usize) -> Option<usize> {
    match value.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// A cursor over a byte slice for length-prefixed formats (templates, template meta).
#[derive(Clone, Debug)]
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) const fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    pub(crate) const fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.take(2).and_then(|b| u16_at(b, 0))
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take(4).and_then(|b| u32_at(b, 0))
    }

    /// A `u32` length followed by that many bytes.
    pub(crate) fn text(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u32()?).ok()?;
        self.take(len)
    }
}

/// Where the first NUL of `bytes` is, found eight bytes at a time; `None` if there is none.
#[inline(always)]
pub(crate) fn nul_at(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..).and_then(|b| b.first_chunk::<8>()) {
        let word = u64::from_le_bytes(*chunk);
        // The lowest set bit marks the first zero byte (higher ones may be false alarms).
        let zeros = word.wrapping_sub(ONES) & !word & HIGHS;
        if zeros != 0 {
            return Some(at + (zeros.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    // Fewer than eight bytes left: the NUL, if any, is among them.
    Some(at + bytes.get(at..)?.iter().position(|&b| b == 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_refuse_to_run_past_the_end() {
        let b = [1u8, 2, 3, 4, 5];
        assert_eq!(u32_at(&b, 0), Some(0x0403_0201));
        assert_eq!(u32_at(&b, 1), Some(0x0504_0302));
        assert_eq!(u32_at(&b, 2), None);
        assert_eq!(u64_at(&b, 0), None);
        assert_eq!(u16_at(&b, usize::MAX), None);
    }

    #[test]
    fn ranges_are_overflow_checked() {
        assert_eq!(range_within(2, 3, 5), Some(2..5));
        assert_eq!(range_within(2, 4, 5), None);
        assert_eq!(range_within(u64::MAX, 2, u64::MAX), None);
    }

    #[test]
    fn cursor_reads_length_prefixed_text() {
        let b = [3, 0, 0, 0, b'a', b'b', b'c', 9];
        let mut c = Cursor::new(&b);
        assert_eq!(c.text(), Some(&b"abc"[..]));
        assert_eq!(c.u8(), Some(9));
        assert_eq!(c.u8(), None);
        let huge = [0xff, 0xff, 0xff, 0xff];
        assert_eq!(Cursor::new(&huge).text(), None);
    }

    #[test]
    fn the_first_nul_is_found_wherever_it_lies() {
        // Bytes 0x01.. and bytes with the high bit set (0x80.., 0x01 after 0x80: the word
        // trick's false alarms lie above the first zero byte, never below it).
        for base in [1u8, 0x80, 0xFF] {
            let long: alloc::vec::Vec<u8> = (0..40u8).map(|i| base.wrapping_add(i) | 1).collect();
            for len in 0..=long.len() {
                let name = &long[..len];
                let mut padded = name.to_vec();
                padded.extend_from_slice(b"\0tail bytes");
                assert_eq!(nul_at(&padded), Some(len), "len {len}, then more");
                let mut last = name.to_vec();
                last.push(0);
                assert_eq!(nul_at(&last), Some(len), "len {len} at the end");
                assert_eq!(nul_at(name), None, "len {len} without a NUL");
            }
        }
    }
}
