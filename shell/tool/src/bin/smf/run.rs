//! `smf run`: load the libraries and a module (linked as [`crate::link`] says), call a function
//! with integer and floating-point arguments, print its result as `--ret` types it; the entry
//! point runs as the program: its return value is the exit status, nothing printed. The C
//! library's streams are flushed before the result is printed, so what module code printed
//! comes first even through a pipe.

use std::ffi::{c_char, OsString};
use std::os::unix::ffi::OsStrExt as _;

use smf::loader::{CallError, SharedModule};

use crate::args::{CallArg, Returns, RunArgs};
use crate::cli::{out, report, EXIT_BAD, EXIT_OK};
use crate::error::CommandError;
use crate::link::{Linked, Linking};

/// Gives SIGPIPE back its default action, which Rust's start-up set to ignore, so that module
/// code runs as it would in a program of its own: writing to a pipe whose reader has gone ends
/// the process by the signal (`smf run yes.smf | head` stops as `yes | head` does, status 141
/// in a shell), where ignored it made every write fail and the program run on.
pub(crate) fn restore_sigpipe() {
    // SAFETY: sets one signal's disposition to its default, before any module code runs; no
    // handler of this program's is replaced (std only ignored it).
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Runs `smf run`: ends the process ([`exit_with`]), the modules still loaded.
pub(crate) fn command(args: &RunArgs) -> i32 {
    let (result, _loaded) = run_module(args);
    exit_with(result)
}

/// Shows what the call gave and ends the process with its status, as C's `exit` ends a
/// program, the modules still loaded: their destructors run among the exit handlers, after
/// those registered later (the program's own `atexit` handlers), as a program's and its
/// libraries' do.
fn exit_with(result: Result<Outcome, CommandError>) -> ! {
    // Whatever the module printed through the C library reaches stdout before the result.
    // SAFETY: fflush(NULL) flushes every C output stream; no stream is being used concurrently
    // (the call has returned).
    #[allow(unsafe_code)]
    unsafe {
        libc::fflush(std::ptr::null_mut());
    }
    let status = match result {
        Ok(Outcome::Printed(value)) => {
            out(&format!("{value}\n"));
            EXIT_OK
        }
        Ok(Outcome::Nothing) => EXIT_OK,
        Ok(Outcome::Status(status)) => i32::from(status),
        Err(error) => {
            report(&error);
            EXIT_BAD
        }
    };
    let _ = std::io::Write::flush(&mut std::io::stdout());
    std::process::exit(status)
}

/// What a call gave, as `smf run` shows it.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The result as text, printed.
    Printed(String),
    /// Nothing (`--ret void`).
    Nothing,
    /// The exit status (`--ret status`).
    Status(u8),
}

/// The entry point's `argv`: FILE, then the strings after `--`, and the NULL-terminated array
/// of pointers to them that C's `main` receives, both its to change (as C allows `main`, and
/// `getopt` does: it reorders `argv`), valid while this lives.
struct ProgramArgs {
    /// The strings, each NUL-terminated (a command line's strings hold no NUL; one that did
    /// would end there).
    _strings: Vec<Box<[u8]>>,
    /// Pointers into `_strings`, then NULL.
    pointers: Vec<*mut c_char>,
}

impl ProgramArgs {
    fn new(file: &str, rest: &[OsString]) -> Self {
        let mut strings: Vec<Box<[u8]>> = std::iter::once(file.as_bytes())
            .chain(rest.iter().map(|arg| arg.as_bytes()))
            .map(|bytes| bytes.iter().copied().take_while(|&b| b != 0).chain([0]).collect())
            .collect();
        let pointers = strings
            .iter_mut()
            .map(|s| s.as_mut_ptr().cast::<c_char>())
            .chain([std::ptr::null_mut()])
            .collect();
        Self { _strings: strings, pointers }
    }

    /// `argc`, `argv` and `envp` (this process's environment), as integer arguments.
    fn as_call_args(&mut self) -> [CallArg; 3] {
        let argc = self.pointers.len() - 1;
        // SAFETY: `environ` is the C library's, set up before `main`; only its value is read.
        #[allow(unsafe_code)]
        let envp = unsafe { libc::environ };
        [
            CallArg::Int(argc as i64),
            CallArg::Int(self.pointers.as_mut_ptr() as i64),
            CallArg::Int(envp as i64),
        ]
    }
}

/// The libraries and the module a run loaded, kept until the process exits.
type Loaded = (Linked, std::sync::Arc<SharedModule>);

/// Loads the libraries and the module of `args`, calls the function, and returns what it gave,
/// with what it loaded (nothing if it failed before the call).
fn run_module(args: &RunArgs) -> (Result<Outcome, CommandError>, Option<Loaded>) {
    match load_and_call(args) {
        Ok((outcome, loaded)) => (outcome, Some(loaded)),
        Err(error) => (Err(error), None),
    }
}

/// [`run_module`]: the outer error is why the call was not made.
fn load_and_call(args: &RunArgs) -> Result<(Result<Outcome, CommandError>, Loaded), CommandError> {
    let symbol = args.symbol.as_deref();
    // Set before loading: constructors run as the modules load (a crash in one is reported
    // with this context, without a function name: the names are known once all have loaded).
    let called = symbol.map_or_else(|| "the entry point".to_owned(), |s| format!("`{s}`"));
    crate::crash::set_context(format!("smf: {}: {called}", args.file));
    let linked = Linked::open(&args.link, Linking::WithConstructors)?;
    let module = linked.load_file(&args.file, |bytes| {
        match symbol.and_then(|name| not_callable(bytes, name.as_bytes())) {
            Some(error) => Err(CommandError::Call { file: args.file.clone(), error }),
            None => Ok(()),
        }
    })?;
    let mut modules: Vec<&SharedModule> = linked.modules().iter().map(|m| &**m).collect();
    modules.push(&module);
    crate::crash::name_code(&modules);
    // The entry point is called as C's `main(argc, argv, envp)`: a `main` that takes no
    // parameters (Simple's, `long main(void)`) ignores the registers they are passed in.
    let mut program = symbol.is_none().then(|| ProgramArgs::new(&args.file, &args.program_args));
    let call_args = program.as_mut().map_or_else(|| args.args.clone(), |p| p.as_call_args().to_vec());
    // The entry point's result is the program's exit status, as a C `main`'s.
    let ret = args.ret.unwrap_or(if symbol.is_none() { Returns::Status } else { Returns::I64 });
    // SAFETY: the tool's contract is that the function takes the arguments given, of the kinds
    // given (the entry point: `main`'s, or none), and returns what --ret says; `program` holds
    // the strings `argv` points to until after the call.
    #[allow(unsafe_code)]
    let value = unsafe { call(&module, symbol.map(str::as_bytes), &call_args, ret) };
    drop(program);
    Ok((value.map_err(|error| CommandError::Call { file: args.file.clone(), error }), (linked, module)))
}

/// Why `name` cannot be called in the module `bytes` hold, seen before it loads, so that its
/// constructors do not run for a call that cannot be made: no symbol of that name at all, or
/// only symbols that are defined, not local and not functions. `None` otherwise (the call is
/// tried after the load, which decides, as when the bytes do not parse).
fn not_callable(bytes: &[u8], name: &[u8]) -> Option<CallError> {
    let module = smf_format::Module::parse(bytes).ok()?;
    let named: Vec<smf_format::Symbol<'_>> = module.symbols().filter(|s| s.name == name).collect();
    let lossy = || String::from_utf8_lossy(name).into_owned();
    let data = |s: &smf_format::Symbol<'_>| {
        s.binding != smf_format::Binding::Local
            && !matches!(s.kind, smf_format::SymbolKind::Function | smf_format::SymbolKind::Import)
    };
    if named.is_empty() {
        Some(CallError::NoSuchSymbol(lossy()))
    } else if named.iter().all(data) {
        Some(CallError::NotAFunction(lossy()))
    } else {
        None
    }
}

/// Calls `name` (the entry point for `None`) with `args`, its result as `ret` says.
///
/// # Safety
/// The function's parameters are the kinds of `args` and its result is a `ret`.
#[allow(unsafe_code)]
unsafe fn call(
    module: &SharedModule,
    name: Option<&[u8]>,
    args: &[CallArg],
    ret: Returns,
) -> Result<Outcome, CallError> {
    // SAFETY: each call is forwarded to our caller's contract. (A narrower integer is read as
    // the whole register and cut to its width: C leaves the bits above it unspecified.)
    let text = unsafe {
        match ret {
            Returns::F64 => module.call::<f64>(name, args)?.to_string(),
            Returns::F32 => module.call::<f32>(name, args)?.to_string(),
            Returns::Void => {
                module.call::<()>(name, args)?;
                return Ok(Outcome::Nothing);
            }
            Returns::Status => {
                // The low 8 bits, as the kernel keeps of a process's status.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let status = module.call::<i64>(name, args)? as u8;
                return Ok(Outcome::Status(status));
            }
            integer => integer_text(module.call::<i64>(name, args)?, integer),
        }
    };
    Ok(Outcome::Printed(text))
}

/// The result register `bits` as the integer type `ret` names.
fn integer_text(bits: i64, ret: Returns) -> String {
    // Each `as` keeps the low bits of the register, as C's conversion to that type would.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    match ret {
        Returns::I8 => (bits as i8).to_string(),
        Returns::I16 => (bits as i16).to_string(),
        Returns::I32 => (bits as i32).to_string(),
        Returns::U8 => (bits as u8).to_string(),
        Returns::U16 => (bits as u16).to_string(),
        Returns::U32 => (bits as u32).to_string(),
        Returns::U64 => (bits as u64).to_string(),
        Returns::Ptr => format!("{:#x}", bits as u64),
        Returns::I64 | Returns::F32 | Returns::F64 | Returns::Void | Returns::Status => bits.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use smf_format::write::{samples, ModuleBuilder, SymbolSpec};

    use super::*;
    use crate::args::LinkArgs;

    /// A file named for `test` holding `bytes`; its path.
    fn file(test: &str, bytes: &[u8]) -> String {
        let path = std::env::temp_dir().join(format!("smf-run-{}-{test}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    }

    fn run(file: &str, symbol: Option<&str>) -> Result<Outcome, CommandError> {
        let args = RunArgs {
            link: LinkArgs { no_libc: true, ..LinkArgs::default() },
            ret: Some(Returns::I64),
            file: file.to_owned(),
            symbol: symbol.map(str::to_owned),
            args: Vec::new(),
            program_args: Vec::new(),
        };
        run_module(&args).0
    }

    #[test]
    fn a_result_is_printed_as_its_type() {
        assert_eq!(integer_text(0xffff_ffff, Returns::I32), "-1");
        assert_eq!(integer_text(0xffff_ffff, Returns::U32), "4294967295");
        assert_eq!(integer_text(0x1_0000_00ff, Returns::I8), "-1");
        assert_eq!(integer_text(0x1_0000_00ff, Returns::U8), "255");
        assert_eq!(integer_text(-2, Returns::I16), "-2");
        assert_eq!(integer_text(-1, Returns::U64), "18446744073709551615");
        assert_eq!(integer_text(4096, Returns::Ptr), "0x1000");
        assert_eq!(integer_text(-5, Returns::I64), "-5");
    }

    #[test]
    fn each_failure_of_a_run_is_typed_and_names_its_file() {
        let garbage = file("garbage.smf", b"not a module");
        let e = run(&garbage, None).unwrap_err();
        assert!(
            matches!(&e, CommandError::Load(error) if matches!(**error, smf::loader::ModuleError::Load(Some(_), _))),
            "{e}"
        );
        if cfg!(target_arch = "x86_64") {
            let mut b = ModuleBuilder::new(smf_format::Dialect::R96);
            b.add_code(b".text", &samples::RETURN_42);
            b.add_symbol(SymbolSpec::function(b"answer", 0, 6));
            let no_entry = file("no-entry.smf", &b.build().unwrap());
            let e = run(&no_entry, None).unwrap_err();
            assert!(matches!(&e, CommandError::Call { error: CallError::NoEntryPoint, .. }), "{e}");
            assert!(e.to_string().ends_with("no entry point (name a SYMBOL)"), "{e}");
            assert_eq!(run(&no_entry, Some("answer")).unwrap(), Outcome::Printed("42".to_owned()));
            let _ = std::fs::remove_file(no_entry);
        }
        let _ = std::fs::remove_file(garbage);
    }
}
