//! `smf ldd`: every import of a module and what resolves it, linked as `run` links (the
//! `--lib` modules, the `--native` libraries, the C library and libm), as `ldd -r` shows a
//! program's libraries and undefined symbols. One line per import, in table order:
//! `NAME => WHERE`, where is the `--lib` module or `--native` library as given (or, for a
//! symbol of a library it links, that library's file, found through it), the file of the C
//! library or libm the symbol is in, or `not found` (a weak import that nothing
//! provides loads as null, and says so). Exit 1 if a strong import is not found. The libraries
//! the module names as needed are found and read as files (`needed_files.rs`), never opened:
//! listing a module's imports runs no library's code.

use std::fmt::Write as _;

use smf_format::{Binding, Module, SymbolKind};

use crate::args::LddArgs;
use crate::cli::{for_each_module, report, EXIT_BAD};
use crate::link::{Linked, Linking, Provider};
use crate::names::shown;

/// Runs `smf ldd`; the exit status.
pub(crate) fn command(args: &LddArgs) -> i32 {
    // The libraries are loaded as `verify --load` loads: none of their code runs.
    let linked = match Linked::open(&args.link, Linking::WithoutConstructors) {
        Ok(linked) => linked,
        Err(error) => {
            report(&error);
            return EXIT_BAD;
        }
    };
    let mut missing = false;
    let status = for_each_module(
        &args.files,
        args.dialect.dialect,
        Some(|file| format!("{file}:\n")),
        |_, module, out| {
            let (text, all_found) = imports(module, &linked, args.demangle);
            missing |= !all_found;
            out.write_all(text.as_bytes())
        },
    );
    if missing {
        EXIT_BAD
    } else {
        status
    }
}

/// The lines of `module`'s imports (C++ names demangled if `demangle`), and whether every
/// strong one resolves.
fn imports(module: &Module<'_>, linked: &Linked, demangle: bool) -> (String, bool) {
    let mut out = String::new();
    let mut all_found = true;
    // The libraries it names as needed first, found as a load finds them, read, not opened.
    let needed = linked.needed_by(module);
    match &needed {
        Some(needed) => {
            for library in &needed.libraries {
                let state = match &library.found {
                    Ok(path) => format!("{}", path.display()),
                    Err(reason) => reason.clone(),
                };
                let _ = writeln!(out, "\tneeds {} => {state}", library.name);
            }
        }
        None => {
            for name in module.needed_libraries() {
                let name = String::from_utf8_lossy(name);
                let _ = writeln!(out, "\tneeds {name} => not looked for (--no-needed)");
            }
        }
    }
    for symbol in module.symbols().filter(|s| s.kind == SymbolKind::Import) {
        let place = match linked.provider(symbol.name, needed.as_ref()) {
            Some((Provider::Module(file), _)) => file.to_owned(),
            Some((Provider::Needed(found), _)) => {
                let (name, file) = (found.named, found.file.display());
                if same_library(name, &file.to_string()) {
                    format!("{name} ({file}, needed)")
                } else {
                    format!("{file} (through {name}, needed, which links it)")
                }
            }
            Some((Provider::Native(name), addr)) => match file_of(addr) {
                // The library's own symbol.
                Some(file) if same_library(name, &file) => format!("{name} ({file})"),
                // One of a library it links, which looking it up through it found.
                Some(file) => format!("{file} (through {name}, which links it)"),
                None => name.to_owned(),
            },
            Some((Provider::CLibrary, addr)) => file_of(addr).unwrap_or_else(|| "the C library".to_owned()),
            None if symbol.binding == Binding::Weak => "not found (weak: null)".to_owned(),
            None => {
                all_found = false;
                "not found".to_owned()
            }
        };
        let _ = writeln!(out, "\t{} => {place}", shown(symbol.name, demangle));
    }
    (out, all_found)
}

/// Whether the library given as `name` (a file name or a path) is the file `file`: the same
/// file name once each path is left out.
fn same_library(name: &str, file: &str) -> bool {
    let base = |path: &str| std::path::Path::new(path).file_name().map(std::ffi::OsStr::to_owned);
    base(name) == base(file)
}

/// The file of the shared object holding `addr`, as `dladdr` names it.
fn file_of(addr: usize) -> Option<String> {
    // SAFETY: dladdr reads the loader's tables for any address and fills `info`; a zeroed
    // Dl_info is a valid initial value.
    #[allow(unsafe_code)]
    let info = unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(addr as *const libc::c_void, &mut info) == 0 || info.dli_fname.is_null() {
            return None;
        }
        info
    };
    // SAFETY: dladdr's file name is a NUL-terminated string owned by the loader, valid while
    // the object stays loaded (the libraries are never closed).
    #[allow(unsafe_code)]
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    Some(name.to_string_lossy().into_owned())
}
