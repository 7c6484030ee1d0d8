//! Raw views over the fixed-size structures of an SMF file, one file per structure.
//!
//! These views only bounds-check ("structured access, no judgement"): they hold a byte slice
//! and a [`Dialect`](crate::Dialect), and each getter reads a little-endian field at the
//! offset that dialect gives it. A view created with `new_checked` covers the whole structure,
//! so no getter can panic; getters never panic in any case (a field missing from a too-short
//! buffer created with `new_unchecked` reads as zero). Judgement (is this offset inside the file,
//! is this kind known) lives in [`crate::module`].

pub mod header;
pub mod relocation;
pub mod section;
pub mod symbol;

pub use header::{Header, HeaderView};
pub use relocation::RelocationView;
pub use section::SectionView;
pub use symbol::SymbolView;

/// The magic every SMF header starts with.
pub const MAGIC: [u8; 4] = *b"SMF\0";

/// Reads a field, zero when the buffer is too short (only possible via `new_unchecked`).
macro_rules! le_field {
    ($bytes:expr, u8, $at:expr) => {
        $bytes.get($at).copied().unwrap_or(0)
    };
    ($bytes:expr, u16, $at:expr) => {
        $crate::bytes::u16_at($bytes, $at).unwrap_or(0)
    };
    ($bytes:expr, u32, $at:expr) => {
        $crate::bytes::u32_at($bytes, $at).unwrap_or(0)
    };
    ($bytes:expr, u64, $at:expr) => {
        $crate::bytes::u64_at($bytes, $at).unwrap_or(0)
    };
    ($bytes:expr, i64, $at:expr) => {
        $crate::bytes::i64_at($bytes, $at).unwrap_or(0)
    };
}
pub(crate) use le_field;
