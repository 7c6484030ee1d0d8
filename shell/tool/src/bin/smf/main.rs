//! The `smf` command-line tool (`smf --help`): its options (`args.rs`, clap), its commands
//! (`cli.rs`) and their errors (`error.rs`), their reports (`inspect.rs`), `pack` (`pack.rs`, over the package's library
//! [`smf_tool::pack`](mod@smf_tool::pack)) and the crash reporter of `smf run` (process-wide
//! signal handlers). The `smf` library links none of their crates.

// The crash reporter's signal handlers are C callbacks over libc.
#![allow(unsafe_code)]

mod args;
mod cli;
mod crash;
mod error;
mod inspect;
mod pack;

use clap::Parser;

fn main() {
    let command = args::Cli::parse().command;
    if matches!(command, args::Command::Run(_)) {
        crash::install();
    }
    std::process::exit(cli::run(command));
}
