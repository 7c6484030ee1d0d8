//! The room a compilation takes, checked before Cranelift runs: Cranelift allocates without
//! checking (an allocation it cannot have ends the process), so a manager asks the kernel for
//! as much address space as compiling its input can take, gives it back at once, and refuses the
//! input with [`ExecManagerError::OutOfMemory`] when the kernel refuses.
//!
//! The bound is measured (`tests/tests/oom.rs`): compiling CLIF text took at most 4 MiB and 8
//! bytes of address space per byte of text (400 functions of 1 KB: 7.0 MiB; one function of
//! 50,000 instructions, 3 MB: 16.8 MiB); parsed functions about 200 bytes per instruction.
//! The check asks for twice that. It is a check, not a reservation: another thread may take the
//! room between the check and the compilation (an address-space limit shared with threads that
//! allocate beside a compilation is not covered).

use super::ExecManagerError;

/// What compiling anything takes beyond its input (Cranelift's tables, the first context).
const BASE: usize = 8 << 20;
/// Bytes of address space per byte of CLIF text.
const PER_TEXT_BYTE: usize = 16;
/// Bytes of address space per instruction of a parsed function.
const PER_INSTRUCTION: usize = 512;

/// Checks that compiling `text_len` bytes of CLIF text has room.
pub(super) fn for_text(text_len: usize) -> Result<(), ExecManagerError> {
    check(BASE.saturating_add(text_len.saturating_mul(PER_TEXT_BYTE)))
}

/// Checks that compiling functions of `instructions` instructions in all has room.
pub(super) fn for_instructions(instructions: usize) -> Result<(), ExecManagerError> {
    check(BASE.saturating_add(instructions.saturating_mul(PER_INSTRUCTION)))
}

/// Asks for `bytes` of address space (no access, nothing committed) and gives it back.
fn check(bytes: usize) -> Result<(), ExecManagerError> {
    use smf_runtime::sys::{reserve, unmap, Protection};
    let probe = reserve(bytes, Protection::None).map_err(|_| ExecManagerError::OutOfMemory { bytes })?;
    // SAFETY: reserved just above, for this check alone; never used.
    #[allow(unsafe_code)]
    let _ = unsafe { unmap(probe, bytes) };
    Ok(())
}
