//! The validated module image: [`Module::parse`] finds the dialect, checks every table, payload,
//! name, symbol and relocation against the file, and computes the code and data layout.
//!
//! Contract: once `parse` has returned `Ok`, every accessor of [`Module`] is infallible and
//! panic-free, and every offset it hands out lies inside the file. Parsing allocates nothing and
//! decodes each table entry once (a relocation's kind byte is read once more, when its section
//! is checked, to count the GOT slots a loader must plan; a file two layouts read with valid
//! tables is validated as each to choose, see [`ModuleTables::check`]).
//!
//! Rules chosen where the toolchains disagree (see `docs/format.md`):
//! - All table and payload offsets are relative to `smf_data_offset` (S128 and R96; R72 has no
//!   such field), whatever the flags say.
//! - Tables and payloads must lie between the SMF data start and the header (trailer) or the end
//!   of the file (header at offset 0).
//! - Function symbols address the code (all code sections concatenated in table order, each
//!   taking `virtual_size` bytes). Data and constant symbols whose defining-section field names a
//!   data, rodata or bss section address that section; otherwise they address the code too.

mod decode;
pub mod function_names;
mod layout;
pub mod linked;
pub mod needed;
mod records;
mod staged;
mod symbols;
mod template_symbols;
pub mod unwind;
mod validate;

pub use crate::wire::Header;
pub use decode::Relocations;
pub use records::{DataPlacement, DataRegion, RelocatedImage, Relocation, Section, Symbol, SymbolTarget};
pub use staged::{DecodeError, ModuleSymbols, ModuleTables};
pub use symbols::SymbolRepr;
pub use validate::RelocationSink;

pub(crate) use layout::DataLayout;

use crate::bytes::range_within;
use crate::compress::{Frame, Method, Payload};
use crate::detect::{self, Candidate};
use crate::error::{CompressionProblem, Error, ErrorKind, Result, UnwindProblem};
use crate::kinds::CallArrayProblem;
use crate::kinds::{
    Binding, CallArray, RelocKind, SectionFlags, SectionType, SymbolFlags, SymbolKind, CALL_ARRAY_ENTRY,
};
use crate::note_sdn::{self, NoteSdn};
use crate::template::{TemplateCode, TemplateEntry, TemplateMeta};
use crate::wire::relocation::{RelocationFields, RELOCATION_ENTRY_SIZE};
use crate::wire::{HeaderView, RelocationView, SectionView, SymbolView};
use crate::{Dialect, HeaderPlacement};

/// The name that marks the note.sdn section.
pub const NOTE_SDN_SECTION: &[u8] = b"note.sdn";
/// The name of the template-meta section.
pub const TEMPLATE_META_SECTION: &[u8] = b"template_meta";
/// Largest alignment honoured for data sections.
pub const MAX_ALIGNMENT: u64 = 1 << 16;

/// Whether a stored section alignment is usable: 0 (none) or a power of two up to
/// [`MAX_ALIGNMENT`].
pub const fn alignment_ok(alignment: u64) -> bool {
    let align = if alignment == 0 { 1 } else { alignment };
    align.is_power_of_two() && align <= MAX_ALIGNMENT
}

/// How to parse: an explicit dialect, and how much memory a module may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseOptions {
    /// Read only this dialect instead of detecting it.
    pub dialect: Option<Dialect>,
    /// Largest code plus data image (in bytes, including bss and zero fill) accepted.
    pub max_image_bytes: u64,
}

impl ParseOptions {
    /// The default limit on code plus data: 512 MiB.
    pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 512 << 20;
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self { dialect: None, max_image_bytes: Self::DEFAULT_MAX_IMAGE_BYTES }
    }
}

/// A validated SMF module borrowing the file's bytes.
#[derive(Clone, Copy, Debug)]
pub struct Module<'a> {
    file: &'a [u8],
    dialect: Dialect,
    placement: HeaderPlacement,
    header_offset: u64,
    header: Header,
    base: u64,
    region_end: u64,
    section_table: &'a [u8],
    section_table_at: u64,
    symbol_table: &'a [u8],
    symbol_table_at: u64,
    strings: &'a [u8],
    code_size: u64,
    read_only_size: u64,
    read_write_size: u64,
    data_alignment: u64,
    code_alignment: u64,
    relocation_count: u64,
    got_relocation_count: u64,
    /// Entries of the code's relocation sections.
    code_relocation_count: u64,
    /// Where the writable region starts in the data image (data relocation offsets).
    writable_data_start: u64,
    /// Whether the first relocation entry is the data relocations marker.
    data_relocations_marker: bool,
    /// Number of constructor and destructor array sections.
    call_arrays: u32,
    /// Number of unwind table sections.
    unwind_tables: u32,
    import_count: u32,
    note: Option<&'a str>,
    /// The needed-libraries section's bytes (checked), if any.
    needed: Option<&'a [u8]>,
    /// The function-names section's bytes (`note.names`, [`function_names`]), checked.
    function_names: Option<&'a [u8]>,
    template_code: Option<TemplateCode<'a>>,
    template_meta: Option<TemplateMeta<'a>>,
}

impl<'a> Module<'a> {
    // ----- decoding shared by validation and the accessors -----

    // ----- the public, infallible accessors -----

    /// The whole file.
    pub const fn file(&self) -> &'a [u8] {
        self.file
    }

    /// The dialect found (or forced).
    pub const fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Where the header was found.
    pub const fn placement(&self) -> HeaderPlacement {
        self.placement
    }

    /// File offset of the header.
    pub const fn header_offset(&self) -> u64 {
        self.header_offset
    }

    /// The decoded header.
    pub const fn header(&self) -> &Header {
        &self.header
    }

    /// File offset every table and payload offset is relative to.
    pub const fn data_start(&self) -> u64 {
        self.base
    }

    /// Bytes of code (all code sections, at their virtual sizes).
    pub const fn code_size(&self) -> u64 {
        self.code_size
    }

    /// Bytes of the read-only data region.
    pub const fn read_only_size(&self) -> u64 {
        self.read_only_size
    }

    /// Bytes of the writable data region (data and bss).
    pub const fn read_write_size(&self) -> u64 {
        self.read_write_size
    }

    /// The largest alignment a data section asks for (at least 1, at most [`MAX_ALIGNMENT`]).
    /// Sections are placed at multiples of their alignment from their region's start, so a
    /// loader starts each region at a multiple of this.
    pub const fn data_alignment(&self) -> u64 {
        self.data_alignment
    }

    /// The largest alignment a code section asks for (at least 1, at most [`MAX_ALIGNMENT`]).
    /// Code sections lie end to end in the code image, so a section's alignment holds in
    /// memory when its writer starts it at a multiple of it there (`smf pack` does) and the
    /// loader starts the code at a multiple of this.
    pub const fn code_alignment(&self) -> u64 {
        self.code_alignment
    }

    /// Where the writable region starts in the data image, the space data relocation offsets
    /// are in: the read-only size rounded up to [`Module::data_alignment`].
    pub const fn writable_data_start(&self) -> u64 {
        self.writable_data_start
    }

    /// Number of sections.
    pub const fn section_count(&self) -> u32 {
        self.header.section_count
    }

    /// Number of symbols.
    pub const fn symbol_count(&self) -> u32 {
        self.header.symbol_count
    }

    /// Number of relocations across all relocation sections.
    pub const fn relocation_count(&self) -> u64 {
        self.relocation_count
    }

    /// Number of relocations that need a GOT slot for their symbol.
    pub const fn got_relocation_count(&self) -> u64 {
        self.got_relocation_count
    }

    /// Number of entries of the relocation sections that patch the code (a data relocations
    /// marker there counted too): with none, the loaded code is the file's code sections'
    /// bytes as they lie (a linked module's: `docs/format.md`, "Linked modules").
    pub const fn code_relocation_count(&self) -> u64 {
        self.code_relocation_count
    }

    /// Number of imports (symbols resolved from outside the module).
    pub const fn import_count(&self) -> u32 {
        self.import_count
    }

    /// The string table bytes.
    pub const fn strings(&self) -> &'a [u8] {
        self.strings
    }

    /// Section `index`.
    pub fn section(&self, index: u32) -> Option<Section<'a>> {
        if index >= self.header.section_count {
            return None;
        }
        self.decode_section(index).ok()
    }

    /// How the module's compressed sections are compressed (the header's `compression`
    /// byte); `None` if none is.
    pub fn compression(&self) -> Option<Method> {
        // Validated with the header: only known methods get this far.
        Method::from_wire(self.header.compression).ok().flatten()
    }

    /// The bytes `section` (one of this module's) puts in memory before its zeroed tail: its
    /// payload as stored, or the compressed frame it holds (validated: a compressed section's
    /// frame states at most its virtual size).
    pub fn payload(&self, section: &Section<'a>) -> Payload<'a> {
        match self.compression() {
            Some(method) if section.flags.contains(SectionFlags::COMPRESSED) => {
                match Frame::of(method, section.data, section.virtual_size) {
                    Ok(frame) => Payload::Compressed(frame),
                    Err(_) => Payload::Raw(&[]),
                }
            }
            _ => Payload::Raw(section.data),
        }
    }

    /// All sections in table order.
    pub fn sections(&self) -> impl Iterator<Item = Section<'a>> + '_ {
        (0..self.header.section_count).filter_map(|i| self.section(i))
    }

    /// The sections whose type `wanted` accepts, in table order: only those decoded (of the
    /// others, only the type is read).
    fn sections_of(&self, wanted: fn(SectionType) -> bool) -> impl Iterator<Item = Section<'a>> + '_ {
        (0..self.header.section_count)
            .filter(move |&i| self.is_section_of(i, wanted))
            .filter_map(|i| self.section(i))
    }

    /// Whether section `index`'s type is one `wanted` accepts (read from its entry alone).
    pub(super) fn is_section_of(&self, index: u32, wanted: impl Fn(SectionType) -> bool) -> bool {
        self.section_view(index).is_some_and(|view| wanted(SectionType::from_wire(view.section_type())))
    }

    /// Code sections with their offset in the code image.
    pub fn code_sections(&self) -> impl Iterator<Item = (Section<'a>, u64)> + '_ {
        let mut at = 0u64;
        self.sections_of(|t| t == SectionType::Code).map(move |s| {
            let offset = at;
            at += s.virtual_size;
            (s, offset)
        })
    }

    /// Data, rodata and bss sections with their place in the data image.
    pub fn data_sections(&self) -> impl Iterator<Item = DataPlacement<'a>> + '_ {
        let mut layout = DataLayout::default();
        self.sections_of(SectionType::is_data).filter_map(move |section| {
            let (region, offset) = layout.place(&section)?;
            Some(DataPlacement { section, region, offset })
        })
    }

    /// Symbol `index`.
    pub fn symbol(&self, index: u32) -> Option<Symbol<'a>> {
        if index >= self.header.symbol_count {
            return None;
        }
        self.decode_symbol(index).ok()
    }

    /// All symbols in table order (the entries in turn, each decoded and checked as
    /// [`Module::symbol`] does, without finding it by its index).
    pub fn symbols(&self) -> impl Iterator<Item = Symbol<'a>> + '_ {
        let dialect = self.dialect;
        let entries = self.symbol_table.chunks_exact(dialect.symbol_entry_size());
        (0..self.header.symbol_count).zip(entries).filter_map(move |(index, entry)| {
            let repr = self.entry_repr(index, SymbolView::new_checked(entry, dialect)?).ok()?;
            Some(Symbol::from_repr(index, self.symbol_name(&repr), &repr))
        })
    }

    /// The first exported symbol named `name` (linear scan; the loader builds a hash index).
    pub fn find_export(&self, name: &[u8]) -> Option<Symbol<'a>> {
        let hash = crate::fnv1a(name);
        self.symbols().find(|s| s.is_exported() && s.name == name && s.hash() == hash)
    }

    /// All relocations in table order (each validated when the module was parsed: its kind
    /// known to the dialect, and, unless it is `None`, its symbol in the table and the bytes it
    /// patches inside its image), without the data relocations marker (whose index is skipped).
    pub fn relocations(&self) -> Relocations<'_, 'a> {
        Relocations::new(self)
    }

    /// Whether the module has data relocations (and so starts its relocations with the marker
    /// that makes older loaders refuse it).
    pub const fn has_data_relocations_marker(&self) -> bool {
        self.data_relocations_marker
    }

    /// The constructor and destructor arrays, in table order, with their place in the data
    /// image (validated: rodata, whole 8-byte entries, aligned to 8). A walk of the data
    /// sections: [`Module::call_array_count`] says first whether there are any.
    pub fn call_arrays(&self) -> impl Iterator<Item = (CallArray, DataPlacement<'a>)> + '_ {
        self.data_sections().filter_map(|p| Some((CallArray::of_flags(p.section.flags).ok()??, p)))
    }

    /// Number of constructor and destructor array sections.
    pub const fn call_array_count(&self) -> u32 {
        self.call_arrays
    }

    /// The unwind table sections ([`unwind`]), in table order, with their place in the data
    /// image (validated: rodata, records tiling them up to the terminator).
    pub fn unwind_tables(&self) -> impl Iterator<Item = DataPlacement<'a>> + '_ {
        self.data_sections().filter(|p| p.section.flags.contains(SectionFlags::UNWIND))
    }

    /// Number of unwind table sections.
    pub const fn unwind_table_count(&self) -> u32 {
        self.unwind_tables
    }

    /// The note.sdn text (without its terminator), if the module has one.
    pub const fn note_sdn_text(&self) -> Option<&'a str> {
        self.note
    }

    /// The shared libraries the module needs (`note.needed`, [`needed`]), in order: names
    /// for `dlopen` (checked: file names of the search path).
    pub fn needed_libraries(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.needed.into_iter().flat_map(needed::names)
    }

    /// The functions named for debuggers and profilers only (`note.names`,
    /// [`function_names`]), checked: each inside the code, its name followed by a NUL.
    pub fn function_names(&self) -> function_names::FunctionNames<'a> {
        self.function_names.and_then(function_names::FunctionNames::new).unwrap_or_default()
    }

    /// The function-names section's bytes as they lie (empty without one): what a load copies.
    pub fn function_names_bytes(&self) -> &'a [u8] {
        self.function_names.unwrap_or_default()
    }

    /// The note.sdn tables, if the module has one.
    pub fn note_sdn(&self) -> Option<NoteSdn<'a>> {
        self.note.map(NoteSdn::new)
    }

    /// The template-code section, if any.
    pub const fn template_code(&self) -> Option<TemplateCode<'a>> {
        self.template_code
    }

    /// The template-meta section, if any.
    pub const fn template_meta(&self) -> Option<TemplateMeta<'a>> {
        self.template_meta
    }
}
