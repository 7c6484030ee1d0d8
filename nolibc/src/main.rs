//! `smf-nolibc PATH`: loads the SMF module at PATH (any dialect) with `smf-core` and calls its
//! entry point; the process exits with the result (its low byte) as its status. A module that
//! does not load exits 1 with one line on stderr saying why.
//!
//! The file is read under the core's policy (`smf_runtime::file`), as the shell reads it: a FIFO
//! or stream waits at most `SMF_STREAM_IDLE_MS` at a time and `SMF_STREAM_TOTAL_MS` in all, a file or stream is at most
//! `SMF_MAX_MODULE_BYTES`, a large file is refused from its two ends unread, a file changed less
//! than `SMF_SETTLE_MS` ago is left to settle; the variables are read from the environment the
//! kernel left on the initial stack.
//!
//! A static x86-64 Linux executable with no libc and no dynamic loader: `_start` is below, the
//! heap is `heap.rs` (anonymous mappings), and every syscall, the core's included, goes through
//! rustix's `linux_raw` backend but two made here (`exit_group`, `clock_gettime`). It proves the
//! core runs where no C library does.

#![no_std]
#![no_main]
// `_start`, the heap and the call into the module are the few places that need it.
#![allow(unsafe_code)]

extern crate alloc;
// Linked for its symbols (memcpy, memset, ...), called by generated code.
extern crate smf_nolibc_mem;

mod heap;
mod out;

use alloc::vec::Vec;
use core::ffi::{c_char, CStr};
use core::fmt::Write as _;
use core::time::Duration;

use smf_runtime::exec::ExecAllocator;
use smf_runtime::file::{read_module, Clocks, ReadError, ReadLimits};
use smf_runtime::load::{LoadOptions, LoadedModule, TableResolver};

#[global_allocator]
static HEAP: heap::Heap = heap::Heap::new();

// The process entry: the kernel leaves argc, argv and the environment on the stack; hand its
// address to `start` with the stack aligned as the C ABI wants.
#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".globl _start",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {start}",
    "ud2",
    start = sym start,
);

/// Reads the arguments from the initial stack, runs, exits.
unsafe extern "C" fn start(stack: *const usize) -> ! {
    // SAFETY: the kernel's initial stack: argc, then argc argument pointers, then NULL, then
    // the environment (NULL-terminated), then the auxiliary vector.
    let (argc, argv) = unsafe { (*stack, stack.add(1).cast::<*const c_char>()) };
    // SAFETY: the environment starts right after argv's NULL; this runs before any other rustix
    // call (the feature `use-explicitly-provided-auxv` asks for it, see Cargo.toml).
    unsafe { rustix::param::init(stack.add(argc + 2).cast_mut().cast::<*mut u8>()) };
    // SAFETY: as above, the environment follows argv's NULL.
    let env = unsafe { Env::from_stack(stack.add(argc + 2).cast::<*const c_char>()) };
    let path = if argc == 2 {
        // SAFETY: argv[1] is a NUL-terminated string the kernel copied in.
        Some(unsafe { CStr::from_ptr(*argv.add(1)) })
    } else {
        None
    };
    let status = match path {
        Some(path) => run(path, env),
        None => {
            let _ = writeln!(out::Stderr, "usage: smf-nolibc MODULE.smf");
            2
        }
    };
    exit(status)
}

/// Ends the process with `status` (`exit_group(2)`; rustix keeps its process-exit call to its
/// experimental runtime, so the one syscall is made here).
fn exit(status: i32) -> ! {
    const EXIT_GROUP: usize = 231;
    // SAFETY: exit_group takes one integer and never returns; no memory is touched.
    unsafe {
        core::arch::asm!("syscall", in("rax") EXIT_GROUP, in("rdi") status as isize, options(noreturn, nostack));
    }
}

/// Loads the module at `path` and calls its entry point; the exit status.
fn run(path: &CStr, env: Env) -> i32 {
    let bytes = match read(path, env) {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = writeln!(out::Stderr, "smf-nolibc: {}: {e}", path.to_string_lossy_ascii());
            return 1;
        }
    };
    let exec = ExecAllocator::default();
    let module = match LoadedModule::load(&exec, &bytes, &TableResolver(&[]), &LoadOptions::default()) {
        Ok(module) => module,
        Err(e) => {
            let _ = writeln!(out::Stderr, "smf-nolibc: {}: {e}", path.to_string_lossy_ascii());
            return 1;
        }
    };
    // SAFETY: an SMF entry point is `main() -> i64` (the Simple runtime calls it so).
    match unsafe { module.entry_function::<extern "C" fn() -> i64>() } {
        Some(main) => (main.get()() & 0xFF) as i32,
        None => {
            let _ = writeln!(
                out::Stderr,
                "smf-nolibc: {}: the module has no entry point",
                path.to_string_lossy_ascii()
            );
            1
        }
    }
}

/// The whole module file, read under the limits the environment sets.
fn read(path: &CStr, env: Env) -> Result<Vec<u8>, ReadError> {
    let limits = ReadLimits::from_vars(|name| env.get(name));
    let mut bytes = Vec::new();
    let version =
        read_module(path, &limits, Clocks { wall: wall_clock, monotonic: monotonic_clock }, &mut bytes)?;
    bytes.truncate(version.len);
    Ok(bytes)
}

/// The wall clock (`CLOCK_REALTIME`), for the settle rule.
fn wall_clock() -> Option<Duration> {
    clock_time(0)
}

/// The clock that never steps back (`CLOCK_MONOTONIC`), for a stream's deadline.
fn monotonic_clock() -> Option<Duration> {
    clock_time(1)
}

/// Clock `id`'s time (`clock_gettime(2)`). Made here as a plain syscall: rustix's goes through
/// the vDSO, whose lookup costs this binary 3.3 KiB (`cargo xtask bench nolibc`) for a call
/// made a few times per run.
fn clock_time(id: usize) -> Option<Duration> {
    const CLOCK_GETTIME: usize = 228;
    let mut timespec = [0i64; 2];
    let result: isize;
    // SAFETY: clock_gettime writes one `struct timespec` (two 64-bit integers on x86-64) where
    // the pointer says, which is ours and that large; the syscall clobbers rcx and r11 only.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") CLOCK_GETTIME as isize => result,
            in("rdi") id,
            in("rsi") timespec.as_mut_ptr(),
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    if result != 0 {
        return None;
    }
    Some(Duration::new(u64::try_from(timespec[0]).ok()?, u32::try_from(timespec[1]).ok()?))
}

/// The environment the kernel left on the initial stack: `NAME=value` strings, NULL-terminated.
#[derive(Clone, Copy)]
struct Env(*const *const c_char);

impl Env {
    /// # Safety
    /// `envp` is the environment array the kernel left on the initial stack.
    unsafe fn from_stack(envp: *const *const c_char) -> Self {
        Self(envp)
    }

    /// The value of the variable `name`, if it is set.
    fn get(self, name: &str) -> Option<&'static [u8]> {
        let mut at = self.0;
        loop {
            // SAFETY: the kernel's environment array (`from_stack`) ends with NULL: `at` points
            // at an entry up to that NULL, which stops the walk.
            let entry = unsafe { *at };
            if entry.is_null() {
                return None;
            }
            // SAFETY: each entry is a NUL-terminated string on the initial stack, which lives as
            // long as the process and which this program never writes.
            let bytes = unsafe { CStr::from_ptr(entry) }.to_bytes();
            if let Some(value) = bytes.strip_prefix(name.as_bytes()).and_then(|rest| rest.strip_prefix(b"="))
            {
                return Some(value);
            }
            // SAFETY: `entry` was not the terminating NULL, so the next slot is in the array.
            at = unsafe { at.add(1) };
        }
    }
}

/// Paths printed as their ASCII, other bytes as `?` (no allocation, no UTF-8 tables).
trait LossyAscii {
    fn to_string_lossy_ascii(&self) -> out::Ascii<'_>;
}

impl LossyAscii for CStr {
    fn to_string_lossy_ascii(&self) -> out::Ascii<'_> {
        out::Ascii(self.to_bytes())
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let _ = writeln!(out::Stderr, "smf-nolibc: internal error: {}", info.message());
    exit(101)
}
