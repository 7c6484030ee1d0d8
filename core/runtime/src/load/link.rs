//! The link stage of a load: the module's symbols, handed over one by one as validation
//! decodes them ([`ModuleTables::decode_symbols`]), go into the [`SymbolTable`] (names hashed
//! and indexed) with imports resolved, before anything is allocated (the layout needs the
//! number of imports). Each of the module's own symbols is located then, as an offset in a
//! region of the image (the code, the read-only data, the writable data: the data layout is
//! the module's, known before allocation); once the image is placed, [`Linked::place`] adds
//! each region's address, and works out where relocations against each symbol point (its
//! [`Target`]). Branch stubs and GOT slots are not planned here: the image has room for the
//! most a module can need ([`super::layout::Layout::plan`]), and the relocation stage hands
//! them out as relocations ask for them.

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::resolutions::{OutOfMemory, Resolutions};
use super::symtab::{LoadedSymbol, Refused, SymbolTable, SymbolTableBuilder};
use super::target::{Region, RegionBases, Target, Whose};
use super::{fallible, HashedName, Invariant, Keepalive, LoadError, Overflow};
use crate::lru::KeyedHasher;
use smf_format::module::{DataRegion, ModuleSymbols, ModuleTables, SymbolRepr, SymbolTarget};
use smf_format::Binding;

/// Each data section's place in its region, by section index (`None` for other sections): the
/// module's data layout, looked up once per data symbol.
struct SectionPlaces(Vec<Option<(Region, u64)>>);

impl SectionPlaces {
    /// The places of `tables`' data sections.
    fn of(tables: &ModuleTables<'_>) -> Option<Self> {
        let count = tables.header().section_count as usize;
        let mut places = fallible::filled(None, count)?;
        for placement in tables.data_sections() {
            let region = match placement.region {
                DataRegion::ReadOnly => Region::ReadOnly,
                DataRegion::ReadWrite => Region::Writable,
            };
            *places.get_mut(placement.section.index as usize)? = Some((region, placement.offset));
        }
        Some(SectionPlaces(places))
    }

    /// Where relocations against a symbol whose value addresses `target` (a validated
    /// symbol's) point: a region and an offset in it.
    #[inline(always)]
    fn locate(&self, target: SymbolTarget) -> Result<Target, LoadError> {
        let size = |offset: u64, what| usize::try_from(offset).map_err(|_| LoadError::too_large(what));
        Ok(match target {
            SymbolTarget::Code(offset) => Target::unplaced(Region::Code, size(offset, Overflow::CodeOffset)?),
            SymbolTarget::Data { section, offset } => {
                let place = self.0.get(section as usize).copied().flatten();
                let (region, start) =
                    place.ok_or_else(|| LoadError::internal(Invariant::DataSymbolOutsideData))?;
                let offset =
                    start.checked_add(offset).ok_or_else(|| LoadError::too_large(Overflow::DataOffset))?;
                Target::unplaced(region, size(offset, Overflow::DataOffset)?)
            }
            SymbolTarget::None => Target::NOTHING,
        })
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
    /// Per symbol, in table order: where relocations against it point (the module's own
    /// symbols [`Whose::Unplaced`]).
    targets: Vec<Target>,
    /// The modules its imports resolved into.
    deps: Vec<Keepalive>,
    /// Each template symbol's index and template-code offset, in table order.
    templates: Vec<(u32, u64)>,
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
    resolutions: &mut Resolutions<'_, 'm>,
) -> Result<Linked<'m>, LoadError> {
    let count = tables.symbol_count() as usize;
    let oom = |bytes| move || LoadError::OutOfMemory { bytes };
    let strings = tables.strings();
    // The symbol table lies in the file: `count` entries of it fit in memory.
    let names = fallible::copied(strings).ok_or_else(oom(strings.len()))?;
    let hasher = KeyedHasher::per_process();
    let mut table = SymbolTableBuilder::new(names, count, hasher)
        .ok_or_else(oom(fallible::bytes_of::<LoadedSymbol>(count)))?;
    let mut targets: Vec<Target> =
        fallible::with_capacity(count).ok_or_else(oom(fallible::bytes_of::<Target>(count)))?;
    let mut deps: Vec<Keepalive> = Vec::new();
    let mut templates: Vec<(u32, u64)> = Vec::new();
    let mut missing = Missing::default();
    let places = SectionPlaces::of(&tables).ok_or_else(oom(fallible::bytes_of::<Option<(Region, u64)>>(
        tables.header().section_count as usize,
    )))?;
    let module = tables.decode_symbols(|index, repr| {
        let target = if repr.is_import() {
            let name = strings.get(repr.name_range()).unwrap_or_default();
            // The name, validated, lies in the string table: hashed there, once.
            let from = strings.get(repr.name_range().start..).unwrap_or_default();
            let name = HashedName::hashed(name, hasher.hash32_within(from, name.len()));
            match resolve(resolutions, name, repr.binding, &mut deps, &mut missing) {
                Ok(address) => Target::import(address),
                Err(OutOfMemory) => return Err(LoadError::OutOfMemory { bytes: name.bytes().len() }),
            }
        } else {
            places.locate(repr.target)?
        };
        if repr.is_template() {
            fallible::push(&mut templates, (index, repr.template_offset))
                .ok_or_else(oom(fallible::grown_bytes::<(u32, u64)>(templates.len())))?;
        }
        let address = match target.whose {
            Whose::Import => target.address,
            _ => 0, // the module's own: given its address once placed
        };
        // Room was made for every symbol, and validation located each name.
        table.push(loaded_symbol(&repr, address), repr.size).map_err(|refused| match refused {
            Refused::OutOfMemory => LoadError::OutOfMemory { bytes: fallible::bytes_of::<(usize, u64)>(1) },
            Refused::Full | Refused::NameOutside => LoadError::internal(Invariant::SymbolTableFull),
        })?;
        targets.push(target);
        Ok(())
    })?;
    missing.into_error(resolutions.resolver())?;
    Ok(Linked { module, symbols: table.finish(), targets, deps, templates })
}

impl<'m> Linked<'m> {
    /// The module's own symbols given their addresses in the image whose regions start at
    /// `bases`, and every symbol's [`Target`].
    pub(super) fn place(self, bases: &RegionBases) -> Result<Placed<'m>, LoadError> {
        let Linked { module, mut symbols, mut targets, deps, templates } = self;
        let mut addresses = symbols.addresses_mut();
        if addresses.len() != targets.len() {
            return Err(LoadError::internal(Invariant::TargetsMismatch));
        }
        for (target, address) in targets.iter_mut().zip(&mut addresses) {
            if let Whose::Unplaced(region) = target.whose {
                target.address = bases
                    .address(region, target.address)
                    .ok_or_else(|| LoadError::too_large(region.address_overflow()))?;
                target.whose = Whose::Own;
                *address = target.address;
            }
        }
        drop(addresses);
        Ok(Placed { module, symbols, targets, deps, templates })
    }
}

/// What the symbol table keeps of `repr`, at `address`.
/// Templates and symbols without an address are not exported.
#[inline(always)]
fn loaded_symbol(repr: &SymbolRepr, address: usize) -> LoadedSymbol {
    let template = repr.is_template();
    let addressable = repr.kind.is_addressable() && !template;
    LoadedSymbol {
        name_start: repr.name_offset,
        name_len: repr.name_len,
        size: 0, // the table's to set
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
fn resolve<'n>(
    resolutions: &mut Resolutions<'_, 'n>,
    name: HashedName<'n>,
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
                missing.add(name.bytes())?;
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
    use smf_format::write::{ModuleBuilder, SectionSpec, SymbolSpec};
    use smf_format::{Dialect, ParseOptions, SectionFlags, SectionType, SymbolKind};

    #[test]
    fn symbols_are_placed_resolved_and_indexed_in_table_order() {
        let mut b = ModuleBuilder::new(Dialect::S128);
        b.add_code(b".text", &[0xC3; 32]);
        let flags = SectionFlags::READ | SectionFlags::WRITE;
        b.add_section(SectionSpec::new(SectionType::Data, b".data", flags, alloc::vec![0; 16], 8));
        b.add_symbol(SymbolSpec::function(b"f", 8, 4));
        b.add_symbol(SymbolSpec::import(b"host"));
        b.add_symbol(SymbolSpec::data(b"counter", 1, 4, 8));
        b.add_symbol(SymbolSpec::import(b"maybe").with_binding(Binding::Weak));
        let file = b.build().unwrap();
        let tables = ModuleTables::check(&file, &ParseOptions::default()).unwrap();
        let resolver = TableResolver(&[(b"host", 0x7777)]);
        let linked = link(tables, &mut Resolutions::new(&resolver, tables.symbol_count() as usize)).unwrap();
        assert_eq!(linked.module.import_count(), 2);
        assert_eq!(linked.symbols.get(1).map(|s| s.addr), Some(0x7777), "imports resolve while linking");
        let bases = RegionBases { code: 0x10_0000, read_only: 0x18_0000, writable: 0x20_0000 };
        let linked = linked.place(&bases).unwrap();

        let addresses: Vec<_> = linked.targets.iter().map(|t| t.address).collect();
        assert_eq!(addresses, [0x10_0008, 0x7777, 0x20_0004, 0]);
        let whose: Vec<_> = linked.targets.iter().map(|t| t.whose).collect();
        assert_eq!(whose, [Whose::Own, Whose::Import, Whose::Own, Whose::Import]);
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
        let error = link(tables, &mut Resolutions::new(&(), tables.symbol_count() as usize)).err().unwrap();
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
        let error =
            link(tables, &mut Resolutions::new(&resolver, tables.symbol_count() as usize)).err().unwrap();
        let LoadError::Unresolved { names: listed, count, .. } = &error else { panic!("{error:?}") };
        assert_eq!(*count, 20);
        assert_eq!(listed.as_slice(), &names[..Missing::LISTED]);
        let message = alloc::string::ToString::to_string(&error);
        assert!(message.starts_with("20 unresolved imports: `missing0`, `missing1`, "), "{message}");
        assert!(message.contains("`missing15` and 4 more (looked in: "), "{message}");
    }

    #[test]
    fn a_data_symbol_in_a_section_that_is_not_data_is_an_internal_error() {
        let places = SectionPlaces(alloc::vec![None, Some((Region::Writable, 16))]);
        let target = |section| SymbolTarget::Data { section, offset: 4 };
        assert_eq!(places.locate(target(1)), Ok(Target::unplaced(Region::Writable, 20)));
        let outside = Err(LoadError::Internal(Invariant::DataSymbolOutsideData));
        assert_eq!(places.locate(target(0)), outside, "not a data section");
        assert_eq!(places.locate(target(3)), outside, "no such section");
        let far = SymbolTarget::Data { section: 1, offset: u64::MAX };
        let too_large = Err(LoadError::TooLarge(Overflow::DataOffset));
        assert_eq!(places.locate(far), too_large, "an offset past the end of memory");
        let bases = RegionBases { code: usize::MAX, read_only: 0, writable: 0 };
        assert_eq!(bases.address(Region::Code, 1), None);
    }
}
