//! Failure injection over the real kernel: each syscall of a module load and release fails in
//! turn. In a test binary of its own: its many mapping changes would race the other allocator
//! tests' reads of `/proc/self/maps`, which the kernel does not produce atomically.

// Calling the loaded code: the typed function lookup is unsafe (the signature is ours to vouch for).
#![allow(unsafe_code)]

use smf_runtime::exec::{ExecAllocator, ExecConfig, ExecError};
use smf_tests::assert_no_rwx;

// x86-64 only: the application module's code is x86-64.
#[cfg(target_arch = "x86_64")]
#[test]
fn a_load_over_the_real_kernel_survives_each_of_its_syscalls_failing() {
    // It counts the process's mappings: alone, so no other test maps beside it.
    if !smf_tests::alone("a_load_over_the_real_kernel_survives_each_of_its_syscalls_failing") {
        return;
    }
    use smf_format::Dialect;
    use smf_runtime::exec::{FaultInjector, LINUX};
    use smf_runtime::load::{LoadError, LoadOptions, LoadedModule, TableResolver};
    use smf_tests::linking::application;
    use smf_tests::mappings_within;
    static INJECTOR: FaultInjector = FaultInjector::new(&LINUX);
    let exec = ExecAllocator::with_kernel(ExecConfig::default(), &INJECTOR);
    let file = application(Dialect::R96);
    let five: extern "C" fn() -> i64 = return_five;
    static COUNTER: i64 = 7;
    let counter = &COUNTER as *const i64 as usize;
    let imports =
        [(&b"five"[..], five as usize), (&b"counter"[..], counter), (&b"small_constant"[..], 0x1000)];
    let load = |exec| LoadedModule::load(exec, &file, &TableResolver(&imports), &LoadOptions::default());
    let call_five = |module: &LoadedModule<'_>| {
        // SAFETY: `call_five` is a function of the module returning an integer.
        let f = unsafe { module.function::<extern "C" fn() -> i64>(b"call_five") }.unwrap();
        f.get()()
    };
    assert_eq!(call_five(&load(&exec).unwrap()), 5); // warm up: the region stays as the spare
    exec.trim().unwrap();
    let (stats, kernel) = (exec.stats(), mappings_within(&exec.regions()));
    let before = INJECTOR.calls();
    drop(load(&exec).unwrap());
    let calls = INJECTOR.calls() - before;
    exec.trim().unwrap();
    assert!(calls >= 2, "a load and release make at least two protection changes");
    for k in 0..calls {
        INJECTOR.fail_call(k);
        match load(&exec) {
            Ok(module) => drop(module), // the failure hit the release, reported to no one
            Err(e) => assert!(matches!(e, LoadError::Memory(ExecError::Sys(_))), "call {k}: {e}"),
        }
        INJECTOR.disarm();
        assert_no_rwx("failed load");
        exec.trim().unwrap();
        let now = exec.stats();
        assert_eq!((now.blocks_live, now.pages_open, now.pages_sealed), (0, 0, 0), "call {k}");
        assert_eq!((now.regions, mappings_within(&exec.regions())), (stats.regions, kernel), "call {k}");
        assert_eq!(call_five(&load(&exec).unwrap()), 5, "the allocator works after call {k} failed");
    }
}

#[cfg(target_arch = "x86_64")]
extern "C" fn return_five() -> i64 {
    5
}

/// Mappings of the code arenas' shared memory (`memfd:smf-code`), and how many are writable.
fn arena_mappings() -> (usize, usize) {
    let maps: Vec<String> = smf_tests::maps().into_iter().filter(|l| l.contains("smf-code")).collect();
    let writable =
        maps.iter().filter(|l| l.split_whitespace().nth(1).is_some_and(|p| p.contains('w'))).count();
    (maps.len(), writable)
}

fn call(address: usize) -> i64 {
    // SAFETY: every piece these tests install is `return_const`: no arguments, an integer back.
    let f = unsafe { smf_runtime::exec::function_pointer::<extern "C" fn() -> i64>(address) }
        .expect("an address");
    f()
}

#[test]
fn a_code_arena_survives_each_of_its_syscalls_failing_and_unmaps_what_it_mapped() {
    use smf_runtime::exec::{CodeArena, FaultInjector, Kernel, LINUX};
    use smf_tests::return_const;
    static INJECTOR: FaultInjector = FaultInjector::new(&LINUX);
    let page = INJECTOR.page_size();
    // The first install of an arena: memfd_create, ftruncate, mmap (read-execute), pwrite.
    let before = INJECTOR.calls();
    let arena = CodeArena::new(&INJECTOR, page);
    call(arena.install(&return_const(1)).unwrap());
    let calls = INJECTOR.calls() - before;
    assert_eq!(calls, 4);
    drop(arena);
    assert_eq!(arena_mappings(), (0, 0));
    for k in 0..calls {
        let arena = CodeArena::new(&INJECTOR, page);
        INJECTOR.fail_call(k);
        let installed = arena.install(&return_const(2));
        INJECTOR.disarm();
        let e = installed.expect_err("every call of a first install is needed");
        assert!(matches!(e, ExecError::Sys(_)), "call {k}: {e}");
        // A failed write leaves its region mapped (read-execute) for the next install;
        // anything earlier leaves nothing.
        let left = if k == calls - 1 { (1, 0) } else { (0, 0) };
        assert_eq!(arena_mappings(), left, "call {k} failed");
        assert_eq!(arena.stats().installed_bytes, 0, "call {k}: nothing counts as installed");
        assert_eq!(call(arena.install(&return_const(3)).unwrap()), 3, "the arena works after call {k}");
        assert_no_rwx("a failed arena call");
        drop(arena);
        assert_eq!(arena_mappings(), (0, 0), "call {k}: the arena unmapped everything");
        assert_eq!(arena_files(), 0, "call {k}: the arena closed its files");
    }

    // Regions are only ever mapped read-execute; only the region being filled keeps its file
    // open, and an install into it is one write.
    let arena = CodeArena::new(&INJECTOR, page);
    let per_region = page / 16;
    let values: Vec<u16> = (0..2 * per_region + 1).map(|i| u16::try_from(i % 1000).unwrap()).collect();
    let addresses: Vec<usize> = values.iter().map(|&v| arena.install(&return_const(v)).unwrap()).collect();
    for (&value, &address) in values.iter().zip(&addresses) {
        assert_eq!(call(address), i64::from(value));
    }
    assert_eq!(arena.stats().regions, 3);
    assert_eq!(arena_mappings(), (3, 0));
    assert_eq!(arena_files(), 1, "full regions' files are closed");
    let before = INJECTOR.calls();
    for _ in 0..per_region - 1 {
        arena.install(&return_const(4)).unwrap();
    }
    assert_eq!(INJECTOR.calls() - before, per_region - 1, "one pwrite per install into a mapped region");
    // A piece larger than a region gets a region of its own, whose file closes at once.
    let big: Vec<u8> = return_const(6).into_iter().chain(std::iter::repeat_n(0xCC, 2 * page)).collect();
    assert_eq!(call(arena.install(&big).unwrap()), 6);
    assert_eq!((arena.stats().regions, arena_files()), (4, 1));
    assert_no_rwx("code arena installs");
    drop(arena);
    assert_eq!((arena_mappings(), arena_files()), ((0, 0), 0));
}

/// Open files of the code arenas' shared memory.
fn arena_files() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().contains("smf-code"))
        .count()
}

#[test]
fn instantiations_fall_back_to_sealed_batches_where_shared_memory_is_refused() {
    use smf_runtime::exec::{FaultInjector, LINUX};
    use smf_runtime::instantiate::{Caller, Instantiator, InstantiatorConfig};
    use smf_tests::return_const;
    static INJECTOR: FaultInjector = FaultInjector::new(&LINUX);
    let exec = ExecAllocator::with_kernel(ExecConfig::default(), &INJECTOR);
    let instantiator = Instantiator::new(&exec, InstantiatorConfig::default());
    let caller = Caller { thread: 1, stack: &[] };
    INJECTOR.fail_call(0); // memfd_create
    let first = instantiator.instantiate("a", caller, || Ok(Some(())), |()| Ok(return_const(6))).unwrap();
    INJECTOR.disarm();
    assert!(!instantiator.uses_arena());
    let second = instantiator.instantiate("b", caller, || Ok(Some(())), |()| Ok(return_const(7))).unwrap();
    assert_eq!((call(first.address), call(second.address)), (6, 7));
    assert!(
        exec.lookup(first.address, 1).is_some_and(|b| b.is_executable()),
        "a sealed block of the allocator"
    );
    assert_no_rwx("instantiations in sealed batches");
    drop(instantiator);
    assert_eq!(exec.stats().blocks_live, 0, "the instantiator freed its blocks");
}
