//! Benchmark "nolibc": the size of the static loader without libc (`cargo xtask nolibc`),
//! stripped, against the smallest static program the C library makes (a `main` that returns
//! 0, `gcc -static -Os -s`): what a loader pays for not needing one.

use std::process::Command;

/// Target for the loader (bytes).
const TARGET: u64 = 64 << 10;

pub(super) fn run() -> Result<(), String> {
    let loader = crate::nolibc::build()?;
    let size = std::fs::metadata(&loader).map_err(|e| format!("{}: {e}", loader.display()))?.len();
    let scratch = crate::workspace_root().join("target/bench-nolibc");
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let source = scratch.join("empty.c");
    std::fs::write(&source, "int main(void) { return 0; }\n").map_err(|e| e.to_string())?;
    let program = scratch.join("empty-static");
    let gcc = Command::new("gcc").args(["-static", "-Os", "-s", "-o"]).arg(&program).arg(&source).status();
    let libc_size = match gcc {
        Ok(status) if status.success() => std::fs::metadata(&program).map(|m| m.len()).ok(),
        _ => None,
    };
    println!("nolibc: the static loader without libc ({})", loader.display());
    println!(
        "  smf-nolibc, stripped                 {:>8.1} KiB (target <= {} KiB)",
        kib(size),
        TARGET >> 10
    );
    match libc_size {
        Some(c) => println!(
            "  gcc -static -Os -s of an empty main  {:>8.1} KiB (glibc's start-up alone: {:.1}x the loader)",
            kib(c),
            c as f64 / size as f64
        ),
        None => println!("  (no static C library here to compare with)"),
    }
    super::report::footprint("nolibc_binary_bytes", size, super::report::Goal::AtMost(TARGET as f64));
    Ok(())
}

fn kib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0
}
