//! The hash of the loaded-symbol index: keyed and word-at-a-time.
//!
//! Files store FNV-1a hashes, which the loader never trusts; the index uses its own hash of the
//! names it validated. Two reasons not to recompute FNV-1a for it:
//! - speed: FNV-1a is one dependent multiply per byte, and real symbol names (mangled paths)
//!   run to dozens of bytes; this hash takes eight bytes per multiply;
//! - hostile files: FNV-1a has no key, so a file can be built whose names all land in one
//!   bucket chain, making indexing quadratic. The key here is drawn once per process from the
//!   kernel's random pool, so no file can be prepared against it.
//!
//! A name is hashed as its little-endian 8-byte words (the last one zero-padded), then its
//! length. [`hash_until_nul`] finds the end of a NUL-terminated name eight bytes at a time
//! while hashing it, and agrees with [`hash`] of the name.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::wordhash::{absorb, mix, tail_word, MULTIPLIER};

const FINAL_MULTIPLIER: u64 = 0xD6E8_FEB8_6659_FD93;
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The process's key (0 until first drawn; a drawn key is never 0).
static KEY: AtomicU64 = AtomicU64::new(0);

/// The key of this process's index hashes.
#[inline]
pub(crate) fn key() -> u64 {
    match KEY.load(Ordering::Relaxed) {
        0 => draw_key(),
        key => key,
    }
}

#[cold]
fn draw_key() -> u64 {
    // Without the kernel's pool, the address-space layout is the best entropy at hand.
    let local = 0u8;
    let fallback = (&raw const local as u64).rotate_left(32) ^ (&raw const KEY as u64);
    let drawn = crate::sys::random_u64().unwrap_or(fallback).wrapping_mul(MULTIPLIER) | 1;
    // Racing threads may each draw one: the first stored wins, so every hash agrees.
    match KEY.compare_exchange(0, drawn, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => drawn,
        Err(stored) => stored,
    }
}

/// The high half of a product depends on every bit of the state (the index takes the hash's
/// low bits as its bucket).
#[inline(always)]
const fn finish(state: u64, len: usize) -> u32 {
    ((state ^ len as u64).wrapping_mul(FINAL_MULTIPLIER) >> 32) as u32
}

/// A name of at most eight bytes as one little-endian word, zero-padded; `None` for a longer
/// name.
#[inline(always)]
pub(crate) fn short_word(name: &[u8]) -> Option<u64> {
    match name.first_chunk::<8>() {
        Some(word) if name.len() == 8 => Some(u64::from_le_bytes(*word)),
        Some(_) => None,
        None => Some(tail_word(name)),
    }
}

/// A mask of the low `len` bytes of a word (`len` at most 8).
#[inline(always)]
pub(crate) const fn low_bytes(len: usize) -> u64 {
    if len >= 8 {
        u64::MAX
    } else {
        (1 << (8 * len)) - 1
    }
}

/// The [`hash`] of a name of `len` (at most eight) bytes whose [`short_word`] is `word`.
#[inline(always)]
pub(crate) const fn hash_short(key: u64, word: u64, len: usize) -> u32 {
    finish(if len == 0 { key } else { mix(key, word) }, len)
}

/// The index hash of `name` under `key`.
#[inline(always)]
pub(crate) fn hash(key: u64, name: &[u8]) -> u32 {
    if let Some(word) = short_word(name) {
        return hash_short(key, word, name.len());
    }
    finish(absorb(key, name), name.len())
}

/// The length and [`hash`] of the NUL-terminated name at the start of `bytes`, in one pass;
/// `None` if `bytes` holds no NUL.
#[inline(always)]
pub(crate) fn hash_until_nul(key: u64, bytes: &[u8]) -> Option<(usize, u32)> {
    let mut state = key;
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..).and_then(|b| b.first_chunk::<8>()) {
        let word = u64::from_le_bytes(*chunk);
        // The lowest set bit marks the first zero byte (higher ones may be false alarms).
        let zeros = word.wrapping_sub(ONES) & !word & HIGHS;
        if zeros != 0 {
            let len = (zeros.trailing_zeros() / 8) as usize;
            if len > 0 {
                state = mix(state, word & (u64::MAX >> (64 - 8 * len)));
            }
            return Some((at + len, finish(state, at + len)));
        }
        state = mix(state, word);
        at += 8;
    }
    // Fewer than eight bytes left: the NUL, if any, is among them.
    let rest = bytes.get(at..)?;
    let len = rest.iter().position(|&b| b == 0)?;
    if len > 0 {
        state = mix(state, tail_word(&rest[..len]));
    }
    Some((at + len, finish(state, at + len)))
}

#[cfg(test)]
mod tests {
    use super::{hash, hash_until_nul, key, low_bytes, short_word, tail_word};

    #[test]
    fn the_one_pass_hash_agrees_with_the_hash_of_the_name() {
        let key = key();
        assert_ne!(key, 0);
        let long: alloc::vec::Vec<u8> = (1..=40).collect();
        for len in 0..=long.len() {
            let name = &long[..len];
            // Followed by its NUL, then more bytes, or by its NUL at the very end.
            let mut padded = name.to_vec();
            padded.extend_from_slice(b"\0tail bytes");
            assert_eq!(hash_until_nul(key, &padded), Some((len, hash(key, name))), "len {len}");
            let mut last = name.to_vec();
            last.push(0);
            assert_eq!(hash_until_nul(key, &last), Some((len, hash(key, name))), "len {len} at end");
            assert_eq!(hash_until_nul(key, name), None, "len {len} without NUL");
        }
    }

    #[test]
    fn short_words_and_their_masks_cover_exactly_the_name() {
        let bytes = *b"abcdefghi";
        for len in 0..=8 {
            let mut padded = [0u8; 8];
            padded[..len].copy_from_slice(&bytes[..len]);
            let word = u64::from_le_bytes(padded);
            assert_eq!(short_word(&bytes[..len]), Some(word), "len {len}");
            assert_eq!(u64::from_le_bytes(*b"abcdefgh") & low_bytes(len), word, "mask of len {len}");
        }
        assert_eq!(short_word(&bytes), None, "nine bytes are not short");
    }

    #[test]
    fn tail_words_are_the_bytes_zero_padded() {
        let bytes = [0x11u8, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77];
        for len in 1..=7 {
            let mut padded = [0u8; 8];
            padded[..len].copy_from_slice(&bytes[..len]);
            assert_eq!(tail_word(&bytes[..len]), u64::from_le_bytes(padded), "len {len}");
        }
    }

    #[test]
    fn names_that_differ_hash_apart_and_keys_change_hashes() {
        let key = key();
        let names: alloc::vec::Vec<alloc::string::String> =
            (0..2000).map(|i| alloc::format!("f{i}")).collect();
        let mut hashes: alloc::vec::Vec<u32> = names.iter().map(|n| hash(key, n.as_bytes())).collect();
        hashes.sort_unstable();
        hashes.dedup();
        // A random key makes one 32-bit collision among 2000 names a 1-in-2000 event; a hash
        // that ignored a byte or the length would collide hundreds of times.
        assert!(
            hashes.len() + 2 >= names.len(),
            "{} collisions among 2000 short names",
            names.len() - hashes.len()
        );
        // Same words, different lengths (trailing zero bytes) still differ.
        assert_ne!(hash(key, b"ab"), hash(key, b"ab\0"));
        // Under another key the same name lands elsewhere.
        assert_ne!(hash(key, b"main"), hash(key ^ 0x1234_5678_9abc_def0, b"main"));
    }
}
