//! Benchmark "nolibc": the size of the static loader without libc (`cargo xtask nolibc`),
//! stripped, against the smallest static program the C library makes (a `main` that returns
//! 0, `gcc -static -Os -s`): what a loader pays for not needing one; beside it the system's own
//! dynamic loader (this program's `PT_INTERP`), and where the loader's code goes
//! (`nolibc_parts.rs`).

use std::process::Command;

use super::nolibc_parts;

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
    match system_loader() {
        Some((path, bytes)) => println!(
            "  the system's dynamic loader          {:>8.1} KiB ({}: {:.2}x the loader)",
            kib(bytes),
            path,
            bytes as f64 / size as f64
        ),
        None => println!("  (no dynamic loader named by this program to compare with)"),
    }
    print_parts(size);
    super::report::footprint("nolibc_binary_bytes", size, super::report::Goal::AtMost(TARGET as f64));
    Ok(())
}

/// Where the loader's code goes, by part, and what is left without the parts a loader of plain
/// modules could do without (scaled to the stripped binary's `size`).
fn print_parts(size: u64) {
    let settings =
        [("CARGO_PROFILE_RELEASE_STRIP", "false"), ("CARGO_PROFILE_RELEASE_DEBUG", "line-tables-only")];
    let measured = crate::nolibc::build_into("target/lines", &settings)
        .and_then(|binary| nolibc_parts::measure(&binary));
    let (parts, read_only) = match measured {
        Ok(measured) => measured,
        Err(e) => return println!("  (where the code goes: not measured, {e})"),
    };
    println!("  where the code goes (the same build with line tables; objdump and addr2line):");
    for (part, bytes) in &parts {
        let optional = if part.optional() { "  (optional)" } else { "" };
        println!("    {:<66} {:>6.1} KiB{optional}", part.describe(), kib(*bytes));
    }
    println!("    {:<66} {:>6.1} KiB", "read-only data (messages' text, tables)", kib(read_only));
    let code: u64 = parts.values().sum();
    let optional: u64 = parts.iter().filter(|(part, _)| part.optional()).map(|(_, bytes)| bytes).sum();
    let messages = parts.get(&nolibc_parts::Part::Messages).copied().unwrap_or(0);
    println!(
        "  without the optional parts {:.1} KiB of code ({:.1} KiB of the binary); without the messages' code too {:.1} KiB ({:.1} KiB)",
        kib(code - optional),
        kib(size - optional),
        kib(code - optional - messages),
        kib(size - optional - messages),
    );
}

/// The dynamic loader this program names (`PT_INTERP`): its path and size.
fn system_loader() -> Option<(String, u64)> {
    use object::read::elf::{FileHeader as _, ProgramHeader as _};
    let exe = std::fs::read("/proc/self/exe").ok()?;
    let header = object::elf::FileHeader64::<object::Endianness>::parse(&*exe).ok()?;
    let endian = header.endian().ok()?;
    let interp = header
        .program_headers(endian, &*exe)
        .ok()?
        .iter()
        .find(|segment| segment.p_type(endian) == object::elf::PT_INTERP)?
        .interpreter(endian, &*exe)
        .ok()??;
    let path = std::str::from_utf8(interp).ok()?.to_owned();
    let bytes = std::fs::metadata(&path).ok()?.len();
    Some((path, bytes))
}

fn kib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0
}
