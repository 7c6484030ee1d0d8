//! The three on-disk layouts ("dialects") of SMF and where each keeps its header.
//!
//! See `docs/format.md` for the table of layouts. The dialect decides entry sizes, field
//! offsets, the numbering of symbol types and the meaning of relocation kinds, so it is known
//! before anything else is read.

use core::fmt;

/// One of the three incompatible SMF layouts that real writers emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Self-hosted Simple compiler: packed 128-byte header as a trailer, 64-byte sections.
    S128,
    /// Rust "seed" compiler and linker: 96-byte C-layout header at offset 0 (or appended).
    R96,
    /// Older Rust builders: 72-byte header at offset 0, 40-byte symbols.
    R72,
}

impl Dialect {
    /// All dialects, in the order the C ABI numbers them (0 S128, 1 R96, 2 R72).
    pub const ALL: [Dialect; 3] = [Dialect::S128, Dialect::R96, Dialect::R72];

    /// Whether symbol entries carry the template fields (template parameter count, defining
    /// section, template offset): every dialect but R72.
    #[inline(always)]
    pub const fn has_symbol_extension(self) -> bool {
        match self {
            Dialect::S128 | Dialect::R96 => true,
            Dialect::R72 => false,
        }
    }

    /// Whether the header has a compression byte (`docs/format.md`, "Compression"): every
    /// dialect but R72.
    pub const fn has_compression_byte(self) -> bool {
        match self {
            Dialect::S128 | Dialect::R96 => true,
            Dialect::R72 => false,
        }
    }

    /// Whether imports are known by their value rather than their type: S128 has no "none"
    /// symbol type, so a non-local symbol with value 0 and size 0 (not a template) is an import
    /// ([`crate::SymbolKind::of_entry`]).
    #[inline(always)]
    pub const fn marks_imports_by_value(self) -> bool {
        match self {
            Dialect::S128 => true,
            Dialect::R96 | Dialect::R72 => false,
        }
    }

    /// Header size in bytes.
    pub const fn header_size(self) -> usize {
        match self {
            Dialect::S128 => 128,
            Dialect::R96 => 96,
            Dialect::R72 => 72,
        }
    }

    /// Section table entry size in bytes.
    pub const fn section_entry_size(self) -> usize {
        match self {
            Dialect::S128 => 64,
            Dialect::R96 | Dialect::R72 => 56,
        }
    }

    /// Symbol table entry size in bytes.
    pub const fn symbol_entry_size(self) -> usize {
        match self {
            Dialect::S128 | Dialect::R96 => 56,
            Dialect::R72 => 40,
        }
    }

    /// The name used in reports and JSON ("S128", "R96", "R72").
    pub const fn name(self) -> &'static str {
        match self {
            Dialect::S128 => "S128",
            Dialect::R96 => "R96",
            Dialect::R72 => "R72",
        }
    }

    /// The C ABI's number for the dialect (0 S128, 1 R96, 2 R72).
    pub const fn abi_code(self) -> i32 {
        match self {
            Dialect::S128 => 0,
            Dialect::R96 => 1,
            Dialect::R72 => 2,
        }
    }

    /// Parses "s128", "r96" or "r72" (any case).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a module's header was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderPlacement {
    /// At offset 0, tables after it.
    Start,
    /// The last `header_size` bytes of the file (S128 always; R96 when appended to a stub).
    Trailer,
}
