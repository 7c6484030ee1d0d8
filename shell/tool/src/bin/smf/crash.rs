//! One line, not a bare signal, when a module function that `smf run` called crashes: the
//! signal, what it means, the faulting address, and the module and symbol being called
//! (`crate::cli::crash_context`); then exit status 1, as for any other problem.
//!
//! Handlers for SIGSEGV, SIGBUS, SIGFPE and SIGILL run on an alternate stack (so a stack
//! overflow is reported too) and do only async-signal-safe work: format into a buffer on the
//! stack, `write(2)`, `_exit`.

use std::io::Write as _;

/// The alternate signal stack's size (the handler formats one line; 64 KiB is plenty).
const ALT_STACK: usize = 64 << 10;

/// The signals reported, with what they mean.
const SIGNALS: [(libc::c_int, &str, &str); 4] = [
    (libc::SIGSEGV, "SIGSEGV", "invalid memory access"),
    (libc::SIGBUS, "SIGBUS", "bus error"),
    (libc::SIGFPE, "SIGFPE", "arithmetic error"),
    (libc::SIGILL, "SIGILL", "illegal instruction"),
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

extern "C" fn report(signal: libc::c_int, info: *mut libc::siginfo_t, _context: *mut libc::c_void) {
    let (name, meaning) =
        SIGNALS.iter().find(|(s, _, _)| *s == signal).map_or(("signal", "crash"), |&(_, n, m)| (n, m));
    // SAFETY: the kernel hands an SA_SIGINFO handler a valid siginfo_t; si_addr is the faulting
    // address for the four signals handled here.
    let address = if info.is_null() { 0 } else { (unsafe { (*info).si_addr() }) as usize };
    let mut line = Line { bytes: [0; 1024], len: 0 };
    let context = crate::cli::crash_context().unwrap_or("smf: a module function");
    // `write!` into a fixed buffer with integer and string arguments does not allocate.
    let _ = writeln!(line, "{context} crashed: {name} ({meaning}) at address {address:#x}");
    // SAFETY: write(2) and _exit(2) are async-signal-safe; the buffer is ours.
    unsafe {
        libc::write(2, line.bytes.as_ptr().cast(), line.len);
        libc::_exit(1);
    }
}
