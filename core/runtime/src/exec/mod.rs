//! A W^X executable page allocator: no page it maps is ever writable and executable at once.
//!
//! Code is installed in **batches**: [`ExecAllocator::batch`] starts one, [`CodeBatch::alloc`]
//! hands out zeroed, writable blocks of any size at 16-byte granularity (alignment up to a
//! page), [`CodeBatch::write`] and [`CodeBatch::block_mut`] fill them, and [`CodeBatch::seal`]
//! makes every page of the batch read-execute with one protection change per contiguous run,
//! then synchronizes the instruction cache where the architecture needs it. Small blocks of one
//! batch share pages, so thousands of functions cost a handful of mappings. A sealed page is
//! never reopened: new code goes to new pages, and [`ExecAllocator::patch`] changes a sealed
//! block through a writable copy of the touched pages that is sealed and moved over the
//! originals.
//!
//! Address space is reserved in large regions; bookkeeping lives in ordinary heap memory, never
//! in executable pages. Pages whose last block is freed are released for reuse; empty regions
//! are returned to the kernel. A module image's code keeps a trap page in front of it (see
//! [`AllocatorStats::trap_pages`]); [`ExecAllocator::trim`] gives such pages back. The kernel is reached
//! through the [`Kernel`] trait: [`Linux`] in production, a simulation or a fault injector in
//! tests.
//!
//! # Safety model
//!
//! - **Ownership is a type.** A [`Block`] is the only handle to a block: it is not `Clone`, it
//!   borrows its allocator (so the allocator outlives it), and dropping it (or passing it to
//!   [`ExecAllocator::free_all`]) frees the block exactly once. Nothing frees, writes or patches
//!   by raw address, so no stale address can reach memory that has since gone to someone else.
//! - **A batch owns its open pages.** Pages open for a batch are read-write, hold only that
//!   batch's blocks and are touched by no other operation; only the [`CodeBatch`] (held by
//!   `&mut` or by value) writes into them or seals them. That is why
//!   [`CodeBatch::block_mut`] hands out a plain `&mut [u8]` and fills it without holding the
//!   allocator's lock. A batch dropped unsealed (or whose sealing failed) ends: its blocks stay
//!   valid until their owners drop them, and its pages are released as they empty.
//! - **Sealed pages never become writable.** A patch builds a sealed copy and moves it over the
//!   originals; freed pages lose their execute permission before anything reuses them.
//! - **The lock guards bookkeeping.** One lock (`lock.rs`: waiters sleep in the kernel after a
//!   short spin) serializes the page tables. Copies into a batch's pages, the zeroing of
//!   recycled pages, faulting pages in, and the protection changes of sealing and freeing run
//!   outside it: the pages concerned are marked first (a batch being sealed, pages being
//!   released) so that no one else touches them, and the outcome is booked under the lock
//!   again. Rarer changes (new regions, trap pages reclaimed, `trim`, patches) stay inside.
//! - **A failed syscall changes nothing.** Every kernel call is made before the bookkeeping
//!   that depends on it is updated, so a failure leaves the tables true to the pages. Pages
//!   that could not be released stay out of use until [`ExecAllocator::trim`] retries them.
//!
//! Read-write-execute pages exist only with [`ExecConfig::allow_rwx`], a debugging switch that
//! callers must set explicitly.

mod arena;
mod batch;
#[cfg(any(test, feature = "testing"))]
mod fake;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod file_tests;
#[cfg(test)]
mod free_tests;
mod function;
mod granule_bits;
mod icache;
pub mod kernel;
pub(crate) mod lock;
#[cfg(test)]
mod open_tests;
#[cfg(test)]
mod placed_tests;
mod region;
#[cfg(test)]
mod region_tests;
#[cfg(test)]
mod release_tests;
mod state;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod touched_tests;

pub use arena::{ArenaHeld, ArenaStats, CodeArena};
pub use batch::CodeBatch;
#[cfg(any(test, feature = "testing"))]
pub use fake::{FaultInjector, SimulatedKernel, SimulatedUsage, ENOMEM, ENOSYS};
pub use function::{function_pointer, Function};
pub use kernel::{Kernel, Linux, LINUX};

use core::fmt;

use crate::sys::{Protection, SysError};

/// Blocks are handed out at this granularity (bytes).
pub const GRANULE: usize = 16;

/// Allocator settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecConfig {
    /// Bytes of address space reserved at a time (more for larger blocks).
    pub region_size: usize,
    /// Empty regions kept reserved instead of unmapped.
    pub spare_regions: usize,
    /// Debugging only: map code pages read-write-execute and patch in place.
    pub allow_rwx: bool,
}

impl Default for ExecConfig {
    fn default() -> Self {
        Self { region_size: 4 << 20, spare_regions: 1, allow_rwx: false }
    }
}

/// Identifies a batch of blocks that are sealed together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId(pub(crate) u64);

impl BatchId {
    /// The raw number.
    pub const fn raw(self) -> u64 {
        self.0
    }
}

/// A block of memory the allocator handed out, owned: it is freed once, when dropped (or by
/// [`ExecAllocator::free_all`]). Dropping it means nothing runs in it or reads it any more.
pub struct Block<'a> {
    allocator: &'a ExecAllocator,
    addr: usize,
    size: usize,
    /// The batch that allocated it (ids are never reused within an allocator).
    batch: BatchId,
}

impl Block<'_> {
    /// The first byte.
    pub const fn addr(&self) -> usize {
        self.addr
    }

    /// Its size in bytes (the request rounded up to [`GRANULE`], or to pages for an image's
    /// segment; an image's code and writable data in a batch of many, to its alignment and at
    /// least 64 bytes).
    pub const fn size(&self) -> usize {
        self.size
    }

    /// The first byte as a pointer.
    pub const fn as_ptr(&self) -> *const u8 {
        self.addr as *const u8
    }

    /// The function at `offset` in the block, as `F`, if the block is sealed code (and `F` a
    /// function pointer type); it borrows the block, so the code lives while it does.
    ///
    /// # Safety
    /// A function whose signature and ABI are `F`'s starts at `offset`.
    #[allow(unsafe_code)]
    pub unsafe fn function<F: Copy>(&self, offset: usize) -> Option<Function<'_, F>> {
        let addr = self.at(offset, 1).ok()?;
        let info = self.allocator.lookup(addr, 1)?;
        if !info.is_executable() {
            return None;
        }
        // SAFETY: sealed code of this block, which `self` keeps alive for the handle's life;
        // the signature is the caller's contract.
        unsafe { Function::at(addr) }
    }

    /// Whether `addr..addr+len` lies inside the block.
    pub fn contains(&self, addr: usize, len: usize) -> bool {
        addr >= self.addr && addr.checked_add(len).is_some_and(|end| end <= self.addr + self.size)
    }

    /// `offset..offset+len` of the block as an address, if it lies inside.
    fn at(&self, offset: usize, len: usize) -> Result<usize, ExecError> {
        let addr = self.addr.checked_add(offset).filter(|&a| self.contains(a, len));
        addr.ok_or(ExecError::NotOwned { addr: self.addr.wrapping_add(offset), len })
    }
}

impl fmt::Debug for Block<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Block").field("addr", &(self.addr as *const u8)).field("size", &self.size).finish()
    }
}

impl Drop for Block<'_> {
    fn drop(&mut self) {
        // Errors only mean pages could not be released yet: `trim` retries them.
        let _ = self.allocator.release(&[self.addr]);
    }
}

/// What a block's pages become when sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryKind {
    /// Read-execute.
    Code,
    /// Read-only (rodata, a module's GOT).
    ReadOnly,
    /// Read-write, never executable (data, bss).
    ReadWrite,
}

/// What the allocator knows of a live block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    /// Its first byte.
    pub addr: usize,
    /// Its size in bytes.
    pub size: usize,
    /// The batch it belongs to while unsealed (`None` once sealed).
    pub batch: Option<BatchId>,
    /// Whether its pages are sealed.
    pub sealed: bool,
    /// What its pages are (or become when sealed).
    pub kind: MemoryKind,
}

impl BlockInfo {
    /// Whether the block is sealed code (safe to call into).
    pub fn is_executable(&self) -> bool {
        self.sealed && self.kind == MemoryKind::Code
    }
}

/// Allocator statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocatorStats {
    /// Live blocks.
    pub blocks_live: usize,
    /// Bytes in live blocks.
    pub bytes_live: usize,
    /// Pages open for writing.
    pub pages_open: usize,
    /// Sealed pages (not counting trap pages).
    pub pages_sealed: usize,
    /// Trap pages: sealed pages that fault when run, kept in front of where a module image's
    /// code starts (the allocator's policy, in `exec/state`, says why).
    pub trap_pages: usize,
    /// Freed pages kept committed for reuse (zeroed when handed out again; at most 512, beyond
    /// which freed pages are discarded), counting those whose release another thread is still
    /// completing. [`ExecAllocator::trim`] discards the ones already free.
    pub pages_recycled: usize,
    /// Reserved regions.
    pub regions: usize,
    /// Kernel mappings the regions occupy: runs of adjacent pages with the same protection (an
    /// estimate; patched pages can add a few).
    pub mappings: usize,
    /// Protection changes made (mprotect, discards, patch moves).
    pub protection_changes: u64,
    /// Patches applied to sealed blocks.
    pub patches: u64,
}

/// Why an allocator operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExecError {
    /// A zero-byte block was requested.
    ZeroSize,
    /// The alignment is not a power of two up to the page size.
    BadAlignment {
        /// The requested alignment.
        align: usize,
    },
    /// The request does not fit the address space.
    TooLarge {
        /// The requested size.
        size: usize,
    },
    /// No such open batch (already sealed or abandoned, or never started).
    UnknownBatch,
    /// The range is not inside one live block of this allocator.
    NotOwned {
        /// Start of the range.
        addr: usize,
        /// Its length.
        len: usize,
    },
    /// The block is sealed: use [`ExecAllocator::patch`].
    Sealed {
        /// The address written to.
        addr: usize,
    },
    /// The block is still open in its batch: write it through the batch.
    NotSealed {
        /// The address written to.
        addr: usize,
    },
    /// The range cannot be mapped from the file ([`CodeBatch::map_file`]): it is not whole
    /// pages of an open block with the file's offset at a page boundary, or the file lies on a
    /// file system that forbids executable mappings (mounted `noexec`).
    NotMappable {
        /// Start of the range.
        addr: usize,
        /// Its length.
        len: usize,
    },
    /// The kernel refused.
    Sys(SysError),
}

impl From<SysError> for ExecError {
    fn from(e: SysError) -> Self {
        ExecError::Sys(e)
    }
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::ZeroSize => f.write_str("zero-byte code block requested"),
            ExecError::BadAlignment { align } => {
                write!(f, "alignment {align} is not a power of two up to the page size")
            }
            ExecError::TooLarge { size } => write!(f, "code block of {size} bytes is too large"),
            ExecError::UnknownBatch => f.write_str("no such open batch"),
            ExecError::NotOwned { addr, len } => {
                write!(f, "{addr:#x}+{len} is not inside a live code block of this allocator")
            }
            ExecError::Sealed { addr } => write!(f, "{addr:#x} is in a sealed block (patch it instead)"),
            ExecError::NotSealed { addr } => {
                write!(f, "{addr:#x} is in a block not sealed yet (write it through its batch)")
            }
            ExecError::NotMappable { addr, len } => write!(
                f,
                "{addr:#x}+{len} cannot be mapped from the file (not whole pages of an open block, or a noexec file system)"
            ),
            ExecError::Sys(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl core::error::Error for ExecError {}

/// An [`ExecAllocator`]'s lock, held ([`ExecAllocator::hold`]) until this is dropped.
pub struct Held<'a> {
    _guard: lock::Guard<'a, state::State>,
}

impl fmt::Debug for Held<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Held")
    }
}

/// The allocator. Share it by reference (it is `Sync`); every [`Block`] borrows it, so it
/// outlives them, and dropping it unmaps everything it reserved.
pub struct ExecAllocator {
    state: lock::Lock<state::State>,
}

impl fmt::Debug for ExecAllocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecAllocator").finish_non_exhaustive()
    }
}

impl Default for ExecAllocator {
    fn default() -> Self {
        Self::new(ExecConfig::default())
    }
}

impl ExecAllocator {
    /// An allocator with `config` over the real kernel; reserves nothing until the first block.
    pub fn new(config: ExecConfig) -> Self {
        Self::with_kernel(config, &LINUX)
    }

    /// The kernel its syscalls go to.
    pub fn kernel(&self) -> &'static dyn Kernel {
        self.state.lock().kernel()
    }

    /// An allocator with `config` whose syscalls go to `kernel` (a simulation or a fault
    /// injector, in tests).
    pub fn with_kernel(config: ExecConfig, kernel: &'static dyn Kernel) -> Self {
        Self { state: lock::Lock::new(state::State::new(config, kernel)) }
    }

    /// The page size.
    pub fn page_size(&self) -> usize {
        self.state.lock().page_size()
    }

    /// Holds the allocator's lock until the returned value is dropped: every other use of the
    /// allocator waits meanwhile. For a `fork` handler (`pthread_atfork`'s prepare): a process
    /// that forks while another thread holds the lock gives its child a lock no thread of the
    /// child will let go, and bookkeeping halfway through a change.
    pub fn hold(&self) -> Held<'_> {
        Held { _guard: self.state.lock() }
    }

    /// Starts a batch of blocks to be sealed together.
    pub fn batch(&self) -> CodeBatch<'_> {
        let id = self.state.lock().begin_batch(false);
        CodeBatch::new(self, id)
    }

    /// [`ExecAllocator::batch`] for many blocks or module images allocated one after another
    /// (a [`crate::load::LoadBatch`]): each new run of pages it opens takes up to 32 clean
    /// pages more than its block needs, so that its later blocks join the same run (one
    /// protection change at the seal) even while other threads open runs beside it. Pages it
    /// never uses go back clean at the seal, with no syscall. A batch of one image does not
    /// need them, and its load skips their bookkeeping. The code and the writable data of the
    /// module images it allocates pack at each image's alignment (at least 64 bytes) instead
    /// of taking whole pages, so that many small modules share code pages and data pages
    /// (sealed together; a shared page goes back when the last module on it is freed).
    pub fn batch_of_many(&self) -> CodeBatch<'_> {
        let id = self.state.lock().begin_batch(true);
        CodeBatch::new(self, id)
    }

    /// Frees `blocks` together: pages they leave empty are released with one call per
    /// contiguous run (a module's adjacent segments go back together). Short of memory for the
    /// list of their addresses, the blocks it has no room for are freed one by one.
    pub fn free_all<'a>(&'a self, blocks: impl IntoIterator<Item = Block<'a>>) -> Result<(), ExecError> {
        let blocks = blocks.into_iter();
        let mut addrs = alloc::vec::Vec::new();
        let _ = addrs.try_reserve_exact(blocks.size_hint().0);
        for block in blocks {
            if !core::ptr::eq(block.allocator, self) || addrs.try_reserve(1).is_err() {
                drop(block); // freed alone (by its own allocator)
                continue;
            }
            addrs.push(block.addr);
            core::mem::forget(block); // freed below, once
        }
        self.release(&addrs)
    }

    /// Frees the blocks starting at `addrs`: the bookkeeping under the lock, the protection
    /// changes of the pages they empty outside it, then their outcome under the lock again.
    fn release(&self, addrs: &[usize]) -> Result<(), ExecError> {
        let (freed, mut deferred, kernel) = {
            let mut state = self.state.lock();
            let freed = state.begin_release(addrs);
            (freed, state.take_deferred(), state.kernel())
        };
        if deferred.is_empty() {
            return freed;
        }
        // Each release stands alone: one that fails does not stop the others.
        let failed = run_deferred(&mut deferred, kernel, false);
        let failure = freed.err().or(failed);
        self.state.lock().finish_release(deferred, failure)
    }

    /// Overwrites `offset..offset+bytes.len()` of the sealed `block` through a sealed copy of
    /// the touched pages moved over them (never writable and executable; on aarch64 the
    /// instruction cache is synchronized). Other blocks on those pages see the same bytes
    /// throughout. A sealed data block (read-write) is written in place. A block still open in
    /// its batch is written through the batch instead.
    pub fn patch(&self, block: &Block<'_>, offset: usize, bytes: &[u8]) -> Result<(), ExecError> {
        if !core::ptr::eq(block.allocator, self) {
            return Err(ExecError::NotOwned { addr: block.addr, len: block.size });
        }
        let addr = block.at(offset, bytes.len())?;
        self.state.lock().patch(block.addr, addr, bytes)
    }

    /// The live block containing `addr..addr+len`, if any.
    pub fn lookup(&self, addr: usize, len: usize) -> Option<BlockInfo> {
        self.state.lock().lookup(addr, len)
    }

    /// The protection of the page holding `addr`, if a live block overlaps it.
    pub fn protection_at(&self, addr: usize) -> Option<Protection> {
        self.state.lock().protection_at(addr)
    }

    /// Synchronizes the instruction cache for `offset..offset+len` of `block` (a no-op on
    /// x86-64; sealing and patching already do this).
    pub fn sync_icache(&self, block: &Block<'_>, offset: usize, len: usize) -> Result<(), ExecError> {
        let addr = block.at(offset, len)?;
        #[allow(unsafe_code)]
        // SAFETY: the range lies in a live block (`block` is borrowed, so it cannot be freed
        // meanwhile), whose pages are readable.
        unsafe {
            icache::sync(addr, len)
        };
        Ok(())
    }

    /// Gives back memory kept only for speed: trap pages that guard no code any more are
    /// released, freed pages kept committed for reuse are discarded, and pages whose release
    /// failed earlier are released now. Live blocks and reserved regions are untouched.
    pub fn trim(&self) -> Result<(), ExecError> {
        self.state.lock().trim()
    }

    /// The address ranges reserved for code (to count the kernel mappings inside them).
    pub fn regions(&self) -> alloc::vec::Vec<core::ops::Range<usize>> {
        self.state.lock().regions()
    }

    /// Current statistics.
    pub fn stats(&self) -> AllocatorStats {
        self.state.lock().stats()
    }
}

/// Makes the protection changes the state just handed out (outside the lock), stopping at the
/// first failure if `stop_at_failure`; returns the first failure.
fn run_deferred(
    changes: &mut [state::Deferred],
    kernel: &dyn Kernel,
    stop_at_failure: bool,
) -> Option<ExecError> {
    let mut failure = None;
    for change in changes {
        #[allow(unsafe_code)]
        // SAFETY: the changes were just handed out by the allocator's state, which marked their
        // pages (a batch being sealed, pages being released): no one else touches them until
        // the outcome is booked under the lock again.
        if let Err(e) = unsafe { change.run(kernel) } {
            failure.get_or_insert(e);
            if stop_at_failure {
                break;
            }
        }
    }
    failure
}
