//! Failure injection over the real kernel: each syscall of a module load and release fails in
//! turn. In a test binary of its own: its many mapping changes would race the other allocator
//! tests' reads of `/proc/self/maps`, which the kernel does not produce atomically.

// Calling the loaded code: the typed function lookup is unsafe (the signature is ours to vouch for).
#![allow(unsafe_code)]

use smf_core::exec::{Config, ExecAllocator, ExecError};
use smf_tests::{assert_no_rwx, mappings_within};

// x86-64 only: the application module's code is x86-64.
#[cfg(target_arch = "x86_64")]
#[test]
fn a_load_over_the_real_kernel_survives_each_of_its_syscalls_failing() {
    use smf_core::exec::{FaultInjector, LINUX};
    use smf_core::load::{LoadError, LoadOptions, LoadedModule, TableResolver};
    use smf_core::Dialect;
    use smf_tests::linking::application;
    static INJECTOR: FaultInjector = FaultInjector::new(&LINUX);
    let exec = ExecAllocator::with_kernel(Config::default(), &INJECTOR);
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

extern "C" fn return_five() -> i64 {
    5
}
