//! Applying a module's relocations to its placed code: one validating pass over the relocation
//! entries, each checked as [`Module`] validation checks it, then computed with [`reloc::apply`].
//!
//! The pass is the hottest loop of a load: it runs with [`Quiet`] failures and, only if that
//! fails, again with [`LoadError`] to say precisely which relocation failed and why (see
//! [`super::failure`]).

use super::failure::{Failure, Quiet};
use super::reloc::{self, RelocInput};
use super::symtab::SymbolTable;
use super::LoadError;
use crate::module::Relocation;
use crate::wire::relocation::RELOCATION_ENTRY_SIZE;
use crate::{Module, RelocKind};

/// Where relocations against one symbol point once the image is placed.
#[derive(Clone, Copy, Debug)]
pub(super) struct Target {
    /// The symbol's address (`None` for symbols without one: types, traits, templates).
    pub(super) symbol: Option<usize>,
    /// Its branch stub's address, if it has one.
    pub(super) stub: Option<usize>,
    /// Its GOT slot's address, if it has one.
    pub(super) got: Option<usize>,
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
        module.for_each_relocation_table(|entries, first, at| {
            for (i, entry) in (0u64..).zip(entries) {
                let r = module
                    .decode_relocation(first + i, entry, at + i * RELOCATION_ENTRY_SIZE as u64)
                    .map_err(F::from)?;
                self.apply_one::<F>(&r, code)?;
            }
            Ok(())
        })
    }

    #[inline(always)]
    fn apply_one<F: Failure>(&self, r: &Relocation, code: &mut [u8]) -> Result<(), F> {
        if r.kind == RelocKind::None {
            return Ok(());
        }
        // Validation guarantees the symbol index and that the patched bytes lie in the code.
        let target = self.targets.get(r.symbol as usize).ok_or_else(F::inconsistent)?;
        let symbol = target.symbol.ok_or_else(|| F::no_address(r, self.names))?;
        let offset = usize::try_from(r.offset).map_err(|_| F::inconsistent())?;
        let place = (self.code_base + offset) as u64;
        let to = match target.stub {
            Some(stub)
                if self.force_stubs || !reloc::branch_reaches(r.kind, symbol as u64, r.addend, place) =>
            {
                stub
            }
            _ => symbol,
        };
        let input =
            RelocInput { symbol: to as u64, addend: r.addend, place, got: target.got.map(|g| g as u64) };
        let site = code.get_mut(offset..).ok_or_else(F::inconsistent)?;
        reloc::apply(r.kind, site, input).map_err(|error| F::relocation(r, self.names, error))
    }
}
