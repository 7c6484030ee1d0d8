//! Out of memory is an error, never an abort: a global allocator that refuses, while armed on
//! the calling thread, allocations from a given size up (all of them, or only the n-th) stands
//! in for a process at its address-space limit. Loads of a module with 10,000 symbols (the
//! load path's tables run to hundreds of KiB) must fail with `OutOfMemory` or succeed, whichever
//! allocation is refused. A binary of its own: the allocator is process-wide.
//!
//! Then a real limit: child processes set RLIMIT_AS at their size plus a margin swept upward,
//! and call each C entry point that allocates (module loads, with a resolver too, cache gets and prefetches, the
//! `rt_*` file and executable-memory functions, the instantiator's requests, note and resolve
//! over a module whose note offers 15,000 names, the execution manager compiling 400 functions of
//! CLIF): an error naming memory, or success, never a
//! signal.

// A global allocator is an unsafe trait implementation.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use smf_format::write::samples;
use smf_format::Dialect;
use smf_runtime::exec::ExecAllocator;
use smf_runtime::load::{LoadError, LoadOptions, LoadedModule};

/// Refuses allocations of at least `REFUSE_FROM` bytes on the thread that armed it.
struct Refusing;

thread_local! {
    /// Allocations of this many bytes or more are candidates for refusal.
    static REFUSE_FROM: Cell<usize> = const { Cell::new(usize::MAX) };
    /// Which candidate to refuse (counted from 0), or `usize::MAX` for all of them.
    static REFUSE_ONLY: Cell<usize> = const { Cell::new(usize::MAX) };
    /// Candidates seen, and refused.
    static SEEN: Cell<usize> = const { Cell::new(0) };
    static REFUSED: Cell<usize> = const { Cell::new(0) };
}

fn refused(size: usize) -> bool {
    if size < REFUSE_FROM.try_with(Cell::get).unwrap_or(usize::MAX) {
        return false;
    }
    let seen = SEEN.try_with(|s| s.replace(s.get() + 1)).unwrap_or(0);
    let only = REFUSE_ONLY.try_with(Cell::get).unwrap_or(usize::MAX);
    let refuse = only == usize::MAX || only == seen;
    if refuse {
        let _ = REFUSED.try_with(|r| r.set(r.get() + 1));
    }
    refuse
}

// SAFETY: forwards to the system allocator, or returns null (a refusal the caller must handle).
unsafe impl GlobalAlloc for Refusing {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if refused(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's layout contract, forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() && refused(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Refusing = Refusing;

/// Runs `f` with allocations of `from` bytes and more refused on this thread (only the
/// `only`-th of them, or all with `usize::MAX`); returns what it returned and how many
/// allocations were refused.
fn refusing<T>(from: usize, only: usize, f: impl FnOnce() -> T) -> (T, usize) {
    REFUSED.with(|r| r.set(0));
    SEEN.with(|r| r.set(0));
    REFUSE_ONLY.with(|r| r.set(only));
    REFUSE_FROM.with(|r| r.set(from));
    let result = f();
    REFUSE_FROM.with(|r| r.set(usize::MAX));
    (result, REFUSED.with(Cell::get))
}

#[test]
fn a_load_at_the_memory_limit_fails_cleanly_whichever_allocation_is_refused() {
    let exec = ExecAllocator::default();
    let file = samples::large(Dialect::R96, 10_000, 2_000);
    let options = LoadOptions { require_arch: None, ..LoadOptions::default() };
    // Warm up: the allocator's region and bookkeeping exist before the limit is set.
    drop(LoadedModule::load(&exec, &samples::return_42(Dialect::R96), &(), &options).unwrap());
    let load = || LoadedModule::load(&exec, &file, &(), &options).map(|m| m.symbols().len());
    // Every allocation of 4 KiB or more, refused one at a time: each is an error or recovered.
    let mut n = 0;
    loop {
        let (result, refused) = refusing(4 << 10, n, load);
        match result {
            Ok(symbols) if refused == 0 => {
                assert_eq!(symbols, 10_000);
                break;
            }
            // Refused in the quick pass, the detailed rerun's allocation succeeds.
            Ok(symbols) => assert_eq!((symbols, refused), (10_000, 1), "allocation {n}"),
            Err(LoadError::OutOfMemory { bytes }) => assert!(refused == 1 && bytes > 0, "allocation {n}"),
            other => panic!("allocation {n} refused: {other:?}"),
        }
        assert_eq!(exec.stats().blocks_live, 0, "allocation {n}: nothing is left behind");
        n += 1;
    }
    assert!(n >= 4, "the names, symbols, index and targets are each refused: {n}");
    // All allocations from a size up refused at once.
    let mut failures = 0;
    for from in [1 << 20, 256 << 10, 128 << 10, 64 << 10, 16 << 10, 4 << 10] {
        let (result, refused) = refusing(from, usize::MAX, load);
        match result {
            Ok(symbols) => {
                assert_eq!(refused, 0, "from {from}: a refusal was swallowed");
                assert_eq!(symbols, 10_000);
            }
            Err(LoadError::OutOfMemory { bytes }) => {
                assert!(refused > 0 && bytes > 0, "from {from}");
                failures += 1;
            }
            Err(e) => panic!("from {from}: {e}"),
        }
        // Nothing is left behind, and the next load works.
        assert_eq!(exec.stats().blocks_live, 0, "from {from}");
    }
    assert!(failures >= 4, "the tables of 10,000 symbols exceed 16 KiB");
    let loaded = LoadedModule::load(&exec, &file, &(), &options).unwrap();
    assert_eq!(loaded.symbols().len(), 10_000);
}

#[test]
fn a_prefetch_whose_bookkeeping_is_refused_reports_out_of_memory() {
    let dir = smf_tests::scratch("oom", "prefetch");
    let paths: Vec<std::path::PathBuf> = (0..32)
        .map(|i| {
            let path = dir.join(format!("m{i}.smf"));
            std::fs::write(&path, samples::return_42(Dialect::R96)).unwrap();
            path
        })
        .collect();
    let cache = smf::cache::ModuleCache::new(0, 0);
    // One thread: every chunk of 8 files on this one, where the refusal is armed. Of the
    // allocations of 64 bytes or more, the first is the room for the failures, the second the
    // first chunk's list of its 8 paths' hits (8 bytes each): refused.
    let (failures, refused) = refusing(64, 1, || cache.prefetch_indexed(&paths, 1, &|_| {}));
    assert_eq!(refused, 1);
    let failed: Vec<usize> = failures.iter().map(|(i, _)| *i).collect();
    assert_eq!(failed, (0..8).collect::<Vec<_>>(), "the first chunk's files are reported");
    for (i, error) in &failures {
        assert!(error.to_string().contains("memory"), "file {i}: {error}");
    }
    let cached = |range: std::ops::Range<usize>| paths[range].iter().filter(|p| cache.contains(p)).count();
    assert_eq!((cached(0..8), cached(8..32)), (0, 24), "the other chunks loaded");
    // With room again, the same prefetch caches every file.
    assert!(cache.prefetch_indexed(&paths, 1, &|_| {}).is_empty());
    assert_eq!(paths.iter().filter(|p| cache.contains(p)).count(), 32);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reading_a_module_file_at_the_memory_limit_is_an_error() {
    let dir = std::env::temp_dir().join(format!("smf-oom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("large.smf");
    std::fs::write(&path, samples::large(Dialect::R96, 10_000, 0)).unwrap();
    let (result, refused) = refusing(64 << 10, usize::MAX, || {
        smf::loader::load(&smf::loader::LoadRequest::path(&path).resolver_only(&())).map(|_| ())
    });
    let message = result.unwrap_err().to_string();
    assert!(refused > 0);
    assert!(message.contains("large.smf") && message.contains("memory"), "{message}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- A real address-space limit, swept, for every C entry point that allocates -------------
//
// A child process (this binary, running `address_space_limit_child` for one case) sets
// RLIMIT_AS at its own size plus a margin, makes one call through the C ABI, lifts the limit
// and prints the outcome; the margin grows from 0 by a sixteenth (at least 64 KiB) until the
// call succeeds. Each call must succeed or fail with an error naming memory: the child dying
// (SIGABRT from an infallible allocation, a panic that cannot allocate its message) fails the
// parent's test, which runs one child per case so that one abort hides no other.

use std::ffi::{c_char, CString};
use std::path::{Path, PathBuf};

use smf::ffi::cache::{self as cache_ffi, SmfCache};
use smf::ffi::exec_manager as exec_manager_ffi;
use smf::ffi::imports::{self as imports_ffi, SmfLoadOptions, SMF_LOAD_LOCAL};
use smf::ffi::instantiate as instantiate_ffi;
use smf::ffi::rt_exec;
use smf::ffi::rt_mmap::{self, RtMapping};
use smf::ffi::smf_module::{self as module_ffi, SmfModule};

/// The largest margin tried (every case succeeds well below it).
const MAX_MARGIN: u64 = 2 << 30;

/// The size of this process's address space (VmSize).
fn vm_size() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Runs `run` on a fresh `prepare()` under RLIMIT_AS at the process's size plus a margin, from
/// 0 upward, until it succeeds; prints each outcome (`margin M: ok` or `margin M: error E`,
/// with the thread's `smf_last_error`). Only `run` is under the limit: `prepare`, the state's
/// drop and the printing are not.
fn sweep<S>(mut prepare: impl FnMut() -> S, mut run: impl FnMut(&S) -> bool) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let hard = getrlimit(Resource::As).maximum;
    let mut margin = 0u64;
    loop {
        let state = prepare();
        smf::ffi::clear_error();
        setrlimit(Resource::As, Rlimit { current: Some(vm_size() + margin), maximum: hard }).unwrap();
        let ok = run(&state);
        setrlimit(Resource::As, Rlimit { current: hard, maximum: hard }).unwrap();
        drop(state);
        if ok {
            println!("margin {margin}: ok");
            return;
        }
        println!("margin {margin}: error {}", smf::ffi::last_error());
        if margin > MAX_MARGIN {
            println!("gave up");
            return;
        }
        margin += (margin / 16).max(64 << 10);
    }
}

/// A path in the case's directory, for C.
fn c_path(dir: &Path, name: &str) -> CString {
    CString::new(dir.join(name).into_os_string().into_encoded_bytes()).unwrap()
}

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
        other => panic!("no case {other}"),
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

/// Writes the case's files, runs the child over them, and checks every outcome: an error
/// naming memory or, at the last margin, success; never a signal. With `fails_at_0`, the call
/// must fail at the tightest limit (it allocates in proportion to its input).
fn sweep_in_child(case: &str, fails_at_0: bool, files: impl FnOnce(&Path)) {
    let dir = smf_tests::scratch("rlimit", case);
    files(&dir);
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "address_space_limit_child", "--nocapture", "--test-threads", "1"])
        .env("SMF_RLIMIT_CASE", case)
        .env("SMF_RLIMIT_DIR", &dir)
        .env("SMF_SETTLE_MS", "0")
        // One malloc arena: a thread's own arena reserves its 64 MiB up front, which the
        // address-space limit then no longer sees grow.
        .env("MALLOC_ARENA_MAX", "1")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{case}: the child died: {:?}\n{stdout}\n{stderr}", output.status);
    // (The first outcome follows the test's name on its line.)
    let outcomes: Vec<&str> = stdout.lines().filter_map(|l| l.find("margin ").map(|at| &l[at..])).collect();
    let (last, errors) = outcomes.split_last().unwrap_or_else(|| panic!("{case}: no outcome\n{stdout}"));
    assert!(last.ends_with(": ok"), "{case}: never succeeded\n{stdout}");
    for error in errors {
        assert!(error.contains(": error ") && error.contains("memory"), "{case}: {error}\n{stdout}");
    }
    assert!(!fails_at_0 || !errors.is_empty(), "{case}: succeeded at the tightest limit\n{stdout}");
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
