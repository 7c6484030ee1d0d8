//! The `smf` command-line tool (`smf --help`): its options (`args.rs`, clap), what the commands
//! share (`cli.rs`: files, exit statuses; `names.rs`; `link.rs`, how modules link;
//! `error.rs`), one module per command (`inspect`, `symbols`, `verify`, `run`, `prefetch`,
//! `ldd`, `dump` with `disasm`, and `pack` with `linker` (ld's options) and `driver` (a compiler
//! driver's) over the package's library
//! [`smf_tool::pack`](mod@smf_tool::pack)) and the crash reporter of `smf run` (process-wide
//! signal handlers). The `smf` library links none of their crates.

// The crash reporter's signal handlers are C callbacks over libc.
#![allow(unsafe_code)]

mod apart;
mod args;
mod call_chain;
mod cli;
mod crash;
mod defs;
mod disasm;
mod driver;
mod dump;
mod error;
mod inspect;
mod json_out;
mod ldd;
mod link;
mod linker;
mod names;
mod needed_files;
mod pack;
mod payload;
mod perf;
mod prefetch;
mod response_files;
mod run;
mod symbol_sections;
mod symbols;
mod verify;

fn main() {
    let command = args::Cli::parse_checked().command;
    if matches!(command, args::Command::Run(_)) {
        perf::map_for_perf();
        crash::install();
        run::restore_sigpipe();
    }
    std::process::exit(dispatch(command));
}

/// Runs `command`; the exit status.
fn dispatch(command: args::Command) -> i32 {
    use args::Command;
    match command {
        Command::Inspect(args) => inspect::command(&args),
        Command::Symbols(args) => symbols::command(&args),
        Command::Verify(args) => verify::command(&args),
        Command::Pack(args) => pack::run(&args),
        Command::Run(args) => run::command(&args),
        Command::Prefetch(args) => prefetch::command(&args),
        Command::Ldd(args) => ldd::command(&args),
        Command::Dump(args) => dump::command(&args),
    }
}
