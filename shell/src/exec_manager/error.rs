//! [`ExecManagerError`]: every way compiling or executing through an [`super::ExecManager`]
//! fails, each naming what it is about (the function, the line, the name called).

use std::fmt;

use crate::loader::{CallError, ModuleError};

/// Why an execution manager refused a call.
#[derive(Debug)]
#[non_exhaustive]
pub enum ExecManagerError {
    /// The host's instruction set could not be set up for Cranelift.
    Host(String),
    /// CLIF text that does not parse: the line and Cranelift's message.
    Parse {
        /// 1-based line of the text.
        line: usize,
        /// What the reader said.
        message: String,
    },
    /// A function without a name this manager can export (neither `%name` nor a user name the
    /// caller's name table gives).
    Unnamed(String),
    /// Two functions of one batch define the same name.
    DefinedTwice(String),
    /// Cranelift refused the function: the verifier's findings, each with its place, or the
    /// code generator's error.
    Compile {
        /// The function.
        function: String,
        /// What Cranelift said.
        message: String,
    },
    /// The function is too large to compile in bounded time: its blocks (its branches' edges
    /// counted as blocks) times its values
    /// exceed [`ExecManager::MOST_BLOCKS_TIMES_VALUES`](super::ExecManager::MOST_BLOCKS_TIMES_VALUES)
    /// (what register allocation costs grows with that product).
    TooLarge {
        /// The function.
        function: String,
        /// Blocks in its layout and edges of its branches.
        blocks: u64,
        /// Values its blocks define (parameters and results).
        values: u64,
    },
    /// The function calls something this loader cannot link: a relocation kind it has no SMF
    /// equivalent for, or a name it cannot give (a library call with no C symbol).
    Link {
        /// The function.
        function: String,
        /// What cannot be linked.
        what: String,
    },
    /// The process has not the room compiling this input would take: Cranelift ends the
    /// process when an allocation fails, so the room is checked first
    /// (`exec_manager/room.rs`); nothing was compiled.
    OutOfMemory {
        /// Bytes of address space the input would take, by its size.
        bytes: usize,
    },
    /// The compiled batch did not load (an import nothing resolves, an allocation refused).
    Load(ModuleError),
    /// No front end is registered for `compile_source` and `compile_file`.
    NoFrontEnd,
    /// The registered front end refused the source.
    FrontEnd(String),
    /// A source file that could not be read.
    Io(std::path::PathBuf, std::io::Error),
    /// `execute` of a name no function of this manager has.
    UnknownFunction(String),
    /// `execute` with a number of arguments the function's signature does not take.
    Arity {
        /// The function.
        function: String,
        /// Parameters in its signature.
        expected: usize,
        /// Arguments given.
        given: usize,
    },
    /// `execute` of a function whose signature is not integers in and at most one integer out.
    Signature {
        /// The function.
        function: String,
        /// Its signature, as CLIF writes it.
        signature: String,
    },
    /// The call itself was refused (more than six arguments).
    Call(CallError),
}

impl fmt::Display for ExecManagerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecManagerError::Host(why) => write!(f, "cannot compile for this host: {why}"),
            ExecManagerError::Parse { line, message } => write!(f, "CLIF line {line}: {message}"),
            ExecManagerError::Unnamed(name) => {
                write!(
                    f,
                    "function {name} has no name to export (name it %NAME or give its user name a name)"
                )
            }
            ExecManagerError::DefinedTwice(name) => {
                write!(f, "function {name} is defined twice in one batch")
            }
            ExecManagerError::Compile { function, message } => write!(f, "function {function}: {message}"),
            ExecManagerError::TooLarge { function, blocks, values } => write!(
                f,
                "function {function} is too large to compile: {blocks} blocks x {values} values, at most {} (split it)",
                super::ExecManager::MOST_BLOCKS_TIMES_VALUES
            ),
            ExecManagerError::Link { function, what } => write!(f, "function {function}: cannot link {what}"),
            ExecManagerError::OutOfMemory { bytes } => {
                write!(f, "out of memory: compiling this input takes about {bytes} bytes of address space, which the process has not")
            }
            ExecManagerError::Load(e) => write!(f, "the compiled code did not load: {e}"),
            ExecManagerError::NoFrontEnd => {
                f.write_str("no front end is registered to compile source (the runtime registers one: smf::exec_manager::set_default_front_end, or ExecManager::set_front_end for one manager)")
            }
            ExecManagerError::FrontEnd(why) => write!(f, "the front end refused the source: {why}"),
            ExecManagerError::Io(path, e) => write!(f, "{}: {e}", path.display()),
            ExecManagerError::UnknownFunction(name) => write!(f, "no function {name} was compiled"),
            ExecManagerError::Arity { function, expected, given } => {
                let plural = if *expected == 1 { "" } else { "s" };
                write!(f, "function {function} takes {expected} argument{plural}, {given} given")
            }
            ExecManagerError::Signature { function, signature } => write!(
                f,
                "function {function} {signature} cannot be executed: integers in and at most one integer out"
            ),
            ExecManagerError::Call(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ExecManagerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ExecManagerError::Load(e) => Some(e),
            ExecManagerError::Io(_, e) => Some(e),
            _ => None,
        }
    }
}
