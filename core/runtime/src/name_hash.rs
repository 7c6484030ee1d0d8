//! The 32-bit hash of names ([`KeyedHasher::hash32`]: a loaded module's symbols, a load's
//! imports, the export index, kept templates): multilinear hashing (Lemire and Kaser, "Strongly
//! universal string hashing is fast", 2014) under keys drawn from the process's key.
//!
//! A name of `n` bytes is its length and its bytes as 32-bit little-endian chunks `c_i`
//! (zero-padded), and its hash the top 32 bits of `k_0 + k_1 n + sum(k_(i+2) c_i) mod 2^64`,
//! each `k` a 64-bit key. The family is strongly universal: for any two different names of up
//! to [`MAX_NAME`] bytes, chosen without knowing the keys, the hashes (and so any of their low
//! bits, which pick buckets) agree with probability 2^-32, whatever the names. No set of names
//! can be prepared to share a bucket chain, as with SipHash, for a quarter of its work: one
//! multiply-add per 4 bytes, all independent, where SipHash runs a round per 8 bytes and four
//! more after them, one after another. Longer names (rare: C++ names past 256 bytes) take
//! SipHash-1-3's top 32 bits, a pseudo-random function under the same key.
//!
//! The sum is then passed through a fixed bijection (MurmurHash3's finalizer), which keeps
//! the family strongly universal (equal outputs exactly when the sums' top bits are equal, each
//! output as uniform) and undoes its one regularity: names that differ only in a counter
//! ("f0" to "f199", generated code's) have sums in arithmetic progression, whose low bits, under
//! some keys, fill a run of adjacent buckets, and a table probing linearly then took several
//! probes a name to index them (1,084 extra probes for 200 names in 512 buckets at worst over
//! 199 keys, where random values take about 60; 138 with the finalizer).
//!
//! The keys are SipHash-1-3 of their index under the process's 128-bit key (a pseudo-random
//! function: as good as drawn at random), expanded once into a static the first hash fills;
//! a hash that finds it being filled (another thread at it, or a child forked while its parent
//! filled it) expands the keys itself (the same keys: nothing waits, nothing disagrees).

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use siphasher::sip::SipHasher13;

/// The longest name hashed multilinearly; longer ones take SipHash.
pub(crate) const MAX_NAME: usize = 256;

/// Keys: the constant, the length's, and one per 4-byte chunk.
const KEYS: usize = 2 + MAX_NAME / 4;

/// A 128-bit key: SipHash-1-3's two halves.
pub(crate) type Key = (u64, u64);

/// SipHash-1-3 of `bytes` under `key`.
fn sip(key: Key, bytes: &[u8]) -> u64 {
    SipHasher13::new_with_keys(key.0, key.1).hash(bytes)
}

/// The keys under `key`.
pub(crate) fn expand(key: Key) -> [u64; KEYS] {
    let mut keys = [0u64; KEYS];
    for (i, slot) in (0u64..).zip(keys.iter_mut()) {
        *slot = sip(key, &i.to_le_bytes());
    }
    keys
}

/// Whether the process key's keys are in [`EXPANDED`]: [`EMPTY`], [`FILLING`] or [`READY`].
static STATE: AtomicU8 = AtomicU8::new(EMPTY);
const EMPTY: u8 = 0;
const FILLING: u8 = 1;
const READY: u8 = 2;

/// The process key's keys, written once by the thread that moved [`STATE`] from empty to
/// filling, read once it is ready (its release store orders the writes before every read).
pub(crate) static EXPANDED: [AtomicU64; KEYS] = [const { AtomicU64::new(0) }; KEYS];
/// The process key they were expanded from.
static FROM: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

/// Whether [`EXPANDED`] holds the keys of `key`.
#[inline(always)]
pub(crate) fn expanded_for(key: Key) -> bool {
    STATE.load(Ordering::Acquire) == READY
        && (FROM[0].load(Ordering::Relaxed), FROM[1].load(Ordering::Relaxed)) == key
}

/// Fills [`EXPANDED`] with `keys` (of `from`) unless another thread has started to.
fn publish(from: Key, keys: &[u64; KEYS]) {
    if STATE.compare_exchange(EMPTY, FILLING, Ordering::Acquire, Ordering::Relaxed).is_ok() {
        for (slot, &key) in EXPANDED.iter().zip(keys) {
            slot.store(key, Ordering::Relaxed);
        }
        FROM[0].store(from.0, Ordering::Relaxed);
        FROM[1].store(from.1, Ordering::Relaxed);
        STATE.store(READY, Ordering::Release);
    }
}

/// The 32-bit hash of the name `from[..len]` (all of `from` if shorter) under `key`
/// (`KeyedHasher::hash32`'s): multilinear under the keys expanded from it for a name of at most
/// [`MAX_NAME`] bytes, SipHash-1-3's top 32 bits for a longer one. `process` says whether a
/// key is the process's (whose expanded keys are kept), asked only before they are.
#[inline(always)]
pub(crate) fn hash32(key: Key, process: fn(Key) -> bool, from: &[u8], len: usize) -> u32 {
    let len = len.min(from.len());
    if len > MAX_NAME {
        return finish((sip(key, from.get(..len).unwrap_or(from)) >> 32) as u32);
    }
    finish(if expanded_for(key) {
        multilinear(|i| EXPANDED.get(i).map_or(0, |key| key.load(Ordering::Relaxed)), from, len)
    } else {
        expand_and_hash(key, process, from, len)
    })
}

/// MurmurHash3's 32-bit finalizer: a fixed bijection that leaves no arithmetic progression
/// of hashes one (see the module documentation).
#[inline(always)]
const fn finish(mut hash: u32) -> u32 {
    hash ^= hash >> 16;
    hash = hash.wrapping_mul(0x85eb_ca6b);
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(0xc2b2_ae35);
    hash ^ (hash >> 16)
}

/// [`hash32`] before the process key's keys are filled in (or under another key: tests').
#[cold]
#[inline(never)]
fn expand_and_hash(key: Key, process: fn(Key) -> bool, from: &[u8], len: usize) -> u32 {
    let keys = expand(key);
    if process(key) {
        publish(key, &keys);
    }
    multilinear(|i| keys.get(i).copied().unwrap_or(0), from, len)
}

/// The multilinear hash of `from[..len]` (`len` at most [`MAX_NAME`] and `from.len()`) under
/// the keys `key(0..KEYS)`: 8 bytes (two chunks) at a time, the tail masked to the name where 8
/// bytes can be read at once.
#[inline(always)]
fn multilinear(key: impl Fn(usize) -> u64, from: &[u8], len: usize) -> u32 {
    let bytes = from.get(..len).unwrap_or(from);
    let mut sum = key(0).wrapping_add(key(1).wrapping_mul(len as u64));
    let mut blocks = bytes.chunks_exact(8);
    let mut next = 2;
    for block in blocks.by_ref() {
        let word = u64::from_le_bytes(block.try_into().unwrap_or([0; 8]));
        sum = sum.wrapping_add(chunk_products(key(next), key(next + 1), word));
        next += 2;
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let tail_at = bytes.len() - tail.len();
        let word = match from.get(tail_at..).and_then(<[u8]>::first_chunk::<8>) {
            // The tail's bytes, then whatever follows them, masked off (`tail.len() < 8`).
            Some(eight) => u64::from_le_bytes(*eight) & ((1u64 << (8 * tail.len())) - 1),
            None => tail.iter().rev().fold(0, |word, &byte| word << 8 | u64::from(byte)),
        };
        // A name shorter than `MAX_NAME` has keys for its tail's two chunks.
        sum = sum.wrapping_add(chunk_products(key(next), key(next + 1), word));
    }
    (sum >> 32) as u32
}

/// `a c_a + b c_b` for the two 32-bit chunks `c_a` (low) and `c_b` (high) of `word`.
#[inline(always)]
fn chunk_products(a: u64, b: u64, word: u64) -> u64 {
    a.wrapping_mul(word & 0xFFFF_FFFF).wrapping_add(b.wrapping_mul(word >> 32))
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::*;

    /// The formula of the module documentation, chunk by chunk.
    fn reference(key: Key, name: &[u8]) -> u32 {
        if name.len() > MAX_NAME {
            return finish((sip(key, name) >> 32) as u32);
        }
        let keys = expand(key);
        let mut sum = keys[0].wrapping_add(keys[1].wrapping_mul(name.len() as u64));
        for (i, chunk) in name.chunks(4).enumerate() {
            let mut four = [0u8; 4];
            four[..chunk.len()].copy_from_slice(chunk);
            sum = sum.wrapping_add(keys[2 + i].wrapping_mul(u64::from(u32::from_le_bytes(four))));
        }
        finish((sum >> 32) as u32)
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "thousands of hashes in safe code: nothing for Miri to check, minutes under it"
    )]
    fn the_hash_is_the_multilinear_formula_under_every_key_and_length() {
        let bytes: Vec<u8> = (0..300u32).map(|b| (b.wrapping_mul(167) >> 1).to_le_bytes()[0]).collect();
        // (The process key's keys being kept: `keyed_hash.rs`'s tests.)
        for key in [(1, 2), (0x1234_5678, 0x9abc_def0), (0x5eed, 7)] {
            let process = |_| false;
            for len in 0..=bytes.len() {
                let name = &bytes[..len];
                assert_eq!(hash32(key, process, name, len), reference(key, name), "length {len}");
                // Inside a larger buffer: the bytes after the name never count.
                assert_eq!(hash32(key, process, &bytes, len), reference(key, name), "length {len} within");
            }
        }
        // Another key's hashes never fill the process key's.
        assert!(!expanded_for((1, 2)) && !expanded_for((0x5eed, 7)));
    }

    #[test]
    fn positions_lengths_and_keys_all_count() {
        let key = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        let h = |name: &[u8]| hash32(key, |_| false, name, name.len());
        // Chunks swapped, a trailing zero, an empty name, zero chunks of two lengths.
        assert_ne!(h(b"abcdefgh"), h(b"efghabcd"));
        assert_ne!(h(b"ab"), h(b"ab\0"));
        assert_ne!(h(b""), h(b"\0\0\0\0"));
        assert_ne!(h(b"\0\0\0\0"), h(b"\0\0\0\0\0\0\0\0"));
        let other = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0909);
        assert_ne!(h(b"main"), hash32(other, |_| false, b"main", 4), "the key matters");
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "thousands of hashes in safe code: nothing for Miri to check, minutes under it"
    )]
    fn a_family_differing_in_one_chunk_spreads_over_the_buckets() {
        // 4,096 names that differ only in one 4-byte chunk: a universal hash spreads them as
        // random values would (a 32-bit collision among them is a 1-in-500 event; 4,096
        // random values leave about 1,500 of 4,096 buckets empty).
        let key = (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
        let names: u32 = 4096;
        let hashes: Vec<u32> = (0..names)
            .map(|i| {
                let mut name = *b"prefix__CHNKsuffix";
                name[8..12].copy_from_slice(&i.to_le_bytes());
                hash32(key, |_| false, &name, name.len())
            })
            .collect();
        let mut distinct = hashes.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() + 2 >= names as usize, "{} distinct of {names}", distinct.len());
        let buckets: alloc::collections::BTreeSet<u32> = hashes.iter().map(|h| h & (names - 1)).collect();
        assert!(buckets.len() > names as usize / 2, "{} of {names} buckets", buckets.len());
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "thousands of hashes in safe code: nothing for Miri to check, minutes under it"
    )]
    fn names_numbered_in_turn_probe_a_linear_table_as_random_values_would_under_every_key() {
        // "f0" to "f199" into 512 buckets, probing linearly (the symbol index): random values
        // take about 60 extra probes in all, 138 under the worst of these keys; the sums alone
        // took 1,084.
        let names: Vec<alloc::string::String> = (0..200).map(|i| alloc::format!("f{i}")).collect();
        let worst = (1..200u64)
            .map(|k| {
                let key = (k.wrapping_mul(0x9E37_79B9_7F4A_7C15), k ^ 0x5eed);
                let mut taken = [false; 512];
                let mut extra = 0;
                for name in &names {
                    let mut bucket = hash32(key, |_| false, name.as_bytes(), name.len()) as usize & 511;
                    while taken[bucket] {
                        bucket = (bucket + 1) & 511;
                        extra += 1;
                    }
                    taken[bucket] = true;
                }
                extra
            })
            .max();
        assert!(worst.is_some_and(|extra| extra < 400), "{worst:?} extra probes at worst");
    }
}
