//! The one place in the crate that talks to the kernel: thin wrappers over rustix's `linux_raw`
//! backend (direct syscalls, no libc), each documented with its man page: here what the crate
//! itself needs (memory, futexes, random bytes, and the few file calls the `file` module reads
//! module files with), and [`write_unchecked`], the `write(2)` from memory Rust may not read
//! that the shell's fault-tolerant copy is made of.
//!
//! Nothing else in the crate calls rustix. Wrappers that change or remove memory are `unsafe`:
//! their callers guarantee that no Rust reference points into the affected range and that the
//! range belongs to them.

#![allow(unsafe_code)]

use core::ffi::c_void;
use core::fmt;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering};
use core::time::Duration;

use rustix::mm::{self, MapFlags, MprotectFlags, MremapFlags, ProtFlags};

mod raw;

/// A failed syscall: which operation and the kernel's error number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysError {
    /// The operation (`"mmap"`, `"mprotect"`, ...).
    pub op: &'static str,
    /// The raw `errno` value.
    pub errno: i32,
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {:?}", self.op, rustix::io::Errno::from_raw_os_error(self.errno))
    }
}

impl core::error::Error for SysError {}

/// Result of a syscall wrapper.
pub type SysResult<T> = Result<T, SysError>;

fn err(op: &'static str) -> impl Fn(rustix::io::Errno) -> SysError {
    move |e| SysError { op, errno: e.raw_os_error() }
}

/// Page protections this crate uses. There is deliberately no writable-and-executable value
/// except [`Protection::ReadWriteExec`], which only the documented debugging switch uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protection {
    /// `PROT_NONE`
    None,
    /// `PROT_READ`
    Read,
    /// `PROT_READ | PROT_WRITE`
    ReadWrite,
    /// `PROT_READ | PROT_EXEC`
    ReadExec,
    /// `PROT_READ | PROT_WRITE | PROT_EXEC`: only with the explicit RWX debugging switch.
    ReadWriteExec,
}

impl Protection {
    /// The `PROT_*` bits of `mmap(2)` and `mprotect(2)` (for calls the crate does not make
    /// itself, such as the shell's file mappings).
    pub fn prot_bits(self) -> u32 {
        self.prot_flags().bits()
    }

    fn prot_flags(self) -> ProtFlags {
        match self {
            Protection::None => ProtFlags::empty(),
            Protection::Read => ProtFlags::READ,
            Protection::ReadWrite => ProtFlags::READ | ProtFlags::WRITE,
            Protection::ReadExec => ProtFlags::READ | ProtFlags::EXEC,
            Protection::ReadWriteExec => ProtFlags::READ | ProtFlags::WRITE | ProtFlags::EXEC,
        }
    }

    fn mprotect_flags(self) -> MprotectFlags {
        MprotectFlags::from_bits_truncate(self.prot_flags().bits())
    }
}

static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// The page size: given by [`use_page_size`], or else probed once with syscalls (see
/// [`probe_page_size`]); then cached.
pub fn page_size() -> usize {
    match PAGE_SIZE.load(Ordering::Relaxed) {
        0 => {
            let size = probe_page_size().unwrap_or_else(rustix::param::page_size);
            PAGE_SIZE_PROBED.store(true, Ordering::Relaxed);
            PAGE_SIZE.store(size, Ordering::Relaxed);
            size
        }
        size => size,
    }
}

/// Whether [`page_size`] probed for the page size (three syscalls) rather than being given it.
pub fn page_size_probed() -> bool {
    PAGE_SIZE_PROBED.load(Ordering::Relaxed)
}

static PAGE_SIZE_PROBED: AtomicBool = AtomicBool::new(false);

/// Takes `size` as the page size from now on, instead of probing for it, if nothing has asked
/// for the page size yet and `size` is one Linux can have (a power of two from 4 KiB to
/// 256 KiB). Returns whether [`page_size`] now answers `size`. For a program with libc, whose
/// `getauxval(AT_PAGESZ)` has it without a syscall (the probe makes three).
///
/// # Safety
/// `size` is the kernel's page size (`AT_PAGESZ`): every protection change and every placement
/// of code is rounded to it, so a wrong one could protect memory the caller does not own.
pub unsafe fn use_page_size(size: usize) -> bool {
    if !size.is_power_of_two() || !(4096..=LARGEST_PAGE).contains(&size) {
        return false;
    }
    match PAGE_SIZE.compare_exchange(0, size, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => true,
        Err(known) => known == size,
    }
}

/// The largest page size [`probe_page_size`] tries (Linux has none larger than 256 KiB).
const LARGEST_PAGE: usize = 256 << 10;

/// Finds the page size without the auxiliary vector: in a fresh reservation, the smallest power
/// of two from 4 KiB at whose offset `mprotect(2)` accepts an address (it rejects an address
/// that is not page aligned with `EINVAL`). `None` when the reservation cannot be made.
///
/// Why not `AT_PAGESZ`: with no libc, rustix reads the kernel's copy of the auxiliary vector
/// (`PR_GET_AUXV` or `/proc/self/auxv`) and checks the vDSO it names. Under valgrind that copy
/// describes valgrind's own process, whose vDSO the program cannot read, and the check faults:
/// any program using this library crashed under valgrind.
pub fn probe_page_size() -> Option<usize> {
    let base = reserve(2 * LARGEST_PAGE, Protection::None).ok()?;
    let mut size = 4096;
    let found = loop {
        if size > LARGEST_PAGE {
            break None;
        }
        // SAFETY: `base + size .. base + 2 * size` lies inside our fresh PROT_NONE reservation,
        // which nothing else knows about; it stays PROT_NONE.
        if unsafe { protect(base.wrapping_add(size), size, Protection::None) }.is_ok() {
            break Some(size);
        }
        size *= 2;
    };
    // SAFETY: the reservation is ours and unused.
    let _ = unsafe { unmap(base, 2 * LARGEST_PAGE) };
    found
}

/// Reserves `len` bytes of address space with protection `prot` (`mmap(2)`,
/// `MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE`): no memory is committed until touched.
pub fn reserve(len: usize, prot: Protection) -> SysResult<*mut u8> {
    // SAFETY: a fresh anonymous mapping at an address the kernel chooses aliases nothing.
    let p = unsafe {
        mm::mmap_anonymous(ptr::null_mut(), len, prot.prot_flags(), MapFlags::PRIVATE | MapFlags::NORESERVE)
    };
    p.map(|p| p.cast()).map_err(err("mmap"))
}

/// Maps `len` fresh zeroed bytes with `prot` (`mmap(2)`, anonymous, private).
pub fn map_anonymous(len: usize, prot: Protection) -> SysResult<*mut u8> {
    // SAFETY: as in `reserve`.
    let p = unsafe { mm::mmap_anonymous(ptr::null_mut(), len, prot.prot_flags(), MapFlags::PRIVATE) };
    p.map(|p| p.cast()).map_err(err("mmap"))
}

/// Changes the protection of `addr..addr+len` (`mprotect(2)`).
///
/// # Safety
/// The range is mapped by the caller, who guarantees no Rust reference relies on the old
/// protection (nothing reads memory made `None`, nothing writes memory made read-only).
pub unsafe fn protect(addr: *mut u8, len: usize, prot: Protection) -> SysResult<()> {
    // SAFETY: forwarded to the caller's contract.
    unsafe { mm::mprotect(addr.cast::<c_void>(), len, prot.mprotect_flags()) }.map_err(err("mprotect"))
}

/// Discards `addr..addr+len` and leaves it reserved with protection `prot`, in one call: a
/// fixed anonymous mapping over it (`mmap(2)`, `MAP_FIXED`). Later use sees zero pages.
///
/// # Safety
/// The range is the caller's, and nothing (no reference, no running code) uses it any more.
pub unsafe fn discard(addr: *mut u8, len: usize, prot: Protection) -> SysResult<()> {
    let flags = MapFlags::PRIVATE | MapFlags::FIXED | MapFlags::NORESERVE;
    // SAFETY: forwarded to the caller's contract; MAP_FIXED replaces only the caller's range.
    unsafe { mm::mmap_anonymous(addr.cast(), len, prot.prot_flags(), flags) }.map(|_| ()).map_err(err("mmap"))
}

/// Maps `len` bytes of `file` from `offset` over `addr..addr+len` with protection `prot`,
/// private (`mmap(2)`, `MAP_PRIVATE | MAP_FIXED`): a write makes a copy of the page, the file
/// is never changed. Bytes of the last page past the file's end read as zero; whole pages past
/// it, or pages of a file truncated later, fault (`SIGBUS`) when touched.
///
/// # Safety
/// The range is the caller's, page-aligned, and nothing (no reference, no running code) uses
/// what it held.
pub unsafe fn map_file_fixed(
    addr: *mut u8,
    len: usize,
    file: &OpenFile,
    offset: u64,
    prot: Protection,
) -> SysResult<()> {
    // SAFETY: forwarded to the caller's contract; MAP_FIXED replaces only the caller's range.
    unsafe {
        mm::mmap(addr.cast(), len, prot.prot_flags(), MapFlags::PRIVATE | MapFlags::FIXED, &file.0, offset)
    }
    .map(|_| ())
    .map_err(err("mmap"))
}

/// Unmaps `addr..addr+len` (`munmap(2)`).
///
/// # Safety
/// The range is the caller's and nothing uses it any more.
pub unsafe fn unmap(addr: *mut u8, len: usize) -> SysResult<()> {
    // SAFETY: forwarded to the caller's contract.
    unsafe { mm::munmap(addr.cast(), len) }.map_err(err("munmap"))
}

/// Moves the pages at `from` over `to` (`mremap(2)`, `MREMAP_MAYMOVE | MREMAP_FIXED`): the old
/// pages at `to` are replaced atomically with respect to other threads, which fault and wait
/// for the kernel's lock rather than see a hole.
///
/// # Safety
/// Both ranges are the caller's, of `len` bytes; `from` is not used afterwards.
pub unsafe fn move_over(from: *mut u8, to: *mut u8, len: usize) -> SysResult<()> {
    // SAFETY: forwarded to the caller's contract.
    unsafe { mm::mremap_fixed(from.cast(), len, len, MremapFlags::MAYMOVE, to.cast()) }
        .map(|_| ())
        .map_err(err("mremap"))
}

/// An anonymous shared memory file (`memfd_create(2)`), closed when dropped.
#[derive(Debug)]
pub struct SharedMemory(rustix::fd::OwnedFd);

impl SharedMemory {
    /// Creates an empty one named `name` (shown in `/proc/self/maps`), close-on-exec.
    pub fn create(name: &core::ffi::CStr) -> SysResult<Self> {
        rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC).map(Self).map_err(err("memfd_create"))
    }

    /// Sets its size to `len` bytes (`ftruncate(2)`); new bytes read as zero.
    pub fn resize(&self, len: usize) -> SysResult<()> {
        rustix::fs::ftruncate(&self.0, len as u64).map_err(err("ftruncate"))
    }

    /// Writes `bytes` at `offset` (`pwrite(2)`, repeated until all are written or it fails):
    /// every shared mapping of the file sees them, without any being writable.
    pub fn write_at(&self, offset: usize, bytes: &[u8]) -> SysResult<()> {
        let (mut done, mut at) = (0usize, offset as u64);
        while let Some(rest) = bytes.get(done..).filter(|rest| !rest.is_empty()) {
            match rustix::io::pwrite(&self.0, rest, at) {
                // A file of ours, sized beforehand: no write makes no progress, but a loop
                // must not spin if one did.
                Ok(0) => {
                    return Err(SysError { op: "pwrite", errno: rustix::io::Errno::NOSPC.raw_os_error() })
                }
                Ok(n) => {
                    done += n;
                    at += n as u64;
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(err("pwrite")(e)),
            }
        }
        Ok(())
    }

    /// Maps its first `len` bytes, shared, with `prot` (`mmap(2)`, `MAP_SHARED`): every mapping
    /// of the file sees the same bytes.
    pub fn map(&self, len: usize, prot: Protection) -> SysResult<*mut u8> {
        // SAFETY: a fresh mapping at an address the kernel chooses aliases nothing of ours
        // but the file's other mappings, which the caller manages.
        let p = unsafe { mm::mmap(ptr::null_mut(), len, prot.prot_flags(), MapFlags::SHARED, &self.0, 0) };
        p.map(|p| p.cast()).map_err(err("mmap"))
    }
}

/// What kind of file an open descriptor or a path names, as far as reading it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file: its size is known and it can be read at offsets.
    Regular,
    /// A directory: nothing to read.
    Directory,
    /// Anything else that opens (a FIFO, a pipe, a terminal, a character or block device): a
    /// stream, read to its end.
    Stream,
}

/// A file's status (`fstat(2)`/`stat(2)`): its kind and what tells one version from another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStatus {
    /// Regular file, directory or stream.
    pub kind: FileKind,
    /// The device it lives on (the kernel's encoding).
    pub dev: u64,
    /// Its inode number.
    pub ino: u64,
    /// Its size in bytes (0 for most streams).
    pub size: u64,
    /// Last modification: seconds and nanoseconds since the Unix epoch.
    pub mtime: (i64, i64),
    /// Last status change (a write, a rename, a permission change): seconds and nanoseconds.
    pub ctime: (i64, i64),
}

impl FileStatus {
    // The field types of `struct stat` vary by architecture (`c_ulong` here, `u64` there): the
    // casts are the identity or a widening on every one, and sizes are never negative.
    #[allow(clippy::unnecessary_cast)]
    fn of(st: &rustix::fs::Stat) -> Self {
        use rustix::fs::FileType;
        let kind = match FileType::from_raw_mode(st.st_mode as _) {
            FileType::RegularFile => FileKind::Regular,
            FileType::Directory => FileKind::Directory,
            _ => FileKind::Stream,
        };
        Self {
            kind,
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            size: if st.st_size < 0 { 0 } else { st.st_size as u64 },
            mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
        }
    }
}

/// The status of the file at `path`, following symbolic links (`stat(2)`).
pub fn status_at(path: &core::ffi::CStr) -> SysResult<FileStatus> {
    rustix::fs::stat(path).map(|st| FileStatus::of(&st)).map_err(err("stat"))
}

/// A file opened for reading, closed when dropped.
#[derive(Debug)]
pub struct OpenFile(rustix::fd::OwnedFd);

impl OpenFile {
    /// Opens `path` read-only without blocking (`open(2)`, `O_RDONLY | O_NONBLOCK | O_CLOEXEC |
    /// O_NOCTTY`): a FIFO without a writer opens at once, a terminal never becomes the
    /// process's controlling one.
    pub fn open_nonblocking(path: &core::ffi::CStr) -> SysResult<Self> {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
        retry_interrupted(|| rustix::fs::open(path, flags, Mode::empty())).map(Self).map_err(err("open"))
    }

    /// [`OpenFile::open_nonblocking`] that does not follow a symbolic link in the last
    /// component of `path` (`O_NOFOLLOW`): `None` if it is one.
    pub fn open_nonblocking_unless_link(path: &core::ffi::CStr) -> SysResult<Option<Self>> {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NOFOLLOW;
        match retry_interrupted(|| rustix::fs::open(path, flags, Mode::empty())) {
            Ok(fd) => Ok(Some(Self(fd))),
            Err(rustix::io::Errno::LOOP) => Ok(None),
            Err(e) => Err(err("open")(e)),
        }
    }

    /// Whether the file is open for writing anywhere now (`Some(true)`), or nowhere
    /// (`Some(false)`); `None` where the kernel will not say (a lease refused for another
    /// reason: another user's file, a file system without leases, a sandbox). Asked by taking a
    /// read lease (`fcntl(F_SETLEASE, F_RDLCK)`), which the kernel grants only while no file
    /// description has the file open for writing, and giving it back at once. Were a writer to
    /// open the file in that moment, the kernel would signal the lease's break with `SIGURG`
    /// (set first with `F_SETSIG`: ignored unless the process handles it) rather than the
    /// default `SIGIO`, which would end the process.
    pub fn open_for_writing(&self) -> Option<bool> {
        const F_SETSIG: usize = 10;
        const F_SETLEASE: usize = 1024;
        const F_RDLCK: usize = 0;
        const F_UNLCK: usize = 2;
        const SIGURG: usize = 23;
        fcntl_raw(&self.0, F_SETSIG, SIGURG).ok()?;
        match fcntl_raw(&self.0, F_SETLEASE, F_RDLCK) {
            Ok(_) => {
                let _ = fcntl_raw(&self.0, F_SETLEASE, F_UNLCK);
                Some(false)
            }
            Err(rustix::io::Errno::AGAIN) => Some(true),
            Err(_) => None,
        }
    }

    /// Its status now (`fstat(2)`).
    pub fn status(&self) -> SysResult<FileStatus> {
        rustix::fs::fstat(&self.0).map(|st| FileStatus::of(&st)).map_err(err("fstat"))
    }

    /// Whether the file system holding the file lets its pages be mapped executable (`fstatvfs(2)`:
    /// not mounted `noexec`); false if it cannot be told.
    pub fn allows_executable_mappings(&self) -> bool {
        rustix::fs::fstatvfs(&self.0)
            .is_ok_and(|st| !st.f_flag.contains(rustix::fs::StatVfsMountFlags::NOEXEC))
    }

    /// Reads into `buf` from `offset` (`pread(2)`, made again when a signal interrupts it);
    /// how many bytes it read, 0 at the end of the file.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> SysResult<usize> {
        retry_interrupted(|| rustix::io::pread(&self.0, &mut *buf, offset)).map_err(err("pread"))
    }

    /// Reads at most `most` bytes from `offset` into `buf`'s spare capacity (`pread(2)`, made
    /// again when a signal interrupts it), and makes them part of it: how many it read, 0 at
    /// the end. Nothing is zeroed first: the kernel writes the bytes counted.
    #[allow(unsafe_code)]
    pub fn read_at_appending(
        &self,
        buf: &mut alloc::vec::Vec<u8>,
        most: usize,
        offset: u64,
    ) -> SysResult<usize> {
        let spare = buf.spare_capacity_mut();
        let room = most.min(spare.len());
        let spare = &mut spare[..room];
        let read =
            retry_interrupted(|| rustix::io::pread(&self.0, &mut *spare, offset).map(|(read, _)| read.len()))
                .map_err(err("pread"))?;
        // SAFETY: pread wrote `read` bytes (at most `room`, within the capacity) at the start of
        // the spare capacity, right after the vector's length.
        unsafe { buf.set_len(buf.len() + read) };
        Ok(read)
    }

    /// Reads into `buf` from the current position (`read(2)`, made again when a signal
    /// interrupts it); how many bytes it read, 0 at the end. A stream with nothing to read yet
    /// fails with `EAGAIN` ([`SysError::would_block`]).
    pub fn read(&self, buf: &mut [u8]) -> SysResult<usize> {
        retry_interrupted(|| rustix::io::read(&self.0, &mut *buf)).map_err(err("read"))
    }

    /// Waits at most `timeout` until it has something to read or its writer has gone
    /// (`poll(2)`, `POLLIN`). A signal ends the wait early ([`Readiness::Interrupted`]): the
    /// caller, who keeps the clock, waits again for what is left of its deadline (`poll` is
    /// never restarted after a handler, and restarting it with the whole timeout would let a
    /// periodic signal hold the wait open forever).
    pub fn wait_readable(&self, timeout: Duration) -> SysResult<Readiness> {
        use rustix::event::{poll, PollFd, PollFlags};
        let timeout = timespec(timeout);
        let mut fds = [PollFd::new(&self.0, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => Ok(Readiness::TimedOut),
            Ok(_) => Ok(Readiness::Ready),
            Err(rustix::io::Errno::INTR) => Ok(Readiness::Interrupted),
            Err(e) => Err(err("poll")(e)),
        }
    }
}

/// How a wait for something to read ended ([`OpenFile::wait_readable`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// There is something to read, or the writer has gone.
    Ready,
    /// The time given passed first.
    TimedOut,
    /// A signal's handler ran first; the time given may not have passed.
    Interrupted,
}

/// `fcntl(fd, command, argument)` for the commands rustix has no call for (leases).
#[allow(unsafe_code)]
fn fcntl_raw(fd: &rustix::fd::OwnedFd, command: usize, argument: usize) -> Result<usize, rustix::io::Errno> {
    use rustix::fd::AsRawFd;
    let fd = fd.as_raw_fd() as usize;
    // SAFETY: fcntl with an integer argument reads and writes no user memory.
    unsafe { raw::syscall3(raw::number::FCNTL, fd, command, argument) }
}

impl SysError {
    /// Whether the call failed because it would have blocked (`EAGAIN`).
    pub fn would_block(&self) -> bool {
        self.errno == rustix::io::Errno::AGAIN.raw_os_error()
    }
}

/// Makes `call` again while a signal interrupts it (`EINTR`).
fn retry_interrupted<T>(mut call: impl FnMut() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    loop {
        match call() {
            Err(rustix::io::Errno::INTR) => {}
            other => return other,
        }
    }
}

/// `duration` as a `timespec`, the longest one when it does not fit.
fn timespec(duration: Duration) -> rustix::event::Timespec {
    rustix::event::Timespec {
        tv_sec: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(duration.subsec_nanos()),
    }
}

/// Faults `addr..addr+len` in writable now, in one call (`madvise(2)`, `MADV_POPULATE_WRITE`,
/// Linux 5.14).
///
/// # Safety
/// The range is a writable mapping of the caller's; populating changes no content.
pub unsafe fn populate_write(addr: *mut u8, len: usize) -> SysResult<()> {
    // SAFETY: forwarded to the caller's contract.
    unsafe { mm::madvise(addr.cast(), len, mm::Advice::LinuxPopulateWrite) }.map_err(err("madvise"))
}

/// `write(2)` of `len` bytes at `src` to `fd`, made without a Rust reference to the bytes: the
/// kernel reads them with its own fault handling (a page that cannot be read is `EFAULT`,
/// never a signal). rustix takes only slices, and a slice must point at memory Rust may read,
/// which a file mapping whose file shrank is not.
///
/// # Safety
/// `src .. src + len` is address space the caller may name; nothing else is required of it.
pub unsafe fn write_unchecked(
    fd: rustix::fd::BorrowedFd<'_>,
    src: *const u8,
    len: usize,
) -> SysResult<usize> {
    use rustix::fd::AsRawFd;
    let fd = usize::try_from(fd.as_raw_fd())
        .map_err(|_| SysError { op: "write", errno: rustix::io::Errno::BADF.raw_os_error() })?;
    // SAFETY: write reads `len` bytes at `src` in the kernel, which reports a page it cannot
    // read as EFAULT, and writes no user memory: the caller's contract covers it.
    unsafe { raw::syscall3(raw::number::WRITE, fd, src as usize, len) }.map_err(err("write"))
}

/// Sleeps for `duration` (`nanosleep(2)`; after a signal, for the time that was left).
pub fn sleep(duration: Duration) {
    use rustix::thread::{nanosleep, NanosleepRelativeResult};
    let mut left = timespec(duration);
    while let NanosleepRelativeResult::Interrupted(rest) = nanosleep(&left) {
        left = rest;
    }
}

/// Sleeps while `word` holds `expected` (`futex(2)` `FUTEX_WAIT_PRIVATE`); returns at once if
/// it does not, and may return spuriously: callers check their condition again.
pub fn futex_wait(word: &AtomicU32, expected: u32) {
    use rustix::thread::futex;
    let _ = futex::wait(word, futex::Flags::PRIVATE, expected, None);
}

/// Wakes up to `count` threads sleeping on `word` (`futex(2)` `FUTEX_WAKE_PRIVATE`).
pub fn futex_wake(word: &AtomicU32, count: u32) {
    use rustix::thread::futex;
    let _ = futex::wake(word, futex::Flags::PRIVATE, count);
}

/// This process's ID (`getpid(2)`): what tells a forked child from its parent, whose memory
/// (shared mappings included) it starts with.
pub fn process_id() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get().unsigned_abs()
}

/// Eight bytes from the kernel's random pool (`getrandom(2)`, non-blocking: during early boot,
/// before the pool is initialized, the kernel's best effort), or `None` if the call fails (a
/// kernel or sandbox without it).
pub fn random_u64() -> Option<u64> {
    use rustix::rand::{getrandom, GetRandomFlags};
    let mut bytes = [0u8; 8];
    let filled = getrandom(&mut bytes, GetRandomFlags::NONBLOCK | GetRandomFlags::INSECURE)
        .or_else(|_| getrandom(&mut bytes, GetRandomFlags::NONBLOCK))
        .ok()?;
    (filled == bytes.len()).then(|| u64::from_le_bytes(bytes))
}

/// Makes every thread of the process execute a core-serializing instruction before it next
/// runs user code (`membarrier(2)`, `MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE`), so that
/// code written by one thread is safe to run on the others. Registers on first use; a kernel
/// (or emulator) without the command makes this a no-op, which is then the best available.
pub fn sync_core_all_threads() {
    use rustix::thread::{membarrier, MembarrierCommand};
    const UNKNOWN: u8 = 0;
    const READY: u8 = 1;
    const UNSUPPORTED: u8 = 2;
    static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);
    if STATE.load(Ordering::Acquire) == UNKNOWN {
        let state = match membarrier(MembarrierCommand::RegisterPrivateExpeditedSyncCore) {
            Ok(()) => READY,
            Err(_) => UNSUPPORTED,
        };
        STATE.store(state, Ordering::Release);
    }
    if STATE.load(Ordering::Acquire) == READY {
        let _ = membarrier(MembarrierCommand::PrivateExpeditedSyncCore);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot make the mmap and mprotect syscalls")]
    fn the_probed_page_size_is_the_kernels() {
        let probed = probe_page_size().expect("a 512 KiB reservation");
        assert_eq!(probed, rustix::param::page_size());
        assert_eq!(page_size(), probed);
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot make the mmap and mprotect syscalls")]
    fn a_given_page_size_is_taken_only_if_linux_could_have_it_and_none_is_known() {
        let kernel = rustix::param::page_size();
        for impossible in [0, 1, 2048, 4095, 12288, 512 << 10] {
            // SAFETY: none of these is a size Linux pages can have: refused before it is taken.
            assert!(!unsafe { use_page_size(impossible) }, "{impossible}");
        }
        assert_eq!(page_size(), kernel);
        // SAFETY: the kernel's own page size.
        assert!(unsafe { use_page_size(kernel) });
        let other = if kernel == 4096 { 16384 } else { 4096 };
        // SAFETY: refused: the page size is known (asked for above).
        assert!(!unsafe { use_page_size(other) });
        assert_eq!(page_size(), kernel);
    }
}
