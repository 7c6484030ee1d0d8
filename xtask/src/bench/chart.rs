//! Benchmark "chart": load time per module against module size and against module count, for
//! this loader, `dlopen` and the floor (open, fstat, read, close and one protection change per
//! module), drawn with `plotters`: a full run draws `docs/benchmarks.svg` (the picture
//! `BENCHMARKS.md` opens with), a `--quick` one `target/bench/benchmarks.svg`. Sizes: one module of 8 to 1,024 small C functions, loaded alone (`load`) against
//! `dlopen(RTLD_NOW)` of the same C as a library, beside one floor. Counts: 1 to 200 of the
//! start-up benchmark's modules loaded at once (`ModuleCache::prefetch` on every core) against
//! `dlopen` of as many libraries, one after another, beside the floor on as many threads as the
//! prefetch. Files are warm; each point is the median of interleaved rounds.

// dlopen/dlclose are C functions.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CString};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use plotters::prelude::*;
use smf_runtime::sys::{self, Protection};

use super::median;
use super::startup::{build_all, build_one, floor_on_threads, floor_one, MODULES};
use crate::workspace_root;

extern "C" {
    fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
    fn dlclose(handle: *mut c_void) -> c_int;
}
const RTLD_NOW: c_int = 2;

/// Module sizes (functions) of the first panel.
const SIZES: [usize; 5] = [8, 32, 128, 512, 1024];
/// Module counts of the second panel.
const COUNTS: [usize; 5] = [1, 5, 20, 50, MODULES];

/// One point of each series: microseconds per module (ours, dlopen, floor).
type Point = (usize, [f64; 3]);

/// A C string of `path`.
fn c_path(path: &Path) -> Result<CString, String> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())
}

/// `dlopen`s every library (then closes them, untimed); the time of the opens.
fn dlopen_all(libraries: &[CString]) -> Result<Duration, String> {
    let start = Instant::now();
    // SAFETY: NUL-terminated paths of libraries of plain C built by the benchmark.
    let handles: Vec<*mut c_void> =
        libraries.iter().map(|p| unsafe { dlopen(p.as_ptr(), RTLD_NOW) }).collect();
    let elapsed = start.elapsed();
    let failed = handles.iter().any(|h| h.is_null());
    for h in handles.into_iter().filter(|h| !h.is_null()) {
        // SAFETY: a handle dlopen just returned; nothing of the library is in use.
        unsafe { dlclose(h) };
    }
    if failed {
        return Err("dlopen failed".into());
    }
    Ok(elapsed)
}

/// The floor of `modules`, one page each of `pages` (made writable again, untimed).
fn floor_all(modules: &[PathBuf], pages: *mut u8, buffer: &mut Vec<u8>) -> Result<Duration, String> {
    let page = sys::page_size();
    let start = Instant::now();
    for (i, path) in modules.iter().enumerate() {
        // SAFETY: page `i` of the caller's mapping of at least `modules.len()` pages.
        floor_one(path, unsafe { pages.add(i * page) }, buffer)?;
    }
    let elapsed = start.elapsed();
    // SAFETY: the caller's pages; nothing references them.
    unsafe { sys::protect(pages, modules.len() * page, Protection::ReadWrite) }.map_err(|e| e.to_string())?;
    Ok(elapsed)
}

/// Microseconds per module of the medians of `times` for `count` modules.
fn per_module(times: [Vec<Duration>; 3], count: usize) -> [f64; 3] {
    times.map(|t| median(t).as_secs_f64() * 1e6 / count as f64)
}

/// The size panel's points.
fn by_size(dir: &Path, rounds: usize, pages: *mut u8) -> Result<Vec<Point>, String> {
    let smf_tool = workspace_root().join("target/release/smf");
    let mut points = Vec::new();
    let mut buffer = Vec::new();
    for functions in SIZES {
        let (smf, so) = build_one(dir, &smf_tool, &format!("size{functions}"), 9000 + functions, functions)?;
        let so = [c_path(&so)?];
        let mut times: [Vec<Duration>; 3] = Default::default();
        for round in 0..=rounds {
            let start = Instant::now();
            let module = smf::loader::load(&smf::loader::LoadRequest::path(&smf).resolver_only(&()))
                .map_err(|e| e.to_string())?;
            let ours = start.elapsed();
            drop(module);
            let (theirs, floor) =
                (dlopen_all(&so)?, floor_all(std::slice::from_ref(&smf), pages, &mut buffer)?);
            if round > 0 {
                times[0].push(ours);
                times[1].push(theirs);
                times[2].push(floor);
            }
        }
        points.push((functions, per_module(times, 1)));
    }
    Ok(points)
}

/// The count panel's points.
fn by_count(dir: &Path, rounds: usize, pages: *mut u8) -> Result<Vec<Point>, String> {
    let (modules, libraries) = build_all(dir)?;
    let libraries: Vec<CString> = libraries.iter().map(|p| c_path(p)).collect::<Result<_, _>>()?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut points = Vec::new();
    for count in COUNTS {
        let mut times: [Vec<Duration>; 3] = Default::default();
        for round in 0..=rounds {
            let cache = smf::cache::ModuleCache::new(0, 0);
            let start = Instant::now();
            let cached = cache.prefetch(&modules[..count], threads);
            let ours = start.elapsed();
            drop(cache);
            if cached != count {
                return Err(format!("prefetch cached {cached} of {count}"));
            }
            let theirs = dlopen_all(&libraries[..count])?;
            let floor = floor_on_threads(&modules[..count], pages as usize, threads)?;
            if round > 0 {
                times[0].push(ours);
                times[1].push(theirs);
                times[2].push(floor);
            }
        }
        points.push((count, per_module(times, count)));
    }
    Ok(points)
}

/// Draws one panel: the three series against `x` (log scale).
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x_label: &str,
    points: &[Point],
) -> Result<(), String> {
    let error = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let x_max = points.iter().map(|p| p.0).max().unwrap_or(1) as f64;
    let y_max = points.iter().flat_map(|p| p.1).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d((1.0..x_max * 1.2).log_scale(), 0.0..y_max)
        .map_err(error)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("microseconds per module")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(error)?;
    let series = [("smf-loader", BLUE), ("dlopen", RED), ("floor (5 syscalls)", BLACK)];
    for (i, (name, color)) in series.into_iter().enumerate() {
        let line = points.iter().map(|&(x, ys)| (x as f64, ys[i]));
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
            .map_err(error)?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(line.map(|p| Circle::new(p, 3, color.filled()))).map_err(error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(error)?;
    Ok(())
}

pub(super) fn run(rounds: usize, quick: bool) -> Result<(), String> {
    crate::release_smf()?;
    let dir = workspace_root().join("target").join("bench-startup");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let page = sys::page_size();
    let pages = sys::map_anonymous(MODULES * page, Protection::ReadWrite).map_err(|e| e.to_string())?;
    let sizes = by_size(&dir, rounds, pages);
    let counts = by_count(&dir, rounds, pages);
    // SAFETY: the benchmark's own mapping, no longer used.
    let _ = unsafe { sys::unmap(pages, MODULES * page) };
    let (sizes, counts) = (sizes?, counts?);
    println!("chart: microseconds per module (smf-loader, dlopen, floor), {rounds} rounds, medians");
    for (what, points) in [("functions", &sizes), ("modules at once", &counts)] {
        for (x, [ours, theirs, floor]) in points {
            println!("  {x:>5} {what:<16} {ours:>9.1} {theirs:>9.1} {floor:>9.1}");
        }
    }
    let dir = workspace_root().join(if quick { "target/bench" } else { "docs" });
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("benchmarks.svg");
    {
        let root = SVGBackend::new(&path, (1000, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (left, right) = root.split_horizontally(500);
        panel(&left, "One module, by size", "functions in the module", &sizes)?;
        panel(&right, "Many modules at once, by count", "modules loaded together", &counts)?;
        root.present().map_err(|e| e.to_string())?;
    }
    println!("  drawn to {}", path.display());
    Ok(())
}
