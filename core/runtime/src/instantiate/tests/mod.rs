//! The instantiator's checks, waits and failures over the simulated kernel (so they run under
//! Miri: the simulation has no shared memory, so code goes to sealed batches), and the arena
//! path over the real kernel, calling the code it installed.

#![allow(unsafe_code)]

extern crate std;

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;

use super::metadata::ModuleMetadata;
use super::{
    Caller, CompileFailure, CompilerError, InstantiateError, Instantiated, Instantiator, InstantiatorConfig,
};
use crate::exec::{ExecAllocator, ExecConfig, Kernel, SimulatedKernel};

/// An allocator with small regions over `kernel`.
fn allocator(kernel: &'static dyn Kernel) -> ExecAllocator {
    ExecAllocator::with_kernel(ExecConfig { region_size: 16 * 4096, ..ExecConfig::default() }, kernel)
}

/// An allocator over a simulated kernel of the test's own.
macro_rules! simulated {
    () => {{
        static KERNEL: SimulatedKernel = SimulatedKernel::new();
        allocator(&KERNEL)
    }};
}

/// Machine code returning `value` (x86-64 `mov eax, imm32; ret`; aarch64 `movz x0; ret`).
fn return_const(value: u16) -> Vec<u8> {
    if cfg!(target_arch = "aarch64") {
        let movz = 0xD280_0000u32 | (u32::from(value) << 5);
        [movz.to_le_bytes(), 0xD65F_03C0u32.to_le_bytes()].concat()
    } else {
        let mut code = vec![0xB8];
        code.extend_from_slice(&u32::from(value).to_le_bytes());
        code.push(0xC3);
        code
    }
}

const ALONE: Caller<'static> = Caller { thread: 1, stack: &[] };

/// A compile that failed because a request for one of its dependencies did: the compiler's
/// own error is that request's.
fn dependency_failed(error: InstantiateError) -> InstantiateError {
    InstantiateError::Compile(CompileFailure::Compiler(CompilerError::new(error)))
}

/// The error a chain of compiles, each failing with its dependency's error, started from.
fn innermost(mut error: &InstantiateError) -> &InstantiateError {
    while let InstantiateError::Compile(CompileFailure::Compiler(inner)) = error {
        match inner.downcast_ref::<InstantiateError>() {
            Some(dependency) => error = dependency,
            None => break,
        }
    }
    error
}

/// Instantiates `name` offering everything, compiling to `return_const(value)`.
fn simple(
    instantiator: &Instantiator,
    name: &str,
    caller: Caller<'_>,
    value: u16,
) -> Result<Instantiated, InstantiateError> {
    instantiator.instantiate(name, caller, || Ok(Some(())), |()| Ok(return_const(value)))
}

#[test]
fn a_second_request_gets_the_same_address_without_compiling() {
    let exec = simulated!();
    let instantiator = Instantiator::new(&exec, InstantiatorConfig::default());
    let compiles = AtomicUsize::new(0);
    let request = || {
        instantiator.instantiate(
            "id$i64",
            ALONE,
            || Ok(Some(())),
            |()| {
                compiles.fetch_add(1, Ordering::Relaxed);
                Ok(return_const(7))
            },
        )
    };
    let first = request().unwrap();
    let second = request().unwrap();
    assert!(first.compiled && !second.compiled);
    assert_eq!(first.address, second.address);
    assert_eq!(compiles.load(Ordering::Relaxed), 1);
    assert_eq!(instantiator.lookup("id$i64"), Some(first.address));
    let stats = instantiator.stats();
    assert_eq!(
        (stats.instantiations, stats.cache_hits, stats.code_bytes),
        (1, 1, return_const(7).len() as u64)
    );
    assert!(!instantiator.uses_arena(), "the simulation has no shared memory: batches");
}

#[test]
fn checks_come_in_the_documented_order() {
    // Disabled: not found, even for what is offered.
    let exec = simulated!();
    let off =
        Instantiator::new(&exec, InstantiatorConfig { enabled: false, ..InstantiatorConfig::default() });
    assert_eq!(simple(&off, "a", ALONE, 1), Err(InstantiateError::NotFound));
    // Depth at the limit: depth exceeded, before anything else (even a cached name).
    let exec = simulated!();
    let instantiator =
        Instantiator::new(&exec, InstantiatorConfig { max_depth: 2, ..InstantiatorConfig::default() });
    simple(&instantiator, "cached", ALONE, 1).unwrap();
    let deep: Vec<Box<str>> = vec!["x".into(), "y".into()];
    let at_limit = Caller { thread: 1, stack: &deep };
    assert_eq!(
        simple(&instantiator, "cached", at_limit, 1),
        Err(InstantiateError::DepthExceeded { limit: 2 })
    );
    assert!(InstantiateError::DepthExceeded { limit: 2 }.to_string().contains('2'));
    // Already instantiated beats in progress.
    let shallow: Vec<Box<str>> = vec!["x".into()];
    let one_deep = Caller { thread: 1, stack: &shallow };
    assert!(simple(&instantiator, "cached", one_deep, 1).is_ok());
    // In progress on this thread: circular, before the plan is asked.
    let err = instantiator.instantiate(
        "x",
        one_deep,
        || -> Result<Option<()>, _> { panic!("not asked") },
        |()| Ok([0xC3]),
    );
    assert_eq!(err, Err(InstantiateError::Circular { cycle: vec!["x".into(), "x".into()] }));
    // Not offered: not found, and the compiler is not called.
    let err = instantiator.instantiate(
        "z",
        ALONE,
        || Ok(None::<()>),
        |()| -> Result<[u8; 1], _> { panic!("not called") },
    );
    assert_eq!(err, Err(InstantiateError::NotFound));
}

#[test]
fn a_compiler_asking_for_its_own_dependencies_finds_cycles_and_the_depth_limit() {
    let exec = simulated!();
    let instantiator =
        Instantiator::new(&exec, InstantiatorConfig { max_depth: 4, ..InstantiatorConfig::default() });
    // a needs b, b needs c, c needs a: the request for a inside c's compile is circular.
    fn request(
        instantiator: &Instantiator,
        name: &str,
        stack: &mut Vec<Box<str>>,
    ) -> Result<Instantiated, InstantiateError> {
        let caller = Caller { thread: 9, stack: &stack.clone() };
        instantiator.instantiate(
            name,
            caller,
            || Ok(Some(())),
            |()| {
                let next = match name {
                    "a" => Some("b"),
                    "b" => Some("c"),
                    "c" => Some("a"),
                    _ => None,
                };
                if let Some(next) = next {
                    stack.push(name.into());
                    let inner = request(instantiator, next, stack);
                    stack.pop();
                    inner.map_err(dependency_failed)?;
                }
                Ok(return_const(1))
            },
        )
    }
    let err = request(&instantiator, "a", &mut Vec::new()).unwrap_err();
    // a's compile failed with b's error, b's with c's, c's with the circular request's: each
    // compiler's own error comes back typed.
    let cycle = vec!["a".into(), "b".into(), "c".into(), "a".into()];
    assert_eq!(innermost(&err), &InstantiateError::Circular { cycle }, "{err:?}");
    let message = err.to_string();
    assert!(message.contains("circular instantiation: a -> b -> c -> a"), "{message}");
    assert_eq!(instantiator.lookup("a"), None);
    assert_eq!(instantiator.stats().compile_failures, 3);

    // A chain deeper than the limit: the fifth level is refused, naming the limit.
    fn chain(
        instantiator: &Instantiator,
        level: u32,
        stack: &mut Vec<Box<str>>,
    ) -> Result<Instantiated, InstantiateError> {
        let name = alloc::format!("level{level}");
        let caller = Caller { thread: 9, stack: &stack.clone() };
        instantiator.instantiate(
            &name,
            caller,
            || Ok(Some(())),
            |()| {
                stack.push(name.as_str().into());
                let inner = chain(instantiator, level + 1, stack);
                stack.pop();
                inner.map_err(dependency_failed)?;
                Ok(return_const(2))
            },
        )
    }
    let err = chain(&instantiator, 0, &mut Vec::new()).unwrap_err();
    assert_eq!(innermost(&err), &InstantiateError::DepthExceeded { limit: 4 }, "{err:?}");
    assert!(err.to_string().contains("maximum instantiation depth 4 exceeded"), "{err}");
}

/// A compiler's own error type.
#[derive(Debug, PartialEq, Eq)]
struct TypeError(&'static str);

impl core::fmt::Display for TypeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} does not type-check", self.0)
    }
}

impl core::error::Error for TypeError {}

#[test]
fn failures_are_not_kept_and_the_limit_counts_what_is_installed() {
    let exec = simulated!();
    let instantiator = Instantiator::new(
        &exec,
        InstantiatorConfig { max_instantiations: 2, ..InstantiatorConfig::default() },
    );
    let type_error = InstantiateError::Compile(CompileFailure::Compiler(CompilerError::new(TypeError("f"))));
    let fail = instantiator.instantiate(
        "f",
        ALONE,
        || Ok(Some(())),
        |()| -> Result<Vec<u8>, _> { Err(type_error.clone()) },
    );
    assert_eq!(fail, Err(type_error), "the compiler's own error, shared");
    let Err(InstantiateError::Compile(CompileFailure::Compiler(error))) = &fail else { panic!("{fail:?}") };
    assert_eq!(error.downcast_ref::<TypeError>(), Some(&TypeError("f")));
    assert_eq!(fail.unwrap_err().to_string(), "compile failed: f does not type-check");
    let empty = instantiator.instantiate("f", ALONE, || Ok(Some(())), |()| Ok(Vec::new()));
    assert_eq!(empty, Err(InstantiateError::Compile(CompileFailure::NoCode)));
    assert!(
        simple(&instantiator, "f", ALONE, 3).unwrap().compiled,
        "a failure is retried by the next request"
    );
    simple(&instantiator, "g", ALONE, 4).unwrap();
    assert_eq!(simple(&instantiator, "h", ALONE, 5), Err(InstantiateError::LimitReached { limit: 2 }));
    assert_eq!(instantiator.stats().compile_failures, 2);
}

#[test]
fn threads_asking_for_one_name_share_one_compile() {
    const THREADS: usize = 4;
    let exec = simulated!();
    let instantiator = Instantiator::new(&exec, InstantiatorConfig::default());
    let compiles = AtomicUsize::new(0);
    let barrier = Barrier::new(THREADS);
    let addresses: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS as u64)
            .map(|thread| {
                let (instantiator, compiles, barrier) = (&instantiator, &compiles, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let caller = Caller { thread, stack: &[] };
                    instantiator
                        .instantiate(
                            "shared",
                            caller,
                            || Ok(Some(())),
                            |()| {
                                compiles.fetch_add(1, Ordering::SeqCst);
                                // Long enough for the others to arrive and wait.
                                std::thread::sleep(std::time::Duration::from_millis(if cfg!(miri) {
                                    1
                                } else {
                                    50
                                }));
                                Ok(return_const(11))
                            },
                        )
                        .unwrap()
                        .address
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(compiles.load(Ordering::SeqCst), 1);
    assert!(addresses.iter().all(|&a| a == addresses[0]));
    assert_eq!(instantiator.stats().instantiations, 1);
}

#[test]
#[cfg_attr(miri, ignore = "builds 64 MiB of code, too slow interpreted; runs natively in cargo test")]
fn code_over_the_limit_is_refused() {
    let exec = simulated!();
    let instantiator = Instantiator::new(&exec, InstantiatorConfig::default());
    let huge =
        instantiator.instantiate("f", ALONE, || Ok(Some(())), |()| Ok(vec![0xC3; super::MAX_CODE + 1]));
    let bytes = super::MAX_CODE + 1;
    assert_eq!(huge, Err(InstantiateError::Compile(CompileFailure::TooMuchCode { bytes })));
    let message = huge.unwrap_err().to_string();
    assert!(
        message.ends_with(&alloc::format!("{bytes} bytes of code (at most {})", super::MAX_CODE)),
        "{message}"
    );
    assert_eq!(instantiator.stats().code_bytes, 0);
}

#[test]
fn threads_compile_different_names_side_by_side() {
    // Each compile waits (up to a deadline) until both are inside their compiles at once:
    // if compiles were serialized, neither would see the other.
    let exec = simulated!();
    let instantiator = Instantiator::new(&exec, InstantiatorConfig::default());
    let inside = AtomicUsize::new(0);
    let overlapped: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = [(1u64, "p"), (2, "q")]
            .into_iter()
            .map(|(thread, name)| {
                let (instantiator, inside) = (&instantiator, &inside);
                s.spawn(move || {
                    let mut saw_both = false;
                    let caller = Caller { thread, stack: &[] };
                    instantiator
                        .instantiate(
                            name,
                            caller,
                            || Ok(Some(())),
                            |()| {
                                inside.fetch_add(1, Ordering::SeqCst);
                                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                                while !saw_both && std::time::Instant::now() < deadline {
                                    saw_both = inside.load(Ordering::SeqCst) == 2;
                                    std::thread::yield_now();
                                }
                                Ok(return_const(3))
                            },
                        )
                        .unwrap();
                    saw_both
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(overlapped, [true, true]);
    assert_eq!(instantiator.stats().instantiations, 2);
}

#[test]
fn a_wait_that_would_close_a_cycle_across_threads_is_circular() {
    // Thread 1 compiles x and needs y; thread 2 compiles y and needs x.
    let exec = simulated!();
    let instantiator = Instantiator::new(&exec, InstantiatorConfig::default());
    let both_compiling = Barrier::new(2);
    let results: Vec<Result<Instantiated, InstantiateError>> = std::thread::scope(|s| {
        let spawn = |thread: u64, mine: &'static str, theirs: &'static str| {
            let (instantiator, barrier) = (&instantiator, &both_compiling);
            s.spawn(move || {
                let caller = Caller { thread, stack: &[] };
                instantiator.instantiate(
                    mine,
                    caller,
                    || Ok(Some(())),
                    |()| {
                        barrier.wait();
                        let stack: Vec<Box<str>> = vec![mine.into()];
                        let inner = Caller { thread, stack: &stack };
                        simple(instantiator, theirs, inner, 1).map_err(dependency_failed)?;
                        Ok(return_const(2))
                    },
                )
            })
        };
        let one = spawn(1, "x", "y");
        let two = spawn(2, "y", "x");
        vec![one.join().unwrap(), two.join().unwrap()]
    });
    // Whichever asked second saw the cycle; its failure reached the other (who waited for it).
    for result in &results {
        let Err(error) = result else { panic!("{results:?}") };
        assert!(matches!(innermost(error), InstantiateError::Circular { .. }), "{results:?}");
    }
    let messages: String = results.iter().map(|r| r.as_ref().unwrap_err().to_string()).collect();
    assert!(messages.contains("x -> y -> x") || messages.contains("y -> x -> y"), "{messages}");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "maps shared memory through real syscalls; the simulated tests cover the logic under Miri"
)]
fn over_the_real_kernel_code_goes_to_the_arena_and_runs() {
    let exec = allocator(&crate::exec::LINUX);
    let instantiator = Instantiator::new(&exec, InstantiatorConfig::default());
    let mut addresses = Vec::new();
    for value in 0..500u16 {
        let name = alloc::format!("f{value}");
        addresses.push(simple(&instantiator, &name, ALONE, value).unwrap().address);
    }
    assert!(instantiator.uses_arena());
    for (value, &address) in addresses.iter().enumerate() {
        // SAFETY: the instantiator installed `return_const(value)` there and lives.
        let f =
            unsafe { crate::exec::function_pointer::<extern "C" fn() -> u64>(address) }.expect("an address");
        assert_eq!(f(), value as u64);
    }
}

#[test]
fn metadata_moves_recorded_entries_and_reads_back() {
    let note = "possible |id, template, type_args, mangled_name, required_by, can_defer|\n    \
                0, \"List\", \"Float\", \"List$Float\", \"app\", true\n    \
                1, \"id\", \"i64\", \"id$i64\", \"app\", false";
    let mut meta = ModuleMetadata::new(Some(note), "m.smf").unwrap();
    let offered = meta.possible("id$i64").unwrap().unwrap();
    assert_eq!((offered.template.as_str(), offered.type_args.as_str()), ("id", "i64"));
    assert_eq!(meta.possible("nope"), Ok(None));
    meta.record("id$i64").unwrap();
    meta.record("id$i64").unwrap();
    let text = meta.to_text().unwrap();
    let read = smf_format::note_sdn::NoteSdn::new(&text);
    let names = |table: &str| -> Vec<String> {
        read.table(table).unwrap().rows().map(|r| r.field(3).unwrap().to_text()).collect()
    };
    assert_eq!(names("possible"), ["List$Float"]);
    assert_eq!(names("instantiations"), ["id$i64"]);
    let row = read.table("instantiations").unwrap().rows().next().unwrap();
    assert!(row.field(7).unwrap().eq_str("jit_compiled"));
    assert!(text.ends_with("\n# END_NOTE\n"), "{text}");
    // Still offered after it moved (the cache answers first anyway).
    assert!(meta.possible("id$i64").unwrap().is_some());
}

mod batch;
mod published;

#[test]
fn a_module_failure_keeps_the_loaders_type_and_clones_share_it() {
    use super::ModuleUnavailable;
    let format = smf_format::Error::new(smf_format::ErrorKind::BadMagic, 0);
    let error = InstantiateError::Module(ModuleUnavailable::new(format));
    let InstantiateError::Module(module) = &error else { panic!() };
    assert_eq!(module.downcast_ref::<smf_format::Error>(), Some(&format));
    assert_eq!(error.clone(), error, "a clone is the same failure");
    assert_ne!(InstantiateError::Module(ModuleUnavailable::new(format)), error, "another failure is not");
    assert_eq!(error.to_string(), alloc::format!("module unavailable: {format}"));
    let source = core::error::Error::source(&error).map(ToString::to_string);
    assert_eq!(source, Some(format.to_string()));
}

#[test]
fn a_compilers_error_keeps_its_type_boxed_or_not_and_clones_share_it() {
    let boxed: Box<dyn core::error::Error + Send + Sync> = Box::new(TypeError("g"));
    let error = InstantiateError::Compile(CompileFailure::Compiler(CompilerError::from(boxed)));
    let InstantiateError::Compile(CompileFailure::Compiler(compiler)) = &error else { panic!() };
    assert_eq!(compiler.downcast_ref::<TypeError>(), Some(&TypeError("g")), "the boxed type, not the box");
    assert_eq!(error.clone(), error, "a clone is the same failure");
    let again = InstantiateError::Compile(CompileFailure::Compiler(CompilerError::new(TypeError("g"))));
    assert_ne!(again, error, "another failure is not");
    assert_eq!(error.to_string(), "compile failed: g does not type-check");
    let source = core::error::Error::source(&error).map(ToString::to_string);
    assert_eq!(source, Some("g does not type-check".into()));
    assert_eq!(
        InstantiateError::Compile(CompileFailure::Panicked).to_string(),
        "compile failed: the compiler panicked"
    );
    assert!(core::error::Error::source(&InstantiateError::Compile(CompileFailure::NoCode)).is_none());
}
