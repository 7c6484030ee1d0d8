//! Batches: names staged on one thread and installed with one write; flushed early when a
//! compile needs a staged name or before the thread waits for another; failures and drops.

use super::*;
use crate::exec::{FaultInjector, LINUX};

/// Stages `names` in one batch on `thread`, each compiled to `return_const(value + i)`, and
/// finishes it; every name's outcome.
fn batch(
    instantiator: &Instantiator,
    thread: u64,
    names: &[&str],
    value: u16,
) -> Vec<Result<usize, InstantiateError>> {
    let staging = instantiator.staging(thread);
    let caller = Caller { thread, stack: &[] };
    for (i, name) in names.iter().enumerate() {
        match instantiator.begin(name, caller, || Ok(Some(()))) {
            Ok(super::super::Begun::Claimed(claim, ())) => {
                let _ = staging.stage(claim, &return_const(value + u16::try_from(i).unwrap()));
            }
            Ok(super::super::Begun::Ready(_)) | Err(_) => {}
        }
    }
    let _ = staging.finish();
    names.iter().map(|name| instantiator.outcome(name).unwrap_or(Err(InstantiateError::NotFound))).collect()
}

/// The claim of `name` for `thread` (a name nobody has claimed or installed).
fn claimed<'i, 'a, 'n>(
    instantiator: &'i Instantiator<'a>,
    name: &'n str,
    thread: u64,
) -> super::super::Claim<'i, 'a, 'n> {
    match instantiator.begin(name, Caller { thread, stack: &[] }, || Ok(Some(()))) {
        Ok(super::super::Begun::Claimed(claim, ())) => claim,
        _ => panic!("{name} not claimed"),
    }
}

/// The `return_const` installed at `address` (simulated memory is readable, not executable):
/// its value.
fn installed(address: usize) -> u16 {
    let len = return_const(0).len();
    // SAFETY: every piece these tests install is a `return_const` of `len` bytes at a live
    // address of the instantiator, which the test still holds.
    let bytes = unsafe { core::slice::from_raw_parts(address as *const u8, len) };
    (0..1000).find(|&v| return_const(v) == bytes).expect("a return_const")
}

/// Calls the code at `address` (real kernels only).
fn run(address: usize) -> u64 {
    // SAFETY: every piece these tests install is `return_const`: no arguments, an integer back.
    let f = unsafe { crate::exec::function_pointer::<extern "C" fn() -> u64>(address) }.expect("an address");
    f()
}

#[test]
fn a_batch_installs_its_names_together_and_each_runs() {
    let exec = simulated!();
    let instantiator = Instantiator::new(&exec, InstantiatorConfig::default());
    let names: Vec<String> = (0..40).map(|i| alloc::format!("f{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let results = batch(&instantiator, 1, &names, 100);
    // The simulation has no shared memory: one sealed batch, one block, for all forty.
    assert_eq!(exec.stats().blocks_live, 1);
    let stats = instantiator.stats();
    assert_eq!(stats.instantiations, 40);
    assert_eq!(stats.code_bytes, 40 * return_const(0).len() as u64);
    let mut addresses: Vec<usize> = results.iter().map(|r| *r.as_ref().unwrap()).collect();
    for (name, &address) in names.iter().zip(&addresses) {
        assert_eq!(instantiator.lookup(name), Some(address));
        assert_eq!(address % crate::exec::GRANULE, 0);
    }
    addresses.sort_unstable();
    addresses.dedup();
    assert_eq!(addresses.len(), 40, "every name its own code");
    // A name already installed is not staged again.
    assert_eq!(batch(&instantiator, 1, &["f3"], 7)[0], results[3]);
    assert_eq!(instantiator.stats().instantiations, 40);
}

#[test]
#[cfg_attr(miri, ignore = "writes shared memory through real syscalls; the simulated tests cover the logic")]
fn over_the_real_kernel_a_batch_is_one_write_and_its_code_runs() {
    static INJECTOR: FaultInjector = FaultInjector::new(&LINUX);
    let exec = allocator(&INJECTOR);
    let instantiator = Instantiator::new(&exec, InstantiatorConfig::default());
    simple(&instantiator, "first", ALONE, 1).unwrap(); // maps the arena's region
    let names: Vec<String> = (0..100).map(|i| alloc::format!("g{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let before = INJECTOR.calls();
    let results = batch(&instantiator, 1, &names, 200);
    assert_eq!(INJECTOR.calls() - before, 1, "one pwrite for the hundred");
    assert!(instantiator.uses_arena());
    for (i, result) in results.iter().enumerate() {
        assert_eq!(run(*result.as_ref().unwrap()), 200 + u64::try_from(i).unwrap());
    }
    // A failed write fails every name of its batch, with the kernel's error, and they compile
    // again on the next request.
    INJECTOR.fail_call(0);
    let failed = batch(&instantiator, 1, &["h0", "h1"], 300);
    INJECTOR.disarm();
    for result in &failed {
        assert!(
            matches!(result, Err(InstantiateError::Install(crate::exec::ExecError::Sys(e))) if e.op == "pwrite")
        );
    }
    assert_eq!(run(simple(&instantiator, "h1", ALONE, 301).unwrap().address), 301);
}

#[test]
fn a_compile_asking_for_a_name_its_batch_staged_gets_it_installed() {
    let exec = simulated!();
    let instantiator = Instantiator::new(&exec, InstantiatorConfig::default());
    let staging = instantiator.staging(5);
    let caller = Caller { thread: 5, stack: &[] };
    let Ok(super::super::Begun::Claimed(a, ())) = instantiator.begin("a", caller, || Ok(Some(()))) else {
        panic!()
    };
    staging.stage(a, &return_const(1)).unwrap();
    assert_eq!(instantiator.lookup("a"), None, "staged, not installed");
    // b's compile needs a's address: the batch is flushed, b gets it.
    let stack: Vec<Box<str>> = vec!["b".into()];
    let mut seen = None;
    let b = instantiator.instantiate(
        "b",
        caller,
        || Ok(Some(())),
        |()| {
            let inner = Caller { thread: 5, stack: &stack };
            seen = Some(simple(&instantiator, "a", inner, 99)?.address);
            Ok(return_const(2))
        },
    );
    assert!(b.is_ok());
    assert_eq!(seen, instantiator.lookup("a"), "a was installed for b's compile, not compiled again");
    assert_eq!(installed(seen.unwrap()), 1);
    staging.finish().unwrap();
    assert_eq!(instantiator.stats().instantiations, 2);
}

#[test]
fn a_staged_name_another_thread_waits_for_arrives_when_the_batch_is_flushed() {
    let exec = simulated!();
    let instantiator = Instantiator::new(&exec, InstantiatorConfig::default());
    let staged = Barrier::new(2);
    let got: Vec<usize> = std::thread::scope(|s| {
        let batcher = s.spawn(|| {
            let staging = instantiator.staging(1);
            let caller = Caller { thread: 1, stack: &[] };
            let Ok(super::super::Begun::Claimed(claim, ())) =
                instantiator.begin("x", caller, || Ok(Some(())))
            else {
                panic!()
            };
            staging.stage(claim, &return_const(4)).unwrap();
            staged.wait();
            // Long enough for the other thread to be waiting.
            std::thread::sleep(std::time::Duration::from_millis(if cfg!(miri) { 1 } else { 50 }));
            drop(staging); // dropping flushes
            instantiator.lookup("x").unwrap()
        });
        let waiter = s.spawn(|| {
            staged.wait();
            simple(&instantiator, "x", Caller { thread: 2, stack: &[] }, 99).unwrap().address
        });
        vec![batcher.join().unwrap(), waiter.join().unwrap()]
    });
    assert_eq!(got[0], got[1]);
    assert_eq!(installed(got[0]), 4, "the staged code, not a second compile");
    assert_eq!(instantiator.stats().instantiations, 1);
}

#[test]
fn a_batch_is_flushed_before_its_thread_waits_for_another_so_neither_waits_forever() {
    // Thread 1 staged x and then compiles y, which needs z; thread 2 compiles z, which needs x.
    // Thread 1 would wait for z while thread 2 waits for x, staged by thread 1: flushing
    // before waiting lets both finish.
    let exec = simulated!();
    let instantiator = Instantiator::new(&exec, InstantiatorConfig::default());
    let z_compiling = Barrier::new(2);
    let results: Vec<bool> = std::thread::scope(|s| {
        let one = s.spawn(|| {
            let staging = instantiator.staging(1);
            let caller = Caller { thread: 1, stack: &[] };
            let Ok(super::super::Begun::Claimed(x, ())) = instantiator.begin("x", caller, || Ok(Some(())))
            else {
                panic!()
            };
            staging.stage(x, &return_const(1)).unwrap();
            z_compiling.wait();
            let stack: Vec<Box<str>> = vec!["y".into()];
            let y = instantiator.instantiate(
                "y",
                caller,
                || Ok(Some(())),
                |()| {
                    simple(&instantiator, "z", Caller { thread: 1, stack: &stack }, 99)?;
                    Ok(return_const(2))
                },
            );
            staging.finish().unwrap();
            y.is_ok()
        });
        let two = s.spawn(|| {
            let caller = Caller { thread: 2, stack: &[] };
            instantiator
                .instantiate(
                    "z",
                    caller,
                    || Ok(Some(())),
                    |()| {
                        z_compiling.wait();
                        std::thread::sleep(std::time::Duration::from_millis(if cfg!(miri) { 1 } else { 30 }));
                        let stack: Vec<Box<str>> = vec!["z".into()];
                        simple(&instantiator, "x", Caller { thread: 2, stack: &stack }, 99)?;
                        Ok(return_const(3))
                    },
                )
                .is_ok()
        });
        vec![one.join().unwrap(), two.join().unwrap()]
    });
    assert_eq!(results, [true, true]);
    assert_eq!(instantiator.stats().instantiations, 3);
    assert_eq!(installed(instantiator.lookup("x").unwrap()), 1);
}

#[test]
fn staging_refuses_what_a_single_install_refuses() {
    let exec = simulated!();
    let instantiator = Instantiator::new(&exec, InstantiatorConfig::default());
    let staging = instantiator.staging(1);
    let Ok(super::super::Begun::Claimed(claim, ())) = instantiator.begin("e", ALONE, || Ok(Some(()))) else {
        panic!()
    };
    let err = staging.stage(claim, &[]).unwrap_err();
    assert_eq!(err, InstantiateError::Compile(CompileFailure::NoCode));
    staging.finish().unwrap();
    assert_eq!(instantiator.outcome("e"), Some(Err(InstantiateError::Compile(CompileFailure::NoCode))));
    assert_eq!(instantiator.stats().compile_failures, 1);
}

#[test]
fn pieces_of_any_size_keep_their_bytes_each_at_a_granule_and_nothing_stays_staged() {
    use crate::exec::GRANULE;
    let exec = simulated!();
    let instantiator = Instantiator::new(&exec, InstantiatorConfig::default());
    let sizes = [1, GRANULE - 1, GRANULE, GRANULE + 1, 3 * GRANULE + 5, 2];
    let code = |i: usize, len: usize| -> Vec<u8> {
        (0..len).map(|j| u8::try_from((i * 31 + j) % 251).unwrap()).collect()
    };
    let staging = instantiator.staging(1);
    let names: Vec<String> = (0..sizes.len()).map(|i| alloc::format!("p{i}")).collect();
    for (i, (name, &len)) in names.iter().zip(&sizes).enumerate() {
        let claim = claimed(&instantiator, name, 1);
        if i == 2 {
            // A piece refused in the middle takes no place in the layout.
            assert!(staging.stage(claimed(&instantiator, "empty", 1), &[]).is_err());
        }
        staging.stage(claim, &code(i, len)).unwrap();
    }
    assert_eq!(instantiator.table.lock().staging.len(), 1, "the thread's buffer, until flushed");
    staging.finish().unwrap();
    assert!(instantiator.table.lock().staging.is_empty(), "the buffer went with the flush");
    assert!(instantiator.table.lock().in_flight.is_empty());
    let mut addresses = Vec::new();
    for (i, (name, &len)) in names.iter().zip(&sizes).enumerate() {
        let address = instantiator.lookup(name).unwrap();
        assert_eq!(address % GRANULE, 0, "{name}");
        // SAFETY: `len` bytes of code installed at `address`, live while `instantiator` is.
        let bytes = unsafe { core::slice::from_raw_parts(address as *const u8, len) };
        assert_eq!(bytes, code(i, len), "{name}");
        addresses.push((address, len));
    }
    addresses.sort_unstable();
    for pair in addresses.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + pair[0].1.next_multiple_of(GRANULE), "laid out one after another");
    }
    assert_eq!(instantiator.stats().code_bytes, sizes.iter().sum::<usize>() as u64);
}

#[test]
fn a_thread_number_given_by_two_os_threads_never_loses_or_misplaces_a_piece() {
    // `Caller::thread` must name one live thread; a caller breaking that gets wrong answers at
    // worst, never code at another name's address. Simulated: the buffer is marked taken, as
    // it is while another OS thread giving the same number copies into it.
    let exec = simulated!();
    let instantiator = Instantiator::new(&exec, InstantiatorConfig::default());
    let staging = instantiator.staging(7);
    staging.stage(claimed(&instantiator, "x", 7), &return_const(1)).unwrap();
    instantiator.table.lock().staging[0].taken = true;
    // A stage meanwhile installs its code alone, at once.
    staging.stage(claimed(&instantiator, "z", 7), &return_const(2)).unwrap();
    assert_eq!(installed(instantiator.lookup("z").unwrap()), 2);
    // A flush meanwhile leaves the buffer to the flush after the copy.
    instantiator.flush(7).unwrap();
    assert_eq!(instantiator.lookup("x"), None, "still staged");
    instantiator.table.lock().staging[0].taken = false;
    staging.finish().unwrap();
    assert_eq!(installed(instantiator.lookup("x").unwrap()), 1);
    assert!(instantiator.table.lock().staging.is_empty());
    assert!(instantiator.table.lock().in_flight.is_empty());
}

#[test]
fn a_flush_publishes_only_the_pieces_it_took() {
    // Two flushes of one thread number overlapping (two OS threads giving it): each publishes
    // its own image's pieces. Simulated: `x` marked as taken by another flush.
    let exec = simulated!();
    let instantiator = Instantiator::new(&exec, InstantiatorConfig::default());
    let staging = instantiator.staging(7);
    staging.stage(claimed(&instantiator, "x", 7), &return_const(1)).unwrap();
    for flight in instantiator.table.lock().in_flight.iter_mut() {
        if let super::super::Staged::Pending(piece) = flight.staged {
            flight.staged = super::super::Staged::Installing(piece, u64::MAX);
        }
    }
    staging.stage(claimed(&instantiator, "z", 7), &return_const(2)).unwrap();
    staging.finish().unwrap();
    assert_eq!(installed(instantiator.lookup("z").unwrap()), 2);
    assert_eq!(instantiator.lookup("x"), None, "another flush's piece, not published by this one");
    assert_eq!(instantiator.table.lock().in_flight.len(), 1);
}

#[test]
fn a_claim_of_another_instantiator_is_installed_there() {
    let exec = simulated!();
    let (instantiator, other) = (
        Instantiator::new(&exec, InstantiatorConfig::default()),
        Instantiator::new(&exec, InstantiatorConfig::default()),
    );
    // Both first claims have serial 0 and thread 1: told apart by their instantiator.
    let mine = claimed(&instantiator, "mine", 1);
    let staging = instantiator.staging(1);
    staging.stage(claimed(&other, "theirs", 1), &return_const(5)).unwrap();
    assert_eq!(installed(other.lookup("theirs").unwrap()), 5, "installed at once, in its own");
    assert_eq!(instantiator.lookup("theirs"), None);
    staging.stage(mine, &return_const(6)).unwrap();
    staging.finish().unwrap();
    assert_eq!(installed(instantiator.lookup("mine").unwrap()), 6);
}
