//! Why a load through the shell failed: the file could not be read, it is not a module (from
//! its two ends), or its bytes did not load; with a hint where the cause is a library the load
//! did not link.

use std::path::{Path, PathBuf};

use smf_runtime::file::ReadError;
use smf_runtime::load::LoadError;

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
