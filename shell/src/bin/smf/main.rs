//! The `smf` command-line tool; see `smf help`. `pack` lives in the binary (it reads ELF with
//! the `object` crate, which the library does not link), and so does the crash reporter of
//! `smf run` (process-wide signal handlers); everything else is `smf::cli`.

// The crash reporter's signal handlers are C callbacks over libc.
#![allow(unsafe_code)]

mod crash;
mod elf;
mod pack;
mod packer;
mod relax;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "run") {
        crash::install();
    }
    let status =
        if args.first().is_some_and(|a| a == "pack") { pack::run(&args[1..]) } else { smf::cli::run(&args) };
    std::process::exit(status);
}
