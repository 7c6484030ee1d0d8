//! The module header: 128 bytes packed (S128), 96 bytes C layout (R96), 72 bytes (R72).

use super::{le_field, MAGIC};
use crate::kinds::ModuleFlags;
use crate::Dialect;

/// Byte offsets of every header field, per dialect (`None`: the dialect has no such field).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fields {
    pub(crate) compression: Option<usize>,
    pub(crate) compression_level: Option<usize>,
    pub(crate) section_count: usize,
    pub(crate) section_table_offset: usize,
    pub(crate) symbol_table_offset: usize,
    pub(crate) symbol_count: usize,
    pub(crate) exported_count: usize,
    pub(crate) entry_point: usize,
    pub(crate) stub_size: Option<usize>,
    pub(crate) smf_data_offset: Option<usize>,
    pub(crate) module_hash: usize,
    pub(crate) source_hash: usize,
    pub(crate) app_type: Option<usize>,
    pub(crate) window_width: Option<usize>,
    pub(crate) window_height: Option<usize>,
    pub(crate) prefetch_hint: Option<usize>,
    pub(crate) prefetch_file_count: Option<usize>,
}

/// Fields shared by all dialects.
mod common {
    pub(super) const VERSION_MAJOR: usize = 4;
    pub(super) const VERSION_MINOR: usize = 5;
    pub(super) const PLATFORM: usize = 6;
    pub(super) const ARCH: usize = 7;
    pub(super) const FLAGS: usize = 8;
}

const S128: Fields = Fields {
    compression: Some(12),
    compression_level: Some(13),
    section_count: 16,
    section_table_offset: 20,
    symbol_table_offset: 28,
    symbol_count: 36,
    exported_count: 40,
    entry_point: 44,
    stub_size: Some(52),
    smf_data_offset: Some(56),
    module_hash: 60,
    source_hash: 68,
    app_type: Some(76),
    window_width: Some(77),
    window_height: Some(79),
    prefetch_hint: Some(81),
    prefetch_file_count: Some(82),
};

const R96: Fields = Fields {
    compression: Some(12),
    compression_level: Some(13),
    section_count: 16,
    section_table_offset: 24,
    symbol_table_offset: 32,
    symbol_count: 40,
    exported_count: 44,
    entry_point: 48,
    stub_size: Some(56),
    smf_data_offset: Some(60),
    module_hash: 64,
    source_hash: 72,
    app_type: Some(80),
    window_width: Some(82),
    window_height: Some(84),
    prefetch_hint: Some(86),
    prefetch_file_count: Some(87),
};

const R72: Fields = Fields {
    compression: None,
    compression_level: None,
    section_count: 12,
    section_table_offset: 16,
    symbol_table_offset: 24,
    symbol_count: 32,
    exported_count: 36,
    entry_point: 40,
    stub_size: None,
    smf_data_offset: None,
    module_hash: 48,
    source_hash: 56,
    app_type: None,
    window_width: None,
    window_height: None,
    prefetch_hint: None,
    prefetch_file_count: None,
};

/// The field table of a dialect.
pub(crate) const fn fields(dialect: Dialect) -> &'static Fields {
    match dialect {
        Dialect::S128 => &S128,
        Dialect::R96 => &R96,
        Dialect::R72 => &R72,
    }
}

/// A view of a header's bytes in a given dialect.
#[derive(Clone, Copy, Debug)]
pub struct HeaderView<'a> {
    bytes: &'a [u8],
    dialect: Dialect,
}

macro_rules! getters {
    ($($(#[$doc:meta])* $name:ident: $ty:tt;)*) => {$(
        $(#[$doc])*
        pub fn $name(&self) -> $ty {
            le_field!(self.bytes, $ty, fields(self.dialect).$name)
        }
    )*};
}

macro_rules! optional_getters {
    ($($(#[$doc:meta])* $name:ident: $ty:tt;)*) => {$(
        $(#[$doc])*
        pub fn $name(&self) -> Option<$ty> {
            fields(self.dialect).$name.map(|at| le_field!(self.bytes, $ty, at))
        }
    )*};
}

impl<'a> HeaderView<'a> {
    /// A view without a length check; missing fields read as zero.
    pub const fn new_unchecked(bytes: &'a [u8], dialect: Dialect) -> Self {
        Self { bytes, dialect }
    }

    /// Whether the buffer covers the whole header.
    pub fn check_len(&self) -> bool {
        self.bytes.len() >= self.dialect.header_size()
    }

    /// A view, or `None` if `bytes` is shorter than the dialect's header.
    pub fn new_checked(bytes: &'a [u8], dialect: Dialect) -> Option<Self> {
        let view = Self::new_unchecked(bytes, dialect);
        view.check_len().then_some(view)
    }

    /// The dialect this view reads.
    pub const fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Where the compression method lies in the header (for error offsets); `None` where
    /// the dialect has no such field.
    pub fn compression_at(&self) -> Option<u64> {
        fields(self.dialect).compression.map(|at| at as u64)
    }

    /// Whether the first four bytes are `SMF\0`.
    pub fn has_magic(&self) -> bool {
        self.bytes.get(..4) == Some(&MAGIC[..])
    }

    /// `version_major`.
    pub fn version_major(&self) -> u8 {
        le_field!(self.bytes, u8, common::VERSION_MAJOR)
    }

    /// `version_minor`.
    pub fn version_minor(&self) -> u8 {
        le_field!(self.bytes, u8, common::VERSION_MINOR)
    }

    /// Platform byte (0 any, 1 Linux, ...).
    pub fn platform(&self) -> u8 {
        le_field!(self.bytes, u8, common::PLATFORM)
    }

    /// Architecture byte (0 x86_64, 1 aarch64, ...).
    pub fn arch(&self) -> u8 {
        le_field!(self.bytes, u8, common::ARCH)
    }

    /// Module flags as stored (their meaning: [`ModuleFlags`]).
    pub fn flags(&self) -> u32 {
        le_field!(self.bytes, u32, common::FLAGS)
    }

    getters! {
        /// Number of section table entries.
        section_count: u32;
        /// Section table offset (relative to the SMF data start).
        section_table_offset: u64;
        /// Symbol table offset (relative to the SMF data start).
        symbol_table_offset: u64;
        /// Number of symbol table entries.
        symbol_count: u32;
        /// Informational count of exported symbols.
        exported_count: u32;
        /// Entry point as an offset into the code.
        entry_point: u64;
        /// Module hash (never computed by writers).
        module_hash: u64;
        /// Source hash (never computed by writers).
        source_hash: u64;
    }

    optional_getters! {
        /// Compression method (absent in R72).
        compression: u8;
        /// Compression level (absent in R72).
        compression_level: u8;
        /// Bytes of executable stub before the SMF data (absent in R72).
        stub_size: u32;
        /// Where the SMF data starts (absent in R72).
        smf_data_offset: u32;
        /// Application type (absent in R72).
        app_type: u8;
        /// Window width hint (absent in R72).
        window_width: u16;
        /// Window height hint (absent in R72).
        window_height: u16;
        /// Prefetch hint (absent in R72).
        prefetch_hint: u8;
        /// Prefetch file count hint (absent in R72).
        prefetch_file_count: u8;
    }
}

/// Every header field, decoded (fields the dialect lacks read as zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct Header {
    pub version_major: u8,
    pub version_minor: u8,
    pub platform: u8,
    pub arch: u8,
    /// The module flags as stored (bits no flag names kept).
    pub flags: ModuleFlags,
    pub compression: u8,
    pub compression_level: u8,
    pub section_count: u32,
    pub section_table_offset: u64,
    pub symbol_table_offset: u64,
    pub symbol_count: u32,
    pub exported_count: u32,
    pub entry_point: u64,
    pub stub_size: u32,
    pub smf_data_offset: u32,
    pub module_hash: u64,
    pub source_hash: u64,
    pub app_type: u8,
    pub window_width: u16,
    pub window_height: u16,
    pub prefetch_hint: u8,
    pub prefetch_file_count: u8,
}

impl Header {
    /// Every field of `view`'s header.
    pub fn read(view: &HeaderView<'_>) -> Self {
        Self {
            version_major: view.version_major(),
            version_minor: view.version_minor(),
            platform: view.platform(),
            arch: view.arch(),
            flags: ModuleFlags::from_bits_retain(view.flags()),
            compression: view.compression().unwrap_or(0),
            compression_level: view.compression_level().unwrap_or(0),
            section_count: view.section_count(),
            section_table_offset: view.section_table_offset(),
            symbol_table_offset: view.symbol_table_offset(),
            symbol_count: view.symbol_count(),
            exported_count: view.exported_count(),
            entry_point: view.entry_point(),
            stub_size: view.stub_size().unwrap_or(0),
            smf_data_offset: view.smf_data_offset().unwrap_or(0),
            module_hash: view.module_hash(),
            source_hash: view.source_hash(),
            app_type: view.app_type().unwrap_or(0),
            window_width: view.window_width().unwrap_or(0),
            window_height: view.window_height().unwrap_or(0),
            prefetch_hint: view.prefetch_hint().unwrap_or(0),
            prefetch_file_count: view.prefetch_file_count().unwrap_or(0),
        }
    }

    /// Whether the module has an entry point ([`ModuleFlags::EXECUTABLE`]).
    pub const fn is_executable(&self) -> bool {
        self.flags.contains(ModuleFlags::EXECUTABLE)
    }
}

/// Writes `header` into `out` (at least the dialect's header size, zeroed by the caller) in
/// `dialect`'s layout; fields the dialect lacks are skipped.
#[cfg(feature = "alloc")]
pub(crate) fn encode(out: &mut [u8], dialect: Dialect, header: &Header) {
    let f = fields(dialect);
    let mut put = |at: usize, bytes: &[u8]| out[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &MAGIC);
    put(common::VERSION_MAJOR, &[header.version_major]);
    put(common::VERSION_MINOR, &[header.version_minor]);
    put(common::PLATFORM, &[header.platform]);
    put(common::ARCH, &[header.arch]);
    put(common::FLAGS, &header.flags.bits().to_le_bytes());
    put(f.section_count, &header.section_count.to_le_bytes());
    put(f.section_table_offset, &header.section_table_offset.to_le_bytes());
    put(f.symbol_table_offset, &header.symbol_table_offset.to_le_bytes());
    put(f.symbol_count, &header.symbol_count.to_le_bytes());
    put(f.exported_count, &header.exported_count.to_le_bytes());
    put(f.entry_point, &header.entry_point.to_le_bytes());
    put(f.module_hash, &header.module_hash.to_le_bytes());
    put(f.source_hash, &header.source_hash.to_le_bytes());
    let optional: [(Option<usize>, &[u8]); 9] = [
        (f.compression, &[header.compression]),
        (f.compression_level, &[header.compression_level]),
        (f.stub_size, &header.stub_size.to_le_bytes()),
        (f.smf_data_offset, &header.smf_data_offset.to_le_bytes()),
        (f.app_type, &[header.app_type]),
        (f.window_width, &header.window_width.to_le_bytes()),
        (f.window_height, &header.window_height.to_le_bytes()),
        (f.prefetch_hint, &[header.prefetch_hint]),
        (f.prefetch_file_count, &[header.prefetch_file_count]),
    ];
    for (at, bytes) in optional {
        if let Some(at) = at {
            put(at, bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_tables_stay_inside_their_headers() {
        for d in Dialect::ALL {
            let f = fields(d);
            let widths = [
                (Some(f.section_count), 4),
                (Some(f.section_table_offset), 8),
                (Some(f.symbol_table_offset), 8),
                (Some(f.symbol_count), 4),
                (Some(f.exported_count), 4),
                (Some(f.entry_point), 8),
                (f.stub_size, 4),
                (f.smf_data_offset, 4),
                (Some(f.module_hash), 8),
                (Some(f.source_hash), 8),
                (f.prefetch_file_count, 1),
            ];
            for (at, width) in widths {
                if let Some(at) = at {
                    assert!(at + width <= d.header_size(), "{d}: field at {at}");
                }
            }
        }
    }

    #[test]
    fn short_buffers_read_as_zero_without_panicking() {
        let view = HeaderView::new_unchecked(b"SMF\0", Dialect::S128);
        assert!(view.has_magic());
        assert!(!view.check_len());
        assert_eq!(view.symbol_count(), 0);
        assert_eq!(view.stub_size(), Some(0));
        assert!(HeaderView::new_checked(&[0; 71], Dialect::R72).is_none());
        assert!(HeaderView::new_checked(&[0; 72], Dialect::R72).is_some());
        assert_eq!(HeaderView::new_unchecked(&[0; 72], Dialect::R72).stub_size(), None);
    }
}
