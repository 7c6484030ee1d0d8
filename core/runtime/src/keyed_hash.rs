//! [`KeyedHasher`]: the one key of everything a file or a caller controls (a loaded module's
//! symbol names, a load's import names, the export index, the module cache's paths, the
//! instantiator's names): SipHash-1-3 (the `siphasher` crate) under a 128-bit key, and for
//! names in the loader's 32-bit indexes ([`KeyedHasher::hash32`]) multilinear hashing under
//! keys expanded from it (`name_hash.rs`).
//!
//! A hash table is only as fast as its hash is unpredictable: names that share a hash share a
//! bucket chain, and indexing `n` of them costs `n²`. An unkeyed hash (FNV-1a, which files
//! store) lets a file be prepared against it; so did a hand-written keyed one whose mixing let
//! bit flips cancel under every key. SipHash is a keyed pseudo-random function, and the names'
//! multilinear hash a strongly universal family: without the key, no set of inputs can be
//! built to collide. [`KeyedHasher::per_process`] draws the key
//! once per process from the kernel's random pool (where the kernel refuses, from the
//! address-space layout: only as unpredictable as ASLR makes it), and every keyed table of the
//! crate hashes under it, as do the shell's module cache and offer index (the shell's other
//! maps use std's `RandomState`, SipHash-1-3 under a random key too).
//!
//! Hash values never leave the process: nothing prints them, writes them to a file or sends
//! them anywhere (a load hands an import's `hash32` to its resolvers, in the process, as
//! anyone holding the name could compute it).

use core::hash::{BuildHasher, Hasher};

use siphasher::sip::SipHasher13;

/// The 64-bit hash a hash table (hashbrown) takes for a name's 32-bit one
/// ([`KeyedHasher::hash32`]): hashbrown picks its control bits from the top of it, so the
/// name's hash is spread over all 64 (multiplied by an odd constant: one to one).
#[inline(always)]
pub const fn spread(hash32: u32) -> u64 {
    (hash32 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Builds [`KeyedState`] hashers (SipHash-1-3) under one 128-bit key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyedHasher {
    k0: u64,
    k1: u64,
    /// SipHash's state before the first block under this key, derived once here rather than
    /// per hash (a loop hashing names has no registers to spare for the key).
    start: [u64; 4],
}

impl KeyedHasher {
    /// Hashers under a 64-bit `key` (for callers that draw their own; the other half of
    /// SipHash's key is derived from it). Prefer [`KeyedHasher::per_process`] where it exists.
    pub const fn new(key: u64) -> Self {
        Self::with_keys(key, key.rotate_left(32) ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// Hashers under the 128-bit key `k0`, `k1`.
    pub const fn with_keys(k0: u64, k1: u64) -> Self {
        let start = [
            k0 ^ 0x736f_6d65_7073_6575,
            k1 ^ 0x646f_7261_6e64_6f6d,
            k0 ^ 0x6c79_6765_6e65_7261,
            k1 ^ 0x7465_6462_7974_6573,
        ];
        Self { k0, k1, start }
    }

    /// Hashers under this process's key, drawn at random on first use (`getrandom`; where the
    /// kernel refuses, from the address-space layout).
    #[inline]
    pub fn per_process() -> Self {
        process_key::get()
    }

    /// Whether this is the process's key ([`KeyedHasher::per_process`], drawn already).
    #[inline(always)]
    pub(crate) fn is_per_process(&self) -> bool {
        process_key::is((self.k0, self.k1))
    }

    /// The hash of `bytes` written at once (one [`Hasher::write`]; a slice's `Hash` would
    /// write its length first, which the loader's names do not need): SipHash-1-3 in one pass
    /// (`sip13`), equal to the streaming [`KeyedState`]'s.
    #[inline(always)]
    pub fn hash_bytes(&self, bytes: &[u8]) -> u64 {
        sip13(&self.start, bytes, bytes.len())
    }

    /// The 32-bit hash of a name (the loader's symbol index stores one per exported symbol;
    /// its low bits pick buckets): multilinear hashing under keys expanded from this key, a
    /// strongly universal family (`name_hash.rs`); SipHash-1-3's top 32 bits past 256 bytes.
    #[inline(always)]
    pub fn hash32(&self, bytes: &[u8]) -> u32 {
        self.name_hash(bytes, bytes.len())
    }

    /// [`KeyedHasher::hash32`] of the first `len` bytes of `from` (all of them if it is
    /// shorter), for a name inside a larger buffer (a string table): where `from` holds 8
    /// bytes from the name's last block on, that block is read in one load and masked to the
    /// name, rather than in pieces.
    #[inline(always)]
    pub(crate) fn hash32_within(&self, from: &[u8], len: usize) -> u32 {
        self.name_hash(from, len)
    }

    /// [`KeyedHasher::hash32_within`].
    #[inline(always)]
    fn name_hash(&self, from: &[u8], len: usize) -> u32 {
        crate::name_hash::hash32((self.k0, self.k1), process_key::is, from, len)
    }
}

impl BuildHasher for KeyedHasher {
    type Hasher = KeyedState;

    #[inline]
    fn build_hasher(&self) -> KeyedState {
        KeyedState(SipHasher13::new_with_keys(self.k0, self.k1))
    }
}

/// The state of one hash.
#[derive(Clone, Copy, Debug)]
pub struct KeyedState(SipHasher13);

impl Hasher for KeyedState {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.0.write_u8(i);
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.0.write_u32(i);
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0.write_u64(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.0.write_usize(i);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

/// SipHash-1-3 of `from[..len]` (`len <= from.len()`) from the keyed state `start`, in one
/// pass (Aumasson and Bernstein's SipHash with one compression and three finalization rounds:
/// what `siphasher`'s `SipHasher13` computes for one `write`, which the tests check). Written
/// out so that a loop hashing names, every load's, has it inline: a call per name cost the
/// loader more than the rounds themselves. The bytes of `from` after `len` never change the
/// hash; where there are enough of them, the tail is one load.
#[inline(always)]
fn sip13(start: &[u64; 4], from: &[u8], len: usize) -> u64 {
    let mut v = *start;
    let bytes = from.get(..len).unwrap_or(from);
    let mut blocks = bytes.chunks_exact(8);
    for block in blocks.by_ref() {
        let m = u64::from_le_bytes(block.try_into().unwrap_or([0; 8]));
        v[3] ^= m;
        sip_round(&mut v);
        v[0] ^= m;
    }
    let tail = blocks.remainder();
    let tail_at = bytes.len() - tail.len();
    let tail = match from.get(tail_at..).and_then(<[u8]>::first_chunk::<8>) {
        // The tail's bytes, then whatever follows them, masked off (`tail.len() < 8`).
        Some(eight) => u64::from_le_bytes(*eight) & ((1u64 << (8 * tail.len())) - 1),
        None => tail_le(tail),
    };
    // The last block: the tail's bytes, and the length's low byte on top.
    let last = (bytes.len() as u64) << 56 | tail;
    v[3] ^= last;
    sip_round(&mut v);
    v[0] ^= last;
    v[2] ^= 0xff;
    for _ in 0..3 {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// The up to 7 bytes of `tail` as a little-endian number, read in at most three pieces (4, 2
/// and 1 bytes) rather than byte by byte: most names end in a short tail.
#[inline(always)]
fn tail_le(tail: &[u8]) -> u64 {
    let (mut value, mut shift, mut rest) = (0u64, 0, tail);
    if let Some((four, after)) = rest.split_first_chunk::<4>() {
        value = u64::from(u32::from_le_bytes(*four));
        (shift, rest) = (32, after);
    }
    if let Some((two, after)) = rest.split_first_chunk::<2>() {
        value |= u64::from(u16::from_le_bytes(*two)) << shift;
        (shift, rest) = (shift + 16, after);
    }
    if let Some(&byte) = rest.first() {
        value |= u64::from(byte) << shift;
    }
    value
}

/// One SipRound.
#[inline(always)]
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// The process's key, drawn once.
mod process_key {
    use core::sync::atomic::{AtomicU64, Ordering};

    use super::KeyedHasher;

    /// The key's halves; 0 until drawn (a drawn half is never 0).
    static K0: AtomicU64 = AtomicU64::new(0);
    static K1: AtomicU64 = AtomicU64::new(0);

    #[inline]
    pub(super) fn get() -> KeyedHasher {
        match (K0.load(Ordering::Relaxed), K1.load(Ordering::Relaxed)) {
            (0, _) | (_, 0) => draw(),
            (k0, k1) => KeyedHasher::with_keys(k0, k1),
        }
    }

    /// Whether `key` is the process's (drawn already).
    #[inline(always)]
    pub(super) fn is(key: (u64, u64)) -> bool {
        (K0.load(Ordering::Relaxed), K1.load(Ordering::Relaxed)) == key
    }

    /// Draws a key and stores each half unless one is stored already. Racing threads may each
    /// draw one; every thread returns the halves stored first, so every hash agrees.
    #[cold]
    fn draw() -> KeyedHasher {
        // Without the kernel's pool (a kernel or sandbox without `getrandom`), the address-space
        // layout is the best entropy at hand.
        let local = 0u8;
        let stack = &raw const local as u64;
        let image = &raw const K0 as u64;
        let k0 = kernel_random().unwrap_or(stack.rotate_left(32) ^ image);
        let k1 = kernel_random().unwrap_or(image.rotate_left(32) ^ stack ^ 0x736F_6D65_7073_6575);
        let store = |half: &AtomicU64, drawn: u64| {
            let drawn = drawn.max(1);
            match half.compare_exchange(0, drawn, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => drawn,
                Err(stored) => stored,
            }
        };
        KeyedHasher::with_keys(store(&K0, k0), store(&K1, k1))
    }

    /// Eight bytes from the kernel's random pool, where there is one.
    fn kernel_random() -> Option<u64> {
        crate::sys::random_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_pass_hash_is_siphash_1_3() {
        // The reference test vector (SipHash paper, appendix A: key 00..0f, message 00..0e) is
        // SipHash-2-4's; for 1-3 the oracle is the streaming implementation, on every length
        // and tail.
        let bytes: alloc::vec::Vec<u8> = (0..=255u8).map(|b| b.wrapping_mul(167)).collect();
        for (k0, k1) in [(0, 0), (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908), (u64::MAX, 1)] {
            let hasher = KeyedHasher::with_keys(k0, k1);
            // Under Miri, every tail length and a few long messages.
            for len in (0..=bytes.len()).filter(|&len| !cfg!(miri) || len < 24 || len % 61 == 0) {
                let streamed = SipHasher13::new_with_keys(k0, k1).hash(&bytes[..len]);
                assert_eq!(hasher.hash_bytes(&bytes[..len]), streamed, "length {len}");
                let mut state = hasher.build_hasher();
                state.write(&bytes[..len]);
                assert_eq!(state.finish(), streamed);
            }
        }
    }

    /// Name `i` of a family that shared one hash under every key with the word-at-a-time
    /// multiply-rotate mixing this hash replaced (`rotl((state ^ word) * M, 29)`, `M` odd):
    /// flipping bit 63 of one word and bit 28 of the next cancel out, block by block.
    fn colliding(i: usize) -> [u8; 160] {
        let mut name = [b'n'; 160];
        for block in 0..10 {
            if i >> block & 1 == 1 {
                name[16 * block + 7] ^= 0x80;
                name[16 * block + 8 + 3] ^= 0x10;
            }
        }
        name
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "thousands of hashes in safe code: nothing for Miri to check, minutes under it"
    )]
    fn a_name_inside_a_buffer_hashes_as_the_name_alone() {
        // Every length and start, with the buffer's end before, at and after the 8 bytes of
        // the name's last block; what follows the name differs from run to run.
        let hasher = KeyedHasher::with_keys(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        for filler in [0u8, 0xff, 0x5a] {
            let buffer: alloc::vec::Vec<u8> =
                (0..40u8).map(|b| if b % 3 == 0 { filler } else { b.wrapping_mul(29) }).collect();
            for start in 0..buffer.len() {
                for len in 0..=buffer.len() - start {
                    let name = &buffer[start..start + len];
                    let alone = hasher.hash32(name);
                    assert_eq!(hasher.hash32_within(&buffer[start..], len), alone, "{start}+{len}");
                    assert_eq!(hasher.hash32_within(name, len), alone);
                }
            }
        }
        // A length past the buffer hashes what there is.
        assert_eq!(hasher.hash32_within(b"abc", 9), hasher.hash32(b"abc"));
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "thousands of hashes in safe code: nothing for Miri to check, minutes under it"
    )]
    fn names_built_to_collide_under_the_old_mixing_hash_apart() {
        let hasher = KeyedHasher::new(0x1234_5678_9ABC_DEF0);
        let names = 1024;
        let mut hashes: alloc::vec::Vec<u64> = (0..names).map(|i| hasher.hash_bytes(&colliding(i))).collect();
        let mut short: alloc::vec::Vec<u32> = (0..names).map(|i| hasher.hash32(&colliding(i))).collect();
        let mut built: alloc::vec::Vec<u64> = (0..names).map(|i| hasher.hash_one(colliding(i))).collect();
        for v in [&mut hashes, &mut built] {
            v.sort_unstable();
            v.dedup();
            assert_eq!(v.len(), names, "64-bit hashes of {names} names");
        }
        short.sort_unstable();
        short.dedup();
        // A 32-bit collision among 1,024 random values is a 1-in-8,000 event.
        assert!(short.len() + 1 >= names, "{} distinct 32-bit hashes of {names}", short.len());
        // The low bits spread too (tables take buckets from them).
        let buckets: alloc::collections::BTreeSet<u32> = short.iter().map(|h| h & 1023).collect();
        assert!(buckets.len() > names / 2, "{} of 1,024 buckets for {names} names", buckets.len());
    }

    #[test]
    fn keys_and_contents_move_the_hash_and_equal_inputs_agree() {
        let (a, b) = (KeyedHasher::new(11), KeyedHasher::new(12));
        let path = "/srv/app/modules/lib/module-00000000042.smf";
        assert_eq!(a.hash_one(path), a.hash_one(path));
        assert_ne!(a.hash_one(path), b.hash_one(path), "the key matters");
        assert_ne!(
            KeyedHasher::with_keys(1, 2).hash_bytes(b"main"),
            KeyedHasher::with_keys(1, 3).hash_bytes(b"main"),
            "both halves of the key matter"
        );
        // One write is SipHash-1-3 of the bytes, however they are handed in.
        let mut state = a.build_hasher();
        state.write(path.as_bytes());
        assert_eq!(state.finish(), a.hash_bytes(path.as_bytes()));
        // Lengths count: the same words with a trailing zero are another input.
        assert_ne!(a.hash_bytes(b"ab"), a.hash_bytes(b"ab\0"));
    }

    #[test]
    fn the_process_keys_name_keys_are_expanded_once_and_kept() {
        let process = KeyedHasher::per_process();
        let key = (process.k0, process.k1);
        let first = process.hash32(b"main");
        assert!(crate::name_hash::expanded_for(key));
        let kept = crate::name_hash::EXPANDED.iter().map(|k| k.load(core::sync::atomic::Ordering::Relaxed));
        assert!(kept.eq(crate::name_hash::expand(key)));
        // The same hash from the kept keys as from keys expanded afresh (another key's value
        // with the same halves: a hasher not known as the process's).
        assert_eq!(process.hash32(b"main"), first);
        assert_eq!(crate::name_hash::hash32(key, |_| false, b"main", 4), first);
    }

    #[test]
    fn the_process_key_is_drawn_once_and_is_not_zero() {
        let first = KeyedHasher::per_process();
        assert_eq!(first, KeyedHasher::per_process());
        assert!(first.k0 != 0 && first.k1 != 0);
        assert_ne!(first, KeyedHasher::new(0));
    }
}
