//! The command line itself: usage errors (exit 2), help and version, `--opt=value`, options
//! after the file, and `-` for standard input.

use serde_json::Value;
use smf_format::write::samples;
use smf_format::Dialect;

use crate::{example, scratch, smf, smf_with_stdin, write};

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["verify"][..],
        &["frobnicate"][..],
        &["inspect"][..],
        &["inspect", "--bogus", "x"][..],
        &["symbols", "--defined", "--undefined", "x"][..],
        &["pack", "a.o"][..],
        &["pack", "a.o", "-o", "b.smf", "--quiet", "--verbose"][..],
        &["prefetch", "--threads", "0", "x"][..],
        &["run", "x", "--ret", "i128"][..],
    ] {
        let o = smf(args);
        assert_eq!(o.status, 2, "{args:?}");
        // Clap's errors: what was wrong, then the usage (or, for a bad value, what it takes).
        assert!(o.err.contains("Usage: smf") || o.err.contains("invalid value"), "{args:?}: {}", o.err);
    }
    let help = smf(&["help"]);
    assert_eq!(help.status, 0);
    assert!(help.out.contains("inspect") && help.out.contains("prefetch"), "{}", help.out);
}

#[test]
fn the_tool_has_a_version_help_per_command_and_the_usual_option_forms() {
    let version = smf(&["--version"]);
    assert_eq!(
        (version.status, version.out.as_str()),
        (0, format!("smf {}\n", env!("CARGO_PKG_VERSION")).as_str())
    );
    // Help for one command, not the whole usage.
    let help = smf(&["run", "--help"]);
    assert_eq!(help.status, 0);
    assert!(help.out.contains("Usage: smf run") && help.out.contains("--no-libc"), "{}", help.out);
    assert!(!help.out.contains("prefetch"), "{}", help.out);
    // `run` parses with its own declarations alone unless help is asked (the tool's start):
    // its usage errors and help are the whole tool's.
    let bogus = smf(&["run", "--bogus", "x.smf"]);
    assert_eq!(bogus.status, 2);
    let usage = "Usage: smf run [OPTIONS] <FILE> [SYMBOL] [ARG]... [-- <PROGRAM_ARG>...]";
    assert!(
        bogus.err.contains("unexpected argument '--bogus'") && bogus.err.contains(usage),
        "{}",
        bogus.err
    );
    let help = smf(&["run", "x.smf", "-h"]);
    assert_eq!(help.status, 0);
    assert!(help.out.starts_with("Load FILE and call a function in it"), "{}", help.out);
    // pack's says what it links as gcc's driver does and where shared libraries come in.
    let help = smf(&["pack", "--help"]);
    assert!(help.out.contains("-lgcc") && help.out.contains("--native"), "{}", help.out);
    assert!(help.out.contains("-z defs"), "{}", help.out);

    let dir = scratch("forms");
    let r96 = write(&dir, "r96.smf", &samples::return_42(Dialect::R96));
    // --opt=value, and options after FILE.
    let inline = smf(&["inspect", "--dialect=r96", &r96, "--json"]);
    assert_eq!(inline.status, 0, "{}", inline.err);
    assert_eq!(serde_json::from_str::<Value>(&inline.out).unwrap()["dialect"], "R96");
    let after = smf(&["run", &example("recursion.smf"), "fib", "10", "--ret", "i64"]);
    assert_eq!((after.status, after.out.as_str()), (0, "55\n"), "{}", after.err);
    // `-` is standard input.
    let bytes = std::fs::read(&r96).unwrap();
    let piped = smf_with_stdin(&["symbols", "-"], Some(&bytes));
    assert_eq!(piped.status, 0, "{}", piped.err);
    assert!(piped.out.contains(" main\n"), "{}", piped.out);
    let run = smf_with_stdin(&["run", "-"], Some(&bytes));
    assert_eq!((run.status, run.out.as_str()), (42, ""), "{}", run.err);
    let bad = smf_with_stdin(&["verify", "-"], Some(b"not a module"));
    assert_eq!(bad.status, 1);
    assert!(bad.err.starts_with("-: "), "{}", bad.err);
}
