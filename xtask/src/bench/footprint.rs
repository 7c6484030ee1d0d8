//! Benchmark "footprint": what the library costs the process beyond time. The kernel's
//! mappings (VMAs) a thousand small loaded modules add (each VMA is kernel memory and a step of
//! every page-fault lookup; `dlopen` adds four or five per library), and the size of the
//! release C library (`libsmf.so`) once stripped.

use std::process::Command;
use std::sync::Arc;

use smf::loader::{load, LoadRequest, SharedModule};
use smf_format::write::samples;
use smf_format::Dialect;

use super::report::{self, Goal};
use crate::workspace_root;

/// Modules loaded for the mapping count.
const MODULES: usize = 1000;

/// The process's mappings now (lines of `/proc/self/maps`).
fn mappings() -> Result<usize, String> {
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| format!("/proc/self/maps: {e}"))?;
    Ok(maps.lines().count())
}

/// The mappings [`MODULES`] small modules (code, read-only data, data) add while loaded.
fn vmas_per_thousand_modules() -> Result<usize, String> {
    let dialect = if cfg!(target_arch = "aarch64") { Dialect::R96 } else { Dialect::S128 };
    let bytes = samples::data_pointers(dialect);
    let before = mappings()?;
    let modules: Vec<Arc<SharedModule>> = (0..MODULES)
        .map(|_| load(&LoadRequest::bytes(&bytes).resolver_only(&())).map_err(|e| e.to_string()))
        .collect::<Result<_, String>>()?;
    let after = mappings()?;
    drop(modules);
    Ok(after.saturating_sub(before) * 1000 / MODULES)
}

/// The stripped size of the release `libsmf.so`, built here.
fn libsmf_stripped_bytes() -> Result<u64, String> {
    let root = workspace_root();
    crate::release_smf()?;
    let library = root.join("target/release/libsmf.so");
    let stripped = root.join("target/bench/libsmf.stripped.so");
    std::fs::create_dir_all(root.join("target/bench")).map_err(|e| e.to_string())?;
    let strip = Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&library)
        .status()
        .map_err(|e| format!("strip: {e}"))?;
    if !strip.success() {
        return Err(format!("strip {} failed", library.display()));
    }
    std::fs::metadata(&stripped).map(|m| m.len()).map_err(|e| format!("{}: {e}", stripped.display()))
}

/// The hidden child mode `footprint-child`: prints the mappings per 1000 modules, counted in a
/// process that has loaded nothing before.
pub(crate) fn child() -> Result<(), String> {
    println!("{}", vmas_per_thousand_modules()?);
    Ok(())
}

/// The mappings per 1000 modules, counted by a fresh process (this one has loaded and freed
/// modules of other benchmarks, and runs other threads).
fn vmas_in_a_fresh_process() -> Result<usize, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe).arg("footprint-child").output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("footprint-child: {}", String::from_utf8_lossy(&out.stderr)));
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().map_err(|e| format!("footprint-child's count: {e}"))
}

pub(super) fn run() -> Result<(), String> {
    let vmas = vmas_in_a_fresh_process()?;
    let library = libsmf_stripped_bytes()?;
    println!("footprint: {MODULES} small modules (code, read-only data, data) loaded at once; the C library");
    println!("  mappings added per 1000 modules        {vmas:>8}");
    println!("  libsmf.so, release, stripped           {:>8.1} KiB", library as f64 / 1024.0);
    report::footprint("vmas_per_1000_modules", vmas as u64, Goal::AtMost(50.0));
    report::footprint("libsmf_so_stripped_bytes", library, Goal::Reported);
    Ok(())
}
