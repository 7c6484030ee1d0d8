//! How the loader's hot passes report failure. Each pass runs first with [`Quiet`] failures,
//! which carry nothing: the error paths then need no detail (positions, names) kept alive,
//! which keeps the loops tight. Only if that run fails does the pass run again with
//! [`LoadError`] to say precisely what failed and where. Both runs are the same code (generic
//! over [`Failure`]), so they cannot disagree, and a load that succeeds runs each pass once.

use alloc::string::String;

use super::error::lossy;
use super::reloc::RelocError;
use super::symtab::SymbolTable;
use super::{LoadError, Resolver};
use crate::module::Relocation;
use crate::Error;

/// How a failure is reported.
pub(super) trait Failure: From<Error> {
    /// Whether failures carry detail (the second run).
    const DETAILED: bool;
    /// The import `name` resolves nowhere `resolver` looks.
    fn unresolved(name: &[u8], resolver: &dyn Resolver) -> Self;
    /// The relocation refers to a symbol without an address.
    fn no_address(r: &Relocation, names: &SymbolTable) -> Self;
    /// The relocation's value does not fit, or its instruction does not match.
    fn relocation(r: &Relocation, names: &SymbolTable, error: RelocError) -> Self;
    /// Something validation rules out happened anyway: an internal error.
    fn inconsistent() -> Self;
    /// `bytes` of memory could not be allocated.
    fn out_of_memory(bytes: usize) -> Self;
}

/// A failure without detail: the first run of a pass only needs to know that something failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Quiet;

impl From<Error> for Quiet {
    fn from(_: Error) -> Self {
        Quiet
    }
}

impl Failure for Quiet {
    const DETAILED: bool = false;
    fn unresolved(_: &[u8], _: &dyn Resolver) -> Self {
        Quiet
    }
    fn no_address(_: &Relocation, _: &SymbolTable) -> Self {
        Quiet
    }
    fn relocation(_: &Relocation, _: &SymbolTable, _: RelocError) -> Self {
        Quiet
    }
    fn inconsistent() -> Self {
        Quiet
    }
    fn out_of_memory(_: usize) -> Self {
        Quiet
    }
}

fn name_of(r: &Relocation, names: &SymbolTable) -> String {
    names.name(r.symbol as usize).map_or_else(String::new, lossy)
}

impl Failure for LoadError {
    const DETAILED: bool = true;
    fn unresolved(name: &[u8], resolver: &dyn Resolver) -> Self {
        let mut searched = String::new();
        if resolver.describe(&mut searched).is_err() {
            searched.clear();
        }
        LoadError::Unresolved { name: lossy(name), searched }
    }
    fn no_address(r: &Relocation, names: &SymbolTable) -> Self {
        LoadError::NoAddress { relocation: r.index, name: name_of(r, names) }
    }
    fn relocation(r: &Relocation, names: &SymbolTable, error: RelocError) -> Self {
        LoadError::Relocation { relocation: r.index, kind: r.kind, name: name_of(r, names), error }
    }
    fn inconsistent() -> Self {
        LoadError::Internal
    }
    fn out_of_memory(bytes: usize) -> Self {
        LoadError::OutOfMemory { bytes }
    }
}
