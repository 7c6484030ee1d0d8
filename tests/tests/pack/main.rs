//! The packer on real compiler output: C sources compiled by gcc at test time (`-O2 -fPIC`),
//! packed into every dialect that can hold them (by the library, `smf_tool::pack::pack`),
//! loaded and called; every result must equal the same function compiled natively by gcc and
//! called from a generated C driver. Also: jump tables and read-only pointer tables (packed with
//! the code), calls across two packed modules; and through the `smf` binary: `smf pack`'s notes,
//! `smf run`'s crash reports and linking, and each thing SMF cannot represent is a clear error.
//!
//! One submodule per topic; here, the helpers they share: compiling, packing, loading, calling,
//! and the native build every result is compared with.

#![cfg(target_arch = "x86_64")]
// Calling loaded code goes through the (unsafe) typed lookup; test values are small.
#![allow(unsafe_code, clippy::cast_possible_truncation)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use smf_format::Dialect;
use smf_runtime::exec::ExecAllocator;
use smf_runtime::load::{LoadOptions, LoadedModule, Resolved, Resolver};
use smf_tests::{build_smf_package, workspace};
use smf_tool::pack::{Note, PackFailure};

mod code_sections;
mod constructors;
mod driver_libraries;
mod fuzz_regressions;
mod linking;
mod matches_native;
mod refusals;
mod tool_commands;

/// A call: function name and integer arguments.
type Call = (&'static str, &'static [i64]);

fn smf_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_smf_package().join("smf"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = smf_tests::profile_dir().join("pack-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn source(name: &str) -> PathBuf {
    let examples = workspace().join("examples/c").join(name);
    if examples.exists() {
        examples
    } else {
        workspace().join("tests/c").join(name)
    }
}

/// Results of `calls` from the sources compiled natively with a generated driver. A source's
/// own `main` is renamed `example_main` (callable as "main").
fn native(dir: &Path, sources: &[&str], calls: &[Call]) -> Vec<i64> {
    let mut driver = String::from("#include <stdio.h>\n");
    for (name, args) in calls {
        let name = if *name == "main" { "example_main" } else { name };
        let params = if args.is_empty() { "void".to_owned() } else { vec!["long"; args.len()].join(", ") };
        driver.push_str(&format!("long {name}({params});\n"));
    }
    driver.push_str("int main(void) {\n");
    for (name, args) in calls {
        let name = if *name == "main" { "example_main" } else { name };
        let args: Vec<String> = args.iter().map(|a| format!("{a}L")).collect();
        driver.push_str(&format!("    printf(\"%ld\\n\", {name}({}));\n", args.join(", ")));
    }
    driver.push_str("    return 0;\n}\n");
    let driver_path = dir.join("driver.c");
    std::fs::write(&driver_path, driver).unwrap();
    let exe = dir.join("native");
    let mut gcc = Command::new("gcc");
    gcc.args(["-O2", "-fPIC", "-Dmain=example_main", "-o"]).arg(&exe);
    for s in sources {
        gcc.arg(source(s));
    }
    gcc.args(["-lm", "-lstdc++"]);
    // The driver's own main must keep its name: compile it separately.
    let driver_obj = dir.join("driver.o");
    run(Command::new("gcc").args(["-O2", "-c", "-o"]).arg(&driver_obj).arg(&driver_path));
    gcc.arg(&driver_obj);
    run(&mut gcc);
    let out = run(&mut Command::new(&exe));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.parse().unwrap()).collect()
}

/// `gcc -c -O2` (with `extra`) into an object in `dir`; returns (its name for messages, its bytes).
fn compile(dir: &Path, source: &Path, extra: &[&str]) -> (String, Vec<u8>) {
    let object = dir.join(source.file_name().unwrap()).with_extension("o");
    run(Command::new("gcc").args(["-c", "-O2"]).args(extra).arg(source).arg("-o").arg(&object));
    (object.display().to_string(), std::fs::read(&object).unwrap())
}

/// `gcc -c -O2` then the packer into `dialect`; returns the module bytes and the packer's notes.
fn pack(
    dir: &Path,
    source_name: &str,
    dialect: Dialect,
    extra: &[&str],
) -> Result<(Vec<u8>, Vec<Note>), PackFailure> {
    smf_tool::pack::pack(&[compile(dir, &source(source_name), extra)], dialect)
}

/// Whether `notes` has one that `smf pack` prints by default (not routine) containing `text`.
fn says(notes: &[Note], text: &str) -> bool {
    notes.iter().any(|note| !note.routine && note.text.contains(text))
}

fn allocator() -> &'static ExecAllocator {
    static EXEC: OnceLock<ExecAllocator> = OnceLock::new();
    EXEC.get_or_init(ExecAllocator::default)
}

struct Loaded(Vec<Arc<LoadedModule<'static>>>);

impl Resolver for Loaded {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        self.0.iter().find_map(|m| Some(Resolved { addr: m.symbol(name)?, keepalive: Some(m.clone()) }))
    }
}

fn call(module: &LoadedModule<'_>, name: &str, args: &[i64]) -> i64 {
    type Integers = extern "C" fn(i64, i64, i64, i64, i64, i64) -> i64;
    // SAFETY: every function called here takes integer arguments and returns an integer.
    let f = unsafe { module.function::<Integers>(name.as_bytes()) };
    let f = f.unwrap_or_else(|| panic!("no function {name}")).get();
    let mut a = [0i64; 6];
    a[..args.len()].copy_from_slice(args);
    f(a[0], a[1], a[2], a[3], a[4], a[5])
}

fn check_source(name: &str, dialects: &[Dialect], calls: &[Call]) {
    let dir = scratch(name.trim_end_matches(".c"));
    let expected = native(&dir, &[name], calls);
    for &dialect in dialects {
        let (bytes, notes) =
            pack(&dir, name, dialect, &["-fPIC"]).unwrap_or_else(|e| panic!("{name} {dialect}: {e}"));
        // Routine drops (unwind tables, compiler identification) are not reported by default.
        assert!(!says(&notes, "dropped section"), "{notes:?}");
        let module = LoadedModule::load(allocator(), &bytes, &(), &LoadOptions::default()).unwrap();
        let got: Vec<i64> = calls.iter().map(|(f, args)| call(&module, f, args)).collect();
        assert_eq!(got, expected, "{name} packed as {dialect}");
    }
}

const ALL: [Dialect; 3] = [Dialect::S128, Dialect::R96, Dialect::R72];

const WITH_DATA: [Dialect; 2] = [Dialect::S128, Dialect::R96];
