//! Loaded modules for std users: reference-counted handles, loading by path, and registries
//! whose exported symbols resolve the imports of later loads.
//!
//! A [`Module`] is immutable once loaded and lives as long as its last `Arc`: releasing the last
//! reference frees its code and data, and a module that imports from another keeps that one
//! alive. Reloading a changed file gives a new module; the old one stays valid until released.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use smf_core::load::{LoadError, LoadedModule, Resolved, Resolver};

use crate::runtime::{exec, load_options};

/// A loaded module.
#[derive(Debug)]
pub struct Module {
    loaded: LoadedModule<'static>,
    path: Option<PathBuf>,
}

impl Module {
    /// The loaded image, symbols and metadata.
    pub fn loaded(&self) -> &LoadedModule<'static> {
        &self.loaded
    }

    /// The file it was loaded from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The address of the exported symbol `name`.
    #[inline]
    pub fn symbol(&self, name: &[u8]) -> Option<usize> {
        self.loaded.symbol(name)
    }
}

/// Why loading from a path failed.
#[derive(Debug)]
pub enum ModuleError {
    /// The file could not be read.
    Io(PathBuf, std::io::Error),
    /// The bytes did not load.
    Load(Option<PathBuf>, LoadError),
}

impl std::fmt::Display for ModuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModuleError::Io(path, e) => write!(f, "{}: {e}", path.display()),
            ModuleError::Load(Some(path), e) => write!(f, "{}: {e}", path.display()),
            ModuleError::Load(None, e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ModuleError {}

/// Loads `bytes` with the process's executable allocator.
pub fn load_bytes(
    bytes: &[u8],
    resolver: &dyn Resolver,
    path: Option<PathBuf>,
) -> Result<Arc<Module>, ModuleError> {
    match LoadedModule::load(exec(), bytes, resolver, load_options()) {
        Ok(loaded) => Ok(Arc::new(Module { loaded, path })),
        Err(e) => Err(ModuleError::Load(path, e)),
    }
}

/// Reads and loads the module at `path`.
pub fn load_path(path: &Path, resolver: &dyn Resolver) -> Result<Arc<Module>, ModuleError> {
    with_file(path, |bytes| load_bytes(bytes, resolver, Some(path.to_path_buf())))
        .map_err(|e| ModuleError::Io(path.to_path_buf(), e))?
}

/// Files up to this size are read into a buffer kept per thread for the next load (a loaded
/// module copies everything it needs out of the file, so the buffer is free again at once).
const KEPT_BUFFER: usize = 16 << 20;

thread_local! {
    static FILE_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The most bytes read from a file fstat cannot size (a pipe, a terminal, a character device):
/// a stream without end fails with an error instead of exhausting memory.
pub const STREAM_LIMIT: usize = 256 << 20;

/// Runs `f` on the whole file at `path`. A regular file is read with the fewest syscalls (open,
/// fstat, one read of the size fstat gave, close) into a per-thread buffer: no allocation,
/// zeroing or page faults per load once the buffer has grown. A file that changes size
/// meanwhile is read as far as fstat said (a truncated module then fails validation with a
/// precise error). Anything else (a pipe, `/dev/stdin`, a process substitution) is read to its
/// end, up to [`STREAM_LIMIT`] bytes.
fn with_file<R>(path: &Path, f: impl FnOnce(&[u8]) -> R) -> std::io::Result<R> {
    let mut file = std::fs::File::open(path)?;
    let metadata = file.metadata()?;
    // Taken out while in use: a re-entrant call (a resolver loading another module) finds the
    // slot empty and gets a buffer of its own.
    let mut buffer = FILE_BUFFER.take();
    let filled = if metadata.is_file() {
        read_sized(&mut file, usize::try_from(metadata.len()).unwrap_or(usize::MAX), &mut buffer)?
    } else {
        read_stream(&mut file, &mut buffer)?
    };
    drop(file);
    let result = f(&buffer[..filled]);
    if buffer.capacity() <= KEPT_BUFFER {
        let kept = FILE_BUFFER.take();
        FILE_BUFFER.set(if kept.capacity() < buffer.capacity() { buffer } else { kept });
    }
    Ok(result)
}

/// Reads up to `len` bytes (the size fstat gave) into `buffer`; returns how many it read.
fn read_sized(file: &mut std::fs::File, len: usize, buffer: &mut Vec<u8>) -> std::io::Result<usize> {
    use std::io::Read;
    // A file too large for memory is an error, never an abort. Only bytes past the buffer's old
    // length are zeroed; the read overwrites the rest.
    let growth = len.saturating_sub(buffer.len());
    buffer.try_reserve_exact(growth).map_err(|_| std::io::Error::from(std::io::ErrorKind::OutOfMemory))?;
    buffer.resize(len, 0);
    let mut filled = 0;
    while filled < len {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads a stream to its end into `buffer`, refusing one longer than [`STREAM_LIMIT`]; returns
/// its length.
fn read_stream(file: &mut std::fs::File, buffer: &mut Vec<u8>) -> std::io::Result<usize> {
    use std::io::Read;
    buffer.clear();
    // One byte past the limit tells a stream at the limit from a longer one.
    let limit = u64::try_from(STREAM_LIMIT).unwrap_or(u64::MAX).saturating_add(1);
    file.take(limit).read_to_end(buffer)?;
    if buffer.len() > STREAM_LIMIT {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("a stream of more than {} MiB is not a module", STREAM_LIMIT >> 20),
        ));
    }
    Ok(buffer.len())
}

/// A set of modules whose exports resolve imports; each resolved import keeps its module alive
/// from the importer.
#[derive(Debug, Default)]
pub struct Registry {
    modules: Mutex<Vec<Weak<Module>>>,
}

impl Registry {
    /// An empty registry.
    pub const fn new() -> Self {
        Self { modules: Mutex::new(Vec::new()) }
    }

    /// Adds a module (held weakly: the registry never keeps a module alive).
    pub fn add(&self, module: &Arc<Module>) {
        let mut modules = self.modules.lock().unwrap_or_else(PoisonError::into_inner);
        modules.retain(|m| m.strong_count() > 0);
        modules.push(Arc::downgrade(module));
    }

    /// Live modules, in the order they were added.
    pub fn modules(&self) -> Vec<Arc<Module>> {
        self.modules.lock().unwrap_or_else(PoisonError::into_inner).iter().filter_map(Weak::upgrade).collect()
    }
}

impl Resolver for Registry {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        let modules = self.modules.lock().unwrap_or_else(PoisonError::into_inner);
        modules.iter().filter_map(Weak::upgrade).find_map(|m| {
            let addr = m.symbol(name)?;
            let keepalive: Arc<dyn Any + Send + Sync> = m;
            Some(Resolved { addr, keepalive: Some(keepalive) })
        })
    }
}

/// Modules held strongly, resolving in order (the `smf run --lib` libraries).
#[derive(Debug, Default)]
pub struct Libraries(pub Vec<Arc<Module>>);

impl Resolver for Libraries {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        self.0.iter().find_map(|m| {
            let addr = m.symbol(name)?;
            let keepalive: Arc<dyn Any + Send + Sync> = m.clone();
            Some(Resolved { addr, keepalive: Some(keepalive) })
        })
    }
}
