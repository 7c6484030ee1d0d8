//! The loader without libc (`cargo xtask nolibc`): a static executable with no interpreter and
//! no shared libraries that loads modules of every dialect with `smf-core` alone, exits with
//! the entry point's result, and refuses a bad module with one line naming what and where.

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use smf_tests::workspace;

/// Builds the loader through the task users run; its path (the task's last line).
fn build() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace())
        .args(["run", "-q", "-p", "xtask", "--", "nolibc"])
        .output()
        .expect("run cargo xtask nolibc");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(stdout.lines().last().expect("the binary's path"))
}

fn run(loader: &Path, args: &[&Path]) -> Output {
    Command::new(loader).args(args).output().expect("run smf-nolibc")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_loader_without_libc_runs_modules_and_refuses_bad_ones() {
    let loader = build();

    // Static, with no interpreter and no shared libraries.
    let readelf = |flag: &str| {
        let out = Command::new("readelf").arg(flag).arg(&loader).output().expect("run readelf");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let headers = readelf("-lW");
    assert!(headers.contains("LOAD") && !headers.contains("INTERP"), "{headers}");
    let dynamic = readelf("-dW");
    assert!(dynamic.contains("There is no dynamic section"), "{dynamic}");
    assert!(!dynamic.contains("NEEDED"));

    // Every dialect: the entry point's result is the exit status.
    for dialect in ["s128", "r96", "r72"] {
        let module = workspace().join(format!("examples/return42.{dialect}.smf"));
        let out = run(&loader, &[&module]);
        assert_eq!(out.status.code(), Some(42), "{dialect}: {}", stderr(&out));
        assert!(out.stderr.is_empty());
    }
    // C packed into a module: fib(20) = 6765, whose low byte is the status.
    let out = run(&loader, &[&workspace().join("examples/recursion.smf")]);
    assert_eq!(out.status.code(), Some(6765 & 0xFF), "{}", stderr(&out));

    // Refusals: one line each, naming the file, what and where; status 1.
    let scratch = smf_tests::scratch("nolibc", "bad");
    let garbage = scratch.join("garbage.smf");
    std::fs::write(&garbage, [b"definitely not a module ".as_slice(); 20].concat()).unwrap();
    let mut truncated = std::fs::read(workspace().join("examples/return42.r96.smf")).unwrap();
    truncated.truncate(120);
    let cut = scratch.join("truncated.smf");
    std::fs::write(&cut, truncated).unwrap();
    let cases: [(&Path, &str); 4] = [
        (&garbage, "no SMF magic"),
        (&cut, "truncated.smf: "),
        (&scratch.join("missing.smf"), "missing.smf: "),
        (&workspace().join("examples/app.smf"), "unresolved import `gcd`"),
    ];
    for (module, expected) in cases {
        let out = run(&loader, &[module]);
        let message = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{}: {message}", module.display());
        assert!(message.starts_with("smf-nolibc: ") && message.contains(expected), "{message}");
        assert_eq!(message.lines().count(), 1, "{message}");
    }
    let usage = run(&loader, &[]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(stderr(&usage).contains("usage: smf-nolibc"));
}
