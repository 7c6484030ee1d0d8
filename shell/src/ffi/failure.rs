//! [`FfiError`]: every way a call through the C ABI fails, typed (each area's own error, or an
//! argument's), with its message (what and where: the argument, the handle, the path, the
//! name) and its code; and the one way a body's outcome reaches C: [`guard`] returns the
//! export's documented sentinel, [`coded`] an `SMF_JIT_*` code ([`FfiError::jit_code`]), each
//! recording the message for `smf_last_error` (written into the thread's buffer, nothing
//! allocated) and stopping panics at the boundary.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use smf_runtime::instantiate::InstantiateError;

use super::error::{set_error, set_error_fmt};
use super::handles::HandleError;
use super::instantiate_codes::{code_of, SMF_JIT_INVALID_ARGUMENT, SMF_JIT_OK};
#[cfg(feature = "rt")]
use super::rt_error::RtError;
use crate::imports::HostError;
use crate::loader::{CallError, ModuleError};

/// Why a call through the C ABI failed.
#[derive(Debug)]
pub(crate) enum FfiError {
    /// A bad argument.
    Arg(ArgError),
    /// Not a live handle of the type wanted.
    Handle(HandleError),
    /// A module did not load.
    Module(ModuleError),
    /// A name or an index the module (or the cache) does not have.
    Lookup(LookupError),
    /// `smf_module_call` could not call.
    Call(CallError),
    /// `smf_host_define` refused the symbol `name`.
    HostDefine {
        /// The symbol's name.
        name: Box<[u8]>,
        /// Why.
        error: HostError,
    },
    /// `smf_host_undefine` of a name that is not defined.
    HostUndefined(Box<[u8]>),
    /// Memory to track this many paths could not be had.
    NoRoomForPaths(usize),
    /// The instantiator's answer, about a name (or a batch) when it concerns one.
    Generics {
        /// What was asked.
        about: About,
        /// The answer.
        error: InstantiateError,
    },
    /// `smf_jit_free` called from inside the instantiator's own compile callback.
    FreeInCallback,
    /// An `rt_*` call refused.
    #[cfg(feature = "rt")]
    Rt(RtError),
    /// The execution manager refused (`rt_exec_manager_*`, `rt_set_jit_backend`).
    #[cfg(feature = "cranelift")]
    ExecManager(crate::exec_manager::ExecManagerError),
    /// `rt_set_jit_backend` or `rt_exec_manager_create` named a backend this build lacks.
    #[cfg(feature = "cranelift")]
    NoBackend(String),
}

/// A bad argument: which one, and what is wrong with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArgError {
    /// The pointer argument named so is NULL.
    Null(&'static str),
    /// The string argument named so is not UTF-8.
    NotUtf8(&'static str),
    /// The path argument is empty.
    EmptyPath,
    /// Item `.1` of the array argument whose items are named `.0` is NULL.
    NullItem(&'static str, usize),
    /// Item `.1` of the array argument whose items are named `.0` is not UTF-8.
    NotUtf8Item(&'static str, usize),
    /// The integer argument named so is negative.
    Negative(&'static str, i64),
    /// `SMF_LOAD_*` flags with bits no flag has.
    UnknownFlags(u32),
}

/// A name or an index that is not there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LookupError {
    /// The module exports no symbol of this name (the module's path, if loaded from a file).
    NoExport(Box<[u8]>, Option<Box<str>>),
    /// The exported symbol of this name is not a function (the module's path, as above).
    NotAFunction(Box<[u8]>, Option<Box<str>>),
    /// The module has no entry point.
    NoEntryPoint,
    /// No symbol at this index of a table of `count`.
    NoSymbol {
        /// The index asked for.
        index: usize,
        /// How many symbols there are.
        count: usize,
    },
    /// No cached module exports this name.
    NotCached(Box<[u8]>),
}

/// What an instantiator's answer is about, for its message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum About {
    /// The call as a whole.
    Nothing,
    /// One name.
    Name(String),
    /// One name, from the module at a path.
    NameFrom(String, PathBuf),
    /// A batch from the module at `path`: how many of how many names failed, and the first.
    Batch {
        /// Names that failed.
        failed: usize,
        /// Names asked for.
        of: usize,
        /// The first failure's index.
        first: usize,
        /// Its name.
        name: String,
        /// The module's path.
        path: PathBuf,
    },
}

/// Bytes from C as text, invalid UTF-8 replaced (written piece by piece: nothing allocated).
pub(crate) struct Lossy<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{FFFD}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ArgError::Null(what) => write!(f, "{what} is NULL"),
            ArgError::NotUtf8(what) => write!(f, "{what} is not UTF-8"),
            ArgError::EmptyPath => f.write_str("path is empty"),
            ArgError::NullItem(what, i) => write!(f, "{what} {i} is NULL"),
            ArgError::NotUtf8Item(what, i) => write!(f, "{what} {i} is not UTF-8"),
            ArgError::Negative(what, value) => write!(f, "{what} {value} is negative"),
            ArgError::UnknownFlags(flags) => write!(f, "unknown load flags {flags:#x}"),
        }
    }
}

/// A module as a message names it: by its path, or as the one loaded from memory.
struct Module<'a>(Option<&'a str>);

impl fmt::Display for Module<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(path) => write!(f, "module {path}"),
            None => f.write_str("the module (loaded from memory)"),
        }
    }
}

/// How an error names `module` (its path, at most [`crate::kept::KEPT_BYTES`] of it).
pub(crate) fn module_path(module: &crate::loader::SharedModule) -> Option<Box<str>> {
    use std::os::unix::ffi::OsStrExt;
    module.path().map(|path| crate::kept::kept_lossy(path.as_os_str().as_bytes()).into_boxed_str())
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::NoExport(name, module) => {
                write!(f, "no exported symbol `{}` in {}", Lossy(name), Module(module.as_deref()))
            }
            LookupError::NotAFunction(name, module) => {
                write!(f, "`{}` is not a function (in {})", Lossy(name), Module(module.as_deref()))
            }
            LookupError::NoEntryPoint => f.write_str("the module has no entry point"),
            LookupError::NoSymbol { index, count } => write!(f, "no symbol {index} (the module has {count})"),
            LookupError::NotCached(name) => write!(f, "no cached module exports `{}`", Lossy(name)),
        }
    }
}

impl fmt::Display for About {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            About::Nothing => Ok(()),
            About::Name(name) => f.write_str(name),
            About::NameFrom(name, path) => write!(f, "{name} (from {})", path.display()),
            About::Batch { failed, of, first, name, path } => write!(
                f,
                "{failed} of {of} names failed; the first, {first}: {name} (from {})",
                path.display()
            ),
        }
    }
}

impl fmt::Display for FfiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FfiError::Arg(e) => e.fmt(f),
            FfiError::Handle(e) => e.fmt(f),
            FfiError::Module(e) => e.fmt(f),
            FfiError::Lookup(e) => e.fmt(f),
            FfiError::Call(e) => e.fmt(f),
            FfiError::HostDefine { name, error } => write!(f, "host symbol `{}`: {error}", Lossy(name)),
            FfiError::HostUndefined(name) => write!(f, "host symbol `{}` is not defined", Lossy(name)),
            FfiError::NoRoomForPaths(n) => write!(f, "out of memory: no room to track {n} paths"),
            FfiError::Generics { about: About::Nothing, error } => error.fmt(f),
            FfiError::Generics { about, error } => write!(f, "{about}: {error}"),
            FfiError::FreeInCallback => f.write_str(
                "smf_jit_free: called from inside the instantiator's own compile callback (refused: free \
                 it after the request returns)",
            ),
            #[cfg(feature = "rt")]
            FfiError::Rt(e) => e.fmt(f),
            #[cfg(feature = "cranelift")]
            FfiError::ExecManager(e) => e.fmt(f),
            #[cfg(feature = "cranelift")]
            FfiError::NoBackend(name) if name == "llvm" => {
                f.write_str("the llvm backend is not built into this library (cranelift is)")
            }
            #[cfg(feature = "cranelift")]
            FfiError::NoBackend(name) => {
                write!(
                    f,
                    "unknown execution backend `{name}` (cranelift, auto; opt levels as cranelift:speed)"
                )
            }
        }
    }
}

impl std::error::Error for FfiError {}

impl FfiError {
    /// Its `SMF_JIT_*` code: the instantiator's answers their own, anything else (a bad
    /// argument, a handle that is not live) `SMF_JIT_INVALID_ARGUMENT`.
    pub(crate) fn jit_code(&self) -> i32 {
        match self {
            FfiError::Generics { error, .. } => code_of(error),
            _ => SMF_JIT_INVALID_ARGUMENT,
        }
    }
}

/// `From` each area's error into the variant that carries it.
macro_rules! carried_by {
    ($($error:ty => $variant:path),* $(,)?) => {$(
        impl From<$error> for FfiError {
            fn from(e: $error) -> Self {
                $variant(e.into())
            }
        }
    )*};
}

carried_by!(ArgError => FfiError::Arg, HandleError => FfiError::Handle, ModuleError => FfiError::Module, LookupError => FfiError::Lookup);
#[cfg(feature = "cranelift")]
carried_by!(crate::exec_manager::ExecManagerError => FfiError::ExecManager);
#[cfg(feature = "rt")]
carried_by!(RtError => FfiError::Rt, smf_runtime::exec::ExecError => FfiError::Rt, smf_runtime::sys::SysError => FfiError::Rt);

impl From<CallError> for FfiError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::NoSuchSymbol(name) => LookupError::NoExport(name.into_bytes().into(), None).into(),
            e => FfiError::Call(e),
        }
    }
}

impl From<InstantiateError> for FfiError {
    fn from(error: InstantiateError) -> Self {
        FfiError::Generics { about: About::Nothing, error }
    }
}

/// Records `error` as this thread's last error (and, in the crate's tests, keeps it for
/// [`take_last`]).
fn record(error: FfiError) {
    set_error_fmt(format_args!("{error}"));
    #[cfg(test)]
    LAST.set(Some(error));
}

#[cfg(test)]
thread_local! {
    /// The failure [`record`] last recorded on this thread.
    static LAST: std::cell::Cell<Option<FfiError>> = const { std::cell::Cell::new(None) };
}

/// The failure recorded last on this thread, typed (tests match on its variant after calling
/// an export, which only hands C a sentinel or a code).
#[cfg(test)]
pub(crate) fn take_last() -> Option<FfiError> {
    LAST.take()
}

/// Runs `body`, turning an `Err` or a panic into `sentinel` with the message recorded.
pub(crate) fn guard<T>(sentinel: T, body: impl FnOnce() -> Result<T, FfiError>) -> T {
    match unwinding_stops_here(body) {
        Some(Ok(value)) => value,
        Some(Err(error)) => {
            record(error);
            sentinel
        }
        None => sentinel,
    }
}

/// Runs `body`, turning its outcome into what it found (0 on failure) and an `SMF_JIT_*` code,
/// the message of a failure (or a panic, `SMF_JIT_INVALID_ARGUMENT`) recorded.
pub(crate) fn coded(body: impl FnOnce() -> Result<usize, FfiError>) -> (usize, i32) {
    match unwinding_stops_here(body) {
        Some(Ok(found)) => (found, SMF_JIT_OK),
        Some(Err(error)) => {
            let code = error.jit_code();
            record(error);
            (0, code)
        }
        None => (0, SMF_JIT_INVALID_ARGUMENT),
    }
}

/// Runs `body`; a panic stops here (no unwinding into C): `None`, with the message recorded.
/// Every `extern "C"` function runs its work through this (or [`guard`], or [`coded`]).
fn unwinding_stops_here<R>(body: impl FnOnce() -> R) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => Some(value),
        Err(_) => {
            set_error("internal error: a panic was caught at the C boundary");
            None
        }
    }
}

/// A non-negative `i64` from C as `usize`; `what` names the argument.
#[cfg_attr(not(feature = "rt"), allow(dead_code))]
pub(crate) fn non_negative(value: i64, what: &'static str) -> Result<usize, ArgError> {
    usize::try_from(value).map_err(|_| ArgError::Negative(what, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::last_error;

    #[test]
    fn a_failure_is_recorded_with_its_message_and_a_panic_stops_at_the_boundary() {
        let sentinel = guard(-1, || Err(ArgError::Negative("size", -3).into()));
        assert_eq!((sentinel, last_error().as_str()), (-1, "size -3 is negative"));
        let (found, code) = coded(|| Err(InstantiateError::NotFound.into()));
        assert_eq!((found, code), (0, super::super::instantiate::SMF_JIT_NOT_FOUND));
        let (found, code) = coded(|| Err(ArgError::Null("name").into()));
        assert_eq!((found, code, last_error().as_str()), (0, SMF_JIT_INVALID_ARGUMENT, "name is NULL"));
        assert_eq!(guard(7, || -> Result<i32, FfiError> { panic!("boom") }), 7);
        assert!(last_error().contains("panic"));
    }

    #[test]
    fn arguments_lookups_and_subjects_keep_their_types_and_messages() {
        assert!(matches!(non_negative(-1, "offset"), Err(ArgError::Negative("offset", -1))));
        assert_eq!(non_negative(5, "offset"), Ok(5));
        let cases: [(FfiError, &str); 12] = [
            (ArgError::NotUtf8("name").into(), "name is not UTF-8"),
            (ArgError::EmptyPath.into(), "path is empty"),
            (ArgError::NullItem("name", 2).into(), "name 2 is NULL"),
            (ArgError::NotUtf8Item("name", 3).into(), "name 3 is not UTF-8"),
            (ArgError::UnknownFlags(8).into(), "unknown load flags 0x8"),
            (
                LookupError::NoExport((*b"f\xff").into(), None).into(),
                "no exported symbol `f\u{FFFD}` in the module (loaded from memory)",
            ),
            (
                LookupError::NotAFunction((*b"data").into(), Some("lib/m.smf".into())).into(),
                "`data` is not a function (in module lib/m.smf)",
            ),
            (LookupError::NoEntryPoint.into(), "the module has no entry point"),
            (LookupError::NoSymbol { index: 9, count: 2 }.into(), "no symbol 9 (the module has 2)"),
            (LookupError::NotCached((*b"g").into()).into(), "no cached module exports `g`"),
            (FfiError::NoRoomForPaths(4), "out of memory: no room to track 4 paths"),
            (
                FfiError::Generics {
                    about: About::Batch {
                        failed: 1,
                        of: 3,
                        first: 2,
                        name: "id$i64".into(),
                        path: "m.smf".into(),
                    },
                    error: InstantiateError::NotFound,
                },
                "1 of 3 names failed; the first, 2: id$i64 (from m.smf): no module offers this instantiation",
            ),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message);
        }
        let call: FfiError = CallError::NoSuchSymbol("h".into()).into();
        assert!(matches!(&call, FfiError::Lookup(LookupError::NoExport(name, _)) if &**name == b"h"));
        let call: FfiError = CallError::TooManyArguments(7).into();
        assert!(matches!(call, FfiError::Call(CallError::TooManyArguments(7))));
        let about = FfiError::Generics {
            about: About::NameFrom("x".into(), "p.smf".into()),
            error: InstantiateError::NotFound,
        };
        assert_eq!(about.to_string(), "x (from p.smf): no module offers this instantiation");
        assert!(matches!(
            about,
            FfiError::Generics { about: About::NameFrom(..), error: InstantiateError::NotFound }
        ));
        let host = FfiError::HostDefine { name: (*b"h").into(), error: HostError::NullAddress };
        assert!(matches!(host, FfiError::HostDefine { error: HostError::NullAddress, .. }));
        assert_eq!(FfiError::HostUndefined((*b"h").into()).to_string(), "host symbol `h` is not defined");
        assert!(FfiError::FreeInCallback.to_string().starts_with("smf_jit_free: called from inside"));
    }
}
