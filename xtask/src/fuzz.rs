//! `cargo xtask fuzz-seeds` writes the seed corpus; `cargo xtask fuzz --seconds N` runs the
//! parser and loader fuzz targets for N seconds in all (installing cargo-fuzz first if it is missing), on nightly
//! with sanitizers when a nightly toolchain exists, else on stable without (`-s none`).

use std::fs;
use std::process::Command;

use smf_core::write::{samples, ModuleBuilder, SymbolSpec};
use smf_core::{Dialect, HeaderPlacement, RelocKind};

use crate::workspace_root;

/// Seeds: the reference modules, the rich modules, modules with data relocations and with
/// constructors and destructors, stubbed
/// modules, a short-form template one.
fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for d in Dialect::ALL {
        out.push((format!("return42-{d}"), samples::return_42(d)));
        out.push((format!("rich-{d}"), samples::rich(d)));
        out.push((format!("data-pointers-{d}"), samples::data_pointers(d)));
        out.push((format!("call-arrays-{d}"), samples::call_arrays(d)));
        if d != Dialect::R72 {
            out.push((format!("unwind-table-{d}"), samples::unwind_table(d)));
        }
    }
    for d in [Dialect::S128, Dialect::R96] {
        let mut b = ModuleBuilder::new(d);
        b.stub(b"#!/usr/bin/env simple\n");
        b.placement(HeaderPlacement::Trailer);
        b.add_code(b".text", &samples::RETURN_42);
        let main = b.add_symbol(SymbolSpec::function(b"main", 0, 6));
        let kind = if d == Dialect::S128 { RelocKind::Abs32 } else { RelocKind::Pc32 };
        b.add_relocation(1, main, kind, 0);
        b.entry_point(0);
        if let Ok(bytes) = b.build() {
            out.push((format!("stubbed-{d}"), bytes));
        }
    }
    out.push(("large-R96".into(), samples::large(Dialect::R96, 40, 120)));
    out
}

pub(crate) fn seeds_command() -> Result<(), String> {
    let dir = workspace_root().join("fuzz").join("corpus").join("parse");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, bytes) in seeds() {
        let path = dir.join(name);
        fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    println!("wrote seeds to {}", dir.display());
    Ok(())
}

fn has(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).output().is_ok_and(|o| o.status.success())
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let seconds = args
        .windows(2)
        .find(|w| w[0] == "--seconds")
        .map(|w| w[1].parse::<u64>().map_err(|e| format!("--seconds: {e}")))
        .transpose()?
        .unwrap_or(60);
    if !has("cargo", &["fuzz", "--version"]) {
        println!("installing cargo-fuzz");
        let status = Command::new("cargo")
            .args(["install", "cargo-fuzz", "--locked"])
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err("cargo install cargo-fuzz failed".into());
        }
    }
    let nightly = has("cargo", &["+nightly", "--version"]);
    let fuzz_dir = workspace_root().join("fuzz");
    // The fuzzer writes new inputs into its corpus directory: fuzz a scratch copy so the
    // committed seeds stay as they are.
    let scratch = fuzz_dir.join("target").join("corpus-run");
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    for entry in fs::read_dir(fuzz_dir.join("corpus").join("parse")).map_err(|e| e.to_string())?.flatten() {
        let _ = fs::copy(entry.path(), scratch.join(entry.file_name()));
    }
    // Both targets share the seeds and split the time.
    for target in ["parse", "load"] {
        let mut cmd = Command::new("cargo");
        if nightly {
            cmd.arg("+nightly");
        }
        cmd.args(["fuzz", "run"]);
        if !nightly {
            cmd.args(["-s", "none"]);
        }
        cmd.arg(target).arg(&scratch);
        cmd.args(["--", &format!("-max_total_time={}", (seconds / 2).max(1)), "-rss_limit_mb=2048"]);
        let status = cmd.current_dir(&fuzz_dir).status().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!(
                "the fuzzer found a crash: see fuzz/artifacts/{target}, copy the input to fuzz/regressions/"
            ));
        }
    }
    Ok(())
}
