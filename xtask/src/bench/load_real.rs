//! Benchmark "real": loads of real libraries, packed with `smf pack`, against `dlopen` of the
//! same objects linked with `gcc -shared`, in one process, the two sides alternated round by
//! round. One row per library the project builds: Lua 5.4 (the `lua` benchmark's objects) and a
//! generated library of more than 1 MB of code and 10,000 call sites ([`generated_source`]).
//!
//! Each round times, on each side, a whole use: load with every import resolved (`smf::loader::load`
//! with the process's linking, every feature on; `dlopen(RTLD_NOW | RTLD_LOCAL)`), one lookup,
//! one call of what was found (the two must agree), release. Target: every library at least as
//! fast as `dlopen` (ratio >= 1), the generated one at least 1.5x.
//!
//! Beside the times, callgrind's instructions for one such use on each side
//! (`callgrind-child`), which do not drift with the machine's load. `--quick` (CI's smoke run)
//! counts no instructions and generates a library of 500 functions.

// dlopen/dlsym are C functions; calling what they find needs unsafe.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::load::{dlclose, dlopen, dlsym, RTLD_LOCAL, RTLD_NOW};
use super::report::{self, Goal};
use super::{median, ratio_percentiles, us};
use crate::workspace_root;

/// Functions of the generated library: enough for more than 1 MB of code at -O2.
const GENERATED_FUNCTIONS: usize = 5_000;
/// The same for `--quick` (a smoke run: gcc takes half a minute over the full library).
const QUICK_GENERATED_FUNCTIONS: usize = 500;

/// One library of the benchmark: its module, its shared-library twin, the function a round
/// looks up and calls (`long f(long)`), and the least speed-up it must reach.
pub(crate) struct Library {
    pub(crate) name: &'static str,
    pub(crate) module: PathBuf,
    pub(crate) shared: PathBuf,
    pub(crate) function: &'static str,
    goal: f64,
    /// Its results' names: the times' ratio, the instructions' ratio, the private memory's
    /// and a fresh process's first load's (`private_memory.rs`).
    pub(crate) results: [&'static str; 4],
}

/// The C of the generated library: `n` functions ([`GENERATED_FUNCTIONS`]), each with four calls to
/// others (calls between a library's own exported functions, as real C makes them), reads of
/// a global table, a string constant, and a table of pointers to every function (absolute
/// addresses in data, which need the load address).
pub(crate) fn generated_source(n: usize) -> String {
    let mut c = String::from("long g_data[256];\nlong g_count;\n");
    for i in 0..n {
        c.push_str(&format!("long f{i}(long x);\n"));
    }
    for i in 0..n {
        let [a, b, d, e] = [1, 7, 31, 97].map(|k| (i * k + k) % n);
        c.push_str(&format!(
            "long f{i}(long x) {{\n  long a = x ^ {i};\n  static const char m[] = \"function {i}\";\n  \
             for (long j = 0; j < (x & 3); j++) a = a * 31 + g_data[(a + j) & 255] + m[j & 7];\n  \
             if (x < 2) return a + g_count;\n  \
             if (a & 1) a += f{a}(x >> 1); else a -= f{b}(x >> 2);\n  \
             if (a & 2) a ^= f{d}(x >> 3);\n  if (a & 4) a += f{e}(x >> 4);\n  \
             g_data[{m}] += a;\n  return a * {i} + g_count;\n}}\n",
            m = i % 256
        ));
    }
    c.push_str(&format!("long (*const g_functions[{n}])(long) = {{"));
    for i in 0..n {
        c.push_str(&format!("f{i},"));
    }
    c.push_str("};\nlong call_through_table(long x) { return g_functions[x % ");
    c.push_str(&format!("{n}](x); }}\n"));
    c
}

/// Builds the generated library of `n` functions in `dir`: its module and its shared library.
fn build_generated(dir: &Path, n: usize) -> Result<Library, String> {
    let source = dir.join("generated.c");
    std::fs::write(&source, generated_source(n)).map_err(|e| e.to_string())?;
    let object = dir.join("generated.o");
    gcc(Command::new("gcc").args(["-c", "-O2", "-fPIC"]).arg(&source).arg("-o").arg(&object))?;
    let shared = dir.join("libgenerated.so");
    gcc(Command::new("gcc").args(["-shared", "-O2"]).arg(&object).arg("-o").arg(&shared))?;
    let module = dir.join("generated.smf");
    super::load::pack(std::slice::from_ref(&object), &module)?;
    Ok(Library {
        name: "generated",
        module,
        shared,
        function: "call_through_table",
        goal: 1.5,
        results: [
            "load_real_generated_vs_dlopen",
            "load_real_instructions_generated_vs_dlopen",
            "loaded_private_bytes_vs_dlopen_generated",
            "first_load_real_generated_vs_dlopen",
        ],
    })
}

/// Builds Lua's module and its shared library in `dir`.
fn build_lua(dir: &Path) -> Result<Library, String> {
    let (module, _, objects) = super::lua::build_with_objects(dir)?;
    let shared = dir.join("liblua.so");
    gcc(Command::new("gcc").args(["-shared", "-O2"]).args(&objects).arg("-lm").arg("-o").arg(&shared))?;
    Ok(Library {
        name: "lua",
        module,
        shared,
        function: "lua_type_name_length",
        goal: 1.0,
        results: [
            "load_real_lua_vs_dlopen",
            "load_real_instructions_lua_vs_dlopen",
            "loaded_private_bytes_vs_dlopen_lua",
            "first_load_real_lua_vs_dlopen",
        ],
    })
}

fn gcc(command: &mut Command) -> Result<(), String> {
    let status = command.status().map_err(|e| format!("gcc: {e}"))?;
    status.success().then_some(()).ok_or_else(|| format!("{command:?} failed"))
}

/// Builds every library of the benchmark under `target/bench-real` (Lua where the `lua`
/// benchmark builds it), the generated one smaller if `quick`.
pub(crate) fn build(quick: bool) -> Result<Vec<Library>, String> {
    let dir = workspace_root().join("target").join("bench-real");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let functions = if quick { QUICK_GENERATED_FUNCTIONS } else { GENERATED_FUNCTIONS };
    let lua = workspace_root().join("target").join("bench-lua");
    std::fs::create_dir_all(&lua).map_err(|e| e.to_string())?;
    Ok(vec![build_lua(&lua)?, build_generated(&dir, functions)?])
}

/// One use through smf: load with the process's linking, look `function` up, call it with
/// `argument`, release. Returns what the call returned.
pub(crate) fn use_module(module: &Path, function: &str, argument: i64) -> Result<i64, String> {
    let loaded = smf::loader::load(&smf::loader::LoadRequest::path(module))
        .map_err(|e| format!("{}: {e}", module.display()))?;
    // SAFETY: the benchmark's functions take and return a long.
    let f = unsafe { loaded.loaded().function::<extern "C" fn(i64) -> i64>(function.as_bytes()) }
        .ok_or_else(|| format!("{}: no function {function}", module.display()))?;
    Ok(f.get()(argument))
}

/// One use through `dlopen`: the same for the shared library.
pub(crate) fn use_shared(shared: &Path, function: &str, argument: i64) -> Result<i64, String> {
    open_shared(shared)?.call(function, argument)
}

/// A shared library opened with `dlopen(RTLD_NOW | RTLD_LOCAL)`, closed when dropped.
pub(crate) struct Shared<'p> {
    handle: *mut std::ffi::c_void,
    path: &'p Path,
}

/// Opens the shared library at `path`.
pub(crate) fn open_shared(path: &Path) -> Result<Shared<'_>, String> {
    let name = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: a NUL-terminated path of a library the benchmark built.
    let handle = unsafe { dlopen(name.as_ptr(), RTLD_NOW | RTLD_LOCAL) };
    if handle.is_null() {
        return Err(format!("dlopen {} failed", path.display()));
    }
    Ok(Shared { handle, path })
}

impl Shared<'_> {
    /// Looks `function` up and calls it with `argument`.
    pub(crate) fn call(&self, function: &str, argument: i64) -> Result<i64, String> {
        let name = CString::new(function).map_err(|e| e.to_string())?;
        // SAFETY: a live handle and a NUL-terminated name; the function takes and returns a long.
        let result = unsafe {
            let address = dlsym(self.handle, name.as_ptr()) as usize;
            smf_runtime::exec::function_pointer::<extern "C" fn(i64) -> i64>(address).map(|f| f(argument))
        };
        result.ok_or_else(|| format!("{}: no function {function}", self.path.display()))
    }
}

impl Drop for Shared<'_> {
    fn drop(&mut self) {
        // SAFETY: the handle is live and nothing found through it is used after this.
        unsafe { dlclose(self.handle) };
    }
}

/// The hidden child mode of the real libraries: `callgrind-child smf|dlopen PATH FUNCTION N`,
/// N uses of a library (load, lookup, call, release) after a warm-up, through smf or `dlopen`.
pub(crate) fn child(side: &str, path: &str, function: &str, loads: &str) -> Result<(), String> {
    let loads: usize = loads.parse().map_err(|_| format!("bad count {loads}"))?;
    let path = Path::new(path);
    for _ in 0..crate::instructions::WARM_UP + loads {
        std::hint::black_box(match side {
            "smf" => use_module(path, function, 5)?,
            "dlopen" => use_shared(path, function, 5)?,
            _ => return Err(format!("unknown side {side}")),
        });
    }
    Ok(())
}

/// Instructions of one use of `library` (load, lookup, call, release), through smf and through
/// `dlopen`, counted over `loads` uses.
pub(crate) fn instructions(library: &Library, loads: usize) -> Result<[f64; 2], String> {
    let dir = library.module.parent().unwrap_or(Path::new("."));
    let mut counts = [0.0; 2];
    for (count, (side, path)) in
        counts.iter_mut().zip([("smf", &library.module), ("dlopen", &library.shared)])
    {
        let args = |n: usize| {
            [side.to_owned(), path.display().to_string(), library.function.to_owned(), n.to_string()]
        };
        let base = crate::instructions::of_child(&args(0), &dir.join("callgrind.base"))?;
        let total = crate::instructions::of_child(&args(loads), &dir.join("callgrind.loads"))?;
        *count = total.saturating_sub(base) as f64 / loads as f64;
    }
    Ok(counts)
}

/// Times every library (and counts its instructions unless `quick`); the libraries, for the
/// private-memory rows that follow.
pub(super) fn run(rounds: usize, quick: bool) -> Result<Vec<Library>, String> {
    let libraries = build(quick)?;
    let callgrind = !quick && crate::valgrind::ensure_valgrind().is_ok();
    println!("real: real libraries, load + lookup + call + release, against dlopen + dlsym + call + dlclose");
    for library in &libraries {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for round in 0..rounds + 1 {
            let (ours_first, mut t_ours, mut t_theirs) = (round % 2 == 0, Duration::ZERO, Duration::ZERO);
            for side in [ours_first, !ours_first] {
                let start = Instant::now();
                let value = match side {
                    true => use_module(&library.module, library.function, black_box(5))?,
                    false => use_shared(&library.shared, library.function, black_box(5))?,
                };
                let elapsed = start.elapsed();
                black_box(value);
                match side {
                    true => t_ours = elapsed,
                    false => t_theirs = elapsed,
                }
            }
            if round > 0 {
                ours.push(t_ours);
                theirs.push(t_theirs);
            }
        }
        let a = use_module(&library.module, library.function, 12345)?;
        let b = use_shared(&library.shared, library.function, 12345)?;
        if a != b {
            return Err(format!(
                "{}: {} returned {a} through smf and {b} through dlopen",
                library.name, library.function
            ));
        }
        let [low, mid, high] = ratio_percentiles(&theirs, &ours);
        let size = std::fs::metadata(&library.module).map(|m| m.len()).unwrap_or(0);
        println!(
            "  {:<10} module {size:>9} bytes: smf {:>8.1} us, dlopen {:>8.1} us; dlopen / smf {mid:.2}x (10th-90th percentile {low:.2}-{high:.2}, {rounds} rounds)",
            library.name,
            us(median(ours)),
            us(median(theirs)),
        );
        if callgrind {
            let [smf, dl] = instructions(library, 20)?;
            println!(
                "  {:<10} callgrind: smf {:.0}k instructions a use, dlopen {:.0}k: {:.2}x",
                "",
                smf / 1e3,
                dl / 1e3,
                dl / smf
            );
            report::ratio(library.results[1], dl / smf, Goal::Reported);
        }
        report::ratio(library.results[0], mid, Goal::AtLeast(library.goal));
    }
    Ok(libraries)
}
