//! The one load door: a [`LoadRequest`] (the module's source, how its imports resolve, the
//! loader's options) and [`load`], which every load of the library goes through (the C
//! exports, the cache, the execution manager and the tool alike); `load_together` stages a
//! batch of files and seals them at once for the cache's prefetch.

use std::path::Path;
use std::sync::Arc;

use smf_runtime::load::{LoadBatch, LoadOptions, LoadedModule, Resolver};
use smf_runtime::sys::OpenFile;

use super::{registry, ModuleError, SharedModule};
use crate::file::ReadVersion;
use crate::imports::{Imports, LinkOptions};
use crate::process::{exec, load_options};

/// Where the module of a [`LoadRequest`] comes from.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// The module file at a path, read as [`crate::file`] reads it (never blocking on opening,
    /// bounded, never torn).
    Path(&'a Path),
    /// A module in memory, and the file it stands for in errors and to debuggers, if any.
    Bytes(&'a [u8], Option<&'a Path>),
}

/// How the imports of a [`LoadRequest`] resolve.
#[derive(Clone, Copy)]
pub enum Linking<'a> {
    /// As the C ABI's loads link ([`crate::imports`]): the host symbols, the modules of the
    /// process's [`registry`], then as the options say (a resolver, the process's symbols, the
    /// C library); the module joins the registry unless the options say it is local.
    Process(LinkOptions<'a>),
    /// Against this resolver alone: nothing of the process is asked, and the module joins no
    /// registry (the `smf` tool links its `--lib` modules so).
    Only(&'a dyn Resolver),
}

impl std::fmt::Debug for Linking<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Linking::Process(options) => f.debug_tuple("Process").field(options).finish(),
            Linking::Only(resolver) => {
                let mut text = String::new();
                let _ = resolver.describe(&mut text);
                f.debug_tuple("Only").field(&text).finish()
            }
        }
    }
}

/// One load: the module, how its imports resolve, and the loader's options. Every load of the
/// library goes through [`load`] with one (the C exports, the cache, the execution manager and
/// the tool alike).
///
/// ```
/// use smf::loader::{load, LoadRequest};
///
/// let module = load(&LoadRequest::path("../examples/recursion.smf".as_ref()))?;
/// assert!(module.symbol(b"fib").is_some());
/// # Ok::<(), smf::loader::ModuleError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct LoadRequest<'a> {
    /// The module.
    pub source: Source<'a>,
    /// How its imports resolve.
    pub linking: Linking<'a>,
    /// The loader's options; `None` for the process's ([`crate::process::load_options`]:
    /// unwind tables and destructors handed to the C runtime, exceptions thrown out of
    /// constructors caught).
    pub options: Option<&'a LoadOptions>,
    /// The open module file the module's bytes were read from whole, which code is mapped
    /// from ([`LoadRequest::mapped_from`]); a [`Source::Path`] load maps from the file it reads.
    pub code_file: Option<&'a OpenFile>,
}

impl<'a> LoadRequest<'a> {
    /// The module file at `path`, linked as the C ABI links by default, with the process's
    /// options.
    pub fn path(path: &'a Path) -> Self {
        Self {
            source: Source::Path(path),
            linking: Linking::Process(LinkOptions::default()),
            options: None,
            code_file: None,
        }
    }

    /// The module in `bytes`, standing for no file, linked as the C ABI links by default, with
    /// the process's options.
    pub fn bytes(bytes: &'a [u8]) -> Self {
        Self {
            source: Source::Bytes(bytes, None),
            linking: Linking::Process(LinkOptions::default()),
            options: None,
            code_file: None,
        }
    }

    /// The module in memory stands for the file at `name` (in errors, to debuggers); a module
    /// read from a path is named by it already.
    pub fn named(mut self, name: &'a Path) -> Self {
        if let Source::Bytes(bytes, _) = self.source {
            self.source = Source::Bytes(bytes, Some(name));
        }
        self
    }

    /// The module in memory is the whole content of `file`, read through it (still open, a
    /// regular file left alone since: [`crate::file::with_module_file`] hands out both): the
    /// code's whole pages that nothing patches are mapped from it rather than copied
    /// ([`LoadedModule::load_mapped`], which says what a file changed in place then means).
    pub fn mapped_from(mut self, file: &'a OpenFile) -> Self {
        self.code_file = Some(file);
        self
    }

    /// Linked as the C ABI links, with `options`.
    pub fn linked(mut self, options: LinkOptions<'a>) -> Self {
        self.linking = Linking::Process(options);
        self
    }

    /// Linked against `resolver` alone ([`Linking::Only`]).
    pub fn resolver_only(mut self, resolver: &'a dyn Resolver) -> Self {
        self.linking = Linking::Only(resolver);
        self
    }

    /// With the loader's `options` instead of the process's (to load without running
    /// constructors, as `smf verify --load` does).
    pub fn with_options(mut self, options: &'a LoadOptions) -> Self {
        self.options = Some(options);
        self
    }

    /// The loader's options this request loads with.
    fn load_options(&self) -> &'a LoadOptions {
        match self.options {
            Some(options) => options,
            None => load_options(),
        }
    }

    /// Whether the module is described to debuggers (as the process asks).
    fn debug_info(&self) -> bool {
        match self.linking {
            Linking::Process(options) => options.debug_info,
            Linking::Only(_) => true,
        }
    }

    /// The module, loaded, joins the process's registry (as the request says).
    fn register(&self, module: &Arc<SharedModule>) {
        if let Linking::Process(LinkOptions { local: false, .. }) = self.linking {
            registry().add(module);
        }
    }
}

/// Loads the module `request` names into the process's executable memory: the one door
/// every load of the library goes through.
pub fn load(request: &LoadRequest<'_>) -> Result<Arc<SharedModule>, ModuleError> {
    match request.source {
        Source::Bytes(bytes, name) => load_from(bytes, request.code_file, name, request),
        Source::Path(path) => load_file(path, request).map(|(module, _)| module),
    }
}

/// [`load`] of the module file at `path` (the request's source aside), also returning the
/// version of the file read (for the cache, which compares it with the file's at every get).
pub(crate) fn load_file(
    path: &Path,
    request: &LoadRequest<'_>,
) -> Result<(Arc<SharedModule>, ReadVersion), ModuleError> {
    let limits = crate::file::limits_from_env();
    crate::file::with_module_file(path, limits, |bytes, version, file| {
        load_from(bytes, file, Some(path), request).map(|module| (module, version))
    })
    .map_err(|e| ModuleError::reading(path, e))?
}

/// [`load`] of `bytes`, read from the file `name` if any (the request's source aside), the
/// whole content of `file` (open) if there is one: code is mapped from it where it can be
/// ([`LoadedModule::load_mapped`]).
fn load_from(
    bytes: &[u8],
    file: Option<&OpenFile>,
    name: Option<&Path>,
    request: &LoadRequest<'_>,
) -> Result<Arc<SharedModule>, ModuleError> {
    let load = |resolver: &dyn Resolver| match file {
        Some(file) => LoadedModule::load_mapped(exec(), bytes, file, resolver, request.load_options()),
        None => LoadedModule::load(exec(), bytes, resolver, request.load_options()),
    };
    let loaded = match request.linking {
        Linking::Process(options) => load(&Imports::new(registry(), options)),
        Linking::Only(resolver) => load(resolver),
    };
    let loaded = loaded.map_err(|e| ModuleError::Load(name.map(Path::to_path_buf), e))?;
    let module = SharedModule::new(loaded, name.map(Path::to_path_buf), request.debug_info());
    request.register(&module);
    Ok(module)
}

/// [`load`] of the module files at `paths`, linked as `options` say, at once: each is read and
/// staged in one [`LoadBatch`] (validated, placed, linked and relocated), then all are sealed
/// together, with one protection change for their code where loading them one by one makes
/// one each (the cache's prefetch). Results come in the order of `paths`; each file loads or
/// fails on its own. Imports resolve against modules loaded before the batch (the batch's
/// modules join the registry once sealed). If the seal itself fails, each staged file is
/// loaded again on its own.
pub(crate) fn load_together(
    paths: &[&Path],
    options: &LinkOptions<'_>,
) -> Vec<Result<(Arc<SharedModule>, ReadVersion), ModuleError>> {
    /// Where a file stands once the batch is staged.
    enum Outcome {
        Failed(ModuleError),
        Staged(ReadVersion),
    }
    let limits = crate::file::limits_from_env();
    let mut batch = LoadBatch::new(exec());
    let outcomes: Vec<Outcome> = paths
        .iter()
        .map(|&path| {
            let read = crate::file::with_module_version(path, limits, |bytes, version| {
                // Each module's own lookup order: the libraries one needs are not another's
                // (what it links to stays open through its keepalives).
                let imports = Imports::new(registry(), *options);
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
    let request = |path| LoadRequest::path(path).linked(*options);
    outcomes
        .into_iter()
        .zip(paths)
        .map(|(outcome, &path)| match outcome {
            Outcome::Failed(e) => Err(e),
            Outcome::Staged(version) => match sealed.as_mut().and_then(Iterator::next) {
                Some(Err(e)) => Err(ModuleError::Load(Some(path.to_path_buf()), e)),
                Some(Ok(loaded)) => {
                    let module = SharedModule::new(loaded, Some(path.to_path_buf()), options.debug_info);
                    request(path).register(&module);
                    Ok((module, version))
                }
                None => load_file(path, &request(path)),
            },
        })
        .collect()
}
