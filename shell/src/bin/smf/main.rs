//! The `smf` command-line tool (`smf --help`): its options (`args.rs`, clap), its commands
//! (`cli.rs`), their reports (`inspect.rs`), `pack` (`pack.rs`, `packer.rs`, `elf.rs`,
//! `relax.rs`: ELF objects read with the `object` crate) and the crash reporter of `smf run`
//! (process-wide signal handlers). The library links none of their crates.

// The crash reporter's signal handlers are C callbacks over libc.
#![allow(unsafe_code)]

mod args;
mod cli;
mod crash;
mod elf;
mod inspect;
mod pack;
mod packer;
mod relax;

use clap::Parser;

fn main() {
    let command = args::Cli::parse().command;
    if matches!(command, args::Command::Run(_)) {
        crash::install();
    }
    std::process::exit(cli::run(command));
}
