//! The symbol side of a load: one pass, run once the image is placed, that decodes and
//! validates every symbol into the [`SymbolTable`], resolves imports, and works out where
//! relocations against each symbol point (its [`Target`]). Branch stubs and GOT slots are not
//! planned here: the image has room for the most a module can need ([`stub_bound`],
//! [`got_bound`]), and the relocation pass hands them out as relocations ask for them.

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::entries::{self, PendingSymbol};
use super::relocate::Target;
use super::resolutions::{OutOfMemory, Resolutions};
use super::symtab::{LoadedSymbol, SymbolTable, SymbolTableBuilder};
use super::{fallible, Keepalive, LoadError};
use crate::cache::KeyedHasher;
use crate::module::SymbolTarget;
use crate::wire::relocation::entry_fields;
use crate::wire::symbol::SymbolHead;
use crate::wire::SymbolView;
use crate::{Binding, Module, RelocKind, SymbolKind};

/// Where the parts of a placed image start.
#[derive(Clone, Copy, Debug)]
pub(super) struct PlacedImage<'s> {
    /// The code.
    pub(super) code: usize,
    /// The data sections, in table order (ascending index: found by binary search, so that a
    /// module of many data sections and symbols links in `n log n`, not `n²`).
    pub(super) sections: &'s [PlacedSection],
}

/// A data section of a placed image.
#[derive(Clone, Copy, Debug)]
pub(super) struct PlacedSection {
    /// Its index in the section table.
    pub(super) index: u32,
    /// Its address.
    pub(super) addr: usize,
    /// Its size in memory.
    pub(super) virtual_size: u64,
}

impl PlacedImage<'_> {
    /// The placed data section with table index `index`.
    #[inline(always)]
    fn section(&self, index: u32) -> Option<&PlacedSection> {
        let at = self.sections.binary_search_by_key(&index, |s| s.index).ok()?;
        self.sections.get(at)
    }

    /// The size in memory of the placed data section with table index `index`.
    #[inline(always)]
    fn section_size(&self, index: u32) -> Option<u64> {
        self.section(index).map(|s| s.virtual_size)
    }

    /// The address `target` names, `None` if it names nothing or its sum overflows (which a
    /// validated module, placed in memory it occupies, rules out).
    #[inline(always)]
    fn address(&self, target: SymbolTarget) -> Option<Option<usize>> {
        let at = |base: usize, offset: u64| usize::try_from(offset).ok().and_then(|o| base.checked_add(o));
        match target {
            SymbolTarget::Code(offset) => at(self.code, offset).map(Some),
            SymbolTarget::Data { section, offset } => {
                let base = self.section(section).map(|s| s.addr);
                match base {
                    Some(base) => at(base, offset).map(Some),
                    None => Some(None),
                }
            }
            SymbolTarget::None => Some(None),
        }
    }
}

/// The symbols of a module being loaded.
pub(super) struct Linked {
    /// Names, kinds, addresses and the hash index.
    pub(super) symbols: SymbolTable,
    /// Per symbol, in table order: where relocations against it point.
    pub(super) targets: Vec<Target>,
    /// The modules its imports resolved into.
    pub(super) deps: Vec<Keepalive>,
}

/// The most branch stubs `module` can need: one per symbol that may be an import (only
/// branches to imports go through stubs). Read from the raw entries without validation: an
/// over-count only reserves room, and everything is validated as symbols are decoded.
pub(super) fn stub_bound(module: &Module<'_>) -> usize {
    // Each entry's fixed head, read without bounds checks.
    let dialect = module.dialect();
    let may_import = |h: &SymbolHead<'_>| {
        SymbolKind::may_be_import(dialect, h.sym_type(), h.binding(), h.value(), h.size())
    };
    entries::symbol_entries_from(module, 0).filter_map(|view| view.head()).filter(may_import).count()
}

/// The most GOT slots `module` can need: one per GOT-relative relocation (so a module without
/// any needs none), but never more than there are symbols (a slot is per symbol). Counted from
/// the raw entries, as [`stub_bound`].
pub(super) fn got_bound(module: &Module<'_>) -> Result<usize, LoadError> {
    let kinds = RelocKind::wire_table(module.dialect());
    let mut got_relocations = 0usize;
    entries::for_each_relocation_table(module, |entries, _, _| -> Result<(), LoadError> {
        for entry in entries {
            let (_, _, wire, _) = entry_fields(entry);
            got_relocations += usize::from(kinds[usize::from(wire)].is_some_and(RelocKind::uses_got));
        }
        Ok(())
    })?;
    Ok(got_relocations.min(module.symbol_count() as usize))
}

/// Decodes and validates every symbol into a table with its index, resolving imports through
/// `resolver` and placing the module's own symbols at `placed`. The counts are bounded by the
/// file's size (validated), so the vectors are.
///
/// Runs of plain symbols the module defines take the fast path ([`link_defined_run`]); any
/// other entry (imports, templates, and an entry that fails a check) is decoded in full, which
/// names the first failure precisely, so one pass both links fast and reports well.
pub(super) fn link_symbols(
    module: &Module<'_>,
    resolutions: &mut Resolutions<'_>,
    placed: &PlacedImage<'_>,
) -> Result<Linked, LoadError> {
    let count = module.symbol_count() as usize;
    // Symbols are indexed as they are decoded, into a table sized for all of them.
    let oom = |bytes| move || LoadError::OutOfMemory { bytes };
    let strings = module.strings();
    let names = fallible::copied(strings).ok_or_else(oom(strings.len()))?;
    let mut table = SymbolTableBuilder::new(names, count, KeyedHasher::per_process())
        .ok_or_else(oom(fallible::bytes_of::<LoadedSymbol>(count)))?;
    let mut targets =
        fallible::filled(Target::UNPLACED, count).ok_or_else(oom(fallible::bytes_of::<Target>(count)))?;
    // Symbols linked so far (each has its target at its index).
    let mut linked = 0;
    let mut deps: Vec<Keepalive> = Vec::new();
    loop {
        let rest = targets.get_mut(linked..).unwrap_or_default();
        linked +=
            link_defined_run(module, placed, entries::symbol_entries_from(module, linked), &mut table, rest);
        let Some(view) = entries::symbol_entries_from(module, linked).next() else { break };
        // Anything else, one by one: imports, templates, and any entry the fast path refused.
        let index = u32::try_from(linked).map_err(|_| LoadError::Internal)?;
        let sym = match entries::plain_symbol(module, &view, |i| placed.section_size(i)) {
            Some(sym) => sym,
            None => PendingSymbol::from(module.symbol_checked(index)?),
        };
        let import = sym.kind == SymbolKind::Import;
        let address = if import { None } else { placed.address(sym.target).ok_or(LoadError::Internal)? };
        if table.push_named(loaded_symbol(&sym, address)).is_none() {
            // The name has no NUL or is empty where it must not be: the full decode says which
            // (the table cannot be full: it has room for every symbol).
            module.symbol_checked(index)?;
            return Err(LoadError::Internal);
        }
        let target = targets.get_mut(linked).ok_or(LoadError::Internal)?;
        if import {
            let name = table.last_name().ok_or(LoadError::Internal)?;
            target.address = match resolve(resolutions, name, sym.binding, &mut deps) {
                Ok(Some(address)) => address,
                Ok(None) => return Err(LoadError::unresolved(name, resolutions.resolver())),
                Err(OutOfMemory) => return Err(LoadError::OutOfMemory { bytes: name.len() }),
            };
            target.stub = Target::STUB_ALLOWED;
            table.set_last_address(target.address);
        } else if let Some(address) = address {
            target.address = address;
        }
        linked += 1;
    }
    let mut symbols = table.finish();
    let sizes = entries::symbol_sizes(module);
    symbols.set_sizes(sizes.ok_or_else(oom(fallible::bytes_of::<u64>(count)))?);
    Ok(Linked { symbols, targets, deps })
}

/// The symbol pass's fast path: links the plain symbols the module defines (functions, data
/// and the like; not templates, not imports) from `entries`, each into the next of `targets`,
/// and stops before an entry that is anything else or fails a check (for the general path);
/// returns how many it linked.
#[inline(always)]
fn link_defined_run<'a>(
    module: &Module<'a>,
    placed: &PlacedImage<'_>,
    entries: impl Iterator<Item = SymbolView<'a>>,
    table: &mut SymbolTableBuilder,
    targets: &mut [Target],
) -> usize {
    let mut linked = 0;
    for (view, target) in entries.zip(targets) {
        let Some(sym) = entries::plain_symbol(module, &view, |i| placed.section_size(i)) else {
            break;
        };
        let address = match placed.address(sym.target) {
            Some(address) if sym.kind != SymbolKind::Import => address,
            _ => break,
        };
        if table.push_named(loaded_symbol(&sym, address)).is_none() {
            break;
        }
        target.address = address.unwrap_or(Target::NO_ADDRESS);
        linked += 1;
    }
    linked
}

/// What the symbol table keeps of `sym`, placed at `address` (its name, measured and hashed
/// by [`SymbolTableBuilder::push_named`], left unset). Imports, templates and symbols without
/// an address get address 0 and are not exported.
#[inline(always)]
fn loaded_symbol(sym: &PendingSymbol, address: Option<usize>) -> LoadedSymbol {
    let addressable = sym.kind.is_addressable() && !sym.template;
    LoadedSymbol {
        name_start: sym.name_offset,
        name_len: 0,
        hash: 0,
        kind: sym.kind,
        binding: sym.binding,
        addr: if addressable { address.unwrap_or(0) } else { 0 },
        exported: sym.is_exported() && addressable,
        template: sym.template,
    }
}

/// The address of the import `name` (0 for an unresolved weak import), keeping its owner alive
/// through `deps`; `None` if it is unresolved.
#[inline(never)]
fn resolve(
    resolutions: &mut Resolutions<'_>,
    name: &[u8],
    binding: Binding,
    deps: &mut Vec<Keepalive>,
) -> Result<Option<usize>, OutOfMemory> {
    Ok(match resolutions.resolve(name)? {
        Some(found) => {
            if let Some(owner) = found.keepalive {
                if !deps.iter().any(|d| Arc::ptr_eq(d, &owner)) {
                    fallible::push(deps, owner).ok_or(OutOfMemory)?;
                }
            }
            Some(found.addr)
        }
        None if binding == Binding::Weak => Some(0),
        None => None,
    })
}
