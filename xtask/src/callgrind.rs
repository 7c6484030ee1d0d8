//! `cargo xtask callgrind [--loads N]`: instructions per in-memory load, counted by valgrind's
//! callgrind, so that a change to the loader can be judged by a number that does not drift
//! with the machine's load (timings on these machines do).
//!
//! Two modules: the `load` benchmark's (200 functions packed from C, with data, bss and
//! read-only data), and `tests/c/tables.c` with `tests/c/jump_tables.c` packed together (read-only
//! pointer tables and switch jump tables: rodata with data relocations). For each, this program
//! runs itself under callgrind twice: once loading and releasing the module N times (default
//! 1,000) after a warm-up, once with the warm-up only. The difference divided by N is the cost
//! of one `LoadedModule::load` + lookup of one symbol + release, without the program's start-up
//! or the first load's one-time costs.

use std::path::Path;
use std::process::Command;

use smf_runtime::exec::ExecAllocator;
use smf_runtime::load::{LoadOptions, LoadedModule};

use crate::workspace_root;

/// The hidden child mode: `callgrind-child MODULE N`.
pub(crate) fn child(args: &[String]) -> Result<(), String> {
    if let [side, path, function, loads] = args {
        return crate::bench::load_real::child(side, path, function, loads);
    }
    let [module, loads] = args else {
        return Err("usage: callgrind-child MODULE N | callgrind-child smf|dlopen PATH FUNCTION N".into());
    };
    let loads: usize = loads.parse().map_err(|_| format!("bad count {loads}"))?;
    let bytes = std::fs::read(module).map_err(|e| format!("{module}: {e}"))?;
    let exec = ExecAllocator::default();
    let options = LoadOptions::default();
    for _ in 0..crate::instructions::WARM_UP + loads {
        let loaded = LoadedModule::load(&exec, &bytes, &(), &options).map_err(|e| e.to_string())?;
        std::hint::black_box(loaded.symbol(b"f7"));
    }
    Ok(())
}

/// Total instructions of one run of the child under callgrind.
fn count(module: &Path, loads: usize, out: &Path) -> Result<u64, String> {
    crate::instructions::of_child(&[module.display().to_string(), loads.to_string()], out)
}

pub(crate) fn run_command(args: &[String]) -> Result<(), String> {
    let loads = match args {
        [] => 1000,
        [flag, n] if flag == "--loads" => n.parse().map_err(|_| format!("bad count {n}"))?,
        _ => return Err("usage: cargo xtask callgrind [--loads N]".into()),
    };
    crate::valgrind::ensure_valgrind()?;
    let dir = workspace_root().join("target").join("bench-load");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (module, _) = crate::bench::load::build(&dir)?;
    let plain = plain_module(&dir)?;
    let tables = tables_module(&dir)?;
    for (what, module) in [
        ("", &module),
        (" without unwind tables (so without data relocations)", &plain),
        (" of read-only tables (data relocations)", &tables),
    ] {
        let base = count(module, 0, &dir.join("callgrind.base"))?;
        let total = count(module, loads, &dir.join("callgrind.loads"))?;
        let per_load = total.saturating_sub(base) as f64 / loads as f64;
        println!(
            "callgrind: {:.1}k instructions per in-memory load{what} + lookup + release ({loads} loads)",
            per_load / 1000.0
        );
    }
    for library in crate::bench::load_real::build(false)? {
        let [smf, dlopen] = crate::bench::load_real::instructions(&library, 20)?;
        println!(
            "callgrind: {:.0}k instructions per use of {} (load, lookup, call, release; 20 uses), dlopen {:.0}k ({:.2}x)",
            smf / 1e3,
            library.name,
            dlopen / 1e3,
            dlopen / smf
        );
    }
    Ok(())
}

/// The benchmark's C compiled without unwind tables: the same functions, no `.eh_frame`, so a
/// module with no data relocations at all (what a load cost before the extension).
fn plain_module(dir: &Path) -> Result<std::path::PathBuf, String> {
    let object = dir.join("bench-plain.o");
    let status = Command::new("gcc")
        .args(["-c", "-O2", "-fPIC", "-fno-asynchronous-unwind-tables", "-fno-exceptions"])
        .arg(dir.join("bench.c"))
        .arg("-o")
        .arg(&object)
        .status()
        .map_err(|e| format!("gcc: {e}"))?;
    if !status.success() {
        return Err("gcc failed on bench.c".into());
    }
    let module = dir.join("bench-plain.smf");
    crate::bench::load::pack(&[object], &module)?;
    Ok(module)
}

/// `tests/c/tables.c` and `tests/c/jump_tables.c`, compiled and packed into one module in `dir`.
fn tables_module(dir: &Path) -> Result<std::path::PathBuf, String> {
    let mut objects = Vec::new();
    for stem in ["tables", "jump_tables"] {
        let object = dir.join(format!("{stem}.o"));
        let source = workspace_root().join("tests/c").join(format!("{stem}.c"));
        let status = Command::new("gcc")
            .args(["-c", "-O2", "-fPIC"])
            .arg(&source)
            .arg("-o")
            .arg(&object)
            .status()
            .map_err(|e| format!("gcc: {e}"))?;
        if !status.success() {
            return Err(format!("gcc failed on {}", source.display()));
        }
        objects.push(object);
    }
    let module = dir.join("tables.smf");
    crate::bench::load::pack(&objects, &module)?;
    Ok(module)
}
