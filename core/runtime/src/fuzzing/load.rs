//! The `load` target: up to three modules from one input, loaded in turn into one allocator and
//! linked for real: an import resolves to a host symbol (a [`TableResolver`]), else to an
//! export of a module loaded before (found through an [`ExportIndex`], held to a plain search
//! of every module; the importer then keeps the exporter alive), else (unless the input asks
//! otherwise) to a fixed address far from the image, so that relocation and stubs are reached
//! all the same. Unwind tables go to a registrar that records them: each must lie in its
//! module's read-only data and be taken back exactly once. Afterwards every block is released:
//! the allocator is back where it was. A last pass runs over a simulated kernel that fails one
//! call: nothing a failed load mapped stays behind.

use alloc::sync::Arc;
use alloc::vec::Vec;

use core::fmt;

use crate::exec::{ExecAllocator, ExecConfig, FaultInjector, SimulatedKernel};
use crate::load::{
    Chain, ExportIndex, Keepalive, LoadError, LoadOptions, LoadedModule, ReadOnlyData, Resolved, Resolver,
    TableResolver, UnwindRegistrar,
};
use smf_format::ParseOptions;

/// What separates the modules of one input (an input without it is one module).
pub const MODULE_SEPARATOR: &[u8] = b"--smf-fuzz-next-module--";
/// Most modules one input loads (the rest of the input is the last one).
const MAX_MODULES: usize = 3;

/// Data the host exports.
static HOST_DATA: u64 = 0x5EED;

/// A function the host exports (never called: fuzzed code is never run).
extern "C" fn host_function() -> u64 {
    HOST_DATA
}

/// The host's symbols: a function and a datum.
fn host_symbols() -> [(&'static [u8], usize); 2] {
    [
        (b"host_function", host_function as extern "C" fn() -> u64 as usize),
        (b"host_data", core::ptr::addr_of!(HOST_DATA) as usize),
    ]
}

/// The exports of the modules loaded so far, through their index; then (with `fallback`) any
/// name.
struct Modules<'l> {
    loaded: &'l [Arc<LoadedModule<'static>>],
    index: &'l ExportIndex<usize>,
    fallback: bool,
}

impl Resolver for Modules<'_> {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        // The index's candidates, confirmed by the module: the first loaded module that
        // exports the name, as a search of every module in load order finds it.
        let indexed = self
            .index
            .candidates(name)
            .filter_map(|at| Some((at, self.loaded[at].symbol(name)?)))
            .min_by_key(|&(at, _)| at);
        let searched = self.loaded.iter().enumerate().find_map(|(at, m)| Some((at, m.symbol(name)?)));
        assert_eq!(indexed, searched, "the export index disagrees with the modules on {name:?}");
        if let Some((at, addr)) = indexed {
            let owner: Keepalive = self.loaded[at].clone();
            return Some(Resolved { addr, keepalive: Some(owner) });
        }
        (self.fallback && !name.is_empty())
            .then_some(Resolved { addr: 0x10_0000 + name.len() * 16, keepalive: None })
    }

    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        write!(out, "{} loaded modules", self.loaded.len())
    }
}

/// The unwind tables registered and not yet taken back (the target runs on one thread at a
/// time; a lock all the same).
static REGISTERED: spin::Mutex<Vec<usize>> = spin::Mutex::new(Vec::new());

/// Records a registered table; one registered twice without being taken back is a bug (a
/// panic here aborts: it crosses `extern "C"`, which is a finding all the same).
extern "C" fn register_table(table: *const u8) {
    let mut registered = REGISTERED.lock();
    assert!(!registered.contains(&(table as usize)), "unwind table {table:p} registered twice");
    registered.push(table as usize);
}

/// Takes a table back; one never registered (or taken back already) is a bug.
extern "C" fn deregister_table(table: *const u8) {
    let mut registered = REGISTERED.lock();
    let at = registered.iter().position(|&t| t == table as usize);
    let at = at.unwrap_or_else(|| panic!("unwind table {table:p} taken back but not registered"));
    registered.swap_remove(at);
}

/// Checks that `module`'s unwind tables are registered, each inside its read-only data.
fn check_unwind_tables(module: &LoadedModule<'_>) {
    let registered = REGISTERED.lock();
    for (i, table) in module.unwind_tables().iter().enumerate() {
        assert!(registered.contains(&table.addr), "unwind table {i} of a loaded module not registered");
        let bytes = module.unwind_table_bytes(i).expect("a listed unwind table has bytes");
        assert_eq!((bytes.as_ptr() as usize, bytes.len()), (table.addr, table.len));
    }
}

/// Loads the modules of `data` (split at [`MODULE_SEPARATOR`]) in order, each linked against
/// the host and the ones before, then releases them all and checks that the allocator holds no
/// block more than before; all of it twice, with options chosen by the first byte and then with
/// each of them the other way (a module's first byte is its magic, which the fuzzer can hardly
/// change): bit 0 forces branch stubs, bit 1 keeps read-only data out of executable pages, bit
/// 2 resolves no name that neither the host nor a module exports, bit 3 refuses modules for
/// another architecture. Then once more over a simulated kernel, one of whose calls fails (the
/// input's length says which): a memory error only where that call failed, and nothing stays
/// mapped once the allocator (which keeps no spare region) is trimmed. Returns the
/// number of symbols loaded the first time.
pub fn fuzz_load(data: &[u8]) -> usize {
    static EXEC: spin::Once<ExecAllocator> = spin::Once::new();
    let exec: &'static ExecAllocator = EXEC.call_once(ExecAllocator::default);
    let flags = data.first().copied().unwrap_or(0);
    let symbols = load_all(data, flags, exec, None);
    load_all(data, !flags, exec, None);
    load_faulted(data, flags, data.len() % FAULTED_CALLS);
    symbols
}

/// The kernel call that fails in the faulted pass is one of the first this many of the input.
const FAULTED_CALLS: usize = 16;

/// [`fuzz_load`]'s pass over the simulated kernel, its `fail_at`th call failing.
fn load_faulted(data: &[u8], flags: u8, fail_at: usize) {
    static KERNEL: SimulatedKernel = SimulatedKernel::new();
    static FAULTS: FaultInjector = FaultInjector::new(&KERNEL);
    static EXEC: spin::Once<ExecAllocator> = spin::Once::new();
    // No spare region: every input starts from an empty kernel, so the call an input's length
    // picks to fail is the same call whatever ran before.
    let config = ExecConfig { spare_regions: 0, ..ExecConfig::default() };
    let exec: &'static ExecAllocator = EXEC.call_once(|| ExecAllocator::with_kernel(config, &FAULTS));
    FAULTS.fail_call(fail_at);
    load_all(data, flags, exec, Some(&FAULTS));
    FAULTS.disarm();
    // A failed release is reported to no one: its pages stay as they were until a trim.
    let trimmed = exec.trim();
    let (stats, usage) = (exec.stats(), KERNEL.usage());
    assert!(trimmed.is_ok(), "a trim with no call failing failed: {trimmed:?}");
    assert_eq!((stats.blocks_live, stats.bytes_live), (0, 0), "blocks left by a load whose kernel failed");
    assert_eq!((stats.pages_open, stats.regions), (0, 0), "pages or regions left once trimmed");
    assert_eq!(usage.mappings, 0, "mappings left once every module was released and the allocator trimmed");
}

/// [`fuzz_load`]'s loads with the options of `flags` into `exec`, whose kernel (if `faults`)
/// may fail a call: a load fails with a memory error only when one failed during it.
fn load_all(data: &[u8], flags: u8, exec: &'static ExecAllocator, faults: Option<&FaultInjector>) -> usize {
    let options = LoadOptions {
        parse: ParseOptions { dialect: None, max_image_bytes: 1 << 24 },
        require_arch: (flags & 8 != 0).then_some(crate::load::HOST_ARCH),
        force_stubs: flags & 1 != 0,
        read_only_data: if flags & 2 != 0 { ReadOnlyData::NotExecutable } else { ReadOnlyData::WithCode },
        // A fuzzed module's code is never run; its tables go to the recording registrar.
        run_constructors: false,
        unwind: Some(UnwindRegistrar { register: register_table, deregister: deregister_table }),
        catch: None,
        // No constructors run, so no destructors either.
        at_exit: None,
    };
    let before = exec.stats();
    let mut loaded: Vec<Arc<LoadedModule<'static>>> = Vec::new();
    let mut index = ExportIndex::new();
    let mut symbols = 0;
    let host = host_symbols();
    for bytes in split(data) {
        let modules = Modules { loaded: &loaded, index: &index, fallback: flags & 4 == 0 };
        let failed_before = faults.map(FaultInjector::failures);
        let outcome = LoadedModule::load(exec, bytes, &Chain(TableResolver(&host), modules), &options);
        let kernel_failed = faults.map(FaultInjector::failures) != failed_before;
        match outcome {
            Ok(module) => {
                symbols += module.symbols().len();
                check_unwind_tables(&module);
                index.insert(loaded.len(), &module).expect("a small index has memory");
                loaded.push(Arc::new(module));
            }
            Err(error) => {
                // (A failed call the allocator gets around, such as no memfd for the arena, may
                // be followed by an error of the module's own.)
                let memory = matches!(error, LoadError::Memory(_));
                assert!(!memory || kernel_failed, "a memory error no kernel call gave: {error}");
                symbols += smf_format::fuzzing::formatted(&error).min(1);
            }
        }
    }
    let exports = loaded.iter().map(|m| m.symbols().iter().filter(|s| s.exported).count()).sum::<usize>();
    assert_eq!(index.len(), exports, "the export index holds every export once");
    drop(loaded);
    assert!(REGISTERED.lock().is_empty(), "unwind tables left registered once every module was released");
    let after = exec.stats();
    assert_eq!(
        (after.blocks_live, after.bytes_live),
        (before.blocks_live, before.bytes_live),
        "blocks left behind once every module was released"
    );
    // (Over a failing kernel, pages whose release failed stay open until a trim: checked then.)
    assert!(faults.is_some() || after.pages_open == before.pages_open, "pages left open");
    symbols
}

/// The modules of one input: at most [`MAX_MODULES`] pieces between separators.
fn split(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    let mut pieces = 0;
    core::iter::from_fn(move || {
        let input = rest?;
        pieces += 1;
        let cut = (pieces < MAX_MODULES).then(|| find(input, MODULE_SEPARATOR)).flatten();
        match cut {
            Some(at) => {
                rest = input.get(at + MODULE_SEPARATOR.len()..);
                input.get(..at)
            }
            None => {
                rest = None;
                Some(input)
            }
        }
    })
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
