//! A symbol table entry: 56 bytes in S128 and R96, 40 bytes in R72 (which stops after
//! `version`, so the template fields read as zero there).

use super::le_field;
use crate::Dialect;

mod field {
    pub(super) const NAME_OFFSET: usize = 0;
    pub(super) const NAME_HASH: usize = 4;
    pub(super) const SYM_TYPE: usize = 8;
    pub(super) const BINDING: usize = 9;
    pub(super) const VISIBILITY: usize = 10;
    pub(super) const FLAGS: usize = 11;
    pub(super) const VALUE: usize = 16;
    pub(super) const SIZE: usize = 24;
    pub(super) const TYPE_ID: usize = 32;
    pub(super) const VERSION: usize = 36;
    pub(super) const TEMPLATE_PARAM_COUNT: usize = 40;
    pub(super) const SECTION_INDEX: usize = 41;
    pub(super) const TEMPLATE_OFFSET: usize = 48;
}

/// A view of one symbol table entry.
#[derive(Clone, Copy, Debug)]
pub struct SymbolView<'a> {
    bytes: &'a [u8],
    dialect: Dialect,
}

impl SymbolView<'_> {
    /// Where the type byte lies in an entry (for error offsets).
    pub const TYPE_AT: u64 = field::SYM_TYPE as u64;
    /// Where the binding byte lies in an entry.
    pub const BINDING_AT: u64 = field::BINDING as u64;
    /// Where the value lies in an entry.
    pub const VALUE_AT: u64 = field::VALUE as u64;
    /// Where the defining-section index lies in an entry (S128 and R96).
    pub const SECTION_INDEX_AT: u64 = field::SECTION_INDEX as u64;
    /// Where the template offset lies in an entry (S128 and R96).
    pub const TEMPLATE_OFFSET_AT: u64 = field::TEMPLATE_OFFSET as u64;
}

impl<'a> SymbolView<'a> {
    /// A view without a length check; missing fields read as zero.
    pub const fn new_unchecked(bytes: &'a [u8], dialect: Dialect) -> Self {
        Self { bytes, dialect }
    }

    /// Whether the buffer covers the whole entry.
    pub fn check_len(&self) -> bool {
        self.bytes.len() >= self.dialect.symbol_entry_size()
    }

    /// A view, or `None` if the buffer is too short.
    pub fn new_checked(bytes: &'a [u8], dialect: Dialect) -> Option<Self> {
        let view = Self::new_unchecked(bytes, dialect);
        view.check_len().then_some(view)
    }

    /// The fields every dialect's entry has, if the view covers them: read from a fixed-size
    /// array, they need no bounds check each.
    #[cfg(all(feature = "exec", target_os = "linux"))]
    #[inline(always)]
    pub(crate) fn head(&self) -> Option<SymbolHead<'a>> {
        self.bytes.first_chunk::<HEAD_SIZE>().map(SymbolHead)
    }

    /// Whether this dialect's entry has the template fields.
    fn has_extension(&self) -> bool {
        self.dialect.has_symbol_extension()
    }

    /// Offset of the name in the string table.
    pub fn name_offset(&self) -> u32 {
        le_field!(self.bytes, u32, field::NAME_OFFSET)
    }

    /// The stored FNV-1a hash of the name (never trusted: see [`crate::fnv1a`]).
    pub fn name_hash(&self) -> u32 {
        le_field!(self.bytes, u32, field::NAME_HASH)
    }

    /// Raw symbol type byte (numbering depends on the dialect).
    pub fn sym_type(&self) -> u8 {
        le_field!(self.bytes, u8, field::SYM_TYPE)
    }

    /// Raw binding byte.
    pub fn binding(&self) -> u8 {
        le_field!(self.bytes, u8, field::BINDING)
    }

    /// Visibility byte.
    pub fn visibility(&self) -> u8 {
        le_field!(self.bytes, u8, field::VISIBILITY)
    }

    /// Symbol flags (layout phase, template, ...).
    pub fn flags(&self) -> u8 {
        le_field!(self.bytes, u8, field::FLAGS)
    }

    /// Value: an offset into the code (or the data section named by `section_index`).
    pub fn value(&self) -> u64 {
        le_field!(self.bytes, u64, field::VALUE)
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        le_field!(self.bytes, u64, field::SIZE)
    }

    /// Type id (always 0 today).
    pub fn type_id(&self) -> u32 {
        le_field!(self.bytes, u32, field::TYPE_ID)
    }

    /// Version (always 0 today).
    pub fn version(&self) -> u32 {
        le_field!(self.bytes, u32, field::VERSION)
    }

    /// Number of generic parameters.
    pub fn template_param_count(&self) -> u8 {
        if self.has_extension() {
            le_field!(self.bytes, u8, field::TEMPLATE_PARAM_COUNT)
        } else {
            0
        }
    }

    /// Defining section, 1-based, 0 for none (newest R96 linker; zero elsewhere).
    pub fn section_index(&self) -> u16 {
        if self.has_extension() {
            le_field!(self.bytes, u16, field::SECTION_INDEX)
        } else {
            0
        }
    }

    /// Offset of the symbol's entry in the template-code section.
    pub fn template_offset(&self) -> u64 {
        if self.has_extension() {
            le_field!(self.bytes, u64, field::TEMPLATE_OFFSET)
        } else {
            0
        }
    }
}

/// Bytes of the fields every dialect's entry has (all of R72's).
#[cfg(all(feature = "exec", target_os = "linux"))]
const HEAD_SIZE: usize = 40;

/// The size field of each entry of a symbol table (`table`: whole entries of `entry_size`
/// bytes), in order: one fixed-offset read per entry.
#[cfg(all(feature = "exec", target_os = "linux"))]
pub(crate) fn sizes(table: &[u8], entry_size: usize) -> impl Iterator<Item = u64> + '_ {
    table.chunks_exact(entry_size).map(|entry| {
        entry.get(field::SIZE..field::SIZE + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes)
    })
}

/// The first [`HEAD_SIZE`] bytes of a symbol entry: the fields every dialect has.
#[cfg(all(feature = "exec", target_os = "linux"))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct SymbolHead<'a>(&'a [u8; HEAD_SIZE]);

#[cfg(all(feature = "exec", target_os = "linux"))]
impl SymbolHead<'_> {
    /// As [`SymbolView::name_offset`].
    #[inline(always)]
    pub(crate) fn name_offset(self) -> u32 {
        le_field!(self.0, u32, field::NAME_OFFSET)
    }

    /// As [`SymbolView::sym_type`].
    #[inline(always)]
    pub(crate) fn sym_type(self) -> u8 {
        self.0[field::SYM_TYPE]
    }

    /// As [`SymbolView::binding`].
    #[inline(always)]
    pub(crate) fn binding(self) -> u8 {
        self.0[field::BINDING]
    }

    /// As [`SymbolView::flags`].
    #[inline(always)]
    pub(crate) fn flags(self) -> u8 {
        self.0[field::FLAGS]
    }

    /// As [`SymbolView::value`].
    #[inline(always)]
    pub(crate) fn value(self) -> u64 {
        le_field!(self.0, u64, field::VALUE)
    }

    /// As [`SymbolView::size`].
    #[inline(always)]
    pub(crate) fn size(self) -> u64 {
        le_field!(self.0, u64, field::SIZE)
    }
}

/// The fields of one symbol entry, for [`encode`].
#[cfg(feature = "alloc")]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SymbolFields {
    pub(crate) name_offset: u32,
    pub(crate) name_hash: u32,
    pub(crate) sym_type: u8,
    pub(crate) binding: u8,
    pub(crate) visibility: u8,
    pub(crate) flags: u8,
    pub(crate) value: u64,
    pub(crate) size: u64,
    pub(crate) template_param_count: u8,
    pub(crate) section_index: u16,
    pub(crate) template_offset: u64,
}

/// Writes one entry into `out` (the dialect's entry size, zeroed by the caller); R72 entries
/// stop before the template fields.
#[cfg(feature = "alloc")]
pub(crate) fn encode(out: &mut [u8], dialect: Dialect, s: &SymbolFields) {
    let mut put = |at: usize, bytes: &[u8]| out[at..at + bytes.len()].copy_from_slice(bytes);
    put(field::NAME_OFFSET, &s.name_offset.to_le_bytes());
    put(field::NAME_HASH, &s.name_hash.to_le_bytes());
    put(field::SYM_TYPE, &[s.sym_type]);
    put(field::BINDING, &[s.binding]);
    put(field::VISIBILITY, &[s.visibility]);
    put(field::FLAGS, &[s.flags]);
    put(field::VALUE, &s.value.to_le_bytes());
    put(field::SIZE, &s.size.to_le_bytes());
    put(field::TYPE_ID, &0u32.to_le_bytes());
    put(field::VERSION, &0u32.to_le_bytes());
    if dialect.has_symbol_extension() {
        put(field::TEMPLATE_PARAM_COUNT, &[s.template_param_count]);
        put(field::SECTION_INDEX, &s.section_index.to_le_bytes());
        put(field::TEMPLATE_OFFSET, &s.template_offset.to_le_bytes());
    }
}
