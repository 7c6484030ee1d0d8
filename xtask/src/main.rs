//! `cargo xtask <task>`: project automation that is more than one cargo command.
//!
//! Tasks: `examples [--check]` (write or check the example modules in `examples/`),
//! `bench` (the benchmarks, each a ratio against a real alternative measured in the same run),
//! `fuzz-seeds` and `fuzz` (the fuzz corpus and smoke runs), `cross-test` (aarch64 under
//! qemu-aarch64), `valgrind` (the `smf` tool on every example under memcheck), `callgrind` (instructions per
//! load, for judging the loader's speed by a number that does not drift), `mutants` (mutation
//! testing of the loader and the allocator).

// Casts here are of test and tool values known to be small.
#![allow(clippy::cast_possible_truncation)]

#[cfg(feature = "bench")]
mod alloc_count;
#[cfg(feature = "bench")]
mod bench;
#[cfg(not(feature = "bench"))]
mod bench_build;
#[cfg(feature = "bench")]
mod callgrind;
mod cross;
mod examples;
mod fuzz;
mod fuzz_coverage;
mod install;
#[cfg(feature = "bench")]
mod instructions;
mod maps;
mod mutants;
mod nolibc;
mod valgrind;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  examples [--check]   write the example modules to examples/ (--check: fail if stale)
  bench [NAME]... [--quick]
                       run the benchmarks (parse, exec, load, resolve, parallel, cache,
                       instantiate, lua, nolibc; all by default;
                       --quick: fewer iterations)
  fuzz-seeds           write each fuzz target's seed corpus to fuzz/corpus/TARGET
  fuzz [--seconds N] [--jobs J] [--dev] [TARGET]
                       run every fuzz target (or one) for N seconds each (default 60),
                       J at a time (default: one per core); --dev: unoptimized (CI's smoke)
  fuzz-coverage [TARGET]
                       region coverage per file of what the targets' corpora reach
  cross-test           run the allocator and format tests for aarch64 under qemu-aarch64
  valgrind             run, inspect and verify every example under valgrind's memcheck
  install --prefix DIR [--features cranelift]
                       install bin/smf, lib/libsmf.{a,so}, include/smf.h, lib/pkgconfig/smf.pc
                       (with the execution manager: SMF_EXEC_MANAGER in the .pc's Cflags)
  nolibc               build the static loader without libc (nolibc/); prints its path last
  maps                 the maps (ARCHITECTURE.md, README.md, ...) name only what exists; no import circle
  callgrind [--loads N]
                       instructions per in-memory load (callgrind; repeatable, unlike times)
  mutants [--in-diff BASE] [--shard K/N] [--file GLOB]...
                       cargo-mutants over core/runtime/src/{load,exec} (--in-diff: only
                       lines changed since BASE); report in target/mutants/mutants.out
";

/// The workspace root (the parent of this crate's directory).
fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// The release build of the C library and the `smf` tool as `cargo xtask install` makes it
/// (`-p smf-loader -p smf-tool`, default features), built once per process: every task that
/// runs a release `smf` or links a release `libsmf` asks for these same units, so that after
/// one of them (or the install) the others build nothing. (`-p smf-tool` alone builds the
/// library without its default features: a second library and tool.) Returns `target/release`.
fn release_smf() -> Result<PathBuf, String> {
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let root = workspace_root();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .current_dir(&root)
                .args(["build", "--quiet", "--release", "--locked", "-p", "smf-loader", "-p", "smf-tool"])
                .status()
                .map_err(|e| format!("cargo build: {e}"))?;
            status
                .success()
                .then_some(())
                .ok_or_else(|| "cargo build -p smf-loader -p smf-tool failed".into())
        })
        .clone()?;
    Ok(root.join("target/release"))
}

/// Installs `krate` (the `cargo SUBCOMMAND` it provides) with `cargo install --locked`, unless
/// `cargo SUBCOMMAND --version` already answers: CI starts from a fresh machine.
fn install_cargo_tool(subcommand: &str, krate: &str) -> Result<(), String> {
    let present =
        Command::new("cargo").args([subcommand, "--version"]).output().is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    println!("installing {krate}");
    let status =
        Command::new("cargo").args(["install", krate, "--locked"]).status().map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo install {krate} failed"))
    }
}

/// The tasks the `bench` feature builds (with the children they run).
const PERFORMANCE_TASKS: [&str; 5] =
    ["bench", "callgrind", "exec-manager-child", "callgrind-child", "footprint-child"];

/// Runs one of [`PERFORMANCE_TASKS`].
#[cfg(feature = "bench")]
fn performance(args: &[String]) -> Result<(), String> {
    match args[0].as_str() {
        "bench" => bench::run(&args[1..]),
        "callgrind" => callgrind::run_command(&args[1..]),
        // Not for people: the children the benchmarks run (under strace, callgrind, apart).
        "exec-manager-child" => bench::exec_manager_child(&args[1..]),
        "callgrind-child" => callgrind::child(&args[1..]),
        _ => bench::footprint_child(&args[1..]),
    }
}

/// Runs one of [`PERFORMANCE_TASKS`] in a build with the `bench` feature.
#[cfg(not(feature = "bench"))]
fn performance(args: &[String]) -> Result<(), String> {
    bench_build::run(args)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("examples") => examples::run(&args[1..]),
        Some(task) if PERFORMANCE_TASKS.contains(&task) => performance(&args),
        Some("fuzz-seeds") => fuzz::seeds_command(),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("fuzz-coverage") => fuzz_coverage::run(&args[1..]),
        Some("cross-test") => cross::run_command(),
        Some("valgrind") => valgrind::run_command(),
        Some("install") => install::run_command(&args[1..]),
        Some("nolibc") => nolibc::run_command(),
        Some("mutants") => mutants::run(&args[1..]),
        Some("maps") => maps::run_command(),
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
