//! The `smf` tool's commands over their typed options (`args.rs`): `inspect`, `symbols`,
//! `verify`, `run`, `prefetch` (`pack` is `pack.rs`). Each writes its result to stdout and
//! its problems to stderr, one line each, and returns the exit status: 0 ok, 1 a bad module or
//! file (usage errors, 2, are clap's).

use std::io::Write as _;
use std::path::Path;

use smf_core::{Dialect, Module, ParseOptions};

use crate::args::{Command, InspectArgs, PrefetchArgs, Returns, RunArgs, SymbolsArgs, VerifyArgs};
use crate::error::CommandError;
use crate::inspect;

/// Exit status for success.
pub(crate) const EXIT_OK: i32 = 0;
/// Exit status when a module or file is bad.
pub(crate) const EXIT_BAD: i32 = 1;

/// Runs `command`; the exit status.
pub(crate) fn run(command: Command) -> i32 {
    match command {
        Command::Inspect(args) => inspect_command(&args),
        Command::Symbols(args) => symbols_command(&args),
        Command::Verify(args) => verify_command(&args),
        Command::Pack(args) => crate::pack::run(&args),
        Command::Run(args) => run_command(&args),
        Command::Prefetch(args) => prefetch_command(&args),
    }
}

fn out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn err(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Reads the module file `path` (`-`: standard input, read as any stream is: to its end,
/// within the size limit), or says why not.
pub(crate) fn read_module_file(path: &str) -> Result<Vec<u8>, CommandError> {
    let file = if path == "-" { Path::new("/dev/stdin") } else { Path::new(path) };
    smf::file::read(file).map_err(|error| CommandError::Read { path: path.to_owned(), error })
}

/// `bytes` parsed as a module (with `options`), or the format error naming `file`.
fn parse<'b>(file: &str, bytes: &'b [u8], options: &ParseOptions) -> Result<Module<'b>, CommandError> {
    Module::parse_with(bytes, options).map_err(|error| CommandError::Format { file: file.to_owned(), error })
}

fn parse_options_for(dialect: Option<Dialect>) -> ParseOptions {
    ParseOptions { dialect, ..ParseOptions::default() }
}

fn inspect_command(args: &InspectArgs) -> i32 {
    let file = &args.file;
    let bytes = match read_module_file(file) {
        Ok(b) => b,
        Err(message) => {
            err(&format!("smf: {message}\n"));
            return EXIT_BAD;
        }
    };
    let parts =
        inspect::Parts { sections: args.sections, symbols: args.symbols, relocations: args.relocations };
    match parse(file, &bytes, &parse_options_for(args.dialect.dialect)) {
        Ok(module) => {
            if args.json {
                out(&(inspect::report_json_parts(&module, parts).to_string() + "\n"));
            } else {
                out(&inspect::report_text_parts(&module, file, parts));
            }
            EXIT_OK
        }
        Err(e) => {
            err(&format!("smf: {e}\n"));
            EXIT_BAD
        }
    }
}

fn symbols_command(args: &SymbolsArgs) -> i32 {
    use inspect::SymbolFilter;
    let filter = match &args.filter {
        f if f.defined => SymbolFilter::Defined,
        f if f.undefined => SymbolFilter::Undefined,
        f if f.exported => SymbolFilter::Exported,
        _ => SymbolFilter::All,
    };
    let file = &args.file;
    let parsed = read_module_file(file).and_then(|bytes| {
        parse(file, &bytes, &parse_options_for(args.dialect.dialect))
            .map(|module| inspect::symbol_listing(&module, filter))
    });
    match parsed {
        Ok(listing) => {
            out(&listing);
            EXIT_OK
        }
        Err(message) => {
            err(&format!("smf: {message}\n"));
            EXIT_BAD
        }
    }
}

fn verify_command(args: &VerifyArgs) -> i32 {
    use smf::imports::CLibrary;
    use smf::loader::{self, Libraries};
    use smf_core::load::Chain;
    // --load [--lib FILE]...: also load each module here, as `smf run` would link it (without
    // running any code: constructors are not run).
    let mut libraries = Libraries::default();
    for lib in &args.libs {
        match loader::load_path_with_options(Path::new(lib), &Chain(&libraries, CLibrary), &verify_options())
        {
            Ok(module) => libraries.0.push(module),
            Err(e) => {
                err(&format!("smf: --lib {e}\n"));
                return EXIT_BAD;
            }
        }
    }
    let mut status = EXIT_OK;
    for file in &args.files {
        if let Err(message) = verify_file(file, args, &libraries) {
            err(&format!("{message}\n"));
            status = EXIT_BAD;
        }
    }
    status
}

/// Verifies `file` as `args` say (loading it against `libraries` with `--load`).
fn verify_file(
    file: &str,
    args: &VerifyArgs,
    libraries: &smf::loader::Libraries,
) -> Result<(), CommandError> {
    use smf::imports::CLibrary;
    use smf_core::load::Chain;
    let bytes = read_module_file(file)?;
    parse(file, &bytes, &parse_options_for(args.dialect.dialect))?;
    if args.load {
        let resolver = Chain(libraries, CLibrary);
        smf::loader::load_bytes_with_options(&bytes, &resolver, None, &verify_options())
            .map_err(|error| CommandError::DoesNotLoad { file: file.to_owned(), error: Box::new(error) })?;
    }
    Ok(())
}

/// An integer argument: decimal (optionally negative) or `0x` hexadecimal.
fn parse_int(text: &str) -> Result<i64, CommandError> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let magnitude = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => digits.parse::<u64>(),
    }
    .map_err(|_| CommandError::NotAnInteger(text.to_owned()))?;
    let value = if negative { 0i128 - i128::from(magnitude) } else { i128::from(magnitude) };
    // Accept the full u64 range too (as its two's-complement i64).
    i64::try_from(value)
        .or_else(|_| u64::try_from(value).map(|v| v as i64))
        .map_err(|_| CommandError::OutOfRange(text.to_owned()))
}

fn prefetch_command(args: &PrefetchArgs) -> i32 {
    use std::io::IsTerminal;
    use std::path::PathBuf;
    let threads =
        args.threads.map_or_else(|| std::thread::available_parallelism().map_or(1, usize::from), usize::from);
    let paths: Vec<PathBuf> = args.files.iter().map(PathBuf::from).collect();
    let cache = smf::cache::ModuleCache::new(0, 0);
    // A progress line on a terminal, when there are enough files for it to matter.
    let progress = paths.len() >= 50 && std::io::stderr().is_terminal();
    let total = paths.len();
    let report = |done: usize| {
        if progress && (done % 25 == 0 || done == total) {
            eprint!("\rsmf prefetch: {done}/{total}");
        }
    };
    let started = std::time::Instant::now();
    let failures = cache.prefetch_reporting(&paths, threads, &report);
    let elapsed = started.elapsed();
    if progress {
        eprintln!();
    }
    for (_, error) in &failures {
        err(&format!("smf: {error}\n")); // the error names its file
    }
    let loaded = total - failures.len();
    out(&format!(
        "{loaded} modules loaded, {} failed, in {:.1} ms on {threads} threads\n",
        failures.len(),
        elapsed.as_secs_f64() * 1000.0
    ));
    if failures.is_empty() {
        EXIT_OK
    } else {
        EXIT_BAD
    }
}

/// What `smf run` is calling (`"smf: FILE: `SYMBOL`"`), for a crash report made from a signal
/// handler (which may read it, being set before the call and never changed after).
static CRASH_CONTEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// What `smf run` is calling, if it is calling into a module.
pub(crate) fn crash_context() -> Option<&'static str> {
    CRASH_CONTEXT.get().map(String::as_str)
}

fn run_command(args: &RunArgs) -> i32 {
    match run_module(args) {
        Ok(value) => {
            out(&format!("{value}\n"));
            EXIT_OK
        }
        Err(message) => {
            err(&format!("smf: {message}\n"));
            EXIT_BAD
        }
    }
}

/// Loads the libraries and the module of `args`, calls the function, and returns its result
/// as text.
/// How `verify --load` loads: as `run` would, but without running constructors.
fn verify_options() -> smf_core::load::LoadOptions {
    smf_core::load::LoadOptions { run_constructors: false, ..*smf::runtime::load_options() }
}

fn run_module(args: &RunArgs) -> Result<String, CommandError> {
    use smf::imports::CLibrary;
    use smf::loader::{self, Libraries};
    use smf::native::{SharedLibraries, SharedLibrary};
    use smf_core::load::{Chain, Resolver};
    let file = &args.file;
    let symbol = args.symbol.as_deref();
    let values = args.args.iter().map(|a| parse_int(a)).collect::<Result<Vec<_>, _>>()?;
    // What `--lib` libraries do not provide links against the C library (the process's
    // symbols: this program's libc), as a native program's imports would.
    let mut natives = SharedLibraries::default();
    for name in &args.natives {
        let library = SharedLibrary::open(name)
            .map_err(|reason| CommandError::Native { name: name.clone(), reason })?;
        natives.0.push(library);
    }
    let mut loaded = Libraries::default();
    let load = |path: &str, libraries: &Libraries| {
        let with_natives = Chain(libraries, &natives);
        let linked: &dyn Resolver = if natives.0.is_empty() { libraries } else { &with_natives };
        let resolver: &dyn Resolver = if args.no_libc { linked } else { &Chain(linked, CLibrary) };
        let bytes = read_module_file(path)?;
        let origin = (path != "-").then(|| Path::new(path).to_path_buf());
        loader::load_bytes(&bytes, resolver, origin).map_err(|e| CommandError::Load(Box::new(e)))
    };
    for lib in &args.libs {
        let module = load(lib, &loaded)?;
        loaded.0.push(module);
    }
    let module = load(file, &loaded)?;
    let mut modules: Vec<&smf::loader::SharedModule> = loaded.0.iter().map(|m| &**m).collect();
    modules.push(&module);
    crate::crash::name_code(&modules);
    let called = symbol.map_or_else(|| "the entry point".to_owned(), |s| format!("`{s}`"));
    let _ = CRASH_CONTEXT.set(format!("smf: {file}: {called}"));
    // SAFETY: the tool's contract is that the function takes integer arguments and returns what
    // --ret says (an integer by default).
    #[allow(unsafe_code)]
    let value = unsafe {
        match args.ret {
            Returns::I64 => {
                module.call_returning::<i64>(symbol.map(str::as_bytes), &values).map(|v| v.to_string())
            }
            Returns::F64 => {
                module.call_returning::<f64>(symbol.map(str::as_bytes), &values).map(|v| v.to_string())
            }
        }
    };
    value.map_err(|error| CommandError::Call { file: file.clone(), error })
}

#[cfg(test)]
mod tests {
    use smf::loader::{CallError, ModuleError};
    use smf_core::write::{samples, ModuleBuilder, SymbolSpec};

    use super::*;
    use crate::args::DialectArg;

    /// A file named for `test` holding `bytes`; its path.
    fn file(test: &str, bytes: &[u8]) -> String {
        let path = std::env::temp_dir().join(format!("smf-cli-{}-{test}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    }

    fn run(file: &str, symbol: Option<&str>, args: &[&str]) -> Result<String, CommandError> {
        let args = RunArgs {
            libs: Vec::new(),
            natives: Vec::new(),
            no_libc: true,
            ret: Returns::I64,
            file: file.to_owned(),
            symbol: symbol.map(str::to_owned),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        run_module(&args)
    }

    #[test]
    fn each_failure_of_a_command_is_typed_and_names_its_file() {
        assert!(matches!(parse_int("12x"), Err(CommandError::NotAnInteger(t)) if t == "12x"));
        assert!(matches!(parse_int("-0x8000000000000001"), Err(CommandError::OutOfRange(_))));
        assert!(matches!(read_module_file("/nonexistent/m.smf"), Err(CommandError::Read { .. })));
        let garbage = file("garbage.smf", b"not a module");
        let verify = VerifyArgs {
            load: true,
            libs: Vec::new(),
            dialect: DialectArg { dialect: None },
            files: Vec::new(),
        };
        let libraries = smf::loader::Libraries::default();
        let e = verify_file(&garbage, &verify, &libraries).unwrap_err();
        assert!(matches!(&e, CommandError::Format { file, .. } if file == &garbage), "{e}");
        // Valid everywhere, loadable on no machine: an import nothing provides.
        let mut b = ModuleBuilder::new(smf_core::Dialect::R96);
        b.add_code(b".text", &[0xC3]);
        b.add_symbol(SymbolSpec::import(b"smf_cli_test_nowhere"));
        let unresolved = file("unresolved.smf", &b.build().unwrap());
        let e = verify_file(&unresolved, &verify, &libraries).unwrap_err();
        assert!(
            matches!(&e, CommandError::DoesNotLoad { error, .. } if matches!(**error, ModuleError::Load(..))),
            "{e}"
        );
        let e = run(&garbage, None, &[]).unwrap_err();
        assert!(
            matches!(&e, CommandError::Load(error) if matches!(**error, ModuleError::Load(Some(_), _))),
            "{e}"
        );
        assert!(matches!(run(&garbage, None, &["x"]), Err(CommandError::NotAnInteger(_))));
        if cfg!(target_arch = "x86_64") {
            let mut b = ModuleBuilder::new(smf_core::Dialect::R96);
            b.add_code(b".text", &samples::RETURN_42);
            b.add_symbol(SymbolSpec::function(b"answer", 0, 6));
            let no_entry = file("no-entry.smf", &b.build().unwrap());
            let e = run(&no_entry, None, &[]).unwrap_err();
            assert!(matches!(&e, CommandError::Call { error: CallError::NoEntryPoint, .. }), "{e}");
            assert!(e.to_string().ends_with("no entry point (name a SYMBOL)"), "{e}");
            assert_eq!(run(&no_entry, Some("answer"), &[]).unwrap(), "42");
            let _ = std::fs::remove_file(no_entry);
        }
        for path in [garbage, unresolved] {
            let _ = std::fs::remove_file(path);
        }
    }
}
