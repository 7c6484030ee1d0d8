//! [`GranuleBits`]: one bit per granule of a region (where live blocks start, where they end),
//! stored in chunks made when a bit in them is first set. A region is reserved large (4 MiB by
//! default: 262,144 granules of 16 bytes) and mostly empty: two flat bitmaps cost 64 KiB
//! zeroed, and faulted in, when the process's first region was made (its first load), where
//! chunks cost 512 bytes for each 64 KiB of the region that ever held a block.

use alloc::boxed::Box;
use alloc::vec::Vec;

/// Words (of 64 granules each) in a chunk.
const CHUNK_WORDS: usize = 64;

/// Granules a chunk covers.
const CHUNK_BITS: usize = CHUNK_WORDS * 64;

/// A chunk's words.
type Chunk = [u64; CHUNK_WORDS];

/// A bitmap of a fixed number of granules, all clear at first.
#[derive(Debug)]
pub(super) struct GranuleBits {
    /// Chunk `i` holds granules `i * CHUNK_BITS..`; `None` while all of them are clear.
    chunks: Vec<Option<Box<Chunk>>>,
}

impl GranuleBits {
    /// `granules` clear bits (no chunk made yet).
    pub(super) fn new(granules: usize) -> Self {
        let mut chunks = Vec::new();
        chunks.resize_with(granules.div_ceil(CHUNK_BITS), || None);
        Self { chunks }
    }

    /// Whether bit `granule` is set.
    pub(super) fn get(&self, granule: usize) -> bool {
        self.chunk(granule / CHUNK_BITS)
            .is_some_and(|chunk| chunk[granule % CHUNK_BITS / 64] >> (granule % 64) & 1 == 1)
    }

    /// Sets (`on`) or clears bit `granule` (one past the bitmap's end is a caller's bug: the
    /// bit is not kept, and debug builds stop).
    pub(super) fn set(&mut self, granule: usize, on: bool) {
        let Some(slot) = self.chunks.get_mut(granule / CHUNK_BITS) else {
            debug_assert!(false, "granule {granule} outside the bitmap");
            return;
        };
        let (word, bit) = (granule % CHUNK_BITS / 64, 1u64 << (granule % 64));
        match slot {
            Some(chunk) if on => chunk[word] |= bit,
            Some(chunk) => chunk[word] &= !bit,
            None if on => {
                let mut chunk = Box::new([0; CHUNK_WORDS]);
                chunk[word] = bit;
                *slot = Some(chunk);
            }
            None => {}
        }
    }

    /// The first set bit at or after `granule`.
    pub(super) fn first_at_or_after(&self, granule: usize) -> Option<usize> {
        let mut mask = u64::MAX << (granule % 64);
        let mut word = granule / 64;
        while word / CHUNK_WORDS < self.chunks.len() {
            let Some(chunk) = self.chunk(word / CHUNK_WORDS) else {
                // A clear chunk: on to the next one's first word.
                word = (word / CHUNK_WORDS + 1) * CHUNK_WORDS;
                mask = u64::MAX;
                continue;
            };
            let bits = chunk[word % CHUNK_WORDS] & mask;
            if bits != 0 {
                return Some(word * 64 + bits.trailing_zeros() as usize);
            }
            word += 1;
            mask = u64::MAX;
        }
        None
    }

    /// The last set bit at or before `granule`.
    pub(super) fn last_at_or_before(&self, granule: usize) -> Option<usize> {
        let mut mask = u64::MAX >> (63 - granule % 64);
        let mut word = granule / 64;
        loop {
            match self.chunk(word / CHUNK_WORDS) {
                Some(chunk) => {
                    let bits = chunk[word % CHUNK_WORDS] & mask;
                    if bits != 0 {
                        return Some(word * 64 + 63 - bits.leading_zeros() as usize);
                    }
                    word = word.checked_sub(1)?;
                }
                // A clear chunk: on to the previous one's last word.
                None => word = (word / CHUNK_WORDS * CHUNK_WORDS).checked_sub(1)?,
            }
            mask = u64::MAX;
        }
    }

    /// How many chunks hold bits (memory taken: each is `CHUNK_WORDS` words).
    #[cfg(test)]
    pub(super) fn chunks_made(&self) -> usize {
        self.chunks.iter().filter(|chunk| chunk.is_some()).count()
    }

    /// Chunk `index`, if made.
    fn chunk(&self, index: usize) -> Option<&Chunk> {
        self.chunks.get(index).and_then(Option::as_deref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_found_across_words_and_clear_chunks_in_both_directions() {
        let mut bits = GranuleBits::new(10 * CHUNK_BITS + 5);
        assert_eq!((bits.first_at_or_after(0), bits.last_at_or_before(10 * CHUNK_BITS + 4)), (None, None));
        let far = 7 * CHUNK_BITS + 130;
        for granule in [3, 64, far] {
            bits.set(granule, true);
        }
        assert_eq!(bits.chunks_made(), 2, "only the chunks holding bits are made");
        assert!(bits.get(3) && bits.get(64) && bits.get(far) && !bits.get(4) && !bits.get(far + 1));
        assert_eq!(bits.first_at_or_after(0), Some(3));
        assert_eq!(bits.first_at_or_after(4), Some(64));
        assert_eq!(bits.first_at_or_after(65), Some(far), "over clear words and clear chunks");
        assert_eq!(bits.first_at_or_after(far + 1), None);
        assert_eq!(bits.last_at_or_before(10 * CHUNK_BITS + 4), Some(far));
        assert_eq!(bits.last_at_or_before(far - 1), Some(64), "over clear chunks back");
        assert_eq!(bits.last_at_or_before(63), Some(3));
        assert_eq!(bits.last_at_or_before(2), None);
        bits.set(64, false);
        bits.set(CHUNK_BITS * 3, false); // clearing in a clear chunk makes none
        assert_eq!((bits.first_at_or_after(4), bits.chunks_made()), (Some(far), 2));
        assert_eq!(bits.last_at_or_before(far - 1), Some(3));
    }
}
