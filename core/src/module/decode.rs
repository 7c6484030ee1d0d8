//! Decoding table entries (sections, symbols, relocations) from the file, shared by validation
//! and the accessors, and the raw views the loader's fast paths read.

use super::*;

impl<'a> Module<'a> {
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
        // `SymbolKind::of_entry`'s rule, templates being excluded above.
        let local = binding == Binding::Local;
        let kind = if SymbolKind::import_by_value(self.dialect, local, value, size, false) {
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

    pub(super) fn section_entry_offset(&self, index: u32) -> u64 {
        self.section_table_at + u64::from(index) * self.dialect.section_entry_size() as u64
    }

    pub(super) fn symbol_entry_offset(&self, index: u32) -> u64 {
        self.symbol_table_at + u64::from(index) * self.dialect.symbol_entry_size() as u64
    }

    pub(super) fn section_view(&self, index: u32) -> Option<SectionView<'a>> {
        let size = self.dialect.section_entry_size();
        let start = (index as usize).checked_mul(size)?;
        SectionView::new_checked(self.section_table.get(start..start.checked_add(size)?)?, self.dialect)
    }

    pub(super) fn symbol_view(&self, index: u32) -> Option<SymbolView<'a>> {
        let size = self.dialect.symbol_entry_size();
        let start = (index as usize).checked_mul(size)?;
        SymbolView::new_checked(self.symbol_table.get(start..start.checked_add(size)?)?, self.dialect)
    }

    pub(super) fn decode_section(&self, index: u32) -> Result<Section<'a>> {
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
    pub(super) fn decode_symbol(&self, index: u32) -> Result<Symbol<'a>> {
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
        let kind = SymbolKind::of_entry(self.dialect, declared, binding, value, size, is_template);
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
        if is_template && self.dialect.has_symbol_extension() {
            let bad = Error::new(ErrorKind::TemplateOffsetOutOfBounds { symbol: index }, at + 48);
            let code = self.template_code.ok_or(bad)?;
            code.check_entry(symbol.template_offset).map_err(|_| bad)?;
        }
        Ok(symbol)
    }

    /// Where a symbol's value points, checked against the code or its data section.
    #[inline]
    pub(super) fn symbol_target(
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

    pub(super) fn symbol_views(&self) -> impl Iterator<Item = SymbolView<'a>> + '_ {
        (0..self.header.symbol_count).filter_map(|i| self.symbol_view(i))
    }
}

/// Walks the relocation entries of a module, section by section, without decoding them.
#[derive(Clone, Debug)]
pub(super) struct RelocationCursor<'m, 'a> {
    module: &'m Module<'a>,
    next_section: u32,
    entries: &'a [u8],
    at: u64,
    index: u64,
}

impl<'m, 'a> RelocationCursor<'m, 'a> {
    pub(super) fn new(module: &'m Module<'a>) -> Self {
        Self { module, next_section: 0, entries: &[], at: 0, index: 0 }
    }

    /// The next entry: its index, bytes and file offset; an error if a section is malformed.
    #[inline(always)]
    pub(super) fn next_entry(&mut self) -> Result<Option<(u64, &'a [u8; RELOCATION_ENTRY_SIZE], u64)>> {
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
    pub(super) fn next_section(&mut self) -> Result<bool> {
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
