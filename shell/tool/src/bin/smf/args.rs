//! The `smf` tool's command line, declared for clap: every command and option, their help
//! texts, and the values they accept. `--opt=value`, options after FILE, `--help` per command,
//! `--version` and `-` for standard input come with it; usage errors exit 2.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use smf_format::Dialect;
use smf_tool::pack::Compression;

mod values;

use values::{call_arg, compression, dialect};

/// Inspect, verify, pack, run, link-check, dump and prefetch SMF modules (the Simple language's
/// module format).
#[derive(Debug, Parser)]
#[command(name = "smf", version, arg_required_else_help = true, subcommand_required = true)]
#[command(
    after_help = "Exit status: 0 ok, 1 bad module or file, 2 usage error (a bad value included); `run` of the entry point (or `--ret status`): the program's; a crash: the signal's. FILE may be `-` for standard input."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

impl Cli {
    /// The command line, checked beyond what clap's declarations check (how many arguments of
    /// each kind `run` can pass); a usage error (exit 2) otherwise.
    pub(crate) fn parse_checked() -> Self {
        use clap::CommandFactory as _;
        use clap::FromArgMatches as _;
        let args = ld_style(std::env::args_os()).unwrap_or_else(|message| {
            Cli::command().error(clap::error::ErrorKind::ValueValidation, message).exit()
        });
        let matches = command_for(&args).get_matches_from(args);
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        if let (Command::Pack(pack), Some(("pack", matches))) = (&mut cli.command, matches.subcommand()) {
            pack.positions = Positions::of(matches);
        }
        let refused = match &cli.command {
            Command::Run(run) => run.check_arguments().err().map(|(kind, m)| ("run", kind, m)),
            Command::Verify(verify) if !verify.load && verify.link.is_given() => Some((
                "verify",
                clap::error::ErrorKind::MissingRequiredArgument,
                "--lib, --native and --no-libc link what --load loads: give --load".to_owned(),
            )),
            _ => None,
        };
        if let Some((name, kind, message)) = refused {
            let mut root = Cli::command();
            root.build();
            // The error shows the command's own usage line.
            let mut usage =
                root.find_subcommand(name).cloned().unwrap_or(root).bin_name(format!("smf {name}"));
            usage.error(kind, message).exit();
        }
        cli
    }
}

/// The command line's declarations: for `smf run` without a request for help, only `run`'s
/// (building every command's declarations, long texts and all, cost more instructions than the
/// rest of a packed program's start through `smf run`: `run_startup_vs_native`); else every
/// command's. The two parse a `run` command line alike: `run`'s arguments are its own, and
/// its usage line in an error is built from the same names.
fn command_for(args: &[std::ffi::OsString]) -> clap::Command {
    use clap::{Args as _, CommandFactory as _};
    let options = args.iter().skip(2).take_while(|arg| *arg != "--");
    let asks_help =
        options.clone().any(|arg| ["-h", "--help", "-V", "--version"].iter().any(|flag| arg == flag));
    if args.get(1).is_some_and(|command| command == "run") && !asks_help {
        let run = RunArgs::augment_args(clap::Command::new("run"));
        return clap::Command::new("smf").subcommand_required(true).subcommand(run);
    }
    Cli::command()
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show what is inside a module: header, sections, symbols, relocations, note.sdn tables and
    /// templates.
    Inspect(InspectArgs),
    /// List the symbols, like nm.
    ///
    /// Value, size, kind, binding, section and whole name, sorted by name (imports have no
    /// value, the kind `import` and the section `*UND*`). A code symbol's value is its offset
    /// in the code image (the code sections in table order), a data symbol's its offset in its
    /// section.
    Symbols(SymbolsArgs),
    /// Check that every FILE is a valid module (and, with --load, loads here).
    ///
    /// Exit 0 if every FILE is a valid module; otherwise print one line per bad file on stderr
    /// (the problem and its byte offset) and exit 1.
    Verify(VerifyArgs),
    /// Turn x86-64 ELF relocatables (gcc -c -O2 -fPIC, clang) into one SMF module.
    ///
    /// Links as `gcc -shared` links: the objects, the archive members they need, and libgcc's
    /// helpers (`__udivti3`, `__popcountdi2`: what `-lgcc` gives; -nostdlib or -nodefaultlibs
    /// leave them out). A shared library the link line names (`-lstdc++`) is recorded as
    /// needed and opened when the module loads (`smf run --no-needed` does not; `smf run
    /// --native LIB` gives a library the module does not name).
    Pack(PackArgs),
    /// Load FILE and call a function in it; print the result.
    ///
    /// Loads the libraries and FILE and calls SYMBOL with up to 6 integer and 8 floating-point
    /// arguments, or the entry point as C's `main(argc, argv, envp)` (argv: FILE, then what
    /// follows `--`), as the program runs: its return value is the exit status, nothing is
    /// printed after its output, a crash ends with the signal (after a report on stderr). A
    /// SYMBOL's result is printed as --ret says.
    Run(RunArgs),
    /// Load many modules into a cache on worker threads.
    ///
    /// Loads every FILE into a module cache on worker threads, linked as `run` links; reports
    /// how many loaded, how many failed (one line each) and the time taken.
    Prefetch(PrefetchArgs),
    /// List each import and what resolves it, like ldd -r.
    ///
    /// Every import of each FILE and what resolves it, linked as `run` links (the --lib
    /// modules, the --native libraries, the C library and libm), or "not found"; exit 1 if any
    /// import is not found.
    Ldd(LddArgs),
    /// Show a section's bytes (-x) or the code's instructions (--disassemble).
    ///
    /// As hex and text (-x, like readelf -x), or as instructions (--disassemble, x86-64 code),
    /// functions named.
    Dump(DumpArgs),
}

/// The command line, with `pack`'s single-dash long options as ld spells them (`-shared`,
/// `-static`, `-Bshareable`) given as clap reads them, and ld's positional options
/// (`-Bstatic`, `-Bdynamic`, `--whole-archive`, `--no-whole-archive`) as the `-Wl` lists that
/// carry them, read in order among the others; response files (`@FILE`) read in place first,
/// and the driver's `-Xlinker OPTION`s, each after another one list (`-Xlinker -z -Xlinker
/// defs` is `-Wl,-z,defs`: an option and its value); the driver's `-z KEYWORD` and ld's bare
/// `--no-undefined` and `-zKEYWORD` as the `-Wl` lists that carry them. Nothing after `--` is
/// rewritten.
fn ld_style(args: impl Iterator<Item = std::ffi::OsString>) -> Result<Vec<std::ffi::OsString>, String> {
    let mut args: Vec<std::ffi::OsString> = args.collect();
    if args.get(1).is_none_or(|command| command != "pack") {
        return Ok(args);
    }
    let after = args.iter().position(|arg| arg == "--").map_or_else(Vec::new, |end| args.split_off(end));
    let args = crate::response_files::expanded(args)?;
    let mut joined: Vec<std::ffi::OsString> = Vec::with_capacity(args.len());
    let mut args = args.into_iter();
    let mut in_list = false;
    while let Some(arg) = args.next() {
        // The driver's `-z KEYWORD`, which it hands the linker as is.
        if arg == "-z" && joined.len() >= 2 {
            if let Some(keyword) = args.next() {
                let mut list = std::ffi::OsString::from("-Wl,-z,");
                list.push(keyword);
                joined.push(list);
                in_list = false;
                continue;
            }
        }
        let value = if arg == "-Xlinker" && joined.len() >= 2 { args.next() } else { None };
        match (value, joined.last_mut()) {
            // The -Xlinker just before made this list: one more option of it.
            (Some(value), Some(list)) if in_list => {
                list.push(",");
                list.push(value);
            }
            (Some(value), _) => {
                let mut list = std::ffi::OsString::from("-Wl,");
                list.push(value);
                joined.push(list);
                in_list = true;
            }
            (None, _) => {
                joined.push(arg);
                in_list = false;
            }
        }
    }
    let spelled = |(i, arg): (usize, std::ffi::OsString)| match arg.to_str() {
        _ if i < 2 => arg,
        Some("-shared" | "-Bshareable") => "--shared".into(),
        // The compiler driver's -static: every -l takes archives.
        Some("-static") => "--static".into(),
        Some(positional @ ("-Bstatic" | "-Bdynamic" | "--whole-archive" | "--no-whole-archive")) => {
            format!("-Wl,{positional}").into()
        }
        // ld's own spellings a link line may give bare: `--no-undefined`, `-zdefs`.
        Some(option @ "--no-undefined") => format!("-Wl,{option}").into(),
        Some(option) if option.len() > 2 && option.starts_with("-z") => format!("-Wl,{option}").into(),
        // The compiler driver's options and compile options a link line carries (CFLAGS):
        // read with the linker's, where they are taken or ignored with a note. Their commas
        // are not -Wl's: a sanitizer list is one option per sanitizer, and the others
        // (`-Wa,--noexecstack`) are noted with spaces.
        Some(option) if crate::driver::is_driver_option(option) => match option.strip_prefix("-fsanitize=") {
            Some(list) => {
                let each: Vec<String> = list.split(',').map(|one| format!("-fsanitize={one}")).collect();
                format!("-Wl,{}", each.join(",")).into()
            }
            None => format!("-Wl,{}", option.replace(',', " ")).into(),
        },
        _ => arg,
    };
    Ok(joined.into_iter().enumerate().map(spelled).chain(after).collect())
}

/// `--dialect`: which layout to read the file as, instead of detecting it.
#[derive(Debug, Args)]
pub(crate) struct DialectArg {
    /// Read the file as this dialect instead of detecting it.
    #[arg(long, value_name = "s128|r96|r72", value_parser = dialect)]
    pub(crate) dialect: Option<Dialect>,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// One JSON object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Only the section table (with --symbols, --relocations: those tables).
    #[arg(long)]
    pub(crate) sections: bool,
    /// Only the symbol table.
    #[arg(long)]
    pub(crate) symbols: bool,
    /// Only the relocations.
    #[arg(long)]
    pub(crate) relocations: bool,
    #[command(flatten)]
    pub(crate) dialect: DialectArg,
    /// The module files (`-`: standard input); with several, each report names its file (JSON:
    /// one object per line, each with a `file` key).
    #[arg(value_name = "FILE", required = true)]
    pub(crate) files: Vec<String>,
}

#[derive(Debug, Args)]
#[group(multiple = false)]
pub(crate) struct SymbolFilterArgs {
    /// Only symbols the module defines.
    #[arg(long)]
    pub(crate) defined: bool,
    /// Only imports.
    #[arg(long)]
    pub(crate) undefined: bool,
    /// Only what the module exports.
    #[arg(long)]
    pub(crate) exported: bool,
}

/// How `smf symbols` orders the symbols (by name unless told otherwise).
#[derive(Debug, Args)]
#[group(multiple = false)]
pub(crate) struct SymbolOrderArgs {
    /// By value (code symbols first, then data symbols by section; imports last).
    #[arg(short = 'n', long = "numeric-sort")]
    pub(crate) numeric: bool,
    /// By size, smallest first.
    #[arg(long = "size-sort")]
    pub(crate) size: bool,
    /// In symbol table order.
    #[arg(short = 'p', long = "no-sort")]
    pub(crate) table: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SymbolsArgs {
    #[command(flatten)]
    pub(crate) filter: SymbolFilterArgs,
    #[command(flatten)]
    pub(crate) order: SymbolOrderArgs,
    /// Reverse the order.
    #[arg(short = 'r', long = "reverse-sort", conflicts_with = "table")]
    pub(crate) reverse: bool,
    /// Start every line with its file's name (instead of a header per file).
    #[arg(short = 'A', long = "print-file-name")]
    pub(crate) print_file_name: bool,
    /// Show C++ names demangled, as nm -C does (the JSON keeps them as stored).
    #[arg(short = 'C', long)]
    pub(crate) demangle: bool,
    /// One JSON object per file (per line), its symbols with the keys of `inspect --json`.
    #[arg(long, conflicts_with = "print_file_name")]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) dialect: DialectArg,
    /// The module files (`-`: standard input); with several, each listing starts with
    /// `FILE:`.
    #[arg(value_name = "FILE", required = true)]
    pub(crate) files: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Also load each module here, linked as `run` links it (architecture, relocations,
    /// imports), without running its constructors.
    #[arg(long)]
    pub(crate) load: bool,
    #[command(flatten)]
    pub(crate) link: LinkArgs,
    /// One JSON object per file (per line): `file`, `valid`, `error` (null, or `message` and
    /// `offset`), with --load `loads` and `load_error`, and for a valid module the header keys
    /// of `inspect --json`.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) dialect: DialectArg,
    /// The module files (`-`: standard input).
    #[arg(value_name = "FILE", required = true)]
    pub(crate) files: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct PackArgs {
    /// The ELF objects, combined as `ld` would (`-`: one read from standard input), and
    /// archives (`.a`), of which the members the objects need are packed; a shared library
    /// (`.so`) leaves its functions imports; `@FILE` reads the arguments FILE holds.
    #[arg(value_name = "INPUT.o|LIB.a", required_unless_present_any = ["linker", "libraries"])]
    pub(crate) inputs: Vec<PathBuf>,
    /// The module to write (`-`: standard output).
    #[arg(short = 'o', long = "output", value_name = "OUTPUT.smf", required = true)]
    pub(crate) output: PathBuf,
    /// Link with library NAME as ld does (-lNAME; -l:FILE for a file name): the members of
    /// libNAME.a the objects need are packed in; where libNAME.so is found first (unless
    /// --static), its functions stay imports, resolved when the module is loaded.
    #[arg(short = 'l', value_name = "NAME")]
    pub(crate) libraries: Vec<String>,
    /// A directory -l searches, before the system's (repeatable).
    #[arg(short = 'L', value_name = "DIR")]
    pub(crate) search: Vec<PathBuf>,
    /// Linker options as compilers pass them (-Wl,-L,DIR,-lNAME): -L, -l, -e, -u, -s, -static,
    /// -shared, --whole-archive and --no-whole-archive (the archives between them packed
    /// whole), -z defs and --no-undefined (every import must be defined by the link line's
    /// libraries or the C library; also given bare: `-z defs`), -z separate-code (the
    /// read-only data kept apart from the code, its references left for the loader, so that
    /// it may be mapped not executable; default -z noseparate-code: pack links them) and input
    /// files are taken;
    /// archive groups and options that set what a module does not have (-soname, -rpath, other
    /// -z keywords, --as-needed, ...) are ignored, with a note, as are
    /// the compiler driver's own (-pthread, -rdynamic, -no-pie) and compile options given
    /// alone (-O2 -g -Wall -fPIC -D...).
    #[arg(short = 'W', value_name = "l,OPTION,...", allow_hyphen_values = true)]
    pub(crate) linker: Vec<String>,
    /// The module's entry point: this function, which the objects must define (default: main,
    /// when they define it).
    #[arg(short = 'e', long = "entry", value_name = "SYMBOL", overrides_with = "entry")]
    pub(crate) entry: Option<String>,
    /// Count SYMBOL as referred to, as ld's -u does: the archive member defining it is packed
    /// (repeatable).
    #[arg(short = 'u', long = "undefined", value_name = "SYMBOL")]
    pub(crate) undefined: Vec<String>,
    /// -l takes libNAME.a even where libNAME.so is found (as the compiler driver's -static
    /// does; -Bstatic and -Bdynamic are taken too, each for the -l options after it).
    #[arg(long = "static")]
    pub(crate) static_libraries: bool,
    /// Accepted as ld accepts it (-shared too): a module is what pack makes either way.
    #[arg(long)]
    pub(crate) shared: bool,
    /// Accepted as ld accepts it (--strip-all too): debug info is dropped either way, and a
    /// module's symbols are its exports.
    #[arg(short = 's', long = "strip-all")]
    pub(crate) strip: bool,
    /// The dialect to write.
    #[arg(long, value_name = "s128|r96|r72", value_parser = dialect, default_value = "s128")]
    pub(crate) dialect: Dialect,
    /// Compress the code, data and rodata (S128 and R96; R72 has no compression byte): LZ4, or
    /// Zstandard through libzstd at LEVEL 1 to 22 (default 3).
    #[arg(long, value_name = "lz4|zstd[:LEVEL]", value_parser = compression)]
    pub(crate) compress: Option<Compression>,
    /// No notes.
    #[arg(long, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    /// Also the notes every object gets (unwind tables, compiler identification dropped).
    #[arg(long)]
    pub(crate) verbose: bool,
    /// Where on the command line the inputs, libraries and `-Wl` lists were, which `ld`'s
    /// reading depends on (`--whole-archive` applies to what follows it).
    #[arg(skip)]
    pub(crate) positions: Positions,
}

/// Positions on the command line of pack's inputs, `-l` libraries, `-Wl` lists and `-e`, each
/// in the order of its field (empty where not parsed from a command line).
#[derive(Clone, Debug, Default)]
pub(crate) struct Positions {
    pub(crate) inputs: Vec<usize>,
    pub(crate) libraries: Vec<usize>,
    pub(crate) linker: Vec<usize>,
    /// The `-e` kept (the last one given).
    pub(crate) entry: Option<usize>,
}

impl Positions {
    /// Those clap recorded for `pack`'s arguments.
    fn of(matches: &clap::ArgMatches) -> Self {
        let at = |id: &str| matches.indices_of(id).map(Iterator::collect).unwrap_or_default();
        let entry = matches.indices_of("entry").and_then(Iterator::last);
        Self { inputs: at("inputs"), libraries: at("libraries"), linker: at("linker"), entry }
    }
}

/// How `run`, `verify --load`, `prefetch` and `ldd` link modules: the --lib modules in order,
/// then the --native libraries, then the C library and libm (unless --no-libc).
#[derive(Debug, Default, Args)]
pub(crate) struct LinkArgs {
    /// A module to load first, whose exports the modules may import (repeatable).
    #[arg(long = "lib", value_name = "FILE")]
    pub(crate) libs: Vec<String>,
    /// A native shared library (as `dlopen` finds it: `libstdc++.so.6`, a path) the modules
    /// link against, after the --lib modules and before the C library (repeatable).
    #[arg(long = "native", value_name = "LIBRARY")]
    pub(crate) natives: Vec<String>,
    /// Do not link against the C library and libm.
    #[arg(long)]
    pub(crate) no_libc: bool,
    /// Do not open the shared libraries a module names as needed (`smf pack` records those its
    /// link line named: libstdc++.so.6 for -lstdc++).
    #[arg(long)]
    pub(crate) no_needed: bool,
}

impl LinkArgs {
    /// Whether any of the options was given.
    fn is_given(&self) -> bool {
        !self.libs.is_empty() || !self.natives.is_empty() || self.no_libc || self.no_needed
    }
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) link: LinkArgs,
    /// What the function returns: an integer type (a narrower one is the low bits of the
    /// result register, printed as that type), a float type, `ptr` (printed in hex), `void`
    /// (nothing printed) or `status` (an `int` that is the exit status, as a C `main`'s).
    /// Default: `status` for the entry point (the program's exit status, nothing printed),
    /// `i64` for a SYMBOL.
    #[arg(long, value_enum)]
    pub(crate) ret: Option<Returns>,
    /// The module file (`-`: standard input).
    #[arg(value_name = "FILE")]
    pub(crate) file: String,
    /// The exported function to call (default: the entry point).
    #[arg(value_name = "SYMBOL")]
    pub(crate) symbol: Option<String>,
    /// The arguments, in order: integers (decimal, or 0x hex; negative decimal numbers are
    /// values, a negative hex one is written typed, `i64:-0x10`, as `-0x10` reads as an
    /// option), floating-point numbers (`1.5`, `-2e3`, `inf`: a double), or typed (`f32:1.5`,
    /// `f64:2`, `i64:-1`, `u64:0xff`, each within its type's range). At most 6 integer and 8
    /// floating-point ones.
    #[arg(value_name = "ARG", allow_negative_numbers = true, num_args = 0.., value_parser = call_arg)]
    pub(crate) args: Vec<CallArg>,
    /// After `--`: the entry point's arguments, as strings (`argv[1]` on; `argv[0]` is FILE).
    #[arg(value_name = "PROGRAM_ARG", last = true)]
    pub(crate) program_args: Vec<std::ffi::OsString>,
}

impl RunArgs {
    /// Whether the arguments fit the registers `run` passes them in, and strings after `--` go
    /// to the entry point (a SYMBOL takes ARGs); the usage error otherwise.
    fn check_arguments(&self) -> Result<(), (clap::error::ErrorKind, String)> {
        use clap::error::ErrorKind;
        use smf::loader::{MAX_FLOAT_ARGS, MAX_INTEGER_ARGS};
        let integers = self.args.iter().filter(|a| matches!(a, CallArg::Int(_))).count();
        let floats = self.args.len() - integers;
        if integers > MAX_INTEGER_ARGS {
            let message = format!("{integers} integer arguments: at most {MAX_INTEGER_ARGS} are supported");
            return Err((ErrorKind::TooManyValues, message));
        }
        if floats > MAX_FLOAT_ARGS {
            let message =
                format!("{floats} floating-point arguments: at most {MAX_FLOAT_ARGS} are supported");
            return Err((ErrorKind::TooManyValues, message));
        }
        if let (Some(symbol), false) = (&self.symbol, self.program_args.is_empty()) {
            let message = format!(
                "arguments after `--` are the entry point's argv; `{symbol}` takes its arguments as ARGs, before `--`"
            );
            return Err((ErrorKind::ArgumentConflict, message));
        }
        Ok(())
    }
}

/// What `smf run` prints the called function's result as.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Returns {
    /// `signed char`.
    I8,
    /// `short`.
    I16,
    /// `int`.
    I32,
    /// `long`, `long long`.
    #[default]
    I64,
    /// `unsigned char`, `bool`.
    U8,
    /// `unsigned short`.
    U16,
    /// `unsigned int`.
    U32,
    /// `unsigned long`, `size_t`.
    U64,
    /// `float`.
    F32,
    /// `double`, as Rust prints it (shortest form that reads back the same).
    F64,
    /// A pointer, in hex.
    Ptr,
    /// Nothing.
    Void,
    /// An `int`, the program's exit status (a C `main`'s): nothing printed, `smf` exits with
    /// its low 8 bits, as a shell sees a program's.
    Status,
}

/// One argument of `smf run`, parsed.
pub(crate) use smf::loader::CallArg;

#[derive(Debug, Args)]
pub(crate) struct PrefetchArgs {
    /// Worker threads (default: the machine's cores).
    #[arg(long, value_name = "N")]
    pub(crate) threads: Option<NonZeroUsize>,
    #[command(flatten)]
    pub(crate) link: LinkArgs,
    /// The module files (`-`: read their names from standard input, one per line).
    #[arg(value_name = "FILE", required = true)]
    pub(crate) files: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct LddArgs {
    #[command(flatten)]
    pub(crate) link: LinkArgs,
    /// Show C++ names demangled, as nm -C does.
    #[arg(short = 'C', long)]
    pub(crate) demangle: bool,
    #[command(flatten)]
    pub(crate) dialect: DialectArg,
    /// The module files (`-`: standard input); with several, each list starts with `FILE:`.
    #[arg(value_name = "FILE", required = true)]
    pub(crate) files: Vec<String>,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub(crate) struct DumpWhat {
    /// Dump this section (name or index) as hex and text (repeatable).
    #[arg(short = 'x', long = "hex-dump", value_name = "SECTION")]
    pub(crate) hex: Vec<String>,
    /// Disassemble the code sections (x86-64), each function named at its start.
    #[arg(short = 'd', long)]
    pub(crate) disassemble: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DumpArgs {
    #[command(flatten)]
    pub(crate) what: DumpWhat,
    #[command(flatten)]
    pub(crate) dialect: DialectArg,
    /// The module file (`-`: standard input).
    #[arg(value_name = "FILE")]
    pub(crate) file: String,
}

#[cfg(test)]
mod tests {
    use super::ld_style;

    fn rewritten(args: &[&str]) -> Vec<String> {
        let args = args.iter().map(std::ffi::OsString::from);
        ld_style(args).unwrap().into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn pack_reads_ld_and_driver_spellings_and_leaves_the_rest() {
        let given = [
            "smf", "pack", "a.o", "-Xlinker", "-z", "-Xlinker", "defs", "-static", "b.o", "-Xlinker", "-e",
            "-Xlinker", "go", "-Bstatic", "--", "-Xlinker", "-static",
        ];
        assert_eq!(
            rewritten(&given),
            [
                "smf",
                "pack",
                "a.o",
                "-Wl,-z,defs",
                "--static",
                "b.o",
                "-Wl,-e,go",
                "-Wl,-Bstatic",
                "--",
                "-Xlinker",
                "-static"
            ]
        );
        assert_eq!(rewritten(&["smf", "pack", "a.o", "-pg"]), ["smf", "pack", "a.o", "-Wl,-pg"]);
        // The driver's -z KEYWORD, ld's bare --no-undefined and -zKEYWORD.
        assert_eq!(
            rewritten(&["smf", "pack", "a.o", "-z", "defs", "--no-undefined", "-znow"]),
            ["smf", "pack", "a.o", "-Wl,-z,defs", "-Wl,--no-undefined", "-Wl,-znow"]
        );
        // A driver option's commas are not -Wl's.
        assert_eq!(
            rewritten(&["smf", "pack", "-fsanitize=address,undefined", "-Wa,--noexecstack"]),
            ["smf", "pack", "-Wl,-fsanitize=address,-fsanitize=undefined", "-Wl,-Wa --noexecstack"]
        );
        // Other commands are left as they are.
        assert_eq!(
            rewritten(&["smf", "run", "m.smf", "-Xlinker", "-static"]),
            ["smf", "run", "m.smf", "-Xlinker", "-static"]
        );
    }
}
