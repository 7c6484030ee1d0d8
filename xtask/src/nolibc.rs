//! `cargo xtask nolibc`: builds `nolibc/` (`smf-nolibc`, a static x86-64 loader with no libc
//! and no dynamic loader, over `smf-runtime`) in release mode and prints the binary's path as its
//! last line. Its own workspace and link flags (`nolibc/.cargo/config.toml`, `nolibc/build.rs`);
//! flags from the environment are removed, since they would replace those.

use std::path::PathBuf;
use std::process::Command;

use crate::workspace_root;

/// Builds the loader; its path.
pub(crate) fn build() -> Result<PathBuf, String> {
    build_into("target", &[])
}

/// Builds the loader as [`build`] does, with the profile settings `env` adds, into
/// `nolibc/<target_dir>`; its path.
pub(crate) fn build_into(target_dir: &str, env: &[(&str, &str)]) -> Result<PathBuf, String> {
    let dir = workspace_root().join("nolibc");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&dir)
        .args(["build", "--release", "--locked", "--quiet", "--target-dir"])
        .arg(dir.join(target_dir))
        .envs(env.iter().copied())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .map_err(|e| format!("cargo build (nolibc): {e}"))?;
    if !status.success() {
        return Err("building nolibc/ failed".into());
    }
    Ok(dir.join(target_dir).join("release/smf-nolibc"))
}

pub(crate) fn run_command() -> Result<(), String> {
    if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        return Err("smf-nolibc is an x86-64 Linux program".into());
    }
    let path = build()?;
    println!("{}", path.display());
    Ok(())
}
