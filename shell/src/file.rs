//! Reading module files from paths, safely against what paths can be.
//!
//! - **Never blocks forever**: files are opened non-blocking, so opening a FIFO does not wait
//!   for a writer; a stream (FIFO, pipe, terminal, character device) is then waited on for at
//!   most [`ReadLimits::stream_idle`] (10 s unless `SMF_STREAM_IDLE_MS` says otherwise) at a
//!   time: a writer that never comes or stalls is an error.
//! - **Bounded**: a module file may be at most [`ReadLimits::max_bytes`] (256 MiB unless
//!   `SMF_MAX_MODULE_BYTES` says otherwise); a larger regular file is refused from its size, a
//!   stream (pipe, `/dev/zero`) once it passes the limit.
//! - **Cheap to refuse**: a regular file over [`CHECK_ENDS_FROM`] bytes is refused from its two
//!   ends (no layout's magic where that layout keeps its header) before the rest is read.
//! - **Never torn**: a file whose status changed less than [`ReadLimits::settle`] ago (50 ms
//!   unless `SMF_SETTLE_MS` says otherwise) may be in the middle of being rewritten: it is read
//!   only once it has been left alone that long (waiting at most [`SETTLE_ROUNDS`] times as
//!   long, then refused as "still changing"). Then its identity, size and times are compared
//!   before and after the read; a file rewritten meanwhile is read again (up to
//!   [`READ_ATTEMPTS`] times) or refused. The wait is needed because a write updates the times
//!   before it copies its bytes, and a writer may be paused by the scheduler in the middle of
//!   rewriting a file: neither shows in the times taken around the read. A writer that pauses
//!   for longer than the settle time in the middle of a rewrite can still be read torn; write a
//!   new file and rename it over the old one instead (what compilers do), which is never torn.
//!   The price: a file changed within the settle time loads that much later.
//!
//! A regular file costs open, fstat, one read, fstat and close; its bytes go into a buffer kept
//! per thread for the next load (a loaded module copies everything it needs out of the file).
//! One read of the whole file is the access pattern the kernel's read-ahead serves best, so no
//! advice is given (never `MADV_RANDOM`/`POSIX_FADV_RANDOM`; a `POSIX_FADV_WILLNEED` pass before
//! a prefetch was measured and gained nothing: `cargo xtask bench cache`).

use std::fs::{File, Metadata};
use std::io::{Error, ErrorKind, Read};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use smf_core::detect::{check_ends, END_BYTES};

/// The environment variable that sets the largest module file, in bytes.
pub const MAX_MODULE_BYTES_ENV: &str = "SMF_MAX_MODULE_BYTES";

/// The largest module file read when `SMF_MAX_MODULE_BYTES` is not set: 256 MiB.
pub const DEFAULT_MAX_MODULE_BYTES: u64 = 256 << 20;

/// The environment variable that sets how long a stream may send nothing, in milliseconds.
pub const STREAM_IDLE_ENV: &str = "SMF_STREAM_IDLE_MS";

/// How long a stream may send nothing when `SMF_STREAM_IDLE_MS` is not set: 10 s.
pub const DEFAULT_STREAM_IDLE: Duration = Duration::from_secs(10);

/// Regular files from this size on are checked at both ends before they are read whole.
pub const CHECK_ENDS_FROM: u64 = 1 << 20;

/// How many times a file that changes while it is read is read again before it is refused.
pub const READ_ATTEMPTS: usize = 8;

/// The environment variable that sets how long a file must have been left alone before it is
/// read, in milliseconds (0: no wait).
pub const SETTLE_ENV: &str = "SMF_SETTLE_MS";

/// How long a file must have been left alone when `SMF_SETTLE_MS` is not set: 50 ms.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(50);

/// A file that keeps changing is waited on for at most this many settle times.
pub const SETTLE_ROUNDS: u32 = 40;

/// Buffers up to this size are kept per thread for the next read.
const KEPT_BUFFER: usize = 16 << 20;

thread_local! {
    static FILE_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The limits a module file is read under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    /// The largest module file, in bytes.
    pub max_bytes: u64,
    /// The longest a stream may send nothing (and a FIFO wait for its writer).
    pub stream_idle: Duration,
    /// How long a regular file must have been left alone before it is read.
    pub settle: Duration,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self { max_bytes: DEFAULT_MAX_MODULE_BYTES, stream_idle: DEFAULT_STREAM_IDLE, settle: DEFAULT_SETTLE }
    }
}

impl ReadLimits {
    /// The process's limits: `SMF_MAX_MODULE_BYTES`, `SMF_STREAM_IDLE_MS` and `SMF_SETTLE_MS`
    /// (read once), else the defaults.
    pub fn from_env() -> Self {
        static LIMITS: OnceLock<ReadLimits> = OnceLock::new();
        *LIMITS.get_or_init(|| {
            let number = |name| std::env::var(name).ok().and_then(|v| v.trim().parse::<u64>().ok());
            let defaults = ReadLimits::default();
            ReadLimits {
                max_bytes: number(MAX_MODULE_BYTES_ENV).unwrap_or(defaults.max_bytes),
                stream_idle: number(STREAM_IDLE_ENV).map_or(defaults.stream_idle, Duration::from_millis),
                settle: number(SETTLE_ENV).map_or(defaults.settle, Duration::from_millis),
            }
        })
    }
}

/// Opens `path` for reading without blocking (a FIFO without a writer opens at once).
pub fn open(path: &Path) -> std::io::Result<(File, Metadata)> {
    let nonblock = rustix::fs::OFlags::NONBLOCK.bits();
    let file = std::fs::OpenOptions::new().read(true).custom_flags(nonblock as i32).open(path)?;
    let metadata = file.metadata()?;
    Ok((file, metadata))
}

/// Runs `f` on the whole module file at `path`, read as the module docs say, under the
/// process's limits ([`ReadLimits::from_env`]).
pub fn with_module_bytes<R>(path: &Path, f: impl FnOnce(&[u8]) -> R) -> std::io::Result<R> {
    with_module_bytes_limited(path, ReadLimits::from_env(), f)
}

/// [`with_module_bytes`] under `limits`.
pub fn with_module_bytes_limited<R>(
    path: &Path,
    limits: ReadLimits,
    f: impl FnOnce(&[u8]) -> R,
) -> std::io::Result<R> {
    with_module_version(path, limits, |bytes, _| f(bytes))
}

/// [`with_module_bytes`] under `limits`, also handing `f` the identity of the version read
/// (taken around the read, so the bytes are that version's).
pub fn with_module_version<R>(
    path: &Path,
    limits: ReadLimits,
    f: impl FnOnce(&[u8], FileIdentity) -> R,
) -> std::io::Result<R> {
    let (file, metadata) = open(path)?;
    // Taken out while in use: a re-entrant call (a resolver loading another module) finds the
    // slot empty and gets a buffer of its own.
    let mut buffer = FILE_BUFFER.take();
    let filled = if metadata.is_file() {
        read_regular(&file, metadata, limits, &mut buffer)
    } else {
        let identity = FileIdentity::of(&metadata);
        read_stream(&file, limits, &mut buffer).map(|filled| (filled, identity))
    };
    let result = filled.map(|(filled, identity)| f(&buffer[..filled], identity));
    if buffer.capacity() <= KEPT_BUFFER {
        let kept = FILE_BUFFER.take();
        FILE_BUFFER.set(if kept.capacity() < buffer.capacity() { buffer } else { kept });
    }
    result
}

/// The whole module file at `path`, read as [`with_module_bytes`] does.
pub fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    with_module_bytes(path, <[u8]>::to_vec)
}

fn too_large(len: u64, limit: u64) -> Error {
    Error::new(
        ErrorKind::FileTooLarge,
        format!("{len} bytes is over the module size limit of {limit} bytes (set {MAX_MODULE_BYTES_ENV} to change it)"),
    )
}

/// What tells one version of a file from another: device, inode, size, modification and
/// status-change times (to the nanosecond). A file replaced by a rename has another inode; one
/// rewritten in place, another size or other times. The module cache compares it on every get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileIdentity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileIdentity {
    /// The identity `metadata` describes.
    pub fn of(metadata: &Metadata) -> Self {
        Self {
            dev: metadata.dev(),
            ino: metadata.ino(),
            len: metadata.len(),
            mtime: (metadata.mtime(), metadata.mtime_nsec()),
            ctime: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }

    /// The identity of the file at `path` now (one `stat`, following symbolic links).
    pub fn at(path: &Path) -> std::io::Result<Self> {
        std::fs::metadata(path).map(|m| Self::of(&m))
    }
}

/// Whether two views of a file describe the same unchanged file.
fn unchanged(before: &Metadata, after: &Metadata) -> bool {
    FileIdentity::of(before) == FileIdentity::of(after)
}

/// Reads a regular file whole into `buffer`, checking its size against the limit, its ends
/// first when it is large, that it was left alone for the settle time before, and that it did
/// not change while it was read; returns its length and the identity of the version read.
fn read_regular(
    file: &File,
    mut before: Metadata,
    limits: ReadLimits,
    buffer: &mut Vec<u8>,
) -> std::io::Result<(usize, FileIdentity)> {
    let limit = limits.max_bytes;
    let mut waited = Duration::ZERO;
    let mut attempts = 0;
    while attempts < READ_ATTEMPTS {
        if let Some(wait) = unsettled_for(&before, limits.settle) {
            if waited >= limits.settle * SETTLE_ROUNDS {
                return Err(Error::new(
                    ErrorKind::Interrupted,
                    format!(
                        "the file is still changing after {} ms; not reading it half-written",
                        waited.as_millis()
                    ),
                ));
            }
            std::thread::sleep(wait);
            waited += wait;
            before = file.metadata()?;
            continue;
        }
        attempts += 1;
        let len = before.len();
        if len > limit {
            return Err(too_large(len, limit));
        }
        if len >= CHECK_ENDS_FROM {
            check_file_ends(file, len)?;
        }
        let len = usize::try_from(len).map_err(|_| too_large(len, limit))?;
        let filled = read_at_most(file, len, buffer)?;
        let after = file.metadata()?;
        if filled == len && unchanged(&before, &after) {
            return Ok((filled, FileIdentity::of(&after)));
        }
        before = after;
    }
    Err(Error::new(
        ErrorKind::Interrupted,
        format!("the file changed while it was being read ({READ_ATTEMPTS} times); not loading a torn copy"),
    ))
}

/// How much longer the file must be left alone before the settle time has passed since its
/// status last changed; `None` if it has (or its time lies in the future: a clock elsewhere,
/// as on a network file system, says nothing about writes here).
fn unsettled_for(metadata: &Metadata, settle: Duration) -> Option<Duration> {
    let changed = std::time::UNIX_EPOCH
        + Duration::new(
            u64::try_from(metadata.ctime()).unwrap_or(0),
            u32::try_from(metadata.ctime_nsec()).unwrap_or(0),
        );
    let age = std::time::SystemTime::now().duration_since(changed).ok()?;
    settle.checked_sub(age).filter(|left| !left.is_zero())
}

/// Refuses a file of `len` bytes whose ends show it cannot be a module.
fn check_file_ends(file: &File, len: u64) -> std::io::Result<()> {
    let mut head = [0u8; END_BYTES];
    let mut tail = [0u8; END_BYTES];
    let n = usize::try_from(len).unwrap_or(END_BYTES).min(END_BYTES);
    file.read_exact_at(&mut head[..n], 0)?;
    file.read_exact_at(&mut tail[..n], len - n as u64)?;
    check_ends(&head[..n], &tail[..n], len)
        .map_err(|e| Error::new(ErrorKind::InvalidData, format!("not a module (from its ends, unread): {e}")))
}

/// Reads up to `len` bytes from offset 0 into `buffer`; returns how many it read (fewer if the
/// file shrank meanwhile).
fn read_at_most(file: &File, len: usize, buffer: &mut Vec<u8>) -> std::io::Result<usize> {
    // A file too large for memory is an error, never an abort. Only bytes past the buffer's old
    // length are zeroed; the read overwrites the rest.
    let growth = len.saturating_sub(buffer.len());
    buffer.try_reserve_exact(growth).map_err(|_| Error::from(ErrorKind::OutOfMemory))?;
    buffer.resize(len, 0);
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buffer[filled..len], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads a stream (a pipe, a FIFO, a terminal, a character device), opened non-blocking, to
/// its end into `buffer`, waiting at most `limits.stream_idle` for each piece and refusing a
/// stream longer than `limits.max_bytes`; returns its length.
fn read_stream(file: &File, limits: ReadLimits, buffer: &mut Vec<u8>) -> std::io::Result<usize> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    buffer.clear();
    let idle = Timespec {
        tv_sec: i64::try_from(limits.stream_idle.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(limits.stream_idle.subsec_nanos()),
    };
    let mut chunk = [0u8; 64 << 10];
    loop {
        // Wait for bytes, or for the writer to close (a FIFO without a writer yet waits for one).
        let mut fds = [PollFd::new(file, PollFlags::IN)];
        match poll(&mut fds, Some(&idle)) {
            Ok(0) => {
                return Err(Error::new(
                    ErrorKind::TimedOut,
                    format!(
                        "the stream sent nothing for {} ms (set {STREAM_IDLE_ENV} to wait longer)",
                        limits.stream_idle.as_millis()
                    ),
                ))
            }
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let n = match (&*file).read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::WouldBlock) => continue,
            Err(e) => return Err(e),
        };
        if (buffer.len() + n) as u64 > limits.max_bytes {
            return Err(Error::new(
                ErrorKind::FileTooLarge,
                format!(
                    "a stream of more than {} bytes is not a module (set {MAX_MODULE_BYTES_ENV} to change the limit)",
                    limits.max_bytes
                ),
            ));
        }
        buffer.try_reserve(n).map_err(|_| Error::from(ErrorKind::OutOfMemory))?;
        buffer.extend_from_slice(&chunk[..n]);
    }
    Ok(buffer.len())
}
