//! Constructors and destructors (`docs/format.md`, "Constructors and destructors"): a module's
//! constructors run in order once it is sealed, before the load returns, its destructors in
//! reverse order when it is released, in every dialect; neither runs when the load options say
//! so; handed to the process's exit, the destructors run once, at exit or at release, whichever
//! comes first; an entry that does not point into the module's code fails the load before any
//! constructor runs; and every rule of the arrays is refused with its own error. (Modules packed
//! from C, with constructors in two modules that import from each other: `pack.rs`.)

#![cfg(target_arch = "x86_64")]
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ffi::{c_int, c_void};

use smf_format::write::{samples, ModuleBuilder, SectionSpec, SymbolSpec};
use smf_format::{
    CallArray, CallArrayProblem, Dialect, ErrorKind, Module, RelocKind, SectionFlags, SectionType,
};
use smf_runtime::exec::ExecAllocator;
use smf_runtime::load::{ExitRegistrar, LoadBatch, LoadError, LoadOptions, LoadedModule, TableResolver};

thread_local! {
    /// What the modules' constructors and destructors recorded on this thread, in order.
    static RECORDED: RefCell<Vec<i64>> = const { RefCell::new(Vec::new()) };
}

extern "C" fn record(value: i64) {
    RECORDED.with(|r| r.borrow_mut().push(value));
}

/// What was recorded on this thread since the last call.
fn recorded() -> Vec<i64> {
    RECORDED.with(|r| std::mem::take(&mut *r.borrow_mut()))
}

fn load<'a>(
    exec: &'a ExecAllocator,
    file: &[u8],
    options: &LoadOptions,
) -> Result<LoadedModule<'a>, LoadError> {
    let table = [(&b"record"[..], record as extern "C" fn(i64) as usize)];
    LoadedModule::load(exec, file, &TableResolver(&table), options)
}

#[test]
fn constructors_run_in_order_at_load_and_destructors_in_reverse_at_release() {
    let exec = ExecAllocator::default();
    for dialect in [Dialect::S128, Dialect::R96, Dialect::R72] {
        recorded();
        let module = load(&exec, &samples::call_arrays(dialect), &LoadOptions::default()).unwrap();
        assert_eq!(recorded(), [1, 2], "{dialect}: the constructors, in array order, before load returns");
        drop(module);
        assert_eq!(recorded(), [-2, -1], "{dialect}: the destructors, in reverse order, at release");
    }
}

#[test]
fn a_batch_runs_no_constructor_before_its_seal_then_each_module_s_in_the_order_added() {
    let exec = ExecAllocator::default();
    let table = [(&b"record"[..], record as extern "C" fn(i64) as usize)];
    let resolver = TableResolver(&table);
    recorded();
    let mut batch = LoadBatch::new(&exec);
    assert!(batch.is_empty());
    batch.add(&samples::call_arrays(Dialect::S128), &resolver, &LoadOptions::default()).unwrap();
    assert!(!batch.is_empty());
    // A module that fails (a truncated file) frees what it took; the others stay.
    let broken = samples::call_arrays(Dialect::R96);
    assert!(batch.add(&broken[..broken.len() / 2], &resolver, &LoadOptions::default()).is_err());
    let off = LoadOptions { run_constructors: false, ..LoadOptions::default() };
    batch.add(&samples::call_arrays(Dialect::R72), &resolver, &off).unwrap();
    batch.add(&samples::call_arrays(Dialect::R96), &resolver, &LoadOptions::default()).unwrap();
    assert_eq!(batch.len(), 3);
    assert!(format!("{batch:?}").starts_with("LoadBatch { staged: 3"), "{batch:?}");
    assert_eq!(recorded(), [], "nothing runs while the batch is open");
    let modules = batch.seal().unwrap();
    assert_eq!(recorded(), [1, 2, 1, 2], "each module's constructors, in the order added");
    drop(modules);
    assert_eq!(recorded(), [-2, -1, -2, -1], "destructors of the modules whose constructors ran");
    let stats = exec.stats();
    assert_eq!((stats.blocks_live, stats.pages_open, stats.pages_sealed), (0, 0, 0), "nothing left behind");
}

#[test]
fn modules_released_together_run_every_destructor_first_and_free_their_pages_in_one_go() {
    use smf_runtime::exec::{ExecConfig, FaultInjector, LINUX};
    static KERNEL: FaultInjector = FaultInjector::new(&LINUX);
    let exec = ExecAllocator::with_kernel(ExecConfig::default(), &KERNEL);
    let file = samples::call_arrays(Dialect::S128);
    let load_three = || -> Vec<LoadedModule<'_>> {
        let modules = (0..3).map(|_| load(&exec, &file, &LoadOptions::default()).unwrap()).collect();
        assert_eq!(recorded(), [1, 2, 1, 2, 1, 2]);
        modules
    };
    let released = |release: &dyn Fn(Vec<LoadedModule<'_>>)| {
        let modules = load_three();
        let before = KERNEL.calls();
        release(modules);
        let calls = KERNEL.calls() - before;
        assert_eq!(recorded(), [-2, -1, -2, -1, -2, -1], "every module's destructors, in reverse");
        let stats = exec.stats();
        assert_eq!((stats.blocks_live, stats.pages_open, stats.pages_sealed), (0, 0, 0), "all freed");
        calls
    };
    recorded();
    let one_by_one = released(&|modules| drop(modules));
    let together = released(&|modules| LoadedModule::release_together(modules).unwrap());
    assert!(one_by_one >= 3, "each module's code pages go back with a call of their own: {one_by_one}");
    assert_eq!(together, 1, "adjacent pages go back with one protection change (one by one: {one_by_one})");
    assert_eq!(LoadedModule::release_together(Vec::new()), Ok(()), "nothing to release");
}

#[test]
fn with_constructors_off_neither_constructors_nor_destructors_run() {
    let exec = ExecAllocator::default();
    recorded();
    let options = LoadOptions { run_constructors: false, ..LoadOptions::default() };
    let module = load(&exec, &samples::call_arrays(Dialect::S128), &options).unwrap();
    // The functions are there all the same.
    assert!(module.symbol(b"construct1").is_some());
    drop(module);
    assert_eq!(recorded(), [] as [i64; 0]);
}

thread_local! {
    /// The exit handlers registered with [`register_at_exit`] on this thread: (function,
    /// argument, handle), in the order registered.
    static AT_EXIT: RefCell<Vec<(unsafe extern "C" fn(*mut c_void), usize, usize)>> = const { RefCell::new(Vec::new()) };
}

/// A C library's `__cxa_atexit`, for the test: records the handler, and 0 in [`RECORDED`] (when
/// it was registered).
unsafe extern "C" fn register_at_exit(
    function: unsafe extern "C" fn(*mut c_void),
    argument: *mut c_void,
    handle: *mut c_void,
) -> c_int {
    record(0);
    AT_EXIT.with(|h| h.borrow_mut().push((function, argument as usize, handle as usize)));
    0
}

/// A C library's `__cxa_finalize`: runs the handlers registered under `handle`, last first,
/// and forgets them.
unsafe extern "C" fn finalize(handle: *mut c_void) {
    let mut taken: Vec<_> = AT_EXIT.with(|h| {
        let mut handlers = h.borrow_mut();
        let (taken, kept) = handlers.drain(..).partition(|&(_, _, registered)| registered == handle as usize);
        *handlers = kept;
        taken
    });
    while let Some((function, argument, _)) = taken.pop() {
        // SAFETY: as the C library calls a handler.
        unsafe { function(argument as *mut c_void) };
    }
}

/// The process's exit, for the test: every handler, last registered first.
fn exit_handlers() {
    while let Some((function, argument, _)) = AT_EXIT.with(|h| h.borrow_mut().pop()) {
        // SAFETY: as the C library calls a handler.
        unsafe { function(argument as *mut c_void) };
    }
}

#[test]
fn destructors_handed_to_the_exit_run_once_at_exit_or_at_release() {
    let exec = ExecAllocator::default();
    // SAFETY: the test's C library keeps the contract.
    let at_exit = Some(unsafe { ExitRegistrar::new(register_at_exit, finalize) });
    let options = LoadOptions { at_exit, ..LoadOptions::default() };
    recorded();
    // Registered before the constructors run (so what they register runs first at exit).
    let module = load(&exec, &samples::call_arrays(Dialect::S128), &options).unwrap();
    assert_eq!(recorded(), [0, 1, 2]);
    // The exit runs them while the module is loaded; its release then runs nothing more.
    exit_handlers();
    assert_eq!(recorded(), [-2, -1], "at exit");
    drop(module);
    assert_eq!(recorded(), [] as [i64; 0], "once");

    // Released first: they run at release, and the handler is gone from the list.
    let module = load(&exec, &samples::call_arrays(Dialect::S128), &options).unwrap();
    assert_eq!(recorded(), [0, 1, 2]);
    drop(module);
    assert_eq!(recorded(), [-2, -1], "at release");
    assert!(AT_EXIT.with(|h| h.borrow().is_empty()), "nothing left for the exit");
    exit_handlers();
    assert_eq!(recorded(), [] as [i64; 0]);

    // A module without destructors registers nothing.
    let plain = LoadedModule::load(&exec, &samples::return_42(Dialect::S128), &(), &options).unwrap();
    assert!(AT_EXIT.with(|h| h.borrow().is_empty()));
    drop(plain);
}

/// Set while a destructor run by [`slow_record`] sleeps.
static SLEEPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `record`, whose first negative value (a destructor's) sleeps first: a destructor the exit
/// runs on another thread, still running when the module is released.
extern "C" fn slow_record(value: i64) {
    if value < 0 && !SLEEPING.swap(true, std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    record(value);
}

#[test]
fn a_release_waits_for_destructors_the_exit_runs_on_another_thread() {
    let exec = ExecAllocator::default();
    // SAFETY: the test's C library keeps the contract.
    let at_exit = Some(unsafe { ExitRegistrar::new(register_at_exit, finalize) });
    let options = LoadOptions { at_exit, ..LoadOptions::default() };
    let table = [(&b"record"[..], slow_record as extern "C" fn(i64) as usize)];
    let module =
        LoadedModule::load(&exec, &samples::call_arrays(Dialect::S128), &TableResolver(&table), &options)
            .unwrap();
    // The exit takes the handler off the list and runs it on its own thread (as glibc's does,
    // without its lock), while this thread releases the module: finalize finds nothing, and
    // the release waits for the destructors before the code is freed.
    let (function, argument, _) = AT_EXIT.with(|h| h.borrow_mut().pop()).unwrap();
    let exit = std::thread::spawn(move || {
        // SAFETY: as the C library calls a handler.
        unsafe { function(argument as *mut c_void) };
        RECORDED.with(|r| std::mem::take(&mut *r.borrow_mut()))
    });
    while !SLEEPING.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::yield_now();
    }
    drop(module);
    let ran = exit.join().unwrap();
    assert_eq!(ran, [-2, -1], "the exit's run finished, with every destructor, before the release returned");
    assert_eq!(recorded(), [0, 1, 2], "only the registration and the constructors ran here");
}

/// An array entry: relocated to a symbol (by name) plus an addend, or not relocated.
type Entry<'a> = Option<(&'a [u8], i64)>;

/// A module with the sample's code and symbols, and the constructor array `entries`.
fn with_constructors(entries: &[Entry<'_>]) -> Vec<u8> {
    let sample = samples::call_arrays(Dialect::S128);
    let parsed = Module::parse(&sample).unwrap();
    let mut b = ModuleBuilder::new(Dialect::S128);
    let code = parsed.code_sections().next().unwrap().0;
    b.add_code(b".text", code.data);
    let record = b.add_symbol(SymbolSpec::import(b"record"));
    let construct1 = b.add_symbol(SymbolSpec::function(b"construct1", 0, 12));
    let data = b.add_data(b".data", &[0; 8]);
    let variable = b.add_symbol(SymbolSpec::data(b"variable", data, 0, 8));
    b.add_relocation(8, record, RelocKind::Plt32, -4);
    let array = b.add_section(SectionSpec::new(
        SectionType::RoData,
        b".init_array",
        SectionFlags::READ | SectionFlags::CONSTRUCTORS,
        vec![0; entries.len() * 8],
        8,
    ));
    for (i, entry) in entries.iter().enumerate() {
        if let Some((name, addend)) = entry {
            let symbol = match *name {
                b"construct1" => construct1,
                b"variable" => variable,
                _ => record,
            };
            b.add_data_relocation(array, i as u64 * 8, symbol, RelocKind::Abs64, *addend);
        }
    }
    b.build().unwrap()
}

#[test]
fn an_entry_outside_the_code_fails_the_load_before_any_constructor_runs() {
    let exec = ExecAllocator::default();
    let cases: [(&[Entry<'_>], u64); 4] = [
        (&[Some((b"construct1", 0)), Some((b"variable", 0))], 1), // into data
        (&[Some((b"construct1", 0)), Some((b"record", 0))], 1),   // the host's function
        (&[Some((b"construct1", 0)), None], 1),                   // not relocated: 0
        (&[Some((b"construct1", 4096)), Some((b"construct1", 0))], 0), // past the code
    ];
    for (entries, bad) in cases {
        recorded();
        let error = load(&exec, &with_constructors(entries), &LoadOptions::default()).unwrap_err();
        let LoadError::CallOutsideCode { array, section, entry, .. } = error else {
            panic!("{entries:?}: {error}");
        };
        assert_eq!((array, section, entry), (CallArray::Constructors, 2, bad), "{entries:?}");
        assert!(error.to_string().contains("not in the module's code"), "{error}");
        assert_eq!(recorded(), [] as [i64; 0], "{entries:?}: no constructor ran");
    }
    // The same module with every entry in the code loads and runs them.
    let module =
        load(&exec, &with_constructors(&[Some((b"construct1", 0))]), &LoadOptions::default()).unwrap();
    assert_eq!(recorded(), [1]);
    drop(module);
}

/// A module with a constructor array whose section entry `edit` changes, and the data
/// relocations marker on or off.
fn malformed(edit: impl FnOnce(&mut SectionSpec), marker: bool) -> Vec<u8> {
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b".text", &[0xC3; 16]);
    let f = b.add_symbol(SymbolSpec::function(b"f", 0, 1));
    let mut spec = SectionSpec::new(
        SectionType::RoData,
        b".init_array",
        SectionFlags::READ | SectionFlags::CONSTRUCTORS,
        vec![0; 8],
        8,
    );
    edit(&mut spec);
    b.add_section(spec);
    let data = b.add_data(b".data", &[0; 8]);
    // A data relocation (of the writable data, so that it fits whatever the array became)
    // makes the builder write the marker; without one, the module has none.
    if marker {
        b.add_data_relocation(data, 0, f, RelocKind::Abs64, 0);
    }
    b.build().unwrap()
}

#[test]
fn each_rule_of_the_arrays_is_refused_with_its_own_error() {
    let both = SectionFlags::READ | SectionFlags::CONSTRUCTORS | SectionFlags::DESTRUCTORS;
    let cases: [(Vec<u8>, CallArrayProblem); 6] = [
        (malformed(|s| s.flags = both, true), CallArrayProblem::BothKinds),
        (malformed(|s| s.section_type = SectionType::Data, true), CallArrayProblem::NotReadOnlyData),
        (malformed(|s| s.section_type = SectionType::Code, true), CallArrayProblem::NotReadOnlyData),
        (malformed(|s| s.data = vec![0; 12], true), CallArrayProblem::Size),
        (malformed(|s| s.alignment = 4, true), CallArrayProblem::Alignment),
        (malformed(|_| {}, false), CallArrayProblem::NoMarker),
    ];
    for (file, problem) in cases {
        let error = Module::parse(&file).unwrap_err();
        assert_eq!(error.kind, ErrorKind::BadCallArray { index: 1, problem }, "{error}");
        assert!(error.to_string().starts_with("section 1: a constructor or destructor array"), "{error}");
    }
    // A bss tail would leave entries outside the file: the virtual size must be the size.
    let file = malformed(|s| s.virtual_size = 16, true);
    let error = Module::parse(&file).unwrap_err();
    assert_eq!(error.kind, ErrorKind::BadCallArray { index: 1, problem: CallArrayProblem::Size });
    // The same array, well formed, parses, and its entries read back as one constructor.
    let module_file = malformed(|_| {}, true);
    let module = Module::parse(&module_file).unwrap();
    let arrays: Vec<_> = module.call_arrays().map(|(array, p)| (array, p.section.index)).collect();
    assert_eq!(arrays, [(CallArray::Constructors, 1)]);
    // A destructor array is the same section with the other flag.
    let file = malformed(|s| s.flags = SectionFlags::READ | SectionFlags::DESTRUCTORS, true);
    let arrays: Vec<_> = Module::parse(&file).unwrap().call_arrays().map(|(array, _)| array).collect();
    assert_eq!(arrays, [CallArray::Destructors]);
}
