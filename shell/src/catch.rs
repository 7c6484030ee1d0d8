//! Exceptions that escape module code stop at the library's edge: a C++ exception thrown out of
//! a module function called by name ([`crate::loader::SharedModule::call`], `smf_module_call`,
//! `smf run`), or out of a module's constructor or destructor, is caught and discarded as
//! `catch (...) {}` would, and the call reports it as an error; it never unwinds into the
//! library's Rust frames (where it would abort the process: Rust cannot catch a foreign
//! exception). A Rust panic passes through untouched, to the `catch_unwind` that guards every
//! C entry point.
//!
//! How: the call goes through a small assembly trampoline whose unwind table names a
//! personality routine of ours ([`personality`]). In the unwinder's search phase it claims
//! every exception but Rust's; in the cleanup phase it sends the unwinder to the trampoline's
//! landing pad with the exception in the first return register, and the landing pad hands the
//! exception to [`caught`] and returns 1. `caught` ends it as C++'s `catch (...) {}` does
//! (`__cxa_begin_catch`, `__cxa_end_catch`, when the process has them: the thrown object is
//! destroyed and the thread's count of uncaught exceptions restored), else with
//! `_Unwind_DeleteException`.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void};
use std::sync::OnceLock;

use smf_core::load::Catcher;

/// The unwinder's actions and results (the Itanium C++ ABI's level 1, `unwind.h`).
const UA_SEARCH_PHASE: c_int = 1;
const UA_HANDLER_FRAME: c_int = 4;
const UA_FORCE_UNWIND: c_int = 8;
const URC_FATAL_PHASE1_ERROR: c_int = 3;
const URC_HANDLER_FOUND: c_int = 6;
const URC_INSTALL_CONTEXT: c_int = 7;
const URC_CONTINUE_UNWIND: c_int = 8;

/// The class of Rust's own panics, which pass through.
const RUST_EXCEPTION_CLASS: u64 = u64::from_ne_bytes(*b"MOZ\0RUST");

/// The DWARF register the landing pad finds the exception in (`__builtin_eh_return_data_regno
/// (0)`: `rax` on x86-64, `x0` on aarch64).
const EXCEPTION_REGISTER: c_int = 0;

/// A thunk the trampoline calls with its context.
type Thunk = unsafe extern "C-unwind" fn(*mut c_void);

extern "C-unwind" {
    /// The trampoline: calls `thunk(context)`; 0 when it returned, 1 when an exception other
    /// than a Rust panic escaped it (caught and ended by [`caught`]).
    fn smf_loader_catch_call(thunk: Thunk, context: *mut c_void) -> u32;
}

extern "C" {
    /// The trampoline's landing pad (a code label, never called from Rust).
    fn smf_loader_catch_landing();
    fn _Unwind_SetGR(context: *mut c_void, register: c_int, value: usize);
    fn _Unwind_SetIP(context: *mut c_void, value: usize);
    fn _Unwind_DeleteException(exception: *mut c_void);
    fn dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void;
}

/// What the loader's constructors and destructors run through ([`smf_core::load::LoadOptions::
/// catch`]).
pub(crate) const CATCHER: Catcher = Catcher(smf_loader_catch_call);

/// Runs `f`; `None` if an exception other than a Rust panic escaped it (caught and discarded).
/// A Rust panic unwinds on to the caller.
pub(crate) fn catching<F: FnOnce() -> R, R>(f: F) -> Option<R> {
    /// The closure, then its result.
    struct Slot<F, R> {
        f: Option<F>,
        result: Option<R>,
    }
    /// Runs the closure of the [`Slot`] `context` points at.
    ///
    /// # Safety
    /// `context` points at a live `Slot<F, R>` no one else uses during the call.
    unsafe extern "C-unwind" fn thunk<F: FnOnce() -> R, R>(context: *mut c_void) {
        // SAFETY: the caller's contract.
        let slot = unsafe { &mut *context.cast::<Slot<F, R>>() };
        if let Some(f) = slot.f.take() {
            slot.result = Some(f());
        }
    }
    let mut slot = Slot { f: Some(f), result: None };
    // SAFETY: the thunk gets the slot it is made for, which lives across the call.
    let escaped = unsafe { smf_loader_catch_call(thunk::<F, R>, (&raw mut slot).cast()) };
    if escaped == 0 {
        slot.result
    } else {
        None
    }
}

/// The trampoline's personality routine (the Itanium C++ ABI's `__personality_routine`).
///
/// # Safety
/// Called by the unwinder only, for the trampoline's frame, with its own arguments.
unsafe extern "C" fn personality(
    version: c_int,
    actions: c_int,
    class: u64,
    exception: *mut c_void,
    context: *mut c_void,
) -> c_int {
    if version != 1 {
        return URC_FATAL_PHASE1_ERROR;
    }
    // Rust's panics go on to their `catch_unwind`; a forced unwind (a thread's cancellation)
    // is not ours to stop.
    if class == RUST_EXCEPTION_CLASS || actions & UA_FORCE_UNWIND != 0 {
        return URC_CONTINUE_UNWIND;
    }
    if actions & UA_SEARCH_PHASE != 0 {
        return URC_HANDLER_FOUND;
    }
    if actions & UA_HANDLER_FRAME != 0 {
        // SAFETY: the unwinder's context for the trampoline's frame; the landing pad is in
        // the trampoline, and takes the exception in this register.
        unsafe {
            _Unwind_SetGR(context, EXCEPTION_REGISTER, exception as usize);
            _Unwind_SetIP(context, smf_loader_catch_landing as *const () as usize);
        }
        return URC_INSTALL_CONTEXT;
    }
    URC_CONTINUE_UNWIND
}

/// The C++ runtime's `__cxa_begin_catch` and `__cxa_end_catch`, if the process has them.
fn cxa_catch() -> Option<(usize, usize)> {
    static FOUND: OnceLock<Option<(usize, usize)>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        // SAFETY: dlsym with RTLD_DEFAULT (null) and NUL-terminated names.
        let (begin, end) = unsafe {
            (
                dlsym(std::ptr::null_mut(), c"__cxa_begin_catch".as_ptr()),
                dlsym(std::ptr::null_mut(), c"__cxa_end_catch".as_ptr()),
            )
        };
        (!begin.is_null() && !end.is_null()).then_some((begin as usize, end as usize))
    })
}

/// Ends an exception the trampoline caught, as `catch (...) {}` does. Called by the landing
/// pad only.
///
/// # Safety
/// `exception` is the `_Unwind_Exception` the personality routine handed the landing pad.
unsafe extern "C" fn caught(exception: *mut c_void) {
    if let Some((begin, end)) = cxa_catch() {
        // SAFETY: the C++ runtime's functions, with their signatures: `void *(void *)` and
        // `void (void)`; they take any exception class, as a `catch (...)` does.
        unsafe {
            let begin: extern "C" fn(*mut c_void) -> *mut c_void = std::mem::transmute(begin);
            let end: extern "C" fn() = std::mem::transmute(end);
            begin(exception);
            end();
        }
    } else {
        // SAFETY: an exception no one else holds; its class's cleanup frees it.
        unsafe { _Unwind_DeleteException(exception) };
    }
}

#[cfg(target_arch = "x86_64")]
std::arch::global_asm!(
    ".pushsection .text.smf_loader_catch_call,\"ax\",@progbits",
    ".p2align 4",
    ".globl smf_loader_catch_call",
    ".hidden smf_loader_catch_call",
    ".type smf_loader_catch_call,@function",
    "smf_loader_catch_call:",
    ".cfi_startproc",
    ".cfi_personality 0x1b, {personality}",
    "push %rbp",
    ".cfi_def_cfa_offset 16",
    ".cfi_offset %rbp, -16",
    "mov %rsp, %rbp",
    ".cfi_def_cfa_register %rbp",
    "mov %rdi, %rax",
    "mov %rsi, %rdi",
    "call *%rax",
    "xor %eax, %eax",
    "pop %rbp",
    ".cfi_def_cfa %rsp, 8",
    "ret",
    // The landing pad: the unwinder restores the frame as it was at the call, the exception
    // in rax.
    ".cfi_def_cfa %rbp, 16",
    ".globl smf_loader_catch_landing",
    ".hidden smf_loader_catch_landing",
    "smf_loader_catch_landing:",
    "mov %rax, %rdi",
    "call {caught}",
    "mov $1, %eax",
    "pop %rbp",
    ".cfi_def_cfa %rsp, 8",
    "ret",
    ".cfi_endproc",
    ".size smf_loader_catch_call, .-smf_loader_catch_call",
    ".popsection",
    personality = sym personality,
    caught = sym caught,
    options(att_syntax)
);

#[cfg(target_arch = "aarch64")]
std::arch::global_asm!(
    ".pushsection .text.smf_loader_catch_call,\"ax\",%progbits",
    ".p2align 2",
    ".globl smf_loader_catch_call",
    ".hidden smf_loader_catch_call",
    ".type smf_loader_catch_call,%function",
    "smf_loader_catch_call:",
    ".cfi_startproc",
    ".cfi_personality 0x1b, {personality}",
    "stp x29, x30, [sp, #-16]!",
    ".cfi_def_cfa_offset 16",
    ".cfi_offset x29, -16",
    ".cfi_offset x30, -8",
    "mov x29, sp",
    "mov x2, x0",
    "mov x0, x1",
    "blr x2",
    "mov w0, #0",
    "ldp x29, x30, [sp], #16",
    ".cfi_def_cfa_offset 0",
    ".cfi_restore x29",
    ".cfi_restore x30",
    "ret",
    // The landing pad: the unwinder restores the frame as it was at the call, the exception
    // in x0.
    ".cfi_def_cfa_offset 16",
    ".cfi_offset x29, -16",
    ".cfi_offset x30, -8",
    ".globl smf_loader_catch_landing",
    ".hidden smf_loader_catch_landing",
    "smf_loader_catch_landing:",
    "bl {caught}",
    "mov w0, #1",
    "ldp x29, x30, [sp], #16",
    ".cfi_def_cfa_offset 0",
    ".cfi_restore x29",
    ".cfi_restore x30",
    "ret",
    ".cfi_endproc",
    ".size smf_loader_catch_call, .-smf_loader_catch_call",
    ".popsection",
    personality = sym personality,
    caught = sym caught,
);

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// An `_Unwind_Exception` of a language neither C++ nor Rust (the Itanium ABI's layout:
    /// class, cleanup, two private words; 16-byte aligned as `unwind.h` has it).
    #[repr(C, align(16))]
    struct ForeignException {
        class: u64,
        cleanup: extern "C" fn(c_int, *mut ForeignException),
        private: [usize; 2],
    }

    /// How many foreign exceptions were deleted.
    static DELETED: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn delete(_reason: c_int, exception: *mut ForeignException) {
        DELETED.fetch_add(1, Ordering::SeqCst);
        // SAFETY: made by `Box::into_raw` in `throw_foreign`, deleted once.
        drop(unsafe { Box::from_raw(exception) });
    }

    extern "C-unwind" {
        fn _Unwind_RaiseException(exception: *mut ForeignException) -> c_int;
    }

    /// Throws a foreign exception (returns only if the unwinder found no handler).
    fn throw_foreign() -> u32 {
        let exception = Box::new(ForeignException {
            class: u64::from_ne_bytes(*b"SMFTEST\0"),
            cleanup: delete,
            private: [0; 2],
        });
        // SAFETY: a well-formed exception object, handed to the unwinder.
        unsafe { _Unwind_RaiseException(Box::into_raw(exception)) };
        7
    }

    #[test]
    fn a_call_that_returns_gives_its_result() {
        assert_eq!(catching(|| 40 + 2), Some(42));
    }

    #[test]
    fn a_foreign_exception_is_stopped_and_deleted_once() {
        let before = DELETED.load(Ordering::SeqCst);
        assert_eq!(catching(throw_foreign), None, "stopped at the trampoline");
        assert_eq!(DELETED.load(Ordering::SeqCst), before + 1, "its cleanup ran once");
        // The trampoline's frame and the caller's registers came back whole: it works again.
        assert_eq!(catching(|| 5), Some(5));
        assert_eq!(catching(throw_foreign), None);
        assert_eq!(DELETED.load(Ordering::SeqCst), before + 2);
    }

    #[test]
    fn a_rust_panic_passes_through_to_catch_unwind() {
        let unwound = std::panic::catch_unwind(|| catching(|| -> u32 { panic!("passes") }));
        let payload = unwound.expect_err("the panic reached catch_unwind");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"passes"));
    }
}
