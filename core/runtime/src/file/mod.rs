//! Reading a module file from a path, safely against what paths can be: the one policy the
//! shell (`smf::file`) and the loader without libc (`smf-nolibc`) both read files under.
//!
//! - **Never blocks forever**: files are opened non-blocking, so opening a FIFO does not wait
//!   for a writer; a stream (FIFO, pipe, terminal, character device) is then waited on for at
//!   most [`ReadLimits::stream_idle`] (10 s unless `SMF_STREAM_IDLE_MS` says otherwise) at a
//!   time: a writer that never comes or stalls is an error ([`ReadError::Idle`]), and the whole
//!   stream for at most [`ReadLimits::stream_total`] (60 s unless `SMF_STREAM_TOTAL_MS` says
//!   otherwise): a writer that trickles bytes, each within the idle limit, is one too
//!   ([`ReadError::StreamTooSlow`]).
//! - **Bounded**: a module file may be at most [`ReadLimits::max_bytes`] (256 MiB unless
//!   `SMF_MAX_MODULE_BYTES` says otherwise); a larger regular file is refused from its size
//!   ([`ReadError::TooLarge`]), a stream (pipe, `/dev/zero`) once it passes the limit
//!   ([`ReadError::StreamTooLarge`]). A directory is refused at once ([`ReadError::Directory`]).
//! - **Cheap to refuse**: a regular file over [`CHECK_ENDS_FROM`] bytes is refused from its two
//!   ends (no layout's magic where that layout keeps its header: [`ReadError::NotAModule`])
//!   before the rest is read.
//! - **Never torn**: a file whose status changed less than [`ReadLimits::settle`] ago (50 ms
//!   unless `SMF_SETTLE_MS` says otherwise) may be in the middle of being rewritten, if some
//!   process still has it open for writing (the kernel says whether one does: a read lease is
//!   granted only when none does, `sys::OpenFile::open_for_writing`). Then it is read only once
//!   it has been left alone that long (waiting at most 40 times as long, then
//!   refused: [`ReadError::StillChanging`]). A file nobody has open for writing is read at once,
//!   however fresh: whoever wrote it closed it (`smf pack x.o -o x.smf && smf run x.smf` reads
//!   at once), or renamed it into place. Where the kernel will not say (another user's file, a
//!   file system without leases), a fresh file settles as before. Then its identity, size and
//!   times are compared before and after the read; a file rewritten meanwhile is read again (up
//!   to 8 times) or refused ([`ReadError::Torn`]). The wait is needed because a
//!   write updates the times before it copies its bytes, and a writer may be paused by the
//!   scheduler in the middle of rewriting a file: neither shows in the times taken around the
//!   read, but the writer's open file does. A writer that pauses for longer than the settle
//!   time in the middle of a rewrite can still be read torn; write a new file and rename it over
//!   the old one instead (what compilers do, and `smf pack`), which is never torn.
//!
//! The clocks the settle rule and a stream's deadline need are the caller's ([`Clocks`]): this
//! crate reads no clock itself (rustix reads it through the vDSO, which it finds through the auxiliary vector, which
//! is wrong under valgrind in a process with a C library; see `sys::probe_page_size`).
//!
//! A regular file whose size says 0 is read to its end (within the limit): the files of procfs,
//! sysfs and some FUSE file systems have content their size does not show.
//!
//! A regular file costs open, fstat, one read, fstat and close (and a second open if its path
//! ends in a symbolic link, which the first, not following links, tells), into a buffer the caller keeps
//! for the next read. One read of the whole file is the access pattern the kernel's read-ahead
//! serves best, so no advice is given (a `POSIX_FADV_WILLNEED` pass before a prefetch was
//! measured and gained nothing: `cargo xtask bench cache`).
//!
//! `regular.rs` reads regular files, `stream.rs` everything else that opens.

mod regular;
mod stream;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::ffi::CStr;
use core::fmt;
use core::time::Duration;

use crate::sys::{self, FileKind, FileStatus, OpenFile, SysError};

/// The environment variable that sets the largest module file, in bytes.
pub const MAX_MODULE_BYTES_ENV: &str = "SMF_MAX_MODULE_BYTES";

/// The largest module file read when `SMF_MAX_MODULE_BYTES` is not set: 256 MiB.
pub const DEFAULT_MAX_MODULE_BYTES: u64 = 256 << 20;

/// The environment variable that sets how long a stream may send nothing, in milliseconds.
pub const STREAM_IDLE_ENV: &str = "SMF_STREAM_IDLE_MS";

/// How long a stream may send nothing when `SMF_STREAM_IDLE_MS` is not set: 10 s.
pub const DEFAULT_STREAM_IDLE: Duration = Duration::from_secs(10);

/// The environment variable that sets how long a whole stream may take, in milliseconds.
pub const STREAM_TOTAL_ENV: &str = "SMF_STREAM_TOTAL_MS";

/// How long a whole stream may take when `SMF_STREAM_TOTAL_MS` is not set: 60 s.
pub const DEFAULT_STREAM_TOTAL: Duration = Duration::from_secs(60);

/// The environment variable that sets how long a file must have been left alone before it is
/// read, in milliseconds (0: no wait).
pub const SETTLE_ENV: &str = "SMF_SETTLE_MS";

/// How long a file must have been left alone when `SMF_SETTLE_MS` is not set: 50 ms.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(50);

/// Regular files from this size on are checked at both ends before they are read whole.
pub const CHECK_ENDS_FROM: u64 = 1 << 20;

/// A version read less than this long (or less than the settle time, if longer) after its
/// file last changed is [`Version::fresh`]: file times step by up to two seconds on some file
/// systems (a second on ext4 with small inodes and on many network file systems, two on FAT),
/// and by a clock tick (up to 10 ms) on every Linux kernel before 6.13.
pub const FRESH_FOR: Duration = Duration::from_secs(2);

/// How many times a file that changes while it is read is read again before it is refused.
pub(crate) const READ_ATTEMPTS: usize = 8;

/// A file that keeps changing is waited on for at most this many settle times.
pub(crate) const SETTLE_ROUNDS: u32 = 40;

/// The limits a module file is read under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    /// The largest module file, in bytes.
    pub max_bytes: u64,
    /// The longest a stream may send nothing (and a FIFO wait for its writer).
    pub stream_idle: Duration,
    /// The longest a stream may take from its open to its end (by [`Clocks::monotonic`]).
    pub stream_total: Duration,
    /// How long a regular file must have been left alone before it is read.
    pub settle: Duration,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_MODULE_BYTES,
            stream_idle: DEFAULT_STREAM_IDLE,
            stream_total: DEFAULT_STREAM_TOTAL,
            settle: DEFAULT_SETTLE,
        }
    }
}

impl ReadLimits {
    /// The limits `SMF_MAX_MODULE_BYTES`, `SMF_STREAM_IDLE_MS`, `SMF_STREAM_TOTAL_MS` and
    /// `SMF_SETTLE_MS` set, as
    /// `var` finds them (a variable's value, or `None` when it is not set); a value that is not
    /// a decimal number (surrounding ASCII white space allowed) leaves that limit at its default.
    pub fn from_vars<'a>(var: impl Fn(&str) -> Option<&'a [u8]>) -> Self {
        let number = |name| {
            let text = core::str::from_utf8(var(name)?.trim_ascii()).ok()?;
            text.parse::<u64>().ok()
        };
        let defaults = Self::default();
        Self {
            max_bytes: number(MAX_MODULE_BYTES_ENV).unwrap_or(defaults.max_bytes),
            stream_idle: number(STREAM_IDLE_ENV).map_or(defaults.stream_idle, Duration::from_millis),
            stream_total: number(STREAM_TOTAL_ENV).map_or(defaults.stream_total, Duration::from_millis),
            settle: number(SETTLE_ENV).map_or(defaults.settle, Duration::from_millis),
        }
    }
}

/// The wall clock: the time since the Unix epoch, or `None` when it cannot be read (then the
/// settle rule is skipped; the comparison around the read still holds). A file's status-change
/// time is compared against it.
pub type Clock = fn() -> Option<Duration>;

/// The clocks a read needs, both the caller's.
#[derive(Clone, Copy, Debug)]
pub struct Clocks {
    /// The wall clock, for the settle rule (a file's times are wall-clock times).
    pub wall: Clock,
    /// A clock that never steps back (`CLOCK_MONOTONIC`: a time since any fixed start), for a
    /// stream's overall deadline; where it cannot be read, a stream is bounded by its idle
    /// limit and its size alone.
    pub monotonic: Clock,
}

/// What tells one version of a file from another: device, inode, size, modification and
/// status-change times (to the nanosecond). A file replaced by a rename has another inode; one
/// rewritten in place, another size or other times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileIdentity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileIdentity {
    fn of(status: &FileStatus) -> Self {
        Self { dev: status.dev, ino: status.ino, len: status.size, mtime: status.mtime, ctime: status.ctime }
    }

    /// The identity of the file at `path` now (one `stat`, following symbolic links).
    pub fn at(path: &CStr) -> Result<Self, ReadError> {
        sys::status_at(path).map(|s| Self::of(&s)).map_err(ReadError::Sys)
    }
}

/// The version of a file that was read: how many bytes (the buffer's first `len`) and its
/// identity, taken around the read (for a stream, when it was opened).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    /// The file's length: the bytes read are the buffer's first `len`.
    pub len: usize,
    /// The identity of the version read.
    pub identity: FileIdentity,
    /// The path's last component is a symbolic link, followed to the file read (what a
    /// watcher of the path's directory would not see change).
    pub followed_link: bool,
    /// The file's status changed less than [`FRESH_FOR`] (or the settle time, if longer)
    /// before the read, or that cannot be told (no clock, a time ahead of it, a stream). A
    /// later change to a version that is not fresh gives the file another identity (its times
    /// move on past the version's, on file systems whose times step by at most [`FRESH_FOR`]);
    /// a fresh version's identity may tie with a change made within the same step, which only a
    /// watcher of the file sees, or a second read made once it watches.
    pub fresh: bool,
}

/// Why a module file was not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadError {
    /// A syscall failed: the path does not exist, may not be read, the device failed, ...
    Sys(SysError),
    /// The path names a directory.
    Directory,
    /// A regular file larger than the limit, refused from its size.
    TooLarge {
        /// Its size in bytes.
        len: u64,
        /// The limit ([`ReadLimits::max_bytes`]).
        limit: u64,
    },
    /// A stream that sent more than the limit.
    StreamTooLarge {
        /// The limit ([`ReadLimits::max_bytes`]).
        limit: u64,
    },
    /// A large file whose ends show it cannot be a module (no layout's magic where that layout
    /// keeps its header): refused before the rest was read.
    NotAModule(smf_format::Error),
    /// A stream sent nothing for this long ([`ReadLimits::stream_idle`]).
    Idle {
        /// The idle limit.
        idle: Duration,
    },
    /// A stream that had not ended this long after it was opened
    /// ([`ReadLimits::stream_total`]).
    StreamTooSlow {
        /// The limit.
        total: Duration,
    },
    /// A file still changing after this long a wait for it to settle.
    StillChanging {
        /// How long it was waited for.
        waited: Duration,
    },
    /// A file that changed while it was read, 8 times in a row.
    Torn,
    /// The buffer could not grow to the file's size.
    OutOfMemory {
        /// The size asked for, in bytes.
        bytes: u64,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Sys(e) => write!(f, "{e}"),
            ReadError::Directory => f.write_str("is a directory, not a module file"),
            ReadError::TooLarge { len, limit } => write!(
                f,
                "{len} bytes is over the module size limit of {limit} bytes (set {MAX_MODULE_BYTES_ENV} to change it)"
            ),
            ReadError::StreamTooLarge { limit } => write!(
                f,
                "a stream of more than {limit} bytes is not a module (set {MAX_MODULE_BYTES_ENV} to change the limit)"
            ),
            ReadError::NotAModule(e) => write!(f, "not a module (from its ends, unread): {e}"),
            ReadError::Idle { idle } => write!(
                f,
                "the stream sent nothing for {} ms (set {STREAM_IDLE_ENV} to wait longer)",
                millis(*idle)
            ),
            ReadError::StreamTooSlow { total } => write!(
                f,
                "the stream had not ended {} ms after it was opened (set {STREAM_TOTAL_ENV} to wait longer)",
                millis(*total)
            ),
            ReadError::StillChanging { waited } => write!(
                f,
                "the file is still changing after {} ms; not reading it half-written",
                millis(*waited)
            ),
            ReadError::Torn => write!(
                f,
                "the file changed while it was being read ({READ_ATTEMPTS} times); not loading a torn copy"
            ),
            ReadError::OutOfMemory { bytes } => write!(f, "out of memory reading {bytes} bytes"),
        }
    }
}

impl core::error::Error for ReadError {}

/// Whole milliseconds, as a `u64` (saturating): formatting a `u128` would cost the loader
/// without libc kilobytes of division code.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Reads the whole module file at `path` into `buffer` (replacing what it held), as the module
/// docs say, under `limits`, with `clocks` for the settle rule and a stream's deadline; the
/// version read.
pub fn read_module(
    path: &CStr,
    limits: &ReadLimits,
    clocks: Clocks,
    buffer: &mut Vec<u8>,
) -> Result<Version, ReadError> {
    read_module_file(path, limits, clocks, buffer).map(|(version, _)| version)
}

/// [`read_module`], also handing back the file read when it is a regular file, still open: a
/// loader maps from it the bytes it hands to the processor unread
/// ([`crate::load::LoadedModule::load_mapped`]).
pub fn read_module_file(
    path: &CStr,
    limits: &ReadLimits,
    clocks: Clocks,
    buffer: &mut Vec<u8>,
) -> Result<(Version, Option<OpenFile>), ReadError> {
    // Opened without following a link first: a link is rare, and the one open tells.
    let (file, followed_link) = match OpenFile::open_nonblocking_unless_link(path) {
        Ok(Some(file)) => (file, false),
        Ok(None) => (OpenFile::open_nonblocking(path).map_err(ReadError::Sys)?, true),
        Err(e) => return Err(ReadError::Sys(e)),
    };
    let status = file.status().map_err(ReadError::Sys)?;
    match status.kind {
        FileKind::Regular => {
            let version = regular::read(&file, status, limits, clocks.wall, buffer)?;
            Ok((Version { followed_link, ..version }, Some(file)))
        }
        FileKind::Directory => Err(ReadError::Directory),
        FileKind::Stream => {
            let len = stream::read(&file, limits, clocks.monotonic, buffer)?;
            Ok((
                Version { len, identity: FileIdentity::of(&status), followed_link: false, fresh: true },
                None,
            ))
        }
    }
}
