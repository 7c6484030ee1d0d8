//! Benchmark "startup": an application's start, which loads many small modules at once.
//! `MODULES` small C libraries (a handful of functions, a counter in writable data, a name in
//! read-only data), each packed into a module and built as a shared library by gcc, loaded:
//!
//! - in this process, with `ModuleCache::prefetch` (every core), against `dlopen` of the
//!   libraries (`RTLD_NOW | RTLD_LOCAL`, one after another: the dynamic linker loads one
//!   library at a time) and against the floor's sum, what `MODULES` loads that each make the
//!   syscalls one load cannot avoid (open, fstat, read, close, one protection change) cost on
//!   as many threads as the prefetch uses;
//! - as whole processes: a C program linked with `libsmf.a` that prefetches the modules and
//!   exits, against a C program that `dlopen`s the libraries and exits (fork, exec, run, wait,
//!   alternated), and the system calls each makes per module (`strace -f -c`, above the same
//!   program run with no module), and for one module alone (its first load's set-up included).
//!
//! Files are warm in the page cache (the cache benchmark measures cold files). The whole
//! processes run first, while this process watches nothing: a process's inotify watch on the
//! modules' directory makes the others' watches cheap to tear down at exit (one test here: a
//! prefetching process from before the cache watched lazily took 16-18 ms alone, 8 ms while
//! another process watched the directory), so it would flatter a process that watches.

// dlopen/dlclose and the floor's mprotect are C and system calls.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use smf_runtime::sys::{self, Protection};

use super::report::{self, Goal};
use super::{median, median_ratio, ms};
use crate::workspace_root;

extern "C" {
    fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
    fn dlclose(handle: *mut c_void) -> c_int;
}
const RTLD_NOW: c_int = 2;

/// Modules an application loads at start.
pub(super) const MODULES: usize = 200;
/// Functions per module.
const FUNCTIONS: usize = 8;

/// The C source of module `i` with `functions` functions calling a static helper, a counter,
/// a name.
fn source(i: usize, functions: usize) -> String {
    let mut c = format!(
        "static const char name[] = \"startup module {i}\";\n\
         long m{i}_counter = {i};\n\
         static long helper(long x) {{ return x * 3 + m{i}_counter; }}\n\
         const char *m{i}_name(void) {{ return name; }}\n"
    );
    for j in 0..functions {
        c.push_str(&format!("long m{i}_f{j}(long x) {{ m{i}_counter++; return helper(x) + {j}; }}\n"));
    }
    c
}

/// Builds (once; again when its source changed) module `i` of `functions` functions as
/// `{stem}.smf` and `lib{stem}.so`.
pub(super) fn build_one(
    dir: &Path,
    smf_tool: &Path,
    stem: &str,
    i: usize,
    functions: usize,
) -> Result<(PathBuf, PathBuf), String> {
    let (src, obj) = (dir.join(format!("{stem}.c")), dir.join(format!("{stem}.o")));
    let (smf, so) = (dir.join(format!("{stem}.smf")), dir.join(format!("lib{stem}.so")));
    let text = source(i, functions);
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let packed_since_tool =
        modified(&smf).zip(modified(smf_tool)).is_some_and(|(module, tool)| module >= tool);
    if std::fs::read_to_string(&src).is_ok_and(|old| old == text) && packed_since_tool && so.exists() {
        return Ok((smf, so));
    }
    std::fs::write(&src, text).map_err(|e| e.to_string())?;
    let run = |cmd: &mut Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| e.to_string())?;
        out.status
            .success()
            .then_some(())
            .ok_or_else(|| format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)))
    };
    run(Command::new("gcc").args(["-shared", "-O2", "-fPIC"]).arg(&src).arg("-o").arg(&so))?;
    run(Command::new("gcc").args(["-c", "-O2", "-fPIC"]).arg(&src).arg("-o").arg(&obj))?;
    run(Command::new(smf_tool).arg("pack").arg(&obj).arg("-o").arg(&smf))?;
    Ok((smf, so))
}

/// A module's file and its library's, or why they could not be built.
type Built = Result<(PathBuf, PathBuf), String>;

/// Builds every module and library, a few at a time.
pub(super) fn build_all(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), String> {
    let smf_tool = crate::release_smf()?.join("smf");
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(8);
    let built: Vec<Built> = std::thread::scope(|scope| {
        let jobs: Vec<_> = (0..workers)
            .map(|w| {
                let smf_tool = &smf_tool;
                scope.spawn(move || {
                    (w..MODULES)
                        .step_by(workers)
                        .map(|i| (i, build_one(dir, smf_tool, &format!("m{i}"), i, FUNCTIONS)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(usize, Built)> =
            jobs.into_iter().flat_map(|j| j.join().unwrap_or_default()).collect();
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, r)| r).collect()
    });
    let pairs: Vec<(PathBuf, PathBuf)> = built.into_iter().collect::<Result<_, _>>()?;
    if pairs.len() != MODULES {
        return Err(format!("built {} of {MODULES} modules", pairs.len()));
    }
    Ok(pairs.into_iter().unzip())
}

/// One module's floor: open, fstat, one read, close of its file, one protection change of its
/// page (written first, so that the change applies to a present page, as for a load).
pub(super) fn floor_one(path: &Path, page: *mut u8, buffer: &mut Vec<u8>) -> Result<usize, String> {
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len() as usize;
    buffer.resize(len, 0);
    let n = file.read(buffer).map_err(|e| e.to_string())?;
    drop(file);
    // SAFETY: `page` is a read-write page of ours, mapped for this benchmark.
    unsafe { page.write_volatile(page.read_volatile().wrapping_add(1)) };
    // SAFETY: as above; nothing references it while it is read-only, and the caller makes it
    // writable again outside the timed part.
    unsafe { sys::protect(page, sys::page_size(), Protection::Read) }.map_err(|e| e.to_string())?;
    Ok(n)
}

/// The floor of every module, shared among `threads` threads as the prefetch shares the loads
/// (each module's page is page `i` of the mapping at `pages`, made writable again untimed): the
/// floor a loader of one module at a time reaches on as many cores.
pub(super) fn floor_on_threads(
    modules: &[PathBuf],
    pages: usize,
    threads: usize,
) -> Result<Duration, String> {
    let page = sys::page_size();
    let threads = threads.clamp(1, modules.len().max(1));
    let share = move |t: usize| -> Result<(), String> {
        let mut buffer = Vec::new();
        for i in (t..modules.len()).step_by(threads) {
            floor_one(&modules[i], (pages + i * page) as *mut u8, &mut buffer)?;
        }
        Ok(())
    };
    let start = Instant::now();
    // The calling thread takes the first share, as the prefetch's does.
    std::thread::scope(|scope| {
        let others: Vec<_> = (1..threads).map(|t| scope.spawn(move || share(t))).collect();
        share(0)?;
        others.into_iter().try_for_each(|s| s.join().map_err(|_| "a floor thread panicked".to_owned())?)
    })?;
    let elapsed = start.elapsed();
    // SAFETY: the caller's pages; nothing references them.
    unsafe { sys::protect(pages as *mut u8, modules.len() * page, Protection::ReadWrite) }
        .map_err(|e| e.to_string())?;
    Ok(elapsed)
}

/// Waits until no module of `paths` reads as fresh (`smf_runtime::file::Version::fresh`), as an
/// application's modules built before it starts do: a fresh module is read again under a
/// change notice, which starts the cache's watcher (see `ModuleCache`'s documentation).
fn wait_until_not_fresh(paths: &[PathBuf]) -> Result<(), String> {
    let limits = smf::file::limits_from_env();
    for path in paths {
        let fresh = || smf::file::with_module_version(path, limits, |_, version| version.fresh);
        while fresh().map_err(|e| format!("{}: {e}", path.display()))? {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// The C programs of the whole-process comparison, built in `dir` (the smf one against the
/// release `libsmf.a`).
fn build_programs(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    crate::release_smf()?;
    let root = workspace_root();
    let (smf_c, dl_c) = (dir.join("start_smf.c"), dir.join("start_dlopen.c"));
    std::fs::write(
        &smf_c,
        "#include <smf.h>\n#include <unistd.h>\n\
         int main(int argc, char **argv) {\n\
         \x20   SmfCache *cache = smf_cache_new(0, 0);\n\
         \x20   size_t n = (size_t)(argc - 1);\n\
         \x20   uint32_t threads = (uint32_t)sysconf(_SC_NPROCESSORS_ONLN);\n\
         \x20   return smf_cache_prefetch(cache, (const char *const *)(argv + 1), n, threads) == n ? 0 : 1;\n\
         }\n",
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(
        &dl_c,
        "#include <dlfcn.h>\n\
         int main(int argc, char **argv) {\n\
         \x20   for (int i = 1; i < argc; i++)\n\
         \x20       if (!dlopen(argv[i], RTLD_NOW | RTLD_LOCAL)) return 1;\n\
         \x20   return 0;\n\
         }\n",
    )
    .map_err(|e| e.to_string())?;
    let (smf_bin, dl_bin) = (dir.join("start_smf"), dir.join("start_dlopen"));
    let gcc = |args: Vec<std::ffi::OsString>| -> Result<(), String> {
        let out = Command::new("gcc").args(args).output().map_err(|e| e.to_string())?;
        out.status
            .success()
            .then_some(())
            .ok_or_else(|| format!("gcc: {}", String::from_utf8_lossy(&out.stderr)))
    };
    gcc(vec![
        "-O2".into(),
        format!("-I{}", root.join("shell/include").display()).into(),
        smf_c.into(),
        root.join("target/release/libsmf.a").into(),
        "-lpthread".into(),
        "-ldl".into(),
        "-lm".into(),
        "-lgcc_s".into(),
        // What README.md advises for a program linking libsmf.a: the archive carries all of
        // Rust's std, and unused sections dropped leave a third of the text (fewer pages and
        // relocations at start-up), the relative relocations packed (RELR).
        "-Wl,--gc-sections".into(),
        "-Wl,-z,pack-relative-relocs".into(),
        "-o".into(),
        smf_bin.clone().into(),
    ])?;
    gcc(vec!["-O2".into(), dl_c.into(), "-ldl".into(), "-o".into(), dl_bin.clone().into()])?;
    Ok((smf_bin, dl_bin))
}

/// The system calls `program` makes on `args` (its threads' too), counted by `strace -f -c`;
/// `None` where strace is missing or fails.
fn syscalls(program: &Path, args: &[PathBuf]) -> Option<u64> {
    let out = Command::new("strace")
        .args(["-f", "-c", "-o", "/dev/stdout"])
        .arg(program)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    // The summary's last line: "100.00 SECONDS USECS CALLS [ERRORS] total".
    let text = String::from_utf8_lossy(&out.stdout);
    let total = text.lines().rev().find(|l| l.trim_end().ends_with("total"))?;
    total.split_whitespace().nth(3)?.parse().ok()
}

/// The system calls per module of loading `args` with `program`, above its run with none.
fn syscalls_per_module(program: &Path, args: &[PathBuf]) -> Option<f64> {
    let (all, none) = (syscalls(program, args)?, syscalls(program, &[])?);
    // To one decimal: a whole number hides differences of a few syscalls in all.
    let per_module = all.saturating_sub(none) as f64 / args.len().max(1) as f64;
    Some((per_module * 10.0).round() / 10.0)
}

/// Runs `program` on `args` as a whole process; its time (fork to wait).
fn process(program: &Path, args: &[PathBuf]) -> Result<Duration, String> {
    let start = Instant::now();
    let status = Command::new(program).args(args).status().map_err(|e| e.to_string())?;
    let elapsed = start.elapsed();
    status.success().then_some(elapsed).ok_or_else(|| format!("{} failed ({status})", program.display()))
}

pub(super) fn run(rounds: usize) -> Result<(), String> {
    let dir = workspace_root().join("target").join("bench-startup");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (modules, libraries) = build_all(&dir)?;
    let (smf_bin, dl_bin) = build_programs(&dir)?;
    wait_until_not_fresh(&modules)?;
    let (mut our_runs, mut their_runs) = (Vec::new(), Vec::new());
    for round in 0..=rounds {
        let (o, t) = (process(&smf_bin, &modules)?, process(&dl_bin, &libraries)?);
        if round > 0 {
            our_runs.push(o);
            their_runs.push(t);
        }
    }
    let vs_process = median_ratio(&their_runs, &our_runs);

    let libraries_c: Vec<CString> = libraries
        .iter()
        .map(|p| CString::new(p.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let page = sys::page_size();
    let pages = sys::map_anonymous(MODULES * page, Protection::ReadWrite).map_err(|e| e.to_string())?;
    let (mut ours, mut theirs, mut floors, mut single_floors) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..=rounds {
        let cache = smf::cache::ModuleCache::new(0, 0);
        let start = Instant::now();
        let cached = cache.prefetch(&modules, threads);
        let t_ours = start.elapsed();
        if cached != MODULES {
            return Err(format!("prefetch cached {cached} of {MODULES}"));
        }
        drop(cache);

        let start = Instant::now();
        // SAFETY: NUL-terminated paths of libraries built above, whose code is plain C.
        let handles: Vec<*mut c_void> =
            libraries_c.iter().map(|p| unsafe { dlopen(p.as_ptr(), RTLD_NOW) }).collect();
        let t_theirs = start.elapsed();
        if handles.iter().any(|h| h.is_null()) {
            return Err("dlopen failed".into());
        }
        for h in handles {
            // SAFETY: a handle dlopen just returned; nothing of the library is in use.
            unsafe { dlclose(h) };
        }

        let t_floor = floor_on_threads(&modules, pages as usize, threads)?;
        let t_single_floor = floor_on_threads(&modules, pages as usize, 1)?;
        // SAFETY: the benchmark's own pages; nothing references them.
        unsafe { sys::protect(pages, MODULES * page, Protection::ReadWrite) }.map_err(|e| e.to_string())?;
        if round > 0 {
            // Round 0 warms the page cache and the libraries' first-open costs.
            ours.push(t_ours);
            theirs.push(t_theirs);
            floors.push(t_floor);
            single_floors.push(t_single_floor);
        }
    }
    // SAFETY: the benchmark's own mapping, no longer used.
    let _ = unsafe { sys::unmap(pages, MODULES * page) };
    let (vs_dlopen, vs_floor) = (median_ratio(&theirs, &ours), median_ratio(&floors, &ours));
    println!("startup: {MODULES} small modules ({FUNCTIONS} functions, data, rodata) at once, files warm, {rounds} rounds, medians");
    let rows = [
        (format!("ModuleCache::prefetch on {threads} threads"), ours),
        (format!("dlopen(RTLD_NOW) of the {MODULES} libraries"), theirs),
        (format!("the floor {MODULES} times on {threads} threads (open+fstat+read+close+mprotect)"), floors),
        (format!("the floor {MODULES} times on one thread"), single_floors),
        ("a process prefetching them (libsmf.a)".to_owned(), our_runs),
        ("a process dlopening them".to_owned(), their_runs),
    ];
    for (what, times) in rows {
        println!("  {what:<58} {:>8.2} ms", ms(median(times)));
    }
    report::ratio("startup_vs_dlopen", vs_dlopen, Goal::AtLeast(10.0));
    report::ratio("startup_vs_floor_sum", vs_floor, Goal::AtLeast(1.0));
    report::ratio("startup_cold_process", vs_process, Goal::AtLeast(3.0));
    match (syscalls_per_module(&smf_bin, &modules), syscalls_per_module(&dl_bin, &libraries)) {
        (Some(ours), Some(theirs)) => {
            report::footprint_average("startup_syscalls_per_module", ours, Goal::Reported);
            report::footprint_average("dlopen_syscalls_per_module", theirs, Goal::Reported);
        }
        _ => println!("  (no strace here: system calls not counted)"),
    }
    // One load in a process of its own: its first load's set-up included (ours: the
    // allocator's reservation and its pages faulted in; dlopen's: the loader's own).
    match (syscalls_per_module(&smf_bin, &modules[..1]), syscalls_per_module(&dl_bin, &libraries[..1])) {
        (Some(ours), Some(theirs)) => {
            report::footprint_average("one_load_syscalls", ours, Goal::Reported);
            report::footprint_average("dlopen_one_syscalls", theirs, Goal::Reported);
        }
        _ => println!("  (no strace here: system calls not counted)"),
    }
    Ok(())
}
