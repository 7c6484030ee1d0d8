//! Decoding table entries (sections, symbols, relocations) from the file, shared by validation
//! and the accessors, and the raw views the loader's fast paths read.

use super::*;

impl<'a> Module<'a> {
    /// Symbol `index`, decoded and checked (for callers of [`Module::parse_deferred`]).
    #[cfg(all(feature = "exec", target_os = "linux"))]
    #[inline(never)]
    pub(crate) fn symbol_checked(&self, index: u32) -> Result<Symbol<'a>> {
        self.decode_symbol(index)
    }

    /// The symbol table's bytes: exactly the symbol count's entries (parsing cut it to that
    /// length), for the loader's fast path over raw entries.
    #[cfg(all(feature = "exec", target_os = "linux"))]
    pub(crate) const fn symbol_table_bytes(&self) -> &'a [u8] {
        self.symbol_table
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
        let declared = SymbolKind::from_wire(self.dialect, raw_type).ok_or(Error::new(
            ErrorKind::BadSymbolType { symbol: index, value: raw_type },
            at + SymbolView::TYPE_AT,
        ))?;
        let binding = Binding::from_wire(view.binding()).ok_or(Error::new(
            ErrorKind::BadBinding { symbol: index, value: view.binding() },
            at + SymbolView::BINDING_AT,
        ))?;
        if name.is_empty() && Symbol::must_be_named(binding) {
            return Err(Error::new(ErrorKind::UnnamedSymbol { symbol: index }, at));
        }
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
            let bad = Error::new(
                ErrorKind::TemplateOffsetOutOfBounds { symbol: index },
                at + SymbolView::TEMPLATE_OFFSET_AT,
            );
            let code = self.template_code.ok_or(bad)?;
            code.check_entry(symbol.template_offset).map_err(|_| bad)?;
        }
        Ok(symbol)
    }

    /// Where a symbol's value points ([`locate_symbol`]), with the error for the entry at `at`.
    #[inline]
    pub(super) fn symbol_target(
        &self,
        index: u32,
        at: u64,
        kind: SymbolKind,
        view: &SymbolView<'a>,
    ) -> Result<SymbolTarget> {
        let data_size = |section: u32| {
            let section =
                (section < self.header.section_count).then(|| self.decode_section(section).ok())??;
            section.section_type.is_data().then_some(section.virtual_size)
        };
        let (stored_section, value, size) = (view.section_index(), view.value(), view.size());
        if let Some(target) = locate_symbol(kind, || stored_section, value, size, self.code_size, data_size) {
            return Ok(target);
        }
        // Why not, for the error.
        let error = match named_data_section(kind, || stored_section) {
            Some(section) if data_size(section).is_none() => Error::new(
                ErrorKind::BadSymbolSection { symbol: index, section: u32::from(stored_section) },
                at + SymbolView::SECTION_INDEX_AT,
            ),
            Some(section) => Error::new(
                ErrorKind::SymbolOutsideSection { symbol: index, section },
                at + SymbolView::VALUE_AT,
            ),
            None => Error::new(ErrorKind::SymbolOutsideCode { symbol: index }, at + SymbolView::VALUE_AT),
        };
        Err(error)
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
        let kind = RelocKind::from_wire(self.dialect, wire).ok_or(Error::new(
            ErrorKind::RelocationBadKind { relocation: index, wire },
            at + RelocationView::KIND_AT,
        ))?;
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
                at + RelocationView::SYMBOL_AT,
            ));
        }
        if relocation_site(relocation.offset, kind, self.code_size).is_none() {
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

/// The data section (its table index) a symbol of `kind` whose entry names section
/// `stored_section()` (1-based, 0 for none; read only for symbols other than functions, as
/// the field costs a dialect test to read) lies in, `None` if it lies in the code: function
/// symbols, and symbols that name no section, address the code.
#[inline(always)]
pub(crate) fn named_data_section(kind: SymbolKind, stored_section: impl FnOnce() -> u16) -> Option<u32> {
    if kind == SymbolKind::Function {
        return None;
    }
    let stored = stored_section();
    (stored != 0).then(|| u32::from(stored) - 1)
}

/// Where a symbol of `kind` with `value` and `size` points, its entry naming section
/// `stored_section`: the one rule, shared by full decoding and the loader's fast path. It
/// addresses the code or the data section [`named_data_section`] gives, which must be a data,
/// rodata or bss section (`data_size(index)` gives its virtual size, `None` for any other
/// index). Either way it must lie inside; `None` if it does not.
#[inline(always)]
pub(crate) fn locate_symbol(
    kind: SymbolKind,
    stored_section: impl FnOnce() -> u16,
    value: u64,
    size: u64,
    code_size: u64,
    data_size: impl FnOnce(u32) -> Option<u64>,
) -> Option<SymbolTarget> {
    if !kind.is_addressable() {
        return Some(SymbolTarget::None);
    }
    if let Some(section) = named_data_section(kind, stored_section) {
        return (value.checked_add(size)? <= data_size(section)?)
            .then_some(SymbolTarget::Data { section, offset: value });
    }
    (value.checked_add(size)? <= code_size).then_some(SymbolTarget::Code(value))
}

/// The bytes a relocation of `kind` at `offset` patches, as a range of the code, if they lie
/// inside it (`code_size` bytes): the one rule, shared by full decoding and the loader's
/// relocation pass, which patches exactly these bytes.
#[inline(always)]
pub(crate) fn relocation_site(
    offset: u64,
    kind: RelocKind,
    code_size: u64,
) -> Option<core::ops::Range<usize>> {
    let end = offset.checked_add(kind.width())?;
    if end > code_size {
        return None;
    }
    Some(usize::try_from(offset).ok()?..usize::try_from(end).ok()?)
}
