//! The `smf` tool's command line, declared for clap: every command and option, their help
//! texts, and the values they accept. `--opt=value`, options after FILE, `--help` per command,
//! `--version` and `-` for standard input come with it; usage errors exit 2.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use smf_core::Dialect;

/// Inspect, verify, pack, run and prefetch SMF modules (the Simple language's module format).
#[derive(Debug, Parser)]
#[command(name = "smf", version, arg_required_else_help = true, subcommand_required = true)]
#[command(
    after_help = "Exit status: 0 ok, 1 bad module or file, 2 usage error. FILE may be `-` for standard input."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show what is inside a module: header, sections, symbols, relocations, note.sdn tables and
    /// templates.
    Inspect(InspectArgs),
    /// List the symbols, like nm: value, size, kind, binding and whole name (imports have no
    /// value and the kind `import`).
    Symbols(SymbolsArgs),
    /// Exit 0 if every FILE is a valid module; otherwise print one line per bad file on stderr
    /// (the problem and its byte offset) and exit 1.
    Verify(VerifyArgs),
    /// Turn x86-64 ELF relocatables (gcc -c -O2 -fPIC, clang) into one SMF module.
    Pack(PackArgs),
    /// Load the libraries and FILE and call SYMBOL (default: the entry point) with up to 6
    /// integer arguments (decimal or 0x hex); print the result.
    Run(RunArgs),
    /// Load every FILE into a module cache on worker threads; report how many loaded, how many
    /// failed (one line each) and the time taken.
    Prefetch(PrefetchArgs),
}

/// `--dialect`: which layout to read the file as, instead of detecting it.
#[derive(Debug, Args)]
pub(crate) struct DialectArg {
    /// Read the file as this dialect instead of detecting it.
    #[arg(long, value_name = "s128|r96|r72", value_parser = dialect)]
    pub(crate) dialect: Option<Dialect>,
}

fn dialect(text: &str) -> Result<Dialect, UnknownDialect> {
    Dialect::from_name(text).ok_or_else(|| UnknownDialect(text.to_owned()))
}

/// A `--dialect` value that names no dialect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UnknownDialect(pub(crate) String);

impl std::fmt::Display for UnknownDialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown dialect `{}` (s128, r96 or r72)", self.0)
    }
}

impl std::error::Error for UnknownDialect {}

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
    /// The module file (`-`: standard input).
    #[arg(value_name = "FILE")]
    pub(crate) file: String,
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

#[derive(Debug, Args)]
pub(crate) struct SymbolsArgs {
    #[command(flatten)]
    pub(crate) filter: SymbolFilterArgs,
    #[command(flatten)]
    pub(crate) dialect: DialectArg,
    /// The module file (`-`: standard input).
    #[arg(value_name = "FILE")]
    pub(crate) file: String,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Also load each module here, linked as `run` links it (architecture, relocations,
    /// imports).
    #[arg(long)]
    pub(crate) load: bool,
    /// A library the modules may import from (with --load; repeatable).
    #[arg(long = "lib", value_name = "FILE", requires = "load")]
    pub(crate) libs: Vec<String>,
    #[command(flatten)]
    pub(crate) dialect: DialectArg,
    /// The module files (`-`: standard input).
    #[arg(value_name = "FILE", required = true)]
    pub(crate) files: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct PackArgs {
    /// The ELF objects, combined as `ld -r` would.
    #[arg(value_name = "INPUT.o", required = true)]
    pub(crate) inputs: Vec<PathBuf>,
    /// The module to write.
    #[arg(short = 'o', value_name = "OUTPUT.smf", required = true)]
    pub(crate) output: PathBuf,
    /// The dialect to write.
    #[arg(long, value_name = "s128|r96|r72", value_parser = dialect, default_value = "s128")]
    pub(crate) dialect: Dialect,
    /// No notes.
    #[arg(long, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    /// Also the notes every object gets (unwind tables, compiler identification dropped).
    #[arg(long)]
    pub(crate) verbose: bool,
}

/// What `smf run` prints the called function's result as.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub(crate) enum Returns {
    /// A 64-bit integer (`long`), in decimal.
    #[default]
    I64,
    /// A `double`, as Rust prints it (shortest form that reads back the same).
    F64,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// A library to load first, whose exports the module may import (repeatable).
    #[arg(long = "lib", value_name = "FILE")]
    pub(crate) libs: Vec<String>,
    /// A native shared library (as `dlopen` finds it: `libstdc++.so.6`, a path) the modules
    /// link against, after the --lib modules and before the C library (repeatable).
    #[arg(long = "native", value_name = "LIBRARY")]
    pub(crate) natives: Vec<String>,
    /// Do not link against the C library and libm (the libraries only).
    #[arg(long)]
    pub(crate) no_libc: bool,
    /// What the function returns.
    #[arg(long, value_enum, default_value_t = Returns::I64)]
    pub(crate) ret: Returns,
    /// The module file (`-`: standard input).
    #[arg(value_name = "FILE")]
    pub(crate) file: String,
    /// The exported function to call (default: the entry point).
    #[arg(value_name = "SYMBOL")]
    pub(crate) symbol: Option<String>,
    /// Up to 6 integer arguments (decimal or 0x hex; negative numbers are values).
    #[arg(value_name = "ARG", allow_negative_numbers = true, num_args = 0..=6)]
    pub(crate) args: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct PrefetchArgs {
    /// Worker threads (default: the machine's cores).
    #[arg(long, value_name = "N")]
    pub(crate) threads: Option<NonZeroUsize>,
    /// The module files.
    #[arg(value_name = "FILE", required = true)]
    pub(crate) files: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_dialect_is_a_typed_refusal() {
        assert_eq!(dialect("r96"), Ok(Dialect::R96));
        assert_eq!(dialect("elf64"), Err(UnknownDialect("elf64".into())));
        assert_eq!(UnknownDialect("elf64".into()).to_string(), "unknown dialect `elf64` (s128, r96 or r72)");
    }
}
