//! `cargo xtask valgrind`: the library under valgrind's memcheck, with no memcheck error:
//! - the `smf` tool: every example module is run (its entry point; the two-module example with
//!   `--lib`) and verified, one module of each dialect inspected, listed and disassembled too,
//!   each with the same output and exit status as without valgrind;
//! - the C ABI: the C test programs of `tests/tests/c_abi.rs` (every `rt_*` and `smf_module_*`
//!   function, against the static and the shared library) run under memcheck, through that
//!   test's `SMF_C_TEST_RUNNER`.
//!
//! Installs valgrind (Debian package) when run as root and it is missing.
//!
//! Why: a library that loads code is used inside programs people debug with valgrind; this is
//! where a crash under valgrind (such as reading the host's auxiliary vector) shows up.

use std::path::Path;
use std::process::{Command, Output};

use crate::workspace_root;

/// memcheck's exit status when it found an error (our own tools never exit with it).
const MEMCHECK_FAILED: i32 = 99;

pub(crate) fn ensure_valgrind() -> Result<(), String> {
    let has = || Command::new("valgrind").arg("--version").output().is_ok_and(|o| o.status.success());
    if has() {
        return Ok(());
    }
    println!("installing valgrind");
    for args in [&["update", "-qq"][..], &["install", "-y", "-qq", "valgrind"]] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| format!("apt-get: {e}"))?;
        if !status.success() {
            return Err(format!("apt-get {} failed ({status})", args.join(" ")));
        }
    }
    if has() {
        Ok(())
    } else {
        Err("valgrind still missing".into())
    }
}

/// The tool invocations checked: each example run and verified (the loader's paths: its memory,
/// the host's auxiliary vector, the C library's symbols); the rich example of each dialect also
/// inspected (text and JSON), its symbols and imports listed and its code disassembled (the
/// tool's own safe code over the format's, once per dialect is enough: a memcheck run of the
/// tool costs seconds).
fn invocations(examples: &Path) -> Result<Vec<Vec<String>>, String> {
    let mut modules: Vec<String> = std::fs::read_dir(examples)
        .map_err(|e| format!("{}: {e}", examples.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|x| x == "smf"))
        .map(|path| path.to_string_lossy().into_owned())
        .collect();
    modules.sort();
    let mut out = Vec::new();
    for module in &modules {
        let library = examples.join("mathlib.smf").to_string_lossy().into_owned();
        let run = if module.ends_with("/app.smf") {
            vec!["run".into(), "--lib".into(), library, module.clone()]
        } else {
            vec!["run".into(), module.clone()]
        };
        out.push(run);
        out.push(vec!["verify".into(), module.clone()]);
        if module.contains("/rich.") {
            out.push(vec!["inspect".into(), module.clone()]);
            out.push(vec!["inspect".into(), "--json".into(), module.clone()]);
            out.push(vec!["symbols".into(), module.clone()]);
            out.push(vec!["ldd".into(), module.clone()]);
            out.push(vec!["dump".into(), "--disassemble".into(), module.clone()]);
        }
    }
    Ok(out)
}

/// `smf ARGS` under memcheck against the same natively: an error unless memcheck is silent
/// and both give the same status and output.
fn check(smf: &Path, args: &[String]) -> Result<(), String> {
    let native = run(Command::new(smf).args(args))?;
    let checked = run(Command::new("valgrind")
        .args(["-q", "--error-exitcode=99", "--leak-check=no"])
        .arg(smf)
        .args(args))?;
    let stderr = String::from_utf8_lossy(&checked.stderr);
    let line = format!("smf {}", args.join(" "));
    if checked.status.code() == Some(MEMCHECK_FAILED) || stderr.contains("==") {
        Err(format!("{line}: memcheck reported\n{stderr}"))
    } else if checked.status.code() != native.status.code() || checked.stdout != native.stdout {
        Err(format!(
            "{line}: under valgrind {} with {:?}, natively {} with {:?}\n{stderr}",
            checked.status,
            String::from_utf8_lossy(&checked.stdout),
            native.status,
            String::from_utf8_lossy(&native.stdout)
        ))
    } else {
        Ok(())
    }
}

fn run(cmd: &mut Command) -> Result<Output, String> {
    cmd.output().map_err(|e| format!("{cmd:?}: {e}"))
}

pub(crate) fn run_command() -> Result<(), String> {
    ensure_valgrind()?;
    let root = workspace_root();
    let smf = crate::release_smf()?.join("smf");
    let checks = invocations(&root.join("examples"))?;
    // Each invocation is one single-threaded valgrind process: one per core at a time.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(checks.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while let Some(args) = checks.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
                    let failure = check(&smf, args).err();
                    failures.lock().unwrap_or_else(|p| p.into_inner()).extend(failure);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    if !failures.is_empty() {
        return Err(failures.join("\n"));
    }
    println!("valgrind: {} invocations of smf, same results as natively, no memcheck error", checks.len());
    // `--workspace`: features resolved as `cargo test --workspace` resolves them, so that after
    // it nothing is built again (`-p smf-tests` would build a second set of dependencies).
    let c_tests = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .args(["test", "-q", "--workspace", "--test", "c_abi"])
        .env("SMF_C_TEST_RUNNER", format!("valgrind -q --error-exitcode={MEMCHECK_FAILED} --leak-check=no"))
        .status()
        .map_err(|e| format!("cargo test: {e}"))?;
    if !c_tests.success() {
        return Err("the C ABI tests failed under valgrind".into());
    }
    println!("valgrind: the C ABI tests pass under memcheck");
    Ok(())
}
