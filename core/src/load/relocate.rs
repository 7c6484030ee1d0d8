//! Applying a module's relocations to its placed code: one validating pass over the relocation
//! entries, computed with [`reloc::apply`].
//!
//! The pass is the hottest loop of a load, so it reads each 24-byte entry's fields directly and
//! applies the rules [`Module::decode_relocation`] applies, from their one home each: the kind
//! from [`RelocKind::wire_table`] (which tabulates `RelocKind::from_wire`), the patched bytes
//! from [`relocation_site`], the symbol index against a table of one target per symbol. To
//! those it adds the loader's own checks (the symbol has an address, the result fits). A
//! failure stops the loop recording only the failing entry ([`Stop`]); the precise error is
//! worked out afterwards from that entry ([`Relocator::explain`]).
//!
//! Branch stubs and GOT slots are handed out here, the first time a relocation needs one for
//! its symbol ([`Slots`]): a stub only when a branch to an import is out of reach (or stubs are
//! forced), a GOT slot for every symbol a GOT-relative relocation names.

use alloc::string::String;

use super::entries;
use super::error::lossy;
use super::reloc::{self, RelocInput};
use super::symtab::SymbolTable;
use super::{write_stub, LoadError, STUB_SIZE};
use crate::module::relocation_site;
use crate::wire::relocation::{entry_fields, RELOCATION_ENTRY_SIZE};
use crate::{Module, RelocKind};

/// Where relocations against one symbol point once the image is placed. Plain addresses with
/// sentinels (not `Option`s) keep the per-symbol array small for the relocation loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Target {
    /// The symbol's address, or [`Target::NO_ADDRESS`] for symbols without one (types,
    /// traits, templates). An unresolved weak import has address 0.
    pub(super) address: usize,
    /// Its branch stub's address; [`Target::STUB_ALLOWED`] for an import without one yet,
    /// [`Target::NO_SLOT`] for a symbol that never gets one (the module's own).
    pub(super) stub: usize,
    /// Its GOT slot's address, or [`Target::NO_SLOT`] (none yet).
    pub(super) got: usize,
}

impl Target {
    /// [`Target::address`] of a symbol without an address.
    pub(super) const NO_ADDRESS: usize = usize::MAX;
    /// [`Target::stub`] or [`Target::got`] of a symbol without one (slots live in the image,
    /// never at address 0).
    pub(super) const NO_SLOT: usize = 0;
    /// [`Target::stub`] of an import that gets a stub when a branch needs one (slots lie in
    /// the page-aligned image, never at address 1).
    pub(super) const STUB_ALLOWED: usize = 1;
    /// A symbol without an address, stub or GOT slot (yet).
    pub(super) const UNPLACED: Target =
        Target { address: Target::NO_ADDRESS, stub: Target::NO_SLOT, got: Target::NO_SLOT };

    /// The symbol's address, 0 if it has none (what its GOT slot or stub holds).
    pub(super) const fn address_or_zero(&self) -> usize {
        if self.address == Self::NO_ADDRESS {
            0
        } else {
            self.address
        }
    }
}

/// What the relocation pass needs besides the module, the code and the targets.
pub(super) struct Relocator<'t> {
    /// Address of the first byte of the code.
    pub(super) code_base: usize,
    /// Names for error messages.
    pub(super) names: &'t SymbolTable,
    /// Route branches to imports through stubs even when the target is within reach.
    pub(super) force_stubs: bool,
}

/// The image's room for branch stubs and GOT slots, handed out in order as relocations ask.
pub(super) struct Slots<'i> {
    /// The stub area (in the code block, after the code), `STUB_SIZE` bytes per stub.
    stubs: &'i mut [u8],
    /// The stub area's address.
    stubs_at: usize,
    stubs_used: usize,
    /// The GOT's address (in the read-only block) and how many slots it has.
    got_at: usize,
    got_capacity: usize,
    got_used: usize,
}

impl<'i> Slots<'i> {
    /// Room for `stubs.len() / STUB_SIZE` stubs at `stubs_at` and `got_capacity` GOT slots at
    /// `got_at`, none used.
    pub(super) fn new(stubs: &'i mut [u8], stubs_at: usize, got_at: usize, got_capacity: usize) -> Self {
        Slots { stubs, stubs_at, stubs_used: 0, got_at, got_capacity, got_used: 0 }
    }

    /// GOT slots handed out (they start at the GOT's address, 8 bytes each).
    pub(super) const fn got_used(&self) -> usize {
        self.got_used
    }

    /// `target`'s GOT slot, handed out now if it has none; `None` if the GOT is full (which
    /// the image's room for a slot per symbol, or [`super::link::got_bound`], rules out).
    #[inline(always)]
    fn got(&mut self, target: &mut Target) -> Option<usize> {
        if target.got == Target::NO_SLOT {
            if self.got_used == self.got_capacity {
                return None;
            }
            target.got = self.got_at + self.got_used * 8;
            self.got_used += 1;
        }
        Some(target.got)
    }

    /// `target`'s stub for branches of `kind`, written now if it has none; `None` if the stub
    /// area is full (which [`super::link::stub_bound`] rules out).
    fn stub(&mut self, kind: RelocKind, target: &mut Target) -> Option<usize> {
        if target.stub == Target::STUB_ALLOWED {
            let at = self.stubs_used * STUB_SIZE;
            let room = self.stubs.get_mut(at..at.checked_add(STUB_SIZE)?)?;
            write_stub(room, kind, target.address_or_zero() as u64)?;
            target.stub = self.stubs_at + at;
            self.stubs_used += 1;
        }
        Some(target.stub)
    }
}

/// Why the relocation pass stopped, at which entry. It holds only what the loop has at hand
/// anyway (the entry itself: not its index, not the relocation's error value, whose keeping
/// alone costs the loop a tenth of its instructions), is written on the way out ([`halt`]),
/// and the loop's own result carries nothing ([`Halted`]): the loop stays as tight as one that
/// cannot fail. [`Relocator::explain`] works out the precise error afterwards.
#[derive(Clone, Copy, Debug)]
enum Stop<'a> {
    /// The entry breaks a format rule: [`Module::decode_relocation`] says which.
    Format(&'a [u8; RELOCATION_ENTRY_SIZE]),
    /// The entry names a symbol without an address.
    NoAddress(&'a [u8; RELOCATION_ENTRY_SIZE]),
    /// The entry's value does not fit, or its instruction does not match.
    Relocation(&'a [u8; RELOCATION_ENTRY_SIZE]),
    /// Something validation rules out happened anyway.
    Inconsistent,
}

/// The relocation pass stopped; why is in its [`Stop`].
#[derive(Clone, Copy, Debug)]
struct Halted;

/// Records why the pass stops.
#[cold]
fn halt<'a>(stop: &mut Stop<'a>, why: Stop<'a>) -> Halted {
    *stop = why;
    Halted
}

impl Relocator<'_> {
    /// Validates and applies every relocation of `module` to `code` (its placed code, which
    /// starts at `code_base`), handing out stubs and GOT slots from `slots` and recording them
    /// in `targets` (per symbol, in table order), and reports the first failure precisely.
    pub(super) fn apply_all(
        &self,
        module: &Module<'_>,
        code: &mut [u8],
        targets: &mut [Target],
        slots: &mut Slots<'_>,
    ) -> Result<(), LoadError> {
        let mut stop = Stop::Inconsistent;
        match self.apply_each(module, code, targets, slots, &mut stop) {
            Ok(()) => Ok(()),
            Err(Halted) => Err(self.explain(module, code, targets, slots, stop)),
        }
    }

    /// The loop of [`Relocator::apply_all`]: on a failure, `stop` says where and why.
    fn apply_each<'a>(
        &self,
        module: &Module<'a>,
        code: &mut [u8],
        targets: &mut [Target],
        slots: &mut Slots<'_>,
        stop: &mut Stop<'a>,
    ) -> Result<(), Halted> {
        // The symbol check below is `decode_relocation`'s `symbol < symbol_count`.
        if targets.len() != module.symbol_count() as usize {
            return Err(Halted);
        }
        // Patched bytes lie in the module's code (not its stubs): with `code` cut to that
        // length, the site check below is `decode_relocation`'s and proves every write in bounds.
        let code_size = module.code_size();
        let code = usize::try_from(code_size).ok().and_then(|len| code.get_mut(..len)).ok_or(Halted)?;
        let kinds = RelocKind::wire_table(module.dialect());
        entries::for_each_relocation_table(module, |entries, _, _| {
            for entry in entries {
                let (offset, symbol, wire, addend) = entry_fields(entry);
                let Some(kind) = kinds[usize::from(wire)] else {
                    return Err(halt(stop, Stop::Format(entry)));
                };
                if kind == RelocKind::None {
                    continue;
                }
                let Some(target) = targets.get_mut(symbol as usize) else {
                    return Err(halt(stop, Stop::Format(entry)));
                };
                // The patched bytes lie in the code (the rule `decode_relocation` applies).
                let range = relocation_site(offset, kind, code_size);
                let Some((start, site)) = range.and_then(|r| Some((r.start, code.get_mut(r)?))) else {
                    return Err(halt(stop, Stop::Format(entry)));
                };
                if target.address == Target::NO_ADDRESS {
                    return Err(halt(stop, Stop::NoAddress(entry)));
                }
                let place = self.code_base.wrapping_add(start) as u64;
                // The kinds of nearly every x86-64 relocation inline, the others out of line.
                let applied = match kind {
                    RelocKind::Pc32 => reloc::pc32(site, target.address as u64, addend, place),
                    RelocKind::Plt32 if target.stub == Target::NO_SLOT => {
                        reloc::pc32(site, target.address as u64, addend, place)
                    }
                    RelocKind::Abs64 => reloc::abs64(site, target.address as u64, addend),
                    RelocKind::GotPc32 => {
                        let got = slots.got(target).ok_or(Halted)?;
                        reloc::pc32(site, got as u64, addend, place)
                    }
                    _ => self.apply_other(kind, site, target, slots, addend, place).ok_or(Halted)?,
                };
                if applied.is_err() {
                    return Err(halt(stop, Stop::Relocation(entry)));
                }
            }
            Ok(())
        })
    }

    /// The error that made the pass stop: the entry decoded in full, which names a broken
    /// format rule precisely, and otherwise the loader's own finding about it (a relocation's
    /// error computed again, by [`Relocator::apply_other`], which computes every kind as the
    /// loop does and, like the loop, writes nothing when it fails).
    #[cold]
    #[inline(never)]
    fn explain(
        &self,
        module: &Module<'_>,
        code: &mut [u8],
        targets: &mut [Target],
        slots: &mut Slots<'_>,
        stop: Stop<'_>,
    ) -> LoadError {
        let entry = match stop {
            Stop::Format(entry) | Stop::NoAddress(entry) | Stop::Relocation(entry) => entry,
            // (Also a stop without an entry: the loop's result is all there is.)
            Stop::Inconsistent => return LoadError::Internal,
        };
        let Some((index, at)) = entries::relocation_position(module, entry) else {
            return LoadError::Internal;
        };
        let r = match module.decode_relocation(index, entry, at) {
            Ok(r) => r,
            Err(e) => return LoadError::Format(e),
        };
        let name = || self.names.name(r.symbol as usize).map_or_else(String::new, lossy);
        match stop {
            Stop::NoAddress(_) => LoadError::NoAddress { relocation: r.index, name: name() },
            Stop::Relocation(_) => {
                let site = relocation_site(r.offset, r.kind, module.code_size());
                let error = site.and_then(|range| {
                    let place = self.code_base.wrapping_add(range.start) as u64;
                    let target = targets.get_mut(r.symbol as usize)?;
                    self.apply_other(r.kind, code.get_mut(range)?, target, slots, r.addend, place)?.err()
                });
                match error {
                    Some(error) => {
                        LoadError::Relocation { relocation: r.index, kind: r.kind, name: name(), error }
                    }
                    None => LoadError::Internal,
                }
            }
            // The entry decodes: both check the same things.
            Stop::Format(_) | Stop::Inconsistent => LoadError::Internal,
        }
    }

    /// The kinds the loop does not inline: everything [`reloc::apply`] computes, with branches
    /// to imports through a stub when the import is out of the branch's reach (or stubs are
    /// forced). `None` if a slot was needed and none was left.
    #[inline(never)]
    fn apply_other(
        &self,
        kind: RelocKind,
        site: &mut [u8],
        target: &mut Target,
        slots: &mut Slots<'_>,
        addend: i64,
        place: u64,
    ) -> Option<Result<(), reloc::RelocError>> {
        let got = if kind.uses_got() { Some(slots.got(target)? as u64) } else { None };
        let symbol = target.address as u64;
        let through_stub = target.stub != Target::NO_SLOT
            && kind.branch().is_some()
            && (self.force_stubs || !reloc::branch_reaches(kind, symbol, addend, place));
        let symbol = if through_stub { slots.stub(kind, target)? as u64 } else { symbol };
        Some(reloc::apply(kind, site, RelocInput { symbol, addend, place, got }))
    }
}
