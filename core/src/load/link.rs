//! The link stage of a load: the module's symbols, handed over one by one as validation
//! decodes them ([`ModuleTables::decode_symbols`]), go into the [`SymbolTable`] (names hashed
//! and indexed) with imports resolved, before anything is allocated (the layout needs the
//! number of imports). Once the image is placed, [`Linked::place`] gives the module's own
//! symbols their addresses and works out where relocations against each symbol point (its
//! [`Target`]). Branch stubs and GOT slots are not planned here: the image has room for the
//! most a module can need ([`super::layout::Layout::plan`]), and the relocation stage hands
//! them out as relocations ask for them.

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::place::{offset_from, PlacedSection};
use super::relocate::{StubSlot, Target};
use super::resolutions::{OutOfMemory, Resolutions};
use super::symtab::{LoadedSymbol, SymbolTable, SymbolTableBuilder};
use super::{fallible, Keepalive, LoadError};
use crate::cache::KeyedHasher;
use crate::module::{ModuleSymbols, ModuleTables, SymbolRepr, SymbolTarget};
use crate::Binding;

/// Where the parts of a placed image start.
#[derive(Clone, Copy, Debug)]
pub(super) struct PlacedImage<'s> {
    /// The code.
    pub(super) code: usize,
    /// The data sections, in table order (ascending index: found by binary search, so that a
    /// module of many data sections and symbols links in `n log n`, not `n²`).
    pub(super) sections: &'s [PlacedSection],
}

impl PlacedImage<'_> {
    /// The address `target` names (`None` for nothing), or why there is none: a section that
    /// was not placed, or a sum that overflows, both of which a validated module, placed in
    /// memory it occupies, rules out.
    fn address(&self, target: SymbolTarget) -> Result<Option<usize>, LoadError> {
        match target {
            SymbolTarget::Code(offset) => offset_from(self.code, offset).map(Some),
            SymbolTarget::Data { section, offset } => {
                let at = self.sections.binary_search_by_key(&section, |s| s.index);
                let placed = at.ok().and_then(|at| self.sections.get(at)).ok_or_else(LoadError::internal)?;
                offset_from(placed.addr, offset).map(Some)
            }
            SymbolTarget::None => Ok(None),
        }
    }
}

/// A module's symbols, linked: indexed by name, imports resolved, the module's own not yet
/// placed.
pub(super) struct Linked<'m> {
    /// The module, its symbols validated.
    pub(super) module: ModuleSymbols<'m>,
    /// Names, kinds and the hash index; the addresses of imports (the module's own are filled
    /// in by [`Linked::place`]).
    symbols: SymbolTable,
    /// Per symbol, in table order: where it is.
    locations: Vec<Location>,
    /// The modules its imports resolved into.
    deps: Vec<Keepalive>,
    /// Each template symbol's index and template-code offset, in table order.
    templates: Vec<(u32, u64)>,
}

/// Where a symbol is, before the image is placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Location {
    /// An import, at the address it resolved to (0 for an unresolved weak import).
    Outside(usize),
    /// One of the module's own symbols, at what its value addresses.
    Inside(SymbolTarget),
}

/// A module's symbols, placed.
pub(super) struct Placed<'m> {
    /// The module, its symbols validated.
    pub(super) module: ModuleSymbols<'m>,
    /// Names, kinds, addresses and the hash index.
    pub(super) symbols: SymbolTable,
    /// Per symbol, in table order: where relocations against it point.
    pub(super) targets: Vec<Target>,
    /// The modules its imports resolved into.
    pub(super) deps: Vec<Keepalive>,
    /// Each template symbol's index and template-code offset, in table order.
    pub(super) templates: Vec<(u32, u64)>,
}

/// The link stage: every symbol of `tables`, validated as it is decoded, into a table with its
/// index, imports resolved through `resolutions`.
pub(super) fn link<'m>(
    tables: ModuleTables<'m>,
    resolutions: &mut Resolutions<'_>,
) -> Result<Linked<'m>, LoadError> {
    let count = tables.symbol_count() as usize;
    let oom = |bytes| move || LoadError::OutOfMemory { bytes };
    let strings = tables.strings();
    // The symbol table lies in the file: `count` entries of it fit in memory.
    let names = fallible::copied(strings).ok_or_else(oom(strings.len()))?;
    let mut table = SymbolTableBuilder::new(names, count, KeyedHasher::per_process())
        .ok_or_else(oom(fallible::bytes_of::<LoadedSymbol>(count)))?;
    let mut locations: Vec<Location> =
        fallible::with_capacity(count).ok_or_else(oom(fallible::bytes_of::<Location>(count)))?;
    let mut deps: Vec<Keepalive> = Vec::new();
    let mut templates: Vec<(u32, u64)> = Vec::new();
    let mut missing = Missing::default();
    let module = tables.decode_symbols(|index, repr| {
        let location = if repr.is_import() {
            let name = strings.get(repr.name_range()).unwrap_or_default();
            match resolve(resolutions, name, repr.binding, &mut deps, &mut missing) {
                Ok(address) => Location::Outside(address),
                Err(OutOfMemory) => return Err(LoadError::OutOfMemory { bytes: name.len() }),
            }
        } else {
            Location::Inside(repr.target)
        };
        if repr.is_template() {
            fallible::push(&mut templates, (index, repr.template_offset))
                .ok_or_else(oom(fallible::bytes_of::<(u32, u64)>(templates.len().saturating_add(1))))?;
        }
        let address = match location {
            Location::Outside(address) => address,
            Location::Inside(_) => 0, // placed later
        };
        // Room was made for every symbol, and validation located each name.
        table.push(loaded_symbol(&repr, address), repr.size).ok_or_else(LoadError::internal)?;
        locations.push(location);
        Ok(())
    })?;
    missing.into_error(resolutions.resolver())?;
    Ok(Linked { module, symbols: table.finish(), locations, deps, templates })
}

impl<'m> Linked<'m> {
    /// The module's own symbols given the addresses their values name in the image placed at
    /// `placed`, and every symbol's [`Target`].
    pub(super) fn place(self, placed: &PlacedImage<'_>) -> Result<Placed<'m>, LoadError> {
        let Linked { module, mut symbols, locations, deps, templates } = self;
        let count = locations.len();
        let mut targets: Vec<Target> = fallible::with_capacity(count)
            .ok_or(LoadError::OutOfMemory { bytes: fallible::bytes_of::<Target>(count) })?;
        for location in &locations {
            let target = match *location {
                Location::Outside(address) => {
                    Target { address: Some(address), stub: StubSlot::Allowed, got: None }
                }
                Location::Inside(target) => {
                    Target { address: placed.address(target)?, stub: StubSlot::Never, got: None }
                }
            };
            targets.push(target);
        }
        symbols.set_addresses(targets.iter().map(Target::address_or_zero)).ok_or_else(LoadError::internal)?;
        Ok(Placed { module, symbols, targets, deps, templates })
    }
}

/// What the symbol table keeps of `repr`, at `address` (its name's hash left to the table).
/// Templates and symbols without an address are not exported.
#[inline(always)]
fn loaded_symbol(repr: &SymbolRepr, address: usize) -> LoadedSymbol {
    let template = repr.is_template();
    let addressable = repr.kind.is_addressable() && !template;
    LoadedSymbol {
        name_start: repr.name_offset,
        name_len: repr.name_len,
        hash: 0,
        kind: repr.kind,
        binding: repr.binding,
        addr: address,
        exported: repr.is_exported() && addressable,
        template,
    }
}

/// The address of the import `name` (0 for an unresolved weak import), keeping its owner alive
/// through `deps`; an unresolved strong import is added to `missing` (and gets address 0: the
/// load fails once every symbol is linked).
#[inline(never)]
fn resolve(
    resolutions: &mut Resolutions<'_>,
    name: &[u8],
    binding: Binding,
    deps: &mut Vec<Keepalive>,
    missing: &mut Missing,
) -> Result<usize, OutOfMemory> {
    let asked = resolutions.resolve(name)?;
    Ok(match asked.resolved {
        Some(found) => {
            if let Some(owner) = found.keepalive {
                if !deps.iter().any(|d| Arc::ptr_eq(d, &owner)) {
                    fallible::push(deps, owner).ok_or(OutOfMemory)?;
                }
            }
            found.addr
        }
        None if binding == Binding::Weak => 0,
        None => {
            if asked.first_time {
                missing.add(name)?;
            }
            0
        }
    })
}

/// The strong imports nothing resolved, collected while linking so that one error names them
/// all: the first [`Missing::LISTED`] names and how many there are.
#[derive(Debug, Default)]
struct Missing {
    names: Vec<alloc::string::String>,
    count: usize,
}

impl Missing {
    /// Names listed in the error; the others are counted.
    const LISTED: usize = 16;

    /// One more import (a name not added before) that nothing resolved.
    fn add(&mut self, name: &[u8]) -> Result<(), OutOfMemory> {
        self.count += 1;
        if self.names.len() < Self::LISTED {
            let name = super::error::lossy(name);
            fallible::push(&mut self.names, name).ok_or(OutOfMemory)?;
        }
        Ok(())
    }

    /// The error naming them, if there are any.
    fn into_error(self, resolver: &dyn super::Resolver) -> Result<(), LoadError> {
        match self.count {
            0 => Ok(()),
            count => Err(LoadError::unresolved(self.names, count, resolver)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::TableResolver;
    use crate::write::{ModuleBuilder, SectionSpec, SymbolSpec};
    use crate::{Dialect, ParseOptions, SectionType, SymbolKind};

    #[test]
    fn symbols_are_placed_resolved_and_indexed_in_table_order() {
        let mut b = ModuleBuilder::new(Dialect::S128);
        b.add_code(b".text", &[0xC3; 32]);
        b.add_section(SectionSpec::new(SectionType::Data, b".data", 3, alloc::vec![0; 16], 8));
        b.add_symbol(SymbolSpec::function(b"f", 8, 4));
        b.add_symbol(SymbolSpec::import(b"host"));
        b.add_symbol(SymbolSpec::data(b"counter", 1, 4, 8));
        b.add_symbol(SymbolSpec::import(b"maybe").with_binding(Binding::Weak));
        let file = b.build().unwrap();
        let tables = ModuleTables::check(&file, &ParseOptions::default()).unwrap();
        let resolver = TableResolver(&[(b"host", 0x7777)]);
        let linked = link(tables, &mut Resolutions::new(&resolver)).unwrap();
        assert_eq!(linked.module.import_count(), 2);
        assert_eq!(linked.symbols.get(1).map(|s| s.addr), Some(0x7777), "imports resolve while linking");
        let sections = [PlacedSection { index: 1, addr: 0x20_0000 }];
        let placed = PlacedImage { code: 0x10_0000, sections: &sections };
        let linked = linked.place(&placed).unwrap();

        let addresses: Vec<_> = linked.targets.iter().map(|t| t.address).collect();
        assert_eq!(addresses, [Some(0x10_0008), Some(0x7777), Some(0x20_0004), Some(0)]);
        let stubs: Vec<_> = linked.targets.iter().map(|t| t.stub).collect();
        assert_eq!(stubs, [StubSlot::Never, StubSlot::Allowed, StubSlot::Never, StubSlot::Allowed]);
        assert_eq!(linked.symbols.lookup(b"f").map(|s| s.addr), Some(0x10_0008));
        assert_eq!(
            linked.symbols.lookup(b"counter").map(|s| (s.addr, s.kind)),
            Some((0x20_0004, SymbolKind::Data))
        );
        assert!(linked.symbols.lookup(b"host").is_none(), "imports are not exported");
        assert_eq!(linked.symbols.get(1).map(|s| s.addr), Some(0x7777));
        assert_eq!(linked.symbols.size(2), Some(8));
    }

    #[test]
    fn an_unresolved_strong_import_is_named() {
        let mut b = ModuleBuilder::new(Dialect::R96);
        b.add_code(b".text", &[0xC3; 4]);
        b.add_symbol(SymbolSpec::import(b"nowhere"));
        let file = b.build().unwrap();
        let tables = ModuleTables::check(&file, &ParseOptions::default()).unwrap();
        let error = link(tables, &mut Resolutions::new(&())).err().unwrap();
        assert!(
            matches!(&error, LoadError::Unresolved { names, count: 1, .. } if names == &["nowhere"]),
            "{error:?}"
        );
    }

    #[test]
    fn every_unresolved_import_is_counted_and_the_first_named_once_each() {
        let mut b = ModuleBuilder::new(Dialect::S128);
        b.add_code(b".text", &[0xC3; 4]);
        let names: Vec<alloc::string::String> = (0..20).map(|i| alloc::format!("missing{i}")).collect();
        for name in &names {
            b.add_symbol(SymbolSpec::import(name.as_bytes()));
            b.add_symbol(SymbolSpec::import(b"found"));
        }
        b.add_symbol(SymbolSpec::import(b"missing0")); // once more: still one name
        b.add_symbol(SymbolSpec::import(b"optional").with_binding(Binding::Weak));
        let file = b.build().unwrap();
        let tables = ModuleTables::check(&file, &ParseOptions::default()).unwrap();
        let resolver = TableResolver(&[(b"found", 0x7777)]);
        let error = link(tables, &mut Resolutions::new(&resolver)).err().unwrap();
        let LoadError::Unresolved { names: listed, count, .. } = &error else { panic!("{error:?}") };
        assert_eq!(*count, 20);
        assert_eq!(listed.as_slice(), &names[..Missing::LISTED]);
        let message = alloc::string::ToString::to_string(&error);
        assert!(message.starts_with("20 unresolved imports: `missing0`, `missing1`, "), "{message}");
        assert!(message.contains("`missing15` and 4 more (looked in: "), "{message}");
    }

    #[test]
    fn a_data_symbol_in_a_section_that_was_not_placed_is_an_internal_error() {
        let placed = PlacedImage { code: 0x1000, sections: &[] };
        let target = SymbolTarget::Data { section: 3, offset: 0 };
        assert_eq!(placed.address(target), Err(LoadError::Internal));
        assert_eq!(placed.address(SymbolTarget::Code(usize::MAX as u64)), Err(LoadError::TooLarge));
    }
}
