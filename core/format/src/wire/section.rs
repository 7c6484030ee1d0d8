//! A section table entry: 64 bytes in S128 (u32 alignment, name at 36), 56 bytes in R96/R72
//! (u64 alignment, name at 40).

use super::le_field;
use crate::Dialect;

mod field {
    pub(super) const SECTION_TYPE: usize = 0;
    pub(super) const FLAGS: usize = 4;
    pub(super) const OFFSET: usize = 8;
    pub(super) const SIZE: usize = 16;
    pub(super) const VIRTUAL_SIZE: usize = 24;
    pub(super) const ALIGNMENT: usize = 32;
    pub(super) const NAME_LEN: usize = 16;
    pub(super) const S128_NAME: usize = 36;
    pub(super) const R_NAME: usize = 40;
}

/// A view of one section table entry.
#[derive(Clone, Copy, Debug)]
pub struct SectionView<'a> {
    bytes: &'a [u8],
    dialect: Dialect,
}

impl<'a> SectionView<'a> {
    /// A view without a length check; missing fields read as zero.
    pub const fn new_unchecked(bytes: &'a [u8], dialect: Dialect) -> Self {
        Self { bytes, dialect }
    }

    /// Whether the buffer covers the whole entry.
    pub fn check_len(&self) -> bool {
        self.bytes.len() >= self.dialect.section_entry_size()
    }

    /// A view, or `None` if the buffer is too short.
    pub fn new_checked(bytes: &'a [u8], dialect: Dialect) -> Option<Self> {
        let view = Self::new_unchecked(bytes, dialect);
        view.check_len().then_some(view)
    }

    /// Section type (1 code, 2 data, ...).
    pub fn section_type(&self) -> u8 {
        le_field!(self.bytes, u8, field::SECTION_TYPE)
    }

    /// Flags as stored (their meaning: [`crate::kinds::SectionFlags`]).
    pub fn flags(&self) -> u32 {
        le_field!(self.bytes, u32, field::FLAGS)
    }

    /// File offset of the payload (relative to the SMF data start).
    pub fn offset(&self) -> u64 {
        le_field!(self.bytes, u64, field::OFFSET)
    }

    /// Bytes in the file.
    pub fn size(&self) -> u64 {
        le_field!(self.bytes, u64, field::SIZE)
    }

    /// Bytes in memory (zero-filled past `size`).
    pub fn virtual_size(&self) -> u64 {
        le_field!(self.bytes, u64, field::VIRTUAL_SIZE)
    }

    /// Alignment: a u32 in S128, a u64 in R96/R72.
    pub fn alignment(&self) -> u64 {
        match self.dialect {
            Dialect::S128 => u64::from(le_field!(self.bytes, u32, field::ALIGNMENT)),
            Dialect::R96 | Dialect::R72 => le_field!(self.bytes, u64, field::ALIGNMENT),
        }
    }

    /// The name bytes up to the first NUL (all 16 when there is none).
    pub fn name(&self) -> &'a [u8] {
        let at = match self.dialect {
            Dialect::S128 => field::S128_NAME,
            Dialect::R96 | Dialect::R72 => field::R_NAME,
        };
        let raw = self.bytes.get(at..at + field::NAME_LEN).unwrap_or(&[]);
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        &raw[..end]
    }
}

/// The fields of one section entry, for [`encode`].
#[cfg(feature = "alloc")]
#[derive(Clone, Copy, Debug)]
pub(crate) struct SectionFields<'a> {
    pub(crate) section_type: u8,
    pub(crate) flags: u32,
    pub(crate) offset: u64,
    pub(crate) size: u64,
    pub(crate) virtual_size: u64,
    pub(crate) alignment: u64,
    pub(crate) name: &'a [u8],
}

/// The largest alignment a section entry of `dialect` can hold: S128 keeps it in a u32.
pub const fn max_alignment(dialect: Dialect) -> u64 {
    match dialect {
        Dialect::S128 => u32::MAX as u64,
        Dialect::R96 | Dialect::R72 => u64::MAX,
    }
}

/// Writes one entry into `out` (the dialect's entry size, zeroed by the caller). The name is
/// cut to 16 bytes; the S128 alignment to 32 bits.
#[cfg(feature = "alloc")]
pub(crate) fn encode(out: &mut [u8], dialect: Dialect, s: &SectionFields<'_>) {
    let mut put = |at: usize, bytes: &[u8]| out[at..at + bytes.len()].copy_from_slice(bytes);
    put(field::SECTION_TYPE, &[s.section_type]);
    put(field::FLAGS, &s.flags.to_le_bytes());
    put(field::OFFSET, &s.offset.to_le_bytes());
    put(field::SIZE, &s.size.to_le_bytes());
    put(field::VIRTUAL_SIZE, &s.virtual_size.to_le_bytes());
    let name = &s.name[..s.name.len().min(field::NAME_LEN)];
    match dialect {
        Dialect::S128 => {
            put(field::ALIGNMENT, &u32::try_from(s.alignment).unwrap_or(u32::MAX).to_le_bytes());
            put(field::S128_NAME, name);
        }
        Dialect::R96 | Dialect::R72 => {
            put(field::ALIGNMENT, &s.alignment.to_le_bytes());
            put(field::R_NAME, name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_byte_names_need_no_nul() {
        let mut entry = [0u8; 56];
        entry[40..56].copy_from_slice(b"abcdefghijklmnop");
        let view = SectionView::new_checked(&entry, Dialect::R96).unwrap();
        assert_eq!(view.name(), b"abcdefghijklmnop");
        entry[44] = 0;
        assert_eq!(SectionView::new_checked(&entry, Dialect::R96).unwrap().name(), b"abcd");
    }

    #[test]
    fn alignment_width_depends_on_dialect() {
        let mut entry = [0u8; 64];
        entry[32..40].copy_from_slice(&0x1_0000_0010u64.to_le_bytes());
        assert_eq!(SectionView::new_checked(&entry, Dialect::S128).unwrap().alignment(), 0x10);
        assert_eq!(SectionView::new_checked(&entry[..56], Dialect::R72).unwrap().alignment(), 0x1_0000_0010);
    }
}
