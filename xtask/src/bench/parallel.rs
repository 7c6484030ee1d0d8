//! Benchmark "parallel": loads per second with one thread against two, on this 2-core machine.
//!
//! Each thread loads the benchmark module (200 functions, data, rodata: the "load" benchmark's)
//! from its file through `smf::loader::load` (read, parse, place, relocate, seal), looks
//! up a symbol, and releases it, over and over, for a fixed time; all threads share the
//! process's executable allocator, as the runtime's prefetch threads and the C API do. Rounds
//! alternate one thread and two threads so that noise hits both. Target: two threads load at
//! least 1.6x as many modules per second as one.
//!
//! The floor, for reference: per cycle, the syscalls a W^X load and release of this module
//! cannot avoid (open, fstat, read, close, the code pages made read-execute and then writable
//! again for reuse), by one and by two threads. A protection change that takes a permission
//! away must flush the other cores' TLBs (an interprocessor interrupt) once a second thread
//! runs: the floor's own two-thread throughput bounds what any such loader can reach.

// The floor makes the raw syscalls itself (protection changes of its own pages).
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use smf::loader::{load, LoadRequest};
use smf_runtime::sys::{self, Protection};

use crate::workspace_root;

/// Loads per second by `threads` threads loading `path` for `span`.
fn loads_per_second(path: &std::path::Path, threads: usize, span: Duration) -> Result<f64, String> {
    let done = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let failed = AtomicBool::new(false);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    match load(&LoadRequest::path(path).resolver_only(&())) {
                        Ok(module) => {
                            std::hint::black_box(module.symbol(b"f7"));
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => failed.store(true, Ordering::Relaxed),
                    }
                }
            });
        }
        std::thread::sleep(span);
        stop.store(true, Ordering::Relaxed);
    });
    if failed.load(Ordering::Relaxed) {
        return Err("a load failed".into());
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

/// Floor cycles per second by `threads` threads: the syscalls of a load and release of `path`
/// (its code is `code_pages` pages).
fn floor_per_second(
    path: &std::path::Path,
    code_pages: usize,
    threads: usize,
    span: Duration,
) -> Result<f64, String> {
    let done = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let page = sys::page_size();
    let start = Instant::now();
    std::thread::scope(|scope| -> Result<(), String> {
        let mut workers = Vec::new();
        for _ in 0..threads {
            workers.push(scope.spawn(|| -> Result<(), String> {
                let len = code_pages * page;
                let pages = sys::map_anonymous(len, Protection::ReadWrite).map_err(|e| e.to_string())?;
                let mut buffer = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
                    let size = file.metadata().map_err(|e| e.to_string())?.len() as usize;
                    buffer.resize(size, 0);
                    std::io::Read::read(&mut file, &mut buffer).map_err(|e| e.to_string())?;
                    drop(file);
                    // SAFETY: `pages` is this thread's own mapping of `len` bytes; it is written
                    // only while read-write, and nothing else references it.
                    unsafe {
                        std::ptr::copy_nonoverlapping(buffer.as_ptr(), pages, buffer.len().min(len));
                        sys::protect(pages, len, Protection::ReadExec).map_err(|e| e.to_string())?;
                        sys::protect(pages, len, Protection::ReadWrite).map_err(|e| e.to_string())?;
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                // SAFETY: the mapping is this thread's and no longer used.
                let _ = unsafe { sys::unmap(pages, len) };
                Ok(())
            }));
        }
        std::thread::sleep(span);
        stop.store(true, Ordering::Relaxed);
        for worker in workers {
            worker.join().map_err(|_| "a floor thread panicked".to_owned())??;
        }
        Ok(())
    })?;
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

pub(super) fn run(rounds: usize) -> Result<(), String> {
    let dir = workspace_root().join("target").join("bench-load");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (path, _) = super::load::build(&dir)?;
    let span = Duration::from_millis(200);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let code = smf_format::Module::parse(&std::fs::read(&path).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?
        .code_size();
    let code_pages = usize::try_from(code).unwrap_or(0).div_ceil(sys::page_size()).max(1);
    loads_per_second(&path, 2, span)?; // warm up: the allocator's regions, the page cache
    let (mut one, mut two, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut floor_one, mut floor_two, mut bounds) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let single = loads_per_second(&path, 1, span)?;
        let double = loads_per_second(&path, 2, span)?;
        let floor_single = floor_per_second(&path, code_pages, 1, span)?;
        let floor_double = floor_per_second(&path, code_pages, 2, span)?;
        one.push(single);
        two.push(double);
        ratios.push(double / single);
        floor_one.push(floor_single);
        floor_two.push(floor_double);
        bounds.push(floor_double / single);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let spread = {
        let mut r = ratios.clone();
        r.sort_by(f64::total_cmp);
        let at = |f: usize| r.get(r.len() * f / 10).copied().unwrap_or(0.0);
        (at(1), at(9))
    };
    println!(
        "parallel: load of the load benchmark's module ({rounds} alternating rounds of {} ms, {cores} cores)",
        span.as_millis()
    );
    println!("  one thread                                    {:8.0} loads/s", median(one));
    println!("  two threads                                   {:8.0} loads/s", median(two));
    println!(
        "  floor ({code_pages} code pages), one thread                {:8.0} cycles/s",
        median(floor_one.clone())
    );
    println!("  floor, two threads                            {:8.0} cycles/s", median(floor_two.clone()));
    let scaling = median(ratios);
    println!(
        "  ratio (median of each round's): two / one threads {scaling:.2}x (target: the floor's own; 10th-90th percentile {:.2}-{:.2}x)",
        spread.0,
        spread.1
    );
    let floor_scaling: Vec<f64> = floor_two.iter().zip(&floor_one).map(|(t, o)| t / o).collect();
    let floor_scaling = median(floor_scaling);
    println!(
        "  bound: the floor itself, two / one threads {floor_scaling:.2}x; floor with two threads / smf with one {:.2}x, the most two / one threads any W^X loader making the floor's syscalls could reach here",
        median(bounds)
    );
    super::report::ratio_with_floor("parallel_load_scaling", scaling, floor_scaling);
    Ok(())
}
