//! `cargo xtask examples`: the example modules shipped in `examples/`, and `--check` that the
//! committed files are current.
//!
//! Two kinds: modules written with the core's builder (the spec's "return 42" in every dialect,
//! a module using every feature, the load-time instantiation example), and C programs in `examples/c/` compiled by gcc
//! (`-O2 -fPIC`) and packed by `smf pack`.

use std::fs;
use std::path::Path;
use std::process::Command;

use smf_format::write::samples;
use smf_format::Dialect;

use crate::workspace_root;

/// The C examples: source stem and the dialect it is packed in.
const C_EXAMPLES: [(&str, Dialect); 5] = [
    ("recursion", Dialect::S128),
    ("strings", Dialect::R96),
    ("globals", Dialect::S128),
    ("mathlib", Dialect::R96),
    ("app", Dialect::S128),
];

/// Compiles `examples/c/{stem}.c` and packs it; returns the module's bytes.
fn packed(stem: &str, dialect: Dialect, scratch: &Path) -> Result<Vec<u8>, String> {
    let root = workspace_root();
    let object = scratch.join(format!("{stem}.o"));
    let module = scratch.join(format!("{stem}.smf"));
    let gcc = Command::new("gcc")
        .args(["-c", "-O2", "-fPIC"])
        .arg(root.join("examples/c").join(format!("{stem}.c")))
        .arg("-o")
        .arg(&object)
        .status()
        .map_err(|e| format!("gcc: {e}"))?;
    if !gcc.success() {
        return Err(format!("gcc failed on {stem}.c"));
    }
    let pack = Command::new(crate::release_smf()?.join("smf"))
        .current_dir(&root)
        .arg("pack")
        .arg(&object)
        .arg("-o")
        .arg(&module)
        .args(["--dialect", &dialect.name().to_ascii_lowercase()])
        .output()
        .map_err(|e| format!("smf pack: {e}"))?;
    if !pack.status.success() {
        return Err(format!("smf pack {stem}.o: {}", String::from_utf8_lossy(&pack.stderr)));
    }
    fs::read(&module).map_err(|e| format!("{}: {e}", module.display()))
}

/// Every example: file name and bytes.
fn examples(scratch: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    for d in Dialect::ALL {
        let lower = d.name().to_ascii_lowercase();
        out.push((format!("return42.{lower}.smf"), samples::return_42(d)));
        out.push((format!("rich.{lower}.smf"), samples::rich(d)));
    }
    out.push(("generics.smf".into(), samples::generics()));
    for (stem, dialect) in C_EXAMPLES {
        out.push((format!("{stem}.smf"), packed(stem, dialect, scratch)?));
    }
    Ok(out)
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let check = args.iter().any(|a| a == "--check");
    let dir = workspace_root().join("examples");
    let scratch = workspace_root().join("target").join("examples-build");
    fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let mut stale = Vec::new();
    for (name, bytes) in examples(&scratch)? {
        let path = dir.join(&name);
        if check {
            if fs::read(&path).ok().as_deref() != Some(bytes.as_slice()) {
                stale.push(name);
            }
        } else {
            fs::write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            println!("wrote {} ({} bytes)", path.display(), bytes.len());
        }
    }
    if stale.is_empty() {
        Ok(())
    } else {
        Err(format!("examples out of date (run `cargo xtask examples`): {}", stale.join(", ")))
    }
}
