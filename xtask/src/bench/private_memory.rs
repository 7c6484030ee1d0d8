//! Private memory, in the `real` group: the anonymous memory a loaded real library adds to a
//! process (`/proc/self/smaps_rollup`'s `Anonymous`, after `malloc_trim`: heap, the loader's
//! pages, and pages of a file mapping a relocation wrote), against `dlopen` of the same
//! objects linked with `gcc -shared`. Each side is measured in a fresh process
//! (`footprint-child private SIDE PATH FUNCTION`), first load of the process, the library kept
//! loaded after one call; the median of [`RUNS`] processes.
//!
//! - `loaded_private_bytes_vs_dlopen_<library>`: ours over what the target allows, twice
//!   `dlopen`'s plus the module's writable data (at most 1 meets it).
//! - `first_load_real_<library>_vs_dlopen`: the time of that first load and call, `dlopen`'s
//!   over ours (the median of the rounds' ratios): a process's first load, where pages come
//!   fresh from the kernel (`load_real.rs` times loads after many others, pages recycled).
//! - `first_load_fixed_bytes`: what the first load of a one-function module adds (every page
//!   the process's first load faults in ahead of need, and the module's few own), at most
//!   256 KiB.

// malloc_trim is a C function; calling what a load found needs unsafe.
#![allow(unsafe_code)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::load_real::Library;
use super::report::{self, Goal};

/// Fresh processes measured per side.
const RUNS: usize = 11;

/// What the first load may add beyond the module's own: 256 KiB.
const FIXED_LIMIT: u64 = 256 << 10;

// The C library's: gives the heap's free memory back to the kernel.
unsafe extern "C" {
    fn malloc_trim(pad: usize) -> i32;
}

/// This process's anonymous memory now, in bytes, after giving the heap's free memory back.
fn anonymous_bytes() -> Result<u64, String> {
    // SAFETY: malloc_trim only releases free memory of the C library's heap.
    unsafe { malloc_trim(0) };
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup")
        .map_err(|e| format!("/proc/self/smaps_rollup: {e}"))?;
    rollup
        .lines()
        .find_map(|line| line.strip_prefix("Anonymous:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| "/proc/self/smaps_rollup: no Anonymous line".into())
}

/// The hidden child mode `footprint-child private smf|dlopen PATH FUNCTION`: prints the
/// anonymous bytes one load of the library (kept loaded, its function called once) adds to
/// this process.
pub(crate) fn child(args: &[String]) -> Result<(), String> {
    let [side, path, function] = args else {
        return Err("usage: footprint-child private smf|dlopen PATH FUNCTION".into());
    };
    let path = Path::new(path);
    let before = anonymous_bytes()?;
    let start = Instant::now();
    let (after, took) = match side.as_str() {
        "smf" => {
            let kept = smf::loader::load(&smf::loader::LoadRequest::path(path))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            // SAFETY: the benchmark's functions take and return a long.
            let f = unsafe { kept.loaded().function::<extern "C" fn(i64) -> i64>(function.as_bytes()) }
                .ok_or_else(|| format!("{}: no function {function}", path.display()))?;
            std::hint::black_box(f.get()(5));
            let took = start.elapsed();
            let after = anonymous_bytes()?;
            drop(kept);
            (after, took)
        }
        "dlopen" => {
            let handle = super::load_real::open_shared(path)?;
            let called = handle.call(function, 5);
            let took = start.elapsed();
            let after = called.and_then(|_| anonymous_bytes());
            drop(handle);
            (after?, took)
        }
        _ => return Err(format!("unknown side {side}")),
    };
    println!("{} {}", after.saturating_sub(before), took.as_nanos());
    Ok(())
}

/// What one fresh process's first load adds to its anonymous memory, and how long the load
/// and the call took.
fn measured_once(side: &str, path: &Path, function: &str) -> Result<(u64, Duration), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(&exe)
        .args(["footprint-child", "private", side])
        .arg(path)
        .arg(function)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("footprint-child private {side}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    match (fields.next(), fields.next()) {
        (Some(Ok(bytes)), Some(Ok(nanos))) => Ok((bytes, Duration::from_nanos(nanos))),
        _ => Err(format!("footprint-child printed {text:?}")),
    }
}

/// [`RUNS`] fresh processes a side, the two sides alternated: each side's median bytes, and
/// each round's first-load times (ours, `dlopen`'s).
fn measured(library: &Library) -> Result<([u64; 2], [Vec<Duration>; 2]), String> {
    let mut bytes = [Vec::new(), Vec::new()];
    let mut times = [Vec::new(), Vec::new()];
    for round in 0..RUNS {
        let sides = [("smf", &library.module, 0), ("dlopen", &library.shared, 1)];
        for (side, path, i) in if round % 2 == 0 { sides } else { [sides[1], sides[0]] } {
            let (b, t) = measured_once(side, path, library.function)?;
            bytes[i].push(b);
            times[i].push(t);
        }
    }
    let median = |mut v: Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let [ours, theirs] = bytes;
    Ok(([median(ours), median(theirs)], times))
}

/// The module's writable data (data and bss), in bytes.
fn writable_bytes(module: &Path) -> Result<u64, String> {
    let bytes = std::fs::read(module).map_err(|e| format!("{}: {e}", module.display()))?;
    let options = smf_format::ParseOptions::default();
    let tables = smf_format::module::ModuleTables::check(&bytes, &options)
        .map_err(|e| format!("{}: {e}", module.display()))?;
    Ok(tables.read_write_size())
}

/// Builds the one-function module the fixed cost is measured with, in `dir`.
fn one_function_module(dir: &Path) -> Result<std::path::PathBuf, String> {
    let source = dir.join("one_function.c");
    std::fs::write(&source, "long one_function(long x) { return x + 1; }\n").map_err(|e| e.to_string())?;
    let object = dir.join("one_function.o");
    let status = Command::new("gcc")
        .args(["-c", "-O2", "-fPIC"])
        .arg(&source)
        .arg("-o")
        .arg(&object)
        .status()
        .map_err(|e| format!("gcc: {e}"))?;
    if !status.success() {
        return Err("gcc one_function.c failed".into());
    }
    let module = dir.join("one_function.smf");
    super::load::pack(&[object], &module)?;
    Ok(module)
}

/// Measures and reports every library's private memory and the first load's fixed cost.
pub(super) fn run(libraries: &[Library]) -> Result<(), String> {
    let dir = crate::workspace_root().join("target").join("bench-real");
    println!("private memory: anonymous bytes one load adds to a fresh process (median of {RUNS})");
    for library in libraries {
        let ([ours, theirs], [our_times, their_times]) = measured(library)?;
        let writable = writable_bytes(&library.module)?;
        let allowed = 2 * theirs + writable;
        let ratio = ours as f64 / allowed.max(1) as f64;
        let [_, first_load, _] = super::ratio_percentiles(&their_times, &our_times);
        println!(
            "  {:<10} smf {:>6} KiB, dlopen {:>6} KiB, writable data {:>5} KiB: {ratio:.2} of 2x dlopen + writable data; first load {:.0} us against {:.0} us",
            library.name,
            ours >> 10,
            theirs >> 10,
            writable >> 10,
            super::us(super::median(our_times.clone())),
            super::us(super::median(their_times.clone())),
        );
        report::ratio(library.results[2], ratio, Goal::AtMost(1.0));
        report::ratio(library.results[3], first_load, Goal::Reported);
    }
    let module = one_function_module(&dir)?;
    let mut fixed: Vec<u64> = (0..RUNS)
        .map(|_| measured_once("smf", &module, "one_function").map(|(bytes, _)| bytes))
        .collect::<Result<_, _>>()?;
    fixed.sort_unstable();
    let fixed = fixed[RUNS / 2];
    println!("  a one-function module's first load adds {} KiB", fixed >> 10);
    report::footprint("first_load_fixed_bytes", fixed, Goal::AtMost(FIXED_LIMIT as f64));
    Ok(())
}
