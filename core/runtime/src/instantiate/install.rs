//! Where instantiated code goes: a [`CodeArena`] (one `pwrite` per install, no writable
//! mapping), or, where the kernel offers no shared memory, one sealed batch of the executable
//! allocator per install. An install is one function, or a batch's functions laid out together.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::exec::{Block, CodeArena, ExecAllocator, ExecError, GRANULE};

/// Bytes of code the arena maps at a time.
const ARENA_REGION: usize = 256 << 10;

/// Installs code for an instantiator and keeps it until dropped.
#[derive(Debug)]
pub(super) struct Installer<'a> {
    arena: CodeArena,
    /// Cleared for good when the kernel refuses `memfd_create` (none here, or forbidden).
    arena_usable: AtomicBool,
    allocator: &'a ExecAllocator,
    /// Code installed through the allocator (the fallback), freed with the installer.
    blocks: spin::Mutex<Vec<Block<'a>>>,
}

impl<'a> Installer<'a> {
    pub(super) fn new(allocator: &'a ExecAllocator) -> Self {
        Self {
            arena: CodeArena::new(allocator.kernel(), ARENA_REGION),
            arena_usable: AtomicBool::new(true),
            allocator,
            blocks: spin::Mutex::new(Vec::new()),
        }
    }

    /// Copies `code` into sealed executable memory; its address.
    pub(super) fn install(&self, code: &[u8]) -> Result<usize, ExecError> {
        if self.arena_usable.load(Ordering::Relaxed) {
            match self.arena.install(code) {
                Ok(address) => return Ok(address),
                // No shared memory here: batches from now on. Other failures (out of memory)
                // are this install's alone.
                Err(ExecError::Sys(e)) if e.op == "memfd_create" => {
                    self.arena_usable.store(false, Ordering::Relaxed);
                }
                Err(other) => return Err(other),
            }
        }
        let mut batch = self.allocator.batch();
        let block = batch.install(code, GRANULE)?;
        batch.seal()?;
        let address = block.addr();
        let mut blocks = self.blocks.lock();
        if blocks.try_reserve(1).is_err() {
            drop(blocks);
            return Err(ExecError::TooLarge { size: code.len() });
        }
        blocks.push(block);
        Ok(address)
    }

    /// The arena's and the fallback's locks, held until dropped (see [`super::Instantiator::hold`]).
    pub(super) fn hold(&self) -> (crate::exec::ArenaHeld<'_>, spin::MutexGuard<'_, Vec<Block<'a>>>) {
        (self.arena.hold(), self.blocks.lock())
    }

    /// Whether `addr` lies inside code installed here.
    pub(super) fn contains(&self, addr: usize) -> bool {
        self.arena.contains(addr, 1) || self.blocks.lock().iter().any(|b| b.contains(addr, 1))
    }

    /// Whether code goes to the arena (false after the kernel refused it).
    pub(super) fn uses_arena(&self) -> bool {
        self.arena_usable.load(Ordering::Relaxed)
    }
}
