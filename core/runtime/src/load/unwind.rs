//! The unwind stage of a load: the module's unwind tables (`docs/format.md`, "Unwind tables"),
//! read once relocated, every FDE checked to describe the module's own code; then, if the
//! loader was given an [`UnwindRegistrar`] (the shell gives the process unwinder's
//! `__register_frame`), each table is registered once the image is sealed, before any
//! constructor runs, and deregistered at release after the destructors ran, before the image
//! is unmapped. The core never calls an unwinder itself.

#![allow(unsafe_code)]

use alloc::vec::Vec;
use core::ops::Range;

use super::{fallible, Invariant, LoadError, Overflow};
use smf_format::module::unwind::{first_fde_outside, FdeProblem};
use smf_format::module::DataRegion;
use smf_format::Module;

/// The functions that hand a table to the process's unwinder and take it back: in the C
/// library's world `__register_frame` and `__deregister_frame` (libgcc), each given the address
/// of a whole table (records up to the zero terminator).
#[derive(Clone, Copy, Debug)]
pub struct UnwindRegistrar {
    /// Registers the table at the address.
    pub register: unsafe extern "C" fn(*const u8),
    /// Deregisters the table at the address.
    pub deregister: unsafe extern "C" fn(*const u8),
}

/// The same functions (compared by address, which is all a registrar is).
impl PartialEq for UnwindRegistrar {
    fn eq(&self, other: &Self) -> bool {
        core::ptr::fn_addr_eq(self.register, other.register)
            && core::ptr::fn_addr_eq(self.deregister, other.deregister)
    }
}

impl Eq for UnwindRegistrar {}

/// A checked unwind table of a loaded module: its address and length (records up to and with
/// the terminator), in the module's sealed read-only data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnwindTable {
    /// Where it starts.
    pub addr: usize,
    /// Its bytes.
    pub len: usize,
}

/// Why an FDE of an unwind table is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnwindFault {
    /// It cannot be read as the unwinder would read it.
    Unreadable(FdeProblem),
    /// It describes code outside the module's: these addresses.
    OutsideCode {
        /// The first address it describes.
        start: u64,
        /// How many bytes.
        len: u64,
    },
}

impl core::fmt::Display for UnwindFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            UnwindFault::Unreadable(problem) => write!(f, "cannot be read: it {problem}"),
            UnwindFault::OutsideCode { start, len } => {
                write!(
                    f,
                    "describes {start:#x}..{:#x}, outside the module's code",
                    start.saturating_add(*len)
                )
            }
        }
    }
}

/// Where `module`'s unwind tables are once placed: each table's address (the read-only region
/// starts at `read_only_at`, its relocated bytes are `read_only`), every FDE checked to lie in
/// `code`. Out of line: most modules have none (the caller checks first).
#[inline(never)]
pub(super) fn check(
    module: &Module<'_>,
    read_only: &[u8],
    read_only_at: usize,
    code: Range<usize>,
) -> Result<Vec<UnwindTable>, LoadError> {
    let mut tables = Vec::new();
    let code = code.start as u64..code.end as u64;
    for placement in module.unwind_tables() {
        // Validation: rodata; the layout: inside the read-only region.
        if placement.region != DataRegion::ReadOnly {
            return Err(LoadError::internal(Invariant::UnwindTableNotReadOnly));
        }
        let start =
            usize::try_from(placement.offset).map_err(|_| LoadError::too_large(Overflow::DataOffset))?;
        let table = start
            .checked_add(placement.section.data.len())
            .and_then(|end| read_only.get(start..end))
            .ok_or_else(|| LoadError::internal(Invariant::UnwindTableOutsideReadOnly))?;
        let addr =
            read_only_at.checked_add(start).ok_or_else(|| LoadError::too_large(Overflow::ReadOnlyAddress))?;
        if let Some((record, range)) = first_fde_outside(table, addr as u64, code.clone()) {
            let fault = match range {
                Err(problem) => UnwindFault::Unreadable(problem),
                Ok((start, len)) => UnwindFault::OutsideCode { start, len },
            };
            let section = placement.section.index;
            return Err(LoadError::UnwindTable { section, record: record as u64, fault });
        }
        fallible::push(&mut tables, UnwindTable { addr, len: table.len() })
            .ok_or(LoadError::OutOfMemory { bytes: fallible::grown_bytes::<UnwindTable>(tables.len()) })?;
    }
    Ok(tables)
}

/// Registers every table of `tables` with `registrar`.
///
/// # Safety
/// Each table is a checked unwind table (records up to the terminator, every FDE in the
/// module's code) in sealed memory that stays mapped until [`deregister`] is called for it.
pub(super) unsafe fn register(registrar: &UnwindRegistrar, tables: &[UnwindTable]) {
    for table in tables {
        // SAFETY: the caller's contract; the registrar's function takes a table's address.
        unsafe { (registrar.register)(table.addr as *const u8) };
    }
}

/// Deregisters every table of `tables` from `registrar`, in reverse order.
///
/// # Safety
/// Each table was registered with [`register`] and is still mapped.
pub(super) unsafe fn deregister(registrar: &UnwindRegistrar, tables: &[UnwindTable]) {
    for table in tables.iter().rev() {
        // SAFETY: the caller's contract.
        unsafe { (registrar.deregister)(table.addr as *const u8) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Bodies that differ and that the optimizer must keep (a value handed to `black_box`), so
    // that no build folds the two functions into one address (LLVM merges identical functions
    // in release builds, empty ones and ones whose only store is dead alike).
    unsafe extern "C" fn one(_: *const u8) {
        core::hint::black_box(1u32);
    }
    unsafe extern "C" fn other(_: *const u8) {
        core::hint::black_box(2u32);
    }

    #[test]
    fn registrars_are_the_same_when_both_their_functions_are() {
        let registrar = |register, deregister| UnwindRegistrar { register, deregister };
        let f: unsafe extern "C" fn(*const u8) = one;
        let g: unsafe extern "C" fn(*const u8) = other;
        assert_eq!(registrar(f, g), registrar(f, g));
        assert_ne!(registrar(f, g), registrar(g, g), "another register function");
        assert_ne!(registrar(f, g), registrar(f, f), "another deregister function");
    }
}
