//! The `smf` command-line tool (`smf --help`): its options (`args.rs`, clap), what the commands
//! share (`cli.rs`: files, exit statuses; `names.rs`; `link.rs`, how modules link;
//! `error.rs`), one module per command (`inspect`, `symbols`, `verify`, `run`, `prefetch`,
//! `ldd`, `dump` with `disasm`, and `pack` with `linker` (ld's options) and `driver` (a compiler
//! driver's) over the package's library
//! [`smf_tool::pack`](mod@smf_tool::pack)) and the crash reporter of `smf run` (process-wide
//! signal handlers). The `smf` library links none of their crates.

// The crash reporter's signal handlers are C callbacks over libc; `main` is the C library's.
#![allow(unsafe_code)]
// The C library calls `main` (below): Rust's own start-up is skipped (see there). The unit
// tests' harness has its own, which reaches none of the commands (the build without tests
// reports what is really unused).
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code))]

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

/// The program's entry, called by the C library's start-up instead of through Rust's runtime
/// start, which costs a process more than the C library's whole start (0.44 ms of CPU against
/// 0.40 for all of a C program's, `perf stat`: it reads `/proc/self/maps` to find the main
/// thread's stack, sets up a handler for stack overflows, and ignores `SIGPIPE`). Without it,
/// `smf run` starts a packed program within reach of the native one's start
/// (`run_startup_vs_native`). What the tool keeps of a Rust program's start: the arguments
/// (the standard library reads them from the C library's start-up on its own), standard output
/// flushed at the end (by [`std::process::exit`], which every path ends with); what it does
/// not: `SIGPIPE` is left as the parent gave it, as a C program's is (a listing piped into
/// `head` ends quietly, by the signal, rather than with an error), and a stack overflow ends in
/// a plain `SIGSEGV` without Rust's message.
#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: std::ffi::c_int, _argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
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
