//! The perf map: with `SMF_PERF_MAP=1`, each loaded module's functions are appended to
//! `/tmp/perf-PID.map`, one `START SIZE NAME` line each (hexadecimal start and size), which
//! `perf report` reads to name samples in code no file on disk describes. A module's lines go
//! out in one `write(2)` to the file opened once in append mode, so loads on several threads
//! never interleave their lines; no lock is held for it.
//!
//! The map only grows: a module released and another loaded at its address leave both lines
//! (as every JIT's perf map does).

use std::fs::File;
use std::io::Write as _;
use std::sync::OnceLock;

use smf_runtime::load::LoadedModule;

use super::functions::Functions;

/// The environment variable that turns the perf map on.
pub const PERF_MAP_ENV: &str = "SMF_PERF_MAP";

/// The map file, opened at the first module loaded with the map on (`None` if it cannot be).
static MAP: OnceLock<Option<File>> = OnceLock::new();

/// The map's path for this process.
pub fn path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("perf-{}.map", std::process::id()))
}

/// Whether `SMF_PERF_MAP=1` is set (read once).
pub(crate) fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os(PERF_MAP_ENV).is_some_and(|v| v == "1"))
}

/// The map file, opened at the first write (`None` if it cannot be).
fn map() -> Option<&'static File> {
    MAP.get_or_init(|| File::options().create(true).append(true).open(path()).ok()).as_ref()
}

/// Appends one function (`name`, `len` bytes at `address`), named `NAME [LABEL]`, to the map.
pub(crate) fn append_one(name: &[u8], address: usize, len: usize, label: &str) {
    let Some(mut file) = map() else { return };
    let name = String::from_utf8_lossy(name).replace(['\n', '\r'], " ");
    let line = format!("{address:x} {:x} {name} [{label}]\n", len.max(1));
    let _ = file.write_all(line.as_bytes());
}

/// Appends `module`'s functions (`functions`, but for labels at a sized function's start),
/// each named `NAME [LABEL]`, to the map.
pub(crate) fn append(module: &LoadedModule<'_>, functions: &Functions, label: &str) {
    let Some(mut file) = map() else { return };
    let symbols = module.symbols();
    let mut lines = String::with_capacity(functions.iter().len() * 32);
    for function in functions.named() {
        let Some(name) = symbols.name(function.symbol) else { continue };
        let name = String::from_utf8_lossy(name);
        // One line per function; a name cannot break the line.
        let name = name.replace(['\n', '\r'], " ");
        use std::fmt::Write as _;
        let _ = writeln!(lines, "{:x} {:x} {name} [{label}]", function.start, function.size.max(1));
    }
    // A failed write loses profiling names, never the load.
    let _ = file.write_all(lines.as_bytes());
}
