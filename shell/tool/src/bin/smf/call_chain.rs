//! The call chain of a crash: the frames that called the code that crashed, walked by libgcc's
//! unwinder (`_Unwind_Backtrace`: the process has it, Rust's std links libgcc_s) from the
//! signal handler through the kernel's signal frame into the interrupted code and on through
//! its callers, module frames by the unwind tables their loads registered.
//!
//! The walk (and naming code outside the modules, `dladdr`) is not async-signal-safe: libgcc
//! and the dynamic linker take locks, which another thread may hold. So the crash report writes
//! what it can first and does those under a deadline ([`within_deadline`]): one that cannot
//! finish ends the process with the signal it was reporting, as if the report had ended.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicI32, Ordering};

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

/// Seconds the work after a crash's line may take.
pub(crate) const DEADLINE_SECONDS: u32 = 2;

/// The signal a report is about, which ends the process when its deadline passes.
static REPORTING: AtomicI32 = AtomicI32::new(0);

/// The deadline passed: the signal reported is let through (its handler was reset to the
/// default action when it came) and raised again, which ends the process as it would have.
extern "C" fn deadline_passed(_: c_int) {
    let signal = REPORTING.load(Ordering::Relaxed);
    // SAFETY: signal, sigemptyset, sigaddset, pthread_sigmask and raise are async-signal-safe
    // and get a set of our own.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(signal);
        // Only if the signal's default action does not end the process: the status a shell
        // would show for it.
        libc::_exit(128 + signal);
    }
}

/// Runs `work` for the report of `signal` with `seconds` to finish; past them the process ends
/// with `signal` (its default action: the handler that reports is reset by then).
pub(crate) fn within_deadline<T>(signal: c_int, seconds: u32, work: impl FnOnce() -> T) -> T {
    REPORTING.store(signal, Ordering::Relaxed);
    // SAFETY: sigaction with a zeroed, then filled struct naming our handler; alarm(2) is
    // async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = deadline_passed as *const () as usize;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGALRM, &action, std::ptr::null_mut());
        libc::alarm(seconds);
    }
    let done = work();
    // SAFETY: as above.
    unsafe { libc::alarm(0) };
    done
}

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
/// Not async-signal-safe: called within a deadline.
pub(crate) fn callers(faulting: usize, out: &mut [usize]) -> usize {
    let mut walk = Walk { faulting, found: false, out, count: 0 };
    // SAFETY: the walk's callback gets a pointer to `walk`, which outlives the call.
    unsafe { _Unwind_Backtrace(frame, std::ptr::from_mut(&mut walk).cast()) };
    walk.count
}

/// Where code outside the modules is, as `dladdr` names it.
pub(crate) struct Outside {
    /// The exported symbol containing it and the offset from it (if any).
    pub(crate) symbol: Option<(&'static str, usize)>,
    /// Its file's name; `None` for the program itself.
    pub(crate) file: Option<&'static str>,
}

/// Where code outside the modules is (`pc`), as `dladdr` names it. Not async-signal-safe:
/// called within a deadline.
pub(crate) fn outside_modules(pc: usize) -> Option<Outside> {
    // SAFETY: dladdr reads the dynamic linker's tables for any address and fills `info`; a
    // zeroed Dl_info is a valid initial value. Its strings live while their object stays loaded
    // (the process ends right after the report).
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(pc as *const c_void, &mut info) == 0 {
            return None;
        }
        let text = |p: *const libc::c_char| {
            (!p.is_null())
                .then(|| std::ffi::CStr::from_ptr(p).to_str().ok())
                .flatten()
                .filter(|s| !s.is_empty())
        };
        let symbol = text(info.dli_sname).map(|name| (name, pc.wrapping_sub(info.dli_saddr as usize)));
        let file = text(info.dli_fname).map(|path| path.rsplit('/').next().unwrap_or(path));
        // The program's own file: named by the caller.
        let program = info.dli_fbase as usize == program_base();
        Some(Outside { symbol, file: if program { None } else { file } })
    }
}

/// Where the program itself is mapped (`dladdr` of one of its functions).
fn program_base() -> usize {
    // SAFETY: as in `outside_modules`; `program_base` is the program's own function.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        libc::dladdr(program_base as *const () as *const c_void, &mut info);
        info.dli_fbase as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_that_cannot_finish_ends_the_process_with_the_signal_reported() {
        // SAFETY: the child only loops until the deadline ends it; the parent waits for it.
        let child = unsafe { libc::fork() };
        if child == 0 {
            // (SIGSEGV's default action here, as after the report's handler was reset.)
            within_deadline(libc::SIGSEGV, 1, || loop {
                std::hint::spin_loop();
            });
        }
        assert!(child > 0);
        let mut status = 0;
        // SAFETY: our child, and a status to write.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        assert!(libc::WIFSIGNALED(status), "status {status:#x}");
        assert_eq!(libc::WTERMSIG(status), libc::SIGSEGV, "not SIGALRM");
    }

    #[test]
    fn code_outside_the_modules_is_named_by_its_file_and_the_program_by_none() {
        let getpid = libc::getpid as *const () as usize;
        let Outside { symbol, file } = outside_modules(getpid).expect("the C library's code");
        assert!(file.is_some_and(|f| f.starts_with("libc.so")), "{file:?}");
        assert_eq!(symbol.map(|(name, offset)| (name.ends_with("getpid"), offset)), Some((true, 0)));
        let program = outside_modules(program_base as *const () as usize).expect("the program's code");
        assert_eq!(program.file, None, "the program itself");
    }
}
