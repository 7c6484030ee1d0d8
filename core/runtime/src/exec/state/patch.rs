//! Patching sealed blocks: a sealed copy of the touched pages moved over them.

#![allow(unsafe_code)]

use super::*;

impl State {
    /// Copies `bytes` to `addr` inside a live sealed block whose pages stay writable (data, or
    /// code in RWX mode).
    fn write_sealed(&mut self, addr: usize, bytes: &[u8]) -> Result<(), ExecError> {
        // SAFETY: the caller checked that `addr..addr+len` lies inside a live sealed block of
        // ours whose pages are read-write or, in RWX mode, read-write-execute; `bytes` cannot
        // overlap it (it is a shared reference to memory the caller owns, and the allocator
        // hands out no Rust reference into sealed blocks).
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len()) };
        Ok(())
    }

    /// Replaces bytes of a sealed block: a writable copy of the touched pages is made, patched,
    /// sealed and moved over the originals, so no page is ever writable and executable and the
    /// other code on those pages keeps running.
    pub(crate) fn patch(&mut self, block: usize, addr: usize, bytes: &[u8]) -> Result<(), ExecError> {
        // The block is found by its start: an empty patch at its end lies in it, yet an address
        // there may start the next block.
        let info = self.lookup(block, 1).filter(|info| info.addr == block);
        let info = info.ok_or(ExecError::NotOwned { addr, len: bytes.len() })?;
        if !info.sealed {
            return Err(ExecError::NotSealed { addr });
        }
        match info.kind {
            MemoryKind::ReadWrite => return self.write_sealed(addr, bytes),
            MemoryKind::Code if self.config.allow_rwx => return self.write_sealed(addr, bytes),
            MemoryKind::Code | MemoryKind::ReadOnly => {}
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let first = addr & !(self.page - 1);
        let end = align_up(addr + bytes.len(), self.page).ok_or(ExecError::TooLarge { size: bytes.len() })?;
        let len = end - first;
        let copy = self.kernel.map_anonymous(len, Protection::ReadWrite)?;
        // SAFETY: `copy` is a fresh private mapping of `len` bytes; `first..end` are sealed,
        // readable pages of ours; the patch lies inside the copy.
        unsafe {
            core::ptr::copy_nonoverlapping(first as *const u8, copy, len);
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), copy.add(addr - first), bytes.len());
        }
        // SAFETY: `copy` is ours and about to be moved; nothing references it.
        let sealed =
            unsafe { self.kernel.protect(copy, len, self.sealed_protection(info.kind)) }.and_then(|()| {
                // SAFETY: `copy` is sealed and readable.
                unsafe { icache::sync(copy as usize, len) };
                // SAFETY: both ranges are ours; the caller holds the patched block exclusively and
                // the other blocks on these pages see identical bytes after the move.
                unsafe { self.kernel.move_over(copy, first as *mut u8, len) }
            });
        if let Err(e) = sealed {
            // SAFETY: the copy was never moved; it is ours alone.
            let _ = unsafe { self.kernel.unmap(copy, len) };
            return Err(e.into());
        }
        self.protection_changes += 3;
        self.patches += 1;
        self.kernel.sync_other_threads();
        Ok(())
    }
}
