//! What the builder is told to write: sections, symbols, templates and relocations as the
//! caller describes them (before names are interned and offsets laid out), and why a build
//! can fail.

use alloc::vec::Vec;
use core::fmt;

use crate::kinds::{Binding, RelocKind, SectionFlags, SectionType, SymbolFlags, SymbolKind};
use crate::template::TemplateKind;
use crate::Dialect;

/// Why a module could not be written.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// A symbol name contains a NUL byte, which the string table cannot hold.
    NameHasNul {
        /// Symbol index.
        symbol: u32,
    },
    /// The dialect has no wire value for this relocation kind.
    RelocationNotInDialect {
        /// The kind.
        kind: RelocKind,
        /// The dialect.
        dialect: Dialect,
    },
    /// The dialect cannot keep its header there (S128 is always a trailer, R72 always first).
    PlacementNotSupported {
        /// The dialect.
        dialect: Dialect,
    },
    /// A stub needs the header at the end of the file.
    StubNeedsTrailer,
    /// A count or offset does not fit its field.
    TooLarge,
    /// A data relocation names a section that is not a data, rodata or bss section, or an
    /// offset past its end.
    DataRelocationOutsideSection {
        /// The section (as [`super::ModuleBuilder::add_section`] numbered it).
        section: u32,
        /// The offset in it.
        offset: u64,
    },
    /// Two data relocations patch the same bytes.
    DataRelocationsOverlap {
        /// Where the second starts, in the data image.
        offset: u64,
    },
    /// The note's text has a line a reader would take for its end (`# END_NOTE`), so the note
    /// would read back cut short.
    NoteHasTerminator {
        /// Where that line starts in the text.
        at: usize,
    },
    /// The content written (a stub, section bytes) holds another layout's header where that
    /// layout keeps it, valid and preferred by the format's tie rule: the file would read as
    /// that other module.
    ReadAsAnotherLayout {
        /// The dialect it would read as.
        dialect: Dialect,
        /// Where that header is.
        placement: crate::HeaderPlacement,
    },
    /// The note's text is longer than a reader looks for its end (1 MiB).
    NoteTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// Compression asked of a dialect whose header has no compression byte (R72): a reader
    /// could not tell the sections are compressed.
    NoCompressionByte {
        /// The dialect.
        dialect: Dialect,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::NameHasNul { symbol } => write!(f, "symbol {symbol}: name contains a NUL byte"),
            BuildError::RelocationNotInDialect { kind, dialect } => {
                write!(f, "relocation kind {} cannot be written in {dialect}", kind.name())
            }
            BuildError::PlacementNotSupported { dialect } => {
                write!(f, "{dialect} cannot keep its header there")
            }
            BuildError::StubNeedsTrailer => f.write_str("a stub needs the header at the end of the file"),
            BuildError::TooLarge => f.write_str("a count or offset does not fit its field"),
            BuildError::DataRelocationOutsideSection { section, offset } => {
                write!(f, "data relocation at {offset:#x} in section {section}: not inside a data section")
            }
            BuildError::DataRelocationsOverlap { offset } => {
                write!(
                    f,
                    "data relocation at {offset:#x} of the data image patches bytes another one patches"
                )
            }
            BuildError::NoteHasTerminator { at } => write!(
                f,
                "note.sdn: the line at byte {at} is `# END_NOTE`, where a reader would end the note"
            ),
            BuildError::ReadAsAnotherLayout { dialect, placement } => write!(
                f,
                "the content holds a valid {dialect} header {}, which readers would take for this module's",
                match placement {
                    crate::HeaderPlacement::Start => "at the start",
                    crate::HeaderPlacement::Trailer => "at the end",
                }
            ),
            BuildError::NoCompressionByte { dialect } => {
                write!(f, "{dialect} has no compression byte: its sections cannot be compressed")
            }
            BuildError::NoteTooLong { len } => write!(
                f,
                "note.sdn: {len} bytes, past the {} a reader looks for its end in",
                crate::note_sdn::SCAN_LIMIT
            ),
        }
    }
}

impl core::error::Error for BuildError {}

/// A section to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionSpec {
    /// What it holds.
    pub section_type: SectionType,
    /// Name (at most 16 bytes are kept).
    pub name: Vec<u8>,
    /// Flags.
    pub flags: SectionFlags,
    /// Payload.
    pub data: Vec<u8>,
    /// Bytes in memory (at least `data.len()`; more is zero-filled).
    pub virtual_size: u64,
    /// Alignment written to the entry (and honoured for payload placement in R96/R72).
    pub alignment: u64,
}

impl SectionSpec {
    /// A section of `section_type` holding `data`.
    pub fn new(
        section_type: SectionType,
        name: &[u8],
        flags: SectionFlags,
        data: Vec<u8>,
        alignment: u64,
    ) -> Self {
        let virtual_size = data.len() as u64;
        Self { section_type, name: name.to_vec(), flags, data, virtual_size, alignment }
    }

    /// The note naming the shared libraries a module needs (`docs/format.md`, "Needed
    /// libraries"), one a line, in order. The reader refuses names that are not file names
    /// of the search path, or too many.
    pub fn needed_libraries<N: AsRef<[u8]>>(names: &[N]) -> Self {
        let mut data = Vec::new();
        for name in names {
            data.extend_from_slice(name.as_ref());
            data.push(b'\n');
        }
        let name = crate::module::needed::NEEDED_SECTION;
        Self::new(SectionType::StringTable, name, SectionFlags::empty(), data, 1)
    }
}

impl SectionSpec {
    /// The note naming functions for debuggers and profilers only (`docs/format.md`,
    /// "Function names"): `functions` as (code offset, size, name), in that order; `None` if
    /// they do not fit the section's 32-bit fields.
    pub fn function_names<'n>(
        functions: impl ExactSizeIterator<Item = (u64, u64, &'n [u8])> + Clone,
    ) -> Option<Self> {
        let data = crate::module::function_names::write(functions)?;
        let name = crate::module::function_names::FUNCTION_NAMES_SECTION;
        Some(Self::new(SectionType::StringTable, name, SectionFlags::empty(), data, 1))
    }
}

/// A symbol to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolSpec {
    /// Name bytes (no NUL).
    pub name: Vec<u8>,
    /// Kind. S128 writes imports as functions with value 0 and size 0.
    pub kind: SymbolKind,
    /// Binding.
    pub binding: Binding,
    /// Visibility byte.
    pub visibility: u8,
    /// Symbol flags.
    pub flags: SymbolFlags,
    /// Value (code offset, or offset in `section`).
    pub value: u64,
    /// Size.
    pub size: u64,
    /// Defining data section (0-based), written 1-based; `None` writes 0.
    pub section: Option<u32>,
    /// Generic parameter count.
    pub template_param_count: u8,
    /// Offset of the template entry.
    pub template_offset: u64,
    /// Hash to store instead of the FNV-1a of the name (for tests of untrusted hashes).
    pub stored_hash: Option<u32>,
}

impl SymbolSpec {
    /// A global symbol of `kind` at `value` with `size`.
    pub fn new(name: &[u8], kind: SymbolKind, value: u64, size: u64) -> Self {
        Self {
            name: name.to_vec(),
            kind,
            binding: Binding::Global,
            visibility: 0,
            flags: SymbolFlags::empty(),
            value,
            size,
            section: None,
            template_param_count: 0,
            template_offset: 0,
            stored_hash: None,
        }
    }

    /// A global function at code offset `value`.
    pub fn function(name: &[u8], value: u64, size: u64) -> Self {
        Self::new(name, SymbolKind::Function, value, size)
    }

    /// An import: an undefined symbol resolved from another module.
    pub fn import(name: &[u8]) -> Self {
        Self::new(name, SymbolKind::Import, 0, 0)
    }

    /// A global data object at `offset` inside data section `section`.
    pub fn data(name: &[u8], section: u32, offset: u64, size: u64) -> Self {
        Self { section: Some(section), visibility: 1, ..Self::new(name, SymbolKind::Data, offset, size) }
    }

    /// The same symbol with another binding.
    pub fn with_binding(mut self, binding: Binding) -> Self {
        self.binding = binding;
        self
    }
}

/// A generic template to write into the template-code section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateSpec {
    /// What it defines.
    pub kind: TemplateKind,
    /// Its name.
    pub name: Vec<u8>,
    /// Generic parameter names.
    pub params: Vec<Vec<u8>>,
    /// Kind-specific body (opaque to the loader; handed to the runtime's compiler).
    pub body: Vec<u8>,
}

/// A relocation to write: its wire byte, or the kind to encode in the module's dialect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RelocSpec {
    /// Offset in the code image (or, for a data relocation, in the data section `section`).
    pub(super) offset: u64,
    pub(super) symbol: u32,
    pub(super) wire: Result<u8, RelocKind>,
    pub(super) addend: i64,
}

/// A data relocation to write: where it patches (a data section and an offset in it, or, to
/// write malformed files, an offset in the data image as it is), and the entry's fields.
#[derive(Clone, Debug)]
pub(super) struct DataRelocSpec {
    pub(super) at: DataSite,
    pub(super) relocation: RelocSpec,
}

/// Where a data relocation patches.
#[derive(Clone, Copy, Debug)]
pub(super) enum DataSite {
    /// Section (as the builder numbered it) and offset in it.
    InSection(u32, u64),
    /// Offset in the data image, written as it is.
    InImage(u64),
}
