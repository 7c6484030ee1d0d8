//! Benchmark "resolve": finding an exported name among many loaded libraries, as import
//! resolution does. `LIBRARIES` modules of `EXPORTS` functions each, registered in one
//! `smf::loader::Registry`, versus the same number of shared libraries (same names, built by
//! gcc) opened `RTLD_NOW | RTLD_GLOBAL` and searched with `dlsym(RTLD_DEFAULT, ...)`, which walks
//! the process's global scope as the dynamic linker's own symbol resolution does. Both sides
//! look up the same names, spread over all libraries, in the same order.

// dlopen/dlsym are C functions.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use smf::loader::{load, LoadRequest, Registry, SharedModule};
use smf_format::write::{ModuleBuilder, SymbolSpec};
use smf_format::Dialect;
use smf_runtime::load::Resolver;

use super::{interleaved, ratio, us};
use crate::workspace_root;

extern "C" {
    fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
    fn dlclose(handle: *mut c_void) -> c_int;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}
const RTLD_NOW: c_int = 2;
const RTLD_GLOBAL: c_int = 0x100;
/// glibc's `RTLD_DEFAULT`: search the global scope.
const RTLD_DEFAULT: *mut c_void = std::ptr::null_mut();

const EXPORTS: usize = 20;

/// The exported name `j` of library `i`.
fn name(i: usize, j: usize) -> String {
    format!("smf_bench_lib{i}_f{j}")
}

/// Builds `libraries` shared libraries (gcc, a few at a time) in `dir`.
fn build_shared(dir: &Path, libraries: usize) -> Result<Vec<PathBuf>, String> {
    let paths: Vec<PathBuf> = (0..libraries).map(|i| dir.join(format!("libresolve{i}.so"))).collect();
    let build = |i: usize| -> Result<(), String> {
        if paths[i].exists() {
            return Ok(());
        }
        let src = dir.join(format!("resolve{i}.c"));
        let c: String =
            (0..EXPORTS).map(|j| format!("long {}(long x) {{ return x + {j}; }}\n", name(i, j))).collect();
        std::fs::write(&src, c).map_err(|e| e.to_string())?;
        let status = Command::new("gcc")
            .args(["-shared", "-O2", "-fPIC"])
            .arg(&src)
            .arg("-o")
            .arg(&paths[i])
            .status()
            .map_err(|e| e.to_string())?;
        status.success().then_some(()).ok_or_else(|| "gcc failed".to_owned())
    };
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(8);
    std::thread::scope(|scope| {
        let jobs: Vec<_> = (0..workers)
            .map(|w| scope.spawn(move || (w..libraries).step_by(workers).try_for_each(build)))
            .collect();
        jobs.into_iter().try_for_each(|job| job.join().map_err(|_| "build thread panicked".to_owned())?)
    })?;
    Ok(paths)
}

/// An SMF module exporting library `i`'s names (each a function returning its index).
fn module(i: usize) -> Vec<u8> {
    let mut b = ModuleBuilder::new(Dialect::S128);
    let mut code = Vec::new();
    for j in 0..EXPORTS {
        b.add_symbol(SymbolSpec::function(name(i, j).as_bytes(), code.len() as u64, 6));
        code.extend_from_slice(&[0xB8, j as u8, 0, 0, 0, 0xC3]);
    }
    b.add_code(b".text", &code);
    b.build().expect("builder module")
}

pub(super) fn run(libraries: usize, rounds: usize) -> Result<(), String> {
    let dir = workspace_root().join("target").join("bench-resolve");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let shared = build_shared(&dir, libraries)?;
    // Closed at the end, though glibc keeps each library a `dlsym(RTLD_DEFAULT)` below finds a
    // name in loaded as a dependency of the program: this benchmark runs last (`run_wanted`).
    let mut handles = Vec::with_capacity(shared.len());
    for path in &shared {
        let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
        // SAFETY: a library we just built, whose only code is the functions above.
        let handle = unsafe { dlopen(c.as_ptr(), RTLD_NOW | RTLD_GLOBAL) };
        if handle.is_null() {
            return Err(format!("dlopen {} failed", path.display()));
        }
        handles.push(handle);
    }
    let registry = Registry::new();
    let modules: Vec<Arc<SharedModule>> = (0..libraries)
        .map(|i| {
            let module =
                load(&LoadRequest::bytes(&module(i)).resolver_only(&())).map_err(|e| e.to_string())?;
            registry.add(&module);
            Ok(module)
        })
        .collect::<Result<_, String>>()?;
    // Names spread over every library, in an order that jumps between them.
    let names: Vec<CString> =
        (0..1000).map(|k| CString::new(name(k * 7919 % libraries, k % EXPORTS)).expect("no NUL")).collect();
    for c in &names {
        // SAFETY: looking up a name in the global scope.
        let theirs = unsafe { dlsym(RTLD_DEFAULT, c.as_ptr()) };
        let ours = registry.resolve(c.as_bytes());
        if theirs.is_null() || ours.is_none() {
            return Err(format!("{c:?} not found by both"));
        }
    }
    let mut ours = || names.iter().filter(|c| registry.resolve(c.as_bytes()).is_some()).count();
    // SAFETY: as above.
    let mut theirs =
        || names.iter().filter(|c| !unsafe { dlsym(RTLD_DEFAULT, c.as_ptr()) }.is_null()).count();
    let times = interleaved(rounds, &mut [&mut ours, &mut theirs]);
    let per = |i: usize| us(times[i]) * 1e3 / names.len() as f64;
    println!("resolve: a name among {libraries} libraries of {EXPORTS} exports, {rounds} interleaved rounds");
    println!("  smf Registry::resolve                    {:>9.1} ns", per(0));
    println!("  dlsym(RTLD_DEFAULT) over RTLD_GLOBAL .so {:>9.1} ns", per(1));
    println!("  ratio: dlsym / smf {:.1}x", ratio(times[1], times[0]));
    super::report::ratio("resolve_vs_dlsym", ratio(times[1], times[0]), super::report::Goal::Reported);
    drop(modules);
    for handle in handles {
        // SAFETY: a handle dlopen returned above; nothing of its library is in use any more.
        unsafe { dlclose(handle) };
    }
    Ok(())
}
