//! Reading module files from paths under the core's policy ([`smf_runtime::file`], shared with the
//! loader without libc): never blocking forever (a FIFO or stream waits at most
//! `SMF_STREAM_IDLE_MS` at a time, `SMF_STREAM_TOTAL_MS` in all), bounded
//! (`SMF_MAX_MODULE_BYTES`; a large file refused from its two ends before it is read), never
//! torn (a file changed less than `SMF_SETTLE_MS` ago is left to settle, and compared before and
//! after the read). The core's docs say why and at what cost.
//!
//! What is the shell's here: the process's limits from its environment, the clocks (from
//! `std`), a buffer kept per thread for the next load (a loaded module copies everything it
//! needs out of the file), paths as `Path`s, and the core's errors as `std::io::Error`s.

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::io::{Error, ErrorKind};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use smf_runtime::file::{read_module_file, Clocks};
pub use smf_runtime::file::{
    ReadError, ReadLimits, CHECK_ENDS_FROM, DEFAULT_MAX_MODULE_BYTES, DEFAULT_SETTLE, DEFAULT_STREAM_IDLE,
    DEFAULT_STREAM_TOTAL, MAX_MODULE_BYTES_ENV, SETTLE_ENV, STREAM_IDLE_ENV, STREAM_TOTAL_ENV,
};
use smf_runtime::sys::OpenFile;

/// Buffers up to this size are kept per thread for the next read: enough for the small modules
/// a prefetch reads by the hundred, which then read without a fresh allocation each. A larger
/// file's buffer is freed once its load is over: kept, it would stay in the process's private
/// memory as long as the thread lives (a 285 KB Lua module's was half of what its load added:
/// `loaded_private_bytes_vs_dlopen_lua` in `cargo xtask bench real`), and its load costs far
/// more than allocating it.
const KEPT_BUFFER: usize = 64 << 10;

thread_local! {
    static FILE_BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// The process's limits: `SMF_MAX_MODULE_BYTES`, `SMF_STREAM_IDLE_MS`, `SMF_STREAM_TOTAL_MS`
/// and `SMF_SETTLE_MS` (read once), else the defaults.
pub fn limits_from_env() -> ReadLimits {
    static LIMITS: OnceLock<ReadLimits> = OnceLock::new();
    *LIMITS.get_or_init(|| {
        let vars: Vec<(&str, Option<std::ffi::OsString>)> =
            [MAX_MODULE_BYTES_ENV, STREAM_IDLE_ENV, STREAM_TOTAL_ENV, SETTLE_ENV]
                .into_iter()
                .map(|name| (name, std::env::var_os(name)))
                .collect();
        ReadLimits::from_vars(|name| {
            vars.iter().find(|(n, _)| *n == name).and_then(|(_, value)| value.as_ref()).map(|v| v.as_bytes())
        })
    })
}

/// The version of a module file that was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadVersion {
    /// Its identity, taken around the read (so the bytes are that version's).
    pub identity: FileIdentity,
    /// The path ends in a symbolic link, followed to the file read.
    pub followed_link: bool,
    /// The file changed shortly before the read (or that cannot be told): its identity may tie
    /// with a change made right after it ([`smf_runtime::file::Version::fresh`]).
    pub fresh: bool,
}

/// Runs `f` on the whole module file at `path`, read as the module docs say under `limits`
/// (the process's: [`limits_from_env`]), with the version read: the one reader of module files
/// (the loader's [`crate::loader::Source::Path`] reads through it).
pub fn with_module_version<R>(
    path: &Path,
    limits: ReadLimits,
    f: impl FnOnce(&[u8], ReadVersion) -> R,
) -> std::io::Result<R> {
    with_module_file(path, limits, |bytes, version, _| f(bytes, version))
}

/// [`with_module_version`], also handing `f` the file read, still open, when it is a regular
/// file that was not changed moments ago or that nobody has open for writing (a file being
/// rewritten in place is not handed out): a load maps code from it
/// ([`crate::loader::LoadRequest::mapped_from`]).
pub fn with_module_file<R>(
    path: &Path,
    limits: ReadLimits,
    f: impl FnOnce(&[u8], ReadVersion, Option<&OpenFile>) -> R,
) -> std::io::Result<R> {
    // Taken out while in use: a re-entrant call (a resolver loading another module) finds the
    // slot empty and gets a buffer of its own. A thread the library started keeps none.
    let keep = crate::worker::keeps_state();
    let mut buffer = if keep { FILE_BUFFER.take() } else { Vec::new() };
    let read = with_c_path(path, |path| read_module_file(path, &limits, CLOCKS, &mut buffer))
        .and_then(|read| read.map_err(io_error));
    let result = read.map(|(v, file)| {
        f(
            &buffer[..v.len],
            ReadVersion {
                identity: FileIdentity(v.identity),
                followed_link: v.followed_link,
                fresh: v.fresh,
            },
            // A file changed moments ago that someone still has open for writing may be
            // rewritten in place yet: its code is copied.
            file.as_ref().filter(|file| !v.fresh || file.open_for_writing() == Some(false)),
        )
    });
    if keep && buffer.capacity() <= KEPT_BUFFER {
        let kept = FILE_BUFFER.take();
        FILE_BUFFER.set(if kept.capacity() < buffer.capacity() { buffer } else { kept });
    }
    result
}

/// A copy of the whole module file at `path`, read as [`with_module_version`] reads it under
/// the process's limits.
pub fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    with_module_version(path, limits_from_env(), |bytes, _| bytes.to_vec())
}

/// What tells one version of a file from another: device, inode, size, modification and
/// status-change times (to the nanosecond). A file replaced by a rename has another inode; one
/// rewritten in place, another size or other times. The module cache compares it on every get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileIdentity(smf_runtime::file::FileIdentity);

impl FileIdentity {
    /// The identity of the file at `path` now (one `stat`, following symbolic links).
    pub fn at(path: &Path) -> std::io::Result<Self> {
        with_c_path(path, smf_runtime::file::FileIdentity::at)?.map(Self).map_err(io_error)
    }
}

/// The clocks a read takes: the wall clock the settle rule compares a file's status-change time
/// with, and a monotonic one for a stream's deadline.
const CLOCKS: Clocks = Clocks { wall: wall_clock, monotonic: monotonic_clock };

/// The wall clock: the time since the Unix epoch.
fn wall_clock() -> Option<Duration> {
    SystemTime::now().duration_since(UNIX_EPOCH).ok()
}

/// The time since this clock was first read, which never steps back (`Instant`).
fn monotonic_clock() -> Option<Duration> {
    static START: OnceLock<Instant> = OnceLock::new();
    Some(START.get_or_init(Instant::now).elapsed())
}

/// Runs `f` on `path` as a C string, without allocating for paths of ordinary length.
fn with_c_path<R>(path: &Path, f: impl FnOnce(&CStr) -> R) -> std::io::Result<R> {
    const ON_STACK: usize = 384;
    let bytes = path.as_os_str().as_bytes();
    let nul = || Error::new(ErrorKind::InvalidInput, "file name contained an unexpected NUL byte");
    if bytes.len() < ON_STACK {
        let mut buf = [0u8; ON_STACK];
        buf[..bytes.len()].copy_from_slice(bytes);
        Ok(f(CStr::from_bytes_with_nul(&buf[..=bytes.len()]).map_err(|_| nul())?))
    } else {
        Ok(f(&CString::new(bytes).map_err(|_| nul())?))
    }
}

/// The core's refusal that an I/O error from [`with_module_version`] (or another reader here)
/// carries, if it carries one (a failed syscall's error is the operating system's alone).
pub fn read_error(error: &Error) -> Option<&ReadError> {
    error.get_ref()?.downcast_ref()
}

/// The core's refusal as an I/O error of the matching kind, carrying the typed `ReadError`
/// (`get_ref()` and `downcast_ref` give it back; the message is its own). A failed syscall is
/// the operating system's error, as `std` reports it. A file still changing, or torn by a
/// change during the read, is `ResourceBusy`: not `Interrupted`, which `std` retries by itself.
fn io_error(e: ReadError) -> Error {
    let kind = match e {
        ReadError::Sys(e) => return Error::from_raw_os_error(e.errno),
        ReadError::Directory => ErrorKind::IsADirectory,
        ReadError::TooLarge { .. } | ReadError::StreamTooLarge { .. } => ErrorKind::FileTooLarge,
        ReadError::NotAModule(_) => ErrorKind::InvalidData,
        ReadError::Idle { .. } | ReadError::StreamTooSlow { .. } => ErrorKind::TimedOut,
        ReadError::StillChanging { .. } | ReadError::Torn => ErrorKind::ResourceBusy,
        ReadError::OutOfMemory { .. } => ErrorKind::OutOfMemory,
        _ => ErrorKind::Other,
    };
    Error::new(kind, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The capacity of the buffer this thread keeps.
    fn kept() -> usize {
        let buffer = FILE_BUFFER.take();
        let capacity = buffer.capacity();
        FILE_BUFFER.set(buffer);
        capacity
    }

    #[test]
    fn a_thread_the_library_started_keeps_no_buffer_and_others_do() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/recursion.smf");
        let len = usize::try_from(std::fs::metadata(&path).unwrap().len()).unwrap();
        read(&path).unwrap();
        assert!(kept() >= len, "a thread keeps its buffer for the next read");
        let path_there = path.clone();
        std::thread::spawn(move || {
            crate::worker::mark();
            assert_eq!(read(&path_there).unwrap().len(), len);
            // (Looking touches the thread-local, after the read: the read did not.)
            assert_eq!(kept(), 0, "a worker keeps none");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_large_files_buffer_is_freed_after_its_read() {
        // As large as Lua's module.
        let mut builder = smf_format::write::ModuleBuilder::new(smf_format::Dialect::S128);
        builder.add_code(b".text", &vec![0xC3; 300 << 10]);
        let bytes = builder.build().unwrap();
        let dir = std::env::temp_dir().join(format!("smf-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (small, large) = (dir.join("small.smf"), dir.join("large.smf"));
        let small_len =
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/recursion.smf"))
                .map(|b| {
                    std::fs::write(&small, &b).unwrap();
                    b.len()
                })
                .unwrap();
        std::fs::write(&large, &bytes).unwrap();
        std::thread::spawn(move || {
            assert_eq!(read(&small).unwrap().len(), small_len);
            assert!(kept() >= small_len, "a small file's buffer is kept");
            assert_eq!(read(&large).unwrap(), bytes);
            assert!(kept() < bytes.len(), "a large file's buffer is not kept: {} bytes", kept());
            assert_eq!(read(&small).unwrap().len(), small_len);
            assert!(kept() >= small_len, "the next small read keeps its buffer again");
        })
        .join()
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
