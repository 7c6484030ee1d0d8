//! Loaded modules for std users: reference-counted handles ([`SharedModule`]), the one load
//! door ([`load`] of a [`LoadRequest`]), and registries whose exported symbols resolve the
//! imports of later loads.
//!
//! A [`SharedModule`] is immutable once loaded and lives as long as its last `Arc`: releasing the last
//! reference frees its code and data, and a module that imports from another keeps that one
//! alive. Reloading a changed file gives a new module; the old one stays valid until released.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};

use smf_runtime::load::LoadedModule;

use crate::code_index::{self, IndexedCode};
use crate::debug::{self, Functions, Registration};

mod call;
mod error;
mod registry;
mod request;

pub use call::{CallArg, CallError, MAX_FLOAT_ARGS, MAX_INTEGER_ARGS};
pub use error::ModuleError;
pub use registry::{registry, Libraries, Registry};
pub use request::{load, Linking, LoadRequest, Source};
pub(crate) use request::{load_file, load_together};

/// A loaded module.
///
/// ```
/// use smf::loader::{load, LoadRequest};
///
/// let module = load(&LoadRequest::path("../examples/recursion.smf".as_ref()))?;
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

    /// [`SharedModule::symbol`] of a name whose hash is at hand (a resolver's).
    #[inline]
    pub fn symbol_hashed(&self, name: smf_runtime::load::HashedName<'_>) -> Option<usize> {
        self.loaded.symbol_hashed(name)
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
        Some((function.name_with_nul(&self.loaded)?, offset))
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

impl debug::Describable for SharedModule {
    fn loaded(&self) -> &LoadedModule<'static> {
        &self.loaded
    }

    fn registration(&self) -> &Registration {
        &self._debug
    }
}

impl SharedModule {
    /// A loaded module made shared: registered with debuggers if `debug_info` (as the process
    /// asks), its code found by address from then on.
    pub(super) fn new(
        loaded: LoadedModule<'static>,
        path: Option<PathBuf>,
        debug_info: bool,
    ) -> Arc<SharedModule> {
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
        debug::describe(&module);
        module
    }

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
