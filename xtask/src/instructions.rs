//! Instructions counted by valgrind's callgrind: the one measure of a benchmark that does not
//! drift with the machine's load (`cargo xtask callgrind`, the `real` benchmark).

use std::path::Path;
use std::process::Command;

/// Uses before the counted ones in a child, so that one-time costs (the allocator's first
/// region, the name hash key, the C library's lazy set-up) fall outside the difference.
pub(crate) const WARM_UP: usize = 10;

/// Total instructions of one run of `callgrind-child ARGS` under callgrind.
pub(crate) fn of_child(args: &[String], out: &Path) -> Result<u64, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let status = Command::new("valgrind")
        .args(["--tool=callgrind", "--quiet"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        .arg("callgrind-child")
        .args(args)
        .status()
        .map_err(|e| format!("valgrind: {e}"))?;
    if !status.success() {
        return Err(format!("callgrind run failed ({status})"));
    }
    let text = std::fs::read_to_string(out).map_err(|e| e.to_string())?;
    text.lines()
        .find_map(|line| line.strip_prefix("summary:").or_else(|| line.strip_prefix("totals:")))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("{}: no instruction total", out.display()))
}
