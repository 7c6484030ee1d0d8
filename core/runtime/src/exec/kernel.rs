//! The seam between the allocator and the kernel: the few memory syscalls it makes, as a trait.
//!
//! [`Linux`] makes them for real (through [`crate::sys`]). Tests swap in `SimulatedKernel`
//! (memory from the heap, protections kept in a table, so the allocator's unsafe code runs under
//! Miri) or wrap either in `FaultInjector`, which fails a chosen call, to check that every
//! failure path leaves nothing behind (both in `fake.rs`, built for the core's unit tests and
//! with the `testing` feature).
//!
//! The allocator treats a failed call as one that changed nothing.

#![allow(unsafe_code)]

use core::fmt;

use crate::sys::{self, OpenFile, Protection, SharedMemory, SysResult};

/// The memory syscalls the executable allocator makes.
///
/// Implementations must behave like Linux's for the ranges the allocator passes: every range is
/// page-aligned, lies inside memory the same kernel handed out, and a failed call leaves the
/// memory as it was.
pub trait Kernel: fmt::Debug + Send + Sync {
    /// The page size (a power of two).
    fn page_size(&self) -> usize;

    /// Reserves `len` bytes, read-write and zero, without committing memory
    /// (`mmap(MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)`).
    fn reserve(&self, len: usize) -> SysResult<*mut u8>;

    /// Maps `len` fresh zero bytes with `prot` (`mmap`, anonymous, private).
    fn map_anonymous(&self, len: usize, prot: Protection) -> SysResult<*mut u8>;

    /// Changes the protection of `addr..addr+len` (`mprotect`).
    ///
    /// # Safety
    /// The range is the caller's and nothing relies on its old protection.
    unsafe fn protect(&self, addr: *mut u8, len: usize, prot: Protection) -> SysResult<()>;

    /// Replaces `addr..addr+len` with zero pages of protection `prot` (a fixed anonymous map).
    ///
    /// # Safety
    /// The range is the caller's and nothing uses it any more.
    unsafe fn discard(&self, addr: *mut u8, len: usize, prot: Protection) -> SysResult<()>;

    /// Unmaps `addr..addr+len` (`munmap`).
    ///
    /// # Safety
    /// The range is the caller's and nothing uses it any more.
    unsafe fn unmap(&self, addr: *mut u8, len: usize) -> SysResult<()>;

    /// Replaces `addr..addr+len` with `len` bytes of `file` from `offset`, private, with
    /// protection `prot` (a fixed private file map: see [`sys::map_file_fixed`]).
    ///
    /// # Safety
    /// The range is the caller's and nothing uses what it held.
    unsafe fn map_file(
        &self,
        addr: *mut u8,
        len: usize,
        file: &OpenFile,
        offset: u64,
        prot: Protection,
    ) -> SysResult<()>;

    /// Moves the pages at `from` over `to`, atomically for other threads (`mremap` fixed).
    ///
    /// # Safety
    /// Both ranges are the caller's, `len` bytes each; `from` is not used afterwards.
    unsafe fn move_over(&self, from: *mut u8, to: *mut u8, len: usize) -> SysResult<()>;

    /// Faults `addr..addr+len` in writable now, in one call (`MADV_POPULATE_WRITE`); a kernel
    /// without it may fail, and the pages then fault in on first write.
    ///
    /// # Safety
    /// The range is the caller's and read-write.
    unsafe fn populate(&self, addr: *mut u8, len: usize) -> SysResult<()>;

    /// Makes every other thread serialize its instruction stream before it next runs user code
    /// (`membarrier` SYNC_CORE; needed on aarch64 only).
    fn sync_other_threads(&self);

    /// Creates an empty anonymous shared memory file (`memfd_create`); a kernel without one
    /// fails (the simulation does: it cannot map one thing twice).
    fn shared_memory(&self) -> SysResult<SharedMemory>;

    /// Sets the size of `memory` (`ftruncate`).
    fn resize_shared(&self, memory: &SharedMemory, len: usize) -> SysResult<()>;

    /// Maps the first `len` bytes of `memory`, shared, with `prot` (`mmap(MAP_SHARED)`).
    fn map_shared(&self, memory: &SharedMemory, len: usize, prot: Protection) -> SysResult<*mut u8>;

    /// Writes `bytes` into `memory` at `offset` (`pwrite`): its mappings see them.
    fn write_shared(&self, memory: &SharedMemory, offset: usize, bytes: &[u8]) -> SysResult<()>;

    /// The calling process's ID (`getpid`): a forked child's differs from the parent whose
    /// shared mappings it inherited.
    fn process_id(&self) -> u32 {
        sys::process_id()
    }
}

/// The real kernel: direct syscalls through [`crate::sys`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Linux;

/// The one [`Linux`] value allocators share.
pub static LINUX: Linux = Linux;

impl Kernel for Linux {
    fn page_size(&self) -> usize {
        sys::page_size()
    }

    fn reserve(&self, len: usize) -> SysResult<*mut u8> {
        sys::reserve(len, Protection::ReadWrite)
    }

    fn map_anonymous(&self, len: usize, prot: Protection) -> SysResult<*mut u8> {
        sys::map_anonymous(len, prot)
    }

    unsafe fn protect(&self, addr: *mut u8, len: usize, prot: Protection) -> SysResult<()> {
        // SAFETY: forwarded to the caller's contract.
        unsafe { sys::protect(addr, len, prot) }
    }

    unsafe fn discard(&self, addr: *mut u8, len: usize, prot: Protection) -> SysResult<()> {
        // SAFETY: forwarded to the caller's contract.
        unsafe { sys::discard(addr, len, prot) }
    }

    unsafe fn unmap(&self, addr: *mut u8, len: usize) -> SysResult<()> {
        // SAFETY: forwarded to the caller's contract.
        unsafe { sys::unmap(addr, len) }
    }

    unsafe fn move_over(&self, from: *mut u8, to: *mut u8, len: usize) -> SysResult<()> {
        // SAFETY: forwarded to the caller's contract.
        unsafe { sys::move_over(from, to, len) }
    }

    unsafe fn map_file(
        &self,
        addr: *mut u8,
        len: usize,
        file: &OpenFile,
        offset: u64,
        prot: Protection,
    ) -> SysResult<()> {
        // SAFETY: forwarded to the caller's contract.
        unsafe { sys::map_file_fixed(addr, len, file, offset, prot) }
    }

    unsafe fn populate(&self, addr: *mut u8, len: usize) -> SysResult<()> {
        // SAFETY: forwarded to the caller's contract (populating changes no content).
        unsafe { sys::populate_write(addr, len) }
    }

    fn sync_other_threads(&self) {
        #[cfg(target_arch = "aarch64")]
        sys::sync_core_all_threads();
    }

    fn shared_memory(&self) -> SysResult<SharedMemory> {
        SharedMemory::create(c"smf-code")
    }

    fn resize_shared(&self, memory: &SharedMemory, len: usize) -> SysResult<()> {
        memory.resize(len)
    }

    fn map_shared(&self, memory: &SharedMemory, len: usize, prot: Protection) -> SysResult<*mut u8> {
        memory.map(len, prot)
    }

    fn write_shared(&self, memory: &SharedMemory, offset: usize, bytes: &[u8]) -> SysResult<()> {
        memory.write_at(offset, bytes)
    }
}
