//! [`InstantiateError`]: why an instantiation did not happen; [`ModuleUnavailable`]: why the module
//! that should offer a name could not be had, as the caller's module loader reported it;
//! [`CompileFailure`]: why a compile gave no code to install, the compiler's own error
//! ([`CompilerError`]) or the instantiator's refusal of what it returned.
//!
//! The core cannot name the loader's error type (the shell's `ModuleError` carries paths and
//! `std::io::Error`s) nor the compiler's (any type the runtime's compiler chooses), so it keeps
//! each as a shared `dyn Error`: typed all the way, not flattened to text, and given back with
//! [`ModuleUnavailable::downcast_ref`] and [`CompilerError::downcast_ref`]. Shared (an `Arc`)
//! because a `InstantiateError` is cloned: a failed compile's outcome goes to every thread that waited
//! for it, a module's failure to every name of a batch after it.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::error::Error;
use core::fmt;

use super::MAX_CODE;
use crate::exec::ExecError;

/// Why an instantiation did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstantiateError {
    /// Instantiation is disabled, or no module offers the name.
    NotFound,
    /// The request came `limit` instantiations deep.
    DepthExceeded {
        /// The configured limit.
        limit: u32,
    },
    /// The name is already being instantiated by the request's own chain of dependencies;
    /// `cycle` runs from the name back to itself (`a -> b -> a`).
    Circular {
        /// The names around the cycle, first and last the same.
        cycle: Vec<Box<str>>,
    },
    /// The compile gave no code to install: the compiler's own error, or why what it returned
    /// was refused.
    Compile(CompileFailure),
    /// The instantiation limit is reached.
    LimitReached {
        /// The configured limit.
        limit: usize,
    },
    /// The code could not be installed.
    Install(ExecError),
    /// The module that should offer the name could not be had (missing, unreadable,
    /// malformed): not the same as a module that does not offer it. The loader's own error,
    /// which names the module.
    Module(ModuleUnavailable),
    /// The code is installed, but recording it in the module's metadata failed.
    UpdateFailed {
        /// Why.
        message: Box<str>,
    },
    /// Memory for the request (its code, the module's metadata) could not be had.
    OutOfMemory {
        /// The allocation refused, in bytes.
        bytes: usize,
    },
}

impl fmt::Display for InstantiateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstantiateError::NotFound => f.write_str("no module offers this instantiation"),
            InstantiateError::DepthExceeded { limit } => {
                write!(f, "maximum instantiation depth {limit} exceeded")
            }
            InstantiateError::Circular { cycle } => {
                f.write_str("circular instantiation: ")?;
                for (i, name) in cycle.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" -> ")?;
                    }
                    f.write_str(name)?;
                }
                Ok(())
            }
            InstantiateError::Compile(failure) => write!(f, "compile failed: {failure}"),
            InstantiateError::LimitReached { limit } => write!(f, "instantiation limit {limit} reached"),
            InstantiateError::Install(e) => write!(f, "installing the code failed: {e}"),
            InstantiateError::Module(e) => write!(f, "module unavailable: {e}"),
            InstantiateError::UpdateFailed { message } => {
                write!(f, "updating the module's metadata failed: {message}")
            }
            InstantiateError::OutOfMemory { bytes: 0 } => f.write_str("out of memory"),
            InstantiateError::OutOfMemory { bytes } => {
                write!(f, "out of memory ({bytes} bytes could not be had)")
            }
        }
    }
}

impl Error for InstantiateError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            InstantiateError::Module(e) => Some(e.get_ref()),
            InstantiateError::Compile(CompileFailure::Compiler(e)) => Some(e.get_ref()),
            InstantiateError::Install(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a compile gave no code to install ([`InstantiateError::Compile`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompileFailure {
    /// The compiler's own error, kept typed (its message is the failure's).
    Compiler(CompilerError),
    /// The compiler returned no code.
    NoCode,
    /// The compiler returned more than [`MAX_CODE`] bytes of code.
    TooMuchCode {
        /// How many.
        bytes: usize,
    },
    /// The compiler panicked: the name was given up unfinished (what threads waiting for it
    /// get).
    Panicked,
    /// The code is installed, but the type it was asked for as (the shell's `Generics::function`'s
    /// `F`) is not a function pointer type (it is not the size of an address).
    NotAFunctionPointer,
}

impl fmt::Display for CompileFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileFailure::Compiler(e) => fmt::Display::fmt(e, f),
            CompileFailure::NoCode => f.write_str("the compiler returned no code"),
            CompileFailure::TooMuchCode { bytes } => {
                write!(f, "the compiler returned {bytes} bytes of code (at most {MAX_CODE})")
            }
            CompileFailure::Panicked => f.write_str("the compiler panicked"),
            CompileFailure::NotAFunctionPointer => f.write_str("the type is not a function pointer type"),
        }
    }
}

/// Transparent for the compiler's own error: its message and its source are the failure's.
impl Error for CompileFailure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            CompileFailure::Compiler(e) => e.get_ref().source(),
            _ => None,
        }
    }
}

/// An error kept typed and shared: clones share it; two are equal when they are the same
/// failure (one error, shared).
#[derive(Clone)]
struct Shared(Arc<dyn Error + Send + Sync>);

impl Shared {
    fn get_ref(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.0
    }

    fn downcast_ref<E: Error + 'static>(&self) -> Option<&E> {
        let error: &(dyn Error + 'static) = &*self.0;
        error.downcast_ref()
    }
}

impl PartialEq for Shared {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Shared {}

/// The loader's error for a module that could not be had (see the module documentation).
/// Clones share it; two are equal when they are the same failure (one error, shared).
#[derive(Clone, PartialEq, Eq)]
pub struct ModuleUnavailable(Shared);

impl ModuleUnavailable {
    /// Keeps `error` (one allocation of its size).
    pub fn new(error: impl Error + Send + Sync + 'static) -> Self {
        Self(Shared(Arc::new(error)))
    }

    /// The loader's error.
    pub fn get_ref(&self) -> &(dyn Error + Send + Sync + 'static) {
        self.0.get_ref()
    }

    /// The loader's error as its own type `E`, if it is one.
    pub fn downcast_ref<E: Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref()
    }
}

impl fmt::Debug for ModuleUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ModuleUnavailable").field(&self.0 .0).finish()
    }
}

impl fmt::Display for ModuleUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.get_ref(), f)
    }
}

/// The compiler's own error for a name it could not compile (see the module documentation):
/// whatever type the runtime's compiler returns, given back with
/// [`CompilerError::downcast_ref`]. Clones share it; two are equal when they are the same
/// failure (one error, shared).
#[derive(Clone, PartialEq, Eq)]
pub struct CompilerError(Shared);

impl CompilerError {
    /// Keeps `error` (one allocation of its size).
    pub fn new(error: impl Error + Send + Sync + 'static) -> Self {
        Self(Shared(Arc::new(error)))
    }

    /// The compiler's error.
    pub fn get_ref(&self) -> &(dyn Error + Send + Sync + 'static) {
        self.0.get_ref()
    }

    /// The compiler's error as its own type `E`, if it is one.
    pub fn downcast_ref<E: Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref()
    }
}

/// A boxed error (what a compiler returns when its errors are of several types) kept as it is:
/// [`CompilerError::downcast_ref`] gives back the boxed error's own type, not the box.
impl From<Box<dyn Error + Send + Sync>> for CompilerError {
    fn from(error: Box<dyn Error + Send + Sync>) -> Self {
        Self(Shared(Arc::from(error)))
    }
}

impl fmt::Debug for CompilerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CompilerError").field(&self.0 .0).finish()
    }
}

impl fmt::Display for CompilerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.get_ref(), f)
    }
}
