//! `smf run` under `perf record`: perf names samples in code no file describes only through a
//! perf map, which the library writes with `SMF_PERF_MAP=1`. When `smf` finds perf as its
//! parent (`perf record -- smf run ...`) and the variable unset, it turns the map on for itself
//! and says so on stderr; `SMF_PERF_MAP=0` keeps it off.

use smf::debug::perf_map::PERF_MAP_ENV;

/// Turns the perf map on when perf runs this process and nothing said otherwise (before any
/// thread starts: it sets the process's environment).
pub(crate) fn map_for_perf() {
    if std::env::var_os(PERF_MAP_ENV).is_some() || !parent_is_perf() {
        return;
    }
    // SAFETY: called first thing in `main`, before any thread of this process starts, so no
    // other thread reads or writes the environment meanwhile.
    unsafe { std::env::set_var(PERF_MAP_ENV, "1") };
    let map = smf::debug::perf_map::path_for(std::process::id());
    eprintln!(
        "smf: perf is recording: module functions are named in {} ({PERF_MAP_ENV}=0: not)",
        map.display()
    );
}

/// Whether this process's parent is a program named `perf`.
fn parent_is_perf() -> bool {
    use std::io::Read as _;
    let parent = std::os::unix::process::parent_id();
    // One read (a name is at most 16 bytes and a newline), not a read to the end: every
    // `smf run` asks, at its start.
    let mut name = [0u8; 32];
    let read = std::fs::File::open(format!("/proc/{parent}/comm")).and_then(|mut comm| comm.read(&mut name));
    read.is_ok_and(|len| name.get(..len) == Some(b"perf\n"))
}
