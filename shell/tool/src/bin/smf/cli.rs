//! The `smf` tool's commands over their typed options (`args.rs`): `inspect`, `symbols`,
//! `verify`, `run`, `prefetch` (`pack` is `pack.rs`). Each writes its result to stdout and
//! its problems to stderr, one line each, and returns the exit status: 0 ok, 1 a bad module or
//! file (usage errors, 2, are clap's).

use std::io::Write as _;
use std::path::Path;

use smf_core::{Dialect, Module, ParseOptions};

use crate::args::{Command, InspectArgs, PrefetchArgs, Returns, RunArgs, SymbolsArgs, VerifyArgs};
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
pub(crate) fn read_module_file(path: &str) -> Result<Vec<u8>, String> {
    let file = if path == "-" { Path::new("/dev/stdin") } else { Path::new(path) };
    smf::file::read(file).map_err(|e| format!("{path}: cannot read: {e}"))
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
    match Module::parse_with(&bytes, &parse_options_for(args.dialect.dialect)) {
        Ok(module) => {
            if args.json {
                out(&(inspect::report_json_parts(&module, parts).to_string() + "\n"));
            } else {
                out(&inspect::report_text_parts(&module, file, parts));
            }
            EXIT_OK
        }
        Err(e) => {
            err(&format!("smf: {file}: {e}\n"));
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
        Module::parse_with(&bytes, &parse_options_for(args.dialect.dialect))
            .map(|module| inspect::symbol_listing(&module, filter))
            .map_err(|e| format!("{file}: {e}"))
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
    // --load [--lib FILE]...: also load each module here, as `smf run` would link it.
    let mut libraries = Libraries::default();
    for lib in &args.libs {
        match loader::load_path(Path::new(lib), &Chain(&libraries, CLibrary)) {
            Ok(module) => libraries.0.push(module),
            Err(e) => {
                err(&format!("smf: --lib {e}\n"));
                return EXIT_BAD;
            }
        }
    }
    let mut status = EXIT_OK;
    for file in &args.files {
        let result = read_module_file(file).and_then(|bytes| {
            Module::parse_with(&bytes, &parse_options_for(args.dialect.dialect))
                .map_err(|e| format!("{file}: {e}"))?;
            if args.load {
                let resolver = Chain(&libraries, CLibrary);
                loader::load_bytes(&bytes, &resolver, None)
                    .map_err(|e| format!("{file}: valid, but does not load here: {e}"))?;
            }
            Ok(())
        });
        if let Err(message) = result {
            err(&format!("{message}\n"));
            status = EXIT_BAD;
        }
    }
    status
}

/// An integer argument: decimal (optionally negative) or `0x` hexadecimal.
fn parse_int(text: &str) -> Result<i64, String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let magnitude = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => digits.parse::<u64>(),
    }
    .map_err(|_| format!("argument `{text}` is not an integer"))?;
    let value = if negative { 0i128 - i128::from(magnitude) } else { i128::from(magnitude) };
    // Accept the full u64 range too (as its two's-complement i64).
    i64::try_from(value)
        .or_else(|_| u64::try_from(value).map(|v| v as i64))
        .map_err(|_| format!("argument `{text}` is out of range"))
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
    use smf::imports::CLibrary;
    use smf::loader::{self, Libraries};
    use smf_core::load::{Chain, Resolver};
    let file = &args.file;
    let symbol = args.symbol.as_deref();
    let result = (|| -> Result<String, String> {
        let values = args.args.iter().map(|a| parse_int(a)).collect::<Result<Vec<_>, _>>()?;
        // What `--lib` libraries do not provide links against the C library (the process's
        // symbols: this program's libc), as a native program's imports would.
        let mut loaded = Libraries::default();
        let load = |path: &str, libraries: &Libraries| {
            let resolver: &dyn Resolver = if args.no_libc { libraries } else { &Chain(libraries, CLibrary) };
            let bytes = read_module_file(path)?;
            let origin = (path != "-").then(|| Path::new(path).to_path_buf());
            loader::load_bytes(&bytes, resolver, origin).map_err(|e| e.to_string())
        };
        for lib in &args.libs {
            let module = load(lib, &loaded)?;
            loaded.0.push(module);
        }
        let module = load(file, &loaded)?;
        let called = symbol.map_or_else(|| "the entry point".to_owned(), |s| format!("`{s}`"));
        let _ = CRASH_CONTEXT.set(format!("smf: {file}: {called}"));
        // SAFETY: the tool's contract is that the function takes integer arguments and
        // returns what --ret says (an integer by default).
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
        value.map_err(|e| match e {
            loader::CallError::NoEntryPoint => format!("{file}: no entry point (name a SYMBOL)"),
            e => format!("{file}: {e}"),
        })
    })();
    match result {
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
