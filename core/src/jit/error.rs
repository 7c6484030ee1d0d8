//! [`JitError`]: why an instantiation did not happen; [`ModuleUnavailable`]: why the module
//! that should offer a name could not be had, as the caller's module loader reported it.
//!
//! The core cannot name the loader's error type (the shell's `ModuleError` carries paths and
//! `std::io::Error`s), so it keeps that error as a shared `dyn Error`: typed all the way, not
//! flattened to text, and given back with [`ModuleUnavailable::downcast_ref`]. Shared (an `Arc`)
//! because a `JitError` is cloned: a failed compile's outcome goes to every thread that waited
//! for it, a module's failure to every name of a batch after it.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::error::Error;
use core::fmt;

use crate::exec::ExecError;

/// Why an instantiation did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JitError {
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
    /// The compiler failed, with its message.
    Compile {
        /// What the compiler said (or why its output was refused).
        message: Box<str>,
    },
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

impl fmt::Display for JitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JitError::NotFound => f.write_str("no module offers this instantiation"),
            JitError::DepthExceeded { limit } => write!(f, "maximum instantiation depth {limit} exceeded"),
            JitError::Circular { cycle } => {
                f.write_str("circular instantiation: ")?;
                for (i, name) in cycle.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" -> ")?;
                    }
                    f.write_str(name)?;
                }
                Ok(())
            }
            JitError::Compile { message } => write!(f, "compile failed: {message}"),
            JitError::LimitReached { limit } => write!(f, "instantiation limit {limit} reached"),
            JitError::Install(e) => write!(f, "installing the code failed: {e}"),
            JitError::Module(e) => write!(f, "module unavailable: {e}"),
            JitError::UpdateFailed { message } => {
                write!(f, "updating the module's metadata failed: {message}")
            }
            JitError::OutOfMemory { bytes: 0 } => f.write_str("out of memory"),
            JitError::OutOfMemory { bytes } => write!(f, "out of memory ({bytes} bytes could not be had)"),
        }
    }
}

impl Error for JitError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            JitError::Module(e) => Some(e.get_ref()),
            JitError::Install(e) => Some(e),
            _ => None,
        }
    }
}

/// The loader's error for a module that could not be had (see the module documentation).
/// Clones share it; two are equal when they are the same failure (one error, shared).
#[derive(Clone)]
pub struct ModuleUnavailable(Arc<dyn Error + Send + Sync>);

impl ModuleUnavailable {
    /// Keeps `error` (one allocation of its size).
    pub fn new(error: impl Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }

    /// The loader's error.
    pub fn get_ref(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.0
    }

    /// The loader's error as its own type `E`, if it is one.
    pub fn downcast_ref<E: Error + 'static>(&self) -> Option<&E> {
        let error: &(dyn Error + 'static) = &*self.0;
        error.downcast_ref()
    }
}

impl PartialEq for ModuleUnavailable {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ModuleUnavailable {}

impl fmt::Debug for ModuleUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ModuleUnavailable").field(&self.0).finish()
    }
}

impl fmt::Display for ModuleUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}
