//! `smf run` under `perf record`: perf names samples in code no file describes only through a
//! perf map, which the library writes with `SMF_PERF_MAP=1`. When `smf` finds perf sampling as
//! its parent (`perf record -- smf run ...`, `perf top`) and the variable unset, it turns the
//! map on for itself and says so on stderr; `SMF_PERF_MAP=0` keeps it off. Under `perf stat`,
//! which counts and names nothing, no map is written (one per run would be left in /tmp).

use smf::debug::perf_map::PERF_MAP_ENV;

/// Turns the perf map on when perf runs this process and nothing said otherwise (before any
/// thread starts: it sets the process's environment).
pub(crate) fn map_for_perf() {
    if std::env::var_os(PERF_MAP_ENV).is_some() || !parent_is_perf_sampling() {
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

/// Whether this process's parent is a program named `perf` that samples (see [`samples`]).
fn parent_is_perf_sampling() -> bool {
    let parent = std::os::unix::process::parent_id();
    // A name is at most 16 bytes and a newline.
    let mut name = [0u8; 32];
    if read_once(&format!("/proc/{parent}/comm"), &mut name) != Some(b"perf\n") {
        return false;
    }
    let mut cmdline = [0u8; 4096];
    read_once(&format!("/proc/{parent}/cmdline"), &mut cmdline).is_some_and(samples)
}

/// What one read of the file at `path` puts into `buffer` (not a read to the end: every `smf
/// run` asks, at its start); `None` if it cannot be read.
fn read_once<'b>(path: &str, buffer: &'b mut [u8]) -> Option<&'b [u8]> {
    use std::io::Read as _;
    let len = std::fs::File::open(path).and_then(|mut file| file.read(buffer)).ok()?;
    buffer.get(..len)
}

/// Whether perf's command line `cmdline` (its arguments, each ended by a NUL, its name first)
/// asks it to sample: `record` or `top` among its first three words that are not options,
/// before a `--` (`perf record ...`, `perf top`, `perf sched record ...`; not `perf stat`).
fn samples(cmdline: &[u8]) -> bool {
    cmdline
        .split(|&byte| byte == 0)
        .skip(1)
        .take_while(|arg| *arg != b"--")
        .filter(|arg| !arg.starts_with(b"-"))
        .take(3)
        .any(|arg| arg == b"record" || arg == b"top")
}

#[cfg(test)]
mod tests {
    use super::samples;

    #[test]
    fn perf_samples_when_it_records_or_shows_the_top_not_when_it_counts() {
        // A command line as /proc/PID/cmdline has it: each argument ended by a NUL.
        let line =
            |args: &[&str]| samples(&args.iter().flat_map(|a| a.bytes().chain([0])).collect::<Vec<u8>>());
        assert!(line(&["perf", "record", "-g", "--", "smf", "run", "x.smf"]));
        assert!(line(&["/usr/bin/perf", "top"]));
        assert!(line(&["perf", "sched", "record", "smf", "run", "x.smf"]));
        assert!(!line(&["perf", "stat", "-r", "300", "smf", "run", "x.smf"]));
        assert!(!line(&["perf", "stat", "--", "smf", "run", "record"]), "the program's words do not count");
        assert!(!line(&[]));
    }
}
