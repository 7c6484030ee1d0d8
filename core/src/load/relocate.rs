//! Applying a module's relocations to its placed code: one validating pass over the relocation
//! entries, computed with [`reloc::apply`].
//!
//! The pass is the hottest loop of a load, so it reads each 24-byte entry's fields directly and
//! makes exactly the checks [`Module::decode_relocation`] makes (kind defined in the dialect,
//! symbol index in range, patched bytes within the code), plus the loader's own (the symbol
//! has an address, the result fits). It runs with [`Quiet`] failures and, only if that fails,
//! again with [`LoadError`]; the detailed run asks `decode_relocation` for the exact error of
//! the entry that failed (see [`super::failure`]).

use super::failure::{Failure, Quiet};
use super::reloc::{self, RelocInput};
use super::symtab::SymbolTable;
use super::LoadError;
use crate::module::Relocation;
use crate::wire::relocation::{entry_fields, RELOCATION_ENTRY_SIZE};
use crate::{Module, RelocKind};

/// Where relocations against one symbol point once the image is placed. Plain addresses with
/// sentinels (not `Option`s) keep the per-symbol array small for the relocation loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Target {
    /// The symbol's address, or [`Target::NO_ADDRESS`] for symbols without one (types,
    /// traits, templates). An unresolved weak import has address 0.
    pub(super) symbol: usize,
    /// Its branch stub's address, or [`Target::NO_SLOT`].
    pub(super) stub: usize,
    /// Its GOT slot's address, or [`Target::NO_SLOT`].
    pub(super) got: usize,
}

impl Target {
    /// [`Target::symbol`] of a symbol without an address.
    pub(super) const NO_ADDRESS: usize = usize::MAX;
    /// [`Target::stub`] or [`Target::got`] of a symbol without one (slots live in the image,
    /// never at address 0).
    pub(super) const NO_SLOT: usize = 0;

    /// The symbol's address, 0 if it has none (what its GOT slot or stub holds).
    pub(super) const fn address_or_zero(&self) -> usize {
        if self.symbol == Self::NO_ADDRESS {
            0
        } else {
            self.symbol
        }
    }
}

/// What the relocation pass needs besides the module and the code.
pub(super) struct Relocator<'t> {
    /// Address of the first byte of the code.
    pub(super) code_base: usize,
    /// Per symbol, in table order.
    pub(super) targets: &'t [Target],
    /// Names for error messages.
    pub(super) names: &'t SymbolTable,
    /// Route branches through stubs even when the target is within reach.
    pub(super) force_stubs: bool,
}

impl Relocator<'_> {
    /// Validates and applies every relocation of `module` to `code` (its placed code, which
    /// starts at `code_base`), reporting the first failure precisely.
    pub(super) fn apply_all(&self, module: &Module<'_>, code: &mut [u8]) -> Result<(), LoadError> {
        match self.apply_all_as::<Quiet>(module, code) {
            Ok(()) => Ok(()),
            // Deterministic: the detailed run fails where the quiet one did.
            Err(Quiet) => self.apply_all_as::<LoadError>(module, code),
        }
    }

    fn apply_all_as<F: Failure>(&self, module: &Module<'_>, code: &mut [u8]) -> Result<(), F> {
        // The symbol check below is `decode_relocation`'s `symbol < symbol_count`.
        if self.targets.len() != module.symbol_count() as usize {
            return Err(F::inconsistent());
        }
        let code_size = module.code_size();
        // Patched bytes lie in the module's code (not its stubs): with `code` cut to that
        // length, the check below also proves every write in bounds.
        let code = code
            .get_mut(..usize::try_from(code_size).map_err(|_| F::inconsistent())?)
            .ok_or_else(F::inconsistent)?;
        let kinds = RelocKind::wire_table(module.dialect());
        module.for_each_relocation_table(|entries, first, at| {
            for (i, entry) in (0u64..).zip(entries) {
                let (offset, symbol, wire, addend) = entry_fields(entry);
                let failed =
                    || Entry { module, index: first + i, entry, at: at + i * RELOCATION_ENTRY_SIZE as u64 };
                let Some(kind) = kinds[usize::from(wire)] else {
                    return Err(failed().format_error());
                };
                if kind == RelocKind::None {
                    continue;
                }
                let Some(target) = self.targets.get(symbol as usize) else {
                    return Err(failed().format_error());
                };
                if offset.checked_add(kind.width()).is_none_or(|end| end > code_size) {
                    return Err(failed().format_error());
                }
                if target.symbol == Target::NO_ADDRESS {
                    return Err(failed().relocation(|r| F::no_address(r, self.names)));
                }
                let offset = usize::try_from(offset).map_err(|_| F::inconsistent())?;
                let place = self.code_base.wrapping_add(offset) as u64;
                let site = code.get_mut(offset..).ok_or_else(F::inconsistent)?;
                // The kinds of nearly every x86-64 relocation inline, the others out of line.
                let applied = match kind {
                    RelocKind::Pc32 => reloc::pc32(site, target.symbol as u64, addend, place),
                    RelocKind::Plt32 => {
                        reloc::pc32(site, self.branch_to(kind, target, addend, place), addend, place)
                    }
                    RelocKind::Abs64 => reloc::abs64(site, target.symbol as u64, addend),
                    _ => self.apply_other(kind, site, target, addend, place),
                };
                if let Err(error) = applied {
                    return Err(failed().relocation(|r| F::relocation(r, self.names, error)));
                }
            }
            Ok(())
        })
    }

    /// Where a branch of `kind` at `place` goes: its symbol, or the symbol's stub if it has one
    /// and the symbol is out of the branch's reach (or stubs are forced).
    #[inline(always)]
    fn branch_to(&self, kind: RelocKind, target: &Target, addend: i64, place: u64) -> u64 {
        let symbol = target.symbol as u64;
        if target.stub != Target::NO_SLOT
            && (self.force_stubs || !reloc::branch_reaches(kind, symbol, addend, place))
        {
            target.stub as u64
        } else {
            symbol
        }
    }

    /// The kinds the loop does not inline: everything [`reloc::apply`] computes.
    #[inline(never)]
    fn apply_other(
        &self,
        kind: RelocKind,
        site: &mut [u8],
        target: &Target,
        addend: i64,
        place: u64,
    ) -> Result<(), reloc::RelocError> {
        let got = (target.got != Target::NO_SLOT).then_some(target.got as u64);
        let symbol = self.branch_to(kind, target, addend, place);
        reloc::apply(kind, site, RelocInput { symbol, addend, place, got })
    }
}

/// A relocation entry that failed, for building the failure (off the hot path).
struct Entry<'m, 'a> {
    module: &'m Module<'a>,
    index: u64,
    entry: &'m [u8; RELOCATION_ENTRY_SIZE],
    at: u64,
}

impl Entry<'_, '_> {
    /// The format error `decode_relocation` reports for the entry.
    #[cold]
    fn format_error<F: Failure>(&self) -> F {
        match self.module.decode_relocation(self.index, self.entry, self.at) {
            Err(e) => F::from(e),
            Ok(_) => F::inconsistent(), // both check the same things
        }
    }

    /// A failure of the decoded relocation.
    #[cold]
    fn relocation<F: Failure>(&self, failure: impl FnOnce(&Relocation) -> F) -> F {
        match self.module.decode_relocation(self.index, self.entry, self.at) {
            Ok(r) => failure(&r),
            Err(e) => F::from(e),
        }
    }
}
