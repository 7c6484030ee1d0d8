//! Out of memory is an error, never an abort: a global allocator that refuses, while armed on
//! the calling thread, allocations from a given size up (all of them, or only the n-th) stands
//! in for a process at its address-space limit. Loads of a module with 10,000 symbols (the
//! load path's tables run to hundreds of KiB) must fail with `OutOfMemory` or succeed, whichever
//! allocation is refused. A binary of its own: the allocator is process-wide.

// A global allocator is an unsafe trait implementation.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use smf_core::exec::ExecAllocator;
use smf_core::load::{LoadError, LoadOptions, LoadedModule};
use smf_core::write::samples;
use smf_core::Dialect;

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
fn reading_a_module_file_at_the_memory_limit_is_an_error() {
    let dir = std::env::temp_dir().join(format!("smf-oom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("large.smf");
    std::fs::write(&path, samples::large(Dialect::R96, 10_000, 0)).unwrap();
    let (result, refused) = refusing(64 << 10, usize::MAX, || smf::loader::load_path(&path, &()).map(|_| ()));
    let message = result.unwrap_err().to_string();
    assert!(refused > 0);
    assert!(message.contains("large.smf") && message.contains("memory"), "{message}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Where the test below writes its module for the child.
fn limit_module_path() -> std::path::PathBuf {
    std::env::temp_dir()
        .join(format!("smf-rlimit-{}.smf", std::env::var("SMF_RLIMIT_CHILD").unwrap_or_default()))
}

/// The child's side of the test below (it does nothing unless run as that child).
#[test]
fn address_space_limit_child() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    if std::env::var_os("SMF_RLIMIT_CHILD").is_none() {
        return;
    }
    let vm_size = || -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    };
    // Warm up: the process's allocator has its region before the limit is set.
    drop(smf::loader::load_bytes(&samples::return_42(Dialect::R96), &(), None).unwrap());
    let path = limit_module_path();
    let hard = getrlimit(Resource::As).maximum;
    for margin in [0u64, 12 << 20, 512 << 20] {
        setrlimit(Resource::As, Rlimit { current: Some(vm_size() + margin), maximum: hard }).unwrap();
        let outcome = match smf::loader::load_path(&path, &()) {
            Ok(module) => format!("loaded {}", module.loaded().symbols().len()),
            Err(e) => format!("error {e}"),
        };
        setrlimit(Resource::As, Rlimit { current: hard, maximum: hard }).unwrap();
        println!("margin {margin}: {outcome}");
    }
}

#[test]
fn at_an_address_space_limit_a_load_fails_cleanly() {
    // RLIMIT_AS set at or just above the process's size, then a module of 100,000 symbols
    // (about 10 MB of file, as much again of tables) loaded from its file: the process used to
    // die with SIGABRT ("memory allocation of ... bytes failed").
    let id = std::process::id().to_string();
    let path = std::env::temp_dir().join(format!("smf-rlimit-{id}.smf"));
    std::fs::write(&path, samples::large(Dialect::R96, 100_000, 0)).unwrap();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "address_space_limit_child", "--nocapture", "--test-threads", "1"])
        .env("SMF_RLIMIT_CHILD", &id)
        .env("SMF_SETTLE_MS", "0")
        // One malloc arena: a thread's own arena reserves its 64 MiB up front, which the
        // address-space limit then no longer sees grow.
        .env("MALLOC_ARENA_MAX", "1")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the child died: {:?}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let outcomes: Vec<&str> = stdout.lines().filter(|l| l.contains("margin ")).collect();
    assert_eq!(outcomes.len(), 3, "{stdout}");
    assert!(outcomes[0].contains("error") && outcomes[0].contains("memory"), "{stdout}");
    assert!(outcomes[2].contains("loaded 100000"), "{stdout}");
}
