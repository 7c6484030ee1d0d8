//! A relocation entry: 24 bytes in every dialect.

use super::le_field;

/// Size of one relocation entry.
pub const RELOCATION_ENTRY_SIZE: usize = 24;

/// The marker entry a module with data relocations starts its first relocation section with
/// (`docs/format.md`, "Data relocations"): loaders that do not know the extension refuse it.
pub mod marker {
    /// Its offset: past any code.
    pub const OFFSET: u64 = u64::MAX;
    /// Its symbol index: past any symbol table.
    pub const SYMBOL: u32 = u32::MAX;
    /// Its kind's wire byte: abs64, which every dialect defines.
    pub const WIRE: u8 = 1;
    /// Its addend: the bytes `SMFDREL1`, naming the extension.
    pub const DATA_RELOCATIONS: i64 = i64::from_le_bytes(*b"SMFDREL1");
}

mod field {
    pub(super) const OFFSET: usize = 0;
    pub(super) const SYMBOL_INDEX: usize = 8;
    pub(super) const KIND: usize = 12;
    pub(super) const ADDEND: usize = 16;
}

/// A view of one relocation entry.
#[derive(Clone, Copy, Debug)]
pub struct RelocationView<'a> {
    bytes: &'a [u8],
}

impl RelocationView<'_> {
    /// Where the symbol index lies in an entry (for error offsets).
    pub const SYMBOL_AT: u64 = field::SYMBOL_INDEX as u64;
    /// Where the kind byte lies in an entry.
    pub const KIND_AT: u64 = field::KIND as u64;
}

impl<'a> RelocationView<'a> {
    /// A view of a whole entry.
    pub const fn new(entry: &'a [u8; RELOCATION_ENTRY_SIZE]) -> Self {
        Self { bytes: entry }
    }

    /// A view without a length check; missing fields read as zero.
    pub const fn new_unchecked(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// Whether the buffer covers the whole entry.
    pub fn check_len(&self) -> bool {
        self.bytes.len() >= RELOCATION_ENTRY_SIZE
    }

    /// A view, or `None` if the buffer is too short.
    pub fn new_checked(bytes: &'a [u8]) -> Option<Self> {
        let view = Self::new_unchecked(bytes);
        view.check_len().then_some(view)
    }

    /// Position in the module's code.
    pub fn offset(&self) -> u64 {
        le_field!(self.bytes, u64, field::OFFSET)
    }

    /// Index into the symbol table.
    pub fn symbol_index(&self) -> u32 {
        le_field!(self.bytes, u32, field::SYMBOL_INDEX)
    }

    /// Wire kind byte (meaning depends on the dialect). The three bytes after it are padding
    /// (older loaders read a u32 here) and are ignored.
    pub fn kind(&self) -> u8 {
        le_field!(self.bytes, u8, field::KIND)
    }

    /// Addend.
    pub fn addend(&self) -> i64 {
        le_field!(self.bytes, i64, field::ADDEND)
    }
}

/// The fields of a whole entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelocationFields {
    /// Position in the module's code.
    pub offset: u64,
    /// Index into the symbol table.
    pub symbol_index: u32,
    /// Wire kind byte.
    pub kind: u8,
    /// Addend.
    pub addend: i64,
}

impl RelocationFields {
    /// The fields of a whole entry, read with no check to make (the loops over a module's
    /// entries read them this way; [`RelocationView`] reads entries of any length).
    #[inline(always)]
    pub fn of(entry: &[u8; RELOCATION_ENTRY_SIZE]) -> Self {
        let bytes = |at: usize| -> [u8; 8] { core::array::from_fn(|i| entry[at + i]) };
        let symbol: [u8; 4] = core::array::from_fn(|i| entry[field::SYMBOL_INDEX + i]);
        RelocationFields {
            offset: u64::from_le_bytes(bytes(field::OFFSET)),
            symbol_index: u32::from_le_bytes(symbol),
            kind: entry[field::KIND],
            addend: i64::from_le_bytes(bytes(field::ADDEND)),
        }
    }

    /// Whether these are the data relocations marker's offset and symbol (its kind and addend
    /// are checked apart).
    #[inline(always)]
    pub const fn is_marker(&self) -> bool {
        self.offset == marker::OFFSET && self.symbol_index == marker::SYMBOL
    }

    /// Whether this is the whole data relocations marker.
    pub const fn is_data_relocations_marker(&self) -> bool {
        self.is_marker() && self.kind == marker::WIRE && self.addend == marker::DATA_RELOCATIONS
    }

    /// The wire kind byte of a whole entry.
    #[inline(always)]
    pub const fn kind_of(entry: &[u8; RELOCATION_ENTRY_SIZE]) -> u8 {
        entry[field::KIND]
    }
}

/// Writes one entry (24 bytes) into `out`.
#[cfg(feature = "alloc")]
pub(crate) fn encode(out: &mut [u8], offset: u64, symbol_index: u32, wire: u8, addend: i64) {
    out[field::OFFSET..field::OFFSET + 8].copy_from_slice(&offset.to_le_bytes());
    out[field::SYMBOL_INDEX..field::SYMBOL_INDEX + 4].copy_from_slice(&symbol_index.to_le_bytes());
    out[field::KIND] = wire;
    out[field::ADDEND..field::ADDEND + 8].copy_from_slice(&addend.to_le_bytes());
}
