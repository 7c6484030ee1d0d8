//! Out of memory is an error, never an abort. `refusing.rs`: a global allocator that refuses
//! allocations stands in for a process at its address-space limit (a binary of its own: the
//! allocator is process-wide).
//!
//! Then a real limit (`harness.rs`): child processes set RLIMIT_AS at their size plus a margin
//! swept upward, and call each C entry point that allocates (module loads, with a resolver too,
//! cache gets and prefetches, the `rt_*` file and executable-memory functions, the
//! instantiator's requests, note and resolve over a module whose note offers 15,000 names, the
//! execution manager compiling 400 functions of CLIF): an error naming memory, or success,
//! never a signal. `exports.rs` sweeps every other function of `smf.h` the same way, and checks
//! that each function the header declares has its case.

// A global allocator is an unsafe trait implementation; the C ABI is called in unsafe blocks.
#![allow(unsafe_code)]

use std::ffi::{c_char, CString};
use std::path::{Path, PathBuf};

use smf::ffi::cache::{self as cache_ffi, SmfCache};
use smf::ffi::exec_manager as exec_manager_ffi;
use smf::ffi::imports::{self as imports_ffi, SmfLoadOptions, SMF_LOAD_LOCAL};
use smf::ffi::instantiate as instantiate_ffi;
use smf::ffi::rt_exec;
use smf::ffi::rt_mmap::{self, RtMapping};
use smf::ffi::smf_module::{self as module_ffi, SmfModule};
use smf_format::write::samples;
use smf_format::Dialect;

mod exports;
mod harness;
mod huge_names;
mod refusing;

use harness::{c_path, sweep, sweep_in_child, swept_in_child};

/// The exports `address_space_limit_child` sweeps itself, each with a test of its own below
/// (`exports.rs` has the others).
const SWEPT_HERE: [&str; 17] = [
    "smf_module_load",
    "smf_module_load_bytes",
    "smf_module_load_ex",
    "smf_cache_get",
    "smf_cache_prefetch",
    "rt_mmap_file",
    "rt_mmap_read_string",
    "rt_mmap_read_bytes",
    "rt_file_size_for_mmap",
    "rt_alloc_exec_memory",
    "rt_write_exec_memory",
    "smf_jit_instantiate",
    "smf_jit_note_sdn",
    "smf_jit_instantiate_batch",
    "smf_jit_resolve_generic",
    "smf_jit_resolve",
    "rt_exec_manager_compile_mir",
];

/// A cache handle, freed when dropped (with no limit set).
struct Cache(*mut SmfCache);

impl Cache {
    fn new() -> Self {
        let cache = cache_ffi::smf_cache_new(0, 0);
        assert!(!cache.is_null());
        Self(cache)
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        cache_ffi::smf_cache_free(self.0);
    }
}

/// A module handle some call may hand out, released when dropped.
#[derive(Default)]
struct Module(std::cell::Cell<usize>);

impl Module {
    /// Keeps `module`; whether it is a module.
    fn keep(&self, module: *mut SmfModule) -> bool {
        self.0.set(module as usize);
        !module.is_null()
    }

    /// The handle kept (NULL if none).
    fn get(&self) -> *mut SmfModule {
        self.0.get() as *mut SmfModule
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        module_ffi::smf_module_release(self.0.get() as *mut SmfModule);
    }
}

/// A resolver callback as C passes one: every name resolves (to this function).
unsafe extern "C" fn resolve_any(
    _user: *mut std::ffi::c_void,
    _name: *const c_char,
) -> *const std::ffi::c_void {
    resolve_any as *const std::ffi::c_void
}

/// Bytes of the file the `rt_*` cases map: no NUL anywhere.
const MAPPED_FILE_LEN: usize = 64 << 20;

/// Maps `mapped.bin` whole, read-only (with no limit set).
fn map_whole(dir: &Path) -> RtMapping {
    // SAFETY: a NUL-terminated path.
    let map = unsafe { rt_mmap::rt_mmap_file(c_path(dir, "mapped.bin").as_ptr(), 1, 2, 0, 0) };
    assert_eq!(usize::try_from(map.size), Ok(MAPPED_FILE_LEN), "{}", smf::ffi::last_error());
    map
}

/// The child's side of the tests below: runs the sweep of `SMF_RLIMIT_CASE` over the files in
/// `SMF_RLIMIT_DIR` (it does nothing unless run as that child).
#[test]
fn address_space_limit_child() {
    let (Some(case), Some(dir)) = (std::env::var_os("SMF_RLIMIT_CASE"), std::env::var_os("SMF_RLIMIT_DIR"))
    else {
        return;
    };
    let dir = PathBuf::from(dir);
    // Warm up: the process's allocator has its region before any limit is set.
    drop(
        smf::loader::load(
            &smf::loader::LoadRequest::bytes(&samples::return_42(Dialect::R96)).resolver_only(&()),
        )
        .unwrap(),
    );
    let large = c_path(&dir, "large.smf");
    match case.to_str().unwrap() {
        "smf_module_load" => sweep(Module::default, |m| {
            // SAFETY: a NUL-terminated path.
            m.keep(unsafe { module_ffi::smf_module_load(large.as_ptr()) })
        }),
        "smf_module_load_bytes" => {
            let bytes = std::fs::read(dir.join("large.smf")).unwrap();
            sweep(Module::default, |m| {
                // SAFETY: `bytes.len()` readable bytes.
                m.keep(unsafe { module_ffi::smf_module_load_bytes(bytes.as_ptr(), bytes.len()) })
            });
        }
        "smf_module_load_ex" => {
            let path = c_path(&dir, "importer.smf");
            let options = SmfLoadOptions {
                resolve: Some(resolve_any),
                user: std::ptr::null_mut(),
                flags: SMF_LOAD_LOCAL,
            };
            sweep(Module::default, |m| {
                // SAFETY: a NUL-terminated path, options whose callback may be called.
                m.keep(unsafe { imports_ffi::smf_module_load_ex(path.as_ptr(), &options) })
            });
        }
        "smf_cache_get" => sweep(
            || (Cache::new(), Module::default()),
            |(c, m)| {
                // SAFETY: a live cache, a NUL-terminated path.
                m.keep(unsafe { cache_ffi::smf_cache_get(c.0, large.as_ptr()) })
            },
        ),
        "smf_cache_prefetch" => {
            let paths: Vec<CString> = (0..4).map(|i| c_path(&dir, &format!("large{i}.smf"))).collect();
            let pointers: Vec<*const c_char> = paths.iter().map(|p| p.as_ptr()).collect();
            sweep(Cache::new, |c| {
                // SAFETY: a live cache, 4 NUL-terminated paths.
                unsafe { cache_ffi::smf_cache_prefetch(c.0, pointers.as_ptr(), 4, 8) == 4 }
            });
        }
        "rt_mmap_file" => {
            struct Mapped(std::cell::Cell<RtMapping>);
            impl Drop for Mapped {
                fn drop(&mut self) {
                    let map = self.0.get();
                    if map.address != 0 {
                        assert!(rt_mmap::rt_munmap(map.address, map.size));
                    }
                }
            }
            let path = c_path(&dir, "mapped.bin");
            sweep(
                || Mapped(std::cell::Cell::new(RtMapping { address: 0, size: 0 })),
                |m| {
                    // SAFETY: a NUL-terminated path.
                    m.0.set(unsafe { rt_mmap::rt_mmap_file(path.as_ptr(), 1, 2, 0, 0) });
                    m.0.get().address != 0
                },
            );
        }
        "rt_mmap_read_string" => {
            let map = map_whole(&dir);
            let mut dst = [0u8; 16];
            sweep(
                || (),
                |()| {
                    // SAFETY: `dst` is writable for the 16 bytes said.
                    unsafe {
                        rt_mmap::rt_mmap_read_string(map.address, 0, 0, dst.as_mut_ptr(), 16) == map.size
                    }
                },
            );
            assert_eq!(&dst, b"aaaaaaaaaaaaaaaa");
        }
        "rt_mmap_read_bytes" => {
            let map = map_whole(&dir);
            let mut dst = vec![0u8; 1 << 20];
            sweep(
                || (),
                |()| {
                    // SAFETY: `dst` is writable for the 1 MiB said.
                    unsafe {
                        rt_mmap::rt_mmap_read_bytes(map.address, 4096, 1 << 20, dst.as_mut_ptr()) == 1 << 20
                    }
                },
            );
        }
        "rt_file_size_for_mmap" => {
            let path = c_path(&dir, "mapped.bin");
            sweep(
                || (),
                |()| {
                    // SAFETY: a NUL-terminated path.
                    unsafe { rt_mmap::rt_file_size_for_mmap(path.as_ptr()) == MAPPED_FILE_LEN as i64 }
                },
            );
        }
        "rt_alloc_exec_memory" => {
            struct Alloc(std::cell::Cell<i64>);
            impl Drop for Alloc {
                fn drop(&mut self) {
                    if self.0.get() != 0 {
                        assert!(rt_exec::rt_free_exec_memory(self.0.get(), 0));
                    }
                }
            }
            sweep(
                || Alloc(std::cell::Cell::new(0)),
                |a| {
                    a.0.set(rt_exec::rt_alloc_exec_memory(256 << 20));
                    a.0.get() != 0
                },
            );
        }
        "rt_write_exec_memory" => {
            let len = 64i64 << 20;
            let target = rt_exec::rt_alloc_exec_memory(len);
            assert_ne!(target, 0, "{}", smf::ffi::last_error());
            let code = vec![0xC3u8; 64 << 20];
            sweep(
                || (),
                |()| {
                    // SAFETY: `code` holds the `len` bytes said.
                    unsafe { rt_exec::rt_write_exec_memory(target, code.as_ptr(), len, 0) == len }
                },
            );
            assert!(rt_exec::rt_free_exec_memory(target, 0));
        }
        "smf_jit_instantiate" => {
            let path = c_path(&dir, "offers.smf");
            sweep(Generics::new, |j| {
                let mut address = std::ptr::null();
                // SAFETY: a live instantiator, NUL-terminated strings, a writable out pointer.
                unsafe {
                    instantiate_ffi::smf_jit_instantiate(
                        j.jit,
                        path.as_ptr(),
                        c"g14999".as_ptr(),
                        &mut address,
                    ) == 0
                }
            });
        }
        "smf_jit_note_sdn" => {
            let path = c_path(&dir, "offers.smf");
            let names: Vec<CString> = (0..5_000).map(|i| CString::new(format!("g{i}")).unwrap()).collect();
            let pointers: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
            let prepare = || {
                let j = Generics::new();
                // SAFETY: as above; 5,000 names.
                let code = unsafe {
                    instantiate_ffi::smf_jit_instantiate_batch(
                        j.jit,
                        path.as_ptr(),
                        pointers.as_ptr(),
                        pointers.len(),
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                    )
                };
                assert_eq!(code, 0, "{}", smf::ffi::last_error());
                j
            };
            sweep(prepare, |j| {
                let (mut text, mut len) = (std::ptr::null(), 0);
                // SAFETY: as above.
                unsafe { instantiate_ffi::smf_jit_note_sdn(j.jit, path.as_ptr(), &mut text, &mut len) == 1 }
            });
        }
        "smf_jit_instantiate_batch" => {
            let path = c_path(&dir, "offers.smf");
            let names: Vec<CString> = (0..2_000).map(|i| CString::new(format!("g{i}")).unwrap()).collect();
            let pointers: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
            sweep(Generics::new, |j| {
                // SAFETY: a live instantiator, NUL-terminated strings, 2,000 names.
                let code = unsafe {
                    instantiate_ffi::smf_jit_instantiate_batch(
                        j.jit,
                        path.as_ptr(),
                        pointers.as_ptr(),
                        pointers.len(),
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                    )
                };
                code == 0
            });
        }
        "smf_jit_resolve_generic" => {
            // 64 type arguments of 16 KiB: a mangled name of 1 MiB, which nothing offers.
            let arg = CString::new(vec![b'T'; 16 << 10]).unwrap();
            let args: Vec<*const c_char> = (0..64).map(|_| arg.as_ptr()).collect();
            sweep(Generics::new, |j| {
                let mut address = std::ptr::null();
                // SAFETY: a live instantiator, NUL-terminated strings, 64 type arguments.
                let code = unsafe {
                    instantiate_ffi::smf_jit_resolve_generic(
                        j.jit,
                        c"Big".as_ptr(),
                        args.as_ptr(),
                        64,
                        &mut address,
                    )
                };
                // Done when it could look: nothing offers the name.
                code == instantiate_ffi::SMF_JIT_NOT_FOUND
            });
        }
        "smf_jit_resolve" => {
            let path = c_path(&dir, "offers.smf");
            let prepare = || {
                let j = Generics::new();
                let mut module = Module::default();
                // SAFETY: a live cache, a NUL-terminated path.
                assert!(module.keep(unsafe { cache_ffi::smf_cache_get(j.cache.0, path.as_ptr()) }));
                drop(std::mem::take(&mut module));
                j
            };
            sweep(prepare, |j| {
                let mut address = std::ptr::null();
                // SAFETY: as above.
                unsafe { instantiate_ffi::smf_jit_resolve(j.jit, c"g14999".as_ptr(), &mut address) == 0 }
            });
        }
        "rt_exec_manager_compile_mir" => {
            let clif = CString::new(std::fs::read(dir.join("functions.clif")).unwrap()).unwrap();
            sweep(Manager::new, |m| {
                // SAFETY: a live manager and a NUL-terminated text.
                let outcome = unsafe { exec_manager_ffi::rt_exec_manager_compile_mir(m.0, clif.as_ptr()) };
                // SAFETY: the manager's outcome, a NUL-terminated string while it lives.
                let outcome = unsafe { std::ffi::CStr::from_ptr(outcome) }.to_string_lossy().into_owned();
                if !outcome.is_empty() {
                    smf::ffi::set_error(&outcome);
                }
                outcome.is_empty()
            });
        }
        other => exports::child(other, &dir),
    }
}

/// An execution manager (Cranelift), cleaned up when dropped (with no limit set).
struct Manager(i64);

impl Manager {
    fn new() -> Self {
        // SAFETY: a NUL-terminated backend name.
        let manager = unsafe { exec_manager_ffi::rt_exec_manager_create(c"cranelift".as_ptr()) };
        assert!(manager > 0, "{}", smf::ffi::last_error());
        Self(manager)
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        exec_manager_ffi::rt_exec_manager_cleanup(self.0);
    }
}

/// 400 functions of CLIF (about 200 KB), each a chain of arithmetic and a call to the one
/// before: what the execution manager compiles in one batch.
fn write_functions(dir: &Path) {
    use std::fmt::Write;
    let mut clif = String::new();
    for i in 0..400 {
        let _ = writeln!(clif, "function %f{i}(i64) -> i64 {{");
        if i > 0 {
            let _ = writeln!(clif, "    fn0 = %f{}(i64) -> i64", i - 1);
        }
        let _ = writeln!(clif, "block0(v0: i64):");
        for v in (1..39).step_by(2) {
            let _ = writeln!(clif, "    v{v} = iconst.i64 {v}");
            let _ = writeln!(clif, "    v{} = iadd v{}, v{v}", v + 1, v - 1);
        }
        let _ = writeln!(clif, "    v40 = imul v38, v0");
        if i > 0 {
            let _ = writeln!(clif, "    v41 = call fn0(v40)\n    return v41\n}}\n");
        } else {
            let _ = writeln!(clif, "    return v40\n}}\n");
        }
    }
    std::fs::write(dir.join("functions.clif"), clif).unwrap();
}

#[test]
fn at_an_address_space_limit_rt_exec_manager_compile_mir_fails_cleanly() {
    sweep_in_child("rt_exec_manager_compile_mir", true, write_functions);
}

/// An instantiator over a cache of its own, compiling every name to `return_const(3)`; both
/// freed when dropped (with no limit set).
struct Generics {
    jit: *mut instantiate_ffi::SmfJit,
    cache: Cache,
}

impl Generics {
    fn new() -> Self {
        let cache = Cache::new();
        let config = instantiate_ffi::SmfJitConfig { max_depth: 0, enabled: true, update_metadata: true };
        // SAFETY: `return_three` has the callback's type.
        let jit = unsafe {
            instantiate_ffi::smf_jit_new(cache.0, config, Some(return_three), std::ptr::null_mut())
        };
        assert!(!jit.is_null());
        Self { jit, cache }
    }
}

impl Drop for Generics {
    fn drop(&mut self) {
        instantiate_ffi::smf_jit_free(self.jit);
    }
}

/// The compiler callback of [`Generics`]: `return_const(3)` for every name.
unsafe extern "C" fn return_three(
    _user: *mut std::ffi::c_void,
    _name: *const c_char,
    _type_args: *const c_char,
    _template: *const u8,
    _template_len: usize,
    code: *mut *const u8,
    code_len: *mut usize,
) -> i32 {
    static CODE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let bytes = CODE.get_or_init(|| smf_tests::return_const(3));
    // SAFETY: the library passes writable out pointers.
    unsafe {
        code.write(bytes.as_ptr());
        code_len.write(bytes.len());
    }
    0
}

/// A module whose note offers 15,000 names (`g0` ...), about 450 KB of note.
fn write_offers(dir: &Path) {
    use std::fmt::Write;
    let mut note = String::from("possible |id, template, type_args, mangled_name, required_by, can_defer|\n");
    for i in 0..15_000 {
        let _ = writeln!(note, "    {i}, \"identity\", \"{i}\", \"g{i}\", \"m\", true");
    }
    std::fs::write(dir.join("offers.smf"), smf_tests::generics::module_with_note(&note)).unwrap();
}

#[test]
fn at_an_address_space_limit_smf_jit_instantiate_fails_cleanly() {
    sweep_in_child("smf_jit_instantiate", true, write_offers);
}

#[test]
fn at_an_address_space_limit_smf_jit_note_sdn_fails_cleanly() {
    sweep_in_child("smf_jit_note_sdn", true, write_offers);
}

#[test]
fn at_an_address_space_limit_smf_jit_instantiate_batch_fails_cleanly() {
    sweep_in_child("smf_jit_instantiate_batch", true, write_offers);
}

#[test]
fn at_an_address_space_limit_smf_jit_resolve_generic_fails_cleanly() {
    sweep_in_child("smf_jit_resolve_generic", true, |_| {});
}

#[test]
fn at_an_address_space_limit_smf_jit_resolve_fails_cleanly() {
    sweep_in_child("smf_jit_resolve", true, write_offers);
}

/// A module of 20,000 symbols (about 2 MB of file, as much again of tables).
fn write_large(dir: &Path) {
    std::fs::write(dir.join("large.smf"), samples::large(Dialect::R96, 20_000, 0)).unwrap();
}

fn write_mapped(dir: &Path) {
    std::fs::write(dir.join("mapped.bin"), vec![b'a'; MAPPED_FILE_LEN]).unwrap();
}

#[test]
fn at_an_address_space_limit_smf_module_load_fails_cleanly() {
    sweep_in_child("smf_module_load", true, write_large);
}

#[test]
fn at_an_address_space_limit_smf_module_load_bytes_fails_cleanly() {
    sweep_in_child("smf_module_load_bytes", true, write_large);
}

#[test]
#[cfg(target_arch = "x86_64")] // the importer holds x86-64 code
fn at_an_address_space_limit_smf_module_load_ex_with_a_resolver_fails_cleanly() {
    // 5,000 imports, each asked of the callback once: the load's answers and the GOT grow with them.
    sweep_in_child("smf_module_load_ex", true, |dir| {
        let names: Vec<String> = (0..5_000).map(|i| format!("import_{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        std::fs::write(dir.join("importer.smf"), smf_tests::linking::importer(&names)).unwrap();
    });
}

#[test]
fn at_an_address_space_limit_smf_cache_get_fails_cleanly() {
    sweep_in_child("smf_cache_get", true, write_large);
}

#[test]
fn at_an_address_space_limit_smf_cache_prefetch_fails_cleanly_and_falls_back_to_fewer_threads() {
    // Eight threads asked for: a thread's stack does not fit under the tighter limits, where
    // `std::thread::scope`'s spawn used to panic (caught: "internal error", no memory named).
    sweep_in_child("smf_cache_prefetch", true, |dir| {
        let module = samples::large(Dialect::R96, 20_000, 0);
        for i in 0..4 {
            std::fs::write(dir.join(format!("large{i}.smf")), &module).unwrap();
        }
    });
}

#[test]
fn at_an_address_space_limit_rt_mmap_file_fails_cleanly() {
    sweep_in_child("rt_mmap_file", true, write_mapped);
}

#[test]
fn at_an_address_space_limit_rt_mmap_read_string_copies_only_what_the_destination_holds() {
    // It used to collect the whole 64 MiB string before copying 16 bytes of it.
    sweep_in_child("rt_mmap_read_string", false, write_mapped);
}

#[test]
fn at_an_address_space_limit_rt_mmap_read_bytes_fails_cleanly() {
    sweep_in_child("rt_mmap_read_bytes", false, write_mapped);
}

#[test]
fn at_an_address_space_limit_rt_file_size_for_mmap_fails_cleanly() {
    sweep_in_child("rt_file_size_for_mmap", false, write_mapped);
}

#[test]
fn at_an_address_space_limit_rt_alloc_exec_memory_fails_cleanly() {
    sweep_in_child("rt_alloc_exec_memory", true, |_| {});
}

#[test]
fn at_an_address_space_limit_rt_write_exec_memory_fails_cleanly() {
    // It used to copy the caller's 64 MiB with an infallible allocation.
    sweep_in_child("rt_write_exec_memory", true, |_| {});
}
