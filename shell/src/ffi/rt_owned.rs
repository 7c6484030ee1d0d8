//! What the `rt_*` functions handed out: executable/read-write allocations and file mappings,
//! and the range check every address argument goes through before memory is touched.
//!
//! The registries' locks are held while a call reads or writes the memory, so a concurrent
//! free or unmap cannot pull it away mid-copy.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// PROT_READ as the SFFI spec numbers it.
pub(crate) const PROT_READ: i32 = 1;
/// PROT_WRITE.
pub(crate) const PROT_WRITE: i32 = 2;
/// PROT_EXEC.
pub(crate) const PROT_EXEC: i32 = 4;

/// An allocation from `rt_alloc_exec_memory` or `rt_alloc_rw_memory`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RtAlloc {
    /// Page-rounded size.
    pub(crate) size: usize,
    /// Size the caller asked for.
    pub(crate) requested: usize,
}

/// A mapping from `rt_mmap_file`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FileMap {
    /// Bytes of the file mapped (what the caller may touch).
    pub(crate) len: usize,
    /// Page-rounded length of the kernel mapping.
    pub(crate) mapped: usize,
    /// PROT_* bits.
    pub(crate) prot: i32,
}

static ALLOCS: Mutex<BTreeMap<usize, RtAlloc>> = Mutex::new(BTreeMap::new());
static FILES: Mutex<BTreeMap<usize, FileMap>> = Mutex::new(BTreeMap::new());

fn lock<T>(m: &'static Mutex<T>) -> MutexGuard<'static, T> {
    // A panic while holding the lock cannot leave the maps inconsistent (every update is one
    // insert or remove), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The allocation registry.
pub(crate) fn allocs() -> MutexGuard<'static, BTreeMap<usize, RtAlloc>> {
    lock(&ALLOCS)
}

/// The file-mapping registry.
pub(crate) fn files() -> MutexGuard<'static, BTreeMap<usize, FileMap>> {
    lock(&FILES)
}

/// `address + offset .. + length` as a checked address range: nothing negative, zero address
/// refused, no overflow.
pub(crate) fn range(address: i64, offset: i64, length: i64) -> Result<(usize, usize), String> {
    if address == 0 {
        return Err("address is 0".into());
    }
    let address = super::non_negative(address, "address")?;
    let offset = super::non_negative(offset, "offset")?;
    let length = super::non_negative(length, "length")?;
    let start = address.checked_add(offset).ok_or("address + offset overflows")?;
    start.checked_add(length).ok_or("address + offset + length overflows")?;
    Ok((start, length))
}

/// Where a checked range lives.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Owner {
    /// Inside the rt allocation starting at `start`.
    Alloc { start: usize, alloc: RtAlloc },
    /// Inside the file mapping starting at `start`.
    File { start: usize, map: FileMap },
}

impl Owner {
    /// Start of the owning allocation or mapping.
    pub(crate) fn start(&self) -> usize {
        match *self {
            Owner::Alloc { start, .. } | Owner::File { start, .. } => start,
        }
    }

    /// Bytes of the owning allocation or mapping that may be touched.
    pub(crate) fn len(&self) -> usize {
        match *self {
            Owner::Alloc { alloc, .. } => alloc.size,
            Owner::File { map, .. } => map.len,
        }
    }

    /// Whether its bytes can be read (allocations always are; mappings need PROT_READ).
    pub(crate) fn readable(&self) -> bool {
        match *self {
            Owner::Alloc { .. } => true,
            Owner::File { map, .. } => map.prot & PROT_READ != 0,
        }
    }
}

fn containing<V: Copy>(
    map: &BTreeMap<usize, V>,
    start: usize,
    len: usize,
    size: impl Fn(&V) -> usize,
) -> Option<(usize, V)> {
    let (&base, value) = map.range(..=start).next_back()?;
    let end = start.checked_add(len)?;
    (end <= base + size(value) && (len > 0 || start < base + size(value))).then_some((base, *value))
}

/// The allocation or mapping that contains `start..start+len` entirely, looked up under the
/// given registry guards.
pub(crate) fn owner_of(
    allocs: &BTreeMap<usize, RtAlloc>,
    files: &BTreeMap<usize, FileMap>,
    start: usize,
    len: usize,
) -> Result<Owner, String> {
    if let Some((base, alloc)) = containing(allocs, start, len, |a| a.size) {
        return Ok(Owner::Alloc { start: base, alloc });
    }
    if let Some((base, map)) = containing(files, start, len, |m| m.len) {
        return Ok(Owner::File { start: base, map });
    }
    Err(format!("{start:#x}+{len} is not inside a live mapping or allocation of this library"))
}
