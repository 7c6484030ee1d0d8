//! The `bench` and `callgrind` tasks from the `cargo xtask` alias, which builds xtask without
//! the `bench` feature (so that the other tasks, a newcomer's `install` among them, build none
//! of the benchmarks' heavy dependencies): they run in a build of xtask with it, made on first
//! use in a target directory of its own (`target/xtask-bench`, so that the two builds do not
//! replace each other's binary), with the same arguments.

use std::process::Command;

use crate::workspace_root;

/// Runs `args` (a performance task and its arguments) in xtask built with `bench`.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = workspace_root().join("target").join("xtask-bench");
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["run", "--quiet", "--release", "--locked", "--package", "xtask", "--target-dir"])
        .arg(&target)
        .arg("--")
        .args(args)
        .status()
        .map_err(|e| format!("cargo run (xtask with the bench feature): {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed ({status})", args.first().map_or("the task", String::as_str)))
    }
}
