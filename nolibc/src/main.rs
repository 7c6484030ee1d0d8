//! `smf-nolibc PATH`: loads the SMF module at PATH (any dialect) with `smf-core` and calls its
//! entry point; the process exits with the result (its low byte) as its status. A module that
//! does not load exits 1 with one line on stderr saying why.
//!
//! A static x86-64 Linux executable with no libc and no dynamic loader: `_start` is below, the
//! heap is `heap.rs` (anonymous mappings), and every syscall, the core's included, goes through
//! rustix's `linux_raw` backend. It proves the core runs where no C library does.

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

use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use smf_core::exec::ExecAllocator;
use smf_core::load::{LoadOptions, LoadedModule, TableResolver};

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
    let path = if argc == 2 {
        // SAFETY: argv[1] is a NUL-terminated string the kernel copied in.
        Some(unsafe { CStr::from_ptr(*argv.add(1)) })
    } else {
        None
    };
    let status = match path {
        Some(path) => run(path),
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
fn run(path: &CStr) -> i32 {
    let bytes = match read(path) {
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

/// The whole file (`open`, `fstat`, `read` until its size or the end).
fn read(path: &CStr) -> Result<Vec<u8>, rustix::io::Errno> {
    let fd: OwnedFd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    let size = usize::try_from(rustix::fs::fstat(&fd)?.st_size).unwrap_or(0);
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(size).map_err(|_| rustix::io::Errno::NOMEM)?;
    bytes.resize(size, 0);
    let mut filled = 0;
    while filled < size {
        match rustix::io::read(&fd, &mut bytes[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    bytes.truncate(filled);
    Ok(bytes)
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
