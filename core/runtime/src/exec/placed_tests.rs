//! The allocator over a kernel whose reservations land where the test says: a region
//! reserved over the addresses of one unmapped before, and regions side by side, for what the
//! allocator must forget when a region goes.

#![allow(unsafe_code)]

use alloc::vec::Vec;

use super::fake::SimulatedKernel;
use super::{ExecAllocator, ExecConfig};
use crate::sys::Protection;

const PAGE: usize = 4096;

/// A kernel whose reservations land where the test says (pages into one simulated mapping),
/// so that a region can be reserved over the addresses of one unmapped before. Unmapping
/// leaves the pages to the arena, read-write and zero.
#[derive(Debug)]
struct PlacedKernel {
    inner: &'static SimulatedKernel,
    arena: spin::Mutex<usize>,
    /// Where the next reservations start, in pages into the arena.
    next: spin::Mutex<Vec<usize>>,
}

const ARENA_PAGES: usize = 64;

/// Regions of 8 pages, none kept spare: an emptied region goes back to the kernel at once.
const EIGHT_PAGE_REGIONS: ExecConfig =
    ExecConfig { region_size: 8 * PAGE, spare_regions: 0, allow_rwx: false };

impl PlacedKernel {
    /// A kernel placing its reservations in an arena of `inner`'s, where the test says.
    const fn over(inner: &'static SimulatedKernel) -> Self {
        Self { inner, arena: spin::Mutex::new(0), next: spin::Mutex::new(Vec::new()) }
    }

    /// Gives the arena back to the simulation (once the allocator over it is gone).
    fn release_arena(&self) {
        let arena = core::mem::take(&mut *self.arena.lock());
        if arena != 0 {
            // SAFETY: the allocator that used the arena is dropped: nothing references it.
            unsafe { super::Kernel::unmap(self.inner, arena as *mut u8, ARENA_PAGES * PAGE) }.unwrap();
        }
    }
}

impl super::Kernel for PlacedKernel {
    fn page_size(&self) -> usize {
        PAGE
    }
    fn reserve(&self, len: usize) -> crate::sys::SysResult<*mut u8> {
        let mut arena = self.arena.lock();
        if *arena == 0 {
            *arena = self.inner.reserve(ARENA_PAGES * PAGE)? as usize;
        }
        let at = *arena + self.next.lock().remove(0) * PAGE;
        // SAFETY: pages of the arena no region of the allocator holds any more (the test
        // places reservations only there).
        unsafe { self.inner.discard(at as *mut u8, len, Protection::ReadWrite)? };
        Ok(at as *mut u8)
    }
    fn map_anonymous(&self, len: usize, prot: Protection) -> crate::sys::SysResult<*mut u8> {
        self.inner.map_anonymous(len, prot)
    }
    unsafe fn protect(&self, addr: *mut u8, len: usize, prot: Protection) -> crate::sys::SysResult<()> {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.inner.protect(addr, len, prot) }
    }
    unsafe fn discard(&self, addr: *mut u8, len: usize, prot: Protection) -> crate::sys::SysResult<()> {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.inner.discard(addr, len, prot) }
    }
    unsafe fn unmap(&self, addr: *mut u8, len: usize) -> crate::sys::SysResult<()> {
        // SAFETY: the caller's contract (nothing uses the range): back to the arena.
        unsafe { self.inner.discard(addr, len, Protection::ReadWrite) }
    }
    unsafe fn map_file(
        &self,
        addr: *mut u8,
        len: usize,
        file: &crate::sys::OpenFile,
        offset: u64,
        prot: Protection,
    ) -> crate::sys::SysResult<()> {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.inner.map_file(addr, len, file, offset, prot) }
    }
    unsafe fn move_over(&self, from: *mut u8, to: *mut u8, len: usize) -> crate::sys::SysResult<()> {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.inner.move_over(from, to, len) }
    }
    unsafe fn populate(&self, addr: *mut u8, len: usize) -> crate::sys::SysResult<()> {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.inner.populate(addr, len) }
    }
    fn sync_other_threads(&self) {}
    fn shared_memory(&self) -> crate::sys::SysResult<crate::sys::SharedMemory> {
        self.inner.shared_memory()
    }
    fn resize_shared(&self, memory: &crate::sys::SharedMemory, len: usize) -> crate::sys::SysResult<()> {
        self.inner.resize_shared(memory, len)
    }
    fn map_shared(
        &self,
        memory: &crate::sys::SharedMemory,
        len: usize,
        prot: Protection,
    ) -> crate::sys::SysResult<*mut u8> {
        self.inner.map_shared(memory, len, prot)
    }
    fn write_shared(
        &self,
        memory: &crate::sys::SharedMemory,
        offset: usize,
        bytes: &[u8],
    ) -> crate::sys::SysResult<()> {
        self.inner.write_shared(memory, offset, bytes)
    }
}

#[test]
fn a_run_whose_region_was_unmapped_is_not_grown_into_a_region_reserved_over_it() {
    // Found by review: the batch grew its old run into the new region and its seal, which
    // skipped the run (its start lay in no region), left the new block open yet said Ok.
    static S: SimulatedKernel = SimulatedKernel::new();
    static K: PlacedKernel = PlacedKernel::over(&S);
    K.next.lock().extend([0, 4, 16]);
    {
        let exec = ExecAllocator::with_kernel(EIGHT_PAGE_REGIONS, &K);
        let mut a = exec.batch();
        let x = a.alloc(PAGE, 16).unwrap();
        let base = x.addr();
        let y = a.alloc(7 * PAGE, 16).unwrap();
        assert_eq!(y.addr(), base + PAGE, "the run is full");
        drop((x, y));
        assert!(exec.regions().is_empty(), "the region went back to the kernel");
        let mut b = exec.batch();
        let z = b.alloc(16, 16).unwrap();
        b.seal().unwrap();
        assert_eq!(z.addr(), base + 4 * PAGE, "a new region over the old run's addresses");
        let w = a.alloc(PAGE, 16).unwrap();
        a.seal().unwrap();
        assert!(exec.lookup(w.addr(), 1).unwrap().sealed, "a seal that says Ok sealed every block");
        assert_eq!(S.protection_at(w.addr()), Some(Protection::ReadExec));
    }
    K.release_arena();
}

#[test]
fn unmapping_a_region_forgets_only_the_runs_inside_it() {
    // Batch A's run fills the first region up to the second's start; batch B's region, right
    // after it, empties and goes. A keeps its run (its next block follows its last) and seals
    // every block in it.
    static S: SimulatedKernel = SimulatedKernel::new();
    static K: PlacedKernel = PlacedKernel::over(&S);
    K.next.lock().extend([0, 8]);
    {
        let exec = ExecAllocator::with_kernel(EIGHT_PAGE_REGIONS, &K);
        let mut a = exec.batch_of_many();
        let x = a.alloc(16, 16).unwrap();
        assert_eq!(exec.stats().pages_open, 8, "the run holds the whole region");
        let mut b = exec.batch();
        let y = b.alloc(16, 16).unwrap();
        assert_eq!(y.addr(), x.addr() + 8 * PAGE, "the next region, right after the first");
        drop(y);
        b.seal().unwrap();
        assert_eq!(exec.stats().regions, 1, "the second region went");
        let z = a.alloc(16, 16).unwrap();
        assert_eq!(z.addr(), x.addr() + 16, "the run goes on");
        a.seal().unwrap();
        for block in [&x, &z] {
            assert!(exec.lookup(block.addr(), 16).unwrap().sealed);
            assert_eq!(S.protection_at(block.addr()), Some(Protection::ReadExec));
        }
    }
    K.release_arena();
}

#[test]
fn a_run_ending_at_its_region_s_end_is_not_grown_into_the_region_right_after_it() {
    // Batch A's run fills the first region; the second region, right after it, has its first
    // page free. A's next block goes there in a run of its own, which its seal seals.
    static S: SimulatedKernel = SimulatedKernel::new();
    static K: PlacedKernel = PlacedKernel::over(&S);
    K.next.lock().extend([0, 8]);
    {
        let exec = ExecAllocator::with_kernel(EIGHT_PAGE_REGIONS, &K);
        let mut a = exec.batch();
        let x = a.alloc(8 * PAGE, 16).unwrap();
        let mut b = exec.batch();
        let (y, kept) = (b.alloc(PAGE, 16).unwrap(), b.alloc(PAGE, 16).unwrap());
        assert_eq!(y.addr(), x.addr() + 8 * PAGE, "the next region, right after the first");
        b.seal().unwrap();
        drop(y);
        let z = a.alloc(16, 16).unwrap();
        assert_eq!(z.addr(), x.addr() + 8 * PAGE, "the free page of the second region");
        a.seal().unwrap();
        assert_eq!(exec.stats().pages_open, 0);
        for block in [&x, &z] {
            assert!(exec.lookup(block.addr(), 16).unwrap().sealed);
            assert_eq!(S.protection_at(block.addr()), Some(Protection::ReadExec));
        }
        drop((x, z, kept));
    }
    K.release_arena();
}
