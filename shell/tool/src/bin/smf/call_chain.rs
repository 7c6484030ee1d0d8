//! The call chain of a crash in a module: the frames that called the function that crashed,
//! walked by libgcc's unwinder (`_Unwind_Backtrace`: the process has it, Rust's std links
//! libgcc_s) from the signal handler through the kernel's signal frame into the interrupted
//! code and on through its callers, module frames by the unwind tables their loads registered.
//!
//! The walk is not async-signal-safe (libgcc takes a lock to find a frame's table), so the crash
//! report writes its line first and walks after, under an alarm: a walk that cannot finish ends
//! the process (SIGALRM) instead of hanging it.

use std::ffi::{c_int, c_void};

extern "C" {
    /// libgcc's: calls `trace` for each frame from the caller's up, until it returns
    /// something other than `_URC_NO_REASON` or the stack ends.
    fn _Unwind_Backtrace(trace: extern "C" fn(*mut c_void, *mut c_void) -> c_int, arg: *mut c_void) -> c_int;
    /// libgcc's: the address a frame resumes at (for the interrupted one, the faulting
    /// instruction's; for callers, the return address).
    fn _Unwind_GetIP(context: *mut c_void) -> usize;
}

/// `_Unwind_Reason_Code`s: go on, and stop.
const URC_NO_REASON: c_int = 0;
const URC_END_OF_STACK: c_int = 5;

/// Seconds a walk may take before the alarm ends the process.
const WALK_SECONDS: u32 = 2;

/// A walk in progress: frames are skipped up to the interrupted one (the handler's own and the
/// signal frame come first), then its callers' return addresses kept.
struct Walk<'a> {
    faulting: usize,
    found: bool,
    out: &'a mut [usize],
    count: usize,
}

extern "C" fn frame(context: *mut c_void, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Walk` `callers` passed, alive for the whole walk; `context` is the
    // unwinder's for this frame.
    let (walk, ip) = unsafe { (&mut *arg.cast::<Walk<'_>>(), _Unwind_GetIP(context)) };
    if !walk.found {
        walk.found = ip == walk.faulting;
        return URC_NO_REASON;
    }
    if ip == 0 || walk.count == walk.out.len() {
        return URC_END_OF_STACK;
    }
    walk.out[walk.count] = ip;
    walk.count += 1;
    URC_NO_REASON
}

/// The return addresses of the frames that called the code interrupted at `faulting`,
/// innermost first, into `out`: how many (none when the unwinder cannot reach that frame).
pub(crate) fn callers(faulting: usize, out: &mut [usize]) -> usize {
    let mut walk = Walk { faulting, found: false, out, count: 0 };
    // SAFETY: alarm(2) is async-signal-safe; the walk's callback gets a pointer to `walk`,
    // which outlives the call. SIGALRM's default action ends the process if the walk hangs.
    unsafe {
        libc::alarm(WALK_SECONDS);
        _Unwind_Backtrace(frame, std::ptr::from_mut(&mut walk).cast());
        libc::alarm(0);
    }
    walk.count
}
