//! The relocate and GOT stages of a load: each relocation of the module, handed over as
//! validation decodes it ([`smf_format::module::ModuleSymbols::decode_relocations`]), computed with
//! [`reloc::apply`] into the placed code; then the GOT slots the relocations asked for filled
//! with their symbols' addresses.
//!
//! Branch stubs and GOT slots are handed out here, the first time a relocation needs one for
//! its symbol ([`Slots`]): a stub only when a branch to an import is out of reach (or stubs are
//! forced), a GOT slot for every symbol a GOT-relative relocation names.

use core::num::NonZeroUsize;

use super::error::lossy;
use super::reloc::{self, RelocInput};
use super::symtab::SymbolTable;
use super::target::{Target, Whose};
use super::{Invariant, LoadError};
use smf_format::kinds::Branch;
use smf_format::module::{Relocation, RelocationSink};
use smf_format::RelocKind;

/// Size of one branch stub (the format's linked layout counts them).
pub(super) const STUB_SIZE: usize = 16;

/// Bytes of one GOT slot.
pub(super) const GOT_SLOT: usize = 8;

// The sizes the format's linked layout places a module's read-only data by.
const _: () = assert!(
    STUB_SIZE as u64 == smf_format::module::linked::STUB_SIZE
        && GOT_SLOT as u64 == smf_format::module::linked::GOT_SLOT
);

/// The image's room for branch stubs and GOT slots, handed out in order as relocations ask.
pub(super) struct Slots<'i> {
    /// The stub area (in the code block, after the code), `STUB_SIZE` bytes per stub.
    stubs: &'i mut [u8],
    /// The stub area's address.
    stubs_at: usize,
    stubs_used: usize,
    /// The GOT's address (in the read-only region) and how many slots it has.
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

    /// Pins the first stub and GOT slot to each import of `targets` (the module's symbols in
    /// table order), in order, as the format's linked layout does for a module linked to its
    /// imports, the stubs branching as `kind` does; `None` if the room is short (which the
    /// plan's rules out).
    pub(super) fn pin_imports(&mut self, targets: &mut [Target], kind: RelocKind) -> Option<()> {
        for target in targets.iter_mut().filter(|t| t.whose == Whose::Import) {
            self.stub(kind, target)?;
            self.got(target)?;
        }
        Some(())
    }

    /// `target`'s GOT slot, handed out now if it has none; `None` if the GOT is full (which
    /// the plan's room for a slot per GOT-relative relocation rules out).
    #[inline(always)]
    fn got(&mut self, target: &mut Target) -> Option<usize> {
        if let Some(slot) = target.got {
            return Some(slot.get());
        }
        if self.got_used == self.got_capacity {
            return None;
        }
        let slot = NonZeroUsize::new(self.got_at.checked_add(self.got_used.checked_mul(GOT_SLOT)?)?)?;
        target.got = Some(slot);
        self.got_used += 1;
        Some(slot.get())
    }

    /// `target`'s stub for branches of `kind`, written now if it has none; `None` if it is not
    /// an import, or the stub area is full (which the plan's room for a stub per import rules
    /// out).
    fn stub(&mut self, kind: RelocKind, target: &mut Target) -> Option<usize> {
        match (target.stub, target.whose) {
            (Some(at), _) => Some(at.get()),
            (None, Whose::Import) => {
                let at = self.stubs_used.checked_mul(STUB_SIZE)?;
                let room = self.stubs.get_mut(at..at.checked_add(STUB_SIZE)?)?;
                write_stub(room, kind, target.address as u64)?;
                let stub = NonZeroUsize::new(self.stubs_at.checked_add(at)?)?;
                target.stub = Some(stub);
                self.stubs_used += 1;
                Some(stub.get())
            }
            (None, _) => None,
        }
    }
}

/// Writes a stub that jumps to `target` for a branch of `kind` into `out` (at least
/// [`STUB_SIZE`] bytes): x86-64 `jmp [rip+0]; .quad S`, aarch64 `ldr x16, #8; br x16; .quad S`.
/// `None` for a kind that is not a branch (it never goes through a stub).
fn write_stub(out: &mut [u8], kind: RelocKind, target: u64) -> Option<()> {
    let out = out.get_mut(..STUB_SIZE)?;
    match kind.branch()? {
        Branch::Aarch64Imm26 => {
            out[..4].copy_from_slice(&0x5800_0050u32.to_le_bytes()); // ldr x16, #8
            out[4..8].copy_from_slice(&0xD61F_0200u32.to_le_bytes()); // br x16
            out[8..16].copy_from_slice(&target.to_le_bytes());
        }
        Branch::X86Rel32 => {
            out[..6].copy_from_slice(&[0xFF, 0x25, 0, 0, 0, 0]); // jmp qword ptr [rip+0]
            out[6..14].copy_from_slice(&target.to_le_bytes());
            out[14..16].copy_from_slice(&[0xCC, 0xCC]);
        }
    }
    Some(())
}

/// The placed data image, still writable, that data relocations patch.
pub(super) struct DataImage<'i> {
    /// The read-only region's data (without the GOT after it), and its address.
    pub(super) read_only: &'i mut [u8],
    pub(super) read_only_at: usize,
    /// The writable region's data and bss, and its address.
    pub(super) writable: &'i mut [u8],
    pub(super) writable_at: usize,
    /// Where the writable region starts in the data image (the offsets' space).
    pub(super) writable_start: u64,
}

impl DataImage<'_> {
    /// The bytes a data relocation at `offset` patching `len` bytes patches, and their address.
    fn site(&mut self, offset: u64, len: usize) -> Option<(&mut [u8], usize)> {
        let (bytes, at, offset) = match offset.checked_sub(self.writable_start) {
            Some(offset) => (&mut *self.writable, self.writable_at, offset),
            None => (&mut *self.read_only, self.read_only_at, offset),
        };
        let start = usize::try_from(offset).ok()?;
        let site = bytes.get_mut(start..start.checked_add(len)?)?;
        Some((site, at.checked_add(start)?))
    }
}

/// The relocate stage as validation's [`RelocationSink`]: each relocation applied as it is
/// decoded, to the code or to the data.
pub(super) struct Relocating<'s, 'i> {
    pub(super) relocator: Relocator<'s>,
    /// The placed code (cut to the module's code size).
    pub(super) code: &'s mut [u8],
    /// Per symbol, in table order: where relocations against it point.
    pub(super) targets: &'s mut [Target],
    pub(super) slots: Slots<'i>,
    pub(super) data: DataImage<'i>,
}

impl RelocationSink for Relocating<'_, '_> {
    type Stop = LoadError;

    #[inline(always)]
    fn code(&mut self, relocation: Relocation) -> Result<(), LoadError> {
        self.relocator.apply(relocation, self.code, self.targets, &mut self.slots)
    }

    #[inline(always)]
    fn data(&mut self, relocation: Relocation) -> Result<(), LoadError> {
        self.relocator.apply_to_data(relocation, &mut self.data, self.targets)
    }
}

/// What the relocate stage needs besides the module, the code and the targets.
pub(super) struct Relocator<'t> {
    /// Address of the first byte of the code.
    pub(super) code_base: usize,
    /// Names for error messages.
    pub(super) names: &'t SymbolTable,
    /// Route branches to imports through stubs even when the target is within reach.
    pub(super) force_stubs: bool,
}

impl Relocator<'_> {
    /// The relocate stage, for one relocation: applies `r` (decoded and validated against the
    /// module's code) to `code` (its placed code, cut to the module's code size, starting at
    /// `code_base`), handing out stubs and GOT slots from `slots` and recording them in
    /// `targets` (per symbol, in table order). The error names the relocation.
    #[inline(always)]
    pub(super) fn apply(
        &self,
        r: Relocation,
        code: &mut [u8],
        targets: &mut [Target],
        slots: &mut Slots<'_>,
    ) -> Result<(), LoadError> {
        if r.kind == RelocKind::None {
            return Ok(());
        }
        // Validation checked both: the symbol is in the table, the bytes in the code (so the
        // offset fits a usize; were it not so, `code.get_mut` would refuse the range all the same).
        let target = targets
            .get_mut(r.symbol as usize)
            .ok_or_else(|| LoadError::internal(Invariant::SymbolOutsideTargets))?;
        let start = usize::try_from(r.offset).unwrap_or(usize::MAX);
        let site = code
            .get_mut(start..start.wrapping_add(r.kind.site_len()))
            .ok_or_else(|| LoadError::internal(Invariant::SiteOutsideCode))?;
        let place = self.code_base.wrapping_add(start) as u64;
        let Some(address) = target.address() else {
            return Err(self.no_address(r.index, r.symbol));
        };
        let (symbol, addend) = (address as u64, r.addend);
        // The kinds of nearly every x86-64 relocation inline, the others out of line.
        let applied = match r.kind {
            RelocKind::Pc32 => reloc::pc32(site, symbol, addend, place),
            RelocKind::Plt32 if target.whose == Whose::Own => reloc::pc32(site, symbol, addend, place),
            RelocKind::Abs64 => reloc::abs64(site, symbol, addend),
            RelocKind::GotPc32 => {
                let got = slots.got(target).ok_or_else(|| LoadError::internal(Invariant::GotFull))?;
                reloc::pc32(site, got as u64, addend, place)
            }
            kind => {
                self.apply_other(kind, site, target, slots, addend, place).map_err(LoadError::internal)?
            }
        };
        match applied {
            Ok(()) => Ok(()),
            Err(error) => Err(self.failed(r.index, r.kind, r.symbol, error)),
        }
    }

    /// The relocate stage, for one data relocation: applies `r` (decoded and validated against
    /// the data image: a kind that patches plain bytes, inside one region) to `data`.
    #[inline]
    pub(super) fn apply_to_data(
        &self,
        r: Relocation,
        data: &mut DataImage<'_>,
        targets: &[Target],
    ) -> Result<(), LoadError> {
        if r.kind == RelocKind::None {
            return Ok(());
        }
        let target = targets
            .get(r.symbol as usize)
            .ok_or_else(|| LoadError::internal(Invariant::SymbolOutsideTargets))?;
        let Some(address) = target.address() else {
            return Err(self.no_address(r.index, r.symbol));
        };
        let (site, place) = data
            .site(r.offset, r.kind.site_len())
            .ok_or_else(|| LoadError::internal(Invariant::SiteOutsideData))?;
        let (symbol, addend, place) = (address as u64, r.addend, place as u64);
        // What compilers emit in data (pointers, jump-table entries) inline, abs32 out of line.
        let applied = match r.kind {
            RelocKind::Abs64 => reloc::abs64(site, symbol, addend),
            RelocKind::Pc32 => reloc::pc32(site, symbol, addend, place),
            kind => reloc::apply(kind, site, RelocInput { symbol, addend, place, got: None }),
        };
        applied.map_err(|error| self.failed(r.index, r.kind, r.symbol, error))
    }

    /// The kinds the loop does not inline: everything [`reloc::apply`] computes, with branches
    /// to imports through a stub when the import is out of the branch's reach (or stubs are
    /// forced). The broken invariant if a slot was needed and none was left.
    #[inline(never)]
    fn apply_other(
        &self,
        kind: RelocKind,
        site: &mut [u8],
        target: &mut Target,
        slots: &mut Slots<'_>,
        addend: i64,
        place: u64,
    ) -> Result<Result<(), reloc::RelocError>, Invariant> {
        let got = match kind.uses_got() {
            true => Some(slots.got(target).ok_or(Invariant::GotFull)? as u64),
            false => None,
        };
        let symbol = target.address as u64;
        let through_stub = target.whose == Whose::Import
            && kind.branch().is_some()
            && (self.force_stubs || !reloc::branch_reaches(kind, symbol, addend, place));
        let symbol = match through_stub {
            true => slots.stub(kind, target).ok_or(Invariant::StubAreaFull)? as u64,
            false => symbol,
        };
        Ok(reloc::apply(kind, site, RelocInput { symbol, addend, place, got }))
    }

    /// The name of symbol `symbol`, for an error.
    fn name_of(&self, symbol: u32) -> alloc::string::String {
        self.names.name(symbol as usize).map_or_else(alloc::string::String::new, lossy)
    }

    /// Relocation `relocation` refers to `symbol`, which has no address.
    #[cold]
    #[inline(never)]
    fn no_address(&self, relocation: u64, symbol: u32) -> LoadError {
        LoadError::NoAddress { relocation, name: self.name_of(symbol) }
    }

    /// Relocation `relocation`'s value does not fit, or its instruction does not match.
    #[cold]
    #[inline(never)]
    fn failed(&self, relocation: u64, kind: RelocKind, symbol: u32, error: reloc::RelocError) -> LoadError {
        LoadError::Relocation { relocation, kind, name: self.name_of(symbol), error }
    }
}

/// The GOT stage: writes each handed-out GOT slot's symbol address into `got` (the GOT's
/// bytes, at the GOT's address `got_at`).
pub(super) fn fill_got(got: &mut [u8], got_at: usize, targets: &[Target]) -> Result<(), LoadError> {
    for target in targets {
        let Some(slot) = target.got else { continue };
        let bytes = slot
            .get()
            .checked_sub(got_at)
            .and_then(|at| got.get_mut(at..at.checked_add(GOT_SLOT)?))
            .ok_or_else(|| LoadError::internal(Invariant::GotSlotOutsideGot))?;
        bytes.copy_from_slice(&(target.address as u64).to_le_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::symtab::SymbolTable;
    use smf_format::module::ModuleTables;
    use smf_format::write::{ModuleBuilder, SymbolSpec};
    use smf_format::{Dialect, ParseOptions, SymbolKind};

    fn own(address: usize) -> Target {
        Target { address, got: None, stub: None, whose: Whose::Own }
    }

    /// A module of 64 bytes of code with symbols `f` (at 0), `g` (an import) and `t` (a type),
    /// and `relocations` (offset, symbol, kind, addend).
    fn module_file(relocations: &[(u64, u32, RelocKind, i64)]) -> alloc::vec::Vec<u8> {
        let mut b = ModuleBuilder::new(Dialect::S128);
        b.add_code(b".text", &[0x90; 64]);
        b.add_symbol(SymbolSpec::function(b"f", 0, 1));
        b.add_symbol(SymbolSpec::import(b"g"));
        b.add_symbol(SymbolSpec::new(b"t", SymbolKind::Type, 0, 0));
        for &(offset, symbol, kind, addend) in relocations {
            b.add_relocation(offset, symbol, kind, addend);
        }
        b.build().unwrap()
    }

    /// Decodes `file`'s relocations and applies each to `code` as the load does.
    fn relocate(
        relocator: &Relocator<'_>,
        file: &[u8],
        code: &mut [u8],
        targets: &mut [Target],
        slots: &mut Slots<'_>,
    ) -> Result<(), LoadError> {
        let tables = ModuleTables::check(file, &ParseOptions::default()).unwrap();
        let code = &mut code[..usize::try_from(tables.code_size()).unwrap()];
        let symbols = tables.decode_symbols(|_, _| Ok::<(), LoadError>(())).unwrap();
        symbols.decode_relocations(&mut |r| relocator.apply(r, code, targets, slots))?;
        Ok(())
    }

    #[test]
    fn relocations_are_applied_and_got_slots_and_stubs_handed_out_once_per_symbol() {
        let code_base = 0x10_0000usize;
        let file = module_file(&[
            (0, 0, RelocKind::Abs64, 4),
            (8, 1, RelocKind::GotPc32, 0),
            (12, 1, RelocKind::GotPc32, 0),
            (16, 1, RelocKind::Plt32, -4),
            (20, 2, RelocKind::Plt32, -4),
            (24, 1, RelocKind::Plt32, -4),
        ]);
        let names = SymbolTable::default();
        let relocator = Relocator { code_base, names: &names, force_stubs: true };
        let mut code = [0u8; 64];
        let mut stubs = [0u8; 2 * STUB_SIZE];
        let (stubs_at, got_at) = (code_base + 64, 0x20_0000);
        let mut slots = Slots::new(&mut stubs, stubs_at, got_at, 2);
        let mut targets = [own(code_base), Target::import(0x7000_0000), Target::import(0x7100_0000)];
        relocate(&relocator, &file, &mut code, &mut targets, &mut slots).unwrap();

        assert_eq!(u64::from_le_bytes(code[..8].try_into().unwrap()), code_base as u64 + 4);
        assert_eq!(slots.got_used(), 1, "one slot for the one symbol");
        assert_eq!(targets[1].got.map(NonZeroUsize::get), Some(got_at));
        let pc32 = |at: usize| i32::from_le_bytes(code[at..at + 4].try_into().unwrap());
        assert_eq!(i64::from(pc32(8)), got_at as i64 - (code_base + 8) as i64);
        assert_eq!(i64::from(pc32(12)), got_at as i64 - (code_base + 12) as i64);
        // The forced stub: the branch goes to it, and it jumps to the import.
        assert_eq!(targets[1].stub, NonZeroUsize::new(stubs_at));
        assert_eq!(i64::from(pc32(16)), stubs_at as i64 - 4 - (code_base + 16) as i64);
        assert_eq!(&stubs[..2], &[0xFF, 0x25]);
        assert_eq!(u64::from_le_bytes(stubs[6..14].try_into().unwrap()), 0x7000_0000);
        // A second import gets the next stub; the first one's second branch reuses its own.
        assert_eq!(targets[2].stub, NonZeroUsize::new(stubs_at + STUB_SIZE));
        assert_eq!(i64::from(pc32(20)), (stubs_at + STUB_SIZE) as i64 - 4 - (code_base + 20) as i64);
        assert_eq!(i64::from(pc32(24)), stubs_at as i64 - 4 - (code_base + 24) as i64);
        let second = &stubs[STUB_SIZE..];
        assert_eq!(u64::from_le_bytes(second[6..14].try_into().unwrap()), 0x7100_0000);

        let mut got = [0u8; 16];
        fill_got(&mut got, got_at, &targets).unwrap();
        assert_eq!(u64::from_le_bytes(got[..8].try_into().unwrap()), 0x7000_0000);
        assert_eq!(&got[8..], &[0; 8], "no second slot");
    }

    #[test]
    fn a_relocation_against_a_symbol_without_an_address_is_named() {
        let file = module_file(&[(0, 0, RelocKind::Abs64, 0), (8, 2, RelocKind::Abs64, 0)]);
        let names = SymbolTable::default();
        let relocator = Relocator { code_base: 0x1000, names: &names, force_stubs: false };
        let mut code = [0u8; 64];
        let mut slots = Slots::new(&mut [], 0, 0, 0);
        let mut targets = [own(0x1000), Target::import(0), Target::NOTHING];
        let error = relocate(&relocator, &file, &mut code, &mut targets, &mut slots).unwrap_err();
        assert_eq!(error, LoadError::NoAddress { relocation: 1, name: alloc::string::String::new() });
    }

    #[test]
    fn a_value_out_of_reach_is_a_relocation_error_naming_its_index() {
        let file = module_file(&[(0, 0, RelocKind::Abs64, 0), (8, 0, RelocKind::Pc32, 0)]);
        let names = SymbolTable::default();
        let relocator = Relocator { code_base: 0x1000, names: &names, force_stubs: false };
        let mut code = [0u8; 64];
        let mut slots = Slots::new(&mut [], 0, 0, 0);
        let far = 0x1000 + (1usize << 40);
        let mut targets = [own(far), Target::import(0), Target::NOTHING];
        let error = relocate(&relocator, &file, &mut code, &mut targets, &mut slots).unwrap_err();
        assert!(
            matches!(error, LoadError::Relocation { relocation: 1, kind: RelocKind::Pc32, .. }),
            "{error:?}"
        );
    }

    #[test]
    fn a_plan_without_room_or_a_relocation_outside_it_is_an_internal_error_naming_its_invariant() {
        let names = SymbolTable::default();
        let relocator = Relocator { code_base: 0x1000, names: &names, force_stubs: true };
        let mut code = [0u8; 64];
        let mut targets = [own(0x1000), Target::import(0x7000_0000), Target::NOTHING];
        let internal = |invariant| Err(LoadError::Internal(invariant));
        // No GOT slot left for a GOT-relative relocation; no stub left for a forced branch.
        let file = module_file(&[(8, 1, RelocKind::GotPc32, 0)]);
        let mut slots = Slots::new(&mut [], 0, 0x2000, 0);
        assert_eq!(
            relocate(&relocator, &file, &mut code, &mut targets, &mut slots),
            internal(Invariant::GotFull)
        );
        let file = module_file(&[(8, 1, RelocKind::Plt32, -4)]);
        let result = relocate(&relocator, &file, &mut code, &mut targets, &mut slots);
        assert_eq!(result, internal(Invariant::StubAreaFull));
        // A relocation validation would have refused: its symbol, or its site, outside the plan.
        let relocation = |offset, symbol| Relocation {
            index: 0,
            image: smf_format::module::RelocatedImage::Code,
            offset,
            symbol,
            kind: RelocKind::Abs64,
            wire: 0,
            addend: 0,
        };
        let apply = |r, code: &mut [u8], targets: &mut [Target]| {
            relocator.apply(r, code, targets, &mut Slots::new(&mut [], 0, 0, 0))
        };
        assert_eq!(
            apply(relocation(0, 3), &mut code, &mut targets),
            internal(Invariant::SymbolOutsideTargets)
        );
        assert_eq!(apply(relocation(60, 0), &mut code, &mut targets), internal(Invariant::SiteOutsideCode));
        let mut data = DataImage {
            read_only: &mut [0; 8],
            read_only_at: 0x3000,
            writable: &mut [0; 8],
            writable_at: 0x4000,
            writable_start: 16,
        };
        let result = relocator.apply_to_data(relocation(4, 0), &mut data, &targets);
        assert_eq!(result, internal(Invariant::SiteOutsideData));
        let result = relocator.apply_to_data(relocation(16, 7), &mut data, &targets);
        assert_eq!(result, internal(Invariant::SymbolOutsideTargets));
        assert_eq!(relocator.apply_to_data(relocation(16, 0), &mut data, &targets), Ok(()));
    }

    #[test]
    fn a_full_got_or_a_slot_outside_the_got_is_refused() {
        let mut slots = Slots::new(&mut [], 0, 0x2000, 0);
        let mut t = own(1);
        assert_eq!(slots.got(&mut t), None);
        t.got = NonZeroUsize::new(0x1000);
        let outside = Err(LoadError::Internal(Invariant::GotSlotOutsideGot));
        assert_eq!(fill_got(&mut [0; 8], 0x2000, &[t]), outside, "below the GOT");
        t.got = NonZeroUsize::new(0x2008);
        assert_eq!(fill_got(&mut [0; 8], 0x2000, &[t]), outside, "past its end");
    }
}
