//! A W^X executable page allocator: no page it maps is ever writable and executable at once.
//!
//! Code is installed in **batches**: [`ExecAllocator::batch`] starts one, [`CodeBatch::alloc`]
//! hands out zeroed, writable blocks of any size at 16-byte granularity (alignment up to a
//! page), [`CodeBatch::write`] fills them, and [`CodeBatch::seal`] makes every page of the
//! batch read-execute with one protection change per contiguous run, then synchronizes the
//! instruction cache where the architecture needs it. Small blocks of one batch share pages, so
//! thousands of functions cost a handful of mappings. A sealed page is never reopened: new code
//! goes to new pages, and [`ExecAllocator::patch`] changes a sealed block through a writable
//! copy of the touched pages that is sealed and moved over the originals.
//!
//! Address space is reserved in large regions; bookkeeping lives in ordinary heap memory, never
//! in executable pages. Pages whose last block is freed are discarded and reused; empty regions
//! are returned to the kernel. A module image's code keeps a trap page in front of it (see
//! [`Stats::trap_pages`]) so that reloading at the same place costs the kernel less;
//! [`ExecAllocator::trim`] gives such pages back. All operations are thread-safe (one `spin`
//! lock).
//!
//! Read-write-execute pages exist only with [`Config::allow_rwx`], a debugging switch that
//! callers must set explicitly.

mod icache;
mod region;
mod state;

use core::fmt;

use crate::sys::{Protection, SysError};

/// Blocks are handed out at this granularity (bytes).
pub const GRANULE: usize = 16;

/// Allocator settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Bytes of address space reserved at a time (more for larger blocks).
    pub region_size: usize,
    /// Empty regions kept reserved instead of unmapped.
    pub spare_regions: usize,
    /// Debugging only: map code pages read-write-execute and patch in place.
    pub allow_rwx: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self { region_size: 4 << 20, spare_regions: 1, allow_rwx: false }
    }
}

/// Identifies a batch of blocks that are sealed together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId(pub(crate) u64);

impl BatchId {
    /// The raw number (for handles kept outside Rust).
    pub const fn raw(self) -> u64 {
        self.0
    }
}

/// A block of code memory: an address range the allocator owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Block {
    /// First byte.
    pub addr: usize,
    /// Size in bytes (the request rounded up to [`GRANULE`]).
    pub size: usize,
}

impl Block {
    /// The first byte as a pointer.
    pub const fn as_ptr(&self) -> *const u8 {
        self.addr as *const u8
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
    /// The block.
    pub block: Block,
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
pub struct Stats {
    /// Live blocks.
    pub blocks_live: usize,
    /// Bytes in live blocks.
    pub bytes_live: usize,
    /// Pages open for writing.
    pub pages_open: usize,
    /// Sealed pages (not counting trap pages).
    pub pages_sealed: usize,
    /// Trap pages: sealed read-execute pages that fault when run, kept in front of where a
    /// module image's code starts so that later images placed there seal and free cheaply.
    pub trap_pages: usize,
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
            ExecError::Sys(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl core::error::Error for ExecError {}

/// The allocator. Share it by reference (it is `Sync`); dropping it unmaps everything it
/// reserved, so it must outlive every block.
#[derive(Debug)]
pub struct ExecAllocator {
    state: spin::Mutex<state::State>,
}

impl Default for ExecAllocator {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl ExecAllocator {
    /// An allocator with `config`; reserves nothing until the first block.
    pub fn new(config: Config) -> Self {
        Self { state: spin::Mutex::new(state::State::new(config)) }
    }

    /// The page size.
    pub fn page_size(&self) -> usize {
        self.state.lock().page_size()
    }

    /// Starts a batch of blocks to be sealed together.
    pub fn batch(&self) -> CodeBatch<'_> {
        let id = self.state.lock().begin_batch();
        CodeBatch { allocator: self, id, done: false }
    }

    /// Starts a batch and returns its id, for owners outside Rust's ownership (the C ABI):
    /// they must end it with [`ExecAllocator::seal`] or [`ExecAllocator::abandon`].
    pub fn begin_batch(&self) -> BatchId {
        self.state.lock().begin_batch()
    }

    /// Allocates a zeroed, writable block of `size` bytes aligned to `align` in `batch`.
    pub fn alloc(&self, batch: BatchId, size: usize, align: usize) -> Result<Block, ExecError> {
        self.state.lock().alloc(batch, size, align)
    }

    /// Copies `bytes` to `addr`, which must lie with them inside one unsealed live block.
    pub fn write(&self, addr: usize, bytes: &[u8]) -> Result<(), ExecError> {
        self.state.lock().write(addr, bytes)
    }

    /// Seals every page of `batch` (read-execute), synchronizing the instruction cache.
    pub fn seal(&self, batch: BatchId) -> Result<(), ExecError> {
        self.state.lock().seal(batch)
    }

    /// Frees every block of an unsealed batch and releases its pages.
    pub fn abandon(&self, batch: BatchId) -> Result<(), ExecError> {
        self.state.lock().abandon(batch)
    }

    /// Frees the block starting at `addr`.
    ///
    /// The caller guarantees no code runs in the block any more: its pages may be discarded.
    pub fn free(&self, addr: usize) -> Result<(), ExecError> {
        self.state.lock().free(addr)
    }

    /// Frees the blocks starting at `addrs` together: pages they leave empty are released with
    /// one discard per contiguous run. Blocks that do not exist are reported after the others
    /// are freed.
    pub fn free_many(&self, addrs: &[usize]) -> Result<(), ExecError> {
        self.state.lock().free_many(addrs)
    }

    /// Overwrites `addr..addr+bytes.len()` inside one live block. A sealed block is patched
    /// through a sealed copy of the touched pages moved over them (never writable and
    /// executable); the caller must hold the patched block exclusively (no thread runs it).
    pub fn patch(&self, addr: usize, bytes: &[u8]) -> Result<(), ExecError> {
        self.state.lock().patch(addr, bytes)
    }

    /// The live block containing `addr..addr+len`, if any.
    pub fn lookup(&self, addr: usize, len: usize) -> Option<BlockInfo> {
        self.state.lock().lookup(addr, len)
    }

    /// The protection of the page holding `addr`, if a live block overlaps it.
    pub fn protection_at(&self, addr: usize) -> Option<Protection> {
        self.state.lock().protection_at(addr)
    }

    /// Synchronizes the instruction cache for `addr..addr+len`, which must lie in one live
    /// block (a no-op on x86-64; sealing and patching already do this).
    pub fn sync_icache(&self, addr: usize, len: usize) -> Result<(), ExecError> {
        let state = self.state.lock();
        state.lookup(addr, len).ok_or(ExecError::NotOwned { addr, len })?;
        #[allow(unsafe_code)]
        // SAFETY: the range lies in a live block of ours, whose pages are readable.
        unsafe {
            icache::sync(addr, len)
        };
        Ok(())
    }

    /// Gives back memory kept only for speed: trap pages that guard no code any more are
    /// released, and freed pages kept committed for reuse are discarded. Live blocks and
    /// reserved regions are untouched; later loads simply start from fresh pages.
    pub fn trim(&self) -> Result<(), ExecError> {
        self.state.lock().trim()
    }

    /// The address ranges reserved for code (to count the kernel mappings inside them).
    pub fn regions(&self) -> alloc::vec::Vec<core::ops::Range<usize>> {
        self.state.lock().regions()
    }

    /// Current statistics.
    pub fn stats(&self) -> Stats {
        self.state.lock().stats()
    }
}

/// A batch of blocks sealed together; dropping it unsealed frees its blocks.
#[derive(Debug)]
pub struct CodeBatch<'a> {
    allocator: &'a ExecAllocator,
    id: BatchId,
    done: bool,
}

impl CodeBatch<'_> {
    /// The batch id.
    pub const fn id(&self) -> BatchId {
        self.id
    }

    /// Allocates a zeroed, writable block.
    pub fn alloc(&mut self, size: usize, align: usize) -> Result<Block, ExecError> {
        self.allocator.alloc(self.id, size, align)
    }

    /// Writes into a block of this batch.
    pub fn write(&mut self, addr: usize, bytes: &[u8]) -> Result<(), ExecError> {
        self.allocator.write(addr, bytes)
    }

    /// Allocates a module image: one contiguous run of page-aligned segments (code, read-only
    /// data, writable data), each its own block (`None` for empty segments). Sealing the batch
    /// makes code pages read-execute, read-only pages read-only, and leaves writable pages
    /// read-write (never executable). Keeping a module in one run keeps all its internal
    /// references within reach of 32-bit PC-relative relocations.
    pub fn alloc_image(
        &mut self,
        segments: &[(usize, MemoryKind)],
    ) -> Result<alloc::vec::Vec<Option<Block>>, ExecError> {
        self.allocator.state.lock().alloc_image(self.id, segments, 0, 1)
    }

    /// [`CodeBatch::alloc_image`] for a module loader:
    /// - every segment starts at a multiple of `align` (a power of two up to 1 MiB; segments
    ///   are rounded up to it when it is larger than a page), for data sections that ask for
    ///   more than a page of alignment;
    /// - the caller writes every byte of the image's first `overwritten` bytes itself before
    ///   sealing (a loader copying in a module's code): those bytes are handed out without
    ///   being zeroed first, so in a recycled page they may still hold bytes of an earlier
    ///   block of this allocator until the caller overwrites them. The rest of the image is
    ///   zeroed.
    pub fn alloc_module_image(
        &mut self,
        segments: &[(usize, MemoryKind)],
        overwritten: usize,
        align: usize,
    ) -> Result<alloc::vec::Vec<Option<Block>>, ExecError> {
        self.allocator.state.lock().alloc_image(self.id, segments, overwritten, align)
    }

    /// Runs `f` on the bytes of `block`, which must be a live, still writable block of this
    /// batch (its pages are read-write and belong to this batch alone). The allocator's lock is
    /// held while `f` runs, so `f` must not call back into the allocator.
    pub fn with_block_mut<R>(
        &mut self,
        block: Block,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, ExecError> {
        let state = self.allocator.state.lock();
        let info = state
            .lookup(block.addr, block.size)
            .ok_or(ExecError::NotOwned { addr: block.addr, len: block.size })?;
        if info.block != block || info.batch != Some(self.id) {
            return Err(ExecError::NotOwned { addr: block.addr, len: block.size });
        }
        #[allow(unsafe_code)]
        // SAFETY: the block is live and unsealed, so its pages are mapped read-write; they belong
        // to this batch alone (open pages are never shared between batches), and `&mut self`
        // plus the held lock mean no other reference to them exists while `f` runs.
        let bytes = unsafe { core::slice::from_raw_parts_mut(block.addr as *mut u8, block.size) };
        let result = f(bytes);
        drop(state);
        Ok(result)
    }

    /// Allocates a block holding `code` (one lock acquisition for both steps).
    pub fn install(&mut self, code: &[u8], align: usize) -> Result<Block, ExecError> {
        self.allocator.state.lock().install(self.id, code, align)
    }

    /// Allocates one block per item of `codes`, each holding that code, under one lock
    /// acquisition: the fast path for installing many small functions at once.
    pub fn install_many<'c>(
        &mut self,
        codes: impl ExactSizeIterator<Item = &'c [u8]>,
        align: usize,
    ) -> Result<alloc::vec::Vec<Block>, ExecError> {
        let mut state = self.allocator.state.lock();
        let mut blocks = alloc::vec::Vec::with_capacity(codes.len());
        for code in codes {
            blocks.push(state.install(self.id, code, align)?);
        }
        Ok(blocks)
    }

    /// Seals the batch: its blocks become executable and stay allocated until freed.
    pub fn seal(mut self) -> Result<(), ExecError> {
        self.done = true;
        self.allocator.seal(self.id)
    }
}

impl Drop for CodeBatch<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.allocator.abandon(self.id);
        }
    }
}
