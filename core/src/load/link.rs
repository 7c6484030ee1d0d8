//! The symbol side of a load, in three passes that each keep little state (they are the
//! loader's hot loops, and run as separate functions so that each compiles to a tight loop):
//!
//! 1. [`link_symbols`]: every symbol decoded and validated, into the [`SymbolTable`] and its
//!    index; imports resolved.
//! 2. [`plan_slots`]: which symbols need a branch stub or a GOT slot, from the relocation kinds
//!    (only kinds and symbol indices are read; relocations are validated when applied).
//! 3. [`place_symbols`]: once the image is placed, every symbol's address, its stub's and its
//!    GOT slot's.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use super::failure::{Failure, Quiet};
use super::relocate::Target;
use super::symtab::{LoadedSymbol, NewSymbol, SymbolTable};
use super::{Keepalive, LoadError, Resolver};
use crate::fnv::fnv1a_until_nul;
use crate::module::{SymbolCore, SymbolTarget};
use crate::{Binding, Module, RelocKind, SymbolKind};

/// "No slot" for [`Link::stub`] and [`Link::got`].
pub(super) const NONE: u32 = u32::MAX;

/// Where a symbol's address comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Address {
    /// The module's own code or data (or nothing: types, traits, templates).
    Own(SymbolTarget),
    /// A resolved import's address (0 for an unresolved weak import).
    Import(usize),
}

/// What the loader needs of a symbol once its name is in the table.
#[derive(Clone, Copy, Debug)]
pub(super) struct Link {
    /// Where its address comes from.
    pub(super) address: Address,
    /// Whether it gets an address in the symbol table (function, data or constant, not a
    /// template).
    pub(super) addressable: bool,
    /// The branch kind its stub is written for.
    pub(super) stub_kind: RelocKind,
    /// Its branch stub (for branches to imports), or [`NONE`].
    pub(super) stub: u32,
    /// Its GOT slot (for GOT-relative relocations), or [`NONE`].
    pub(super) got: u32,
}

impl Link {
    /// A symbol with no address, stub or GOT slot yet.
    const UNPLACED: Link = Link {
        address: Address::Own(SymbolTarget::None),
        addressable: false,
        stub_kind: RelocKind::None,
        stub: NONE,
        got: NONE,
    };
}

/// The symbols of a module being loaded.
pub(super) struct Linked {
    /// Names, kinds and the hash index (addresses filled in by [`place_symbols`]).
    pub(super) symbols: SymbolTable,
    /// Per symbol, in table order.
    pub(super) links: Vec<Link>,
    /// The modules its imports resolved into.
    pub(super) deps: Vec<Keepalive>,
}

/// Pass 1: decodes and validates every symbol into a table with its index, resolving imports
/// through `resolver`. The counts are bounded by the file's size (validated), so the vectors are.
pub(super) fn link_symbols(module: &Module<'_>, resolver: &dyn Resolver) -> Result<Linked, LoadError> {
    match link_symbols_as::<Quiet>(module, resolver) {
        Ok(linked) => Ok(linked),
        // Deterministic: the detailed run fails where the quiet one did.
        Err(Quiet) => link_symbols_as::<LoadError>(module, resolver),
    }
}

#[inline(never)]
fn link_symbols_as<F: Failure>(module: &Module<'_>, resolver: &dyn Resolver) -> Result<Linked, F> {
    let count = module.symbol_count() as usize;
    let strings = module.strings();
    // Pre-sized and written in place (no capacity check per symbol); the index is built after.
    let mut table = vec![LoadedSymbol::UNSET; count];
    let mut links = vec![Link::UNPLACED; count];
    let mut deps: Vec<Keepalive> = Vec::new();
    let mut entries = module.symbol_entries();
    for (index, (loaded, link)) in (0..module.symbol_count()).zip(table.iter_mut().zip(&mut links)) {
        // The quiet run decodes plain symbols on a fast path, which leaves finding where their
        // names end to the measuring below; everything else is decoded in full.
        let plain = entries.next().filter(|_| !F::DETAILED).and_then(|view| module.plain_symbol(&view));
        let sym = match plain {
            Some(sym) => sym,
            None => SymbolCore::from(module.symbol_checked(index)?),
        };
        // Only the quiet run can fail here: the full decode checked the name already.
        let start = sym.name_offset as usize;
        let (len, hash) = strings.get(start..).and_then(fnv1a_until_nul).ok_or_else(F::inconsistent)?;
        let name_len = u32::try_from(len).map_err(|_| F::inconsistent())?;
        let addressable = sym.kind.is_addressable() && !sym.template;
        let symbol = NewSymbol {
            name_offset: sym.name_offset,
            kind: sym.kind,
            binding: sym.binding,
            size: sym.size,
            exported: sym.is_exported() && addressable,
            template: sym.template,
        };
        *loaded = LoadedSymbol::new(sym.name_offset, name_len, hash, &symbol);
        let address = if sym.kind == SymbolKind::Import {
            let name = &strings[start..start + len];
            Address::Import(
                resolve(resolver, name, sym.binding, &mut deps).ok_or_else(|| F::unresolved(name))?,
            )
        } else {
            Address::Own(sym.target)
        };
        *link = Link { address, addressable, ..Link::UNPLACED };
    }
    let symbols = SymbolTable::from_parts(strings.to_vec(), table).ok_or_else(F::inconsistent)?;
    Ok(Linked { symbols, links, deps })
}

/// The address of the import `name` (0 for an unresolved weak import), keeping its owner alive
/// through `deps`; `None` if it is unresolved.
#[inline(never)]
fn resolve(
    resolver: &dyn Resolver,
    name: &[u8],
    binding: Binding,
    deps: &mut Vec<Keepalive>,
) -> Option<usize> {
    match resolver.resolve(name) {
        Some(found) => {
            if let Some(owner) = found.keepalive {
                if !deps.iter().any(|d| Arc::ptr_eq(d, &owner)) {
                    deps.push(owner);
                }
            }
            Some(found.addr)
        }
        None if binding == Binding::Weak => Some(0),
        None => None,
    }
}

/// How many stubs and GOT slots a module needs.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Slots {
    /// Branch stubs (one per import some branch calls).
    pub(super) stubs: u32,
    /// GOT slots (one per symbol a GOT-relative relocation names).
    pub(super) gots: u32,
}

/// Pass 2: numbers the stubs and GOT slots of `links` from the relocation kinds.
#[inline(never)]
pub(super) fn plan_slots(module: &Module<'_>, links: &mut [Link]) -> Result<Slots, LoadError> {
    let mut slots = Slots::default();
    module.for_each_relocation_unchecked(|kind, symbol| match kind {
        RelocKind::Plt32 | RelocKind::Aarch64Branch26 => {
            if let Some(link) = links.get_mut(symbol as usize) {
                if matches!(link.address, Address::Import(_)) && link.stub == NONE {
                    link.stub = slots.stubs;
                    link.stub_kind = kind;
                    slots.stubs += 1;
                }
            }
        }
        RelocKind::GotPc32 | RelocKind::Aarch64GotPage21 | RelocKind::Aarch64GotPageOffset12 => {
            if let Some(link) = links.get_mut(symbol as usize) {
                if link.got == NONE {
                    link.got = slots.gots;
                    slots.gots += 1;
                }
            }
        }
        _ => {}
    })?;
    Ok(slots)
}

/// Where the parts of a placed image start.
#[derive(Clone, Copy, Debug)]
pub(super) struct Placed<'s> {
    /// The code.
    pub(super) code: usize,
    /// The first branch stub.
    pub(super) stubs: usize,
    /// The first GOT slot.
    pub(super) got: usize,
    /// Each data section's address, by section index.
    pub(super) sections: &'s [(u32, usize)],
}

/// Pass 3: every symbol's address (also written into `symbols`), its stub's and its GOT slot's.
/// Fails only if an address does not fit (which a validated module, placed in memory it
/// occupies, rules out).
#[inline(never)]
pub(super) fn place_symbols(
    links: &[Link],
    symbols: &mut SymbolTable,
    placed: &Placed<'_>,
) -> Result<Vec<Target>, LoadError> {
    // Sums that overflow are noted and reported after: the targets are collected from an
    // exact-size iterator, with no capacity check per symbol.
    let mut overflow = false;
    let mut at = |base: usize, offset: u64| {
        let sum = usize::try_from(offset).ok().and_then(|o| base.checked_add(o));
        overflow |= sum.is_none();
        sum.unwrap_or(0)
    };
    let targets = links
        .iter()
        .zip(symbols.symbols_mut())
        .map(|(link, symbol)| {
            let addr = match link.address {
                Address::Own(SymbolTarget::Code(offset)) => Some(at(placed.code, offset)),
                Address::Own(SymbolTarget::Data { section, offset }) => {
                    let base = placed.sections.iter().find(|(s, _)| *s == section).map(|&(_, a)| a);
                    base.map(|base| at(base, offset))
                }
                Address::Import(addr) => Some(addr),
                Address::Own(SymbolTarget::None) => None,
            };
            if link.addressable {
                symbol.addr = addr.unwrap_or(0);
            }
            let mut slot = |start: usize, index: u32, size: usize| {
                if index == NONE {
                    Target::NO_SLOT
                } else {
                    at(start, u64::from(index) * size as u64)
                }
            };
            Target {
                symbol: addr.unwrap_or(Target::NO_ADDRESS),
                stub: slot(placed.stubs, link.stub, super::STUB_SIZE),
                got: slot(placed.got, link.got, 8),
            }
        })
        .collect();
    if overflow {
        return Err(LoadError::TooLarge);
    }
    Ok(targets)
}
