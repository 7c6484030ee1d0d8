//! `cargo xtask bench`: benchmarks, each reported as a ratio against a real alternative run
//! in the same process, interleaved round by round so machine noise hits both sides alike, or
//! as a footprint; every result also as one `ratio NAME VALUE` / `footprint NAME VALUE` line
//! with its target, summed up at the end (`report.rs`).

mod cache;
mod chart;
mod code;
mod compression;
mod exec;
mod exec_manager;
pub(crate) mod footprint;
mod instantiate;
pub(crate) mod load;
pub(crate) mod load_real;
pub(crate) mod lua;
mod nolibc;
mod nolibc_parts;
mod parallel;
mod parse;
mod private_memory;
mod report;
mod resolve;
mod run_startup;
mod startup;

use std::hint::black_box;
use std::time::{Duration, Instant};

/// The benchmarks, in the order they run.
const NAMES: [&str; 15] = [
    "parse",
    "exec",
    "load",
    "real",
    "startup",
    "parallel",
    "cache",
    "instantiate",
    "lua",
    "compression",
    "exec-manager",
    "nolibc",
    "footprint",
    "chart",
    "resolve",
];

/// The footprint benchmarks' child process: `footprint-child` (the mappings 1,000 modules
/// add) or `footprint-child private SIDE PATH FUNCTION` (what one load adds to a process's
/// anonymous memory).
pub(crate) fn footprint_child(args: &[String]) -> Result<(), String> {
    match args {
        [what, rest @ ..] if what == "private" => private_memory::child(rest),
        _ => footprint::child(),
    }
}

/// The exec-manager benchmark's child process (`cargo xtask exec-manager-child
/// ours|jit[-single|-large][-cleanup]` or `none`).
pub(crate) fn exec_manager_child(args: &[String]) -> Result<(), String> {
    exec_manager::child(args.first().map_or("none", String::as_str))
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let quick = args.iter().any(|a| a == "--quick");
    let named: Vec<&str> = args.iter().map(String::as_str).filter(|a| !a.starts_with("--")).collect();
    if let Some(unknown) = named.iter().find(|n| !NAMES.contains(n)) {
        return Err(format!("unknown benchmark `{unknown}` ({})", NAMES.join(", ")));
    }
    let wanted = |name: &str| named.is_empty() || named.contains(&name);
    if cfg!(debug_assertions) {
        eprintln!("warning: benchmarks built without optimizations; the cargo alias builds with --release");
    }
    report::start()?;
    // The summary and the results file are written whatever happened, for what did run.
    let ran = run_wanted(quick, &wanted);
    let summary = report::summary();
    ran.and(summary)
}

/// Runs the benchmarks `wanted` accepts, in [`NAMES`] order.
fn run_wanted(quick: bool, wanted: &dyn Fn(&str) -> bool) -> Result<(), String> {
    if wanted("parse") {
        parse::run(if quick { 30 } else { 300 })?;
        println!();
    }
    if wanted("exec") {
        exec::run(if quick { 5 } else { 30 })?;
        println!();
    }
    if wanted("load") {
        load::run(if quick { 20 } else { 300 })?;
        println!();
    }
    if wanted("real") {
        let libraries = load_real::run(if quick { 10 } else { 41 }, quick)?;
        private_memory::run(&libraries)?;
        run_startup::run(if quick { 10 } else { 41 })?;
        println!();
    }
    if wanted("startup") {
        startup::run(if quick { 5 } else { 30 })?;
        println!();
    }
    if wanted("parallel") {
        parallel::run(if quick { 3 } else { 15 })?;
        println!();
    }
    if wanted("cache") {
        cache::run(if quick { 10 } else { 100 })?;
        println!();
    }
    if wanted("instantiate") {
        instantiate::run(if quick { 5 } else { 50 })?;
        println!();
    }
    if wanted("lua") {
        lua::run(if quick { 2 } else { 15 })?;
        println!();
    }
    if wanted("compression") {
        compression::run(if quick { 5 } else { 30 })?;
        println!();
    }
    if wanted("exec-manager") {
        exec_manager::run(if quick { 5 } else { 30 })?;
        println!();
    }
    if wanted("nolibc") && cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        nolibc::run()?;
        println!();
    }
    if wanted("footprint") {
        footprint::run()?;
        println!();
    }
    if wanted("chart") {
        chart::run(if quick { 5 } else { 30 }, quick)?;
        println!();
    }
    // Last: the libraries it looks names up in with `dlsym(RTLD_DEFAULT)` become dependencies
    // of the program (glibc's rule for a symbol found that way) and stay loaded whatever
    // `dlclose` says, and every later `dlopen` in the process searches them by name (a
    // `dlopen` of a loaded library took 3-4.7 us after it against 0.15-0.24 us before it).
    if wanted("resolve") {
        resolve::run(if quick { 20 } else { 200 }, if quick { 10 } else { 100 })?;
        println!();
    }
    Ok(())
}

/// Median per-call times of `fns`, measured interleaved for `rounds` rounds.
pub(crate) fn interleaved(rounds: usize, fns: &mut [&mut dyn FnMut() -> usize]) -> Vec<Duration> {
    interleaved_rounds(rounds, fns).into_iter().map(median).collect()
}

/// Every round's time of each of `fns`, measured interleaved for `rounds` rounds.
pub(crate) fn interleaved_rounds(rounds: usize, fns: &mut [&mut dyn FnMut() -> usize]) -> Vec<Vec<Duration>> {
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); fns.len()];
    for f in fns.iter_mut() {
        black_box(f()); // warm caches and lazy initialisation
    }
    for _ in 0..rounds {
        for (f, t) in fns.iter_mut().zip(&mut times) {
            let start = Instant::now();
            black_box(f());
            t.push(start.elapsed());
        }
    }
    times
}

/// The working directory `target/bench-NAME` of a benchmark that packs x86-64 objects, made if
/// needed; `None` (said) on another machine, where `smf pack` has nothing to read.
pub(crate) fn packing_dir(name: &str) -> Result<Option<std::path::PathBuf>, String> {
    if !cfg!(target_arch = "x86_64") {
        println!("{name}: skipped (smf pack reads x86-64 objects)");
        return Ok(None);
    }
    let dir = crate::workspace_root().join("target").join(format!("bench-{name}"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(Some(dir))
}

/// The release build of the `smf` tool (which `load::pack` builds).
pub(crate) fn smf_tool() -> std::path::PathBuf {
    crate::workspace_root().join("target").join("release").join("smf")
}

pub(crate) fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub(crate) fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub(crate) fn ratio(theirs: Duration, ours: Duration) -> f64 {
    theirs.as_secs_f64() / ours.as_secs_f64().max(1e-12)
}

/// The median of the round-by-round ratios `theirs[i] / ours[i]`: each ratio compares two
/// measurements taken moments apart, so noise that drifts over the run (frequency, neighbours
/// on the host) cancels in it rather than in the medians of each side.
pub(crate) fn median_ratio(theirs: &[Duration], ours: &[Duration]) -> f64 {
    ratio_percentiles(theirs, ours)[1]
}

/// The 10th, 50th and 90th percentiles of the round-by-round ratios `theirs[i] / ours[i]`: how
/// far the rounds spread around the median.
pub(crate) fn ratio_percentiles(theirs: &[Duration], ours: &[Duration]) -> [f64; 3] {
    let mut ratios: Vec<f64> = theirs.iter().zip(ours).map(|(&t, &o)| ratio(t, o)).collect();
    ratios.sort_by(f64::total_cmp);
    let at = |fraction: usize| ratios.get(ratios.len() * fraction / 10).copied().unwrap_or(0.0);
    [at(1), at(5), at(9)]
}
