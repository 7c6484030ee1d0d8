//! Out of memory is an error, never an abort: a global allocator that refuses, while armed on
//! the calling thread, allocations from a given size up (all of them, or only the n-th) stands
//! in for a process at its address-space limit. Loads of a module with 10,000 symbols (the
//! load path's tables run to hundreds of KiB) must fail with `OutOfMemory` or succeed, whichever
//! allocation is refused.

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
    assert!(n >= 3, "the names, symbols and targets are each refused: {n}");
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
fn lookups_whose_index_cannot_be_made_scan_and_make_it_once_memory_allows() {
    let exec = ExecAllocator::default();
    let file = samples::large(Dialect::R96, 10_000, 0);
    let options = LoadOptions { require_arch: None, ..LoadOptions::default() };
    let loaded = LoadedModule::load(&exec, &file, &(), &options).unwrap();
    let name = |i: usize| format!("module::function_{i:06}");
    let lookups =
        |from: usize| (from..from + 12).map(|i| loaded.symbol(name(i).as_bytes())).collect::<Vec<_>>();
    let expected: Vec<_> = (0..12).map(|i| Some(loaded.code().0 + i * 16)).collect();
    // The fifth lookup makes the index (buckets for 10,000 names: 256 KiB), refused; so is
    // every one after it: each scans instead, and finds what the index would.
    let (found, refused) = refusing(4 << 10, usize::MAX, || lookups(0));
    assert_eq!(found, expected);
    assert_eq!(refused, 8, "the 5th to 12th lookups each tried to make the index");
    // With memory again, the next lookup makes it (one allocation of 4 KiB or more).
    let (found, refused) = refusing(4 << 10, 1, || lookups(0));
    assert_eq!((found, refused), (expected.clone(), 0));
    let (found, seen) = refusing(4 << 10, usize::MAX, || lookups(0));
    assert_eq!((found, seen), (expected, 0), "made: the index is not made again");
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
    let dir = smf_tests::scratch("oom", "large");
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
