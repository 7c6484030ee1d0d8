//! FNV-1a, 32-bit: the symbol name hash stored in SMF symbol tables.
//!
//! Stored hashes are never trusted: the loader recomputes them from the names it validated.

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

/// The length and [`fnv1a`] hash of the NUL-terminated string at the start of `bytes`, in one
/// pass over it; `None` if `bytes` holds no NUL.
#[inline(always)]
pub(crate) fn fnv1a_until_nul(bytes: &[u8]) -> Option<(usize, u32)> {
    let mut hash = BASIS;
    for (len, &byte) in bytes.iter().enumerate() {
        if byte == 0 {
            return Some((len, hash));
        }
        hash = step(hash, byte);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{fnv1a, fnv1a_until_nul};

    #[test]
    fn the_one_pass_hash_stops_at_the_nul() {
        assert_eq!(fnv1a_until_nul(b"main\0rest"), Some((4, fnv1a(b"main"))));
        assert_eq!(fnv1a_until_nul(b"\0"), Some((0, fnv1a(b""))));
        assert_eq!(fnv1a_until_nul(b"main"), None);
        assert_eq!(fnv1a_until_nul(b""), None);
    }

    #[test]
    fn matches_the_published_values() {
        assert_eq!(fnv1a(b"main"), 0xEA90_E208);
        assert_eq!(fnv1a(b""), 0x811C_9DC5);
        assert_eq!(fnv1a(b"a"), 0xE40C_292C);
    }
}
