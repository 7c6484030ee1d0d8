//! [`ByteKey`]: a byte string as a cache key (the shell's: a path's bytes), hashed as one write
//! of its bytes.
//!
//! A `[u8]`, and so an `OsStr` or a `Path`, hashes as its length and then its bytes: two writes,
//! the first of them a whole SipHash block spent on a prefix that only keys of several fields
//! need (it keeps `("ab", "c")` apart from `("a", "bc")`). A key that is one byte string needs
//! none, and SipHash's last block holds the length anyway. A `ByteKey` hashes its bytes in one
//! [`Hasher::write`], which [`KeyedState`](super::KeyedState) compresses straight from them: a
//! hit of the cache is some 10% faster for it than by `OsStr` (`cargo xtask bench cache`).
//!
//! An unsized type over `[u8]`, as `Path` is over `OsStr`: borrowed (`&ByteKey`) to look up,
//! boxed (`Box<ByteKey>`) to keep, so that a lookup copies nothing.

// The two casts between `[u8]` and `ByteKey`, which `repr(transparent)` makes sound.
#![allow(unsafe_code)]

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::hash::{Hash, Hasher};

/// A byte string as a cache key, hashed as one write of its bytes (see the module
/// documentation). Compares as its bytes. A whole key only: inside a key of several fields
/// (a tuple of two), nothing would mark where it ends, and `("a", "bc")` would hash as
/// `("ab", "c")` under every key.
#[repr(transparent)]
#[derive(PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteKey([u8]);

impl ByteKey {
    /// `bytes` as a key, to look up by.
    pub const fn new(bytes: &[u8]) -> &Self {
        // SAFETY: `ByteKey` is `repr(transparent)` over `[u8]`: the same layout and the same
        // pointer metadata (the length), so the pointer cast keeps both; the reference keeps
        // `bytes`'s lifetime and shares its immutability.
        unsafe { &*(core::ptr::from_ref::<[u8]>(bytes) as *const Self) }
    }

    /// A copy of `bytes` as a key to keep, or `None` when memory for it cannot be had.
    pub fn try_boxed(bytes: &[u8]) -> Option<Box<Self>> {
        let mut owned = Vec::new();
        owned.try_reserve_exact(bytes.len()).ok()?;
        owned.extend_from_slice(bytes);
        // Exact capacity: the boxed slice is this allocation, not a new one.
        Some(Self::from_boxed_bytes(owned.into_boxed_slice()))
    }

    /// `bytes` as a key to keep, without copying them.
    pub fn from_boxed_bytes(bytes: Box<[u8]>) -> Box<Self> {
        // SAFETY: `Box::into_raw` gives up the allocation; `ByteKey` has `[u8]`'s layout and
        // pointer metadata (`repr(transparent)`), so the box rebuilt from the cast pointer owns
        // the same allocation with the same layout and frees it once, as the original would.
        unsafe { Box::from_raw(Box::into_raw(bytes) as *mut Self) }
    }

    /// The key's bytes.
    pub const fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Hash for ByteKey {
    /// One write of the bytes, no length before them (see the module documentation).
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

impl fmt::Debug for ByteKey {
    /// The bytes as a string literal would show them (ASCII as is, others escaped).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.escape_ascii())
    }
}

#[cfg(test)]
mod tests {
    use alloc::format;
    use core::hash::BuildHasher;

    use super::*;
    use crate::lru::KeyedHasher;

    #[test]
    fn a_key_is_its_bytes_and_hashes_as_one_write_of_them() {
        let path = b"/srv/app/modules/lib/module-00000000042.smf";
        let borrowed = ByteKey::new(path);
        let boxed = ByteKey::try_boxed(path).unwrap();
        assert_eq!(borrowed.as_bytes(), path);
        assert_eq!(boxed.as_bytes(), path);
        assert_eq!(&*boxed, borrowed);
        assert_ne!(ByteKey::new(b"/a"), ByteKey::new(b"/b"));
        let hasher = KeyedHasher::new(0x5eed);
        // The one-pass hash of the bytes: what a lookup by path computes.
        assert_eq!(hasher.hash_one(borrowed), hasher.hash_bytes(path));
        assert_eq!(hasher.hash_one(&boxed), hasher.hash_bytes(path));
        // Not the slice's hash (its length first).
        assert_ne!(hasher.hash_one(borrowed), hasher.hash_one(&path[..]));
    }

    #[test]
    fn boxing_keeps_the_bytes_and_the_empty_key() {
        let bytes: Box<[u8]> = Box::from(&b"x\xffy"[..]);
        let key = ByteKey::from_boxed_bytes(bytes);
        assert_eq!(key.as_bytes(), b"x\xffy");
        assert_eq!(format!("{key:?}"), "\"x\\xffy\"");
        let empty = ByteKey::try_boxed(b"").unwrap();
        assert_eq!(empty.as_bytes(), b"");
        assert_eq!(ByteKey::new(b""), &*empty);
    }
}
