//! The `instantiate_ops` target: load-time instantiation driven by requests decoded from the input,
//! through a compiler callback whose behaviour for each name the input also chooses: code that
//! returns a number, a failure, a request for another name (itself included: a cycle) before
//! answering, or bytes of any kind (never run). Requests name the module offering the names,
//! a file that does not exist or one that is no module; some come from several threads at
//! once (waiting for each other's compiles, in cycles across threads). After every step: a
//! name instantiated keeps its address (whichever thread asked), code the callback made
//! returning a number still returns it, counters never go back; no request hangs, crashes or
//! leaves a name half made; a failure's message and every error behind it format. At the end,
//! with the `Generics` and its cache dropped, the process's allocator holds no block more than
//! before.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use arbitrary::{Arbitrary, Unstructured};
use smf_runtime::instantiate::{InstantiateError, InstantiatorConfig, InstantiatorStats};

use super::module_files::{self, OFFERED};
use super::workers;
use crate::cache::ModuleCache;
use crate::instantiate::{Generics, Request};
use crate::loader::ModuleError;

/// Most requests one input makes.
const MAX_REQUESTS: usize = 32;
/// Most threads one step asks from at once.
const MAX_THREADS: usize = workers::WORKERS - 1;

/// What the compiler does when asked for a name.
#[derive(Arbitrary, Clone, Debug)]
enum Behaviour {
    /// Code returning this number.
    Returns(u16),
    /// Fails.
    Fails,
    /// Asks for another name first (by index in [`OFFERED`]), then returns a number.
    Asks { name: u8, then: u16 },
    /// These bytes (never run).
    Bytes(Vec<u8>),
}

/// The settings.
#[derive(Arbitrary, Debug)]
struct Setup {
    behaviours: [Behaviour; OFFERED.len()],
    max_depth: u8,
    max_instantiations: u8,
    update_metadata: bool,
}

/// The module file a request names.
#[derive(Arbitrary, Clone, Copy, Debug)]
enum File {
    /// The module offering [`OFFERED`].
    Generics,
    /// No file.
    Missing,
    /// A file that is no module.
    Garbage,
}

impl File {
    fn path(self) -> &'static Path {
        match self {
            File::Generics => module_files::generics(),
            File::Missing => module_files::missing(),
            File::Garbage => module_files::garbage(),
        }
    }
}

/// One request.
#[derive(Arbitrary, Debug)]
enum Step {
    Instantiate { name: u8 },
    InstantiateFrom { file: File, name: u8 },
    Concurrently { names: Vec<u8> },
    InstantiateMany { names: Vec<u8> },
    Instantiated { name: u8 },
    Resolve { name: u8 },
    Limit { max: u8 },
}

/// Runs the requests `data` decodes to; returns how many ran.
pub fn fuzz_instantiate_ops(data: &[u8]) -> usize {
    let mut input = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut input) else { return 0 };
    let path = module_files::generics();
    let before = crate::process::exec().stats();
    let behaviours = Arc::new(setup.behaviours);
    // What each name's code must return, for names whose code returns a number.
    let expected: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let compiler = {
        let (behaviours, expected) = (Arc::clone(&behaviours), Arc::clone(&expected));
        move |generics: &Generics, request: &Request<'_>| -> Result<Vec<u8>, String> {
            let index = OFFERED.iter().position(|n| *n == request.name).ok_or("not a name of this target")?;
            let value = match &behaviours[index] {
                Behaviour::Returns(value) => i64::from(*value),
                Behaviour::Fails => return Err("the compiler says no".into()),
                Behaviour::Asks { name, then } => {
                    let other = OFFERED[usize::from(*name) % OFFERED.len()];
                    // Itself, or a name in the chain asking: a cycle, refused and reported.
                    if let Err(error) = generics.instantiate(request.path, other) {
                        let _ = smf_format::fuzzing::formatted_chain(&error);
                    }
                    i64::from(*then)
                }
                Behaviour::Bytes(bytes) => return Ok(bytes.clone()),
            };
            lock(&expected).insert(request.name.to_owned(), value);
            Ok(module_files::return_constant(value))
        }
    };
    let config = InstantiatorConfig {
        max_depth: u32::from(setup.max_depth % 8),
        enabled: true,
        update_metadata: setup.update_metadata,
        max_instantiations: usize::from(setup.max_instantiations),
    };
    let generics = Arc::new(Generics::new(Arc::new(ModuleCache::new(0, 0)), config, compiler));
    let mut addresses: HashMap<&str, usize> = HashMap::new();
    let mut steps = 0;
    while steps < MAX_REQUESTS {
        let Ok(step) = Step::arbitrary(&mut input) else { break };
        let stats = generics.stats();
        let name = |i: u8| OFFERED[usize::from(i) % OFFERED.len()];
        match step {
            Step::Instantiate { name: i } => {
                let got = generics.instantiate(path, name(i));
                answered(&mut addresses, name(i), got);
            }
            Step::InstantiateFrom { file, name: i } => {
                let got = generics.instantiate(file.path(), name(i));
                answered(&mut addresses, name(i), got);
            }
            Step::Concurrently { names } => {
                let names: Vec<&'static str> = names.iter().take(MAX_THREADS).map(|&i| name(i)).collect();
                let asked: Vec<_> = names
                    .iter()
                    .enumerate()
                    .map(|(worker, &n)| {
                        let generics = Arc::clone(&generics);
                        workers::spawn(worker, move || generics.instantiate(path, n))
                    })
                    .collect();
                let answers: Vec<Result<usize, InstantiateError>> =
                    asked.into_iter().map(workers::Handle::join).collect();
                for (name, got) in names.into_iter().zip(answers) {
                    answered(&mut addresses, name, got);
                }
            }
            Step::InstantiateMany { names } => {
                let names: Vec<&str> = names.iter().take(8).map(|&i| name(i)).collect();
                if let Ok(outcomes) = generics.instantiate_many(path, &names) {
                    assert_eq!(outcomes.len(), names.len(), "one outcome per name");
                    for (name, got) in names.iter().zip(outcomes) {
                        answered(&mut addresses, name, got);
                    }
                }
            }
            Step::Instantiated { name: i } => {
                if let Ok(Some(address)) = generics.instantiated(name(i).as_bytes()) {
                    answered(&mut addresses, name(i), Ok(address));
                }
            }
            Step::Resolve { name: i } => {
                let got = generics.resolve(name(i));
                answered(&mut addresses, name(i), got);
            }
            Step::Limit { max } => generics.set_max_instantiations(usize::from(max)),
        }
        check(&generics, &stats, &addresses, &lock(&expected));
        steps += 1;
    }
    drop(generics);
    let after = crate::process::exec().stats();
    assert_eq!(after.blocks_live, before.blocks_live, "blocks left behind once the Generics was dropped");
    steps
}

/// Records the address a request for `name` answered; a name answered before keeps its address.
/// A failure's message is formatted (error messages are fuzzed too).
fn answered<'n>(
    addresses: &mut HashMap<&'n str, usize>,
    name: &'n str,
    got: Result<usize, InstantiateError>,
) {
    match got {
        Ok(address) => {
            let first = *addresses.entry(name).or_insert(address);
            assert_eq!(first, address, "{name} moved from {first:#x} to {address:#x}");
        }
        Err(error) => {
            if let InstantiateError::Module(unavailable) = &error {
                // The loader's own error, typed all the way.
                assert!(
                    unavailable.downcast_ref::<ModuleError>().is_some(),
                    "{error:?} is not a ModuleError"
                );
            }
            let _ = smf_format::fuzzing::formatted_chain(&error);
        }
    }
}

/// What must hold after every step.
fn check(
    generics: &Generics,
    before: &InstantiatorStats,
    addresses: &HashMap<&str, usize>,
    expected: &HashMap<String, i64>,
) {
    let stats = &generics.stats();
    for (now, then) in [
        (stats.instantiations, before.instantiations),
        (stats.cache_hits, before.cache_hits),
        (stats.compile_failures, before.compile_failures),
        (stats.code_bytes, before.code_bytes),
    ] {
        assert!(now >= then, "a counter went back: {before:?} -> {stats:?}");
    }
    for (name, &address) in addresses {
        if let Some(&value) = expected.get(*name) {
            // SAFETY: the compiler made this name's code from `return_constant`: a function of
            // no argument returning an integer, installed at `address` and kept by the Generics.
            #[allow(unsafe_code)]
            let function = unsafe { generics.instantiator().function_at::<extern "C" fn() -> i64>(address) };
            let got = function.map(|f| f.get()());
            assert_eq!(got, Some(value), "{name}'s code no longer returns what it was made to");
        }
    }
}

/// The map, whoever panicked while holding it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
