//! Word-at-a-time mixing shared by the keyed hashes: the loader's name index
//! ([`crate::load`]'s `namehash`) and the module cache's key hasher ([`crate::cache::KeyedHasher`]).
//! Bytes are taken as little-endian 8-byte words (the last one zero-padded), one multiply each.

/// The multiplier of [`mix`] (the golden ratio's 64-bit fraction).
pub(crate) const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

/// One word into the state.
#[inline(always)]
pub(crate) const fn mix(state: u64, word: u64) -> u64 {
    (state ^ word).wrapping_mul(MULTIPLIER).rotate_left(29)
}

/// The first `bytes.len()` (1 to 7) bytes as a little-endian word, zero-padded; two or three
/// overlapping loads rather than a copy loop.
#[inline(always)]
pub(crate) fn tail_word(bytes: &[u8]) -> u64 {
    let len = bytes.len();
    match bytes {
        [] => 0,
        [first, ..] if len < 4 => {
            let mid = u64::from(bytes[len / 2]) << (8 * (len / 2));
            let last = u64::from(bytes[len - 1]) << (8 * (len - 1));
            u64::from(*first) | mid | last
        }
        _ => {
            let low = bytes.first_chunk::<4>().map_or(0, |b| u32::from_le_bytes(*b));
            let high = bytes.last_chunk::<4>().map_or(0, |b| u32::from_le_bytes(*b));
            u64::from(low) | u64::from(high) << (8 * (len - 4))
        }
    }
}

/// `bytes` into `state`, word by word.
#[inline(always)]
pub(crate) fn absorb(mut state: u64, bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        state = mix(state, u64::from_le_bytes(word.try_into().unwrap_or([0; 8])));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        state = mix(state, tail_word(rest));
    }
    state
}
