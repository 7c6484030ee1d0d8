//! The `smf` command-line tool; see `smf --help`.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(smf::cli::run(&args));
}
