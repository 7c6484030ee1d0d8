//! The sweep of a real address-space limit, for every C entry point.
//!
//! A child process (this binary, running `address_space_limit_child` for one case) sets
//! RLIMIT_AS at its own size plus a margin, makes one call through the C ABI, lifts the limit
//! and prints the outcome; the margin grows from 0 by a sixteenth (at least 64 KiB) until the
//! call succeeds. Each call must succeed or fail with an error naming memory: the child dying
//! (SIGABRT from an infallible allocation, a panic that cannot allocate its message) fails the
//! parent's test, which runs one child per case so that one abort hides no other.

use std::ffi::CString;
use std::path::Path;

/// The largest margin tried (every case succeeds well below it).
const MAX_MARGIN: u64 = 2 << 30;

/// The size of this process's address space (VmSize).
pub(super) fn vm_size() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Runs `run` on a fresh `prepare()` under RLIMIT_AS at the process's size plus a margin, from
/// 0 upward, until it succeeds; prints each outcome (`margin M: ok` or `margin M: error E`,
/// with the thread's `smf_last_error`). Only `run` is under the limit: `prepare`, the state's
/// drop and the printing are not.
pub(super) fn sweep<S>(mut prepare: impl FnMut() -> S, mut run: impl FnMut(&S) -> bool) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let hard = getrlimit(Resource::As).maximum;
    let mut margin = 0u64;
    loop {
        let state = prepare();
        smf::ffi::clear_error();
        setrlimit(Resource::As, Rlimit { current: Some(vm_size() + margin), maximum: hard }).unwrap();
        let ok = run(&state);
        setrlimit(Resource::As, Rlimit { current: hard, maximum: hard }).unwrap();
        drop(state);
        if ok {
            println!("margin {margin}: ok");
            return;
        }
        println!("margin {margin}: error {}", smf::ffi::last_error());
        if margin > MAX_MARGIN {
            println!("gave up");
            return;
        }
        margin += (margin / 16).max(64 << 10);
    }
}

/// A path in the case's directory, for C.
pub(super) fn c_path(dir: &Path, name: &str) -> CString {
    CString::new(dir.join(name).into_os_string().into_encoded_bytes()).unwrap()
}

/// Writes the case's files, runs the child over them, and checks every outcome: an error
/// naming memory or, at the last margin, success; never a signal. With `fails_at_0`, the call
/// must fail at the tightest limit (it allocates in proportion to its input).
pub(super) fn sweep_in_child(case: &str, fails_at_0: bool, files: impl FnOnce(&Path)) {
    if let Err(failure) = swept_in_child(case, fails_at_0, files) {
        panic!("{failure}");
    }
}

/// [`sweep_in_child`]'s checks, the first that fails as an error.
pub(super) fn swept_in_child(case: &str, fails_at_0: bool, files: impl FnOnce(&Path)) -> Result<(), String> {
    let dir = smf_tests::scratch("rlimit", case);
    files(&dir);
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "address_space_limit_child", "--nocapture", "--test-threads", "1"])
        .env("SMF_RLIMIT_CASE", case)
        .env("SMF_RLIMIT_DIR", &dir)
        .env("SMF_SETTLE_MS", "0")
        // One malloc arena: a thread's own arena reserves its 64 MiB up front, which the
        // address-space limit then no longer sees grow.
        .env("MALLOC_ARENA_MAX", "1")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("{case}: the child died: {:?}\n{stdout}\n{stderr}", output.status));
    }
    // (The first outcome follows the test's name on its line.)
    let outcomes: Vec<&str> = stdout.lines().filter_map(|l| l.find("margin ").map(|at| &l[at..])).collect();
    let Some((last, errors)) = outcomes.split_last() else {
        return Err(format!("{case}: no outcome\n{stdout}"));
    };
    if !last.ends_with(": ok") {
        return Err(format!("{case}: never succeeded\n{stdout}"));
    }
    if let Some(error) = errors.iter().find(|e| !(e.contains(": error ") && e.contains("memory"))) {
        return Err(format!("{case}: {error}\n{stdout}"));
    }
    if fails_at_0 && errors.is_empty() {
        return Err(format!("{case}: succeeded at the tightest limit\n{stdout}"));
    }
    Ok(())
}
