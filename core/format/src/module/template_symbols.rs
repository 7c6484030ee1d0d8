//! Template symbols and their template-code entries.

use super::*;

impl<'a> Module<'a> {
    pub(super) fn template_entry_of(
        &self,
        symbol: &Symbol<'a>,
    ) -> core::result::Result<TemplateEntry<'a>, ErrorKind> {
        if !self.dialect.has_symbol_extension() {
            return Err(ErrorKind::TemplateOffsetOutOfBounds { symbol: symbol.index });
        }
        let code = self.template_code.ok_or(ErrorKind::TemplateOffsetOutOfBounds { symbol: symbol.index })?;
        let end = self.template_extent_end(symbol.template_offset, code.len());
        code.entry_at(symbol.template_offset, end)
    }

    /// Where the template entry starting at `offset` ends: at the next entry some template
    /// symbol points at, or at the end of the section.
    pub(super) fn template_extent_end(&self, offset: u64, section_len: u64) -> u64 {
        let mut end = section_len;
        for symbol in (0..self.header.symbol_count).filter_map(|i| self.symbol_view(i)) {
            let other = symbol.template_offset();
            let is_template = SymbolFlags::from_bits_retain(symbol.flags()).contains(SymbolFlags::TEMPLATE);
            if is_template && other > offset && other < end {
                end = other;
            }
        }
        end
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
        let Some(code) = self.template_code.filter(|_| self.dialect.has_symbol_extension()) else {
            return Ok(Vec::new());
        };
        let count = self.symbols().filter(Symbol::is_template).count();
        let mut offsets: Vec<u64> = Vec::new();
        offsets.try_reserve_exact(count)?;
        offsets.extend(self.symbols().filter(Symbol::is_template).map(|s| s.template_offset));
        crate::sort::heapsort(&mut offsets);
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

    /// The template entry a template symbol points at. One symbol: it scans the symbol table
    /// for the entry's end, O(symbols) per call, so a walk over every symbol is quadratic; use
    /// [`Module::template_entries`] (one sort) for all of them, or a loaded module's
    /// `template` (indexed by name at load).
    pub fn template_of(&self, symbol: &Symbol<'a>) -> Option<TemplateEntry<'a>> {
        if !symbol.is_template() {
            return None;
        }
        self.template_entry_of(symbol).ok()
    }

    /// The template entry of the template symbol named `name` (one scan to find it and one to
    /// find its end: O(symbols) per call, as [`Module::template_of`]).
    pub fn template_by_name(&self, name: &[u8]) -> Option<TemplateEntry<'a>> {
        self.symbols().find(|s| s.is_template() && s.name == name).and_then(|s| self.template_of(&s))
    }
}
