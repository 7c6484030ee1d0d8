//! Load-time instantiation from Rust (`smf::instantiate::Generics` over a `ModuleCache`), with a compiler
//! that emits real machine code for this machine (x86-64, or aarch64 under
//! `cargo xtask cross-test`): the checks in order, dependencies asked for re-entrantly, the
//! cycle and depth messages, the metadata read back with our own note.sdn reader, resolve and
//! resolve_generic, racing threads, a compiler that panics, evicted and reloaded modules.

// Running the installed machine code needs a function pointer made from its address.
#![allow(unsafe_code)]

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use smf::cache::ModuleCache;
use smf::instantiate::{CompileError, Compiler, Generics, Request};
use smf::loader::ModuleError;
use smf_format::note_sdn::NoteSdn;
use smf_runtime::instantiate::{CompileFailure, InstantiateError, InstantiatorConfig};
use smf_runtime::load::LoadError;
use smf_tests::{assert_no_rwx, generics, return_const};

/// `f(x) = x` (x86-64 `mov rax, rdi; ret`; aarch64 `ret`).
fn identity_code() -> Vec<u8> {
    if cfg!(target_arch = "aarch64") {
        0xD65F_03C0u32.to_le_bytes().to_vec()
    } else {
        vec![0x48, 0x89, 0xF8, 0xC3]
    }
}

/// A jump to `target` with the caller's arguments (x86-64 `movabs rax, target; jmp rax`;
/// aarch64 `ldr x16, 8; br x16; .quad target`).
fn tail_call(target: usize) -> Vec<u8> {
    let mut code = if cfg!(target_arch = "aarch64") {
        [0x5800_0050u32.to_le_bytes(), 0xD61F_0200u32.to_le_bytes()].concat()
    } else {
        vec![0x48, 0xB8]
    };
    code.extend_from_slice(&(target as u64).to_le_bytes());
    if !cfg!(target_arch = "aarch64") {
        code.extend_from_slice(&[0xFF, 0xE0]);
    }
    code
}

fn call1(address: usize, x: i64) -> i64 {
    // SAFETY: every function the compiler below emits takes one integer and returns one.
    let f = unsafe { smf_runtime::exec::function_pointer::<extern "C" fn(i64) -> i64>(address) }
        .expect("an address");
    f(x)
}

/// What the test compiler saw.
#[derive(Default)]
struct Log {
    compiles: AtomicUsize,
    /// Errors the compiler got from requests for dependencies, as text.
    inner_errors: Mutex<Vec<String>>,
    panic_next: AtomicBool,
    /// Milliseconds to sleep in each compile (for the races).
    delay_ms: AtomicUsize,
}

/// The runtime's compiler for the fixture's templates (see `generics::NOTE`).
struct TestCompiler(Arc<Log>);

impl TestCompiler {
    fn dependency(&self, generics: &Generics, path: &Path, name: &str) -> Result<usize, DependencyFailed> {
        generics.instantiate(path, name).map_err(|error| {
            self.0.inner_errors.lock().unwrap().push(format!("{error:?}|{error}"));
            DependencyFailed { name: name.into(), error }
        })
    }
}

/// The test compiler's own error: a dependency could not be instantiated.
#[derive(Debug)]
struct DependencyFailed {
    name: String,
    error: InstantiateError,
}

impl std::fmt::Display for DependencyFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "dependency {}: {}", self.name, self.error)
    }
}

impl std::error::Error for DependencyFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// The compiler's own error in `error`, as the test compiler's type.
fn dependency_failed(error: &InstantiateError) -> Option<&DependencyFailed> {
    let InstantiateError::Compile(CompileFailure::Compiler(compiler)) = error else { return None };
    compiler.downcast_ref()
}

impl Compiler for TestCompiler {
    fn compile<'c>(
        &'c self,
        generics: &Generics,
        request: &Request<'_>,
    ) -> Result<Cow<'c, [u8]>, CompileError> {
        self.0.compiles.fetch_add(1, Ordering::SeqCst);
        if self.0.panic_next.swap(false, Ordering::SeqCst) {
            panic!("the test compiler panics");
        }
        let delay = self.0.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(std::time::Duration::from_millis(delay as u64));
        }
        let code = match request.template {
            "identity" => {
                let template = request.template_bytes.ok_or("no template for identity")?;
                // The template-code entry: kind 0 (function), u32 length, the name.
                if template[0] != 0 || &template[5..13] != b"identity" {
                    return Err(format!("unexpected template entry {template:?}").into());
                }
                identity_code()
            }
            "List" => tail_call(self.dependency(generics, request.path, "identity$i64")?),
            "Pair" => tail_call(request.module.symbol(b"answer").ok_or("no answer export")?),
            "chain" => {
                let next = match request.type_args {
                    "a" => "chain$b",
                    "b" => "chain$c",
                    _ => "chain$a",
                };
                self.dependency(generics, request.path, next)?;
                return_const(1)
            }
            "deep" => {
                let n: u16 = request.type_args.parse().map_err(|e| format!("{e}"))?;
                self.dependency(generics, request.path, &format!("deep${}", n + 1))?;
                return_const(n)
            }
            "extra" => return_const(77),
            other => return Err(format!("no code generator for {other}").into()),
        };
        Ok(Cow::Owned(code))
    }
}

struct Setup {
    path: PathBuf,
    cache: Arc<ModuleCache>,
    generics: Generics,
    log: Arc<Log>,
}

fn setup(tag: &str, config: InstantiatorConfig) -> Setup {
    let path = smf_tests::scratch("generics", tag).join("generics.smf");
    std::fs::write(&path, generics::module()).unwrap();
    let cache = Arc::new(ModuleCache::new(0, 0));
    let log = Arc::new(Log::default());
    let generics = Generics::new(Arc::clone(&cache), config, TestCompiler(Arc::clone(&log)));
    Setup { path, cache, generics, log }
}

#[test]
fn an_instantiation_runs_and_a_second_request_gets_the_same_code_without_compiling() {
    let s = setup("once", InstantiatorConfig::default());
    let first = s.generics.instantiate(&s.path, "identity$i64").unwrap();
    assert_eq!(call1(first, 5), 5);
    assert_eq!(s.generics.instantiate(&s.path, "identity$i64").unwrap(), first);
    assert_eq!(s.log.compiles.load(Ordering::SeqCst), 1);
    let stats = s.generics.stats();
    assert_eq!((stats.instantiations, stats.cache_hits), (1, 1));
    assert_eq!(stats.code_bytes, identity_code().len() as u64);
    assert_no_rwx("after an instantiation");
}

#[test]
fn a_compiler_gets_its_dependencies_re_entrantly() {
    let s = setup("deps", InstantiatorConfig::default());
    let list = s.generics.instantiate(&s.path, "List$Float").unwrap();
    // List$Float jumps to identity$i64, instantiated from inside List$Float's compile.
    assert_eq!(call1(list, 9), 9);
    assert!(s.generics.instantiate(&s.path, "identity$i64").is_ok());
    assert_eq!(s.log.compiles.load(Ordering::SeqCst), 2);
}

#[test]
fn a_cycle_of_dependencies_is_circular_and_names_the_cycle() {
    let s = setup("cycle", InstantiatorConfig::default());
    let err = s.generics.instantiate(&s.path, "chain$a").unwrap_err();
    // Each compile failed with the compiler's own error, given back typed: chain$a's because
    // chain$b failed, chain$b's because chain$c did, chain$c's because chain$a was circular.
    let mut failed = Vec::new();
    let mut error = &err;
    while let Some(dependency) = dependency_failed(error) {
        failed.push(dependency.name.as_str());
        error = &dependency.error;
    }
    assert_eq!(failed, ["chain$b", "chain$c", "chain$a"], "{err:?}");
    let cycle: Vec<Box<str>> = ["chain$a", "chain$b", "chain$c", "chain$a"].map(Into::into).to_vec();
    assert_eq!(error, &InstantiateError::Circular { cycle }, "{err:?}");
    let inner = s.log.inner_errors.lock().unwrap().clone();
    // The innermost request (chain$a again, from chain$c's compile) was the circular one.
    assert!(inner[0].starts_with("Circular"), "{inner:?}");
    assert!(
        inner[0].contains("circular instantiation: chain$a -> chain$b -> chain$c -> chain$a"),
        "{inner:?}"
    );
    assert!(s.generics.instantiate(&s.path, "chain$b").is_err(), "nothing of the cycle was kept");
}

#[test]
fn the_depth_limit_is_enforced_and_named() {
    let s = setup("depth", InstantiatorConfig { max_depth: 3, ..InstantiatorConfig::default() });
    assert!(s.generics.instantiate(&s.path, "deep$1").is_err());
    let inner = s.log.inner_errors.lock().unwrap();
    assert!(inner[0].starts_with("DepthExceeded { limit: 3 }"), "{inner:?}");
    assert!(inner[0].contains("maximum instantiation depth 3 exceeded"), "{inner:?}");
    drop(inner);
    // Requested from deeper in, deep$3 stops at deep$5 (the limit counts from the request).
    let s = setup("depth-ok", InstantiatorConfig { max_depth: 10, ..InstantiatorConfig::default() });
    let err = s.generics.instantiate(&s.path, "deep$3").unwrap_err();
    assert!(err.to_string().contains("dependency deep$6: no module offers"), "{err}");
    let deep4 = dependency_failed(&err).unwrap();
    let deep5 = dependency_failed(&deep4.error).unwrap();
    let deep6 = dependency_failed(&deep5.error).unwrap();
    assert_eq!((deep6.name.as_str(), &deep6.error), ("deep$6", &InstantiateError::NotFound), "{err:?}");
}

#[test]
fn what_is_not_offered_is_not_found_and_a_bad_module_is_a_module_error() {
    let s = setup("absent", InstantiatorConfig::default());
    assert_eq!(s.generics.instantiate(&s.path, "List$Bool"), Err(InstantiateError::NotFound));
    let off = Generics::new(
        Arc::clone(&s.cache),
        InstantiatorConfig { enabled: false, ..InstantiatorConfig::default() },
        TestCompiler(Arc::default()),
    );
    assert_eq!(off.instantiate(&s.path, "identity$i64"), Err(InstantiateError::NotFound));

    let missing = s.path.with_file_name("missing.smf");
    let err = s.generics.instantiate(&missing, "identity$i64").unwrap_err();
    // The loader's own error, typed: the file was not found, and it names the file.
    let InstantiateError::Module(module) = &err else { panic!("{err:?}") };
    assert!(
        matches!(module.downcast_ref(), Some(ModuleError::Io(path, e))
            if path == &missing && e.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    assert!(err.to_string().contains("missing.smf"), "{err}");
    let garbage = s.path.with_file_name("garbage.smf");
    std::fs::write(&garbage, b"not a module at all").unwrap();
    let err = s.generics.instantiate(&garbage, "identity$i64").unwrap_err();
    let InstantiateError::Module(module) = &err else { panic!("{err:?}") };
    assert!(
        matches!(module.downcast_ref(), Some(ModuleError::Load(Some(path), LoadError::Format(_))) if path == &garbage),
        "{err:?}"
    );
    // The compiler's own failure.
    let err = s.generics.instantiate(&s.path, "fails$x").unwrap_err();
    assert!(matches!(err, InstantiateError::Compile(CompileFailure::Compiler(_))), "{err:?}");
    assert_eq!(err.to_string(), "compile failed: no code generator for fails");
    assert_eq!(s.log.compiles.load(Ordering::SeqCst), 1);
}

#[test]
fn the_metadata_records_instantiations_and_reads_back() {
    let s = setup("note", InstantiatorConfig::default());
    s.generics.instantiate(&s.path, "List$Float").unwrap();
    let text = s.generics.note_sdn(&s.path).unwrap().unwrap();
    let note = NoteSdn::new(&text);
    let column = |table: &str, at: usize| -> Vec<String> {
        note.table(table).unwrap().rows().map(|r| r.field(at).unwrap().to_text()).collect()
    };
    // identity$i64 finished first (inside List$Float's compile), then List$Float.
    assert_eq!(column("instantiations", 3), ["List$Int", "identity$i64", "List$Float"]);
    assert_eq!(column("instantiations", 7), ["compiled", "jit_compiled", "jit_compiled"]);
    assert_eq!(column("instantiations", 0), ["0", "1", "2"]);
    let possible = column("possible", 3);
    assert!(!possible.iter().any(|n| n == "identity$i64" || n == "List$Float"), "{possible:?}");
    assert!(possible.iter().any(|n| n == "Pair$Int_text"));
    assert!(note.table("dependencies").is_some() && text.ends_with("# END_NOTE\n"));
    // Without updates, the note stays as the module has it.
    let quiet = Generics::new(
        Arc::clone(&s.cache),
        InstantiatorConfig { update_metadata: false, ..InstantiatorConfig::default() },
        TestCompiler(Arc::default()),
    );
    quiet.instantiate(&s.path, "identity$i64").unwrap();
    let text = quiet.note_sdn(&s.path).unwrap().unwrap();
    assert_eq!(NoteSdn::new(&text).table("instantiations").unwrap().rows().count(), 1);
    // No file: None.
    assert_eq!(s.generics.note_sdn(&s.path.with_file_name("none.smf")), Ok(None));
}

#[test]
fn resolve_prefers_exports_then_instantiates_and_resolve_generic_mangles() {
    let s = setup("resolve", InstantiatorConfig::default());
    let module = s.cache.get(&s.path).unwrap();
    assert_eq!(s.generics.resolve("answer"), Ok(module.symbol(b"answer").unwrap()));
    let pair = s.generics.resolve_generic("Pair", &["Int", "text"]).unwrap();
    assert_eq!(call1(pair, 0), 42, "Pair$Int_text jumps to the module's answer");
    assert_eq!(s.generics.resolve("Pair$Int_text"), Ok(pair));
    assert_eq!(s.generics.resolve("nothing$here"), Err(InstantiateError::NotFound));
    assert_eq!(s.log.compiles.load(Ordering::SeqCst), 1);
}

#[test]
fn threads_racing_for_one_name_share_one_compile() {
    const THREADS: usize = 8;
    let s = setup("race", InstantiatorConfig::default());
    s.log.delay_ms.store(50, Ordering::SeqCst);
    let barrier = Barrier::new(THREADS);
    let addresses: Vec<usize> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    s.generics.instantiate(&s.path, "identity$i64").unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(addresses.iter().all(|&a| a == addresses[0]));
    assert_eq!(s.log.compiles.load(Ordering::SeqCst), 1);
    assert!(s.generics.stats().waits >= 1);
}

#[test]
fn a_panicking_compiler_fails_its_request_and_leaves_nothing_stuck() {
    let s = setup("panic", InstantiatorConfig::default());
    s.log.panic_next.store(true, Ordering::SeqCst);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        s.generics.instantiate(&s.path, "identity$i64")
    }));
    assert!(caught.is_err());
    // The name is free again, and this thread's chain is empty (no false cycle).
    assert_eq!(call1(s.generics.instantiate(&s.path, "identity$i64").unwrap(), 3), 3);
    assert_eq!(s.generics.stats().compile_failures, 1);
}

#[test]
fn code_outlives_the_module_leaving_the_cache_and_a_reloaded_file_offers_its_new_note() {
    let s = setup("reload", InstantiatorConfig::default());
    let pair = s.generics.instantiate(&s.path, "Pair$Int_text").unwrap();
    s.generics.instantiate(&s.path, "identity$i64").unwrap();
    s.cache.clear();
    // Pair$Int_text jumps into the module's code: the instantiator kept the module.
    assert_eq!(call1(pair, 0), 42);

    // A new version of the file offers identity$i64 and extra$x only.
    let note = "possible |id, template, type_args, mangled_name, required_by, can_defer|\n    \
                0, \"identity\", \"i64\", \"identity$i64\", \"main\", true\n    \
                1, \"extra\", \"x\", \"extra$x\", \"main\", true";
    let next = s.path.with_file_name("next.smf");
    std::fs::write(&next, generics::module_with_note(note)).unwrap();
    std::fs::rename(&next, &s.path).unwrap();
    s.cache.set_check_every_get(true);
    assert_eq!(call1(s.generics.instantiate(&s.path, "extra$x").unwrap(), 0), 77);
    assert_eq!(s.generics.instantiate(&s.path, "List$Float"), Err(InstantiateError::NotFound));
    let text = s.generics.note_sdn(&s.path).unwrap().unwrap();
    let note = NoteSdn::new(&text);
    let made: Vec<String> =
        note.table("instantiations").unwrap().rows().map(|r| r.field(3).unwrap().to_text()).collect();
    assert_eq!(made, ["identity$i64", "extra$x"], "{text}");
    assert_eq!(call1(pair, 0), 42, "the old version's code still runs");
}

#[test]
#[cfg(target_arch = "x86_64")] // examples/generics.smf holds x86-64 code
fn the_example_program_instantiates_from_the_example_module() {
    let example = smf_tests::build_smf_package().join("examples/instantiate");
    let out = std::process::Command::new(example)
        .current_dir(smf_tests::workspace())
        .arg("examples/generics.smf")
        .output()
        .expect("run the instantiate example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("square$i64(7) = 49\nidentity$i64(42) = 42\n"), "{stdout}");
    // Hits: square$i64 asked for again and as a typed handle; identity$i64 as a typed handle
    // after resolve_generic compiled it.
    assert!(stdout.contains("2 instantiations, 3 cache hit(s), 1 compile failure(s)"), "{stdout}");
    let note = &stdout[stdout.find("# generics.smf").expect("the note")..];
    let made: Vec<String> = NoteSdn::new(note)
        .table("instantiations")
        .unwrap()
        .rows()
        .map(|r| r.field(3).unwrap().to_text())
        .collect();
    assert_eq!(made, ["square$i64", "identity$i64"]);
}

#[test]
fn a_module_only_looked_at_leaves_with_the_cache_and_one_instantiated_from_stays() {
    let s = setup("retention", InstantiatorConfig::default());
    let looked_at = Arc::downgrade(&s.cache.get(&s.path).unwrap());
    assert!(s.generics.note_sdn(&s.path).unwrap().is_some());
    assert_eq!(s.generics.resolve("nothing$here"), Err(InstantiateError::NotFound));
    assert!(s.cache.evict(&s.path));
    assert!(looked_at.upgrade().is_none(), "reading its note does not keep a module alive");

    let instantiated_from = Arc::downgrade(&s.cache.get(&s.path).unwrap());
    let pair = s.generics.instantiate(&s.path, "Pair$Int_text").unwrap();
    assert!(s.cache.evict(&s.path));
    assert!(instantiated_from.upgrade().is_some(), "code may call into it: the Generics keeps it");
    assert_eq!(call1(pair, 0), 42);
}

/// A load option's resolver that looks names up through the instantiator (a runtime resolving
/// imports with the JIT as fallback), reading a note on the way.
struct ThroughJit {
    generics: std::sync::OnceLock<std::sync::Weak<Generics>>,
    noted: PathBuf,
    asked: AtomicUsize,
}

impl smf_runtime::load::Resolver for ThroughJit {
    fn resolve(&self, name: &[u8]) -> Option<smf_runtime::load::Resolved> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let generics = self.generics.get()?.upgrade()?;
        assert!(generics.note_sdn(&self.noted).unwrap().is_some(), "the note reads from inside a resolver");
        let addr = generics.resolve(std::str::from_utf8(name).ok()?).ok()?;
        Some(smf_runtime::load::Resolved { addr, keepalive: None })
    }
}

/// Two modules in one directory: generics.smf (cached first) and importer.smf, whose import
/// only the instantiator can provide; a cache whose resolver goes through the instantiator.
fn reentrant_setup(
    tag: &str,
) -> (PathBuf, PathBuf, Arc<ModuleCache>, Arc<Generics>, Arc<ThroughJit>, Arc<Log>) {
    let dir = smf_tests::scratch("generics", tag);
    let (generics_path, importer_path) = (dir.join("generics.smf"), dir.join("importer.smf"));
    std::fs::write(&generics_path, generics::module()).unwrap();
    std::fs::write(&importer_path, smf_tests::importer::module()).unwrap();
    let cache = Arc::new(ModuleCache::new(0, 0));
    let resolver = Arc::new(ThroughJit {
        generics: std::sync::OnceLock::new(),
        noted: generics_path.clone(),
        asked: AtomicUsize::new(0),
    });
    cache.set_linking(smf::cache::CacheLinking {
        resolver: Some(Arc::clone(&resolver) as Arc<dyn smf_runtime::load::Resolver + Send + Sync>),
        ..smf::cache::CacheLinking::default()
    });
    let log = Arc::new(Log::default());
    let generics = Arc::new(Generics::new(
        Arc::clone(&cache),
        InstantiatorConfig::default(),
        TestCompiler(Arc::clone(&log)),
    ));
    resolver.generics.set(Arc::downgrade(&generics)).unwrap();
    cache.get(&generics_path).unwrap();
    (generics_path, importer_path, cache, generics, resolver, log)
}

#[test]
fn a_resolver_may_re_enter_the_instantiator_from_a_load_inside_an_instantiation() {
    let (_, importer_path, cache, generics, resolver, log) = reentrant_setup("reentrant-resolver");
    // The request's plan misses the cache: loading importer.smf asks the resolver for
    // identity$i64, which instantiates it from generics.smf, on this thread, mid-request.
    let extra = generics.instantiate(&importer_path, "extra$x").unwrap();
    assert_eq!(call1(extra, 0), 77);
    assert!(resolver.asked.load(Ordering::SeqCst) >= 1);
    let identity = generics.instantiator().lookup("identity$i64").expect("instantiated by the resolver");
    assert_eq!(call1(identity, 9), 9);
    let importer = cache.get(&importer_path).unwrap();
    let slot = importer.symbol(b"slot").unwrap();
    // SAFETY: `slot` is 8 bytes of the importer's code, mapped while `importer` is held.
    assert_eq!(unsafe { (slot as *const u64).read_unaligned() }, identity as u64);
    assert_eq!(log.compiles.load(Ordering::SeqCst), 2);
    assert!(log.inner_errors.lock().unwrap().is_empty());
}

/// A compiler that calls every library function of the instantiator and the cache from inside
/// its compile, then emits `return_const(5)`.
struct CallsEverything {
    cache: Arc<ModuleCache>,
    generics: PathBuf,
    seen: Mutex<Vec<String>>,
}

impl Compiler for CallsEverything {
    fn compile<'c>(
        &'c self,
        generics: &Generics,
        request: &Request<'_>,
    ) -> Result<Cow<'c, [u8]>, CompileError> {
        if request.name == "identity$i64" {
            return Ok(Cow::Owned(identity_code()));
        }
        let mut seen = Vec::new();
        let e = |e: InstantiateError| e.to_string();
        seen.push(format!("note {}", generics.note_sdn(&self.generics).map_err(e)?.is_some()));
        seen.push(format!("resolve {}", generics.resolve("answer").is_ok()));
        seen.push(format!("instantiated {:?}", generics.instantiated(request.name.as_bytes()).map_err(e)?));
        let batch = generics.instantiate_many(&self.generics, &["identity$i64"]).map_err(e)?;
        seen.push(format!("batch {}", batch[0].is_ok()));
        seen.push(format!("stats {}", generics.stats().instantiations));
        seen.push(format!("get {}", self.cache.get(&self.generics).is_ok()));
        seen.push(format!("prefetch {}", self.cache.prefetch(std::slice::from_ref(&self.generics), 2)));
        seen.push(format!("cache resolve {}", self.cache.resolve(b"answer").is_some()));
        *self.seen.lock().unwrap() = seen;
        Ok(Cow::Owned(return_const(5)))
    }
}

#[test]
fn a_compiler_may_call_every_library_function_from_inside_its_compile() {
    let (generics_path, _, cache, _, _, _) = reentrant_setup("reentrant-compiler");
    let compiler = Arc::new(CallsEverything {
        cache: Arc::clone(&cache),
        generics: generics_path.clone(),
        seen: Mutex::new(Vec::new()),
    });
    struct Shared(Arc<CallsEverything>);
    impl Compiler for Shared {
        fn compile<'c>(
            &'c self,
            generics: &Generics,
            request: &Request<'_>,
        ) -> Result<Cow<'c, [u8]>, CompileError> {
            self.0.compile(generics, request)
        }
    }
    let generics =
        Generics::new(Arc::clone(&cache), InstantiatorConfig::default(), Shared(Arc::clone(&compiler)));
    let pair = generics.instantiate(&generics_path, "Pair$Int_text").unwrap();
    assert_eq!(call1(pair, 0), 5);
    assert_eq!(
        *compiler.seen.lock().unwrap(),
        [
            "note true",
            "resolve true",
            "instantiated None",
            "batch true",
            "stats 1",
            "get true",
            "prefetch 1",
            "cache resolve true"
        ]
    );
    assert_eq!(generics.stats().instantiations, 2);
    assert_no_rwx("re-entrant requests");
}

#[test]
fn resolve_follows_the_cache_as_modules_come_go_and_change() {
    let dir = smf_tests::scratch("generics", "resolve-index");
    let offering = |names: &[&str]| {
        let mut note =
            String::from("possible |id, template, type_args, mangled_name, required_by, can_defer|\n");
        for (i, name) in names.iter().enumerate() {
            note.push_str(&format!("    {i}, \"extra\", \"x\", \"{name}\", \"main\", true\n"));
        }
        generics::module_with_note(&note)
    };
    let (a, b) = (dir.join("a.smf"), dir.join("b.smf"));
    std::fs::write(&a, offering(&["one", "both"])).unwrap();
    std::fs::write(&b, offering(&["two", "both"])).unwrap();
    let cache = Arc::new(ModuleCache::new(0, 0));
    let log = Arc::new(Log::default());
    let generics =
        Generics::new(Arc::clone(&cache), InstantiatorConfig::default(), TestCompiler(Arc::clone(&log)));
    // Nothing cached: nothing offered.
    assert_eq!(generics.resolve("one"), Err(InstantiateError::NotFound));
    // A module cached after that miss is seen.
    cache.get(&a).unwrap();
    assert_eq!(call1(generics.resolve("one").unwrap(), 0), 77);
    assert_eq!(generics.resolve("two"), Err(InstantiateError::NotFound));
    cache.get(&b).unwrap();
    // Both offer "both": the most recently used (b) answers, and its note records it.
    generics.resolve("both").unwrap();
    let recorded_in = |path: &Path| {
        let text = generics.note_sdn(path).unwrap().unwrap();
        let note = NoteSdn::new(&text);
        note.table("instantiations").is_some_and(|t| t.rows().any(|r| r.field(3).unwrap().eq_str("both")))
    };
    assert!(recorded_in(&b) && !recorded_in(&a));
    // An evicted module offers nothing any more.
    assert!(cache.evict(&b));
    assert_eq!(generics.resolve("two"), Err(InstantiateError::NotFound));
    // A replaced file offers what its new note offers.
    let next = dir.join("next.smf");
    std::fs::write(&next, offering(&["three"])).unwrap();
    std::fs::rename(&next, &a).unwrap();
    cache.set_check_every_get(true);
    cache.get(&a).unwrap();
    assert_eq!(call1(generics.resolve("three").unwrap(), 0), 77);
    assert_eq!(generics.resolve("nothing$here"), Err(InstantiateError::NotFound));
    assert_eq!(log.compiles.load(Ordering::SeqCst), 3);
}

#[test]
fn a_template_no_symbol_names_is_found_by_its_record_name() {
    use smf_format::template::TemplateKind;
    use smf_format::write::{ModuleBuilder, SymbolSpec, TemplateSpec};
    use smf_format::Dialect;
    let record = |name: &[u8]| TemplateSpec {
        kind: TemplateKind::Function,
        name: name.to_vec(),
        params: vec![b"T".to_vec()],
        body: b"fn body".to_vec(),
    };
    // Short-form records (several, one after another) and a single full-form record: no
    // template symbol names either.
    for (tag, short, names) in
        [("short", true, vec![&b"pair"[..], b"identity"]), ("single", false, vec![&b"identity"[..]])]
    {
        let mut b = ModuleBuilder::new(Dialect::R96);
        if cfg!(target_arch = "aarch64") {
            b.header(|h| h.arch = 1);
        }
        let code = return_const(42);
        b.add_code(b".text", &code);
        b.add_symbol(SymbolSpec::function(b"answer", 0, code.len() as u64));
        b.note_sdn(generics::NOTE);
        b.short_form_templates(short);
        for name in names {
            b.add_template(record(name));
        }
        let path = smf_tests::scratch("generics", &format!("records-{tag}")).join("m.smf");
        std::fs::write(&path, b.build().unwrap()).unwrap();
        let cache = Arc::new(ModuleCache::new(0, 0));
        let log = Arc::new(Log::default());
        let generics =
            Generics::new(Arc::clone(&cache), InstantiatorConfig::default(), TestCompiler(Arc::clone(&log)));
        // The test compiler refuses identity without its template bytes.
        let identity = generics.instantiate(&path, "identity$i64").unwrap_or_else(|e| panic!("{tag}: {e}"));
        assert_eq!(call1(identity, 11), 11, "{tag}");
        let module = cache.get(&path).unwrap();
        assert!(module.loaded().template(b"List").is_none(), "{tag}: no record of that name");
    }
}

#[test]
fn the_shells_mangling_and_the_note_and_template_readers_agree() {
    use smf::instantiate::{mangle, try_mangle};
    use smf_format::note_sdn::mangle::{column_arguments, row_agrees};
    // Every "possible" row of the fixture (written as Simple writes them), read by the core's
    // reader: its name is its template mangled with its type arguments.
    let note = NoteSdn::new(generics::NOTE);
    let mut rows = 0;
    for row in note.table("possible").unwrap().rows() {
        let field = |i| row.field(i).unwrap().to_text();
        let (template, type_args, name) = (field(1), field(2), field(3));
        let args: Vec<&str> = column_arguments(&type_args).collect();
        assert_eq!(mangle(&template, &args), name);
        assert_eq!(try_mangle(&template, &args).unwrap(), name);
        assert!(row_agrees(&name, &template, &type_args), "{name}");
        rows += 1;
    }
    assert_eq!(rows, 12);

    // Through an instantiator: each request's name is its template mangled with its type
    // arguments, the template reader finds the template by the name's base, and
    // `resolve_generic` reaches the code the name does.
    let path = smf_tests::scratch("generics", "mangling").join("generics.smf");
    std::fs::write(&path, generics::module()).unwrap();
    let cache = Arc::new(ModuleCache::new(0, 0));
    /// A request's name, its template mangled with its type arguments, its template entry.
    type Seen = (String, String, Option<Vec<u8>>);
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = Arc::clone(&seen);
    let compile = move |_: &Generics, r: &Request<'_>| -> Result<Vec<u8>, String> {
        let args: Vec<&str> = column_arguments(r.type_args).collect();
        let template = r.template_bytes.map(<[u8]>::to_vec);
        log.lock().unwrap().push((r.name.to_owned(), mangle(r.template, &args), template));
        Ok(return_const(7))
    };
    let generics = Generics::new(Arc::clone(&cache), InstantiatorConfig::default(), compile);
    let pair = generics.instantiate(&path, "Pair$Int_text").unwrap();
    assert_eq!(generics.resolve_generic("Pair", &["Int", "text"]), Ok(pair));
    let identity = generics.resolve_generic("identity", &["i64"]).unwrap();
    assert_eq!(generics.instantiate(&path, "identity$i64"), Ok(identity));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    for (name, mangled, template) in seen.iter() {
        assert_eq!(name, mangled);
        let base = name.split('$').next().unwrap();
        // A template-code entry: kind, u32 name length, the name.
        if let Some(entry) = template {
            assert_eq!(&entry[5..5 + base.len()], base.as_bytes(), "{name}");
        }
    }
    assert!(seen.iter().any(|(name, _, template)| name == "identity$i64" && template.is_some()));
}
