//! Benchmark "load": modules packed from C next to the same C built by gcc as a shared
//! library, in one run, files in the page cache both ways.
//!
//! - cold load and lookup of every exported symbol: `smf::loader::load` (read, parse,
//!   validate, place, relocate, seal, index) versus `dlopen(RTLD_NOW | RTLD_LOCAL)` + `dlsym`.
//!   Release (`drop` / `dlclose`) is not timed on either side. Target: at least 5x faster.
//! - the same load versus the floor: the syscalls a load cannot avoid (open, fstat, read,
//!   close, one protection change of the written code pages). Target: within 2x. Reported
//!   with the lookups (the ratio the target is judged on here) and, for reference, without.
//! - symbol lookup versus `dlsym` on the same names. Target: at least 3x faster.
//! - dlopen versus the floor, for reference: the bound on the first ratio, since no load that
//!   makes the floor's syscalls can be faster than the floor.
//! - for reference, the in-memory load with read-only data kept out of executable pages
//!   (`ReadOnlyData::NotExecutable`) versus the default, which seals it with the code.
//!
//! The module has code, data, bss and read-only data, as C with string constants does.

// dlopen/dlsym are C functions; calling them (and checking the loaded code) needs unsafe.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CString};
use std::hint::black_box;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use smf_runtime::exec::ExecAllocator;
use smf_runtime::load::{LoadOptions, LoadedModule, ReadOnlyData};
use smf_runtime::sys::{self, Protection};

use super::report::{self, Goal};
use super::{median, median_ratio, ratio_percentiles, us};
use crate::workspace_root;

extern "C" {
    pub(super) fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
    pub(super) fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    pub(super) fn dlclose(handle: *mut c_void) -> c_int;
}
pub(super) const RTLD_NOW: c_int = 2;
pub(super) const RTLD_LOCAL: c_int = 0;

const FUNCTIONS: usize = 200;

/// A C source with `FUNCTIONS` functions, string constants and global data.
fn source() -> String {
    // `banner` is read at a run-time index so that gcc keeps it in .rodata (a constant-length
    // loop over it would be folded into a constant, leaving the module without read-only data).
    let mut c = String::from(
        "long counter = 1;\nlong table[64];\nstatic const char banner[] = \"smf load benchmark\";\n",
    );
    c.push_str("long banner_len(void) { long n = 0; while (banner[n + (counter & 1)]) n++; return n; }\n");
    for i in 0..FUNCTIONS {
        c.push_str(&format!(
            "long f{i}(long x) {{ table[{m}] += x; return x * {i} + counter + table[{m}] + banner_len(); }}\n",
            m = i % 64
        ));
    }
    c
}

/// Builds the benchmark module and its shared-library twin in `dir`: (module, library).
pub(crate) fn build(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let src = dir.join("bench.c");
    std::fs::write(&src, source()).map_err(|e| e.to_string())?;
    let so = dir.join("libbench.so");
    let obj = dir.join("bench.o");
    let smf = dir.join("bench.smf");
    let gcc = |args: &[&str], out: &Path| -> Result<(), String> {
        let status = Command::new("gcc")
            .args(args)
            .arg(&src)
            .arg("-o")
            .arg(out)
            .status()
            .map_err(|e| e.to_string())?;
        status.success().then_some(()).ok_or_else(|| "gcc failed".to_owned())
    };
    gcc(&["-shared", "-O2", "-fPIC"], &so)?;
    gcc(&["-c", "-O2", "-fPIC"], &obj)?;
    pack(&[obj], &smf)?;
    Ok((smf, so))
}

/// `smf pack OBJECTS -o OUT`, with the release build of the tool.
pub(crate) fn pack(objects: &[PathBuf], out: &Path) -> Result<(), String> {
    pack_with(objects, out, &[])
}

/// [`pack`] with more options for `smf pack` (`--compress lz4`, `--dialect r96`).
pub(crate) fn pack_with(objects: &[PathBuf], out: &Path, options: &[&str]) -> Result<(), String> {
    let pack = Command::new(crate::release_smf()?.join("smf"))
        .current_dir(workspace_root())
        .arg("pack")
        .args(objects)
        .args(options)
        .arg("-o")
        .arg(out)
        .output()
        .map_err(|e| e.to_string())?;
    if !pack.status.success() {
        return Err(format!("smf pack: {}", String::from_utf8_lossy(&pack.stderr)));
    }
    Ok(())
}

fn names() -> Vec<String> {
    let mut names: Vec<String> = (0..FUNCTIONS).map(|i| format!("f{i}")).collect();
    names.extend(["counter", "table", "banner_len"].map(String::from));
    names
}

/// The floor: open, fstat, one read, close, and one protection change, of the pages a load must
/// write and then protect (as many as the module's code needs, written first so that the change
/// applies to present pages, as it does for a load). The caller makes the pages writable again
/// outside the timed part.
fn floor(path: &Path, pages: &mut [u8], buffer: &mut Vec<u8>) -> usize {
    let mut file = std::fs::File::open(path).expect("open");
    let len = file.metadata().expect("fstat").len() as usize;
    buffer.resize(len, 0);
    let n = file.read(buffer).expect("read");
    drop(file);
    for page in pages.chunks_mut(sys::page_size()) {
        page[0] = page[0].wrapping_add(1);
    }
    // SAFETY: `pages` are pages of ours mapped for this benchmark; nothing else references them
    // while they are read-only, and the caller restores them before writing again.
    unsafe { sys::protect(pages.as_mut_ptr(), pages.len(), Protection::Read) }.expect("mprotect");
    n
}

pub(super) fn run(rounds: usize) -> Result<(), String> {
    let dir = workspace_root().join("target").join("bench-load");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (smf_path, so_path) = build(&dir)?;
    let names = names();
    let c_names: Vec<CString> = names.iter().map(|n| CString::new(n.as_str()).unwrap_or_default()).collect();
    let so_c = CString::new(so_path.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
    let exec = ExecAllocator::default();
    let options = LoadOptions::default();
    let separate_rodata =
        LoadOptions { read_only_data: ReadOnlyData::NotExecutable, ..LoadOptions::default() };
    let code_size = smf_format::Module::parse(&std::fs::read(&smf_path).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?
        .code_size();
    let pages_len =
        usize::try_from(code_size).unwrap_or(0).div_ceil(sys::page_size()).max(1) * sys::page_size();
    let page = sys::map_anonymous(pages_len, Protection::ReadWrite).map_err(|e| e.to_string())?;
    // SAFETY: a fresh private read-write mapping of `pages_len` bytes, used only here.
    let pages = unsafe { std::slice::from_raw_parts_mut(page, pages_len) };
    let mut buffer = Vec::new();

    let (mut ours, mut theirs, mut floors) = (Vec::new(), Vec::new(), Vec::new());
    let mut loads = Vec::new();
    let (mut our_lookups, mut their_lookups, mut memory) = (Vec::new(), Vec::new(), Vec::new());
    let (mut hashes, hasher) = (Vec::new(), smf_runtime::lru::KeyedHasher::per_process());
    let mut memory_separate = Vec::new();
    let (mut described, mut undescribed) = (Vec::new(), Vec::new());
    for round in 0..rounds + 1 {
        // smf: read + load + look up every symbol.
        let start = Instant::now();
        let module = smf::loader::load(
            &smf::loader::LoadRequest::path(&smf_path).resolver_only(&smf::loader::Registry::new()),
        )
        .map_err(|e| e.to_string())?;
        let t_load = start.elapsed();
        let mut found = 0usize;
        for name in &names {
            found += usize::from(module.symbol(name.as_bytes()).is_some());
        }
        let t_ours = start.elapsed();
        if found != names.len() {
            return Err(format!("smf found {found} of {} symbols", names.len()));
        }
        // Lookups alone, many times over.
        let start = Instant::now();
        for _ in 0..100 {
            for name in &names {
                black_box(module.symbol(black_box(name.as_bytes())));
            }
        }
        let t_our_lookup = start.elapsed() / (100 * names.len() as u32);
        // The keyed hash of each name alone, which every lookup computes first: a bound on
        // how fast a lookup in a flood-resistant index can be.
        let start = Instant::now();
        for _ in 0..100 {
            for name in &names {
                black_box(hasher.hash32(black_box(name.as_bytes())));
            }
        }
        hashes.push(start.elapsed() / (100 * names.len() as u32));
        // The Rust-level loader alone, from bytes in memory (no file I/O), for reference.
        // The same with read-only data in pages of its own (one more protection change); the
        // two go first in turn, since the second runs with warmer caches.
        let bytes = std::fs::read(&smf_path).map_err(|e| e.to_string())?;
        let in_memory = |options: &LoadOptions| -> Result<Duration, String> {
            let start = Instant::now();
            let loaded = LoadedModule::load(&exec, &bytes, &(), options).map_err(|e| e.to_string())?;
            let elapsed = start.elapsed();
            drop(loaded);
            Ok(elapsed)
        };
        let (t_memory, t_memory_separate) = if round % 2 == 0 {
            let t = in_memory(&options)?;
            (t, in_memory(&separate_rodata)?)
        } else {
            let t = in_memory(&separate_rodata)?;
            (in_memory(&options)?, t)
        };
        // What describing a module to debuggers costs (the GDB JIT interface's object, on by
        // default): the same read+load with and without it, each going first in turn.
        let with_debug_info = |debug_info: bool| -> Result<Duration, String> {
            let options =
                smf::imports::LinkOptions { local: true, c_library: false, debug_info, ..Default::default() };
            let start = Instant::now();
            let loaded = smf::loader::load(&smf::loader::LoadRequest::path(&smf_path).linked(options))
                .map_err(|e| e.to_string())?;
            let elapsed = start.elapsed();
            drop(loaded);
            Ok(elapsed)
        };
        let (t_described, t_undescribed) = if round % 2 == 0 {
            let t = with_debug_info(true)?;
            (t, with_debug_info(false)?)
        } else {
            let t = with_debug_info(false)?;
            (with_debug_info(true)?, t)
        };
        // SAFETY: f1 is a function of the loaded module taking and returning a long.
        let f1 = unsafe { module.loaded().function::<extern "C" fn(i64) -> i64>(b"f1") };
        let check = f1.ok_or("no function f1")?.get()(1);
        drop(module);

        // dlopen + dlsym of the same names.
        let start = Instant::now();
        // SAFETY: a valid NUL-terminated path; the library is our own freshly built .so.
        let handle = unsafe { dlopen(so_c.as_ptr(), RTLD_NOW | RTLD_LOCAL) };
        if handle.is_null() {
            return Err("dlopen failed".into());
        }
        let mut found = 0usize;
        for name in &c_names {
            // SAFETY: a live handle and a NUL-terminated name.
            found += usize::from(!unsafe { dlsym(handle, name.as_ptr()) }.is_null());
        }
        let t_theirs = start.elapsed();
        if found != names.len() {
            return Err(format!("dlsym found {found} of {} symbols", names.len()));
        }
        let start = Instant::now();
        for _ in 0..100 {
            for name in &c_names {
                // SAFETY: as above.
                black_box(unsafe { dlsym(handle, black_box(name.as_ptr())) });
            }
        }
        let t_their_lookup = start.elapsed() / (100 * names.len() as u32);
        // SAFETY: f1 of the native library has the same signature.
        let native_f1 = unsafe {
            smf_runtime::exec::function_pointer::<extern "C" fn(i64) -> i64>(dlsym(
                handle,
                c_names[1].as_ptr(),
            ) as usize)
        }
        .ok_or("dlsym found no f1")?;
        if native_f1(1) != check {
            return Err(format!("f1(1): smf {check}, native {}", native_f1(1)));
        }
        // SAFETY: the handle is live and no longer used.
        unsafe { dlclose(handle) };

        let start = Instant::now();
        black_box(floor(&smf_path, pages, &mut buffer));
        let t_floor = start.elapsed();
        // SAFETY: the benchmark's own pages, read-only since `floor`; nothing references them.
        unsafe { sys::protect(page, pages_len, Protection::ReadWrite) }.map_err(|e| e.to_string())?;

        if round > 0 {
            // round 0 warms the page cache and the allocator's reservation
            ours.push(t_ours);
            loads.push(t_load);
            theirs.push(t_theirs);
            floors.push(t_floor);
            our_lookups.push(t_our_lookup);
            memory.push(t_memory);
            memory_separate.push(t_memory_separate);
            described.push(t_described);
            undescribed.push(t_undescribed);
            their_lookups.push(t_their_lookup);
        }
    }
    // SAFETY: the pages are ours and unused now.
    let _ = unsafe { sys::unmap(page, pages_len) };
    let dlopen_ratio = median_ratio(&theirs, &ours);
    // What dlopen / smf would be for a load costing exactly the floor: no loader that makes
    // the floor's syscalls can beat it, so it bounds the dlopen target on this machine.
    let dlopen_floor_ratio = median_ratio(&theirs, &floors);
    let floor_spread = ratio_percentiles(&ours, &floors);
    let floor_ratio = floor_spread[1];
    let load_floor_ratio = median_ratio(&loads, &floors);
    let lookup_ratio = median_ratio(&their_lookups, &our_lookups);
    let hash_bound = median_ratio(&their_lookups, &hashes);
    // The least a load that reads the file, indexes its exports by a keyed hash (what keeps
    // names built to collide from making the index quadratic) and is then asked for each can
    // take: the floor, and every exported name's keyed hash twice (once to index it, once for
    // the lookup's own name); no copy, validation or probe counted.
    let hashed_names = 2 * names.len() as u32;
    let floor_median = median(floors.clone());
    let keyed_floor = floor_median + median(hashes.clone()) * hashed_names;
    let keyed_floor_ratio = keyed_floor.as_secs_f64() / floor_median.as_secs_f64();
    let (ours, theirs, floor) = (median(ours), median(theirs), median(floors));
    let (lookup, dlsym_time): (Duration, Duration) = (median(our_lookups), median(their_lookups));
    let size = std::fs::metadata(&smf_path).map(|m| m.len()).unwrap_or(0);
    println!(
        "load: {} functions + data packed from C ({size} bytes), {rounds} interleaved rounds, medians",
        FUNCTIONS
    );
    println!("  smf read+load+look up {} symbols        {:>9.1} us", names.len(), us(ours));
    println!("  (smf read+load alone                      {:>9.1} us)", us(median(loads)));
    println!("  dlopen(RTLD_NOW)+dlsym of the same .so    {:>9.1} us", us(theirs));
    println!(
        "  floor: open+fstat+read+close+mprotect     {:>9.1} us ({} code pages)",
        us(floor),
        pages_len / sys::page_size()
    );
    let separate_ratio = median_ratio(&memory_separate, &memory);
    println!("  (smf load from bytes in memory alone      {:>9.1} us)", us(median(memory)));
    println!(
        "  (the same, rodata not executable          {:>9.1} us: {separate_ratio:.2}x, one more protection change)",
        us(median(memory_separate))
    );
    let debug_ratio = median_ratio(&described, &undescribed);
    println!(
        "  (smf read+load described to debuggers    {:>9.1} us; without: {:.1} us: {debug_ratio:.2}x, the GDB JIT interface's cost)",
        us(median(described)),
        us(median(undescribed))
    );
    println!(
        "  one lookup: smf {:.1} ns, dlsym {:.1} ns; the keyed hash of the name alone {:.1} ns (bound: dlsym / hash {hash_bound:.1}x)",
        lookup.as_secs_f64() * 1e9,
        dlsym_time.as_secs_f64() * 1e9,
        median(hashes).as_secs_f64() * 1e9
    );
    println!(
        "  smf / floor by round: 10th percentile {:.2}x, median {:.2}x, 90th percentile {:.2}x; without the lookups {load_floor_ratio:.2}x",
        floor_spread[0], floor_spread[1], floor_spread[2]
    );
    println!(
        "  ratios (median of each round's): dlopen / smf {dlopen_ratio:.1}x (reported); smf / floor {floor_ratio:.2}x (target <= 1.3x); dlsym / smf lookup {lookup_ratio:.1}x (target >= 8x)"
    );
    println!(
        "  bound: dlopen / floor {dlopen_floor_ratio:.1}x, the most dlopen / smf any load making the floor's syscalls could reach here"
    );
    println!(
        "  bound: (floor + {hashed_names} keyed hashes of the names) / floor {keyed_floor_ratio:.2}x, the least smf / floor any load with a flood-resistant index could reach here ({:.1} us)",
        us(keyed_floor)
    );
    report::ratio("load_vs_dlopen", dlopen_ratio, Goal::Reported);
    // Ours / the floor: smaller is better.
    report::ratio("load_vs_syscall_floor", floor_ratio, Goal::AtMost(1.3));
    report::ratio("load_keyed_floor_vs_syscall_floor", keyed_floor_ratio, Goal::Reported);
    report::ratio("lookup_vs_dlsym", lookup_ratio, Goal::AtLeast(8.0));
    Ok(())
}
