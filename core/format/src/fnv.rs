//! FNV-1a, 32-bit: the symbol name hash stored in SMF symbol tables.
//!
//! Stored hashes are never trusted: readers recompute them from the names (a wrong stored hash
//! is not an error), and the loader's index uses a keyed hash of its own (SipHash-1-3, `KeyedHasher`).

const BASIS: u32 = 2_166_136_261;
const PRIME: u32 = 16_777_619;

/// One byte of FNV-1a: xor, then multiply (wrapping).
#[inline(always)]
const fn step(hash: u32, byte: u8) -> u32 {
    (hash ^ byte as u32).wrapping_mul(PRIME)
}

/// FNV-1a 32-bit hash of `bytes` (xor, then multiply, wrapping).
pub const fn fnv1a(bytes: &[u8]) -> u32 {
    let mut hash = BASIS;
    let mut i = 0;
    while i < bytes.len() {
        hash = step(hash, bytes[i]);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::fnv1a;

    #[test]
    fn matches_the_published_values() {
        assert_eq!(fnv1a(b"main"), 0xEA90_E208);
        assert_eq!(fnv1a(b""), 0x811C_9DC5);
        assert_eq!(fnv1a(b"a"), 0xE40C_292C);
    }
}
