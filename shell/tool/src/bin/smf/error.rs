//! [`CommandError`]: why an `smf` command failed on a file, naming it.

use std::fmt;

use smf::loader::{CallError, ModuleError};
use smf::runtime::load::LoadError;

/// Why a command failed on a file, naming it.
#[derive(Debug)]
pub(crate) enum CommandError {
    /// The file could not be read.
    Read {
        /// As given (`-`: standard input).
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// The file is not a valid module.
    Format {
        /// As given.
        file: String,
        /// What is wrong, and where.
        error: smf_format::Error,
    },
    /// A valid module that does not load here (`verify --load`).
    DoesNotLoad {
        /// As given.
        file: String,
        /// Why (boxed: a load error is large, and most commands fail otherwise or not at all).
        error: Box<ModuleError>,
    },
    /// A module (or library) did not load (`run`, `--lib`; the error names the file).
    Load(Box<ModuleError>),
    /// A `--native` library that could not be opened.
    Native {
        /// As given.
        name: String,
        /// Why (dlopen's words).
        reason: String,
    },
    /// `dump -x` of a section the module does not have.
    NoSuchSection {
        /// The module, as given.
        file: String,
        /// The section, as given (name or index).
        section: String,
    },
    /// `dump --disassemble` of code it cannot decode (another architecture).
    Disassemble {
        /// The module, as given.
        file: String,
        /// Why.
        why: String,
    },
    /// A check `verify` could not make (its memory could not be had).
    Unchecked {
        /// The module, as given.
        file: String,
        /// Why.
        why: String,
    },
    /// The call could not be made.
    Call {
        /// The module, as given.
        file: String,
        /// Why.
        error: CallError,
    },
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Read { path, error } => write!(f, "{path}: cannot read: {error}"),
            CommandError::Format { file, error } => write!(f, "{file}: {error}"),
            CommandError::DoesNotLoad { file, error } => match &**error {
                ModuleError::Load(_, LoadError::Unresolved { names, count, searched }) => {
                    write!(f, "{file}: valid, but does not load here: ")?;
                    unresolved(f, None, names, *count, searched)
                }
                other => write!(f, "{file}: valid, but does not load here: {other}"),
            },
            CommandError::Load(error) => match &**error {
                ModuleError::Load(path, LoadError::Unresolved { names, count, searched }) => {
                    unresolved(f, path.as_deref(), names, *count, searched)
                }
                other => other.fmt(f),
            },
            CommandError::Native { name, reason } => write!(f, "--native {name}: cannot open: {reason}"),
            CommandError::NoSuchSection { file, section } => write!(f, "{file}: no section `{section}`"),
            CommandError::Disassemble { file, why } => write!(f, "{file}: {why}"),
            CommandError::Unchecked { file, why } => write!(f, "{file}: not checked: {why}"),
            CommandError::Call { file, error: CallError::NoEntryPoint } => {
                write!(f, "{file}: no entry point (name a SYMBOL)")
            }
            // The thrown type as C++ spells it (the runtime gives its mangled name).
            CommandError::Call {
                file,
                error: CallError::Exception { function, type_name: Some(mangled) },
            } => {
                let shown = crate::names::type_name(mangled);
                let escaped = match function {
                    Some(name) => format!("`{name}`"),
                    None => "the entry point".to_owned(),
                };
                write!(f, "{file}: an exception of type {shown} escaped {escaped} (caught at the call and discarded)")
            }
            CommandError::Call { file, error } => write!(f, "{file}: {error}"),
        }
    }
}

impl std::error::Error for CommandError {}

/// A load's unresolved imports in the tool's terms: the names (C++ ones demangled), where the
/// load looked, and how to give it what defines them.
fn unresolved(
    f: &mut fmt::Formatter<'_>,
    path: Option<&std::path::Path>,
    names: &[String],
    count: usize,
    searched: &str,
) -> fmt::Result {
    if let Some(path) = path {
        write!(f, "{}: ", path.display())?;
    }
    match names {
        [name] if count == 1 => {
            write!(f, "unresolved import `{}`", crate::names::shown(name.as_bytes(), true))?
        }
        _ => {
            write!(f, "{count} unresolved imports: ")?;
            for (i, name) in names.iter().enumerate() {
                let separator = if i == 0 { "" } else { ", " };
                write!(f, "{separator}`{}`", crate::names::shown(name.as_bytes(), true))?;
            }
            if let Some(unlisted) = count.checked_sub(names.len()).filter(|&n| n > 0) {
                write!(f, " and {unlisted} more")?;
            }
        }
    }
    let cxx =
        names.iter().any(|n| n.starts_with("_Z") || n.starts_with("__cxa_") || n == "__gxx_personality_v0");
    write!(f, " (looked in: {searched}); ")?;
    if cxx {
        write!(f, "C++: give it the C++ library with --native libstdc++.so.6; ")?;
    }
    let them = if count == 1 { "it" } else { "them" };
    write!(
        f,
        "give the shared library that defines {them} with --native LIBRARY.so, a module exporting {them} \
         with --lib MODULE.smf, or pack what defines {them} into the module (smf pack ... -lNAME)"
    )
}
