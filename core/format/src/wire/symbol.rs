//! A symbol table entry: 56 bytes in S128 and R96, 40 bytes in R72 (which stops after
//! `version`, so the template fields read as zero there).

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

/// Bytes of the fields every dialect's entry has (all of R72's).
const HEAD_SIZE: usize = 40;
/// Bytes of the template fields S128 and R96 add.
const EXTENSION_SIZE: usize = 16;

/// A view of one whole symbol table entry: its fields read from fixed-size arrays, so that
/// reading one costs no bounds check.
#[derive(Clone, Copy, Debug)]
pub struct SymbolView<'a> {
    head: &'a [u8; HEAD_SIZE],
    /// The template fields, in the dialects that have them.
    extension: Option<&'a [u8; EXTENSION_SIZE]>,
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

/// `N` bytes of `bytes` from `at` (constants inside the array: the compiler drops the check,
/// and the zeros are never read).
#[inline(always)]
fn le<const N: usize, const M: usize>(bytes: &[u8; M], at: usize) -> [u8; N] {
    bytes.get(at..at + N).and_then(|b| <[u8; N]>::try_from(b).ok()).unwrap_or([0; N])
}

impl<'a> SymbolView<'a> {
    /// A view of the entry at the start of `bytes`, or `None` if they are shorter than the
    /// dialect's entry.
    #[inline(always)]
    pub fn new_checked(bytes: &'a [u8], dialect: Dialect) -> Option<Self> {
        let head = bytes.first_chunk::<HEAD_SIZE>()?;
        let extension = match dialect.has_symbol_extension() {
            true => Some(bytes.get(HEAD_SIZE..)?.first_chunk::<EXTENSION_SIZE>()?),
            false => None,
        };
        Some(Self { head, extension })
    }

    /// Offset of the name in the string table.
    #[inline(always)]
    pub fn name_offset(&self) -> u32 {
        u32::from_le_bytes(le(self.head, field::NAME_OFFSET))
    }

    /// The stored FNV-1a hash of the name (never trusted: see [`crate::fnv1a`]).
    #[inline(always)]
    pub fn name_hash(&self) -> u32 {
        u32::from_le_bytes(le(self.head, field::NAME_HASH))
    }

    /// Raw symbol type byte (numbering depends on the dialect).
    #[inline(always)]
    pub fn sym_type(&self) -> u8 {
        self.head[field::SYM_TYPE]
    }

    /// Raw binding byte.
    #[inline(always)]
    pub fn binding(&self) -> u8 {
        self.head[field::BINDING]
    }

    /// Visibility byte.
    #[inline(always)]
    pub fn visibility(&self) -> u8 {
        self.head[field::VISIBILITY]
    }

    /// Symbol flags as stored (layout phase, template, ...: [`crate::kinds::SymbolFlags`]).
    #[inline(always)]
    pub fn flags(&self) -> u8 {
        self.head[field::FLAGS]
    }

    /// Value: an offset into the code (or the data section named by `section_index`).
    #[inline(always)]
    pub fn value(&self) -> u64 {
        u64::from_le_bytes(le(self.head, field::VALUE))
    }

    /// Size in bytes.
    #[inline(always)]
    pub fn size(&self) -> u64 {
        u64::from_le_bytes(le(self.head, field::SIZE))
    }

    /// Type id (always 0 today).
    pub fn type_id(&self) -> u32 {
        u32::from_le_bytes(le(self.head, field::TYPE_ID))
    }

    /// Version (always 0 today).
    pub fn version(&self) -> u32 {
        u32::from_le_bytes(le(self.head, field::VERSION))
    }

    /// Number of generic parameters (0 where the dialect has no template fields).
    #[inline(always)]
    pub fn template_param_count(&self) -> u8 {
        self.extension.map_or(0, |e| e[field::TEMPLATE_PARAM_COUNT - HEAD_SIZE])
    }

    /// Defining section, 1-based, 0 for none (newest R96 linker; zero elsewhere).
    #[inline(always)]
    pub fn section_index(&self) -> u16 {
        self.extension.map_or(0, |e| u16::from_le_bytes(le(e, field::SECTION_INDEX - HEAD_SIZE)))
    }

    /// Offset of the symbol's entry in the template-code section (0 where the dialect has no
    /// template fields).
    #[inline(always)]
    pub fn template_offset(&self) -> u64 {
        self.extension.map_or(0, |e| u64::from_le_bytes(le(e, field::TEMPLATE_OFFSET - HEAD_SIZE)))
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
