//! The `smf` command-line tool; see `smf help`. `pack` lives in the binary (it reads ELF with
//! the `object` crate, which the library does not link); everything else is `smf::cli`.

mod pack;
mod relax;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let status =
        if args.first().is_some_and(|a| a == "pack") { pack::run(&args[1..]) } else { smf::cli::run(&args) };
    std::process::exit(status);
}
