//! How `run`, `verify --load`, `prefetch` and `ldd` link modules, one rule for all four
//! (`--lib`, `--native`, `--no-libc`): an import resolves against the `--lib` modules in order
//! (each loaded against those before it), then the `--native` shared libraries, then the C
//! library and libm, as a native program's imports would. [`Linked::provider`] says which of
//! them resolves a name (what `ldd` prints).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use smf::imports::CLibrary;
use smf::loader::{self, Libraries, LoadRequest, ModuleError, SharedModule};
use smf::native::{SharedLibraries, SharedLibrary};
use smf_runtime::load::{LoadOptions, Resolved, Resolver};

use crate::args::LinkArgs;
use crate::cli::read_module_file;
use crate::error::CommandError;

/// Whether loads run the modules' constructors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Linking {
    /// As a program would load them (`run`, `prefetch`).
    WithConstructors,
    /// Without running any of their code (`verify --load`, `ldd`).
    WithoutConstructors,
}

/// The `--lib` modules and `--native` libraries, in the order they resolve (the C library is
/// not among them: [`Linked`] adds it, and a cache adds it itself).
#[derive(Debug, Default)]
pub(crate) struct Provided {
    /// The `--lib` modules, loaded, with their names as given.
    libraries: Libraries,
    lib_names: Vec<String>,
    /// The `--native` libraries, opened.
    natives: SharedLibraries,
}

impl Resolver for Provided {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        self.libraries.resolve(name).or_else(|| self.natives.resolve(name))
    }

    fn describe(&self, out: &mut dyn std::fmt::Write) -> std::fmt::Result {
        self.libraries.describe(out)?;
        if !self.natives.0.is_empty() {
            out.write_str(", ")?;
            self.natives.describe(out)?;
        }
        Ok(())
    }
}

/// What resolves an import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Provider<'l> {
    /// A `--lib` module, named as given.
    Module(&'l str),
    /// A `--native` library, named as given.
    Native(&'l str),
    /// The C library or libm (the file is the one `dladdr` names for the address).
    CLibrary,
}

/// Everything a command links its modules against.
pub(crate) struct Linked {
    provided: Arc<Provided>,
    /// The C library and libm come last (unless `--no-libc`).
    c_library: bool,
    options: LoadOptions,
}

impl Linked {
    /// Opens the `--native` libraries and loads the `--lib` modules of `args`, in order.
    pub(crate) fn open(args: &LinkArgs, linking: Linking) -> Result<Self, CommandError> {
        let options = match linking {
            Linking::WithConstructors => *smf::process::load_options(),
            Linking::WithoutConstructors => {
                LoadOptions { run_constructors: false, ..*smf::process::load_options() }
            }
        };
        let mut provided = Provided::default();
        for name in &args.natives {
            let library = SharedLibrary::open(name)
                .map_err(|reason| CommandError::Native { name: name.clone(), reason })?;
            provided.natives.0.push(library);
        }
        let c_library = !args.no_libc;
        for lib in &args.libs {
            let module = load_file(lib, &provided, c_library, &options)?;
            provided.libraries.0.push(module);
            provided.lib_names.push(lib.clone());
        }
        Ok(Linked { provided: Arc::new(provided), c_library, options })
    }

    /// Loads `bytes` (from `origin`, if a file) linked against all of it.
    pub(crate) fn load_bytes(
        &self,
        bytes: &[u8],
        origin: Option<PathBuf>,
    ) -> Result<Arc<SharedModule>, ModuleError> {
        load_bytes(bytes, origin, &self.provided, self.c_library, &self.options)
    }

    /// The `--lib` modules, loaded.
    pub(crate) fn modules(&self) -> &[Arc<SharedModule>] {
        &self.provided.libraries.0
    }

    /// The `--lib` modules and `--native` libraries as a resolver a cache can keep.
    pub(crate) fn provided(&self) -> Arc<Provided> {
        Arc::clone(&self.provided)
    }

    /// Whether the C library and libm come last.
    pub(crate) fn c_library(&self) -> bool {
        self.c_library
    }

    /// What resolves `name`, and to which address (`None`: nothing does).
    pub(crate) fn provider(&self, name: &[u8]) -> Option<(Provider<'_>, usize)> {
        let provided = &self.provided;
        let module =
            provided.libraries.0.iter().zip(&provided.lib_names).find_map(|(module, lib)| {
                module.symbol(name).map(|addr| (Provider::Module(lib.as_str()), addr))
            });
        module
            .or_else(|| {
                provided.natives.0.iter().find_map(|library| {
                    library.resolve(name).map(|found| (Provider::Native(library.name()), found.addr))
                })
            })
            .or_else(|| {
                let found = self.c_library.then(|| CLibrary.resolve(name)).flatten()?;
                Some((Provider::CLibrary, found.addr))
            })
    }
}

/// Loads `bytes` linked against `provided`, then the C library if `c_library`.
fn load_bytes(
    bytes: &[u8],
    origin: Option<PathBuf>,
    provided: &Provided,
    c_library: bool,
    options: &LoadOptions,
) -> Result<Arc<SharedModule>, ModuleError> {
    let with_libc = smf_runtime::load::Chain(provided, CLibrary);
    let resolver: &dyn Resolver = if c_library { &with_libc } else { provided };
    let request = LoadRequest::bytes(bytes).resolver_only(resolver).with_options(options);
    match origin.as_deref() {
        Some(origin) => loader::load(&request.named(origin)),
        None => loader::load(&request),
    }
}

/// Reads the module file `path` (`-`: standard input) and loads it as [`load_bytes`] does.
fn load_file(
    path: &str,
    provided: &Provided,
    c_library: bool,
    options: &LoadOptions,
) -> Result<Arc<SharedModule>, CommandError> {
    let bytes = read_module_file(path)?;
    let origin = (path != "-").then(|| Path::new(path).to_path_buf());
    load_bytes(&bytes, origin, provided, c_library, options).map_err(|e| CommandError::Load(Box::new(e)))
}
