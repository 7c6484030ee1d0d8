//! Loaded modules for std users: reference-counted handles, loading by path, and registries
//! whose exported symbols resolve the imports of later loads.
//!
//! A [`SharedModule`] is immutable once loaded and lives as long as its last `Arc`: releasing the last
//! reference frees its code and data, and a module that imports from another keeps that one
//! alive. Reloading a changed file gives a new module; the old one stays valid until released.

use std::any::Any;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::sync::lock;

use smf_runtime::file::ReadError;
use smf_runtime::load::{ExportIndex, LoadBatch, LoadError, LoadOptions, LoadedModule, Resolved, Resolver};

use crate::code_index::{self, IndexedCode};
use crate::debug::{self, Functions, Registration};
use crate::file::ReadVersion;
use crate::imports::{Imports, LinkOptions};
use crate::process::{exec, load_options};

mod call;
pub use call::{CallArg, CallError, MAX_FLOAT_ARGS, MAX_INTEGER_ARGS};

/// A loaded module.
///
/// ```
/// use smf::imports::LinkOptions;
/// use smf::loader::load_path_with;
///
/// let module = load_path_with("../examples/recursion.smf".as_ref(), &LinkOptions::default())?;
/// // A typed handle that borrows the module: it cannot outlive the code it calls.
/// // SAFETY: C's `long fib(long)`.
/// let fib = unsafe { module.function::<extern "C" fn(i64) -> i64>(b"fib") }.expect("fib");
/// # #[cfg(target_arch = "x86_64")]
/// assert_eq!(fib.get()(20), 6765);
/// # Ok::<(), smf::loader::ModuleError>(())
/// ```
#[derive(Debug)]
pub struct SharedModule {
    /// Its entry among the live modules' code (`code_containing`), removed when it is dropped,
    /// before its memory is freed (fields drop in order).
    _indexed: code_index::Entry,
    /// What it registered with debuggers: held for its `Drop`, which unregisters it before the
    /// module's memory is freed.
    _debug: Registration,
    loaded: LoadedModule<'static>,
    path: Option<PathBuf>,
    /// Its functions by address, built at the first question about an address.
    functions: OnceLock<Functions>,
    /// Its path as a C string, made at the first question from C.
    path_c: OnceLock<Option<std::ffi::CString>>,
}

impl SharedModule {
    /// The loaded image, symbols and metadata.
    pub fn loaded(&self) -> &LoadedModule<'static> {
        &self.loaded
    }

    /// The file it was loaded from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// [`SharedModule::path`] as a NUL-terminated string (for C), valid while the module is.
    pub fn path_c(&self) -> Option<&std::ffi::CStr> {
        use std::os::unix::ffi::OsStrExt as _;
        let path = self.path_c.get_or_init(|| {
            self.path.as_ref().and_then(|p| std::ffi::CString::new(p.as_os_str().as_bytes()).ok())
        });
        path.as_deref()
    }

    /// The address of the exported symbol `name`.
    #[inline]
    pub fn symbol(&self, name: &[u8]) -> Option<usize> {
        self.loaded.symbol(name)
    }

    /// The exported function `name` as the function pointer type `F`, as a handle that
    /// borrows the module (what `libloading::Symbol` is to a library): the code cannot be
    /// released while the handle can call it. `None` if no exported function has that name (or
    /// `F` is not a function pointer type).
    ///
    /// # Safety
    /// `F` is an `extern "C" fn` type whose signature is the function's.
    #[allow(unsafe_code)]
    pub unsafe fn function<F: Copy>(&self, name: &[u8]) -> Option<smf_runtime::exec::Function<'_, F>> {
        // SAFETY: forwarded to our caller's contract.
        unsafe { self.loaded.function::<F>(name) }
    }

    /// The function of this module that `addr` lies in (exported or not), and how far into it
    /// `addr` is: what `dladdr` says of an address, and what crash reports print.
    pub fn function_at(&self, addr: usize) -> Option<(&[u8], usize)> {
        let (name, offset) = self.function_at_with_nul(addr)?;
        Some((name.strip_suffix(&[0]).unwrap_or(name), offset))
    }

    /// [`SharedModule::function_at`], the name with its terminating NUL (for C).
    pub fn function_at_with_nul(&self, addr: usize) -> Option<(&[u8], usize)> {
        let functions = self.functions.get_or_init(|| Functions::of(&self.loaded));
        let (function, offset) = functions.at(addr)?;
        Some((self.loaded.symbols().name_with_nul(function.symbol)?, offset))
    }
}

impl IndexedCode for SharedModule {
    fn symbol(&self, name: &[u8]) -> Option<usize> {
        SharedModule::symbol(self, name)
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

impl SharedModule {
    /// What it loaded, withdrawn first from the index of code and from debuggers (as its
    /// drop would, before the memory is freed).
    fn into_loaded(self) -> LoadedModule<'static> {
        let SharedModule { _indexed, _debug, loaded, .. } = self;
        drop(_indexed);
        drop(_debug);
        loaded
    }
}

/// Releases `modules` together: the memory of those no one else holds is freed in one go
/// ([`LoadedModule::release_together`]: one protection change per contiguous run of pages,
/// not one per module); those someone else holds go when the last holder lets go, as usual.
pub fn release_together(modules: impl IntoIterator<Item = Arc<SharedModule>>) {
    let unheld = modules.into_iter().filter_map(|module| Arc::try_unwrap(module).ok());
    // A failure here is a protection change the kernel refused on pages freed: they stay
    // sealed and empty for `trim` to retry, as when a module's drop fails; no one is left to tell.
    let _ = LoadedModule::release_together(unheld.map(SharedModule::into_loaded));
}

/// The live module whose code (not its stubs, data or read-only data) holds `addr`.
pub fn code_containing(addr: usize) -> Option<Arc<SharedModule>> {
    code_index::containing(addr)?.into_any().downcast().ok()
}

/// Why loading from a path failed.
#[derive(Debug)]
pub enum ModuleError {
    /// The file could not be read.
    Io(PathBuf, std::io::Error),
    /// A large file whose two ends show it is not a module (no layout's magic where that layout
    /// keeps its header): refused before the rest was read.
    NotAModule(PathBuf, smf_format::Error),
    /// The bytes did not load.
    Load(Option<PathBuf>, LoadError),
}

impl ModuleError {
    /// The error for the file at `path` that could not be read: the core's refusal from the
    /// file's ends as such (it says what is wrong with the format, and where), anything else as
    /// the I/O error.
    pub(crate) fn reading(path: &Path, error: std::io::Error) -> Self {
        match crate::file::read_error(&error) {
            Some(ReadError::NotAModule(format)) => ModuleError::NotAModule(path.to_path_buf(), *format),
            _ => ModuleError::Io(path.to_path_buf(), error),
        }
    }
}

impl std::fmt::Display for ModuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModuleError::Io(path, e) => write!(f, "{}: {e}", path.display()),
            ModuleError::NotAModule(path, e) => {
                write!(f, "{}: not a module (from its ends, unread): {e}", path.display())
            }
            ModuleError::Load(Some(path), e) => write!(f, "{}: {e}{}", path.display(), cxx_hint(e)),
            ModuleError::Load(None, e) => write!(f, "{e}{}", cxx_hint(e)),
        }
    }
}

/// What to do when a load's unresolved imports are the C++ runtime's (mangled names,
/// `__cxa_*`, `__gxx_personality_v0`): libstdc++ is not among the libraries a load links by
/// default. Empty otherwise.
fn cxx_hint(error: &LoadError) -> &'static str {
    let LoadError::Unresolved { names, .. } = error else { return "" };
    let cxx = |name: &String| {
        name.starts_with("_Z") || name.starts_with("__cxa_") || name == "__gxx_personality_v0"
    };
    if names.iter().any(cxx) {
        " (C++: give the process libstdc++: `smf run --native libstdc++.so.6`; from C, link the host \
         with -lstdc++ and load with SMF_LOAD_PROCESS_SYMBOLS)"
    } else {
        ""
    }
}

impl std::error::Error for ModuleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ModuleError::Io(_, e) => Some(e),
            ModuleError::NotAModule(_, e) => Some(e),
            ModuleError::Load(_, e) => Some(e),
        }
    }
}

/// Loads `bytes` with the process's executable allocator.
pub fn load_bytes(
    bytes: &[u8],
    resolver: &dyn Resolver,
    path: Option<PathBuf>,
) -> Result<Arc<SharedModule>, ModuleError> {
    load_bytes_with_options(bytes, resolver, path, load_options())
}

/// [`load_bytes`] with `options` instead of the process's (to load without running
/// constructors, as `smf verify --load` does).
pub fn load_bytes_with_options(
    bytes: &[u8],
    resolver: &dyn Resolver,
    path: Option<PathBuf>,
    options: &LoadOptions,
) -> Result<Arc<SharedModule>, ModuleError> {
    load_registered(bytes, resolver, path, options, true)
}

/// Loads `bytes`, registering the module with debuggers as the process asks if `debug_info`.
fn load_registered(
    bytes: &[u8],
    resolver: &dyn Resolver,
    path: Option<PathBuf>,
    options: &LoadOptions,
    debug_info: bool,
) -> Result<Arc<SharedModule>, ModuleError> {
    match LoadedModule::load(exec(), bytes, resolver, options) {
        Ok(loaded) => Ok(share(loaded, path, debug_info)),
        Err(e) => Err(ModuleError::Load(path, e)),
    }
}

/// A loaded module made shared: registered with debuggers if `debug_info` (as the process
/// asks), its code found by address from then on.
fn share(loaded: LoadedModule<'static>, path: Option<PathBuf>, debug_info: bool) -> Arc<SharedModule> {
    let (code, len) = loaded.code();
    let debug = debug::register(&loaded, path.as_deref(), debug_info);
    let module = Arc::new(SharedModule {
        _indexed: code_index::Entry::new((len > 0).then_some(code)),
        _debug: debug,
        loaded,
        path,
        functions: OnceLock::new(),
        path_c: OnceLock::new(),
    });
    let weak: Weak<dyn IndexedCode> = Arc::downgrade(&module) as Weak<SharedModule>;
    module._indexed.index(code + len, weak);
    module
}

/// Reads and loads the module at `path` (read as [`crate::file`] says: never blocking on
/// opening, bounded, never torn).
pub fn load_path(path: &Path, resolver: &dyn Resolver) -> Result<Arc<SharedModule>, ModuleError> {
    load_path_with_options(path, resolver, load_options())
}

/// [`load_path`] with `options` instead of the process's.
pub fn load_path_with_options(
    path: &Path,
    resolver: &dyn Resolver,
    options: &LoadOptions,
) -> Result<Arc<SharedModule>, ModuleError> {
    let load = |bytes: &[u8]| load_bytes_with_options(bytes, resolver, Some(path.to_path_buf()), options);
    crate::file::with_module_bytes(path, load).map_err(|e| ModuleError::reading(path, e))?
}

/// The process's registry: modules loaded through [`load_path_with`] and [`load_bytes_with`]
/// (and the C ABI's `smf_module_load*`) that are not local, in load order.
pub fn registry() -> &'static Registry {
    static REGISTRY: Registry = Registry::new();
    &REGISTRY
}

/// Loads `bytes` as the C ABI's loads do: imports resolve in the order [`crate::imports`]
/// gives (host symbols, the [`registry`], `options.resolver`, the process's symbols if asked
/// for), and the module joins the registry unless `options.local`.
pub fn load_bytes_with(
    bytes: &[u8],
    options: &LinkOptions<'_>,
    path: Option<PathBuf>,
) -> Result<Arc<SharedModule>, ModuleError> {
    let imports = Imports { modules: registry(), options: *options };
    let module = load_registered(bytes, &imports, path, load_options(), options.debug_info)?;
    if !options.local {
        registry().add(&module);
    }
    Ok(module)
}

/// [`load_bytes_with`] of the module file at `path` (read as [`load_path`] reads it).
pub fn load_path_with(path: &Path, options: &LinkOptions<'_>) -> Result<Arc<SharedModule>, ModuleError> {
    load_version_with(path, options).map(|(module, _)| module)
}

/// [`load_path_with`], also returning the file version loaded (for the cache, which compares
/// its identity with the file's at every get).
pub fn load_version_with(
    path: &Path,
    options: &LinkOptions<'_>,
) -> Result<(Arc<SharedModule>, ReadVersion), ModuleError> {
    let limits = crate::file::limits_from_env();
    crate::file::with_module_version(path, limits, |bytes, version| {
        load_bytes_with(bytes, options, Some(path.to_path_buf())).map(|module| (module, version))
    })
    .map_err(|e| ModuleError::reading(path, e))?
}

/// [`load_version_with`] of several files at once: each is read and staged in one
/// [`LoadBatch`] (validated, placed, linked and relocated), then all are sealed together, with
/// one protection change for their code where loading them one by one makes one each. Results
/// come in the order of `paths`; each file loads or fails on its own. Imports resolve as
/// [`load_bytes_with`]'s do, against modules loaded before the batch (the batch's modules join
/// the registry once sealed). If the seal itself fails, each staged file is loaded again on
/// its own.
pub fn load_versions_with(
    paths: &[&Path],
    options: &LinkOptions<'_>,
) -> Vec<Result<(Arc<SharedModule>, ReadVersion), ModuleError>> {
    /// Where a file stands once the batch is staged.
    enum Outcome {
        Failed(ModuleError),
        Staged(ReadVersion),
    }
    let limits = crate::file::limits_from_env();
    let imports = Imports { modules: registry(), options: *options };
    let mut batch = LoadBatch::new(exec());
    let outcomes: Vec<Outcome> = paths
        .iter()
        .map(|&path| {
            let read = crate::file::with_module_version(path, limits, |bytes, version| {
                batch.add(bytes, &imports, load_options()).map(|()| version)
            });
            match read {
                Ok(Ok(version)) => Outcome::Staged(version),
                Ok(Err(e)) => Outcome::Failed(ModuleError::Load(Some(path.to_path_buf()), e)),
                Err(e) => Outcome::Failed(ModuleError::reading(path, e)),
            }
        })
        .collect();
    // The staged modules in the order staged (each loaded, or failed in its constructors);
    // none if the seal failed.
    let mut sealed = batch.seal_each().ok().map(Vec::into_iter);
    outcomes
        .into_iter()
        .zip(paths)
        .map(|(outcome, &path)| match outcome {
            Outcome::Failed(e) => Err(e),
            Outcome::Staged(version) => match sealed.as_mut().and_then(Iterator::next) {
                Some(Err(e)) => Err(ModuleError::Load(Some(path.to_path_buf()), e)),
                Some(Ok(loaded)) => {
                    let module = share(loaded, Some(path.to_path_buf()), options.debug_info);
                    if !options.local {
                        registry().add(&module);
                    }
                    Ok((module, version))
                }
                None => load_version_with(path, options),
            },
        })
        .collect()
}

/// A set of modules whose exports resolve imports; each resolved import keeps its module alive
/// from the importer. Modules are held weakly and resolve in the order they were added (the
/// first one exporting a name wins).
///
/// With a few modules, an import is looked up in each in turn. With more, imports are found
/// through an index of every added module's exports ([`ExportIndex`]), brought up to date at the
/// first resolution after modules were added: a load's imports cost about the same with
/// thousands of modules registered as with a few, and a module is indexed only once something
/// is resolved after it was added. Released modules are forgotten in sweeps that run as the
/// registry doubles, so load/release churn keeps it small.
#[derive(Debug)]
pub struct Registry {
    inner: Mutex<RegistryInner>,
}

#[derive(Debug)]
struct RegistryInner {
    /// Modules by the order they were added (released ones until the next sweep).
    modules: BTreeMap<u64, Weak<SharedModule>>,
    /// The order number of the next module added.
    next: u64,
    /// Modules added since the index was last brought up to date.
    pending: Vec<u64>,
    /// Every exported symbol of the indexed modules, by module order number.
    index: ExportIndex<u64>,
    /// Modules kept after the last sweep; the next runs when there are twice as many.
    swept: usize,
}

/// Fewest entries at which the registry sweeps released modules out.
const SWEEP_FLOOR: usize = 16;

/// Up to this many modules, imports are looked up module by module (cheaper than indexing
/// every export of every module, when there are few modules to ask).
const UNINDEXED_MODULES: usize = 16;

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// An empty registry.
    pub const fn new() -> Self {
        Self {
            inner: Mutex::new(RegistryInner {
                modules: BTreeMap::new(),
                next: 0,
                pending: Vec::new(),
                index: ExportIndex::new(),
                swept: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RegistryInner> {
        lock(&self.inner)
    }

    /// Adds a module (held weakly: the registry never keeps a module alive).
    pub fn add(&self, module: &Arc<SharedModule>) {
        let mut inner = self.lock();
        let order = inner.next;
        inner.next += 1;
        inner.modules.insert(order, Arc::downgrade(module));
        inner.pending.push(order);
        if inner.modules.len() >= 2 * inner.swept.max(SWEEP_FLOOR) {
            inner.sweep();
        }
    }

    /// Live modules, in the order they were added.
    pub fn modules(&self) -> Vec<Arc<SharedModule>> {
        self.lock().modules.values().filter_map(Weak::upgrade).collect()
    }

    /// How many modules the registry still tracks: the live ones, plus released ones not yet
    /// swept out (at most as many again as there were after the last sweep).
    pub fn tracked(&self) -> usize {
        self.lock().modules.len()
    }
}

impl RegistryInner {
    /// Forgets released modules and their index entries.
    fn sweep(&mut self) {
        self.modules.retain(|_, m| m.strong_count() > 0);
        let modules = &self.modules;
        self.pending.retain(|order| modules.contains_key(order));
        self.index.retain(|order| modules.contains_key(order));
        self.swept = self.modules.len();
    }

    /// Indexes the exports of the modules added since the last call; false if the memory
    /// for the index cannot be had (the modules not indexed stay pending).
    fn index_pending(&mut self) -> bool {
        while let Some(&order) = self.pending.last() {
            if let Some(module) = self.modules.get(&order).and_then(Weak::upgrade) {
                if self.index.insert(order, module.loaded()).is_err() {
                    return false;
                }
            }
            self.pending.pop();
        }
        true
    }

    /// The first-added live module exporting `name` (asking each in turn), and the symbol's
    /// address.
    fn scan(&self, name: &[u8]) -> Option<(Arc<SharedModule>, usize)> {
        self.modules.values().filter_map(Weak::upgrade).find_map(|module| {
            let addr = module.symbol(name)?;
            Some((module, addr))
        })
    }

    /// The first-added live module exporting `name`, and the symbol's address.
    fn find(&self, name: &[u8]) -> Option<(Arc<SharedModule>, usize)> {
        let mut found: Option<(u64, Arc<SharedModule>, usize)> = None;
        for order in self.index.candidates(name) {
            if found.as_ref().is_some_and(|(first, ..)| *first < order) {
                continue;
            }
            let Some(module) = self.modules.get(&order).and_then(Weak::upgrade) else { continue };
            if let Some(addr) = module.symbol(name) {
                found = Some((order, module, addr));
            }
        }
        found.map(|(_, module, addr)| (module, addr))
    }
}

impl Resolver for Registry {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        let mut inner = self.lock();
        // Module by module while there are few, or while memory for the index cannot be had.
        let (module, addr) = if inner.modules.len() <= UNINDEXED_MODULES || !inner.index_pending() {
            inner.scan(name)?
        } else {
            inner.find(name)?
        };
        drop(inner);
        let keepalive: Arc<dyn Any + Send + Sync> = module;
        Some(Resolved { addr, keepalive: Some(keepalive) })
    }

    fn describe(&self, out: &mut dyn std::fmt::Write) -> std::fmt::Result {
        let live = self.lock().modules.values().filter(|m| m.strong_count() > 0).count();
        let s = if live == 1 { "" } else { "s" };
        write!(out, "{live} loaded module{s}")
    }
}

/// Modules held strongly, resolving in order (the `smf run --lib` libraries).
#[derive(Debug, Default)]
pub struct Libraries(pub Vec<Arc<SharedModule>>);

impl Resolver for Libraries {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        self.0.iter().find_map(|m| {
            let addr = m.symbol(name)?;
            let keepalive: Arc<dyn Any + Send + Sync> = m.clone();
            Some(Resolved { addr, keepalive: Some(keepalive) })
        })
    }

    fn describe(&self, out: &mut dyn std::fmt::Write) -> std::fmt::Result {
        match self.0.len() {
            1 => out.write_str("1 library"),
            n => write!(out, "{n} libraries"),
        }
    }
}
