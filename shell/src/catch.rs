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
//! exception to [`caught`] and returns 1. `caught` ends a C++ exception as `catch (...) {}`
//! does, through the `__cxa_begin_catch` and `__cxa_end_catch` of the runtime that threw it
//! (found from the exception's cleanup function: in a loaded module, or through `dladdr`), so
//! the thrown object is destroyed and the thread's count of uncaught exceptions comes back
//! down; any other exception, or one whose runtime exports neither (a program linking
//! libstdc++ statically without `-rdynamic`: its count then stays one higher), it deletes with
//! `_Unwind_DeleteException`.
//!
//! A Rust panic passes as Rust's own: one from a module built with a Rust runtime of its own
//! reaches this library's `catch_unwind` as a foreign exception, which aborts.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr};

use smf_runtime::exec::function_pointer;
use smf_runtime::load::Catcher;

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
    fn dladdr(address: *const c_void, info: *mut DlInfo) -> c_int;
}

/// What the loader's constructors and destructors run through ([`smf_runtime::load::LoadOptions::
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

/// Bytes of a caught exception's type name kept ([`caught_type`]); a longer one is cut.
const TYPE_NAME_BYTES: usize = 256;

thread_local! {
    /// The C++ type of the exception this thread's last catch ended (its
    /// `std::type_info::name()`, the mangled form, as its bytes and their count), if it was a
    /// C++ exception whose runtime names it. Kept without allocating: set on the way out of
    /// the unwinder.
    static CAUGHT_TYPE: std::cell::Cell<Option<([u8; TYPE_NAME_BYTES], usize)>> =
        const { std::cell::Cell::new(None) };
}

/// The C++ type of the exception the last catch on this thread ended, as its runtime names it
/// (`std::type_info::name()`: the mangled form, `St13runtime_error`); `None` if it was not
/// C++'s or its runtime does not say. Asked right after a [`catching`] that returned `None`
/// (every catch sets it first, so none older is reported).
pub(crate) fn caught_type() -> Option<String> {
    let (bytes, len) = CAUGHT_TYPE.take()?;
    Some(String::from_utf8_lossy(&bytes[..len]).into_owned())
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

/// The classes of C++ exceptions (libstdc++'s and libc++abi's, each also as a dependent
/// exception of `std::rethrow_exception`): the runtime that threw one ends it.
const CXX_CLASSES: [&[u8; 8]; 4] = [b"GNUCC++\0", b"GNUCC++\x01", b"CLNGC++\0", b"CLNGC++\x01"];

/// `struct _Unwind_Exception`'s first two fields: its class and the cleanup its runtime set.
#[repr(C)]
struct ExceptionHeader {
    class: u64,
    cleanup: usize,
}

/// `Dl_info` (`<dlfcn.h>`).
#[repr(C)]
struct DlInfo {
    file: *const c_char,
    base: *mut c_void,
    symbol: *const c_char,
    address: *mut c_void,
}

/// The functions of a C++ runtime a `catch` calls (addresses).
#[derive(Clone, Copy, Debug)]
struct CxaCatch {
    /// `__cxa_begin_catch`.
    begin: usize,
    /// `__cxa_end_catch`.
    end: usize,
    /// `__cxa_current_exception_type`, if the runtime exports it.
    current_type: Option<usize>,
}

/// `__cxa_begin_catch` and `__cxa_end_catch` (and `__cxa_current_exception_type`) of the C++
/// runtime that threw `exception`: the one its cleanup belongs to (a loaded module that packed
/// its runtime in, or a shared object or program of the process: a program linking
/// `libstdc++` statically, a library opened with `RTLD_LOCAL` as `smf run --native` opens it),
/// whose count of uncaught exceptions `__cxa_throw` raised. `None` if that runtime does not
/// export the first two.
fn cxa_catch_of(exception: *mut c_void) -> Option<CxaCatch> {
    // SAFETY: every exception begins with this header (the Itanium ABI's layout).
    let cleanup = unsafe { (*exception.cast::<ExceptionHeader>()).cleanup };
    if let Some(module) = crate::code_index::containing(cleanup) {
        let (begin, end) = module.symbol(b"__cxa_begin_catch").zip(module.symbol(b"__cxa_end_catch"))?;
        return Some(CxaCatch { begin, end, current_type: module.symbol(b"__cxa_current_exception_type") });
    }
    let mut info = DlInfo {
        file: std::ptr::null(),
        base: std::ptr::null_mut(),
        symbol: std::ptr::null(),
        address: std::ptr::null_mut(),
    };
    // SAFETY: dladdr writes `info` for an address; the file name it gives stays valid while
    // the object is loaded, which it is (its code is throwing).
    if unsafe { dladdr(cleanup as *const c_void, &mut info) } == 0 || info.file.is_null() {
        return None;
    }
    // SAFETY: dladdr gave a NUL-terminated file name, valid while the object is loaded.
    let file = unsafe { CStr::from_ptr(info.file) };
    let names = [c"__cxa_begin_catch", c"__cxa_end_catch", c"__cxa_current_exception_type"];
    let [begin, end, current_type] = crate::native::symbols_of_loaded(file, names)?;
    (begin != 0 && end != 0).then_some(CxaCatch {
        begin,
        end,
        current_type: (current_type != 0).then_some(current_type),
    })
}

/// Keeps the name of the type of the exception being caught ([`CAUGHT_TYPE`]), from its
/// runtime's `__cxa_current_exception_type` (between `__cxa_begin_catch` and
/// `__cxa_end_catch`).
///
/// # Safety
/// `current_type` is a C++ runtime's `__cxa_current_exception_type`, called inside a catch of
/// that runtime.
unsafe fn keep_type_name(current_type: usize) {
    // SAFETY: the caller's contract: `std::type_info *(void)`.
    let Some(current_type) =
        (unsafe { function_pointer::<extern "C" fn() -> *const *const c_char>(current_type) })
    else {
        return;
    };
    let info = current_type();
    if info.is_null() {
        return;
    }
    // SAFETY: a `std::type_info` (the Itanium ABI: its virtual table, then its name, a
    // NUL-terminated string that lives as long as the code that threw, which is loaded: it is
    // copied here before the catch ends).
    let mut name = unsafe { *info.add(1) }.cast::<u8>();
    if name.is_null() {
        return;
    }
    // `type_info::name()` skips a leading `*` (a type local to its object).
    // SAFETY: the name's first byte.
    if unsafe { *name } == b'*' {
        // SAFETY: within the string, past a byte that is not its NUL.
        name = unsafe { name.add(1) };
    }
    let mut bytes = [0u8; TYPE_NAME_BYTES];
    let mut len = 0;
    while len < TYPE_NAME_BYTES {
        // SAFETY: up to and not past the string's NUL.
        let byte = unsafe { *name.add(len) };
        if byte == 0 {
            break;
        }
        bytes[len] = byte;
        len += 1;
    }
    CAUGHT_TYPE.set(Some((bytes, len)));
}

/// Ends an exception the trampoline caught, as `catch (...) {}` does: a C++ exception through
/// its own runtime's `__cxa_begin_catch` and `__cxa_end_catch` (the thrown object destroyed,
/// the thread's count of uncaught exceptions back down), any other (or one whose runtime
/// exports neither) with `_Unwind_DeleteException`, its class's own cleanup. Called by the
/// landing pad only; an exception escaping the thrown object's destructor aborts here.
///
/// # Safety
/// `exception` is the `_Unwind_Exception` the personality routine handed the landing pad.
unsafe extern "C" fn caught(exception: *mut c_void) {
    // This exception's type or none: never one an earlier catch on this thread left (a
    // constructor's, caught during a call).
    CAUGHT_TYPE.set(None);
    // SAFETY: the header every exception begins with.
    let class = unsafe { (*exception.cast::<ExceptionHeader>()).class };
    // The C++ runtimes spell their class's bytes from the most significant down.
    let cxx = CXX_CLASSES.iter().any(|c| u64::from_be_bytes(**c) == class);
    let cxa = cxx.then(|| cxa_catch_of(exception)).flatten();
    // SAFETY: the C++ runtime's functions, with their signatures (`void *(void *)`,
    // `void (void)`), found by their names.
    let calls = cxa.and_then(|cxa| unsafe {
        let begin = function_pointer::<extern "C-unwind" fn(*mut c_void) -> *mut c_void>(cxa.begin)?;
        Some((begin, function_pointer::<extern "C-unwind" fn()>(cxa.end)?, cxa.current_type))
    });
    match calls {
        // SAFETY: given an exception of their runtime, as a `catch (...)` calls them; its
        // `__cxa_current_exception_type` between them.
        Some((begin, end, current_type)) => unsafe {
            begin(exception);
            if let Some(current_type) = current_type {
                keep_type_name(current_type);
            }
            end();
        },
        // SAFETY: an exception no one else holds; its class's cleanup frees it.
        None => unsafe { _Unwind_DeleteException(exception) },
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
    // An indirect branch lands here (a no-op without Intel's indirect branch tracking).
    "endbr64",
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
    "endbr64",
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
    // `bti c`: called indirectly (a no-op without branch target identification).
    "hint #34",
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
    // `bti j`: the unwinder branches here.
    "hint #36",
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
