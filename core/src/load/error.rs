//! [`LoadError`]: why a load failed, each variant naming what and where.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::reloc::RelocError;
use super::Resolver;
use crate::exec::ExecError;
use crate::kinds::arch_name;
use crate::module::DecodeError;
use crate::{Error, RelocKind};

/// Why a load failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadError {
    /// The file is not a valid module.
    Format(Error),
    /// The module is for another architecture.
    WrongArch {
        /// The module's architecture byte.
        module: u8,
        /// The host's.
        host: u8,
    },
    /// Imports no resolver knows (weak imports resolve to 0 instead): every one of the module's
    /// is looked up before the load fails.
    Unresolved {
        /// The first names (at most 16, in symbol table order, each once).
        names: Vec<String>,
        /// How many distinct names were not resolved (`names` lists the first of them).
        count: usize,
        /// Where the resolver looked ([`super::Resolver::describe`]).
        searched: String,
    },
    /// A relocation refers to a symbol without an address (a type, trait or template).
    NoAddress {
        /// Relocation index.
        relocation: u64,
        /// The symbol's name.
        name: String,
    },
    /// A relocation's result does not fit, or its instruction does not match.
    Relocation {
        /// Relocation index.
        relocation: u64,
        /// Its kind.
        kind: RelocKind,
        /// The symbol's name.
        name: String,
        /// What went wrong.
        error: RelocError,
    },
    /// An entry of a constructor or destructor array does not point into the module's code
    /// once relocated (no relocation, or one to elsewhere): refused before any constructor runs.
    CallOutsideCode {
        /// Which array.
        array: crate::CallArray,
        /// The array section's index.
        section: u32,
        /// The entry's position in the section.
        entry: u64,
        /// The address the entry holds.
        address: u64,
    },
    /// The module needs more memory than a process can address.
    TooLarge,
    /// The loader found the module in a state its validation rules out: a bug in this library
    /// (please report it with the module).
    Internal,
    /// Memory for the module's tables could not be allocated (the process is at its limit).
    OutOfMemory {
        /// The size of the allocation that failed.
        bytes: usize,
    },
    /// The executable allocator refused.
    Memory(ExecError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Format(e) => write!(f, "invalid module: {e}"),
            LoadError::CallOutsideCode { array, section, entry, address } => write!(
                f,
                "section {section}: {} entry {entry} holds {address:#x}, which is not in the module's code",
                array.name()
            ),
            LoadError::WrongArch { module, host } => write!(
                f,
                "wrong architecture: the module is for {} ({module}), this machine is {} ({host})",
                arch_name(*module),
                arch_name(*host)
            ),
            LoadError::Unresolved { names, count, searched } => {
                if let [name] = names.as_slice() {
                    return write!(
                        f,
                        "unresolved import `{name}` (looked in: {searched}); provide it as a host symbol or \
                         through a resolver, or load a module exporting it first"
                    );
                }
                write!(f, "{count} unresolved imports: ")?;
                for (i, name) in names.iter().enumerate() {
                    let separator = if i == 0 { "" } else { ", " };
                    write!(f, "{separator}`{name}`")?;
                }
                if let Some(unlisted) = count.checked_sub(names.len()).filter(|&n| n > 0) {
                    write!(f, " and {unlisted} more")?;
                }
                write!(
                    f,
                    " (looked in: {searched}); provide them as host symbols or through a resolver, or \
                     load modules exporting them first"
                )
            }
            LoadError::NoAddress { relocation, name } => {
                write!(f, "relocation {relocation} refers to `{name}`, which has no address")
            }
            LoadError::Relocation { relocation, kind, name, error } => {
                write!(f, "relocation {relocation} ({} against `{name}`): {error}", kind.name())
            }
            LoadError::TooLarge => f.write_str("module is too large to load"),
            LoadError::Internal => f.write_str(
                "internal error: the loader found the module in a state its validation rules out (please report it, with the module)",
            ),
            LoadError::OutOfMemory { bytes } => {
                write!(f, "out of memory: {bytes} bytes could not be allocated")
            }
            LoadError::Memory(e) => write!(f, "executable memory: {e}"),
        }
    }
}

impl core::error::Error for LoadError {}

impl From<Error> for LoadError {
    fn from(e: Error) -> Self {
        LoadError::Format(e)
    }
}

impl From<ExecError> for LoadError {
    fn from(e: ExecError) -> Self {
        LoadError::Memory(e)
    }
}

impl LoadError {
    /// [`LoadError::Internal`], built out of line (a `LoadError` made in a hot loop and
    /// dropped unused costs its destructor every time).
    #[cold]
    pub(super) fn internal() -> Self {
        LoadError::Internal
    }

    /// [`LoadError::TooLarge`], built out of line as [`LoadError::internal`].
    #[cold]
    pub(super) fn too_large() -> Self {
        LoadError::TooLarge
    }

    /// `count` imports, the first of which are `names`, resolve nowhere `resolver` looks.
    #[cold]
    pub(super) fn unresolved(names: Vec<String>, count: usize, resolver: &dyn Resolver) -> Self {
        let mut searched = String::new();
        if resolver.describe(&mut searched).is_err() {
            searched.clear();
        }
        LoadError::Unresolved { names, count, searched }
    }
}

/// A name from the file, for messages.
pub(super) fn lossy(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// A table decoded for the loader stops at a malformed entry or at the loader's own error.
impl From<DecodeError<LoadError>> for LoadError {
    fn from(e: DecodeError<LoadError>) -> Self {
        match e {
            DecodeError::Format(e) => LoadError::Format(e),
            DecodeError::Stopped(e) => e,
        }
    }
}
