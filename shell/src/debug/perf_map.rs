//! The perf map: with `SMF_PERF_MAP=1`, each loaded module's functions are appended to
//! `/tmp/perf-PID.map` (where `perf report` looks, whatever `TMPDIR` says), one `START SIZE
//! NAME` line each (hexadecimal start and size), which perf reads to name samples in code no
//! file on disk describes. A module's lines go out in one `write(2)` to the file opened once in
//! append mode, so loads on several threads never interleave their lines; no lock is held.
//!
//! The path is predictable, so the file is opened as a planted one cannot be abused: never
//! through a symbolic link (`O_NOFOLLOW`), never a FIFO or device (`O_NONBLOCK`, then a regular
//! file or nothing), only a file of this user's with one name (a hard link to another file is
//! refused): otherwise the process runs without a map. A forked child opens a map of its own
//! (its PID's) at its first load rather than writing into its parent's.
//!
//! The map only grows: a module released and another loaded at its address leave both lines
//! (as every JIT's perf map does). A map an earlier process of the same PID left behind (PIDs
//! are reused; perf maps are kept for `perf report`) is emptied when this process opens it, by
//! the one thread that opens it, before any line of this process is written.

#![allow(unsafe_code)] // the published map, a raw pointer never freed

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::sync::OnceLock;

use smf_runtime::load::LoadedModule;

use super::functions::Functions;

/// The environment variable that turns the perf map on.
pub const PERF_MAP_ENV: &str = "SMF_PERF_MAP";

/// A process's map: the process it was opened for, and the file (`None` if it could not be
/// opened safely).
struct Map {
    pid: u32,
    file: Option<File>,
}

/// The map of the process that opened it last, never freed (a process opens one, and a forked
/// child one more): a child finds its parent's here, with another PID, and opens its own.
static MAP: AtomicPtr<Map> = AtomicPtr::new(std::ptr::null_mut());

/// The PID of the process one of whose threads is opening its map (0: none yet): the others of
/// that process wait for [`MAP`] to hold it. A forked child finds its parent's PID here (a
/// parent's thread may have been opening when it forked) and opens its own.
static OPENER: AtomicU32 = AtomicU32::new(0);

/// The map's path for the process `pid`.
pub fn path_for(pid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/perf-{pid}.map"))
}

/// The map's path for this process.
pub fn path() -> PathBuf {
    path_for(std::process::id())
}

/// Whether `SMF_PERF_MAP=1` is set (read once).
pub(crate) fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os(PERF_MAP_ENV).is_some_and(|v| v == "1"))
}

/// Opens the map at `path` for appending, as the module doc says (`None`: refused or failed).
fn open_safely(path: &std::path::Path) -> Option<File> {
    // O_NOFOLLOW (`ELOOP` on a link), O_NONBLOCK (a FIFO without a reader fails instead of
    // blocking), O_CLOEXEC (std's default).
    const O_NOFOLLOW: i32 = 0o400_000;
    const O_NONBLOCK: i32 = 0o4_000;
    let file = File::options()
        .create(true)
        .append(true)
        .mode(0o644)
        .custom_flags(O_NOFOLLOW | O_NONBLOCK)
        .open(path)
        .ok()?;
    let metadata = file.metadata().ok()?;
    let euid = rustix::process::geteuid().as_raw();
    let ours = metadata.file_type().is_file() && metadata.nlink() == 1 && metadata.uid() == euid;
    // Ours, and opened once per process: what it holds is an earlier process's.
    (ours && file.set_len(0).is_ok()).then_some(file)
}

/// This process's map file, opened at the first write (`None` if it cannot be).
fn map() -> Option<&'static File> {
    let pid = std::process::id();
    loop {
        // SAFETY: a published map is never freed; its fields never change.
        if let Some(map) = unsafe { MAP.load(Ordering::Acquire).as_ref() }.filter(|map| map.pid == pid) {
            return map.file.as_ref();
        }
        let opener = OPENER.load(Ordering::Acquire);
        if opener == pid {
            // Another thread of this process is opening it (an open and a truncation).
            std::thread::yield_now();
            continue;
        }
        if OPENER.compare_exchange(opener, pid, Ordering::AcqRel, Ordering::Acquire).is_err() {
            continue;
        }
        // This thread alone opens the process's map, and empties it before anyone writes.
        let fresh = Box::into_raw(Box::new(Map { pid, file: open_safely(&path_for(pid)) }));
        MAP.store(fresh, Ordering::Release);
        // SAFETY: just published, never freed.
        return unsafe { (*fresh).file.as_ref() };
    }
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
    let mut lines = String::with_capacity(functions.iter().len() * 32);
    for function in functions.named() {
        let Some(name) = function.name(module) else { continue };
        let name = String::from_utf8_lossy(name);
        // One line per function; a name cannot break the line.
        let name = name.replace(['\n', '\r'], " ");
        use std::fmt::Write as _;
        let _ = writeln!(lines, "{:x} {:x} {name} [{label}]", function.start, function.size.max(1));
    }
    // A failed write loses profiling names, never the load.
    let _ = file.write_all(lines.as_bytes());
}
