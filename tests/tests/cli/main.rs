//! The `smf` tool, run as a child process on real files: one submodule per command (`inspect`,
//! `symbols`, `verify`, `ldd`, `dump`, `run`, `pack`, `prefetch`) and one for the command line
//! itself (`usage`). Here: the helpers they share, and the `SMF_RODATA_NOEXEC` pair, which stays
//! at the root because the second test reruns this binary filtered to the first by its name.

// Casts here are of test and tool values known to be small.
#![allow(clippy::cast_possible_truncation)]

use std::path::PathBuf;

use serde_json::Value;
use smf_format::write::{samples, ModuleBuilder, SymbolSpec};
use smf_format::Dialect;

mod dump;
mod inspect;
mod ldd;
mod pack;
mod prefetch;
mod run;
mod symbols;
mod usage;
mod verify;

struct Outcome {
    status: i32,
    out: String,
    err: String,
}

/// Runs the `smf` binary (built once per test run) with `args`.
fn smf(args: &[&str]) -> Outcome {
    smf_with_stdin(args, None)
}

/// The `smf` binary, built once per test run.
fn smf_binary() -> &'static PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| smf_tests::build_smf_package().join("smf"))
}

/// Runs the `smf` binary with `args` in an address space of at most `bytes` (util-linux's
/// `prlimit --as`: an allocation past it fails, and the tool with it).
fn smf_within_address_space(args: &[&str], bytes: u64) -> Outcome {
    let out = std::process::Command::new("prlimit")
        .arg(format!("--as={bytes}"))
        .arg("--")
        .arg(smf_binary())
        .args(args)
        .output()
        .expect("run prlimit (util-linux)");
    Outcome {
        status: out.status.code().unwrap_or(-1),
        out: String::from_utf8(out.stdout).unwrap(),
        err: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Runs the `smf` binary with `args`, `stdin` on its standard input.
fn smf_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> Outcome {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(smf_binary())
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run smf");
    if let Some(bytes) = stdin {
        child.stdin.take().expect("stdin").write_all(bytes).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait for smf");
    Outcome {
        status: out.status.code().unwrap_or(-1),
        out: String::from_utf8(out.stdout).unwrap(),
        err: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A fresh directory for this test's files.
fn scratch(name: &str) -> PathBuf {
    smf_tests::scratch("cli", name)
}

fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

fn json_of(path: &str) -> Value {
    let o = smf(&["inspect", "--json", path]);
    assert_eq!(o.status, 0, "{}", o.err);
    serde_json::from_str(&o.out).unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", o.out))
}

fn example(name: &str) -> String {
    smf_tests::workspace().join("examples").join(name).to_string_lossy().into_owned()
}

/// C `source` written to `dir/NAME.c`, compiled (gcc -O2 -fPIC) and packed into `dir/NAME.smf`;
/// its path.
#[cfg(target_arch = "x86_64")] // packs x86-64 objects
fn packed_source(dir: &std::path::Path, name: &str, source: &str) -> String {
    let path = dir.join(format!("{name}.c"));
    std::fs::write(&path, source).unwrap();
    let object = path.with_extension("o");
    let compiled = std::process::Command::new("gcc")
        .args(["-c", "-O2", "-fPIC"])
        .arg(&path)
        .arg("-o")
        .arg(&object)
        .status();
    assert!(compiled.unwrap().success(), "gcc failed on {name}.c");
    let module = dir.join(format!("{name}.smf")).to_string_lossy().into_owned();
    let packed = smf(&["pack", &object.to_string_lossy(), "-o", &module]);
    assert_eq!(packed.status, 0, "{}", packed.err);
    module
}

/// `tests/c/NAME.c` compiled (gcc -O2 -fPIC) and packed into a module in `dir`; its path.
#[cfg(target_arch = "x86_64")] // packs x86-64 objects
fn packed_c(dir: &std::path::Path, name: &str) -> String {
    let object = smf_tests::compile_c(dir, &format!("{name}.c"));
    let module = dir.join(format!("{name}.smf")).to_string_lossy().into_owned();
    let packed = smf(&["pack", &object.to_string_lossy(), "-o", &module]);
    assert_eq!(packed.status, 0, "{}", packed.err);
    module
}

/// The child side of the test below: loads a module with exported read-only data through the
/// shell and checks its protection against what `SMF_RODATA_NOEXEC` in this process asks for.
/// Run alone (no variable set), it checks the default.
#[test]
fn rodata_protection_follows_this_process_environment() {
    use smf_runtime::sys::Protection;
    let noexec = std::env::var_os(smf::process::RODATA_NOEXEC_ENV).is_some_and(|v| v == "1");
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b".text", &samples::RETURN_42);
    let rodata = b.add_rodata(b".rodata", b"constant");
    b.add_symbol(SymbolSpec::function(b"main", 0, 6));
    b.add_symbol(SymbolSpec::data(b"r", rodata, 0, 8));
    let module =
        smf::loader::load(&smf::loader::LoadRequest::bytes(&b.build().unwrap()).resolver_only(&())).unwrap();
    let exec = smf::process::exec();
    let expected = if noexec { Protection::Read } else { Protection::ReadExec };
    assert_eq!(
        exec.protection_at(module.symbol(b"r").unwrap()),
        Some(expected),
        "SMF_RODATA_NOEXEC={noexec}"
    );
    assert_eq!(exec.protection_at(module.symbol(b"main").unwrap()), Some(Protection::ReadExec));
}

/// `SMF_RODATA_NOEXEC=1` seals read-only data read-only and not executable; without it, it is
/// sealed with the code. The variable is read once per process, so each case runs this test
/// binary again, filtered to the test above.
#[test]
fn the_rodata_switch_is_read_from_the_environment() {
    for value in [None, Some("1")] {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child.args(["--exact", "rodata_protection_follows_this_process_environment", "--test-threads=1"]);
        match value {
            Some(v) => child.env(smf::process::RODATA_NOEXEC_ENV, v),
            None => child.env_remove(smf::process::RODATA_NOEXEC_ENV),
        };
        let out = child.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{value:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("1 passed"), "the child ran the check: {stdout}");
    }
}
