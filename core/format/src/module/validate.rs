//! Parsing and validation: finding the layout (dialect and header placement), then checking
//! every table, payload, name, symbol and relocation against the file and computing the code
//! and data layout.

use super::decode::relocated_image;
use super::*;

/// Bytes a symbol's name may share with others' on average, past [`NAMES_SHARED_FREELY`]
/// ([`Module::validate_symbols`]).
pub(super) const NAME_SHARING: u64 = 256;

/// Bytes of names shared between symbols that any module may have, however few its symbols.
pub(super) const NAMES_SHARED_FREELY: u64 = 1 << 20;

impl<'a> Module<'a> {
    /// Validates the header, the section table and every section as one specific layout, and
    /// locates the symbol and string tables.
    pub(super) fn tables_as(file: &'a [u8], candidate: Candidate, options: &ParseOptions) -> Result<Self> {
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
        if Method::from_wire(header.compression).is_err() {
            return Err(Error::new(
                ErrorKind::UnsupportedCompression { method: header.compression },
                header_offset + view.compression_at().unwrap_or(0),
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
            code_alignment: 1,
            relocation_count: 0,
            got_relocation_count: 0,
            code_relocation_count: 0,
            writable_data_start: 0,
            data_relocations_marker: false,
            call_arrays: 0,
            unwind_tables: 0,
            import_count: 0,
            note: None,
            needed: None,
            function_names: None,
            template_code: None,
            template_meta: None,
        };
        module.validate_sections(options)?;
        module.validate_entry()?;
        Ok(module)
    }

    /// Checks every payload, sums the code, lays out the data, finds the special sections.
    pub(super) fn validate_sections(&mut self, options: &ParseOptions) -> Result<()> {
        let mut code_size: u64 = 0;
        let mut code_alignment: u64 = 1;
        let mut layout = DataLayout::default();
        let mut relocations: u64 = 0;
        let mut got_relocations: u64 = 0;
        let mut code_relocations: u64 = 0;
        let mut first_is_marker = false;
        let mut seen_relocations = false;
        let mut data_relocations: Option<u32> = None;
        let mut call_arrays: u32 = 0;
        let mut first_call_array: Option<u32> = None;
        let mut unwind_tables: u32 = 0;
        let mut first_unwind_table: Option<u32> = None;
        // The function-names section (`note.names`): its index and file offset.
        let mut function_names_at: Option<(u32, u64)> = None;
        let got_kinds = RelocKind::got_wire_table(self.dialect);
        // The payloads stored so far, which together fit in the file unless two share bytes:
        // sections aliasing one payload would have every whole-section walk (relocations,
        // compressed frames) read it again, at a cost the file's size no longer bounds.
        let mut stored: u64 = 0;
        for index in 0..self.header.section_count {
            let section = self.decode_section(index)?;
            let entry_offset = self.section_entry_offset(index);
            stored = stored.saturating_add(section.data.len() as u64);
            if stored > self.region_end.saturating_sub(self.base) {
                return Err(Error::new(ErrorKind::PayloadsLargerThanFile { index }, entry_offset));
            }
            let overflow = |bytes| {
                Error::new(ErrorKind::ImageTooLarge { bytes, limit: options.max_image_bytes }, entry_offset)
            };
            let loadable = section.section_type == SectionType::Code || section.section_type.is_data();
            if section.flags.contains(SectionFlags::COMPRESSED) {
                // The stored size is the frame's; the frame's stated length is held to the
                // virtual size instead.
                check_compressed(&section, self.compression()).map_err(|problem| {
                    Error::new(ErrorKind::BadCompressedSection { index, problem }, entry_offset)
                })?;
            } else if loadable && section.virtual_size < section.size {
                return Err(Error::new(ErrorKind::VirtualSizeTooSmall { index }, entry_offset));
            }
            match check_call_array(&section) {
                Ok(None) => {}
                Ok(Some(_)) => {
                    call_arrays += 1;
                    first_call_array = first_call_array.or(Some(index));
                }
                Err(problem) => {
                    return Err(Error::new(ErrorKind::BadCallArray { index, problem }, entry_offset));
                }
            }
            if section.flags.contains(SectionFlags::UNWIND) {
                check_unwind_table(&section).map_err(|problem| {
                    Error::new(ErrorKind::BadUnwindTable { index, problem }, entry_offset)
                })?;
                unwind_tables += 1;
                first_unwind_table = first_unwind_table.or(Some(index));
            }
            if loadable && !alignment_ok(section.alignment) {
                let kind = ErrorKind::BadAlignment { index, alignment: section.alignment };
                return Err(Error::new(kind, entry_offset));
            }
            match section.section_type {
                SectionType::Code => {
                    code_alignment = code_alignment.max(section.alignment);
                    code_size = code_size.checked_add(section.virtual_size).ok_or(overflow(u64::MAX))?;
                }
                t if t.is_data() => {
                    layout.place(&section).ok_or(overflow(u64::MAX))?;
                }
                SectionType::Relocations => {
                    if section.size % RELOCATION_ENTRY_SIZE as u64 != 0 {
                        return Err(Error::new(ErrorKind::RelocationSectionSize { index }, entry_offset));
                    }
                    if !seen_relocations {
                        // The first relocation section (the only one some loaders read):
                        // its first entry is the data relocations marker, if any is.
                        seen_relocations = true;
                        let first =
                            section.data.first_chunk::<RELOCATION_ENTRY_SIZE>().map(RelocationFields::of);
                        if first.is_some_and(|f| f.is_marker() && !f.is_data_relocations_marker()) {
                            let unknown = ErrorKind::BadExtensionMarker { relocation: 0 };
                            return Err(Error::new(unknown, section.file_offset));
                        }
                        first_is_marker = first.is_some_and(|f| f.is_data_relocations_marker());
                    }
                    let entries = section.size / RELOCATION_ENTRY_SIZE as u64;
                    relocations += entries;
                    if relocated_image(&section) == RelocatedImage::Data {
                        data_relocations = data_relocations.or(Some(index));
                        continue; // no GOT kinds: refused in data when the entries are decoded
                    }
                    // (A data relocations marker among them is counted: a loader needing none
                    // of the code's bytes patched asks for none at all.)
                    code_relocations += entries;
                    // The loader sizes the GOT before it decodes the relocations: the kinds
                    // that need a slot are counted here (a byte per entry; an unknown kind is
                    // refused when the entry is decoded).
                    got_relocations += section
                        .data
                        .chunks_exact(RELOCATION_ENTRY_SIZE)
                        .filter_map(|entry| entry.first_chunk::<RELOCATION_ENTRY_SIZE>())
                        .map(RelocationFields::kind_of)
                        .map(|wire| u64::from(got_kinds[usize::from(wire)]))
                        .sum::<u64>();
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
            if section.section_type == SectionType::StringTable && section.name == needed::NEEDED_SECTION {
                needed::check(section.data).map_err(|problem| {
                    Error::new(ErrorKind::BadNeeded { index, problem }, section.file_offset)
                })?;
                self.needed = self.needed.or(Some(section.data));
            }
            if section.section_type == SectionType::StringTable
                && section.name == function_names::FUNCTION_NAMES_SECTION
                && self.function_names.is_none()
            {
                // Checked once the code's size is known.
                function_names_at = Some((index, section.file_offset));
                self.function_names = Some(section.data);
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
        if let (Some((index, at)), Some(data)) = (function_names_at, self.function_names) {
            function_names::check(data, code_size)
                .map_err(|problem| Error::new(ErrorKind::BadFunctionNames { index, problem }, at))?;
        }
        self.code_size = code_size;
        self.read_only_size = layout.read_only;
        self.read_write_size = layout.read_write;
        self.data_alignment = layout.alignment;
        self.code_alignment = code_alignment;
        self.relocation_count = relocations;
        self.got_relocation_count = got_relocations;
        self.code_relocation_count = code_relocations;
        self.data_relocations_marker = first_is_marker;
        self.call_arrays = call_arrays;
        self.unwind_tables = unwind_tables;
        // The alignment is a power of two up to 64 KiB; the sum fits unless the caller's image
        // limit is near u64::MAX.
        self.writable_data_start = layout.writable_start().ok_or(Error::new(
            ErrorKind::ImageTooLarge { bytes: u64::MAX, limit: options.max_image_bytes },
            self.header_offset,
        ))?;
        if let Some(index) = data_relocations.filter(|_| !first_is_marker) {
            let at = self.section_entry_offset(index);
            return Err(Error::new(ErrorKind::DataRelocationsWithoutMarker { index }, at));
        }
        if let Some(index) = first_call_array.filter(|_| !first_is_marker) {
            let kind = ErrorKind::BadCallArray { index, problem: CallArrayProblem::NoMarker };
            return Err(Error::new(kind, self.section_entry_offset(index)));
        }
        if let Some(index) = first_unwind_table.filter(|_| !first_is_marker) {
            let kind = ErrorKind::BadUnwindTable { index, problem: UnwindProblem::NoMarker };
            return Err(Error::new(kind, self.section_entry_offset(index)));
        }
        Ok(())
    }

    pub(super) fn read_note(&self, offset: u64) -> Result<&'a str> {
        let start = self
            .base
            .checked_add(offset)
            .filter(|&s| s <= self.region_end)
            .ok_or(Error::new(ErrorKind::NoteOutOfBounds, self.base.saturating_add(offset)))?;
        let region = slice_between(self.file, start, self.region_end);
        let text = note_sdn::terminated_text(region).ok_or(Error::new(ErrorKind::NoteUnterminated, start))?;
        core::str::from_utf8(text).map_err(|_| Error::new(ErrorKind::NoteNotUtf8, start))
    }

    pub(super) fn validate_entry(&self) -> Result<()> {
        let entry = self.header.entry_point;
        if self.header.is_executable() && entry >= self.code_size {
            let at = self.header_offset + crate::wire::header::fields(self.dialect).entry_point as u64;
            return Err(Error::new(ErrorKind::EntryOutsideCode { entry, code_size: self.code_size }, at));
        }
        Ok(())
    }

    /// Decodes every symbol once, handing each to `each` (which may stop the decoding), and
    /// counts the imports.
    #[inline(always)]
    pub(super) fn validate_symbols<E>(
        &mut self,
        mut each: impl FnMut(u32, SymbolRepr) -> core::result::Result<(), E>,
    ) -> core::result::Result<(), Failure<E>> {
        let mut imports = 0;
        let dialect = self.dialect;
        // The entries in turn, without finding each by its index: the header check cut the
        // table to exactly `symbol_count` of them.
        let entries = self.symbol_table.chunks_exact(dialect.symbol_entry_size());
        debug_assert_eq!(entries.len(), self.header.symbol_count as usize);
        // The names' bytes as the symbols locate them, each name counted once per symbol: the
        // string table, and `NAMES_SHARED_FREELY` and `NAME_SHARING` bytes a symbol more for
        // names that share bytes (a writer storing a name once for several symbols: two static
        // functions of one long C++ name from two objects). Every walk that reads the names
        // (this one finds each name's NUL, a load hashes them, a listing prints them) then
        // reads no more than that, where names aliasing one long string would make it read
        // the square of the file.
        let mut names_left = (self.strings.len() as u64)
            .saturating_add(NAMES_SHARED_FREELY)
            .saturating_add(NAME_SHARING.saturating_mul(u64::from(self.header.symbol_count)));
        for (index, entry) in (0..self.header.symbol_count).zip(entries) {
            let symbol = match SymbolView::new_checked(entry, dialect) {
                Some(view) => self.entry_repr(index, view)?,
                None => self.explain_symbol(index)?,
            };
            names_left = names_left.checked_sub(u64::from(symbol.name_len) + 1).ok_or_else(|| {
                let kind = ErrorKind::NamesShareTooMuch { symbol: index, sharing: NAME_SHARING };
                Failure::Format(Error::new(kind, self.symbol_entry_offset(index)))
            })?;
            imports += u32::from(symbol.is_import());
            each(index, symbol).map_err(Failure::Stopped)?;
        }
        self.import_count = imports;
        Ok(())
    }

    /// Decodes every relocation once, handing each to `sink` (which may stop the decoding).
    #[inline(always)]
    pub(super) fn validate_relocations<S: RelocationSink>(
        &mut self,
        sink: &mut S,
    ) -> core::result::Result<(), Failure<S::Stop>> {
        let mut index = 0u64;
        // The marker (the first entry of the first relocation section, checked with the
        // sections) is skipped.
        let mut skip = usize::from(self.data_relocations_marker);
        for section in 0..self.header.section_count {
            if !self.is_section_of(section, |t| t == SectionType::Relocations) {
                continue;
            }
            let section = self.decode_section(section)?;
            let skipped = core::mem::take(&mut skip);
            let entries = section.data.get(skipped * RELOCATION_ENTRY_SIZE..).unwrap_or_default();
            index += skipped as u64;
            let at = section.file_offset + (skipped * RELOCATION_ENTRY_SIZE) as u64;
            // One loop per image, so that the code's has no test of its own per entry.
            index = match relocated_image(&section) {
                RelocatedImage::Code => self.code_relocations(entries, at, index, sink)?,
                RelocatedImage::Data => self.data_relocations(entries, at, index, sink)?,
            };
        }
        Ok(())
    }

    /// `entries` (at file offset `at`) of a code relocation section, to `sink`; the first is
    /// relocation `first`, and the index after the last is returned. Out of line: in a
    /// function of its own the loop keeps its counters in registers (inlined into the load,
    /// it spilled them: 0.9k instructions more per load of the benchmark module).
    #[inline(never)]
    fn code_relocations<S: RelocationSink>(
        &self,
        entries: &'a [u8],
        at: u64,
        first: u64,
        sink: &mut S,
    ) -> core::result::Result<u64, Failure<S::Stop>> {
        let mut index = first;
        for entry in entries.chunks_exact(RELOCATION_ENTRY_SIZE) {
            let Some(entry) = entry.first_chunk::<RELOCATION_ENTRY_SIZE>() else { break };
            // Where the entry lies, for errors: computed, not carried, so that the loop keeps
            // one counter fewer.
            let entry_at = at + (index - first) * RELOCATION_ENTRY_SIZE as u64;
            let relocation = self.decode_relocation(index, entry, entry_at, RelocatedImage::Code)?;
            sink.code(relocation).map_err(Failure::Stopped)?;
            index += 1;
        }
        Ok(index)
    }

    /// `entries` of a data relocation section, to `sink` (sorted by offset, none overlapping
    /// the one before), as [`Module::code_relocations`] does.
    #[inline(never)]
    fn data_relocations<S: RelocationSink>(
        &self,
        entries: &'a [u8],
        mut at: u64,
        mut index: u64,
        sink: &mut S,
    ) -> core::result::Result<u64, Failure<S::Stop>> {
        // Where the previous data relocation of this section ends.
        let mut end = 0u64;
        for entry in entries.chunks_exact(RELOCATION_ENTRY_SIZE) {
            let Some(entry) = entry.first_chunk::<RELOCATION_ENTRY_SIZE>() else { break };
            let relocation = self.decode_relocation(index, entry, at, RelocatedImage::Data)?;
            if relocation.kind != RelocKind::None {
                if relocation.offset < end {
                    let overlap = ErrorKind::DataRelocationsOverlap { relocation: index };
                    return Err(Failure::Format(Error::new(overlap, at)));
                }
                end = relocation.offset.saturating_add(relocation.kind.width());
            }
            sink.data(relocation).map_err(Failure::Stopped)?;
            index += 1;
            at += RELOCATION_ENTRY_SIZE as u64;
        }
        Ok(index)
    }
}

/// Where validation hands each relocation it decodes, by the image it patches.
pub trait RelocationSink {
    /// Why the sink stops the decoding.
    type Stop;
    /// Takes a relocation of the code.
    fn code(&mut self, relocation: Relocation) -> core::result::Result<(), Self::Stop>;
    /// Takes a relocation of the data.
    fn data(&mut self, relocation: Relocation) -> core::result::Result<(), Self::Stop>;
}

/// A function takes both kinds.
impl<E, F: FnMut(Relocation) -> core::result::Result<(), E>> RelocationSink for F {
    type Stop = E;

    #[inline(always)]
    fn code(&mut self, relocation: Relocation) -> core::result::Result<(), E> {
        self(relocation)
    }

    #[inline(always)]
    fn data(&mut self, relocation: Relocation) -> core::result::Result<(), E> {
        self(relocation)
    }
}

/// `file[start..end]`, empty if that is not a range inside the file.
pub(super) fn slice_between(file: &[u8], start: u64, end: u64) -> &[u8] {
    match end.checked_sub(start).and_then(|len| range_within(start, len, file.len() as u64)) {
        Some(range) => &file[range],
        None => &[],
    }
}

/// The rules of a constructor or destructor array section: rodata, whole 8-byte entries, aligned
/// to 8 (the loader reads each entry as an aligned address). `None` for every other section.
fn check_call_array(section: &Section<'_>) -> core::result::Result<Option<CallArray>, CallArrayProblem> {
    let Some(array) = CallArray::of_flags(section.flags)? else { return Ok(None) };
    if section.section_type != SectionType::RoData {
        return Err(CallArrayProblem::NotReadOnlyData);
    }
    let entry = CALL_ARRAY_ENTRY as u64;
    if section.size % entry != 0 || section.virtual_size != section.size {
        return Err(CallArrayProblem::Size);
    }
    if section.alignment < entry {
        return Err(CallArrayProblem::Alignment);
    }
    Ok(Some(array))
}

/// A section flagged compressed: one the loader only copies (code, data or rodata that is
/// not a call array or an unwind table), in a module whose header names a method, holding a
/// frame that states at most its virtual size ([`Frame::of`]).
fn check_compressed(
    section: &Section<'_>,
    method: Option<Method>,
) -> core::result::Result<(), CompressionProblem> {
    let method = method.ok_or(CompressionProblem::NoMethod)?;
    if !crate::compress::may_compress(section.section_type, section.flags) {
        return Err(CompressionProblem::NotCompressible);
    }
    Frame::of(method, section.data, section.virtual_size).map(|_| ())
}

/// The rules of an unwind table section: rodata, its virtual size its size, records tiling it
/// up to the terminator ([`super::unwind`]).
fn check_unwind_table(section: &Section<'_>) -> core::result::Result<(), UnwindProblem> {
    if section.section_type != SectionType::RoData {
        return Err(UnwindProblem::NotReadOnlyData);
    }
    if section.virtual_size != section.size {
        return Err(UnwindProblem::NoTerminator);
    }
    super::unwind::check_records(section.data)
}

/// The note.sdn section's entry as the format has it: type 13 (or 7, the type S128 gives its
/// other note sections), size and virtual size 0 (its text ends at its terminator), a usable
/// alignment.
pub(super) fn check_note_entry(section: &Section<'_>) -> core::result::Result<(), ErrorKind> {
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
    if !alignment_ok(section.alignment) {
        return wrong("alignment", section.alignment);
    }
    Ok(())
}

/// Why decoding a table stopped: the file is malformed, or the caller's function stopped it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Failure<E> {
    /// The file breaks a rule.
    Format(Error),
    /// The caller's function returned an error.
    Stopped(E),
}

impl<E> From<Error> for Failure<E> {
    fn from(error: Error) -> Self {
        Failure::Format(error)
    }
}
