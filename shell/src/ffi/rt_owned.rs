//! What the `rt_*` functions handed out, owned: executable/read-write allocations and file
//! mappings, the registries that find them by address, and the range check every address
//! argument goes through before memory is touched.
//!
//! Each allocation or mapping is an `Arc`: the registry holds one reference, and a call that
//! uses it clones one under the registry's lock and drops the lock before touching memory. A
//! concurrent free or unmap only removes the registry's reference, so the memory stays valid
//! until the calls already using it return (a call running code in an allocation keeps it
//! alive until the code returns). The registries' locks guard bookkeeping only. Each object's
//! own lock orders what must not overlap on that object: writes, reads and sealing of an
//! allocation; reads and protection changes of a mapping. Around a fork, a registry is held
//! with every entry's own lock ([`Registry`]), so a child finds them all free.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use super::rt_error::{Inside, RtError};
use super::rt_kit::CheckedCopier;
use super::FfiError;
use crate::sync::lock;
use smf_runtime::exec::{Block, CodeBatch};
use smf_runtime::sys::{self, Protection};

/// PROT_READ as the SFFI spec numbers it.
pub(crate) const PROT_READ: i32 = 1;
/// PROT_WRITE.
pub(crate) const PROT_WRITE: i32 = 2;
/// PROT_EXEC.
pub(crate) const PROT_EXEC: i32 = 4;

/// The PROT_* bits of `protection` (the inverse of [`protection_from_bits`]).
pub(crate) const fn protection_bits(protection: Protection) -> i32 {
    match protection {
        Protection::None => 0,
        Protection::Read => PROT_READ,
        Protection::ReadWrite => PROT_READ | PROT_WRITE,
        Protection::ReadExec => PROT_READ | PROT_EXEC,
        Protection::ReadWriteExec => PROT_READ | PROT_WRITE | PROT_EXEC,
    }
}

/// The protection the PROT_* bits `prot` ask for; writable and executable together is refused.
pub(crate) fn protection_from_bits(prot: i32) -> Result<Protection, RtError> {
    match prot {
        0 => Ok(Protection::None),
        PROT_READ => Ok(Protection::Read),
        p if p == PROT_READ | PROT_WRITE => Ok(Protection::ReadWrite),
        p if p == PROT_READ | PROT_EXEC => Ok(Protection::ReadExec),
        p if p & PROT_WRITE != 0 && p & PROT_EXEC != 0 => Err(RtError::WriteAndExec),
        other => Err(RtError::Protection(other)),
    }
}

/// Where an allocation is in its life.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Writable, in a batch of its own.
    Open(CodeBatch<'static>),
    /// Read-execute.
    Sealed,
    /// Sealing failed: the allocation is neither writable nor callable; free it.
    Broken,
}

/// An allocation from `rt_alloc_exec_memory` or `rt_alloc_rw_memory`. Freed when the last
/// reference goes.
#[derive(Debug)]
pub(crate) struct RtAlloc {
    /// The page-rounded block.
    pub(crate) block: Block<'static>,
    /// Size the caller asked for.
    pub(crate) requested: usize,
    /// Its phase; the lock also keeps writes, reads and sealing of this allocation apart.
    pub(crate) phase: Mutex<Phase>,
    /// Its share of the executable-memory budget, given back after the block is freed (fields
    /// drop in order).
    pub(crate) _charge: super::rt_budget::Charge,
}

impl RtAlloc {
    /// Page-rounded size.
    pub(crate) fn size(&self) -> usize {
        self.block.size()
    }

    /// The phase, locked.
    pub(crate) fn phase(&self) -> MutexGuard<'_, Phase> {
        crate::sync::lock(&self.phase)
    }
}

/// A mapping from `rt_mmap_file`, unmapped when the last reference goes.
#[derive(Debug)]
pub(crate) struct FileMap {
    /// First byte.
    pub(crate) addr: usize,
    /// Bytes of the file mapped (what the caller may touch).
    pub(crate) len: usize,
    /// Page-rounded length of the kernel mapping.
    pub(crate) mapped: usize,
    /// PROT_* bits; held for reading while the library reads the mapping, for writing while it
    /// changes the protection.
    pub(crate) prot: RwLock<i32>,
}

impl FileMap {
    /// The protection, held so that it cannot change until the guard goes.
    pub(crate) fn prot(&self) -> RwLockReadGuard<'_, i32> {
        crate::sync::read(&self.prot)
    }

    /// Changes the protection of the whole mapping (never writable and executable).
    pub(crate) fn set_prot(&self, prot: i32, protection: Protection) -> Result<(), RtError> {
        let mut current = crate::sync::write(&self.prot);
        // SAFETY: the whole mapping is ours (alive while `self` is); readers of it hold the
        // read side of the lock we hold for writing, so none relies on the old protection.
        unsafe { sys::protect(self.addr as *mut u8, self.mapped, protection) }?;
        *current = prot;
        Ok(())
    }
}

impl Drop for FileMap {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and this was its last reference: nothing uses it.
        let _ = unsafe { sys::unmap(self.addr as *mut u8, self.mapped) };
    }
}

static ALLOCS: Registry<RtAlloc> = Registry(Mutex::new(BTreeMap::new()));
static FILES: Registry<FileMap> = Registry(Mutex::new(BTreeMap::new()));

/// The allocation registry (by start address).
pub(crate) fn allocs() -> MutexGuard<'static, BTreeMap<usize, Arc<RtAlloc>>> {
    crate::fork::hold_at_fork(crate::fork::Lock::RtAllocations, &ALLOCS);
    lock(&ALLOCS.0)
}

/// The file-mapping registry (by start address).
pub(crate) fn files() -> MutexGuard<'static, BTreeMap<usize, Arc<FileMap>>> {
    crate::fork::hold_at_fork(crate::fork::Lock::RtFiles, &FILES);
    lock(&FILES.0)
}

/// A registry of allocations or mappings by start address. Around a fork it is held with the
/// lock of every entry in it (`Entry::hold`), so that a child finds each free, whatever
/// another thread was writing, reading or protecting (entries no longer registered are out
/// of the child's reach). Nothing takes the registry's lock while holding an entry's.
pub(crate) struct Registry<T>(Mutex<BTreeMap<usize, Arc<T>>>);

/// An entry's own lock, for [`Registry`]'s hold around a fork.
trait Entry: Send + Sync + 'static {
    /// Takes the entry's lock (all of it) until the returned value is dropped.
    fn hold(&'static self) -> Box<dyn std::any::Any>;
}

impl Entry for RtAlloc {
    fn hold(&'static self) -> Box<dyn std::any::Any> {
        Box::new(self.phase())
    }
}

impl Entry for FileMap {
    fn hold(&'static self) -> Box<dyn std::any::Any> {
        Box::new(crate::sync::write(&self.prot))
    }
}

/// A registry and its entries, held.
struct HeldRegistry<T: 'static> {
    /// The entries' guards, let go first (declared first); they borrow from `entries`.
    _guards: Vec<Box<dyn std::any::Any>>,
    /// The entries held, kept alive until their guards are gone.
    _entries: Vec<Arc<T>>,
    _registry: MutexGuard<'static, BTreeMap<usize, Arc<T>>>,
}

impl<T: Entry> crate::fork::Hold for Registry<T> {
    /// The registry, then each entry in address order. Without memory to list the entries,
    /// the registry alone (a child then must not use an entry another thread was using).
    fn hold(&'static self) -> Box<dyn std::any::Any> {
        let registry = lock(&self.0);
        let (mut guards, mut entries) = (Vec::new(), Vec::new());
        if guards.try_reserve_exact(registry.len()).is_ok()
            && entries.try_reserve_exact(registry.len()).is_ok()
        {
            for entry in registry.values() {
                #[allow(unsafe_code)]
                // SAFETY: the entry lives at a fixed address while `entries` holds it, and its
                // guard is dropped before `entries` (`HeldRegistry`'s field order).
                let borrowed: &'static T = unsafe { &*Arc::as_ptr(entry) };
                guards.push(borrowed.hold());
                entries.push(Arc::clone(entry));
            }
        }
        Box::new(HeldRegistry { _guards: guards, _entries: entries, _registry: registry })
    }
}

/// `address + offset .. + length` as a checked address range: nothing negative, zero address
/// refused, no overflow.
pub(crate) fn range(address: i64, offset: i64, length: i64) -> Result<(usize, usize), FfiError> {
    if address == 0 {
        return Err(RtError::ZeroAddress.into());
    }
    let address = super::non_negative(address, "address")?;
    let offset = super::non_negative(offset, "offset")?;
    let length = super::non_negative(length, "length")?;
    let start = address.checked_add(offset).ok_or(RtError::Overflows)?;
    start.checked_add(length).ok_or(RtError::Overflows)?;
    Ok((start, length))
}

/// Where a checked range lives (holding it alive).
#[derive(Clone, Debug)]
pub(crate) enum Owner {
    /// Inside an rt allocation.
    Alloc(Arc<RtAlloc>),
    /// Inside a file mapping.
    File(Arc<FileMap>),
}

impl Owner {
    /// Start of the owning allocation or mapping.
    pub(crate) fn start(&self) -> usize {
        match self {
            Owner::Alloc(a) => a.block.addr(),
            Owner::File(m) => m.addr,
        }
    }

    /// Bytes of the owning allocation or mapping that may be touched.
    pub(crate) fn len(&self) -> usize {
        match self {
            Owner::Alloc(a) => a.size(),
            Owner::File(m) => m.len,
        }
    }
}

/// The entry of `map` containing `start..start+len` (a zero-length range must start inside).
fn containing<V>(
    map: &BTreeMap<usize, Arc<V>>,
    start: usize,
    len: usize,
    size: impl Fn(&V) -> usize,
) -> Option<Arc<V>> {
    let (&base, value) = map.range(..=start).next_back()?;
    let end = start.checked_add(len)?;
    let limit = base + size(value);
    (end <= limit && (len > 0 || start < limit)).then(|| Arc::clone(value))
}

/// The rt allocation containing `start..start+len`.
pub(crate) fn alloc_containing(start: usize, len: usize) -> Option<Arc<RtAlloc>> {
    containing(&allocs(), start, len, RtAlloc::size)
}

/// The file mapping containing `start..start+len`.
pub(crate) fn file_containing(start: usize, len: usize) -> Option<Arc<FileMap>> {
    containing(&files(), start, len, |m| m.len)
}

/// The allocation or mapping that contains `start..start+len` entirely.
pub(crate) fn owner_of(start: usize, len: usize) -> Result<Owner, RtError> {
    if let Some(alloc) = alloc_containing(start, len) {
        return Ok(Owner::Alloc(alloc));
    }
    if let Some(map) = file_containing(start, len) {
        return Ok(Owner::File(map));
    }
    Err(RtError::NotInside { start, len: Some(len), what: Inside::MappingOrAllocation })
}

thread_local! {
    static COPIER: std::cell::RefCell<Option<CheckedCopier>> = const { std::cell::RefCell::new(None) };
}

/// Copies `dst.len()` bytes at `src` out of `owner`, which contains them: an allocation
/// directly (under its lock, so no write overlaps), a file mapping through the kernel (under
/// its protection's read lock), so that a page the file no longer backs (it was truncated) is
/// an error, never `SIGBUS`.
pub(crate) fn read_owned(owner: &Owner, src: usize, dst: &mut [u8]) -> Result<(), RtError> {
    match owner {
        Owner::Alloc(alloc) => {
            let _phase = alloc.phase();
            // SAFETY: `src..src+len` lies inside the live allocation (held by `owner`), whose
            // pages are always readable (read-write or read-execute); its lock keeps rt writes
            // out while we copy; `dst` is the caller's separate buffer.
            unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst.as_mut_ptr(), dst.len()) };
            Ok(())
        }
        Owner::File(map) => {
            let prot = map.prot();
            if *prot & PROT_READ == 0 {
                return Err(RtError::NotReadable(src));
            }
            COPIER.with(|cell| {
                let mut kept = cell.borrow_mut();
                let copier = match kept.take() {
                    Some(copier) => copier,
                    None => CheckedCopier::new()?,
                };
                // SAFETY: the range lies inside the live mapping (held by `owner`); only the
                // kernel reads it.
                match unsafe { copier.copy(src as *const u8, dst) } {
                    Ok(()) => {
                        *kept = Some(copier);
                        Ok(())
                    }
                    Err(e) => {
                        if e.op == "write" {
                            *kept = Some(copier); // a refused write leaves the pipe empty
                        }
                        if e.errno == rustix::io::Errno::FAULT.raw_os_error() {
                            Err(RtError::FileShrank { start: src, len: dst.len() })
                        } else {
                            Err(RtError::Sys(e))
                        }
                    }
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prot_bits_and_protections_are_inverses_and_write_with_exec_is_refused() {
        for bits in [0, PROT_READ, PROT_READ | PROT_WRITE, PROT_READ | PROT_EXEC] {
            assert_eq!(protection_bits(protection_from_bits(bits).unwrap()), bits);
        }
        assert!(matches!(protection_from_bits(PROT_WRITE | PROT_EXEC), Err(RtError::WriteAndExec)));
        assert!(matches!(
            protection_from_bits(PROT_READ | PROT_WRITE | PROT_EXEC),
            Err(RtError::WriteAndExec)
        ));
        assert!(matches!(protection_from_bits(8), Err(RtError::Protection(8))));
        assert_eq!(protection_bits(Protection::ReadWriteExec), 7);
    }
}
