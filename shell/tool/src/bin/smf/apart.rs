//! The functions a module names apart from its symbols (`note.names`, `docs/format.md`
//! "Function names": the `static` functions pack keeps out of the symbol table, as `ld` keeps
//! them in `.symtab` apart from `.dynsym`), shown as the commands show symbols: local
//! functions numbered after the table's last symbol.

use smf_format::module::SymbolTarget;
use smf_format::{Binding, Module, Symbol, SymbolFlags, SymbolKind};

/// Each function `module` names apart, as a local function symbol whose index follows the
/// symbol table's.
pub(crate) fn functions<'m>(module: &Module<'m>) -> impl Iterator<Item = Symbol<'m>> + 'm {
    let first = module.header().symbol_count;
    let names = module.function_names();
    (0..names.len()).filter_map(move |i| {
        let function = names.get(i)?;
        Some(Symbol {
            index: first.saturating_add(u32::try_from(i).ok()?),
            name: function.name(),
            name_offset: 0,
            kind: SymbolKind::Function,
            binding: Binding::Local,
            visibility: 0,
            flags: SymbolFlags::empty(),
            value: function.offset,
            size: function.size,
            stored_hash: smf_format::fnv1a(function.name()),
            template_param_count: 0,
            template_offset: 0,
            target: SymbolTarget::Code(function.offset),
        })
    })
}
