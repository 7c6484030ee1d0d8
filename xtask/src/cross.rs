//! `cargo xtask cross-test`: the core's unit tests, the allocator, format, aarch64 loading,
//! load-time instantiation and execution manager (Cranelift for aarch64) tests, and the shell's
//! exception boundary's, built for `aarch64-unknown-linux-gnu` and run under `qemu-aarch64`, with aarch64
//! machine code (the tests' `return_const` is `movz x0, #imm; ret` there; `load_aarch64` runs
//! code patched by every aarch64 relocation kind). Installs the target and, when run as
//! root, the Debian packages `qemu-user` and `gcc-aarch64-linux-gnu` if they are missing.

use std::process::Command;

use crate::workspace_root;

const TARGET: &str = "aarch64-unknown-linux-gnu";

fn has(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed ({status})"))
    }
}

fn ensure_tools() -> Result<(), String> {
    run(Command::new("rustup").args(["target", "add", TARGET]))?;
    if has("qemu-aarch64") && has("aarch64-linux-gnu-gcc") {
        return Ok(());
    }
    println!("installing qemu-user and gcc-aarch64-linux-gnu");
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "qemu-user", "gcc-aarch64-linux-gnu"])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    if has("qemu-aarch64") && has("aarch64-linux-gnu-gcc") {
        Ok(())
    } else {
        Err("qemu-aarch64 or aarch64-linux-gnu-gcc still missing".into())
    }
}

pub(crate) fn run_command() -> Result<(), String> {
    ensure_tools()?;
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root())
        .args(["test", "--target", TARGET, "-p", "smf-format", "-p", "smf-runtime", "-p", "smf-tests"])
        .args([
            "--lib",
            "--test",
            "exec",
            "--test",
            "exec_rwx_switch",
            "--test",
            "format",
            "--test",
            "load_aarch64",
            "--test",
            "instantiate",
            "--test",
            "exec_manager",
            "--test",
            "wx",
            // One test at a time: a process qemu-user emulates that forks (a test's own fork,
            // or spawning a child) while other threads run can deadlock in the emulator, its
            // child stuck on a lock another thread held. Run so, each test is alone.
            "--",
            "--test-threads=1",
        ])
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", "aarch64-linux-gnu-gcc")
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER", "qemu-aarch64 -L /usr/aarch64-linux-gnu");
    run(&mut cmd)?;
    // The shell's boundary for exceptions (its own assembly and unwind table for each
    // architecture): a foreign exception stopped, a Rust panic let through.
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root())
        .args(["test", "--target", TARGET, "-p", "smf-loader", "--lib", "catch::"])
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", "aarch64-linux-gnu-gcc")
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER", "qemu-aarch64 -L /usr/aarch64-linux-gnu");
    run(&mut cmd)
}
