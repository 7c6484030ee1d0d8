//! `cargo xtask examples`: the example modules shipped in `examples/`, written with the
//! core's builder, and `--check` that the committed files are current.

use std::fs;

use smf_core::write::samples;
use smf_core::Dialect;

use crate::workspace_root;

/// Every example: file name and bytes.
fn examples() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for d in Dialect::ALL {
        let lower = d.name().to_ascii_lowercase();
        out.push((format!("return42.{lower}.smf"), samples::return_42(d)));
        out.push((format!("rich.{lower}.smf"), samples::rich(d)));
    }
    out
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let check = args.iter().any(|a| a == "--check");
    let dir = workspace_root().join("examples");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut stale = Vec::new();
    for (name, bytes) in examples() {
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
