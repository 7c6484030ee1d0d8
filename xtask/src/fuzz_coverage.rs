//! `cargo xtask fuzz-coverage [TARGET]`: what the fuzz targets reach. Each target (or one) is
//! built with coverage instrumentation and run over its corpus (the last `cargo xtask fuzz`
//! run's, else the committed seeds) by `cargo fuzz coverage`; the profiles are merged and
//! `llvm-cov report` gives region coverage per file of the core and the shell, over every
//! target's binary at once (a region any target reaches counts), and the core's total, which
//! the target is judged on.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fuzz::TARGETS;
use crate::workspace_root;

/// The host triple cargo-fuzz builds for.
const TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// An LLVM tool of the nightly toolchain (`llvm-tools-preview`, installed if missing).
fn llvm_tool(name: &str) -> Result<PathBuf, String> {
    let sysroot =
        Command::new("rustc").args(["+nightly", "--print", "sysroot"]).output().map_err(|e| e.to_string())?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    let tool = sysroot.join("lib/rustlib").join(TRIPLE).join("bin").join(name);
    if !tool.exists() {
        println!("installing llvm-tools-preview (nightly)");
        let status = Command::new("rustup")
            .args(["component", "add", "llvm-tools-preview", "--toolchain", "nightly"])
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() || !tool.exists() {
            return Err(format!("{name}: not found, and llvm-tools-preview could not be installed"));
        }
    }
    Ok(tool)
}

/// The corpus `target`'s coverage is measured on.
fn corpus(fuzz: &Path, target: &str) -> PathBuf {
    let run = fuzz.join("target/corpus-run").join(target);
    let has_files = std::fs::read_dir(&run).is_ok_and(|mut entries| entries.next().is_some());
    if has_files {
        run
    } else {
        fuzz.join("corpus").join(target)
    }
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let only = args.first().map(String::as_str);
    if let Some(name) = only.filter(|name| !TARGETS.iter().any(|(t, _)| t == name)) {
        return Err(format!("unknown fuzz target {name}"));
    }
    let (profdata_tool, cov_tool) = (llvm_tool("llvm-profdata")?, llvm_tool("llvm-cov")?);
    let fuzz = workspace_root().join("fuzz");
    let mut profiles = Vec::new();
    let mut binaries = Vec::new();
    for (target, _) in TARGETS.iter().filter(|(t, _)| only.is_none_or(|o| o == *t)) {
        let corpus = corpus(&fuzz, target);
        println!("coverage of {target} over {}", corpus.display());
        let status = Command::new("cargo")
            .args(["+nightly", "fuzz", "coverage", target])
            .arg(&corpus)
            .current_dir(&fuzz)
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("cargo fuzz coverage {target} failed"));
        }
        profiles.push(fuzz.join("coverage").join(target).join("coverage.profdata"));
        binaries.push(
            fuzz.join("target").join(TRIPLE).join("coverage").join(TRIPLE).join("release").join(target),
        );
    }
    let merged = fuzz.join("coverage").join("merged.profdata");
    let status = Command::new(&profdata_tool)
        .args(["merge", "-sparse"])
        .args(&profiles)
        .arg("-o")
        .arg(&merged)
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("llvm-profdata merge failed".into());
    }
    let mut report = Command::new(&cov_tool);
    report.arg("report").arg(format!("-instr-profile={}", merged.display()));
    for (i, binary) in binaries.iter().enumerate() {
        if i == 0 {
            report.arg(binary);
        } else {
            report.arg(format!("-object={}", binary.display()));
        }
    }
    report.arg("-ignore-filename-regex=(\\.cargo|\\.rustup|rustc|/fuzz/)");
    let output = report.output().map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!("llvm-cov report failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    summarize(&text);
    Ok(())
}

/// The core's files that are test support, not code input reaches: the simulated kernel and
/// the sample modules (the core's total is printed with and without them).
const TEST_SUPPORT: [&str; 2] = ["core/runtime/src/exec/fake.rs", "core/format/src/write/samples.rs"];

/// Prints each core and shell file's region coverage, then the core's total.
fn summarize(report: &str) {
    let root = workspace_root();
    let root = root.to_string_lossy();
    let (mut regions, mut missed) = (0u64, 0u64);
    let (mut support_regions, mut support_missed) = (0u64, 0u64);
    println!("{:<60} {:>8} {:>8} {:>8}", "file", "regions", "missed", "cover");
    for line in report.lines() {
        let mut fields = line.split_whitespace();
        let (Some(file), Some(total), Some(miss)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let (Ok(total), Ok(miss)) = (total.parse::<u64>(), miss.parse::<u64>()) else { continue };
        let file = file.strip_prefix(root.as_ref()).map_or(file, |f| f.trim_start_matches('/'));
        if !(file.starts_with("core/") || file.starts_with("shell/")) {
            continue;
        }
        let cover = if total == 0 { 100.0 } else { 100.0 * (total - miss) as f64 / total as f64 };
        println!("{file:<60} {total:>8} {miss:>8} {cover:>7.1}%");
        if file.starts_with("core/") {
            regions += total;
            missed += miss;
        }
        if TEST_SUPPORT.contains(&file) {
            support_regions += total;
            support_missed += miss;
        }
    }
    let percent = |regions: u64, missed: u64| {
        if regions == 0 {
            0.0
        } else {
            100.0 * (regions - missed) as f64 / regions as f64
        }
    };
    println!("coverage core {:.1}% of {regions} regions ({missed} missed)", percent(regions, missed));
    let (regions, missed) = (regions - support_regions, missed - support_missed);
    println!(
        "coverage core_without_test_support {:.1}% of {regions} regions ({missed} missed; without {})",
        percent(regions, missed),
        TEST_SUPPORT.join(", ")
    );
}
