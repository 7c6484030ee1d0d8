//! [`CodeBatch`]: the blocks of one batch, allocated and written while their pages are open
//! (read-write, the batch's alone), then sealed together with one protection change per
//! contiguous run.

use super::*;

/// A batch of blocks sealed together. Dropping it unsealed ends it: its blocks stay valid
/// (and writable) until their owners drop them.
#[derive(Debug)]
pub struct CodeBatch<'a> {
    allocator: &'a ExecAllocator,
    id: BatchId,
    done: bool,
}

impl<'a> CodeBatch<'a> {
    /// The handle of batch `id`, just begun in `allocator`'s state.
    pub(super) fn new(allocator: &'a ExecAllocator, id: BatchId) -> Self {
        Self { allocator, id, done: false }
    }

    /// The batch id.
    pub const fn id(&self) -> BatchId {
        self.id
    }

    fn block(&self, (addr, size): (usize, usize)) -> Block<'a> {
        Block { allocator: self.allocator, addr, size, batch: self.id }
    }

    /// Runs `op` on the allocator's state under its lock, then does the work it left on the
    /// pages it opened for this batch (zeroing, filling a trap page, faulting in) after the
    /// lock is released.
    fn with_state<T>(&mut self, op: impl FnOnce(&mut state::State, BatchId) -> T) -> T {
        let (result, prep, kernel, page) = {
            let mut state = self.allocator.state.lock();
            let result = op(&mut state, self.id);
            (result, state.take_prep(), state.kernel(), state.page_size())
        };
        #[allow(unsafe_code)]
        // SAFETY: the prep names pages the operation just opened for this batch, which this
        // `CodeBatch` (borrowed mutably) alone writes or seals; nothing references them yet.
        unsafe {
            prep.run(kernel, page)
        };
        result
    }

    /// The allocator the batch's blocks come from.
    pub const fn allocator(&self) -> &'a ExecAllocator {
        self.allocator
    }

    /// Allocates a zeroed, writable block.
    pub fn alloc(&mut self, size: usize, align: usize) -> Result<Block<'a>, ExecError> {
        let placed = self.with_state(|state, id| state.alloc(id, size, align))?;
        Ok(self.block(placed))
    }

    /// The bytes of `block`, which must be a block of this batch (still open, as the batch
    /// is: sealing consumes it). No lock is taken, none is held while the caller uses them.
    pub fn block_mut<'s>(&'s mut self, block: &'s Block<'_>) -> Result<&'s mut [u8], ExecError> {
        if !core::ptr::eq(block.allocator, self.allocator) || block.batch != self.id {
            return Err(ExecError::NotOwned { addr: block.addr, len: block.size });
        }
        #[allow(unsafe_code)]
        // SAFETY: the block is live (borrowed for 's, so not freed meanwhile) and was allocated
        // by this batch, which is still open (it exists and sealing consumes it); so its pages
        // are open for this batch: mapped read-write, holding no other batch's blocks, and
        // written or sealed only through this batch, which is borrowed mutably for 's. The
        // allocator itself neither reads nor writes open pages holding live blocks.
        Ok(unsafe { core::slice::from_raw_parts_mut(block.addr as *mut u8, block.size) })
    }

    /// The bytes of several blocks of this batch at once ([`CodeBatch::block_mut`]'s rules), an
    /// empty slice for each `None`; refused if two of them overlap (the same block twice).
    pub fn blocks_mut<'s, const N: usize>(
        &'s mut self,
        blocks: [Option<&'s Block<'_>>; N],
    ) -> Result<[&'s mut [u8]; N], ExecError> {
        for (i, block) in blocks.iter().enumerate() {
            let Some(block) = block else { continue };
            if !core::ptr::eq(block.allocator, self.allocator) || block.batch != self.id {
                return Err(ExecError::NotOwned { addr: block.addr, len: block.size });
            }
            let overlaps = |other: &&Block<'_>| {
                block.addr < other.addr.saturating_add(other.size)
                    && other.addr < block.addr.saturating_add(block.size)
            };
            if blocks[..i].iter().flatten().any(overlaps) {
                return Err(ExecError::NotOwned { addr: block.addr, len: block.size });
            }
        }
        Ok(blocks.map(|block| match block {
            #[allow(unsafe_code)]
            // SAFETY: as `block_mut`: each block is live (borrowed for 's), of this batch, which
            // is open and borrowed mutably for 's; and no two of them overlap (checked above),
            // so the slices are disjoint.
            Some(block) => unsafe { core::slice::from_raw_parts_mut(block.addr as *mut u8, block.size) },
            None => &mut [],
        }))
    }

    /// Maps `len` bytes of `file` from `file_offset` over `block`'s bytes from `offset`, in
    /// place of copying them in: bytes the processor alone reads (code nothing patches) then
    /// share the page cache's pages, as a shared library's do, instead of taking private
    /// memory. `offset`, `len` and `file_offset` are whole pages, inside a block of this batch;
    /// the file's file system must allow executable mappings (not `noexec`). The mapping is
    /// private (a write copies the page; the file never changes), read-write while the batch
    /// is open and sealed with it to the block's kind, never writable and executable at once.
    /// Released, the pages are discarded, so none stays backed by the file. What the pages show
    /// follows the file: a file rewritten in place while loaded changes them, one truncated
    /// makes them fault (`SIGBUS`), as with a shared library; a file replaced by a rename (how
    /// compilers and `smf pack` write) leaves them as they were.
    ///
    /// If this fails ([`ExecError::NotMappable`], or the kernel's refusal), the pages hold what
    /// they held: the caller writes them itself.
    pub fn map_file(
        &mut self,
        block: &Block<'_>,
        offset: usize,
        len: usize,
        file: &crate::sys::OpenFile,
        file_offset: u64,
    ) -> Result<(), ExecError> {
        let addr = block.addr.wrapping_add(offset);
        let refused = ExecError::NotMappable { addr, len };
        if !core::ptr::eq(block.allocator, self.allocator) || block.batch != self.id {
            return Err(ExecError::NotOwned { addr: block.addr, len: block.size });
        }
        if offset.checked_add(len).is_none_or(|end| end > block.size) {
            return Err(ExecError::NotOwned { addr, len });
        }
        let page = self.allocator.page_size();
        if file_offset % page as u64 != 0 || !file.allows_executable_mappings() {
            return Err(refused);
        }
        let (kernel, protection) = {
            let mut state = self.allocator.state.lock();
            state.mark_mapped(self.id, addr, len)?;
            (state.kernel(), state.open_protection())
        };
        #[allow(unsafe_code)]
        // SAFETY: whole pages of a live block of this open batch (checked under the lock), which
        // this `CodeBatch`, borrowed mutably, alone writes or seals; the caller's `block`
        // borrow is shared, so no slice of it from `block_mut` is alive.
        unsafe {
            kernel.map_file(addr as *mut u8, len, file, file_offset, protection)?;
        }
        Ok(())
    }

    /// Copies `bytes` to `offset` in `block`, a still open block of this batch.
    pub fn write(&mut self, block: &Block<'_>, offset: usize, bytes: &[u8]) -> Result<(), ExecError> {
        let len = bytes.len();
        let not_inside = ExecError::NotOwned { addr: block.addr.wrapping_add(offset), len };
        let end = offset.checked_add(len).ok_or(not_inside)?;
        self.block_mut(block)?.get_mut(offset..end).ok_or(not_inside)?.copy_from_slice(bytes);
        Ok(())
    }

    /// Allocates a module image: page-aligned segments (code, read-only data, writable data),
    /// each its own block (`None` for empty segments), in one region: the code segments back to
    /// back, the data segments back to back above them. In a batch of many
    /// ([`super::ExecAllocator::batch_of_many`]) an image's code segment is aligned to the
    /// image's alignment (at least 64 bytes) instead, right after the batch's previous block,
    /// and its writable segment likewise right after the batch's previous image's writable
    /// segment (an image with no code keeps whole pages). Sealing the batch makes code pages
    /// read-execute, read-only pages read-only, and leaves writable pages read-write (never
    /// executable). Keeping a module in one region keeps all its internal references within
    /// reach of 32-bit PC-relative relocations; keeping code with code and data with data keeps
    /// many modules in few kernel mappings.
    pub fn alloc_image(
        &mut self,
        segments: &[(usize, MemoryKind)],
    ) -> Result<alloc::vec::Vec<Option<Block<'a>>>, ExecError> {
        self.alloc_module_image(segments, 0, 1)
    }

    /// [`CodeBatch::alloc_image`] for a module loader:
    /// - every segment starts at a multiple of `align` (a power of two up to 1 MiB; segments
    ///   are rounded up to it when it is larger than a page, or, for the code and the writable
    ///   data of a batch of many, to it and at least 64 bytes), for sections that ask for more
    ///   than a page of alignment;
    /// - the caller writes every byte of the first segment's first `overwritten` bytes itself
    ///   before sealing (a loader copying in a module's code), or zeroes them if it gives up
    ///   (a load that fails): those bytes are handed out without being zeroed first (unless
    ///   they are writable data packed in a batch of many), so in a recycled page they may
    ///   still hold bytes of an earlier block of this allocator until the caller overwrites
    ///   them, and their pages are faulted in with one call. The rest of the image is zero and
    ///   committed only when written.
    pub fn alloc_module_image(
        &mut self,
        segments: &[(usize, MemoryKind)],
        overwritten: usize,
        align: usize,
    ) -> Result<alloc::vec::Vec<Option<Block<'a>>>, ExecError> {
        self.alloc_module_image_mapping(segments, overwritten, 0..0, align)
    }

    /// [`CodeBatch::alloc_module_image`] for a loader that maps `mapped` (a range of whole
    /// pages of the first segment, inside its first `overwritten` bytes) from a file
    /// ([`CodeBatch::map_file`]): those pages are not faulted in first.
    pub fn alloc_module_image_mapping(
        &mut self,
        segments: &[(usize, MemoryKind)],
        overwritten: usize,
        mapped: core::ops::Range<usize>,
        align: usize,
    ) -> Result<alloc::vec::Vec<Option<Block<'a>>>, ExecError> {
        let mut blocks = alloc::vec::Vec::new();
        blocks.try_reserve_exact(segments.len()).map_err(|_| ExecError::TooLarge { size: segments.len() })?;
        let (allocator, batch) = (self.allocator, self.id);
        let block = |(addr, size)| Block { allocator, addr, size, batch };
        self.with_state(|state, id| {
            state.alloc_image(id, segments, (overwritten, mapped), align, |placed| {
                blocks.push(placed.map(block))
            })
        })?;
        Ok(blocks)
    }

    /// Allocates a block holding `code` (copied in outside the lock).
    pub fn install(&mut self, code: &[u8], align: usize) -> Result<Block<'a>, ExecError> {
        let placed = self.with_state(|state, id| state.alloc_for_code(id, code.len(), align))?;
        let block = self.block(placed);
        self.fill(&block, code)?;
        Ok(block)
    }

    /// Copies `code` to the start of `block` (of this batch) and zeroes the rest of it.
    fn fill(&mut self, block: &Block<'_>, code: &[u8]) -> Result<(), ExecError> {
        let bytes = self.block_mut(block)?;
        let (head, tail) = bytes.split_at_mut(code.len().min(bytes.len()));
        head.copy_from_slice(code.get(..head.len()).unwrap_or_default());
        tail.fill(0);
        Ok(())
    }

    /// Allocates one block per item of `codes`, each holding that code, under one lock
    /// acquisition: the fast path for installing many small functions at once.
    pub fn install_many<'c>(
        &mut self,
        codes: impl ExactSizeIterator<Item = &'c [u8]> + Clone,
        align: usize,
    ) -> Result<alloc::vec::Vec<Block<'a>>, ExecError> {
        let mut blocks = alloc::vec::Vec::new();
        blocks.try_reserve_exact(codes.len()).map_err(|_| ExecError::TooLarge { size: codes.len() })?;
        let (allocator, batch) = (self.allocator, self.id);
        self.with_state(|state, id| -> Result<(), ExecError> {
            state.prepare(id, codes.clone().map(<[u8]>::len), align)?;
            for code in codes.clone() {
                let (addr, size) = state.alloc_for_code(id, code.len(), align)?;
                blocks.push(Block { allocator, addr, size, batch });
            }
            Ok(())
        })?;
        for (block, code) in blocks.iter().zip(codes) {
            self.fill(block, code)?;
        }
        Ok(blocks)
    }

    /// Seals the batch: its blocks become executable (or read-only, or stay read-write, by
    /// their kind). If a protection change fails, the batch ends all the same: the error is
    /// returned, the pages sealed before the failure stay sealed (their blocks are sealed, as
    /// [`ExecAllocator::lookup`] says), the others stay open to no one, every block stays valid
    /// until dropped, and nothing is leaked.
    pub fn seal(mut self) -> Result<(), ExecError> {
        self.done = true;
        // The protection changes are made outside the lock: the batch's pages are left alone
        // until the seal is booked.
        let (planned, mut deferred, kernel) = {
            let mut state = self.allocator.state.lock();
            let planned = state.begin_seal(self.id);
            (planned, state.take_deferred(), state.kernel())
        };
        // A seal stops at its first failure (the batch then ends unsealed).
        let failure = match planned {
            Ok(()) => run_deferred(&mut deferred, kernel, true),
            Err(e) => Some(e),
        };
        self.allocator.state.lock().finish_seal(self.id, deferred, failure)
    }
}

impl Drop for CodeBatch<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.allocator.state.lock().abandon(self.id);
        }
    }
}
