//! The records a validated module hands out (besides its header, [`crate::wire::Header`]):
//! its sections, symbols, relocations and where its data sections go.

use super::*;

/// One section table entry, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section<'a> {
    /// Position in the section table.
    pub index: u32,
    /// What the section holds.
    pub section_type: SectionType,
    /// Flags as stored (bits no flag names kept).
    pub flags: SectionFlags,
    /// Payload offset as stored (relative to the SMF data start).
    pub offset: u64,
    /// Bytes in the file.
    pub size: u64,
    /// Bytes in memory.
    pub virtual_size: u64,
    /// Alignment as stored.
    pub alignment: u64,
    /// Name bytes (up to the first NUL).
    pub name: &'a [u8],
    /// The payload bytes (empty for note.sdn, whose text is read through [`Module::note_sdn`]).
    pub data: &'a [u8],
    /// Where `data` starts in the file.
    pub file_offset: u64,
}

impl Section<'_> {
    pub(super) fn is_note_sdn(name: &[u8]) -> bool {
        name == NOTE_SDN_SECTION
    }

    /// The error of this compressed section's frame not decompressing as it states: names
    /// the section and where its frame lies in the file.
    #[cold]
    pub fn decompression_error(&self, problem: crate::CompressionProblem) -> crate::Error {
        crate::Error::new(
            crate::ErrorKind::BadCompressedSection { index: self.index, problem },
            self.file_offset,
        )
    }
}

/// Which part of the data image a data section goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataRegion {
    /// Read-only after relocation (rodata).
    ReadOnly,
    /// Writable (data and bss).
    ReadWrite,
}

/// Where a data section sits in the data image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataPlacement<'a> {
    /// The section.
    pub section: Section<'a>,
    /// Its region.
    pub region: DataRegion,
    /// Offset of the section inside its region.
    pub offset: u64,
}

/// The image a relocation patches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelocatedImage {
    /// The code image (every relocation section but those flagged
    /// [`SectionFlags::RELOCATES_DATA`]).
    Code,
    /// The data image: read-only region, then the writable region at
    /// [`Module::writable_data_start`] (`docs/format.md`, "Data relocations").
    Data,
}

impl RelocatedImage {
    /// Its name in reports and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            RelocatedImage::Code => "code",
            RelocatedImage::Data => "data",
        }
    }
}

/// What a symbol's value addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolTarget {
    /// An offset into the code image.
    Code(u64),
    /// An offset inside a data, rodata or bss section (0-based section index).
    Data {
        /// Section index.
        section: u32,
        /// Offset inside the section.
        offset: u64,
    },
    /// Nothing in this module (imports, types, traits, actors).
    None,
}

/// One symbol, decoded and validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Symbol<'a> {
    /// Position in the symbol table.
    pub index: u32,
    /// Name bytes (validated NUL-terminated in the string table; may be any bytes).
    pub name: &'a [u8],
    /// Where the name starts in the string table ([`Module::strings`]).
    pub name_offset: u32,
    /// Kind, with the dialect's numbering and import rule applied.
    pub kind: SymbolKind,
    /// Binding.
    pub binding: Binding,
    /// Visibility byte as stored.
    pub visibility: u8,
    /// Flags as stored (bits no flag names kept).
    pub flags: SymbolFlags,
    /// Value as stored.
    pub value: u64,
    /// Size as stored.
    pub size: u64,
    /// The hash stored in the file (may be wrong; see [`Symbol::hash`]).
    pub stored_hash: u32,
    /// Number of generic parameters.
    pub template_param_count: u8,
    /// Offset of the template entry (meaningful with the template flag).
    pub template_offset: u64,
    /// What the value addresses.
    pub target: SymbolTarget,
}

impl<'a> Symbol<'a> {
    /// The name as UTF-8, if it is.
    pub fn name_str(&self) -> Option<&'a str> {
        core::str::from_utf8(self.name).ok()
    }

    /// FNV-1a of the name, recomputed (the stored value is not trusted).
    pub fn hash(&self) -> u32 {
        crate::fnv1a(self.name)
    }

    /// Whether other modules may see it: defined here and not local.
    pub fn is_exported(&self) -> bool {
        Self::visible_outside(self.kind, self.binding)
    }

    /// Whether a symbol of this binding must have a non-empty name: every symbol but a local
    /// one (an export or an import: an empty name could be neither looked up nor provided).
    /// Locals may be unnamed, as ELF section symbols are. The one home of the rule, for the
    /// decoder and the loader.
    pub(crate) const fn must_be_named(binding: Binding) -> bool {
        !matches!(binding, Binding::Local)
    }

    /// Whether a symbol of this kind and binding is visible to other modules: defined here
    /// and not local. The one home of the rule, for the decoder, the loader and the writer
    /// (which counts such symbols into the header).
    pub(crate) const fn visible_outside(kind: SymbolKind, binding: Binding) -> bool {
        !matches!(binding, Binding::Local) && !matches!(kind, SymbolKind::Import)
    }

    /// Whether it is a generic template ([`SymbolFlags::TEMPLATE`]).
    pub fn is_template(&self) -> bool {
        self.flags.contains(SymbolFlags::TEMPLATE)
    }
}

/// One relocation, decoded and validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relocation {
    /// Position across all relocation sections, in table order.
    pub index: u64,
    /// The image it patches.
    pub image: RelocatedImage,
    /// Offset of the patched bytes in that image.
    pub offset: u64,
    /// Symbol index.
    pub symbol: u32,
    /// What to compute.
    pub kind: RelocKind,
    /// The wire byte.
    pub wire: u8,
    /// Addend.
    pub addend: i64,
}
