//! The validated module image: [`Module::parse`] finds the dialect, checks every table, payload,
//! name, symbol and relocation against the file, and computes the code and data layout.
//!
//! Contract: once `parse` has returned `Ok`, every accessor of [`Module`] is infallible and
//! panic-free, and every offset it hands out lies inside the file. Parsing allocates nothing and
//! touches each table entry once.
//!
//! Rules chosen where the toolchains disagree (see `docs/format.md`):
//! - All table and payload offsets are relative to `smf_data_offset` (S128 and R96; R72 has no
//!   such field), whatever the flags say.
//! - Tables and payloads must lie between the SMF data start and the header (trailer) or the end
//!   of the file (header at offset 0).
//! - Function symbols address the code (all code sections concatenated in table order, each
//!   taking `virtual_size` bytes). Data and constant symbols whose defining-section field names a
//!   data, rodata or bss section address that section; otherwise they address the code too.

use crate::bytes::range_within;
use crate::detect::{self, Candidate};
use crate::error::{Error, ErrorKind, Result};
use crate::kinds::{Binding, RelocKind, SectionType, SymbolKind, FLAG_EXECUTABLE, SYMBOL_FLAG_TEMPLATE};
use crate::note_sdn::{self, NoteSdn};
use crate::template::{TemplateCode, TemplateEntry, TemplateMeta};
use crate::wire::relocation::RELOCATION_ENTRY_SIZE;
use crate::wire::{HeaderView, RelocationView, SectionView, SymbolView};
use crate::{Dialect, HeaderPlacement};

/// The name that marks the note.sdn section.
pub const NOTE_SDN_SECTION: &[u8] = b"note.sdn";
/// The name of the template-meta section.
pub const TEMPLATE_META_SECTION: &[u8] = b"template_meta";
/// Largest alignment honoured for data sections.
pub const MAX_ALIGNMENT: u64 = 1 << 16;

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

/// Every header field, decoded (fields the dialect lacks read as zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct Header {
    pub version_major: u8,
    pub version_minor: u8,
    pub platform: u8,
    pub arch: u8,
    pub flags: u32,
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
    fn read(view: &HeaderView<'_>) -> Self {
        Self {
            version_major: view.version_major(),
            version_minor: view.version_minor(),
            platform: view.platform(),
            arch: view.arch(),
            flags: view.flags(),
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

    /// Whether the module has an entry point (flag 0x01).
    pub const fn is_executable(&self) -> bool {
        self.flags & FLAG_EXECUTABLE != 0
    }
}

/// One section table entry, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section<'a> {
    /// Position in the section table.
    pub index: u32,
    /// What the section holds.
    pub section_type: SectionType,
    /// Flags (read 0x1, write 0x2, exec 0x4).
    pub flags: u32,
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
    fn is_note_sdn(name: &[u8]) -> bool {
        name == NOTE_SDN_SECTION
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
    /// Flags as stored.
    pub flags: u8,
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
        visible_outside(self.kind, self.binding)
    }

    /// Whether it is a generic template (symbol flag 0x10).
    pub fn is_template(&self) -> bool {
        self.flags & SYMBOL_FLAG_TEMPLATE != 0
    }
}

/// What a loader keeps of a decoded symbol (its name is found in the string table).
#[cfg(all(feature = "exec", target_os = "linux"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SymbolCore {
    /// Where its name starts in the string table.
    pub(crate) name_offset: u32,
    /// What it names.
    pub(crate) kind: SymbolKind,
    /// Its binding.
    pub(crate) binding: Binding,
    /// Whether it is a generic template.
    pub(crate) template: bool,
    /// Where its value points.
    pub(crate) target: SymbolTarget,
}

#[cfg(all(feature = "exec", target_os = "linux"))]
impl SymbolCore {
    /// Whether other modules may see it ([`Symbol::is_exported`]).
    pub(crate) fn is_exported(&self) -> bool {
        visible_outside(self.kind, self.binding)
    }
}

/// Whether a symbol of this kind and binding is defined here and not local.
const fn visible_outside(kind: SymbolKind, binding: Binding) -> bool {
    !matches!(binding, Binding::Local) && !matches!(kind, SymbolKind::Import)
}

#[cfg(all(feature = "exec", target_os = "linux"))]
impl From<Symbol<'_>> for SymbolCore {
    fn from(s: Symbol<'_>) -> Self {
        let template = s.is_template();
        Self { name_offset: s.name_offset, kind: s.kind, binding: s.binding, template, target: s.target }
    }
}

/// One relocation, decoded and validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relocation {
    /// Position across all relocation sections, in table order.
    pub index: u64,
    /// Offset in the code of the patched bytes.
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
    relocation_count: u64,
    note: Option<&'a str>,
    template_code: Option<TemplateCode<'a>>,
    template_meta: Option<TemplateMeta<'a>>,
}

impl<'a> Module<'a> {
    /// Detects the dialect and validates the whole module.
    pub fn parse(file: &'a [u8]) -> Result<Self> {
        Self::parse_with(file, &ParseOptions::default())
    }

    /// [`Module::parse`] with an explicit dialect or image limit.
    pub fn parse_with(file: &'a [u8], options: &ParseOptions) -> Result<Self> {
        Self::parse_detected(file, options, false)
    }

    /// Like [`Module::parse_with`], but leaves the validation of symbols and relocations to the
    /// caller, who decodes every one of them anyway through [`Module::symbol_checked`] and
    /// [`Module::for_each_relocation_checked`] (the loader): each is then checked once, not twice. Until
    /// the caller has done so, the module's infallible accessors may skip malformed entries.
    #[cfg(all(feature = "exec", target_os = "linux"))]
    pub(crate) fn parse_deferred(file: &'a [u8], options: &ParseOptions) -> Result<Self> {
        Self::parse_detected(file, options, true)
    }

    fn parse_detected(file: &'a [u8], options: &ParseOptions, deferred: bool) -> Result<Self> {
        // When no candidate validates, report the most plausible one's error: first a header
        // whose section table directly follows it (the spec's tie rule), then the one that got
        // furthest through validation, then probe order.
        let mut best: Option<((bool, u8), Error)> = None;
        let mut chosen: Option<Module<'a>> = None;
        for candidate in detect::candidates(file, options.dialect)? {
            match Self::parse_as(file, candidate, options, deferred) {
                Ok(module) => {
                    if module.table_follows_header() {
                        return Ok(module);
                    }
                    chosen.get_or_insert(module);
                }
                Err(err) => {
                    let rank = (detect::table_follows_header(file, candidate), err.stage());
                    if best.is_none_or(|(b, _)| rank > b) {
                        best = Some((rank, err));
                    }
                }
            }
        }
        chosen.ok_or(best.map_or(Error::new(ErrorKind::BadMagic, 0), |(_, e)| e))
    }

    fn table_follows_header(&self) -> bool {
        self.placement == HeaderPlacement::Start
            && self.base == 0
            && self.header.section_table_offset == self.dialect.header_size() as u64
    }

    /// Validates the file as one specific layout.
    fn parse_as(
        file: &'a [u8],
        candidate: Candidate,
        options: &ParseOptions,
        deferred: bool,
    ) -> Result<Self> {
        let dialect = candidate.dialect;
        let file_len = file.len() as u64;
        let header_size = dialect.header_size() as u64;
        let header_offset = match candidate.placement {
            HeaderPlacement::Start => 0,
            HeaderPlacement::Trailer => file_len
                .checked_sub(header_size)
                .ok_or(Error::new(ErrorKind::FileTooSmall { len: file_len }, 0))?,
        };
        let header_range = range_within(header_offset, header_size, file_len)
            .ok_or(Error::new(ErrorKind::FileTooSmall { len: file_len }, 0))?;
        let view = HeaderView::new_unchecked(&file[header_range], dialect);
        if !view.has_magic() {
            return Err(Error::new(ErrorKind::BadMagic, header_offset));
        }
        let header = Header::read(&view);
        if header.compression != 0 {
            return Err(Error::new(
                ErrorKind::UnsupportedCompression { method: header.compression },
                header_offset + 12,
            ));
        }
        let region_end = match candidate.placement {
            HeaderPlacement::Start => file_len,
            HeaderPlacement::Trailer => header_offset,
        };
        let base = u64::from(header.smf_data_offset);
        if base > region_end || u64::from(header.stub_size) > region_end {
            return Err(Error::new(
                ErrorKind::StubOutOfBounds {
                    stub_size: header.stub_size,
                    data_offset: header.smf_data_offset,
                },
                header_offset,
            ));
        }

        let table = |offset: u64, count: u32, entry: usize| {
            let start = base.checked_add(offset)?;
            let len = u64::from(count).checked_mul(entry as u64)?;
            range_within(start, len, region_end)
        };
        let section_range =
            table(header.section_table_offset, header.section_count, dialect.section_entry_size()).ok_or(
                Error::new(
                    ErrorKind::SectionTableOutOfBounds { count: header.section_count },
                    base.saturating_add(header.section_table_offset),
                ),
            )?;
        let symbol_range =
            table(header.symbol_table_offset, header.symbol_count, dialect.symbol_entry_size()).ok_or(
                Error::new(
                    ErrorKind::SymbolTableOutOfBounds { count: header.symbol_count },
                    base.saturating_add(header.symbol_table_offset),
                ),
            )?;
        // The string table runs from the end of the symbol table to the header or EOF.
        let strings_start = symbol_range.end;
        let strings = slice_between(file, strings_start as u64, region_end);

        let mut module = Module {
            file,
            dialect,
            placement: candidate.placement,
            header_offset,
            header,
            base,
            region_end,
            section_table_at: section_range.start as u64,
            symbol_table_at: symbol_range.start as u64,
            section_table: &file[section_range],
            symbol_table: &file[symbol_range],
            strings,
            code_size: 0,
            read_only_size: 0,
            read_write_size: 0,
            data_alignment: 1,
            relocation_count: 0,
            note: None,
            template_code: None,
            template_meta: None,
        };
        module.validate_sections(options)?;
        module.validate_entry()?;
        if !deferred {
            module.validate_symbols()?;
            module.validate_relocations()?;
        }
        Ok(module)
    }

    /// Checks every payload, sums the code, lays out the data, finds the special sections.
    fn validate_sections(&mut self, options: &ParseOptions) -> Result<()> {
        let mut code_size: u64 = 0;
        let mut layout = DataLayout::default();
        let mut relocations: u64 = 0;
        for index in 0..self.header.section_count {
            let section = self.decode_section(index)?;
            let entry_offset = self.section_entry_offset(index);
            let overflow = |bytes| {
                Error::new(ErrorKind::ImageTooLarge { bytes, limit: options.max_image_bytes }, entry_offset)
            };
            let loadable = section.section_type == SectionType::Code || section.section_type.is_data();
            if loadable && section.virtual_size < section.size {
                return Err(Error::new(ErrorKind::VirtualSizeTooSmall { index }, entry_offset));
            }
            match section.section_type {
                SectionType::Code => {
                    code_size = code_size.checked_add(section.virtual_size).ok_or(overflow(u64::MAX))?;
                }
                t if t.is_data() => {
                    if !DataLayout::alignment_ok(section.alignment) {
                        return Err(Error::new(
                            ErrorKind::BadAlignment { index, alignment: section.alignment },
                            entry_offset,
                        ));
                    }
                    layout.place(&section).ok_or(overflow(u64::MAX))?;
                }
                SectionType::Relocations => {
                    if section.size % RELOCATION_ENTRY_SIZE as u64 != 0 {
                        return Err(Error::new(ErrorKind::RelocationSectionSize { index }, entry_offset));
                    }
                    relocations += section.size / RELOCATION_ENTRY_SIZE as u64;
                }
                SectionType::TemplateCode if self.template_code.is_none() => {
                    self.template_code = Some(
                        TemplateCode::parse(section.data)
                            .map_err(|kind| Error::new(kind, section.file_offset))?,
                    );
                }
                SectionType::TemplateMeta
                    if self.template_meta.is_none() && section.name == TEMPLATE_META_SECTION =>
                {
                    self.template_meta = Some(
                        TemplateMeta::parse(section.data)
                            .map_err(|kind| Error::new(kind, section.file_offset))?,
                    );
                }
                _ => {}
            }
            if Section::is_note_sdn(section.name) {
                check_note_entry(&section).map_err(|kind| Error::new(kind, entry_offset))?;
                if self.note.is_none() {
                    self.note = Some(self.read_note(section.offset)?);
                }
            }
            let total = code_size
                .checked_add(layout.read_only)
                .and_then(|t| t.checked_add(layout.read_write))
                .unwrap_or(u64::MAX);
            if total > options.max_image_bytes {
                return Err(overflow(total));
            }
        }
        self.code_size = code_size;
        self.read_only_size = layout.read_only;
        self.read_write_size = layout.read_write;
        self.data_alignment = layout.alignment;
        self.relocation_count = relocations;
        Ok(())
    }

    fn read_note(&self, offset: u64) -> Result<&'a str> {
        let start = self
            .base
            .checked_add(offset)
            .filter(|&s| s <= self.region_end)
            .ok_or(Error::new(ErrorKind::NoteOutOfBounds, self.base.saturating_add(offset)))?;
        let region = slice_between(self.file, start, self.region_end);
        let text = note_sdn::terminated_text(region).ok_or(Error::new(ErrorKind::NoteUnterminated, start))?;
        core::str::from_utf8(text).map_err(|_| Error::new(ErrorKind::NoteNotUtf8, start))
    }

    fn validate_entry(&self) -> Result<()> {
        let entry = self.header.entry_point;
        if self.header.is_executable() && entry >= self.code_size {
            let at = self.header_offset + crate::wire::header::fields(self.dialect).entry_point as u64;
            return Err(Error::new(ErrorKind::EntryOutsideCode { entry, code_size: self.code_size }, at));
        }
        Ok(())
    }

    fn validate_symbols(&self) -> Result<()> {
        for index in 0..self.header.symbol_count {
            self.decode_symbol(index)?;
        }
        Ok(())
    }

    fn validate_relocations(&self) -> Result<()> {
        let mut cursor = RelocationCursor::new(self);
        while let Some((index, entry, at)) = cursor.next_entry()? {
            self.decode_relocation(index, entry, at)?;
        }
        Ok(())
    }

    /// Symbol `index`, decoded and checked (for callers of [`Module::parse_deferred`]).
    #[cfg(all(feature = "exec", target_os = "linux"))]
    #[inline(always)]
    pub(crate) fn symbol_checked(&self, index: u32) -> Result<Symbol<'a>> {
        self.decode_symbol(index)
    }

    /// The symbol table's entries from symbol `first` on, in order, one view each (the table
    /// holds exactly the symbol count's entries: parsing cut it to that length).
    #[cfg(all(feature = "exec", target_os = "linux"))]
    pub(crate) fn symbol_entries_from(&self, first: usize) -> impl Iterator<Item = SymbolView<'a>> {
        let (dialect, size) = (self.dialect, self.dialect.symbol_entry_size());
        let rest = first.checked_mul(size).and_then(|at| self.symbol_table.get(at..)).unwrap_or_default();
        rest.chunks_exact(size).map(move |entry| SymbolView::new_unchecked(entry, dialect))
    }

    /// The symbol whose whole entry is `view` when it is a plain one (not a template), decoded
    /// with every check [`Module::symbol_checked`] makes except finding where its name ends:
    /// the caller must refuse a name without its NUL. `data_section_size(index)` is the
    /// virtual size of section `index` when it is a data, rodata or bss section (`None`
    /// otherwise), which the caller has at hand. `None` for any other entry, valid or not,
    /// which [`Module::symbol_checked`] decodes (the loader's fast path for the symbols nearly
    /// every module is made of).
    #[cfg(all(feature = "exec", target_os = "linux"))]
    #[inline(always)]
    pub(crate) fn plain_symbol(
        &self,
        view: &SymbolView<'a>,
        data_section_size: impl Fn(u32) -> Option<u64>,
    ) -> Option<SymbolCore> {
        let head = view.head()?;
        let name_offset = head.name_offset();
        if name_offset as usize >= self.strings.len() || head.flags() & SYMBOL_FLAG_TEMPLATE != 0 {
            return None;
        }
        let declared = SymbolKind::from_wire(self.dialect, head.sym_type())?;
        let binding = Binding::from_wire(head.binding())?;
        let (value, size) = (head.value(), head.size());
        // As `decode_symbol`: an S128 non-local symbol with value and size 0 is an import.
        let kind = if self.dialect == Dialect::S128 && value == 0 && size == 0 && binding != Binding::Local {
            SymbolKind::Import
        } else {
            declared
        };
        let target = if !kind.is_addressable() {
            SymbolTarget::None
        } else if kind != SymbolKind::Function && view.section_index() != 0 {
            // As `symbol_target`: in a data section, inside its virtual size.
            let section = u32::from(view.section_index()) - 1;
            if value.checked_add(size)? <= data_section_size(section)? {
                SymbolTarget::Data { section, offset: value }
            } else {
                return None;
            }
        } else if value.checked_add(size)? <= self.code_size {
            SymbolTarget::Code(value)
        } else {
            return None;
        };
        Some(SymbolCore { name_offset, kind, binding, template: false, target })
    }

    /// Calls `f(entries, first_index, file_offset)` on every relocation section's entries, in
    /// table order (whole 24-byte entries; with the index of the section's first relocation and
    /// the file offset of its first entry), for loops that decode them with
    /// [`Module::decode_relocation`].
    #[cfg(all(feature = "exec", target_os = "linux"))]
    pub(crate) fn for_each_relocation_table<E: From<Error>>(
        &self,
        mut f: impl FnMut(RelocationEntries<'a>, u64, u64) -> core::result::Result<(), E>,
    ) -> core::result::Result<(), E> {
        let mut first = 0u64;
        for index in 0..self.header.section_count {
            let section = self.decode_section(index)?;
            if section.section_type == SectionType::Relocations {
                let entries = RelocationEntries(section.data.chunks_exact(RELOCATION_ENTRY_SIZE));
                let count = entries.0.len() as u64;
                f(entries, first, section.file_offset)?;
                first += count;
            }
        }
        Ok(())
    }

    // ----- decoding shared by validation and the accessors -----

    fn section_entry_offset(&self, index: u32) -> u64 {
        self.section_table_at + u64::from(index) * self.dialect.section_entry_size() as u64
    }

    fn symbol_entry_offset(&self, index: u32) -> u64 {
        self.symbol_table_at + u64::from(index) * self.dialect.symbol_entry_size() as u64
    }

    fn section_view(&self, index: u32) -> Option<SectionView<'a>> {
        let size = self.dialect.section_entry_size();
        let start = (index as usize).checked_mul(size)?;
        SectionView::new_checked(self.section_table.get(start..start.checked_add(size)?)?, self.dialect)
    }

    fn symbol_view(&self, index: u32) -> Option<SymbolView<'a>> {
        let size = self.dialect.symbol_entry_size();
        let start = (index as usize).checked_mul(size)?;
        SymbolView::new_checked(self.symbol_table.get(start..start.checked_add(size)?)?, self.dialect)
    }

    fn decode_section(&self, index: u32) -> Result<Section<'a>> {
        let entry_offset = self.section_entry_offset(index);
        let view = self
            .section_view(index)
            .ok_or(Error::new(ErrorKind::SectionTableOutOfBounds { count: index }, entry_offset))?;
        let name = view.name();
        let section_type = SectionType::from_wire(view.section_type());
        let out_of_bounds = Error::new(ErrorKind::SectionOutOfBounds { index }, entry_offset);
        let (data, file_offset) = if Section::is_note_sdn(name) {
            (&[][..], self.base.saturating_add(view.offset()))
        } else {
            let start = self.base.checked_add(view.offset()).ok_or(out_of_bounds)?;
            let range = range_within(start, view.size(), self.region_end).ok_or(out_of_bounds)?;
            (&self.file[range], start)
        };
        Ok(Section {
            index,
            section_type,
            flags: view.flags(),
            offset: view.offset(),
            size: view.size(),
            virtual_size: view.virtual_size(),
            alignment: view.alignment(),
            name,
            data,
            file_offset,
        })
    }

    #[inline(always)]
    fn decode_symbol(&self, index: u32) -> Result<Symbol<'a>> {
        let at = self.symbol_entry_offset(index);
        let view = self
            .symbol_view(index)
            .ok_or(Error::new(ErrorKind::SymbolTableOutOfBounds { count: index }, at))?;
        let name_offset = view.name_offset();
        let tail = self
            .strings
            .get(name_offset as usize..)
            .filter(|t| !t.is_empty())
            .ok_or(Error::new(ErrorKind::NameOutOfBounds { symbol: index }, at))?;
        let name_len = tail
            .iter()
            .position(|&b| b == 0)
            .ok_or(Error::new(ErrorKind::NameUnterminated { symbol: index }, at))?;
        let name = &tail[..name_len];

        let raw_type = view.sym_type();
        let declared = SymbolKind::from_wire(self.dialect, raw_type)
            .ok_or(Error::new(ErrorKind::BadSymbolType { symbol: index, value: raw_type }, at + 8))?;
        let binding = Binding::from_wire(view.binding())
            .ok_or(Error::new(ErrorKind::BadBinding { symbol: index, value: view.binding() }, at + 9))?;
        let (value, size) = (view.value(), view.size());
        let is_template = view.flags() & SYMBOL_FLAG_TEMPLATE != 0;
        // S128 has no "none" type: a non-local symbol with value 0 and size 0 is an import
        // (templates excepted: they have no code of their own).
        let kind = if self.dialect == Dialect::S128
            && value == 0
            && size == 0
            && binding != Binding::Local
            && !is_template
        {
            SymbolKind::Import
        } else {
            declared
        };
        let target =
            if is_template { SymbolTarget::None } else { self.symbol_target(index, at, kind, &view)? };
        let symbol = Symbol {
            index,
            name,
            name_offset,
            kind,
            binding,
            visibility: view.visibility(),
            flags: view.flags(),
            value,
            size,
            stored_hash: view.name_hash(),
            template_param_count: view.template_param_count(),
            template_offset: view.template_offset(),
            target,
        };
        // R72 entries have no template_offset field: nothing to locate or check there. Only the
        // entry's prefix is checked here (O(1)): finding where an entry ends takes all template
        // symbols' offsets, which `template_entries` sorts once.
        if is_template && self.dialect != Dialect::R72 {
            let bad = Error::new(ErrorKind::TemplateOffsetOutOfBounds { symbol: index }, at + 48);
            let code = self.template_code.ok_or(bad)?;
            code.check_entry(symbol.template_offset).map_err(|_| bad)?;
        }
        Ok(symbol)
    }

    /// Where a symbol's value points, checked against the code or its data section.
    #[inline]
    fn symbol_target(
        &self,
        index: u32,
        at: u64,
        kind: SymbolKind,
        view: &SymbolView<'a>,
    ) -> Result<SymbolTarget> {
        if !kind.is_addressable() {
            return Ok(SymbolTarget::None);
        }
        let (value, size) = (view.value(), view.size());
        let stored_section = view.section_index();
        if kind != SymbolKind::Function && stored_section != 0 {
            let section_index = u32::from(stored_section) - 1;
            let bad = Error::new(
                ErrorKind::BadSymbolSection { symbol: index, section: u32::from(stored_section) },
                at + 41,
            );
            if section_index >= self.header.section_count {
                return Err(bad);
            }
            let section = self.decode_section(section_index)?;
            if !section.section_type.is_data() {
                return Err(bad);
            }
            let end = value.checked_add(size);
            if end.is_none_or(|e| e > section.virtual_size) {
                return Err(Error::new(
                    ErrorKind::SymbolOutsideSection { symbol: index, section: section_index },
                    at + 16,
                ));
            }
            return Ok(SymbolTarget::Data { section: section_index, offset: value });
        }
        let end = value.checked_add(size);
        if end.is_none_or(|e| e > self.code_size) {
            return Err(Error::new(ErrorKind::SymbolOutsideCode { symbol: index }, at + 16));
        }
        Ok(SymbolTarget::Code(value))
    }

    #[inline(always)]
    pub(crate) fn decode_relocation(
        &self,
        index: u64,
        entry: &[u8; RELOCATION_ENTRY_SIZE],
        at: u64,
    ) -> Result<Relocation> {
        let view = RelocationView::new(entry);
        let wire = view.kind();
        let kind = RelocKind::from_wire(self.dialect, wire)
            .ok_or(Error::new(ErrorKind::RelocationBadKind { relocation: index, wire }, at + 12))?;
        let relocation = Relocation {
            index,
            offset: view.offset(),
            symbol: view.symbol_index(),
            kind,
            wire,
            addend: view.addend(),
        };
        if kind == RelocKind::None {
            return Ok(relocation);
        }
        if relocation.symbol >= self.header.symbol_count {
            return Err(Error::new(
                ErrorKind::RelocationBadSymbol { relocation: index, symbol: relocation.symbol },
                at + 8,
            ));
        }
        let end = relocation.offset.checked_add(kind.width());
        if end.is_none_or(|e| e > self.code_size) {
            return Err(Error::new(ErrorKind::RelocationOutsideCode { relocation: index }, at));
        }
        Ok(relocation)
    }

    fn template_entry_of(&self, symbol: &Symbol<'a>) -> core::result::Result<TemplateEntry<'a>, ErrorKind> {
        if self.dialect == Dialect::R72 {
            return Err(ErrorKind::TemplateOffsetOutOfBounds { symbol: symbol.index });
        }
        let code = self.template_code.ok_or(ErrorKind::TemplateOffsetOutOfBounds { symbol: symbol.index })?;
        let end = self.template_extent_end(symbol.template_offset, code.len());
        code.entry_at(symbol.template_offset, end)
    }

    /// Where the template entry starting at `offset` ends: at the next entry some template
    /// symbol points at, or at the end of the section.
    fn template_extent_end(&self, offset: u64, section_len: u64) -> u64 {
        let mut end = section_len;
        for symbol in self.symbol_views() {
            let other = symbol.template_offset();
            if symbol.flags() & SYMBOL_FLAG_TEMPLATE != 0 && other > offset && other < end {
                end = other;
            }
        }
        end
    }

    fn symbol_views(&self) -> impl Iterator<Item = SymbolView<'a>> + '_ {
        (0..self.header.symbol_count).filter_map(|i| self.symbol_view(i))
    }

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

    /// All sections in table order.
    pub fn sections(&self) -> impl Iterator<Item = Section<'a>> + '_ {
        (0..self.header.section_count).filter_map(|i| self.section(i))
    }

    /// Code sections with their offset in the code image.
    pub fn code_sections(&self) -> impl Iterator<Item = (Section<'a>, u64)> + '_ {
        let mut at = 0u64;
        self.sections().filter(|s| s.section_type == SectionType::Code).map(move |s| {
            let offset = at;
            at += s.virtual_size;
            (s, offset)
        })
    }

    /// Data, rodata and bss sections with their place in the data image.
    pub fn data_sections(&self) -> impl Iterator<Item = DataPlacement<'a>> + '_ {
        let mut layout = DataLayout::default();
        self.sections().filter(|s| s.section_type.is_data()).filter_map(move |section| {
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

    /// All symbols in table order.
    pub fn symbols(&self) -> impl Iterator<Item = Symbol<'a>> + '_ {
        (0..self.header.symbol_count).filter_map(|i| self.symbol(i))
    }

    /// The first exported symbol named `name` (linear scan; the loader builds a hash index).
    pub fn find_export(&self, name: &[u8]) -> Option<Symbol<'a>> {
        let hash = crate::fnv1a(name);
        self.symbols().find(|s| s.is_exported() && s.name == name && s.hash() == hash)
    }

    /// All relocations in table order.
    pub fn relocations(&self) -> impl Iterator<Item = Relocation> + '_ {
        let mut cursor = RelocationCursor::new(self);
        // Validated at parse time: no entry is an error here.
        core::iter::from_fn(move || loop {
            let (index, entry, at) = cursor.next_entry().ok()??;
            if let Ok(relocation) = self.decode_relocation(index, entry, at) {
                return Some(relocation);
            }
        })
    }

    /// The note.sdn text (without its terminator), if the module has one.
    pub const fn note_sdn_text(&self) -> Option<&'a str> {
        self.note
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

    /// Every template symbol with its template entry, in symbol-table order: each entry runs to
    /// the next offset another template symbol points at (offsets sorted once: O(n log n)).
    /// Symbols whose entry does not parse (bad parameter names in its extent) are left out.
    /// An error only if memory for the list cannot be had.
    #[cfg(feature = "alloc")]
    pub fn template_entries(
        &self,
    ) -> core::result::Result<
        alloc::vec::Vec<(Symbol<'a>, TemplateEntry<'a>)>,
        alloc::collections::TryReserveError,
    > {
        use alloc::vec::Vec;
        let Some(code) = self.template_code.filter(|_| self.dialect != Dialect::R72) else {
            return Ok(Vec::new());
        };
        let count = self.symbols().filter(Symbol::is_template).count();
        let mut offsets: Vec<u64> = Vec::new();
        offsets.try_reserve_exact(count)?;
        offsets.extend(self.symbols().filter(Symbol::is_template).map(|s| s.template_offset));
        offsets.sort_unstable();
        offsets.dedup();
        let mut entries = Vec::new();
        entries.try_reserve_exact(count)?;
        entries.extend(self.symbols().filter(Symbol::is_template).filter_map(|symbol| {
            let next = offsets.partition_point(|&o| o <= symbol.template_offset);
            let end = offsets.get(next).copied().unwrap_or(code.len());
            code.entry_at(symbol.template_offset, end).ok().map(|entry| (symbol, entry))
        }));
        Ok(entries)
    }

    /// The template entry a template symbol points at (one symbol: scans the symbol table for
    /// the entry's end; use [`Module::template_entries`] for all of them).
    pub fn template_of(&self, symbol: &Symbol<'a>) -> Option<TemplateEntry<'a>> {
        if !symbol.is_template() {
            return None;
        }
        self.template_entry_of(symbol).ok()
    }

    /// The template entry of the template symbol named `name`.
    pub fn template_by_name(&self, name: &[u8]) -> Option<TemplateEntry<'a>> {
        self.symbols().find(|s| s.is_template() && s.name == name).and_then(|s| self.template_of(&s))
    }
}

/// `file[start..end]`, empty if that is not a range inside the file.
fn slice_between(file: &[u8], start: u64, end: u64) -> &[u8] {
    match end.checked_sub(start).and_then(|len| range_within(start, len, file.len() as u64)) {
        Some(range) => &file[range],
        None => &[],
    }
}

/// Walks the relocation entries of a module, section by section, without decoding them.
#[derive(Clone, Debug)]
struct RelocationCursor<'m, 'a> {
    module: &'m Module<'a>,
    next_section: u32,
    entries: &'a [u8],
    at: u64,
    index: u64,
}

impl<'m, 'a> RelocationCursor<'m, 'a> {
    fn new(module: &'m Module<'a>) -> Self {
        Self { module, next_section: 0, entries: &[], at: 0, index: 0 }
    }

    /// The next entry: its index, bytes and file offset; an error if a section is malformed.
    #[inline(always)]
    fn next_entry(&mut self) -> Result<Option<(u64, &'a [u8; RELOCATION_ENTRY_SIZE], u64)>> {
        loop {
            if let Some((entry, rest)) = self.entries.split_first_chunk::<RELOCATION_ENTRY_SIZE>() {
                let item = (self.index, entry, self.at);
                self.entries = rest;
                self.at += RELOCATION_ENTRY_SIZE as u64;
                self.index += 1;
                return Ok(Some(item));
            }
            if !self.next_section()? {
                return Ok(None);
            }
        }
    }

    /// Moves to the next relocation section; `false` after the last section.
    #[inline(never)]
    fn next_section(&mut self) -> Result<bool> {
        while self.next_section < self.module.header.section_count {
            let section = self.module.decode_section(self.next_section)?;
            self.next_section += 1;
            if section.section_type == SectionType::Relocations {
                self.entries = section.data;
                self.at = section.file_offset;
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The whole entries of one relocation section, as fixed-size arrays.
#[cfg(all(feature = "exec", target_os = "linux"))]
pub(crate) struct RelocationEntries<'a>(core::slice::ChunksExact<'a, u8>);

#[cfg(all(feature = "exec", target_os = "linux"))]
impl<'a> Iterator for RelocationEntries<'a> {
    type Item = &'a [u8; RELOCATION_ENTRY_SIZE];

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        // Every chunk is exactly one entry long, so `first_chunk` always succeeds.
        self.0.by_ref().find_map(<[u8]>::first_chunk)
    }
}

/// The note.sdn section's entry as the format has it: type 13 (or 7, the type S128 gives its
/// other note sections), size and virtual size 0 (its text ends at its terminator), a usable
/// alignment.
fn check_note_entry(section: &Section<'_>) -> core::result::Result<(), ErrorKind> {
    let wrong = |field, value| Err(ErrorKind::NoteSectionEntry { index: section.index, field, value });
    if !matches!(section.section_type, SectionType::TemplateMeta | SectionType::StringTable) {
        return wrong("type", u64::from(section.section_type.to_wire()));
    }
    if section.size != 0 {
        return wrong("size", section.size);
    }
    if section.virtual_size != 0 {
        return wrong("virtual_size", section.virtual_size);
    }
    if !DataLayout::alignment_ok(section.alignment) {
        return wrong("alignment", section.alignment);
    }
    Ok(())
}

/// Running layout of the data image: each section at the next multiple of its alignment in its
/// region, in table order.
#[derive(Clone, Copy, Debug)]
struct DataLayout {
    read_only: u64,
    read_write: u64,
    /// The largest alignment placed so far.
    alignment: u64,
}

impl Default for DataLayout {
    fn default() -> Self {
        Self { read_only: 0, read_write: 0, alignment: 1 }
    }
}

impl DataLayout {
    /// Whether a stored alignment is usable: 0 (none) or a power of two up to [`MAX_ALIGNMENT`].
    fn alignment_ok(alignment: u64) -> bool {
        let align = alignment.max(1);
        align.is_power_of_two() && align <= MAX_ALIGNMENT
    }

    /// Places `section`, returning its region and offset; `None` on a bad alignment or overflow.
    fn place(&mut self, section: &Section<'_>) -> Option<(DataRegion, u64)> {
        if !Self::alignment_ok(section.alignment) {
            return None;
        }
        let align = section.alignment.max(1);
        let (region, cursor) = match section.section_type {
            SectionType::RoData => (DataRegion::ReadOnly, &mut self.read_only),
            _ => (DataRegion::ReadWrite, &mut self.read_write),
        };
        let offset = cursor.checked_add(align - 1)? & !(align - 1);
        *cursor = offset.checked_add(section.virtual_size)?;
        self.alignment = self.alignment.max(align);
        Some((region, offset))
    }
}
