//! `fork` while other threads use the library: the child, which has only the forking thread,
//! must find every process-wide lock free and what it guards whole (`shell/src/fork.rs` takes
//! them around the fork). Threads load and release modules through the Rust door and the C
//! ABI (the registry, the handle table, the index of code, the debugger's list, the executable
//! memory allocator, the C library's names) while the main thread forks again and again; each
//! child loads, calls and releases a module the same ways, and must be done within seconds.

#![allow(unsafe_code)] // fork, waitpid, kill and the C ABI

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

extern "C" {
    fn fork() -> i32;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
    fn kill(pid: i32, signal: i32) -> i32;
    fn _exit(status: i32) -> !;
}
const SIGKILL: i32 = 9;

/// Forks made: the stress asks for 1,000.
const FORKS: usize = 1_000;
/// How long a child may take before it counts as hung.
const CHILD_DEADLINE: Duration = Duration::from_secs(10);

fn module() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/recursion.smf")
}

/// One use of the module through each door: loaded by path (Rust), `fib(10)` called, released;
/// loaded and released through the C ABI. False if anything went wrong.
fn use_module(path: &Path, c_path: &CString) -> bool {
    let Ok(module) = smf::loader::load(&smf::loader::LoadRequest::path(path)) else { return false };
    // SAFETY: recursion.smf's `fib` is C's `long fib(long)`.
    let fib = unsafe { module.function::<extern "C" fn(i64) -> i64>(b"fib") };
    if fib.map(|f| f.get()(10)) != Some(55) {
        return false;
    }
    drop(module);
    // SAFETY: a NUL-terminated path; the handle is released once.
    let handle = unsafe { smf::ffi::smf_module::smf_module_load(c_path.as_ptr()) };
    if handle.is_null() {
        return false;
    }
    smf::ffi::smf_module::smf_module_release(handle);
    true
}

/// Whether process `child` ends within `deadline` (waited for on its pidfd, which becomes
/// readable when it ends).
fn exits_within(child: i32, deadline: Duration) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    use rustix::process::{pidfd_open, Pid, PidfdFlags};
    let pid = Pid::from_raw(child).expect("a child's pid");
    let pidfd = pidfd_open(pid, PidfdFlags::empty()).expect("pidfd_open (Linux 5.3)");
    let timeout = Timespec { tv_sec: deadline.as_secs() as i64, tv_nsec: 0 };
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    poll(&mut fds, Some(&timeout)).is_ok_and(|ready| ready == 1)
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "qemu-user, which runs the aarch64 tests, itself deadlocks when a process forks beside threads"
)]
fn a_thousand_forks_beside_threads_using_the_library_give_children_that_work() {
    // It forks: alone, so that the child has no other test's threads to inherit.
    if !smf_tests::alone("a_thousand_forks_beside_threads_using_the_library_give_children_that_work") {
        return;
    }
    let path = module();
    let c_path = CString::new(path.to_str().unwrap()).unwrap();
    assert!(use_module(&path, &c_path), "the module works before any fork");
    let stop = AtomicBool::new(false);
    let uses = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    assert!(use_module(&path, &c_path), "a use beside the forks failed");
                    uses.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let mut hung = Vec::new();
        let mut failed = Vec::new();
        for i in 0..FORKS {
            // SAFETY: the child uses the library, then leaves through _exit without running
            // anything of the parent's (no destructor, no test harness).
            let child = unsafe { fork() };
            if child == 0 {
                let ok = use_module(&path, &c_path);
                // SAFETY: ends the child at once.
                unsafe { _exit(if ok { 0 } else { 1 }) };
            }
            assert!(child > 0, "fork failed");
            if !exits_within(child, CHILD_DEADLINE) {
                // SAFETY: our child, hung; reaped right below.
                unsafe { kill(child, SIGKILL) };
                hung.push(i);
            }
            let mut status = 0;
            // SAFETY: our child, and a status to write.
            assert_eq!(unsafe { waitpid(child, &mut status, 0) }, child);
            if status != 0 && !hung.contains(&i) {
                failed.push((i, status));
            }
        }
        stop.store(true, Ordering::Relaxed);
        assert!(hung.is_empty(), "children hung (a lock held at the fork): {hung:?}");
        assert!(failed.is_empty(), "children failed (index, status): {failed:?}");
    });
    assert!(uses.load(Ordering::Relaxed) > 0, "the threads used the library meanwhile");
}
