//! The `read_file` target: the core's file reading (`smf_runtime::file::read_module`, what every
//! module path goes through, with or without libc) on files the input makes: regular files
//! small and past the size where their ends are checked first (the input's bytes at both
//! ends, zeros between), FIFOs whose writer sends the input's bytes and closes or stalls, directories,
//! paths where nothing is, symbolic links to any of these; under limits the input chooses,
//! with a writer still holding the file open or not, and a wall clock that is right, far
//! ahead, behind the file, stopped at its change or unreadable. What must hold: bytes read are exactly the file's;
//! each refusal is the one the file calls for (a directory, a size over the limit, ends no
//! module has, a stream past the limit or idle, a file never left alone), and formats.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbitrary::{Arbitrary, Unstructured};
use smf_format::detect::{check_ends, END_BYTES};
use smf_runtime::file::{read_module, Clocks, ReadError, ReadLimits, CHECK_ENDS_FROM};

use super::{module_files, workers};

/// What the path names.
#[derive(Arbitrary, Debug)]
enum Kind {
    /// A regular file of these bytes.
    Small(Vec<u8>),
    /// A regular file of [`CHECK_ENDS_FROM`] plus `extra` bytes, `head` at its start (after
    /// the SMF magic if `magic`) and `tail` at its end (zeros between).
    Large { magic: bool, head: Vec<u8>, tail: Vec<u8>, extra: u16 },
    /// A FIFO whose writer sends these bytes, then closes it (or keeps it open, sending
    /// nothing more).
    Fifo { bytes: Vec<u8>, closes: bool },
    /// A directory.
    Directory,
    /// Nothing.
    Missing,
}

/// The wall clock the settle rule reads.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
enum Clock {
    /// The system's.
    Right,
    /// A day ahead: every file long left alone.
    Ahead,
    /// The Unix epoch: a file changed "after now" has no age, which the rule takes as left
    /// alone.
    Behind,
    /// Stopped at the file's own status change: a file changed "just now", for ever, which a
    /// writer still holding it keeps from settling.
    Frozen,
    /// Unreadable: the settle rule is skipped.
    Unreadable,
}

/// One input's file and how it is read.
#[derive(Arbitrary, Debug)]
struct Setup {
    kind: Kind,
    /// Through a symbolic link.
    linked: bool,
    /// A writer of ours holds a regular file open while it is read.
    writer_open: bool,
    clock: Clock,
    /// The size limit, chosen among a few (by index).
    limit: u8,
    /// Whether files must have been left alone 1 ms before they are read (else 0).
    settle: bool,
}

/// The size limits an input chooses among.
const LIMITS: [u64; 5] = [0, 16, 4096, CHECK_ENDS_FROM + 100, 1 << 30];
/// How long a stream may send nothing while its writer stalls (what the reader then waits).
const IDLE: Duration = Duration::from_millis(20);
/// How long a stream may send nothing when its writer closes it: long enough for any writer
/// thread to be scheduled, so that a closing writer's stream is never read as idle.
const IDLE_CLOSING: Duration = Duration::from_secs(5);
/// The most bytes written to a FIFO (a pipe holds 64 KiB).
const PIPE_BYTES: usize = 16 << 10;

/// The clock of the current input (a [`Clock`] as a number: `read_module` takes a plain fn).
static CLOCK: AtomicU8 = AtomicU8::new(0);
/// The status-change time of the current input's file, in nanoseconds since the epoch (what
/// [`Clock::Frozen`] reads).
static FROZEN_AT: AtomicU64 = AtomicU64::new(0);

/// The input's clock, as both of a read's clocks (each of its kinds is one a monotonic clock can
/// be: running, ahead, stopped, missing).
const CLOCKS: Clocks = Clocks { wall: clock, monotonic: clock };

fn clock() -> Option<Duration> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok();
    match CLOCK.load(Ordering::Relaxed) {
        0 => now,
        1 => now.map(|now| now + Duration::from_secs(86_400)),
        2 => Some(Duration::from_secs(1)),
        3 => Some(Duration::from_nanos(FROZEN_AT.load(Ordering::Relaxed))),
        _ => None,
    }
}

/// Stops [`Clock::Frozen`] at the status change of the file at `path`.
fn freeze_at(path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let changed = std::fs::metadata(path).map_or(0, |m| {
        u64::try_from(m.ctime()).unwrap_or(0).saturating_mul(1_000_000_000)
            + u64::try_from(m.ctime_nsec()).unwrap_or(0)
    });
    FROZEN_AT.store(changed, Ordering::Relaxed);
}

/// Makes the file `data` describes, reads it and checks the outcome; returns the bytes read.
pub fn fuzz_read_file(data: &[u8]) -> usize {
    let Ok(setup) = Setup::arbitrary(&mut Unstructured::new(data)) else { return 0 };
    let limits = ReadLimits {
        max_bytes: LIMITS[usize::from(setup.limit) % LIMITS.len()],
        stream_idle: IDLE,
        settle: if setup.settle { Duration::from_millis(1) } else { Duration::ZERO },
        ..ReadLimits::default()
    };
    CLOCK.store(setup.clock as u8, Ordering::Relaxed);
    let dir = module_files::directory();
    let target = dir.join("read-file-target");
    let link = dir.join("read-file-link");
    for old in [&target, &link] {
        let _ = std::fs::remove_file(old).or_else(|_| std::fs::remove_dir(old));
    }
    let path = if setup.linked { &link } else { &target };
    if setup.linked && symlink(&target, &link).is_err() {
        return 0;
    }
    let c_path = CString::new(path.as_os_str().as_encoded_bytes()).unwrap_or_default();
    let mut buffer = Vec::new();
    match &setup.kind {
        Kind::Small(bytes) => {
            let Some(writer) = made(&target, bytes) else { return 0 };
            freeze_at(&target);
            let writer = setup.writer_open.then_some(writer);
            let got = read_module(&c_path, &limits, CLOCKS, &mut buffer);
            drop(writer);
            regular(got, &buffer, bytes, &setup, &limits);
        }
        Kind::Large { magic, head, tail, extra } => {
            let len = CHECK_ENDS_FROM + u64::from(*extra);
            let head = if *magic { [&smf_format::wire::MAGIC[..], head].concat() } else { head.clone() };
            let Some(contents) = large(&head, tail, len) else { return 0 };
            let Some(writer) = made(&target, &contents) else { return 0 };
            freeze_at(&target);
            let writer = setup.writer_open.then_some(writer);
            let got = read_module(&c_path, &limits, CLOCKS, &mut buffer);
            drop(writer);
            if let Err(ReadError::NotAModule(_)) = got {
                let n = END_BYTES.min(contents.len());
                let ends = check_ends(&contents[..n], &contents[contents.len() - n..], len);
                assert!(ends.is_err(), "refused from ends a module could have");
                assert!(len <= limits.max_bytes, "refused from its ends, not its size over the limit");
            } else {
                regular(got, &buffer, &contents, &setup, &limits);
            }
        }
        Kind::Fifo { bytes, closes } => {
            let limits = ReadLimits { stream_idle: if *closes { IDLE_CLOSING } else { IDLE }, ..limits };
            fifo(&target, &c_path, bytes, *closes, &limits, &mut buffer);
        }
        Kind::Directory => {
            if std::fs::create_dir(&target).is_err() {
                return 0;
            }
            let got = read_module(&c_path, &limits, CLOCKS, &mut buffer);
            assert_eq!(got, Err(ReadError::Directory));
        }
        Kind::Missing => {
            let got = read_module(&c_path, &limits, CLOCKS, &mut buffer);
            assert!(matches!(got, Err(ReadError::Sys(_))), "nothing there, read as {got:?}");
            let _ = smf_format::fuzzing::formatted_chain(&got.unwrap_err());
        }
    }
    buffer.len()
}

/// Seeds for the target: the first of a fixed series of byte strings that decodes to each
/// combination of file kind, contents or none (for a large file: the magic or not), a writer
/// holding it or not, and clock (the
/// series is a fixed generator's, so the seeds are the same on every run).
pub fn read_file_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seen = std::collections::HashSet::new();
    let mut seeds = Vec::new();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..20_000 {
        let bytes: Vec<u8> = (0..96)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect();
        let Ok(setup) = Setup::arbitrary(&mut Unstructured::new(&bytes)) else { continue };
        let (kind, contents) = match &setup.kind {
            Kind::Small(b) => ("small", if b.is_empty() { "empty" } else { "bytes" }),
            Kind::Large { magic, .. } => ("large", if *magic { "magic" } else { "plain" }),
            Kind::Fifo { bytes, .. } => ("fifo", if bytes.is_empty() { "empty" } else { "bytes" }),
            Kind::Directory => ("directory", "none"),
            Kind::Missing => ("missing", "none"),
        };
        let key = (kind, contents, setup.writer_open, setup.clock as u8);
        if seen.insert(key) {
            let name = format!(
                "{kind}-{contents}-{}-{:?}-{i}",
                if setup.writer_open { "writer" } else { "alone" },
                setup.clock
            );
            seeds.push((name.to_lowercase(), bytes));
        }
    }
    seeds
}

/// Writes `bytes` to a new file at `path`; the writer, still open.
fn made(path: &Path, bytes: &[u8]) -> Option<std::fs::File> {
    let mut file = std::fs::File::create(path).ok()?;
    file.write_all(bytes).ok()?;
    Some(file)
}

/// The bytes of a file of `len` bytes with `head` at its start, `tail` at its end.
fn large(head: &[u8], tail: &[u8], len: u64) -> Option<Vec<u8>> {
    let mut contents = vec![0u8; usize::try_from(len).ok()?];
    let head = &head[..head.len().min(contents.len())];
    contents[..head.len()].copy_from_slice(head);
    let tail = &tail[..tail.len().min(contents.len())];
    let at = contents.len() - tail.len();
    contents[at..].copy_from_slice(tail);
    Some(contents)
}

/// A regular file's outcome: its bytes exactly, or the refusal its size or its writer calls for.
fn regular(
    got: Result<smf_runtime::file::Version, ReadError>,
    buffer: &[u8],
    contents: &[u8],
    setup: &Setup,
    limits: &ReadLimits,
) {
    let len = contents.len() as u64;
    // A clock stopped at the file's change never lets it settle: a file a writer still holds
    // is refused (the kernel says so: a read lease is refused); one nobody holds is read at
    // once, unless the kernel will not say (a file system without leases) and it is refused too.
    let never_settles = setup.clock == Clock::Frozen && !limits.settle.is_zero();
    if never_settles && setup.writer_open {
        assert!(matches!(got, Err(ReadError::StillChanging { .. })), "a file held open read as {got:?}");
    }
    match got {
        Ok(version) => {
            assert!(len <= limits.max_bytes, "read {len} bytes over the limit of {}", limits.max_bytes);
            assert_eq!(version.len, contents.len(), "read a length other than the file's");
            assert!(buffer[..version.len] == *contents, "read bytes other than the file's");
            assert_eq!(version.followed_link, setup.linked, "whether the path was a link");
        }
        Err(ReadError::TooLarge { len: refused, limit }) => {
            assert_eq!((refused, limit), (len, limits.max_bytes), "refused from a size not the file's");
            assert!(len > limits.max_bytes, "refused {len} bytes as over the limit of {limit}");
        }
        Err(ReadError::StillChanging { waited }) => {
            assert!(never_settles, "still changing after {waited:?}: {setup:?}");
            assert!(waited >= limits.settle * 40, "refused after {waited:?}, before the longest wait");
            let _ = smf_format::fuzzing::formatted(&ReadError::StillChanging { waited });
        }
        Err(other) => panic!("a regular file of {len} bytes refused: {other} ({setup:?})"),
    }
}

/// A FIFO at `path` whose writer (a kept thread, as a writing process would be) opens it once the
/// reader has, sends `bytes` (as many as the pipe takes) and closes it, or keeps it open sending
/// nothing more: read whole within the limit and once closed (the idle limit is then long
/// enough for any writer to be scheduled), refused as too large past it, idle while the writer
/// stalls (or when it was not scheduled within the short idle limit of a stall: not told apart).
fn fifo(
    path: &Path,
    c_path: &CString,
    bytes: &[u8],
    closes: bool,
    limits: &ReadLimits,
    buffer: &mut Vec<u8>,
) {
    use std::os::unix::fs::OpenOptionsExt;
    if rustix::fs::mknodat(rustix::fs::CWD, path, rustix::fs::FileType::Fifo, 0o600.into(), 0).is_err() {
        return;
    }
    ignore_sigpipe();
    // Well within a pipe's buffer: the write does not wait for the reader.
    let bytes = &bytes[..bytes.len().min(PIPE_BYTES)];
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (path, bytes, done) = (path.to_path_buf(), bytes.to_vec(), Arc::clone(&done));
        workers::spawn(FIFO_WORKER, move || -> usize {
            // A non-blocking open for writing fails until a reader has the FIFO open.
            let nonblocking = rustix::fs::OFlags::NONBLOCK.bits() as i32;
            let open = || std::fs::OpenOptions::new().write(true).custom_flags(nonblocking).open(&path);
            let writer = loop {
                match open() {
                    Ok(writer) => break writer,
                    Err(_) if !done.load(Ordering::Acquire) => std::thread::sleep(Duration::from_micros(20)),
                    Err(_) => return 0,
                }
            };
            let mut sent = 0;
            while sent < bytes.len() {
                match (&writer).write(&bytes[sent..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sent += n,
                }
            }
            if !closes {
                while !done.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            sent
        })
    };
    let got = {
        let _stop = SetOnDrop(Arc::clone(&done));
        read_module(c_path, limits, CLOCKS, buffer)
    };
    let sent = writer.join();
    let (bytes, len) = (&bytes[..sent], sent as u64);
    match got {
        Ok(version) => {
            assert!(closes && len <= limits.max_bytes, "read a stream of {len} bytes: {limits:?}");
            assert!(buffer[..version.len] == *bytes, "read bytes other than the stream sent");
        }
        Err(ReadError::StreamTooLarge { limit }) => {
            assert!(len > limit && limit == limits.max_bytes, "{len} bytes refused as over {limit}");
        }
        Err(ReadError::Idle { idle }) => {
            assert!(!closes && idle == IDLE, "a stream its writer closed read as idle for {idle:?}");
        }
        Err(other) => panic!("a FIFO sending {len} bytes refused: {other}"),
    }
}

/// The kept thread the FIFO writer runs on (one the other targets leave alone).
const FIFO_WORKER: usize = workers::WORKERS - 1;

/// Sets its flag when dropped: the FIFO writer stops waiting even if the read panicked.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Ignores SIGPIPE in this process, as std's start-up does for a Rust `main` (a fuzz target
/// has none: libFuzzer's `main` runs it): a late FIFO writer whose reader already gave up gets
/// an error from its write, not a signal that ends the process.
#[allow(unsafe_code)]
fn ignore_sigpipe() {
    static IGNORED: std::sync::Once = std::sync::Once::new();
    extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    const SIGPIPE: i32 = 13;
    const SIG_IGN: usize = 1;
    // SAFETY: the C library's `signal` (linked with std), setting SIGPIPE's disposition to
    // "ignore": no handler code runs, nothing else of the process's state changes.
    IGNORED.call_once(|| unsafe {
        signal(SIGPIPE, SIG_IGN);
    });
}
