//! Symbols: [`SymbolRepr`], one symbol table entry decoded and validated by the format's rules,
//! and [`Module::symbol_repr`], the one decoder of entries. Everything that reads a module's
//! symbols works from it: [`Symbol`] (the public record with its name), validation (which
//! decodes each entry once and hands it to the caller: [`super::ModuleTables::decode_symbols`]),
//! and the loader (which links each as it is handed over and never reads the table's bytes).

use super::*;

/// One symbol, decoded and validated: its name located (NUL-terminated inside the string
/// table), its kind with the dialect's import rule applied, and what its value addresses
/// checked to lie inside the code or its data section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SymbolRepr {
    /// Where its name starts in the string table ([`Module::strings`]).
    pub name_offset: u32,
    /// Its name's length (a NUL follows it in the string table).
    pub name_len: u32,
    /// Kind, with the dialect's numbering and import rule applied.
    pub kind: SymbolKind,
    /// Binding.
    pub binding: Binding,
    /// Visibility byte as stored.
    pub visibility: u8,
    /// Flags as stored (bits no flag names kept).
    pub flags: SymbolFlags,
    /// Number of generic parameters.
    pub template_param_count: u8,
    /// The hash stored in the file (never trusted: names are hashed again where it matters).
    pub stored_hash: u32,
    /// Value as stored.
    pub value: u64,
    /// Size as stored.
    pub size: u64,
    /// Offset of the template entry (meaningful with the template flag).
    pub template_offset: u64,
    /// What the value addresses.
    pub target: SymbolTarget,
}

impl SymbolRepr {
    /// Where its name lies in the string table (without the NUL).
    pub fn name_range(&self) -> core::ops::Range<usize> {
        let start = self.name_offset as usize;
        start..start + self.name_len as usize
    }

    /// Whether it is a generic template ([`SymbolFlags::TEMPLATE`]).
    pub const fn is_template(&self) -> bool {
        self.flags.contains(SymbolFlags::TEMPLATE)
    }

    /// Whether other modules may see it ([`Symbol::is_exported`]'s rule).
    pub const fn is_exported(&self) -> bool {
        Symbol::visible_outside(self.kind, self.binding)
    }

    /// Whether it is an import (resolved from outside the module).
    pub const fn is_import(&self) -> bool {
        matches!(self.kind, SymbolKind::Import)
    }
}

impl<'a> Symbol<'a> {
    /// The public record of symbol `index`, decoded as `repr`, whose name is `name`.
    pub(super) const fn from_repr(index: u32, name: &'a [u8], repr: &SymbolRepr) -> Self {
        Symbol {
            index,
            name,
            name_offset: repr.name_offset,
            kind: repr.kind,
            binding: repr.binding,
            visibility: repr.visibility,
            flags: repr.flags,
            value: repr.value,
            size: repr.size,
            stored_hash: repr.stored_hash,
            template_param_count: repr.template_param_count,
            template_offset: repr.template_offset,
            target: repr.target,
        }
    }
}

/// How a check reports a broken rule: with the [`Error`] (what and where), or with nothing,
/// when the caller, on the rare failure, asks again for the reason ([`Quiet`]). One check,
/// generic over this, is the rules' one home: the quiet form runs on every entry of every load
/// without keeping what an error would need, and the explaining form runs on the one entry
/// that broke a rule.
trait Verdict: Sized {
    /// The report of a broken rule, `why` saying which.
    fn broken(why: impl FnOnce() -> Error) -> Self;
}

impl Verdict for Error {
    #[inline(always)]
    fn broken(why: impl FnOnce() -> Error) -> Self {
        why()
    }
}

/// A rule is broken; which one, the explaining form of the check says.
#[derive(Clone, Copy, Debug)]
struct Quiet;

impl Verdict for Quiet {
    #[inline(always)]
    fn broken(_: impl FnOnce() -> Error) -> Self {
        Quiet
    }
}

impl<'a> Module<'a> {
    /// Decodes and validates symbol `index`: the entry checked quietly, and, if it breaks a
    /// rule, once more to say which ([`Module::check_symbol`] is the one place the rules live).
    #[inline(always)]
    pub(super) fn symbol_repr(&self, index: u32) -> Result<SymbolRepr> {
        match self.symbol_view(index) {
            Some(view) => self.entry_repr(index, view),
            None => self.explain_symbol(index),
        }
    }

    /// [`Module::symbol_repr`] of symbol `index` whose entry the caller found: `view`.
    #[inline(always)]
    pub(super) fn entry_repr(&self, index: u32, view: SymbolView<'a>) -> Result<SymbolRepr> {
        match self.check_symbol::<Quiet>(index, view) {
            Ok(repr) => Ok(repr),
            Err(Quiet) => self.explain_symbol(index),
        }
    }

    /// [`Module::check_symbol`] with the error, for the entry the quiet check refused (or
    /// could not find).
    #[cold]
    #[inline(never)]
    pub(super) fn explain_symbol(&self, index: u32) -> Result<SymbolRepr> {
        let at = self.symbol_entry_offset(index);
        let view = self
            .symbol_view(index)
            .ok_or(Error::new(ErrorKind::SymbolTableOutOfBounds { count: index }, at))?;
        self.check_symbol::<Error>(index, view)
    }

    /// Decodes and validates symbol `index`, whose entry is `view`, reporting a broken rule
    /// as `V` says: the one place a symbol entry's rules live.
    #[inline(always)]
    fn check_symbol<V: Verdict>(
        &self,
        index: u32,
        view: SymbolView<'a>,
    ) -> core::result::Result<SymbolRepr, V> {
        let at = || self.symbol_entry_offset(index);
        let name_offset = view.name_offset();
        let tail =
            self.strings.get(name_offset as usize..).filter(|t| !t.is_empty()).ok_or_else(|| {
                V::broken(|| Error::new(ErrorKind::NameOutOfBounds { symbol: index }, at()))
            })?;
        let unterminated = || V::broken(|| Error::new(ErrorKind::NameUnterminated { symbol: index }, at()));
        let name_len = crate::bytes::nul_at(tail).ok_or_else(unterminated)?;
        // The string table lies in the file: its offsets fit in a u32 where the name's start does.
        let name_len = u32::try_from(name_len).map_err(|_| unterminated())?;

        let raw_type = view.sym_type();
        let declared = SymbolKind::from_wire(self.dialect, raw_type).ok_or_else(|| {
            V::broken(|| {
                let kind = ErrorKind::BadSymbolType { symbol: index, value: raw_type };
                Error::new(kind, at() + SymbolView::TYPE_AT)
            })
        })?;
        let binding = Binding::from_wire(view.binding()).ok_or_else(|| {
            V::broken(|| {
                let kind = ErrorKind::BadBinding { symbol: index, value: view.binding() };
                Error::new(kind, at() + SymbolView::BINDING_AT)
            })
        })?;
        if name_len == 0 && Symbol::must_be_named(binding) {
            return Err(V::broken(|| Error::new(ErrorKind::UnnamedSymbol { symbol: index }, at())));
        }
        let (value, size) = (view.value(), view.size());
        let flags = SymbolFlags::from_bits_retain(view.flags());
        let is_template = flags.contains(SymbolFlags::TEMPLATE);
        let kind = SymbolKind::of_entry(self.dialect, declared, binding, value, size, is_template);
        let target = match is_template {
            true => SymbolTarget::None,
            false => self
                .symbol_target(kind, &view)
                .ok_or_else(|| V::broken(|| self.symbol_target_error(index, at(), kind, &view)))?,
        };
        let template_offset = view.template_offset();
        // R72 entries have no template_offset field: nothing to locate or check there. Only the
        // entry's prefix is checked here (O(1)): finding where an entry ends takes all template
        // symbols' offsets, which `template_entries` sorts once.
        if is_template && self.dialect.has_symbol_extension() {
            let bad = || {
                V::broken(|| {
                    let kind = ErrorKind::TemplateOffsetOutOfBounds { symbol: index };
                    Error::new(kind, at() + SymbolView::TEMPLATE_OFFSET_AT)
                })
            };
            let code = self.template_code.ok_or_else(bad)?;
            code.check_entry(template_offset).map_err(|_| bad())?;
        }
        Ok(SymbolRepr {
            name_offset,
            name_len,
            kind,
            binding,
            visibility: view.visibility(),
            flags,
            template_param_count: view.template_param_count(),
            stored_hash: view.name_hash(),
            value,
            size,
            template_offset,
            target,
        })
    }

    /// The name `repr` (one of this module's symbols) locates.
    pub fn symbol_name(&self, repr: &SymbolRepr) -> &'a [u8] {
        self.strings.get(repr.name_range()).unwrap_or_default()
    }

    /// Symbol `index`, decoded and validated, with its name.
    pub(super) fn decode_symbol(&self, index: u32) -> Result<Symbol<'a>> {
        let repr = self.symbol_repr(index)?;
        Ok(Symbol::from_repr(index, self.symbol_name(&repr), &repr))
    }

    /// Where a symbol's value points ([`locate_symbol`]); `None` if outside what it may address.
    #[inline(always)]
    fn symbol_target(&self, kind: SymbolKind, view: &SymbolView<'a>) -> Option<SymbolTarget> {
        let data_size = |section: u32| self.data_section_size(section);
        locate_symbol(kind, view.section_index(), view.value(), view.size(), self.code_size, data_size)
    }

    /// Why symbol `index` (entry at `at`, of `kind`) points outside what it may address.
    #[cold]
    fn symbol_target_error(&self, index: u32, at: u64, kind: SymbolKind, view: &SymbolView<'a>) -> Error {
        let stored_section = view.section_index();
        match named_data_section(kind, stored_section) {
            Some(section) if self.data_section_size(section).is_none() => Error::new(
                ErrorKind::BadSymbolSection { symbol: index, section: u32::from(stored_section) },
                at + SymbolView::SECTION_INDEX_AT,
            ),
            Some(section) => Error::new(
                ErrorKind::SymbolOutsideSection { symbol: index, section },
                at + SymbolView::VALUE_AT,
            ),
            None => Error::new(ErrorKind::SymbolOutsideCode { symbol: index }, at + SymbolView::VALUE_AT),
        }
    }

    /// The size in memory of section `index` when it is a data, rodata or bss section (read
    /// from its entry alone: its payload was checked with the section table).
    fn data_section_size(&self, index: u32) -> Option<u64> {
        if index >= self.header.section_count {
            return None;
        }
        let view = self.section_view(index)?;
        SectionType::from_wire(view.section_type()).is_data().then(|| view.virtual_size())
    }
}

/// The data section (its table index) a symbol of `kind` whose entry names section
/// `stored_section` (1-based, 0 for none) lies in, `None` if it lies in the code: function
/// symbols, and symbols that name no section, address the code.
const fn named_data_section(kind: SymbolKind, stored_section: u16) -> Option<u32> {
    if matches!(kind, SymbolKind::Function) || stored_section == 0 {
        return None;
    }
    Some(stored_section as u32 - 1)
}

/// Where a symbol of `kind` with `value` and `size` points, its entry naming section
/// `stored_section`. It addresses the code or the data section [`named_data_section`] gives,
/// which must be a data, rodata or bss section (`data_size(index)` gives its virtual size,
/// `None` for any other index). Either way it must lie inside; `None` if it does not.
#[inline(always)]
fn locate_symbol(
    kind: SymbolKind,
    stored_section: u16,
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

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use crate::write::{ModuleBuilder, SectionSpec, SymbolSpec};

    /// A module of every dialect with a function, an import, a data symbol and a template.
    fn sample(dialect: Dialect) -> alloc::vec::Vec<u8> {
        let mut b = ModuleBuilder::new(dialect);
        b.add_code(b".text", &[0xC3; 32]);
        if dialect.has_symbol_extension() {
            let flags = SectionFlags::READ | SectionFlags::WRITE;
            b.add_section(SectionSpec::new(SectionType::Data, b".data", flags, alloc::vec![0; 16], 8));
        }
        b.add_symbol(SymbolSpec::function(b"f", 8, 4));
        b.add_symbol(SymbolSpec::import(b"outside"));
        if dialect.has_symbol_extension() {
            b.add_symbol(SymbolSpec::data(b"counter", 1, 4, 8));
        }
        b.build().unwrap()
    }

    #[test]
    fn the_quiet_check_refuses_exactly_what_the_explaining_one_does() {
        for dialect in Dialect::ALL {
            let file = sample(dialect);
            let options = ParseOptions::default();
            let mut candidates = detect::candidates(&file, Some(dialect)).unwrap();
            let candidate = candidates.find(|&c| Module::tables_as(&file, c, &options).is_ok()).unwrap();
            let module = Module::tables_as(&file, candidate, &options).unwrap();
            let entry = dialect.symbol_entry_size();
            let table = usize::try_from(module.symbol_table_at).unwrap();
            // Every byte of every entry set to values that break and keep the rules (under Miri,
            // which runs this a thousand times slower, the first entry's bytes).
            let entries = if cfg!(miri) { 1 } else { module.header.symbol_count as usize };
            let mut refused = 0;
            for at in table..table + entry * entries {
                for value in [0u8, 1, 3, 0x10, 0xFF] {
                    let mut mutated = file.clone();
                    mutated[at] = value;
                    let Ok(module) = Module::tables_as(&mutated, candidate, &options) else { continue };
                    for index in 0..module.header.symbol_count {
                        let view = module.symbol_view(index).unwrap();
                        let quiet = module.check_symbol::<Quiet>(index, view);
                        let explained = module.check_symbol::<Error>(index, view);
                        assert_eq!(quiet.is_ok(), explained.is_ok(), "{dialect:?} byte {at} = {value}");
                        if let (Ok(a), Ok(b)) = (quiet, explained) {
                            assert_eq!(a, b);
                        }
                        refused += usize::from(explained.is_err());
                        assert_eq!(
                            module.symbol_repr(index),
                            explained,
                            "the door gives the explained result"
                        );
                    }
                }
            }
            assert!(refused > 0, "{dialect:?}: some mutations break a rule");
        }
    }
}
