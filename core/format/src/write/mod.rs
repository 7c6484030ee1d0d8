//! The module builder: writes any dialect the way the real writers do.
//!
//! Layout rules (see `docs/format.md`):
//! - **R96/R72, header at offset 0**: header, section table, payloads (each start rounded up to
//!   its section's alignment, zero padding), symbol table right after the last payload, string
//!   table to the end of the file.
//! - **R96 appended to a stub**: stub, then the same tables relative to the SMF data start,
//!   then the 96-byte header as the last bytes of the file.
//! - **S128**: optional stub, payloads with no padding, section table, symbol table, string
//!   table, then the 128-byte header as a trailer.
//!
//! Sections appear in the order they were added, followed by the generated ones:
//! `template_code` (12), `template_meta` (13), `note.sdn` (13, size 0, its offset pointing at
//! the text that ends with `# END_NOTE`), then, with data relocations, `.rela.data` (5, flag
//! [`SectionFlags::RELOCATES_DATA`]) starting with the marker older loaders refuse, sorted by offset,
//! then `.rela` (5) holding every code relocation. A module linked for the linked layout
//! ([`ModuleBuilder::link`]) has `.rela.data` with the marker even with no data
//! relocation left, so that loaders which do not know the layout refuse it.
//! The string table holds each distinct name once, NUL-terminated, with no leading NUL.

mod function_names;
mod link;
mod relocations;
pub mod samples;
mod specs;
mod symbols;
mod templates;

pub use specs::{BuildError, SectionSpec, SymbolSpec, TemplateSpec};
use specs::{DataRelocSpec, DataSite, RelocSpec};
use templates::readable_note;

use alloc::vec;
use alloc::vec::Vec;

use crate::compress::Method;
use crate::kinds::{CallArray, ModuleFlags, RelocKind, SectionFlags, SectionType, CALL_ARRAY_ENTRY};
use crate::module::{Header, NOTE_SDN_SECTION, TEMPLATE_META_SECTION};
use crate::note_sdn::TERMINATOR;
use crate::wire::header;
use crate::wire::section::{self, SectionFields};
use crate::{Dialect, HeaderPlacement};

/// Builds an SMF module in any dialect.
#[derive(Clone, Debug)]
pub struct ModuleBuilder {
    dialect: Dialect,
    placement: HeaderPlacement,
    header: Header,
    entry_point: Option<u64>,
    stub: Vec<u8>,
    sections: Vec<SectionSpec>,
    symbols: Vec<SymbolSpec>,
    relocations: Vec<RelocSpec>,
    data_relocations: Vec<DataRelocSpec>,
    /// Whether data relocations are preceded by their marker (off only to write bad files).
    data_relocations_marker: bool,
    note_sdn: Option<Vec<u8>>,
    templates: Vec<TemplateSpec>,
    short_form_templates: bool,
    template_meta: Option<MetaEntries>,
    /// How code, data and rodata sections are compressed (`None`: they are not).
    compression: Option<Compression>,
}

/// How a builder compresses: the method, and an encoder of the caller's with the level it
/// writes in the header (`None`: the core's own, [`crate::compress::frame`], and the header's
/// level as set).
#[derive(Clone, Copy, Debug)]
struct Compression {
    method: Method,
    encoder: Option<(crate::compress::Encoder, u8)>,
}

/// Template-meta entries per category: (name, specialization count).
type MetaEntries = [Vec<(Vec<u8>, u32)>; 4];

impl ModuleBuilder {
    /// A builder with the header values the dialect's writer uses: Linux, x86-64, version 1.1
    /// (0.1 for R72), and for S128 a 1280x720 window hint.
    pub fn new(dialect: Dialect) -> Self {
        let (version_major, version_minor) = match dialect {
            Dialect::R72 => (0, 1),
            Dialect::S128 | Dialect::R96 => (1, 1),
        };
        let (window_width, window_height) = match dialect {
            Dialect::S128 => (1280, 720),
            Dialect::R96 | Dialect::R72 => (0, 0),
        };
        let placement = match dialect {
            Dialect::S128 => HeaderPlacement::Trailer,
            Dialect::R96 | Dialect::R72 => HeaderPlacement::Start,
        };
        Self {
            dialect,
            placement,
            header: Header {
                version_major,
                version_minor,
                platform: 1,
                window_width,
                window_height,
                ..Header::default()
            },
            entry_point: None,
            stub: Vec::new(),
            sections: Vec::new(),
            symbols: Vec::new(),
            relocations: Vec::new(),
            data_relocations: Vec::new(),
            data_relocations_marker: true,
            note_sdn: None,
            templates: Vec::new(),
            short_form_templates: false,
            template_meta: None,
            compression: None,
        }
    }

    /// Compresses the code, data and rodata sections with `method` (not the constructor,
    /// destructor and unwind tables, which the loader reads itself; each section only where
    /// its frame is smaller than its bytes) and names the method in the header
    /// (`docs/format.md`, "Compression"), its `compression_level` left as set (0 unless
    /// [`ModuleBuilder::header`] sets it). R72 has no compression byte: building it fails.
    pub fn compress(&mut self, method: Method) -> &mut Self {
        self.compression = Some(Compression { method, encoder: None });
        self
    }

    /// [`ModuleBuilder::compress`] with an encoder of the caller's at `level` (written in the
    /// header's `compression_level`): for example libzstd at any of its levels, where the core
    /// has only ruzstd's fastest. The encoder must write `method`'s data.
    pub fn compress_with(
        &mut self,
        method: Method,
        level: u8,
        encoder: crate::compress::Encoder,
    ) -> &mut Self {
        self.compression = Some(Compression { method, encoder: Some((encoder, level)) });
        self
    }

    /// The dialect being written.
    pub const fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Where the header goes (R96 may be appended as a trailer).
    pub fn placement(&mut self, placement: HeaderPlacement) -> &mut Self {
        self.placement = placement;
        self
    }

    /// Header fields beyond the layout ones (version, platform, arch, flags, hints, hashes).
    /// Counts, offsets, stub and entry fields are computed by [`ModuleBuilder::build`].
    pub fn header(&mut self, edit: impl FnOnce(&mut Header)) -> &mut Self {
        edit(&mut self.header);
        self
    }

    /// Bytes written before the SMF data (a shebang line, a native launcher).
    pub fn stub(&mut self, stub: &[u8]) -> &mut Self {
        self.stub = stub.to_vec();
        self
    }

    /// Marks the module executable with its entry point at code offset `offset`.
    pub fn entry_point(&mut self, offset: u64) -> &mut Self {
        self.entry_point = Some(offset);
        self
    }

    /// Adds a section; returns its index.
    pub fn add_section(&mut self, spec: SectionSpec) -> u32 {
        self.sections.push(spec);
        sat_u32(self.sections.len() - 1)
    }

    /// Section `index` as added (`None` past the end).
    pub fn section(&self, index: u32) -> Option<&SectionSpec> {
        self.sections.get(index as usize)
    }

    /// Section `index` as added, to extend or patch it (`None` past the end).
    pub fn section_mut(&mut self, index: u32) -> Option<&mut SectionSpec> {
        self.sections.get_mut(index as usize)
    }

    /// The bytes of section `index`, for patching after the section was added (`None` past the
    /// end).
    pub fn section_data_mut(&mut self, index: u32) -> Option<&mut [u8]> {
        self.sections.get_mut(index as usize).map(|s| s.data.as_mut_slice())
    }

    /// Sets the virtual size of section `index` (padding after a code section, room for bss);
    /// false if there is no such section.
    pub fn set_virtual_size(&mut self, index: u32, virtual_size: u64) -> bool {
        self.sections.get_mut(index as usize).map(|s| s.virtual_size = virtual_size).is_some()
    }

    /// Adds a code section with the writers' alignment (16).
    pub fn add_code(&mut self, name: &[u8], code: &[u8]) -> u32 {
        self.add_code_aligned(name, code, 16)
    }

    /// Adds a code section with an explicit alignment.
    pub fn add_code_aligned(&mut self, name: &[u8], code: &[u8], alignment: u64) -> u32 {
        let flags = SectionFlags::READ | SectionFlags::EXEC;
        self.add_section(SectionSpec::new(SectionType::Code, name, flags, code.to_vec(), alignment))
    }

    /// Adds a writable data section (alignment 8).
    pub fn add_data(&mut self, name: &[u8], data: &[u8]) -> u32 {
        let flags = SectionFlags::READ | SectionFlags::WRITE;
        self.add_section(SectionSpec::new(SectionType::Data, name, flags, data.to_vec(), 8))
    }

    /// Adds a read-only data section (alignment 8).
    pub fn add_rodata(&mut self, name: &[u8], data: &[u8]) -> u32 {
        self.add_section(SectionSpec::new(SectionType::RoData, name, SectionFlags::READ, data.to_vec(), 8))
    }

    /// Adds a constructor or destructor array (`docs/format.md`, "Constructors and
    /// destructors"): a rodata section flagged as `array`, one 8-byte entry per function,
    /// each relocated (abs64, a data relocation) to `functions[i]`, a symbol and an addend;
    /// returns the section's index.
    pub fn add_call_array(&mut self, array: CallArray, functions: &[(u32, i64)]) -> u32 {
        let name: &[u8] = match array {
            CallArray::Constructors => b".init_array",
            CallArray::Destructors => b".fini_array",
        };
        let size = functions.len() * CALL_ARRAY_ENTRY;
        let flags = SectionFlags::READ | array.flag();
        let section = self.add_section(SectionSpec::new(SectionType::RoData, name, flags, vec![0; size], 8));
        for (i, &(symbol, addend)) in functions.iter().enumerate() {
            let offset = (i * CALL_ARRAY_ENTRY) as u64;
            self.add_data_relocation(section, offset, symbol, RelocKind::Abs64, addend);
        }
        section
    }

    /// Adds a bss section of `size` zero bytes (alignment 8).
    pub fn add_bss(&mut self, name: &[u8], size: u64) -> u32 {
        let flags = SectionFlags::READ | SectionFlags::WRITE;
        let mut spec = SectionSpec::new(SectionType::Bss, name, flags, Vec::new(), 8);
        spec.virtual_size = size;
        self.add_section(spec)
    }

    /// Adds a symbol; returns its index.
    pub fn add_symbol(&mut self, spec: SymbolSpec) -> u32 {
        self.symbols.push(spec);
        sat_u32(self.symbols.len() - 1)
    }

    /// Symbol `index`, as added.
    pub fn symbol(&self, index: u32) -> Option<&SymbolSpec> {
        self.symbols.get(index as usize)
    }

    /// The code offset symbol `index` addresses, if it addresses the code as readers locate
    /// symbols (a function, or an addressable symbol naming no data section): a reference from
    /// the code to it is the same distance at every load address.
    pub fn code_offset(&self, index: u32) -> Option<u64> {
        let spec = self.symbols.get(index as usize)?;
        let in_code = spec.kind.is_addressable()
            && (spec.kind == crate::SymbolKind::Function || spec.section.is_none());
        in_code.then_some(spec.value)
    }

    /// Drops every symbol `keep` refuses that no relocation (of the code or of the data, call
    /// arrays included) refers to, renumbering the references to the symbols left, which keep
    /// their order; returns how many were dropped. A symbol a relocation names stays whatever
    /// `keep` says.
    pub fn drop_unreferenced_symbols(&mut self, keep: impl Fn(&SymbolSpec) -> bool) -> usize {
        let kept: Vec<bool> = self
            .symbols
            .iter()
            .zip(self.referenced_symbols())
            .map(|(s, referenced)| referenced || keep(s))
            .collect();
        let mut renumbered = Vec::with_capacity(kept.len());
        let mut next = 0u32;
        for &keep in &kept {
            renumbered.push(next);
            next += u32::from(keep);
        }
        let mut index = 0;
        self.symbols.retain(|_| {
            index += 1;
            kept[index - 1]
        });
        let references =
            self.relocations.iter_mut().chain(self.data_relocations.iter_mut().map(|d| &mut d.relocation));
        for relocation in references {
            // A symbol index past the table (a test's malformed module) is written as it is.
            if let Some(&new) = renumbered.get(relocation.symbol as usize) {
                relocation.symbol = new;
            }
        }
        kept.len() - self.symbols.len()
    }

    /// Every relocation, of the code and of the data.
    fn all_relocations(&self) -> impl Iterator<Item = &RelocSpec> {
        self.relocations.iter().chain(self.data_relocations.iter().map(|d| &d.relocation))
    }

    /// Per symbol, in table order, whether a relocation (of the code or of the data) names it.
    fn referenced_symbols(&self) -> Vec<bool> {
        let mut referenced = vec![false; self.symbols.len()];
        for relocation in self.all_relocations() {
            if let Some(slot) = referenced.get_mut(relocation.symbol as usize) {
                *slot = true;
            }
        }
        referenced
    }

    /// Adds a relocation (the kind must exist in the dialect, checked by `build`).
    pub fn add_relocation(&mut self, offset: u64, symbol: u32, kind: RelocKind, addend: i64) -> &mut Self {
        let wire = kind.to_wire(self.dialect).ok_or(kind);
        self.relocations.push(RelocSpec { offset, symbol, wire, addend });
        self
    }

    /// Adds a data relocation patching `offset` bytes into `section`, a data, rodata or bss
    /// section ([`ModuleBuilder::add_section`]'s number), written as an offset in the data image
    /// (`docs/format.md`, "Data relocations"): `build` checks that the kind exists in the
    /// dialect and that its bytes lie in the section; the reader, that the kind applies to data.
    pub fn add_data_relocation(
        &mut self,
        section: u32,
        offset: u64,
        symbol: u32,
        kind: RelocKind,
        addend: i64,
    ) -> &mut Self {
        let wire = kind.to_wire(self.dialect).ok_or(kind);
        let relocation = RelocSpec { offset, symbol, wire, addend };
        self.data_relocations.push(DataRelocSpec { at: DataSite::InSection(section, offset), relocation });
        self
    }

    /// Adds a data relocation at `offset` in the data image as it is, with a raw wire byte (to
    /// write malformed files in tests).
    pub fn add_raw_data_relocation(&mut self, offset: u64, symbol: u32, wire: u8, addend: i64) -> &mut Self {
        let relocation = RelocSpec { offset, symbol, wire: Ok(wire), addend };
        self.data_relocations.push(DataRelocSpec { at: DataSite::InImage(offset), relocation });
        self
    }

    /// Whether data relocations are preceded by their marker (on by default; off writes a
    /// module every reader must refuse, for tests).
    pub fn data_relocations_marker(&mut self, on: bool) -> &mut Self {
        self.data_relocations_marker = on;
        self
    }

    /// Adds a relocation with a raw wire byte (to write malformed files in tests).
    pub fn add_raw_relocation(&mut self, offset: u64, symbol: u32, wire: u8, addend: i64) -> &mut Self {
        self.relocations.push(RelocSpec { offset, symbol, wire: Ok(wire), addend });
        self
    }

    /// Every section in table order, generated ones included; `true` marks note.sdn, whose
    /// payload is written but whose size is recorded as 0.
    fn final_sections(&self) -> Result<Vec<(SectionSpec, bool)>, BuildError> {
        let mut all: Vec<(SectionSpec, bool)> =
            self.sections.iter().map(|s| (self.compressed(s), false)).collect();
        if !self.templates.is_empty() {
            let data = self.template_code();
            all.push((
                SectionSpec::new(SectionType::TemplateCode, b"template_code", SectionFlags::READ, data, 1),
                false,
            ));
        }
        if let Some(meta) = &self.template_meta {
            let data = Self::template_meta_bytes(meta);
            all.push((
                SectionSpec::new(
                    SectionType::TemplateMeta,
                    TEMPLATE_META_SECTION,
                    SectionFlags::READ,
                    data,
                    1,
                ),
                false,
            ));
        }
        if let Some(text) = &self.note_sdn {
            readable_note(text)?;
            let mut data = text.clone();
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(TERMINATOR);
            data.push(b'\n');
            all.push((
                SectionSpec::new(SectionType::TemplateMeta, NOTE_SDN_SECTION, SectionFlags::READ, data, 1),
                true,
            ));
        }
        for section in self.relocation_sections()? {
            all.push((section, false));
        }
        Ok(all)
    }

    /// `spec` as written: compressed into a frame when the builder compresses, the section may
    /// be, and the frame is smaller (its virtual size kept at least its bytes' length).
    fn compressed(&self, spec: &SectionSpec) -> SectionSpec {
        let mut spec = spec.clone();
        let Some(compression) = self.compression else { return spec };
        if !crate::compress::may_compress(spec.section_type, spec.flags)
            || spec.flags.contains(SectionFlags::COMPRESSED)
            || spec.data.is_empty()
        {
            return spec;
        }
        let frame = match compression.encoder {
            Some((encoder, level)) => crate::compress::frame_with(&spec.data, level, encoder),
            None => crate::compress::frame(compression.method, &spec.data),
        };
        if frame.len() < spec.data.len() {
            spec.virtual_size = spec.virtual_size.max(spec.data.len() as u64);
            spec.data = frame;
            spec.flags |= SectionFlags::COMPRESSED;
        }
        spec
    }

    /// Fails if a count or value does not fit the field the format gives it.
    fn check_limits(&self) -> Result<(), BuildError> {
        let u32_max = u32::MAX as usize;
        let too_many = self.sections.len() + 4 > u32_max
            || self.symbols.len() > u32_max
            || self.templates.len() > u32_max
            || self.templates.iter().any(|t| t.params.len() > usize::from(u8::MAX) || t.name.len() > u32_max)
            || self.templates.iter().flat_map(|t| &t.params).any(|p| p.len() > u32_max)
            || self
                .template_meta
                .iter()
                .flatten()
                .any(|c| c.len() > u32_max || c.iter().any(|(n, _)| n.len() > u32_max))
            || self.symbols.iter().any(|s| s.section.is_some_and(|i| i >= u32::from(u16::MAX)))
            || self.sections.iter().any(|s| s.alignment > crate::wire::section::max_alignment(self.dialect));
        if too_many {
            Err(BuildError::TooLarge)
        } else {
            Ok(())
        }
    }

    /// Writes the module.
    pub fn build(&self) -> Result<Vec<u8>, BuildError> {
        self.check_limits()?;
        let dialect = self.dialect;
        if !crate::detect::is_layout(dialect, self.placement) {
            return Err(BuildError::PlacementNotSupported { dialect });
        }
        if !self.stub.is_empty() && self.placement == HeaderPlacement::Start {
            return Err(BuildError::StubNeedsTrailer);
        }
        if self.compression.is_some() && !dialect.has_compression_byte() {
            return Err(BuildError::NoCompressionByte { dialect });
        }
        let sections = self.final_sections()?;
        let (strings, name_offsets) = self.strings()?;
        let symbols = self.symbol_table(&name_offsets);
        let section_table_len = sections.len() * dialect.section_entry_size();
        let header_size = dialect.header_size();

        // Offsets below are relative to the SMF data start (`base`).
        let base = self.stub.len();
        let mut body: Vec<u8> = Vec::new();
        let mut payload_offsets = Vec::with_capacity(sections.len());
        let section_table_at;
        match dialect {
            Dialect::S128 => {
                for (spec, _) in &sections {
                    payload_offsets.push(body.len() as u64);
                    body.extend_from_slice(&spec.data);
                }
                section_table_at = body.len();
                body.resize(body.len() + section_table_len, 0);
            }
            Dialect::R96 | Dialect::R72 => {
                let lead = if self.placement == HeaderPlacement::Start { header_size } else { 0 };
                body.resize(lead, 0);
                section_table_at = body.len();
                body.resize(body.len() + section_table_len, 0);
                for (spec, _) in &sections {
                    let align = usize::try_from(spec.alignment.max(1)).map_err(|_| BuildError::TooLarge)?;
                    let at = body.len().div_ceil(align) * align;
                    body.resize(at, 0);
                    payload_offsets.push(at as u64);
                    body.extend_from_slice(&spec.data);
                }
            }
        }
        let symbol_table_at = body.len();
        body.extend_from_slice(&symbols);
        body.extend_from_slice(&strings);

        for (i, ((spec, is_note), &offset)) in sections.iter().zip(&payload_offsets).enumerate() {
            let recorded = if *is_note { 0 } else { spec.data.len() as u64 };
            let virtual_size = if *is_note { 0 } else { spec.virtual_size.max(recorded) };
            let fields = SectionFields {
                section_type: spec.section_type.to_wire(),
                flags: spec.flags.bits(),
                offset,
                size: recorded,
                virtual_size,
                alignment: spec.alignment,
                name: &spec.name,
            };
            let size = dialect.section_entry_size();
            let at = section_table_at + i * size;
            section::encode(&mut body[at..at + size], dialect, &fields);
        }

        let mut h = self.header;
        if let Some(compression) = self.compression {
            h.compression = compression.method.wire();
            if let Some((_, level)) = compression.encoder {
                h.compression_level = level;
            }
        }
        h.section_count = u32::try_from(sections.len()).map_err(|_| BuildError::TooLarge)?;
        h.section_table_offset = section_table_at as u64;
        h.symbol_table_offset = symbol_table_at as u64;
        h.symbol_count = u32::try_from(self.symbols.len()).map_err(|_| BuildError::TooLarge)?;
        let h_exported =
            self.symbols.iter().filter(|s| crate::module::Symbol::visible_outside(s.kind, s.binding)).count();
        h.exported_count = sat_u32(h_exported);
        if let Some(entry) = self.entry_point {
            h.flags |= ModuleFlags::EXECUTABLE;
            h.entry_point = entry;
        }
        if self.note_sdn.is_some() {
            h.flags |= ModuleFlags::HAS_NOTE_SDN;
        }
        let stub = u32::try_from(base).map_err(|_| BuildError::TooLarge)?;
        h.stub_size = stub;
        h.smf_data_offset = stub;
        if stub > 0 {
            h.flags |= ModuleFlags::HAS_STUB;
        }
        let mut header_bytes = vec![0u8; header_size];
        header::encode(&mut header_bytes, dialect, &h);

        let mut file = Vec::with_capacity(base + body.len() + header_size);
        file.extend_from_slice(&self.stub);
        match self.placement {
            HeaderPlacement::Start => {
                body[..header_size].copy_from_slice(&header_bytes);
                file.extend_from_slice(&body);
            }
            HeaderPlacement::Trailer => {
                file.extend_from_slice(&body);
                file.extend_from_slice(&header_bytes);
            }
        }
        // A reader that detects the layout must find this one. The content (a stub, section
        // bytes) can hold another layout's header where that layout keeps it; if its tables
        // validate and the format's tie rule prefers it, the file reads as that other module.
        // Choosing the layout is enough to know that (`ModuleTables::check` decodes symbols
        // and relocations only when two layouts' tables validate); whether this file's own
        // symbols and relocations are valid is not the builder's to judge (tests write broken
        // ones on purpose), and its loader validates them anyway.
        if let Ok(read) = crate::module::ModuleTables::check(&file, &crate::ParseOptions::default()) {
            let (dialect, placement) = (read.dialect(), read.placement());
            if (dialect, placement) != (self.dialect, self.placement) {
                return Err(BuildError::ReadAsAnotherLayout { dialect, placement });
            }
        }
        Ok(file)
    }
}

/// `n` as a `u32`, saturating; `ModuleBuilder::check_limits` guarantees it fits where it matters.
fn sat_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `n` as a `u8`, saturating; `ModuleBuilder::check_limits` guarantees it fits where it matters.
fn sat_u8(n: usize) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}
