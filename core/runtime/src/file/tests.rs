//! The reading policy on real files: regular files read whole with their identity, directories
//! refused, large files refused from their size or their ends without being read, FIFOs and
//! endless streams bounded, the settle rule over a clock the test controls, the limits' parsing.

extern crate std;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::ffi::CString;
use std::path::{Path, PathBuf};

use super::*;
use smf_format::write::samples;
use smf_format::{Dialect, ErrorKind};

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(std::format!("smf-runtime-file-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A FIFO made at `dir/name`.
fn fifo_at(dir: &Path, name: &str) -> PathBuf {
    let fifo = dir.join(name);
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    fifo
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_encoded_bytes()).unwrap()
}

/// The system's wall clock.
fn system_clock() -> Option<Duration> {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()
}

fn no_clock() -> Option<Duration> {
    None
}

/// No settle wait, small limits.
const QUICK: ReadLimits = ReadLimits {
    max_bytes: 1 << 20,
    stream_idle: Duration::from_millis(50),
    stream_total: Duration::from_secs(10),
    settle: Duration::ZERO,
};

/// Reads `path` under `limits`, `clock` the wall clock (the monotonic one the system's).
fn read(path: &Path, limits: ReadLimits, clock: Clock) -> (Result<Version, ReadError>, Vec<u8>) {
    let mut buffer = Vec::new();
    let result = read_module(&c_path(path), &limits, Clocks { wall: clock, monotonic }, &mut buffer);
    (result, buffer)
}

/// A monotonic clock: the time since its first reading.
fn monotonic() -> Option<Duration> {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    Some(START.get_or_init(std::time::Instant::now).elapsed())
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot make the file syscalls (open, pread, poll)")]
fn a_regular_file_is_read_whole_with_the_identity_of_the_version_read() {
    let dir = scratch("regular");
    let path = dir.join("m.smf");
    let module = samples::return_42(Dialect::R96);
    std::fs::write(&path, &module).unwrap();
    let (version, buffer) = read(&path, QUICK, system_clock);
    let version = version.unwrap();
    assert_eq!(&buffer[..version.len], &module[..]);
    assert_eq!(FileIdentity::at(&c_path(&path)), Ok(version.identity));

    // Rewritten in place with the same size: another identity (its times), read anew; a
    // buffer kept from the last read is reused and holds only the new bytes.
    let mut other = module.clone();
    *other.last_mut().unwrap() ^= 1;
    std::thread::sleep(Duration::from_millis(10));
    std::fs::write(&path, &other).unwrap();
    assert_ne!(FileIdentity::at(&c_path(&path)), Ok(version.identity));
    let mut buffer = buffer;
    let again =
        read_module(&c_path(&path), &QUICK, Clocks { wall: system_clock, monotonic }, &mut buffer).unwrap();
    assert_eq!(&buffer[..again.len], &other[..]);
    assert_ne!(again.identity, version.identity);
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot make the file syscalls (open, pread, poll)")]
fn a_path_ending_in_a_symbolic_link_is_read_through_it_and_says_so() {
    let dir = scratch("link");
    let target = dir.join("target.smf");
    let module = samples::return_42(Dialect::R96);
    std::fs::write(&target, &module).unwrap();
    let link = dir.join("link.smf");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let (direct, _) = read(&target, QUICK, system_clock);
    let (through, buffer) = read(&link, QUICK, system_clock);
    let (direct, through) = (direct.unwrap(), through.unwrap());
    assert_eq!(&buffer[..through.len], &module[..]);
    assert_eq!((direct.followed_link, through.followed_link), (false, true));
    assert_eq!(through.identity, direct.identity, "the target's identity");
    // A link to a link, and one inside a linked directory (only the last component counts).
    let chain = dir.join("chain.smf");
    std::os::unix::fs::symlink(&link, &chain).unwrap();
    assert!(read(&chain, QUICK, system_clock).0.unwrap().followed_link);
    let linked_dir = dir.join("linked-dir");
    std::os::unix::fs::symlink(&dir, &linked_dir).unwrap();
    assert!(!read(&linked_dir.join("target.smf"), QUICK, system_clock).0.unwrap().followed_link);
    // A dangling link is the open's error; a loop of links too.
    std::os::unix::fs::symlink(dir.join("nowhere"), dir.join("dangling.smf")).unwrap();
    let (enoent, eloop) = (2, 40);
    assert_eq!(
        read(&dir.join("dangling.smf"), QUICK, system_clock).0,
        Err(ReadError::Sys(SysError { op: "open", errno: enoent }))
    );
    std::os::unix::fs::symlink(dir.join("loop.smf"), dir.join("loop.smf")).unwrap();
    assert_eq!(
        read(&dir.join("loop.smf"), QUICK, system_clock).0,
        Err(ReadError::Sys(SysError { op: "open", errno: eloop }))
    );
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot make the file syscalls (open, pread, poll)")]
fn what_cannot_be_opened_or_is_a_directory_is_refused_by_name() {
    let dir = scratch("refused");
    assert_eq!(read(&dir, QUICK, system_clock).0, Err(ReadError::Directory));
    let enoent = 2; // ENOENT
    assert_eq!(
        read(&dir.join("missing.smf"), QUICK, system_clock).0,
        Err(ReadError::Sys(SysError { op: "open", errno: enoent }))
    );
    assert_eq!(
        FileIdentity::at(&c_path(&dir.join("missing.smf"))),
        Err(ReadError::Sys(SysError { op: "stat", errno: enoent }))
    );
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot make the file syscalls (open, pread, poll)")]
fn a_large_file_is_refused_from_its_size_or_its_ends_without_being_read() {
    let dir = scratch("large");
    let path = dir.join("sparse.smf");
    std::fs::File::create(&path).unwrap().set_len(2 << 30).unwrap();
    // Over the limit: refused from its size; the buffer never grew.
    let (result, buffer) = read(&path, ReadLimits::default(), system_clock);
    assert_eq!(result, Err(ReadError::TooLarge { len: 2 << 30, limit: DEFAULT_MAX_MODULE_BYTES }));
    assert_eq!(buffer.capacity(), 0);
    // Within the limit but without magic at either end: refused from its ends, unread.
    let roomy = ReadLimits { max_bytes: 4 << 30, ..QUICK };
    let (result, buffer) = read(&path, roomy, system_clock);
    assert_eq!(result, Err(ReadError::NotAModule(smf_format::Error::new(ErrorKind::BadMagic, 0))));
    assert_eq!(buffer.capacity(), 0);

    // A large file whose ends do look like a module is read whole (and judged by the parser).
    let mut b = smf_format::write::ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &alloc::vec![0xC3; 3 << 20]);
    b.add_symbol(smf_format::write::SymbolSpec::function(b"main", 0, 1));
    let module = b.build().unwrap();
    std::fs::write(&path, &module).unwrap();
    let (result, buffer) = read(&path, ReadLimits { max_bytes: 8 << 20, ..QUICK }, system_clock);
    assert_eq!(&buffer[..result.unwrap().len], &module[..]);
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot make the file syscalls (open, pread, poll)")]
fn a_fifo_nobody_writes_and_an_endless_stream_are_bounded() {
    let dir = scratch("streams");
    let fifo = fifo_at(&dir, "nobody.fifo");
    assert_eq!(read(&fifo, QUICK, system_clock).0, Err(ReadError::Idle { idle: QUICK.stream_idle }));

    let (result, buffer) = read(Path::new("/dev/zero"), QUICK, system_clock);
    assert_eq!(result, Err(ReadError::StreamTooLarge { limit: QUICK.max_bytes }));
    assert!(buffer.len() as u64 <= QUICK.max_bytes, "{}", buffer.len());
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot make the file syscalls (open, pread, poll)")]
fn a_stream_that_trickles_bytes_each_within_the_idle_limit_is_cut_off_at_its_total() {
    use std::io::Write;
    let dir = scratch("trickle");
    let fifo = fifo_at(&dir, "trickle.fifo");
    // A byte every 10 ms (well within the idle limit) for 3 s, then the end: without the
    // total, the read ends with the writer, 3 s on, with every byte.
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            for _ in 0..300 {
                if file.write_all(b"x").is_err() {
                    return; // the reader gave up (EPIPE: Rust ignores SIGPIPE)
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let limits = ReadLimits {
        stream_idle: Duration::from_millis(500),
        stream_total: Duration::from_millis(200),
        ..QUICK
    };
    let (result, buffer) = read(&fifo, limits, system_clock);
    assert_eq!(result, Err(ReadError::StreamTooSlow { total: limits.stream_total }));
    assert!(!buffer.is_empty() && buffer.len() < 300, "{} bytes read before the cut", buffer.len());
    writer.join().unwrap();

    // Without a monotonic clock, the idle limit and the size still bound it: a stream that
    // ends is read whole.
    let mut buffer = Vec::new();
    let writer = std::thread::spawn({
        let fifo = fifo.clone();
        move || std::fs::write(&fifo, b"abc").unwrap()
    });
    let clocks = Clocks { wall: system_clock, monotonic: no_clock };
    let version = read_module(&c_path(&fifo), &limits, clocks, &mut buffer).unwrap();
    assert_eq!(&buffer[..version.len], b"abc");
    writer.join().unwrap();
}

/// The time [`frozen`] reports, in nanoseconds since the epoch (set by the one test using it).
static FROZEN_AT: AtomicU64 = AtomicU64::new(0);

/// A clock stopped at `FROZEN_AT`.
fn frozen() -> Option<Duration> {
    Some(Duration::from_nanos(FROZEN_AT.load(Ordering::Relaxed)))
}

/// A clock far in the future.
fn far_future() -> Option<Duration> {
    Some(Duration::from_secs(u64::MAX / 2))
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot make the file syscalls (open, pread, poll)")]
fn a_fresh_file_is_read_at_once_unless_a_writer_still_has_it_open_then_once_left_alone() {
    let dir = scratch("settle");
    let path = dir.join("m.smf");
    std::fs::write(&path, samples::return_42(Dialect::R72)).unwrap();
    let status = crate::sys::status_at(&c_path(&path)).unwrap();
    let changed =
        Duration::new(u64::try_from(status.ctime.0).unwrap(), u32::try_from(status.ctime.1).unwrap());
    // A clock stopped right at the file's last change: it never settles. While a writer holds
    // the file open (a rewrite in progress, maybe paused), it is refused after waiting
    // SETTLE_ROUNDS settle times.
    FROZEN_AT.store(u64::try_from(changed.as_nanos()).unwrap(), Ordering::Relaxed);
    let settle = Duration::from_millis(1);
    let limits = ReadLimits { settle, ..QUICK };
    let writer = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    assert_eq!(
        crate::sys::OpenFile::open_nonblocking(&c_path(&path)).unwrap().open_for_writing(),
        Some(true)
    );
    match read(&path, limits, frozen).0 {
        Err(ReadError::StillChanging { waited }) => assert!(waited >= settle * SETTLE_ROUNDS, "{waited:?}"),
        other => panic!("{other:?}"),
    }
    // Once nobody has it open for writing, whoever wrote it is done: read at once, unsettled.
    drop(writer);
    assert_eq!(
        crate::sys::OpenFile::open_nonblocking(&c_path(&path)).unwrap().open_for_writing(),
        Some(false)
    );
    assert!(read(&path, ReadLimits { settle: Duration::from_secs(3600), ..QUICK }, frozen).0.is_ok());
    // Long settled by a clock far in the future: read at once under an hour's settle time.
    let hour = ReadLimits { settle: Duration::from_secs(3600), ..QUICK };
    assert!(read(&path, hour, far_future).0.is_ok());
    // No clock: the rule is skipped, even under the longest settle time (no overflow either).
    let forever = ReadLimits { settle: Duration::MAX, ..QUICK };
    assert!(read(&path, forever, no_clock).0.is_ok());
}

/// The time [`read_at`] reports, in nanoseconds since the epoch (set by the one test using it).
static READ_AT: AtomicU64 = AtomicU64::new(0);

/// A clock stopped at `READ_AT`.
fn read_at() -> Option<Duration> {
    Some(Duration::from_nanos(READ_AT.load(Ordering::Relaxed)))
}

/// A clock at the epoch: behind every file's times.
fn at_epoch() -> Option<Duration> {
    Some(Duration::ZERO)
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot make the file syscalls (open, pread, poll)")]
fn a_version_read_soon_after_its_last_change_is_fresh_and_so_is_one_no_clock_can_date() {
    let dir = scratch("fresh");
    let path = dir.join("m.smf");
    std::fs::write(&path, samples::return_42(Dialect::R72)).unwrap();
    // Written and closed: read at once under any settle time, and dated by it or FRESH_FOR.
    let hour = ReadLimits { settle: Duration::from_secs(3600), ..QUICK };
    assert!(read(&path, hour, system_clock).0.unwrap().fresh, "changed within the hour");
    assert!(read(&path, QUICK, system_clock).0.unwrap().fresh, "no settle time: FRESH_FOR still");
    assert!(!read(&path, hour, far_future).0.unwrap().fresh, "an hour and more before the clock");
    let changed = crate::sys::status_at(&c_path(&path)).unwrap().ctime;
    let after = |by: Duration| {
        let changed = Duration::new(u64::try_from(changed.0).unwrap(), u32::try_from(changed.1).unwrap());
        READ_AT.store(u64::try_from((changed + by).as_nanos()).unwrap(), Ordering::Relaxed);
        read(&path, QUICK, read_at).0.unwrap().fresh
    };
    assert!(after(FRESH_FOR - Duration::from_nanos(1)), "just within FRESH_FOR");
    assert!(!after(FRESH_FOR), "FRESH_FOR after its change");
    assert!(read(&path, hour, no_clock).0.unwrap().fresh, "no clock: it cannot be told");
    assert!(read(&path, QUICK, at_epoch).0.unwrap().fresh, "changed after the clock's now");
}

#[test]
fn the_limits_come_from_the_variables_and_fall_back_to_the_defaults() {
    let vars = |name: &str| -> Option<&'static [u8]> {
        match name {
            MAX_MODULE_BYTES_ENV => Some(b" 4096 "),
            STREAM_IDLE_ENV => Some(b"250"),
            STREAM_TOTAL_ENV => Some(b"7"),
            SETTLE_ENV => Some(b"soon"),
            _ => None,
        }
    };
    let limits = ReadLimits::from_vars(vars);
    assert_eq!(
        limits,
        ReadLimits {
            max_bytes: 4096,
            stream_idle: Duration::from_millis(250),
            stream_total: Duration::from_millis(7),
            settle: DEFAULT_SETTLE
        }
    );
    assert_eq!(ReadLimits::from_vars(|_| None), ReadLimits::default());
    assert_eq!(ReadLimits::from_vars(|_| Some(&[0xFF][..])), ReadLimits::default());
}

#[test]
fn each_refusal_says_what_and_why() {
    use alloc::string::ToString;
    let cases = [
        (ReadError::Directory, "is a directory"),
        (ReadError::TooLarge { len: 10, limit: 5 }, "10 bytes is over the module size limit of 5 bytes"),
        (ReadError::StreamTooLarge { limit: 5 }, "a stream of more than 5 bytes is not a module"),
        (ReadError::Idle { idle: Duration::from_millis(200) }, "the stream sent nothing for 200 ms"),
        (
            ReadError::StreamTooSlow { total: Duration::from_millis(300) },
            "the stream had not ended 300 ms after it was opened (set SMF_STREAM_TOTAL_MS",
        ),
        (ReadError::StillChanging { waited: Duration::from_millis(7) }, "still changing after 7 ms"),
        (ReadError::Torn, "changed while it was being read"),
        (
            ReadError::NotAModule(smf_format::Error::new(ErrorKind::BadMagic, 0)),
            "not a module (from its ends, unread): no SMF magic",
        ),
    ];
    for (error, expected) in cases {
        assert!(error.to_string().contains(expected), "{error}");
    }
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot make the file syscalls (open, pread)")]
fn a_file_whose_size_says_zero_is_read_to_its_end_within_the_limit() {
    // procfs: a size of 0, content the kernel makes at the read. A child's command line, of
    // several pages (read in growing pieces), unchanged while it sleeps.
    let long = "m".repeat(10_000);
    // (`; :`: the shell stays, rather than becoming `sleep`.)
    let mut child = std::process::Command::new("sh").args(["-c", "sleep 30; :", &long]).spawn().unwrap();
    let cmdline = PathBuf::from(std::format!("/proc/{}/cmdline", child.id()));
    let expected = [b"sh\0-c\0sleep 30; :\0".as_slice(), long.as_bytes(), b"\0"].concat();
    // Until the child has started the shell, its command line is another.
    for _ in 0..500 {
        if std::fs::read(&cmdline).is_ok_and(|now| now == expected) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(std::fs::metadata(&cmdline).unwrap().len(), 0);
    let (result, bytes) = read(&cmdline, QUICK, system_clock);
    let over = read(&cmdline, ReadLimits { max_bytes: 5000, ..QUICK }, system_clock).0;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(result.unwrap().len, expected.len());
    assert!(bytes == expected, "{} bytes read", bytes.len());
    // Past the limit: refused once the read passes it.
    match over {
        Err(ReadError::TooLarge { len, limit: 5000 }) => assert_eq!(len, 5001),
        other => panic!("{other:?}"),
    }
    // A file that is empty reads as empty (one read more).
    let dir = scratch("unsized");
    let empty = dir.join("empty.smf");
    std::fs::write(&empty, b"").unwrap();
    let (result, bytes) = read(&empty, QUICK, system_clock);
    assert_eq!((result.unwrap().len, bytes.len()), (0, 0));
}
