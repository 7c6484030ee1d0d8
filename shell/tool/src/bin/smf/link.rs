//! How `run`, `verify --load`, `prefetch` and `ldd` link modules, one rule for all four
//! (`--lib`, `--native`, `--no-libc`): an import resolves against the `--lib` modules in order
//! (each loaded against those before it), then the `--native` shared libraries, then the
//! libraries the module names as needed (unless `--no-needed`), then the C library and libm,
//! as a native program's imports would. [`Linked::provider`] says which of them resolves a
//! name (what `ldd` prints).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use smf::imports::CLibrary;
use smf::loader::{self, Libraries, LoadRequest, ModuleError, SharedModule};
use smf::native::{SharedLibraries, SharedLibrary};
use smf::needed::NeededLibraries;

use crate::needed_files::NeededFiles;
use smf_runtime::load::{LoadOptions, Resolved, Resolver};
use smf_runtime::sys::OpenFile;

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
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Provider<'l> {
    /// A `--lib` module, named as given.
    Module(&'l str),
    /// A `--native` library, named as given.
    Native(&'l str),
    /// A library the module names as needed, and the file defining the symbol.
    Needed(crate::needed_files::FoundIn<'l>),
    /// The C library or libm (the file is the one `dladdr` names for the address).
    CLibrary,
}

/// Everything a command links its modules against.
pub(crate) struct Linked {
    provided: Arc<Provided>,
    /// The C library and libm come last (unless `--no-libc`).
    c_library: bool,
    /// The libraries a module needs are opened (unless `--no-needed`).
    open_needed: bool,
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
        let (c_library, open_needed) = (!args.no_libc, !args.no_needed);
        for lib in &args.libs {
            let module = load_file(lib, &provided, (c_library, open_needed), &options, |_| Ok(()))?;
            provided.libraries.0.push(module);
            provided.lib_names.push(lib.clone());
        }
        Ok(Linked { provided: Arc::new(provided), c_library, open_needed, options })
    }

    /// Loads `bytes` (from `origin`, if a file) linked against all of it.
    pub(crate) fn load_bytes(
        &self,
        bytes: &[u8],
        origin: Option<PathBuf>,
    ) -> Result<Arc<SharedModule>, ModuleError> {
        load_bytes(bytes, None, origin, &self.provided, (self.c_library, self.open_needed), &self.options)
    }

    /// Reads the module file `path` (`-`: standard input), hands its bytes to `check` (which
    /// may refuse it), then loads it linked against all of it, code mapped from the file.
    pub(crate) fn load_file(
        &self,
        path: &str,
        check: impl FnOnce(&[u8]) -> Result<(), CommandError>,
    ) -> Result<Arc<SharedModule>, CommandError> {
        load_file(path, &self.provided, (self.c_library, self.open_needed), &self.options, check)
    }

    /// Whether the libraries a module names as needed are opened.
    pub(crate) fn open_needed(&self) -> bool {
        self.open_needed
    }

    /// The libraries `module` names as needed, found and read, never opened (`None` with
    /// `--no-needed`).
    pub(crate) fn needed_by(&self, module: &smf_format::Module<'_>) -> Option<NeededFiles> {
        self.open_needed.then(|| NeededFiles::read(module.needed_libraries()))
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

    /// What resolves `name`, and to which address (`None`: nothing does; 0 for a library the
    /// module needs, which is read, not opened), the libraries the module needs being `needed`.
    pub(crate) fn provider<'l>(
        &'l self,
        name: &[u8],
        needed: Option<&'l NeededFiles>,
    ) -> Option<(Provider<'l>, usize)> {
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
            .or_else(|| Some((Provider::Needed(needed?.find(name, !self.c_library)?), 0)))
            .or_else(|| {
                let found = self.c_library.then(|| CLibrary.resolve(name)).flatten()?;
                Some((Provider::CLibrary, found.addr))
            })
    }
}

/// `provided`, then the libraries the module being loaded needs (when they are opened), which
/// its description names only if there are some.
struct Needing<'a> {
    provided: &'a Provided,
    needed: Option<&'a NeededLibraries>,
}

impl Resolver for Needing<'_> {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        self.provided.resolve(name).or_else(|| self.needed?.resolve(name))
    }

    fn describe(&self, out: &mut dyn std::fmt::Write) -> std::fmt::Result {
        self.provided.describe(out)?;
        match self.needed {
            Some(needed) if !needed.is_empty() => {
                out.write_str(", ")?;
                needed.describe(out)
            }
            _ => Ok(()),
        }
    }

    fn needs(&self, libraries: &[&[u8]]) {
        if let Some(needed) = self.needed {
            needed.needs(libraries);
        }
    }
}

/// Loads `bytes` linked against `provided`, then the libraries it needs if `open_needed`, then
/// the C library if `c_library`.
fn load_bytes(
    bytes: &[u8],
    file: Option<&OpenFile>,
    origin: Option<PathBuf>,
    provided: &Provided,
    (c_library, open_needed): (bool, bool),
    options: &LoadOptions,
) -> Result<Arc<SharedModule>, ModuleError> {
    // Without the C library, a needed library must not hand out the C library's symbols.
    let needed = if c_library { NeededLibraries::new() } else { NeededLibraries::own_symbols_only() };
    let first = Needing { provided, needed: open_needed.then_some(&needed) };
    let with_libc = smf_runtime::load::Chain(&first, CLibrary);
    let resolver: &dyn Resolver = if c_library { &with_libc } else { &first };
    let request = LoadRequest::bytes(bytes).resolver_only(resolver).with_options(options);
    let request = match file {
        Some(file) => request.mapped_from(file),
        None => request,
    };
    match origin.as_deref() {
        Some(origin) => loader::load(&request.named(origin)),
        None => loader::load(&request),
    }
}

/// Reads the module file `path` (`-`: standard input), hands its bytes to `check`, and loads
/// it as [`load_bytes`] does, its code mapped from the file where it can be.
fn load_file(
    path: &str,
    provided: &Provided,
    linking: (bool, bool),
    options: &LoadOptions,
    check: impl FnOnce(&[u8]) -> Result<(), CommandError>,
) -> Result<Arc<SharedModule>, CommandError> {
    let load = |bytes: &[u8], file: Option<&OpenFile>, origin| {
        check(bytes)?;
        load_bytes(bytes, file, origin, provided, linking, options)
            .map_err(|e| CommandError::Load(Box::new(e)))
    };
    if path == "-" {
        return load(&read_module_file(path)?, None, None);
    }
    // Read as `read_module_file` reads, the file kept open for the load to map code from.
    let origin = Path::new(path).to_path_buf();
    smf::file::with_module_file(Path::new(path), smf::file::limits_from_env(), |bytes, _, file| {
        load(bytes, file, Some(origin))
    })
    .map_err(|error| CommandError::Read { path: path.to_owned(), error })?
}
