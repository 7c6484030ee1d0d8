//! Modules waiting to be described to a debugger (`mod.rs`), and whether one listens.
//!
//! GDB (and LLDB) hear of the JIT interface's changes through a breakpoint on
//! `__jit_debug_register_code`, set as soon as the program or the library holding it is loaded
//! in the debugger: a load that finds the function's first instruction replaced by the
//! breakpoint knows that a debugger reads the list. So does one in a process that was traced
//! when it first loaded a module (a debugger, or `rr record`, which a debugger replays).
//! Otherwise a module only gets a number and a weak reference here; when a load finds a
//! debugger listening (one attached since), or [`describe_waiting`] is called, every module
//! still alive is described. A module released while waiting takes itself out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, Weak};

use super::Describable;
use crate::sync::lock;

/// The modules waiting, by number.
type Waiting = HashMap<u64, Weak<dyn Describable>>;

static WAITING: Mutex<Option<Waiting>> = Mutex::new(None);

/// [`WAITING`], locked (and taken around every fork from its first use).
fn waiting() -> MutexGuard<'static, Option<Waiting>> {
    crate::fork::hold_at_fork(crate::fork::Lock::DebuggersWaiting, &WAITING);
    lock(&WAITING)
}

/// A number for a module that may wait (never 0).
pub(super) fn number() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Puts `module` (numbered `number`) among those waiting; without memory for it, it is never
/// described (as when its object's memory cannot be had).
pub(super) fn wait(number: u64, module: Weak<dyn Describable>) {
    let mut waiting = waiting();
    let map = waiting.get_or_insert_with(HashMap::new);
    if map.try_reserve(1).is_ok() {
        map.insert(number, module);
    }
}

/// Takes module `number` out (released while waiting).
pub(super) fn forget(number: u64) {
    if let Some(map) = waiting().as_mut() {
        map.remove(&number);
    }
}

/// Describes to GDB every loaded module waiting to be described (those released meanwhile
/// are gone): for a program that knows a debugger attached since its modules were loaded (a
/// debugger may also call it: `call smf::debug::describe_waiting()`). The next load does it
/// anyway once a debugger listens.
pub fn describe_waiting() {
    // Taken out under the lock, described with no lock held (each module kept alive meanwhile).
    let modules: Vec<Weak<dyn Describable>> = match waiting().as_mut() {
        Some(map) if !map.is_empty() => {
            let mut modules = Vec::new();
            if modules.try_reserve_exact(map.len()).is_err() {
                return;
            }
            modules.extend(map.drain().map(|(_, module)| module));
            modules
        }
        _ => return,
    };
    for module in modules {
        if let Some(module) = module.upgrade() {
            super::describe_now(&*module);
        }
    }
}

/// Whether a debugger reads GDB's list: its breakpoint is on the interface's function, or the
/// process was traced when this was first asked.
pub(super) fn debugger_listening() -> bool {
    breakpoint_at(super::gdb::__jit_debug_register_code as extern "C" fn() as usize) || traced_at_first_load()
}

/// Whether the instruction at `function` is the breakpoint a debugger writes there.
#[allow(unsafe_code)]
fn breakpoint_at(function: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the first byte of one of this library's own functions, mapped readable (code
        // is read-execute); read volatile, as a debugger may change it.
        unsafe { std::ptr::read_volatile(function as *const u8) == 0xCC } // int3
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: as above; functions are 4-aligned there.
        unsafe { std::ptr::read_volatile(function as *const u32) == 0xD420_0000 }
        // brk #0
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = function;
        false
    }
}

/// Whether the process was traced (`TracerPid` in `/proc/self/status`) when first asked.
fn traced_at_first_load() -> bool {
    static TRACED: OnceLock<bool> = OnceLock::new();
    *TRACED.get_or_init(|| {
        // One read of a page's worth: `TracerPid` is in the file's first lines (the whole file
        // is under 2 KiB), where reading to the end asks its size and then reads it in 7 pieces
        // growing from 32 bytes, on every process's first load.
        use std::io::Read as _;
        let mut status = [0u8; 4096];
        let read = std::fs::File::open("/proc/self/status").and_then(|mut file| file.read(&mut status));
        names_a_tracer(status.get(..read.unwrap_or(0)).unwrap_or_default())
    })
}

/// Whether the text of a `/proc/PID/status` names a tracer (`TracerPid` other than 0).
fn names_a_tracer(status: &[u8]) -> bool {
    status
        .split(|&byte| byte == b'\n')
        .find_map(|line| line.strip_prefix(b"TracerPid:"))
        .is_some_and(|pid| pid.trim_ascii() != b"0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tracer_is_read_from_the_status_text() {
        assert!(names_a_tracer(b"Name:\tsmf\nPPid:\t1\nTracerPid:\t4242\nUid:\t0\n"));
        assert!(!names_a_tracer(b"Name:\tsmf\nTracerPid:\t0\nUid:\t0\n"));
        assert!(!names_a_tracer(b"Name:\tsmf\nPPid:\t1\n"), "no line: no tracer");
        // This process's own status has the line (read as the first load reads it).
        let own = std::fs::read("/proc/self/status").unwrap();
        assert!(own.split(|&b| b == b'\n').any(|line| line.starts_with(b"TracerPid:")));
    }

    #[test]
    fn a_breakpoint_is_told_from_the_code_it_replaces() {
        #[cfg(target_arch = "x86_64")]
        let (planted, code): ([u8; 4], [u8; 4]) = ([0xCC, 0x90, 0x90, 0x90], [0xC3, 0x90, 0x90, 0x90]);
        #[cfg(target_arch = "aarch64")]
        let (planted, code): ([u8; 4], [u8; 4]) =
            (0xD420_0000u32.to_le_bytes(), 0xD65F_03C0u32.to_le_bytes());
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        {
            let (planted, code) = (u32::from_ne_bytes(planted), u32::from_ne_bytes(code));
            assert!(breakpoint_at(std::ptr::from_ref(&planted) as usize));
            assert!(!breakpoint_at(std::ptr::from_ref(&code) as usize));
        }
        // No debugger has its breakpoint on the interface while unit tests run.
        assert!(!breakpoint_at(super::super::gdb::__jit_debug_register_code as extern "C" fn() as usize));
    }
}
