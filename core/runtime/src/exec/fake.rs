//! Kernels for tests: [`SimulatedKernel`] keeps "mappings" in heap memory and their protections
//! in a table, so the allocator runs (and Miri checks its unsafe code) without a syscall;
//! [`FaultInjector`] wraps any kernel and fails the call a test picks, the way smoltcp tests its
//! stack over a fault-injecting device.
//!
//! The simulation is stricter than Linux where that catches allocator bugs: it refuses a
//! writable and executable protection (unless built to allow it), and any call on a range that
//! is not wholly inside one of its mappings.

#![allow(unsafe_code)]

use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::kernel::Kernel;
use crate::sys::{OpenFile, Protection, SharedMemory, SysError, SysResult};

/// `EINVAL`: a range the simulation does not know.
const EINVAL: i32 = 22;
/// `ENOSYS`: what the simulation answers for shared memory, which it cannot map twice.
pub const ENOSYS: i32 = 38;
/// `ENOMEM`: what [`FaultInjector`] answers by default (what the kernel says at
/// `vm.max_map_count` or when memory runs out).
pub const ENOMEM: i32 = 12;

/// One simulated mapping: heap memory and one protection per page.
#[derive(Debug)]
struct Mapping {
    len: usize,
    protections: Vec<Protection>,
}

/// A kernel that hands out heap memory as "mappings" and keeps their protections in a table.
#[derive(Debug)]
pub struct SimulatedKernel {
    page: usize,
    allow_rwx: bool,
    /// What every mapping's address is a multiple of (at least a page).
    mapping_align: usize,
    /// Mappings by start address.
    mappings: spin::Mutex<BTreeMap<usize, Mapping>>,
    calls: AtomicUsize,
    /// Times other threads were told to re-fetch instructions (not among `calls`).
    syncs: AtomicUsize,
    /// The range the last `populate` asked for: address and length.
    last_populate: spin::Mutex<Option<(usize, usize)>>,
}

/// What a [`SimulatedKernel`] has mapped now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimulatedUsage {
    /// Live mappings.
    pub mappings: usize,
    /// Bytes in them.
    pub bytes: usize,
    /// Pages that are executable.
    pub executable_pages: usize,
}

impl SimulatedKernel {
    /// A simulation with 4 KiB pages that refuses writable and executable pages.
    pub const fn new() -> Self {
        Self::with_page_size(4096, false)
    }

    /// A simulation with `page`-byte pages (a power of two); `allow_rwx` lets it make pages
    /// writable and executable (for the allocator's debugging mode).
    pub const fn with_page_size(page: usize, allow_rwx: bool) -> Self {
        Self {
            page,
            allow_rwx,
            mapping_align: page,
            mappings: spin::Mutex::new(BTreeMap::new()),
            calls: AtomicUsize::new(0),
            syncs: AtomicUsize::new(0),
            last_populate: spin::Mutex::new(None),
        }
    }

    /// A simulation with 4 KiB pages, as [`SimulatedKernel::new`], whose every mapping's address
    /// is a multiple of `align` (a power of two): a layout that depends on where memory lies,
    /// fixed for a test.
    pub const fn with_aligned_mappings(align: usize) -> Self {
        let mut kernel = Self::new();
        if align > kernel.page {
            kernel.mapping_align = align;
        }
        kernel
    }

    /// What is mapped now.
    pub fn usage(&self) -> SimulatedUsage {
        let mappings = self.mappings.lock();
        SimulatedUsage {
            mappings: mappings.len(),
            bytes: mappings.values().map(|m| m.len).sum(),
            executable_pages: mappings
                .values()
                .flat_map(|m| m.protections.iter())
                .filter(|p| matches!(p, Protection::ReadExec | Protection::ReadWriteExec))
                .count(),
        }
    }

    /// The protection of the page holding `addr`, if it is mapped.
    pub fn protection_at(&self, addr: usize) -> Option<Protection> {
        let mappings = self.mappings.lock();
        let (&base, mapping) = mappings.range(..=addr).next_back()?;
        (addr < base + mapping.len).then(|| mapping.protections[(addr - base) / self.page])
    }

    /// Calls made so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    /// Times [`Kernel::sync_other_threads`] was called (after new code became executable).
    pub fn syncs(&self) -> usize {
        self.syncs.load(Ordering::Relaxed)
    }

    /// The range (address, length) the last [`Kernel::populate`] call asked to fault in,
    /// whether or not it was valid.
    pub fn last_populate(&self) -> Option<(usize, usize)> {
        *self.last_populate.lock()
    }

    fn layout(&self, len: usize) -> SysResult<Layout> {
        Layout::from_size_align(len, self.mapping_align).map_err(|_| SysError { op: "mmap", errno: EINVAL })
    }

    fn map(&self, len: usize, prot: Protection, op: &'static str) -> SysResult<*mut u8> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if len == 0 || len % self.page != 0 {
            return Err(SysError { op, errno: EINVAL });
        }
        self.check_protection(prot, op)?;
        let layout = self.layout(len)?;
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(SysError { op, errno: ENOMEM });
        }
        let mapping = Mapping { len, protections: vec![prot; len / self.page] };
        self.mappings.lock().insert(ptr as usize, mapping);
        Ok(ptr)
    }

    fn check_protection(&self, prot: Protection, op: &'static str) -> SysResult<()> {
        if prot == Protection::ReadWriteExec && !self.allow_rwx {
            return Err(SysError { op, errno: EINVAL });
        }
        Ok(())
    }

    /// Runs `f` on the protections of the pages of `addr..addr+len`, which must lie inside one
    /// mapping and be page-aligned.
    fn with_pages<T>(
        &self,
        addr: *mut u8,
        len: usize,
        op: &'static str,
        f: impl FnOnce(&mut [Protection]) -> T,
    ) -> SysResult<T> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let (start, page) = (addr as usize, self.page);
        let bad = SysError { op, errno: EINVAL };
        if len == 0 || start % page != 0 || len % page != 0 {
            return Err(bad);
        }
        let mut mappings = self.mappings.lock();
        let (&base, mapping) = mappings.range_mut(..=start).next_back().ok_or(bad)?;
        let end = start.checked_add(len).ok_or(bad)?;
        if end > base + mapping.len {
            return Err(bad);
        }
        Ok(f(&mut mapping.protections[(start - base) / page..(end - base) / page]))
    }

    /// Removes the mapping starting at `addr` of exactly `len` bytes and frees its memory.
    fn remove(&self, addr: *mut u8, len: usize, op: &'static str) -> SysResult<()> {
        let mut mappings = self.mappings.lock();
        match mappings.get(&(addr as usize)) {
            Some(m) if m.len == len => {}
            _ => return Err(SysError { op, errno: EINVAL }),
        }
        mappings.remove(&(addr as usize));
        drop(mappings);
        let layout = self.layout(len)?;
        // SAFETY: `addr` came from `alloc_zeroed` with this layout in `map`, and is removed from
        // the table, so it is freed once.
        unsafe { dealloc(addr, layout) };
        Ok(())
    }
}

impl Default for SimulatedKernel {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SimulatedKernel {
    fn drop(&mut self) {
        let mappings = core::mem::take(&mut *self.mappings.lock());
        for (base, mapping) in mappings {
            if let Ok(layout) = self.layout(mapping.len) {
                // SAFETY: every mapping left in the table came from `alloc_zeroed` with this
                // layout and is freed once, here.
                unsafe { dealloc(base as *mut u8, layout) };
            }
        }
    }
}

impl Kernel for SimulatedKernel {
    fn page_size(&self) -> usize {
        self.page
    }

    fn reserve(&self, len: usize) -> SysResult<*mut u8> {
        self.map(len, Protection::ReadWrite, "mmap")
    }

    fn map_anonymous(&self, len: usize, prot: Protection) -> SysResult<*mut u8> {
        self.map(len, prot, "mmap")
    }

    unsafe fn protect(&self, addr: *mut u8, len: usize, prot: Protection) -> SysResult<()> {
        self.check_protection(prot, "mprotect")?;
        self.with_pages(addr, len, "mprotect", |pages| pages.fill(prot))
    }

    unsafe fn discard(&self, addr: *mut u8, len: usize, prot: Protection) -> SysResult<()> {
        self.check_protection(prot, "mmap")?;
        self.with_pages(addr, len, "mmap", |pages| pages.fill(prot))?;
        // SAFETY: the range lies inside one of our mappings (checked above), which the caller
        // no longer uses.
        unsafe { core::ptr::write_bytes(addr, 0, len) };
        Ok(())
    }

    unsafe fn unmap(&self, addr: *mut u8, len: usize) -> SysResult<()> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.remove(addr, len, "munmap")
    }

    unsafe fn move_over(&self, from: *mut u8, to: *mut u8, len: usize) -> SysResult<()> {
        let protections = self.with_pages(from, len, "mremap", |pages| pages.to_vec())?;
        self.with_pages(to, len, "mremap", |pages| pages.copy_from_slice(&protections))?;
        // SAFETY: both ranges lie inside our mappings (checked above) and are distinct
        // mappings of the caller's.
        unsafe { core::ptr::copy_nonoverlapping(from, to, len) };
        self.remove(from, len, "mremap")
    }

    /// The file's bytes copied in (zeros past its end), the pages given `prot`.
    unsafe fn map_file(
        &self,
        addr: *mut u8,
        len: usize,
        file: &OpenFile,
        offset: u64,
        prot: Protection,
    ) -> SysResult<()> {
        self.check_protection(prot, "mmap")?;
        self.with_pages(addr, len, "mmap", |_| ())?;
        let mut bytes = vec![0u8; len];
        let mut read = 0;
        while read < len {
            let at = offset.checked_add(read as u64).ok_or(SysError { op: "mmap", errno: EINVAL })?;
            match file.read_at(&mut bytes[read..], at)? {
                0 => break,
                n => read += n,
            }
        }
        self.with_pages(addr, len, "mmap", |pages| pages.fill(prot))?;
        // SAFETY: the range lies inside one of our mappings (checked above), which the caller
        // no longer uses.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), addr, len) };
        Ok(())
    }

    unsafe fn populate(&self, addr: *mut u8, len: usize) -> SysResult<()> {
        *self.last_populate.lock() = Some((addr as usize, len));
        let writable =
            self.with_pages(addr, len, "madvise", |pages| pages.iter().all(|p| *p == Protection::ReadWrite))?;
        if writable {
            Ok(())
        } else {
            Err(SysError { op: "madvise", errno: EINVAL })
        }
    }

    fn sync_other_threads(&self) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
    }

    fn shared_memory(&self) -> SysResult<SharedMemory> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Err(SysError { op: "memfd_create", errno: ENOSYS })
    }

    fn resize_shared(&self, _: &SharedMemory, _: usize) -> SysResult<()> {
        Err(SysError { op: "ftruncate", errno: ENOSYS })
    }

    fn map_shared(&self, _: &SharedMemory, _: usize, _: Protection) -> SysResult<*mut u8> {
        Err(SysError { op: "mmap", errno: ENOSYS })
    }

    fn write_shared(&self, _: &SharedMemory, _: usize, _: &[u8]) -> SysResult<()> {
        Err(SysError { op: "pwrite", errno: ENOSYS })
    }
}

/// Wraps a kernel and fails one chosen call: the test counts the calls an operation makes,
/// then repeats it failing each in turn.
#[derive(Debug)]
pub struct FaultInjector {
    inner: &'static dyn Kernel,
    /// Fallible calls made so far.
    calls: AtomicUsize,
    /// The number (counted from 0) of the call to fail; `usize::MAX` for none.
    fail_at: AtomicUsize,
    errno: i32,
    /// Calls failed so far.
    failed: AtomicUsize,
    /// The number of the call before which [`FaultInjector::interleave_at`]'s hook runs.
    hook_at: AtomicUsize,
    hook: spin::Mutex<Option<fn()>>,
}

impl FaultInjector {
    /// Wraps `inner`, failing nothing until [`FaultInjector::fail_call`].
    pub const fn new(inner: &'static dyn Kernel) -> Self {
        Self {
            inner,
            calls: AtomicUsize::new(0),
            fail_at: AtomicUsize::new(usize::MAX),
            errno: ENOMEM,
            failed: AtomicUsize::new(0),
            hook_at: AtomicUsize::new(usize::MAX),
            hook: spin::Mutex::new(None),
        }
    }

    /// Runs `hook` once, just before the `n`th fallible call from now is made: what another
    /// thread may do while the caller is in the kernel. Only for calls the allocator makes
    /// outside its lock (the protection changes of a seal or a release): a hook that uses the
    /// allocator during a call made under its lock waits for itself.
    pub fn interleave_at(&self, n: usize, hook: fn()) {
        *self.hook.lock() = Some(hook);
        self.hook_at.store(self.calls().saturating_add(n), Ordering::SeqCst);
    }

    /// Fallible calls made so far (every call but `page_size` and `sync_other_threads`).
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Makes the `n`th fallible call from now (0: the next one) fail with `ENOMEM`.
    pub fn fail_call(&self, n: usize) {
        self.fail_at.store(self.calls().saturating_add(n), Ordering::SeqCst);
    }

    /// Fails nothing from now on.
    pub fn disarm(&self) {
        self.fail_at.store(usize::MAX, Ordering::SeqCst);
    }

    /// Calls failed so far.
    pub fn failures(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }

    fn check(&self, op: &'static str) -> SysResult<()> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n == self.hook_at.load(Ordering::SeqCst) {
            let hook = self.hook.lock().take();
            if let Some(hook) = hook {
                hook();
            }
        }
        if n == self.fail_at.load(Ordering::SeqCst) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(SysError { op, errno: self.errno });
        }
        Ok(())
    }
}

impl Kernel for FaultInjector {
    fn page_size(&self) -> usize {
        self.inner.page_size()
    }

    fn reserve(&self, len: usize) -> SysResult<*mut u8> {
        self.check("mmap")?;
        self.inner.reserve(len)
    }

    fn map_anonymous(&self, len: usize, prot: Protection) -> SysResult<*mut u8> {
        self.check("mmap")?;
        self.inner.map_anonymous(len, prot)
    }

    unsafe fn protect(&self, addr: *mut u8, len: usize, prot: Protection) -> SysResult<()> {
        self.check("mprotect")?;
        // SAFETY: forwarded to the caller's contract.
        unsafe { self.inner.protect(addr, len, prot) }
    }

    unsafe fn discard(&self, addr: *mut u8, len: usize, prot: Protection) -> SysResult<()> {
        self.check("mmap")?;
        // SAFETY: forwarded to the caller's contract.
        unsafe { self.inner.discard(addr, len, prot) }
    }

    unsafe fn unmap(&self, addr: *mut u8, len: usize) -> SysResult<()> {
        self.check("munmap")?;
        // SAFETY: forwarded to the caller's contract.
        unsafe { self.inner.unmap(addr, len) }
    }

    unsafe fn move_over(&self, from: *mut u8, to: *mut u8, len: usize) -> SysResult<()> {
        self.check("mremap")?;
        // SAFETY: forwarded to the caller's contract.
        unsafe { self.inner.move_over(from, to, len) }
    }

    unsafe fn map_file(
        &self,
        addr: *mut u8,
        len: usize,
        file: &OpenFile,
        offset: u64,
        prot: Protection,
    ) -> SysResult<()> {
        self.check("mmap")?;
        // SAFETY: forwarded to the caller's contract.
        unsafe { self.inner.map_file(addr, len, file, offset, prot) }
    }

    unsafe fn populate(&self, addr: *mut u8, len: usize) -> SysResult<()> {
        self.check("madvise")?;
        // SAFETY: forwarded to the caller's contract.
        unsafe { self.inner.populate(addr, len) }
    }

    fn sync_other_threads(&self) {
        self.inner.sync_other_threads();
    }

    fn shared_memory(&self) -> SysResult<SharedMemory> {
        self.check("memfd_create")?;
        self.inner.shared_memory()
    }

    fn resize_shared(&self, memory: &SharedMemory, len: usize) -> SysResult<()> {
        self.check("ftruncate")?;
        self.inner.resize_shared(memory, len)
    }

    fn map_shared(&self, memory: &SharedMemory, len: usize, prot: Protection) -> SysResult<*mut u8> {
        self.check("mmap")?;
        self.inner.map_shared(memory, len, prot)
    }

    fn write_shared(&self, memory: &SharedMemory, offset: usize, bytes: &[u8]) -> SysResult<()> {
        self.check("pwrite")?;
        self.inner.write_shared(memory, offset, bytes)
    }
}
