//! One line, not a bare signal, when a module function that `smf run` called crashes: the
//! signal, what it means, the faulting address, the module and symbol being called
//! ([`set_context`]) and where the crash happened, as `function+offset (module)`
//! when it is in a module's code ([`name_code`]); then the process ends with the signal, as
//! the program would have (a shell sees status 128 + the signal's number: 139 for SIGSEGV).
//! Below the line, for a crash outside the modules (in a library a module called, or in smf
//! itself) or an `abort()`, where it happened; then the module frames that called it, one a
//! line (`call_chain.rs`, under a deadline that ends the process with the same signal).
//!
//! Handlers for SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT (`abort()`) run on an alternate
//! stack (so a stack overflow is reported too), once (`SA_RESETHAND`: the default action is
//! back), and do only async-signal-safe work: format into a buffer on the stack, `write(2)`,
//! `raise(3)` of the signal again, which ends the process as soon as the handler returns.

use std::io::Write as _;
use std::sync::OnceLock;

use smf::debug::{FunctionName, Functions};
use smf::loader::SharedModule;

/// The alternate signal stack's size (the handler formats one line; 64 KiB is plenty).
const ALT_STACK: usize = 64 << 10;

/// The signals reported, with what they mean.
const SIGNALS: [(libc::c_int, &str, &str); 5] = [
    (libc::SIGSEGV, "SIGSEGV", "invalid memory access"),
    (libc::SIGBUS, "SIGBUS", "bus error"),
    (libc::SIGFPE, "SIGFPE", "arithmetic error"),
    (libc::SIGILL, "SIGILL", "illegal instruction"),
    (libc::SIGABRT, "SIGABRT", "the program aborted"),
];

/// Installs the handlers (once, before calling into a module). Failing to is not fatal: a crash
/// is then reported by the shell as before.
pub(crate) fn install() {
    // SAFETY: a fresh anonymous mapping for the alternate stack, never freed (the process may
    // crash at any time after this); sigaltstack and sigaction get valid, initialized structs.
    unsafe {
        let stack = libc::mmap(
            std::ptr::null_mut(),
            ALT_STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if stack == libc::MAP_FAILED {
            return;
        }
        let alt = libc::stack_t { ss_sp: stack, ss_flags: 0, ss_size: ALT_STACK };
        if libc::sigaltstack(&alt, std::ptr::null_mut()) != 0 {
            return;
        }
        for (signal, _, _) in SIGNALS {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = report as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESETHAND;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// One module `smf run` loaded: its functions by address, their names by symbol index, its
/// file name.
struct CodeNames {
    functions: Functions,
    /// `(where its name is, name)` of each function, sorted by the first.
    names: Vec<(FunctionName, String)>,
    module: String,
}

/// What `smf run` is calling (`"smf: FILE: `SYMBOL`"`): set before the call and never changed
/// after, so the handler may read it.
static CONTEXT: OnceLock<String> = OnceLock::new();

/// Sets what `smf run` is calling, `what`, for the crash report (before the call; once).
pub(crate) fn set_context(what: String) {
    let _ = CONTEXT.set(what);
}

/// The modules `smf run` loaded: set before the call, read by the handler (an atomic load,
/// then binary searches: nothing that allocates or locks).
static CODE_NAMES: OnceLock<Vec<CodeNames>> = OnceLock::new();

/// Records the functions of `modules`, so that a crash names the function it happened in.
pub(crate) fn name_code(modules: &[&SharedModule]) {
    let code_names = modules
        .iter()
        .map(|module| {
            let functions = Functions::of(module.loaded());
            let mut names: Vec<(FunctionName, String)> = functions
                .iter()
                .map(|f| {
                    let name = f.name(module.loaded()).map(String::from_utf8_lossy).unwrap_or_default();
                    (f.name, name.into_owned())
                })
                .collect();
            names.sort_unstable_by_key(|&(index, _)| index);
            names.dedup_by_key(|&mut (index, _)| index);
            let module = module.path().and_then(std::path::Path::file_name);
            let module = module.map_or_else(|| "module".into(), |n| n.to_string_lossy().into_owned());
            CodeNames { functions, names, module }
        })
        .collect();
    let _ = CODE_NAMES.set(code_names);
}

/// The function `pc` is in, how far into it, and its module's file name: as
/// [`Functions::at`] finds it (the sized function around it before a label without a size).
fn code_name(pc: usize) -> Option<(&'static str, usize, &'static str)> {
    CODE_NAMES.get()?.iter().find_map(|code| {
        let (function, offset) = code.functions.at(pc)?;
        let at = code.names.binary_search_by_key(&function.name, |&(index, _)| index).ok()?;
        Some((code.names[at].1.as_str(), offset, code.module.as_str()))
    })
}

/// The program counter and the stack pointer when the signal arrived, from the handler's
/// context.
///
/// # Safety
/// `context` is the `ucontext_t` the kernel handed an `SA_SIGINFO` handler, or null.
unsafe fn registers(context: *mut libc::c_void) -> Option<(usize, usize)> {
    let context = context.cast::<libc::ucontext_t>();
    if context.is_null() {
        return None;
    }
    // SAFETY: a valid ucontext_t per the contract; the saved registers are plain integers.
    #[cfg(target_arch = "x86_64")]
    let (pc, sp) = unsafe {
        let registers = &(*context).uc_mcontext.gregs;
        (registers[libc::REG_RIP as usize] as u64, registers[libc::REG_RSP as usize] as u64)
    };
    // SAFETY: as above.
    #[cfg(target_arch = "aarch64")]
    let (pc, sp) = unsafe { ((*context).uc_mcontext.pc, (*context).uc_mcontext.sp) };
    // Elsewhere the saved registers are not read: no function is named.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    return None;
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    Some((usize::try_from(pc).ok()?, usize::try_from(sp).ok()?))
}

/// `si_code`s of a signal a process sent: `kill`, `sigqueue`, `tgkill` (`raise`).
const SI_USER: libc::c_int = 0;
const SI_QUEUE: libc::c_int = -1;
const SI_TKILL: libc::c_int = -6;

/// How near the stack pointer a fault is taken for a stack overflow: the pages a function's
/// frame may reach below it before touching them (compilers probe every page of larger ones).
const STACK_OVERFLOW_REACH: usize = 64 << 10;

/// A fixed buffer that formats without allocating.
struct Line {
    bytes: [u8; 1024],
    len: usize,
}

impl std::io::Write for Line {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&data[..n]);
        self.len += n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

extern "C" fn report(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let (name, meaning) =
        SIGNALS.iter().find(|(s, _, _)| *s == signal).map_or(("signal", "crash"), |&(_, n, m)| (n, m));
    // SAFETY: the kernel hands an SA_SIGINFO handler a valid siginfo_t: si_code says who sent
    // it (above 0: the kernel, for a fault, whose address si_addr holds; SI_USER, SI_QUEUE and
    // SI_TKILL: a process, with kill, sigqueue or raise, whose id si_pid holds; other values
    // at or below 0, a timer or I/O, which is none of these).
    let (sent, address) = match unsafe { info.as_ref() } {
        None => (None, 0),
        Some(info) if matches!(info.si_code, SI_USER | SI_QUEUE | SI_TKILL) => {
            // SAFETY: as above, a signal a process sent.
            (Some(Some(unsafe { info.si_pid() })), 0)
        }
        Some(info) if info.si_code <= 0 => (Some(None), 0),
        // SAFETY: as above, a fault.
        Some(info) => (None, unsafe { info.si_addr() } as usize),
    };
    // SAFETY: the kernel's context for this SA_SIGINFO handler.
    let registers = unsafe { registers(context) };
    let mut line = Line { bytes: [0; 1024], len: 0 };
    let caller = CONTEXT.get().map_or("smf: a module function", String::as_str);
    // `write!` into a fixed buffer with integer and string arguments does not allocate.
    // SAFETY: getpid(2) is async-signal-safe and takes no arguments.
    let own = unsafe { libc::getpid() };
    match sent {
        Some(Some(pid)) if signal == libc::SIGABRT && pid == own => {
            let _ = write!(line, "{caller} aborted (SIGABRT: abort() or a failed assertion)");
        }
        Some(Some(pid)) => {
            let _ = write!(line, "{caller} was sent {name} by process {pid} (raise or kill), not a fault");
        }
        Some(None) => {
            let _ = write!(line, "{caller} was sent {name} (by a timer or I/O), not a fault");
        }
        None => {
            let _ = write!(line, "{caller} crashed: {name} ({meaning}) at address {address:#x}");
            let at_stack = registers.is_some_and(|(_, sp)| sp.abs_diff(address) < STACK_OVERFLOW_REACH);
            if signal == libc::SIGSEGV && at_stack {
                let _ = write!(line, ", at the stack pointer: a stack overflow");
            }
        }
    }
    let in_module = registers.and_then(|(pc, _)| code_name(pc));
    if let Some((function, offset, module)) = in_module {
        let _ = write!(line, " in {function}+{offset:#x} ({module})");
    }
    let _ = writeln!(line);
    // SAFETY: write(2) is async-signal-safe; the buffer is ours.
    unsafe { libc::write(2, line.bytes.as_ptr().cast(), line.len) };
    // Where it happened and the module frames that led there, for a fault or the program's own
    // abort (not a signal another process sent): work that may not finish, under a deadline.
    let own_doing = sent.is_none() || (signal == libc::SIGABRT && sent == Some(Some(own)));
    if let Some((pc, _)) = registers.filter(|_| own_doing) {
        crate::call_chain::within_deadline(signal, crate::call_chain::DEADLINE_SECONDS, || {
            if in_module.is_none() {
                write_outside(pc, sent.is_none());
            }
            write_callers(pc);
        });
    }
    // SAFETY: raise(3) is async-signal-safe. The handler was reset to the default action when
    // the signal came (`SA_RESETHAND`), and the signal is blocked while it runs: raised again,
    // it ends the process once the handler returns.
    unsafe { libc::raise(signal) };
}

/// The line naming where code outside the modules crashed (`fault`) or aborted: a library's
/// function, or smf's own code (a bug of smf's, not the module's).
fn write_outside(pc: usize, fault: bool) {
    let mut line = Line { bytes: [0; 1024], len: 0 };
    let what = if fault { "in" } else { "raised in" };
    let _ = match crate::call_chain::outside_modules(pc).map(|o| (o.symbol, o.file)) {
        Some((Some((symbol, offset)), Some(file))) => {
            writeln!(line, "  {what} {symbol}+{offset:#x} ({file})")
        }
        Some((None, Some(file))) => writeln!(line, "  {what} {file}"),
        Some((_, None)) => {
            writeln!(line, "  {what} smf's own code, not a module's (a bug of smf's: please report it)")
        }
        None => writeln!(line, "  {what} code outside the modules and every library, at {pc:#x}"),
    };
    // SAFETY: write(2) is async-signal-safe; the buffer is ours.
    unsafe { libc::write(2, line.bytes.as_ptr().cast(), line.len) };
}

/// Module frames shown at most in a call chain.
const MOST_CALLERS: usize = 16;

/// One line per module frame that called the code that crashed at `pc` (`called from
/// function+offset (module)`, the offset of the return address), the host's frames left out;
/// past [`MOST_CALLERS`], how many more.
fn write_callers(pc: usize) {
    let mut frames = [0usize; 256];
    let count = crate::call_chain::callers(pc, &mut frames);
    // A return address is one past its call: the call's byte names the function.
    let in_modules = frames[..count].iter().filter_map(|&ip| code_name(ip.checked_sub(1)?));
    let mut shown = 0;
    let mut more = 0;
    for (function, offset, module) in in_modules {
        if shown == MOST_CALLERS {
            more += 1;
            continue;
        }
        let mut line = Line { bytes: [0; 1024], len: 0 };
        let _ = writeln!(line, "  called from {function}+{:#x} ({module})", offset + 1);
        shown += 1;
        // SAFETY: write(2) is async-signal-safe; the buffer is ours.
        unsafe { libc::write(2, line.bytes.as_ptr().cast(), line.len) };
    }
    if more > 0 {
        let mut line = Line { bytes: [0; 1024], len: 0 };
        let _ = writeln!(line, "  ... and {more} more module frames");
        // SAFETY: as above.
        unsafe { libc::write(2, line.bytes.as_ptr().cast(), line.len) };
    }
}
