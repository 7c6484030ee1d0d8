//! The `smf` command line: argument parsing and the subcommands.
//!
//! Exit codes: 0 success, 1 a module (or file) is bad, 2 usage error. Output errors (a closed
//! pipe) are ignored rather than panicking.

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

use smf_core::{Dialect, Module, ParseOptions};

use crate::inspect;

const USAGE: &str = "\
usage: smf <command> [options]

commands:
  inspect [--json] [--sections] [--symbols] [--relocations] [--dialect s128|r96|r72] FILE
        show what is inside a module: header, sections, symbols, relocations,
        note.sdn tables and templates (--json: one JSON object); --sections,
        --symbols, --relocations: only those tables
  symbols [--defined | --undefined | --exported] [--dialect s128|r96|r72] FILE
        list the symbols (like nm): value, size, kind, binding and whole name;
        imports have no value and the kind `import`
  verify [--load [--lib FILE]...] [--dialect s128|r96|r72] FILE...
        exit 0 if every FILE is a valid module; otherwise print one line per bad
        file on stderr (the problem and its byte offset) and exit 1; --load: also
        load each here, linked as `run` links it (architecture, relocations, imports)
  pack INPUT.o... -o OUTPUT.smf [--dialect s128|r96|r72] [--quiet | --verbose]
        turn x86-64 ELF relocatables (gcc -c -O2 -fPIC, clang) into one SMF module
  run [--lib FILE]... [--no-libc] [--ret i64|f64] FILE [SYMBOL [ARG...]]
        load the libraries and FILE (imports resolve against the libraries, then
        the C library, as a native program's would; --no-libc: libraries only),
        call SYMBOL (default: the entry point) with up to 6 integer arguments
        (decimal or 0x hex) and print the 64-bit result in decimal (--ret f64:
        the function returns a double)
  prefetch [--threads N] FILE...
        load every FILE into a module cache on N worker threads (default: the
        machine's cores) and report how many loaded, how many failed (one line
        each) and the time taken; a progress line on a terminal for many files
  help  show this text

exit status: 0 ok, 1 bad module or file, 2 usage error
";

/// Exit status for success.
pub const EXIT_OK: i32 = 0;
/// Exit status when a module or file is bad.
pub const EXIT_BAD: i32 = 1;
/// Exit status for usage errors.
pub const EXIT_USAGE: i32 = 2;

/// Where a command writes: its standard output and error.
#[allow(missing_debug_implementations)]
pub struct Io<'a> {
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
}

impl Io<'_> {
    fn out(&mut self, text: &str) {
        let _ = self.out.write_all(text.as_bytes());
    }

    fn err(&mut self, text: &str) {
        let _ = self.err.write_all(text.as_bytes());
    }

    fn usage_error(&mut self, message: &str) -> i32 {
        self.err(&format!("smf: {message}\n\n{USAGE}"));
        EXIT_USAGE
    }
}

/// Runs the tool with `args` (without the program name) on the process's stdout and stderr;
/// returns the exit status.
pub fn run(args: &[OsString]) -> i32 {
    let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
    let (mut out, mut err) = (stdout.lock(), stderr.lock());
    run_with(args, &mut Io { out: &mut out, err: &mut err })
}

/// Runs the tool with `args`, writing to `io`; returns the exit status.
pub fn run_with(args: &[OsString], io: &mut Io<'_>) -> i32 {
    let args: Vec<String> = match args.iter().map(|a| a.clone().into_string()).collect() {
        Ok(args) => args,
        Err(bad) => return io.usage_error(&format!("argument is not UTF-8: {bad:?}")),
    };
    let Some((command, rest)) = args.split_first() else {
        return io.usage_error("no command given");
    };
    match command.as_str() {
        "inspect" => inspect_command(rest, io),
        "verify" => verify_command(rest, io),
        "symbols" => symbols_command(rest, io),
        "run" => run_command(rest, io),
        "prefetch" => prefetch_command(rest, io),
        "pack" => {
            io.usage_error("`pack` is a command of the smf binary (it reads ELF with the object crate)")
        }
        "help" | "--help" | "-h" => {
            io.out(USAGE);
            EXIT_OK
        }
        other => io.usage_error(&format!("unknown command `{other}`")),
    }
}

/// Options shared by the subcommands.
#[derive(Debug, Default)]
struct Options {
    json: bool,
    /// Tables `inspect` shows (none chosen: the whole report).
    parts: inspect::Parts,
    dialect: Option<Dialect>,
    files: Vec<String>,
}

/// The options of `args`; `inspecting`: `inspect`'s own options are allowed.
fn parse_options(args: &[String], inspecting: bool) -> Result<Options, String> {
    let mut options = Options::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--json" if inspecting => options.json = true,
            "--sections" if inspecting => options.parts.sections = true,
            "--symbols" if inspecting => options.parts.symbols = true,
            "--relocations" if inspecting => options.parts.relocations = true,
            "--dialect" => {
                let value = iter.next().ok_or("--dialect needs a value (s128, r96 or r72)")?;
                options.dialect =
                    Some(Dialect::from_name(value).ok_or(format!("unknown dialect `{value}`"))?);
            }
            "--" => options.files.extend(iter.by_ref().cloned()),
            flag if flag.starts_with("--") => return Err(format!("unknown option `{flag}`")),
            file => options.files.push(file.to_owned()),
        }
    }
    Ok(options)
}

/// Reads `path`, or says why not.
pub fn read_module_file(path: &str) -> Result<Vec<u8>, String> {
    crate::file::read(Path::new(path)).map_err(|e| format!("{path}: cannot read: {e}"))
}

fn parse_options_for(dialect: Option<Dialect>) -> ParseOptions {
    ParseOptions { dialect, ..ParseOptions::default() }
}

fn inspect_command(args: &[String], io: &mut Io<'_>) -> i32 {
    let options = match parse_options(args, true) {
        Ok(o) => o,
        Err(message) => return io.usage_error(&message),
    };
    let [file] = options.files.as_slice() else {
        return io.usage_error("inspect takes exactly one FILE");
    };
    let bytes = match read_module_file(file) {
        Ok(b) => b,
        Err(message) => {
            io.err(&format!("smf: {message}\n"));
            return EXIT_BAD;
        }
    };
    match Module::parse_with(&bytes, &parse_options_for(options.dialect)) {
        Ok(module) => {
            if options.json {
                io.out(&(inspect::report_json_parts(&module, options.parts).render() + "\n"));
            } else {
                io.out(&inspect::report_text_parts(&module, file, options.parts));
            }
            EXIT_OK
        }
        Err(e) => {
            io.err(&format!("smf: {file}: {e}\n"));
            EXIT_BAD
        }
    }
}

fn symbols_command(args: &[String], io: &mut Io<'_>) -> i32 {
    use inspect::SymbolFilter;
    let mut filter = SymbolFilter::All;
    let mut rest = Vec::new();
    for arg in args {
        match arg.as_str() {
            "--defined" => filter = SymbolFilter::Defined,
            "--undefined" => filter = SymbolFilter::Undefined,
            "--exported" => filter = SymbolFilter::Exported,
            _ => rest.push(arg.clone()),
        }
    }
    let options = match parse_options(&rest, false) {
        Ok(o) => o,
        Err(message) => return io.usage_error(&message),
    };
    let [file] = options.files.as_slice() else {
        return io.usage_error("symbols takes exactly one FILE");
    };
    let parsed = read_module_file(file).and_then(|bytes| {
        Module::parse_with(&bytes, &parse_options_for(options.dialect))
            .map(|module| inspect::symbol_listing(&module, filter))
            .map_err(|e| format!("{file}: {e}"))
    });
    match parsed {
        Ok(listing) => {
            io.out(&listing);
            EXIT_OK
        }
        Err(message) => {
            io.err(&format!("smf: {message}\n"));
            EXIT_BAD
        }
    }
}

fn verify_command(args: &[String], io: &mut Io<'_>) -> i32 {
    use crate::imports::CLibrary;
    use crate::loader::{self, Libraries};
    use smf_core::load::Chain;
    // --load [--lib FILE]...: also load each module here, as `smf run` would link it.
    let (mut load, mut libs, mut rest) = (false, Vec::new(), Vec::new());
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--load" => load = true,
            "--lib" => match iter.next() {
                Some(lib) => libs.push(lib.clone()),
                None => return io.usage_error("--lib needs a FILE"),
            },
            _ => rest.push(arg.clone()),
        }
    }
    if !libs.is_empty() && !load {
        return io.usage_error("--lib goes with --load");
    }
    let options = match parse_options(&rest, false) {
        Ok(o) => o,
        Err(message) => return io.usage_error(&message),
    };
    if options.files.is_empty() {
        return io.usage_error("verify needs at least one FILE");
    }
    let mut libraries = Libraries::default();
    for lib in &libs {
        match loader::load_path(Path::new(lib), &Chain(&libraries, CLibrary)) {
            Ok(module) => libraries.0.push(module),
            Err(e) => {
                io.err(&format!("smf: --lib {e}\n"));
                return EXIT_BAD;
            }
        }
    }
    let mut status = EXIT_OK;
    for file in &options.files {
        let result = read_module_file(file).and_then(|bytes| {
            Module::parse_with(&bytes, &parse_options_for(options.dialect))
                .map_err(|e| format!("{file}: {e}"))?;
            if load {
                let resolver = Chain(&libraries, CLibrary);
                loader::load_bytes(&bytes, &resolver, None)
                    .map_err(|e| format!("{file}: valid, but does not load here: {e}"))?;
            }
            Ok(())
        });
        if let Err(message) = result {
            io.err(&format!("{message}\n"));
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

fn prefetch_command(args: &[String], io: &mut Io<'_>) -> i32 {
    use std::io::IsTerminal;
    use std::path::PathBuf;
    let (threads, files) = match args {
        [flag, n, files @ ..] if flag == "--threads" => match n.parse::<usize>() {
            Ok(n) if n > 0 => (n, files),
            _ => return io.usage_error(&format!("--threads takes a positive number, not `{n}`")),
        },
        [flag, ..] if flag.starts_with("--") => return io.usage_error(&format!("unknown option `{flag}`")),
        files => (std::thread::available_parallelism().map_or(1, usize::from), files),
    };
    if files.is_empty() {
        return io.usage_error("prefetch needs at least one FILE");
    }
    let paths: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
    let cache = crate::cache::ModuleCache::new(0, 0);
    // A progress line on a terminal, when there are enough files for it to matter.
    let progress = files.len() >= 50 && std::io::stderr().is_terminal();
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
        io.err(&format!("smf: {error}\n")); // the error names its file
    }
    let loaded = total - failures.len();
    io.out(&format!(
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
pub fn crash_context() -> Option<&'static str> {
    CRASH_CONTEXT.get().map(String::as_str)
}

/// What `smf run` prints the called function's result as.
#[derive(Clone, Copy, Debug)]
enum Returns {
    /// A 64-bit integer (`long`), in decimal.
    Integer,
    /// A `double`, as Rust prints it (shortest form that reads back the same).
    Double,
}

fn run_command(args: &[String], io: &mut Io<'_>) -> i32 {
    use crate::imports::CLibrary;
    use crate::loader::{self, Libraries};
    use smf_core::load::{Chain, Resolver};
    let mut libs = Vec::new();
    let mut libc = true;
    let mut returns = Returns::Integer;
    let mut rest = args;
    loop {
        match rest {
            [flag, file, tail @ ..] if flag == "--lib" => {
                libs.push(file.clone());
                rest = tail;
            }
            [flag, tail @ ..] if flag == "--no-libc" => {
                libc = false;
                rest = tail;
            }
            [flag, kind, tail @ ..] if flag == "--ret" => {
                returns = match kind.as_str() {
                    "i64" => Returns::Integer,
                    "f64" => Returns::Double,
                    other => return io.usage_error(&format!("--ret takes i64 or f64, not `{other}`")),
                };
                rest = tail;
            }
            [flag] if flag == "--ret" => return io.usage_error("--ret needs i64 or f64"),
            [flag] if flag == "--lib" => return io.usage_error("--lib needs a FILE"),
            [flag, ..] if flag.starts_with("--") => {
                return io.usage_error(&format!("unknown option `{flag}`"))
            }
            _ => break,
        }
    }
    let Some((file, rest)) = rest.split_first() else {
        return io.usage_error("run needs a FILE");
    };
    let (symbol, call_args) = match rest.split_first() {
        Some((symbol, tail)) => (Some(symbol.as_str()), tail),
        None => (None, &[][..]),
    };
    if call_args.len() > 6 {
        return io.usage_error("at most 6 arguments");
    }
    let result = (|| -> Result<String, String> {
        let values = call_args.iter().map(|a| parse_int(a)).collect::<Result<Vec<_>, _>>()?;
        // What `--lib` libraries do not provide links against the C library (the process's
        // symbols: this program's libc), as a native program's imports would.
        let mut loaded = Libraries::default();
        let load = |path: &str, libraries: &Libraries| {
            let resolver: &dyn Resolver = if libc { &Chain(libraries, CLibrary) } else { libraries };
            loader::load_path(Path::new(path), resolver).map_err(|e| e.to_string())
        };
        for lib in &libs {
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
            match returns {
                Returns::Integer => {
                    module.call_returning::<i64>(symbol.map(str::as_bytes), &values).map(|v| v.to_string())
                }
                Returns::Double => {
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
            io.out(&format!("{value}\n"));
            EXIT_OK
        }
        Err(message) => {
            io.err(&format!("smf: {message}\n"));
            EXIT_BAD
        }
    }
}
