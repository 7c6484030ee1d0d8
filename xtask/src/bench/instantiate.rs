//! Benchmark "generics": load-time instantiation.
//!
//! Installing: `FUNCTIONS` instantiated functions of 48 bytes through
//! `smf_runtime::instantiate::Instantiator` (its table, then the code arena: a memfd mapped read-execute
//! once, code written with `pwrite`, so no writable mapping ever aliases code), one request
//! each and in batches of `BATCH` (one `pwrite` per batch), versus the Simple runtime's original
//! approach for one function: an anonymous mapping, a write and a protection change of its own
//! page. The designs weighed for W^X without an alias are measured beside it: one sealed batch
//! per function (also the fallback where the kernel refuses memfd), and a short-lived writable
//! view of the memfd per function (mapped, written, unmapped before the request returns).
//! Cleanup is timed for none of them.
//!
//! Repeated requests: asking again for a name already instantiated, through `smf::instantiate::Generics`
//! (what the runtime calls) and through the C ABI's `smf_jit_instantiate`, versus `dlsym` of a
//! symbol of an opened library (its handle: one library's hash table) and `dlsym(RTLD_DEFAULT)`.

// dlopen/dlsym are C functions; the baseline maps and protects memory itself; the installed
// code is called to check it.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smf::cache::ModuleCache;
use smf::instantiate::{Generics, Request};
use smf_format::write::{ModuleBuilder, SymbolSpec};
use smf_format::Dialect;
use smf_runtime::exec::ExecAllocator;
use smf_runtime::instantiate::{Begun, Caller, Instantiator, InstantiatorConfig};
use smf_runtime::sys;

use super::code::{check, map_write_protect, returning, unmap_pages};
use super::{interleaved_rounds, median, ratio, us};

extern "C" {
    fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}
const RTLD_NOW: c_int = 2;
const RTLD_DEFAULT: *mut c_void = std::ptr::null_mut();

const FUNCTIONS: usize = 2_000;
const SIZE: usize = 48;
/// Functions per batch request.
const BATCH: usize = 100;

fn function(value: u16) -> [u8; SIZE] {
    returning(value)
}

fn value(i: usize) -> u16 {
    u16::try_from(i % 60_000).unwrap_or(0)
}

/// `FUNCTIONS` requests through an instantiator (fresh for the round): how long they took.
fn install_ours(exec: &ExecAllocator, names: &[String], codes: &[[u8; SIZE]]) -> Result<Duration, String> {
    let generics = Instantiator::new(exec, InstantiatorConfig::default());
    let caller = Caller { thread: 1, stack: &[] };
    let start = Instant::now();
    let mut addresses = Vec::with_capacity(names.len());
    for (name, code) in names.iter().zip(codes) {
        let made =
            generics.instantiate(name, caller, || Ok(Some(())), |()| Ok(code)).map_err(|e| e.to_string())?;
        addresses.push(made.address);
    }
    let elapsed = start.elapsed();
    for i in (0..names.len()).step_by(97) {
        check(addresses[i], value(i))?;
    }
    if !generics.uses_arena() {
        return Err("the instantiator fell back to batches: no memfd here?".into());
    }
    Ok(elapsed)
}

/// The same requests in batches of `BATCH` (one staged batch, one write, each).
fn install_ours_batched(
    exec: &ExecAllocator,
    names: &[String],
    codes: &[[u8; SIZE]],
) -> Result<Duration, String> {
    let generics = Instantiator::new(exec, InstantiatorConfig::default());
    let caller = Caller { thread: 1, stack: &[] };
    let start = Instant::now();
    for (names, codes) in names.chunks(BATCH).zip(codes.chunks(BATCH)) {
        let staging = generics.staging(1);
        for (name, code) in names.iter().zip(codes) {
            match generics.begin(name, caller, || Ok(Some(()))).map_err(|e| e.to_string())? {
                Begun::Claimed(claim, ()) => staging.stage(claim, code).map_err(|e| e.to_string())?,
                Begun::Ready(_) => return Err(format!("{name} was there before its batch")),
            }
        }
        staging.finish().map_err(|e| e.to_string())?;
    }
    let elapsed = start.elapsed();
    for i in (0..names.len()).step_by(97) {
        let address = generics.lookup(&names[i]).ok_or_else(|| format!("{} is not installed", names[i]))?;
        check(address, value(i))?;
    }
    if !generics.uses_arena() {
        return Err("the instantiator fell back to batches: no memfd here?".into());
    }
    Ok(elapsed)
}

/// One sealed batch per function (the fallback where memfd is refused).
fn install_batches(exec: &ExecAllocator, codes: &[[u8; SIZE]]) -> Result<Duration, String> {
    let start = Instant::now();
    let mut blocks = Vec::with_capacity(codes.len());
    for code in codes {
        let mut batch = exec.batch();
        blocks.push(batch.install(code, 16).map_err(|e| e.to_string())?);
        batch.seal().map_err(|e| e.to_string())?;
    }
    let elapsed = start.elapsed();
    check(blocks[codes.len() - 1].addr(), value(codes.len() - 1))?;
    exec.free_all(blocks).map_err(|e| e.to_string())?;
    Ok(elapsed)
}

/// The short-lived writable view: a memfd mapped read-execute once; per function, a writable
/// shared view of it mapped (where the kernel chooses), written and unmapped.
fn install_short_lived_views(codes: &[[u8; SIZE]], page: usize) -> Result<Duration, String> {
    let len = (codes.len() * 64).next_multiple_of(page);
    let file = sys::SharedMemory::create(c"smf-bench-view").map_err(|e| e.to_string())?;
    file.resize(len).map_err(|e| e.to_string())?;
    let exec = file.map(len, sys::Protection::ReadExec).map_err(|e| e.to_string())?;
    let start = Instant::now();
    for (i, code) in codes.iter().enumerate() {
        let view = file.map(len, sys::Protection::ReadWrite).map_err(|e| e.to_string())?;
        // SAFETY: `view` is a fresh writable mapping of `len` bytes; slot `i` lies inside it.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), view.add(i * 64), SIZE) };
        // SAFETY: mapped just above, and nothing keeps its address.
        unsafe { sys::unmap(view, len) }.map_err(|e| e.to_string())?;
    }
    let elapsed = start.elapsed();
    check(exec as usize + (codes.len() - 1) * 64, value(codes.len() - 1))?;
    // SAFETY: mapped above; its code is no longer used.
    unsafe { sys::unmap(exec, len) }.map_err(|e| e.to_string())?;
    Ok(elapsed)
}

/// mmap + write + mprotect, one page per function.
fn install_baseline(codes: &[[u8; SIZE]], page: usize) -> Result<Duration, String> {
    let start = Instant::now();
    let pages = codes.iter().map(|code| map_write_protect(code, page)).collect::<Result<Vec<_>, _>>()?;
    let elapsed = start.elapsed();
    check(pages[codes.len() - 1], value(codes.len() - 1))?;
    unmap_pages(pages, page)?;
    Ok(elapsed)
}

pub(super) fn run(rounds: usize) -> Result<(), String> {
    let names: Vec<String> = (0..FUNCTIONS).map(|i| format!("f{i}$i64")).collect();
    let codes: Vec<[u8; SIZE]> = (0..FUNCTIONS).map(|i| function(value(i))).collect();
    let page = sys::page_size();
    let exec = ExecAllocator::default();
    let mut times: [Vec<Duration>; 5] = Default::default();
    for _ in 0..rounds {
        times[0].push(install_ours(&exec, &names, &codes)?);
        times[1].push(install_ours_batched(&exec, &names, &codes)?);
        times[2].push(install_batches(&exec, &codes)?);
        times[3].push(install_short_lived_views(&codes, page)?);
        times[4].push(install_baseline(&codes, page)?);
    }
    let per = |d: Duration| d.as_secs_f64() * 1e9 / FUNCTIONS as f64;
    let [single_low, single_mid, single_high] = super::ratio_percentiles(&times[4], &times[0]);
    let [batch_low, batch_mid, batch_high] = super::ratio_percentiles(&times[4], &times[1]);
    let [sealed_low, sealed_mid, sealed_high] = super::ratio_percentiles(&times[2], &times[0]);
    let [single, batched, sealed, views, baseline] = times.map(median);
    println!(
        "generics: install {FUNCTIONS} instantiated functions of {SIZE} bytes ({rounds} rounds, medians)"
    );
    println!("  one request each: table + pwrite into the arena {:>8.1} ns per function", per(single));
    println!("  batches of {BATCH}: table + one pwrite per batch  {:>8.1} ns per function", per(batched));
    println!("  one sealed batch per function (the fallback)  {:>8.1} ns per function", per(sealed));
    println!("  a short-lived writable view per function      {:>8.1} ns per function", per(views));
    println!("  mmap+write+mprotect of its own page           {:>8.1} ns per function", per(baseline));
    println!(
        "  ratio mmap+write+mprotect / batches of {BATCH}: {batch_mid:.1}x (round ratios p10 {batch_low:.1}x, p90 \
         {batch_high:.1}x; target >= 20x)"
    );
    println!(
        "  ratio mmap+write+mprotect / one request: {single_mid:.1}x (p10 {single_low:.1}x, p90 {single_high:.1}x); \
         sealed batch per function / one request: {sealed_mid:.2}x (p10 {sealed_low:.2}x, p90 {sealed_high:.2}x; \
         target >= 1); short-lived view / one request: {:.2}x",
        ratio(views, single)
    );
    super::report::ratio("instantiate_install_vs_mmap_each", batch_mid, super::report::Goal::AtLeast(20.0));
    println!();
    cached(rounds)?;
    println!();
    metadata(rounds)
}

/// A module (written to a scratch file named `tag`) whose "possible" table lists `rows`
/// names `g{i}` (short rows: a note is read up to 1 MiB).
fn module_offering(tag: &str, rows: usize) -> Result<std::path::PathBuf, String> {
    use std::fmt::Write;
    let mut b = ModuleBuilder::new(Dialect::R96);
    if cfg!(target_arch = "aarch64") {
        b.header(|h| h.arch = 1);
    }
    b.add_code(b".text", &function(1));
    b.add_symbol(SymbolSpec::function(format!("{tag}_one").as_bytes(), 0, SIZE as u64));
    let mut note = String::from("possible |id, template, type_args, mangled_name, required_by, can_defer|\n");
    for i in 0..rows {
        let _ = writeln!(note, "    {i}, \"g\", \"{i}\", \"g{i}\", \"m\", true");
    }
    b.note_sdn(&note);
    let path = std::env::temp_dir().join(format!("smf-bench-instantiate-{tag}-{}.smf", std::process::id()));
    std::fs::write(&path, b.build().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    Ok(path)
}

/// Instantiates `count` names of the module at `path` (`g0`, ...) through a fresh `Generics`
/// (metadata updated): the time the requests took, the `Generics` kept for the caller.
fn instantiate_from(path: &std::path::Path, count: usize) -> Result<(Duration, Generics), String> {
    let cache = Arc::new(ModuleCache::new(0, 0));
    let compiler = |_: &Generics, _: &Request<'_>| -> Result<Vec<u8>, String> { Ok(function(3).to_vec()) };
    let generics = Generics::new(cache, InstantiatorConfig::default(), compiler);
    let names: Vec<String> = (0..count).map(|i| format!("g{i}")).collect();
    let start = Instant::now();
    for name in &names {
        generics.instantiate(path, name).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok((start.elapsed(), generics))
}

/// The instantiator's metadata: requests, note.sdn and unknown names against the note's size.
fn metadata(rounds: usize) -> Result<(), String> {
    const REQUESTS: usize = 10_000;
    let rounds = rounds.clamp(3, 10);
    let big = module_offering("big", 20_000)?;
    let small = module_offering("small", 10)?;
    let quarter = module_offering("quarter", 5_000)?;
    let (mut big_times, mut small_times, mut note_big, mut note_quarter) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let (elapsed, generics) = instantiate_from(&big, REQUESTS)?;
        big_times.push(elapsed);
        // note.sdn of the big note with half its rows moved, against a quarter of it.
        let start = Instant::now();
        let text = generics.note_sdn(&big).map_err(|e| e.to_string())?.ok_or("no note")?;
        note_big.push(start.elapsed());
        if text.matches("jit_compiled").count() != REQUESTS {
            return Err("the note does not list every instantiation".into());
        }
        let (_, generics) = instantiate_from(&quarter, REQUESTS / 4)?;
        let start = Instant::now();
        std::hint::black_box(generics.note_sdn(&quarter).map_err(|e| e.to_string())?);
        note_quarter.push(start.elapsed());
        // The same number of requests, 10 at a time from a 10-row note, a fresh Generics each time.
        let mut total = Duration::ZERO;
        for _ in 0..REQUESTS / 10 {
            total += instantiate_from(&small, 10)?.0;
        }
        small_times.push(total);
    }
    let [low, mid, high] = super::ratio_percentiles(&big_times, &small_times);
    let per_request = |d: Duration| d.as_secs_f64() * 1e9 / REQUESTS as f64;
    let (big_time, small_time) = (median(big_times), median(small_times));
    let (note_big, note_quarter) = (median(note_big), median(note_quarter));
    println!("generics: metadata against the note's size ({rounds} rounds, medians)");
    println!(
        "  {REQUESTS} requests from a 20,000-row note          {:>9.1} ns per request",
        per_request(big_time)
    );
    println!(
        "  {REQUESTS} requests from 10-row notes (10 per Generics) {:>9.1} ns per request",
        per_request(small_time)
    );
    println!("  ratio 20,000-row / 10-row: {mid:.2}x (p10 {low:.2}x, p90 {high:.2}x; target <= 2x)");
    println!(
        "  note.sdn of 20,000 rows (10,000 moved) {:.2} ms, of 5,000 rows (2,500 moved) {:.2} ms: {:.2}x for 4x \
         the rows (linear: about 4x)",
        us(note_big) / 1e3,
        us(note_quarter) / 1e3,
        ratio(note_big, note_quarter)
    );
    unknown_names(rounds, &big)?;
    for path in [big, small, quarter] {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Resolving a name nothing offers with 8 modules of 20,000-row notes cached, against
/// `dlsym(RTLD_DEFAULT)` of a name no library exports (which looks in every library).
fn unknown_names(rounds: usize, big: &std::path::Path) -> Result<(), String> {
    const REQUESTS: usize = 2_000;
    let cache = Arc::new(ModuleCache::new(0, 0));
    let mut paths = Vec::new();
    for i in 0..8 {
        let path = big.with_file_name(format!("smf-bench-instantiate-unknown{i}-{}.smf", std::process::id()));
        std::fs::copy(big, &path).map_err(|e| e.to_string())?;
        cache.get(&path).map_err(|e| e.to_string())?;
        paths.push(path);
    }
    let compiler = |_: &Generics, _: &Request<'_>| -> Result<Vec<u8>, String> { Ok(function(3).to_vec()) };
    let generics = Generics::new(Arc::clone(&cache), InstantiatorConfig::default(), compiler);
    let mut ours =
        || (0..REQUESTS).filter(|_| generics.resolve(std::hint::black_box("nobody$offers")).is_err()).count();
    let missing = |_: &usize| {
        // SAFETY: the global scope and a NUL-terminated name.
        unsafe { dlsym(RTLD_DEFAULT, std::hint::black_box(c"nobody_exports_this".as_ptr())) }.is_null()
    };
    let mut theirs = || (0..REQUESTS).filter(missing).count();
    let times = interleaved_rounds(rounds, &mut [&mut ours, &mut theirs]);
    let [low, mid, high] = super::ratio_percentiles(&times[1], &times[0]);
    let per = |d: Duration| d.as_secs_f64() * 1e9 / REQUESTS as f64;
    let (ours, theirs) = (median(times[0].clone()), median(times[1].clone()));
    println!("  an unknown name, 8 modules of 20,000-row notes cached  {:>9.1} ns", per(ours));
    println!("  dlsym(RTLD_DEFAULT) of a name no library exports      {:>9.1} ns", per(theirs));
    println!("  ratio dlsym / ours: {mid:.2}x (p10 {low:.2}x, p90 {high:.2}x)");
    for path in paths {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// A module offering `cached$i64`, written to a scratch file.
fn offering_module() -> Result<std::path::PathBuf, String> {
    let mut b = ModuleBuilder::new(Dialect::R96);
    if cfg!(target_arch = "aarch64") {
        b.header(|h| h.arch = 1);
    }
    let code = function(1);
    b.add_code(b".text", &code);
    b.add_symbol(SymbolSpec::function(b"one", 0, SIZE as u64));
    b.note_sdn(
        "possible |id, template, type_args, mangled_name, required_by, can_defer|\n    \
         0, \"cached\", \"i64\", \"cached$i64\", \"main\", true",
    );
    let path = std::env::temp_dir().join(format!("smf-bench-instantiate-{}.smf", std::process::id()));
    std::fs::write(&path, b.build().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    Ok(path)
}

/// Repeated requests for an instantiated name, against dlsym.
fn cached(rounds: usize) -> Result<(), String> {
    const REQUESTS: usize = 10_000;
    let path = offering_module()?;
    let cache = Arc::new(ModuleCache::new(0, 0));
    let compiler = |_: &Generics, _: &Request<'_>| -> Result<Vec<u8>, String> { Ok(function(7).to_vec()) };
    let generics = Generics::new(cache, InstantiatorConfig::default(), compiler);
    let address = generics.instantiate(&path, "cached$i64").map_err(|e| e.to_string())?;
    check(address, 7)?;

    let c_cache = smf::ffi::cache::smf_cache_new(0, 0);
    let c_path = CString::new(path.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
    let c_name = CString::new("cached$i64").map_err(|e| e.to_string())?;
    let config = smf::ffi::instantiate::SmfJitConfig { max_depth: 0, enabled: true, update_metadata: true };
    // SAFETY: `c_compile` has the callback's type; the cache handle is live.
    let c_jit =
        unsafe { smf::ffi::instantiate::smf_jit_new(c_cache, config, Some(c_compile), std::ptr::null_mut()) };
    let mut c_address: *const c_void = std::ptr::null();
    // SAFETY: live handle, NUL-terminated strings, a writable out pointer.
    let code = unsafe {
        smf::ffi::instantiate::smf_jit_instantiate(c_jit, c_path.as_ptr(), c_name.as_ptr(), &mut c_address)
    };
    if code != 0 {
        return Err(format!("smf_jit_instantiate: {code} ({})", smf::ffi::last_error()));
    }

    // SAFETY: dlopen of the math library with a NUL-terminated name.
    let libm = unsafe { dlopen(c"libm.so.6".as_ptr(), RTLD_NOW) };
    if libm.is_null() {
        return Err("dlopen(libm.so.6) failed".into());
    }
    let symbol = c"cos";
    let mut rust_side = || {
        (0..REQUESTS)
            .filter(|_| generics.instantiate(&path, std::hint::black_box("cached$i64")).is_ok())
            .count()
    };
    let mut c_side = || {
        (0..REQUESTS)
            .filter(|_| {
                let mut out: *const c_void = std::ptr::null();
                // SAFETY: as above.
                unsafe {
                    smf::ffi::instantiate::smf_jit_instantiate(
                        c_jit,
                        c_path.as_ptr(),
                        std::hint::black_box(c_name.as_ptr()),
                        &mut out,
                    ) == 0
                }
            })
            .count()
    };
    let lookup = |handle: *mut c_void| {
        // SAFETY: a live handle (or the global scope) and a NUL-terminated name.
        !unsafe { dlsym(handle, std::hint::black_box(symbol.as_ptr())) }.is_null()
    };
    let mut dlsym_handle = || (0..REQUESTS).filter(|_| lookup(libm)).count();
    let mut dlsym_default = || (0..REQUESTS).filter(|_| lookup(RTLD_DEFAULT)).count();
    let rounds_times =
        interleaved_rounds(rounds, &mut [&mut rust_side, &mut c_side, &mut dlsym_handle, &mut dlsym_default]);
    let [rust_low, rust_mid, rust_high] = super::ratio_percentiles(&rounds_times[2], &rounds_times[0]);
    let [c_low, c_mid, c_high] = super::ratio_percentiles(&rounds_times[2], &rounds_times[1]);
    let times: Vec<Duration> = rounds_times.into_iter().map(median).collect();
    smf::ffi::instantiate::smf_jit_free(c_jit);
    smf::ffi::cache::smf_cache_free(c_cache);
    let _ = std::fs::remove_file(&path);
    let per = |i: usize| us(times[i]) * 1e3 / REQUESTS as f64;
    println!(
        "generics: a repeated request for an instantiated name ({rounds} rounds of {REQUESTS}, medians)"
    );
    println!("  smf::instantiate::Generics::instantiate                  {:>9.1} ns", per(0));
    println!("  smf_jit_instantiate (C ABI)                 {:>9.1} ns", per(1));
    println!("  dlsym(libm handle, \"cos\")                   {:>9.1} ns", per(2));
    println!("  dlsym(RTLD_DEFAULT, \"cos\")                  {:>9.1} ns", per(3));
    println!(
        "  ratio dlsym(handle) / ours (round ratios p10 / median / p90): Rust {rust_low:.2}x / {rust_mid:.2}x / \
         {rust_high:.2}x, C {c_low:.2}x / {c_mid:.2}x / {c_high:.2}x (target >= 1); dlsym(RTLD_DEFAULT) / C: {:.2}x",
        ratio(times[3], times[1])
    );
    Ok(())
}

/// The C-side compiler for the cached benchmark: `function(7)`.
unsafe extern "C" fn c_compile(
    _user: *mut c_void,
    _name: *const c_char,
    _type_args: *const c_char,
    _template: *const u8,
    _template_len: usize,
    code: *mut *const u8,
    code_len: *mut usize,
) -> i32 {
    static CODE: std::sync::OnceLock<[u8; SIZE]> = std::sync::OnceLock::new();
    let bytes = CODE.get_or_init(|| function(7));
    // SAFETY: the library passes writable out pointers.
    unsafe {
        code.write(bytes.as_ptr());
        code_len.write(bytes.len());
    }
    0
}
