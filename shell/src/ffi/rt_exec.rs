//! `rt_*` executable memory (the SFFI `exec_memory.spl` spec), under W^X.
//!
//! Each allocation is a page-rounded block in a batch of its own in the process's
//! [`ExecAllocator`](smf_core::exec::ExecAllocator): read-write until sealed, then
//! read-execute. Both call sequences of the spec work: explicit (`rt_alloc_rw_memory`,
//! `rt_write_exec_memory`, `rt_make_executable`) and implicit (`rt_alloc_exec_memory`,
//! `rt_write_exec_memory`, `rt_flush_icache`, `rt_get_function_pointer`, which seals). Writing to
//! a sealed allocation patches it through a sealed copy of the touched pages. Calls go only to
//! sealed code this library owns.

use smf_core::sys;

use super::rt_mmap::protection_from_bits;
use super::rt_owned::{self, Owner, RtAlloc, PROT_EXEC, PROT_READ, PROT_WRITE};
use super::{guard, non_negative};
use crate::runtime::exec;

/// Largest single rt allocation: 1 GiB.
const MAX_ALLOCATION: usize = 1 << 30;

fn allocate(size: i64) -> Result<i64, String> {
    let size = non_negative(size, "size")?;
    if size == 0 {
        return Err("size is 0".into());
    }
    if size > MAX_ALLOCATION {
        return Err(format!("size {size} is over the 1 GiB limit"));
    }
    let page = sys::page_size();
    let rounded = size.div_ceil(page) * page;
    let exec = exec();
    let batch = exec.begin_batch();
    let block = match exec.alloc(batch, rounded, page) {
        Ok(block) => block,
        Err(e) => {
            let _ = exec.abandon(batch);
            return Err(e.to_string());
        }
    };
    rt_owned::allocs().insert(block.addr, RtAlloc { size: rounded, requested: size });
    Ok(block.addr as i64)
}

/// Allocates `size` bytes (page-rounded, zeroed), writable until sealed; 0 on error.
#[no_mangle]
pub extern "C" fn rt_alloc_exec_memory(size: i64) -> i64 {
    guard(0, || allocate(size))
}

/// Allocates `size` bytes (page-rounded, zeroed), read-write; 0 on error.
#[no_mangle]
pub extern "C" fn rt_alloc_rw_memory(size: i64) -> i64 {
    guard(0, || allocate(size))
}

/// Frees an allocation (`size` as allocated or requested, or 0 for the whole allocation).
#[no_mangle]
pub extern "C" fn rt_free_exec_memory(address: i64, size: i64) -> bool {
    guard(false, || {
        let (start, size) = rt_owned::range(address, 0, size)?;
        let mut allocs = rt_owned::allocs();
        let alloc =
            *allocs.get(&start).ok_or_else(|| format!("{start:#x} is not the start of an rt allocation"))?;
        if size != 0 && size != alloc.size && size != alloc.requested {
            return Err(format!("size {size} does not match the allocation ({} bytes)", alloc.requested));
        }
        let exec = exec();
        let result = match exec.lookup(start, 1).and_then(|info| info.batch) {
            Some(batch) => exec.abandon(batch),
            None => exec.free(start),
        };
        result.map_err(|e| e.to_string())?;
        allocs.remove(&start);
        Ok(true)
    })
}

/// The rt allocation containing `start..start+len` (file mappings do not count here).
fn rt_allocation(start: usize, len: usize) -> Result<(usize, RtAlloc), String> {
    let allocs = rt_owned::allocs();
    match rt_owned::owner_of(&allocs, &Default::default(), start, len)? {
        Owner::Alloc { start, alloc } => Ok((start, alloc)),
        Owner::File { .. } => Err("not an rt allocation".into()),
    }
}

/// Copies `len` bytes of `code` to `address + offset`; patches if the allocation is sealed.
/// Returns the bytes written, or -1.
///
/// # Safety
/// `code` is NULL or readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn rt_write_exec_memory(address: i64, code: *const u8, len: i64, offset: i64) -> i64 {
    guard(-1, || {
        let (dst, n) = rt_owned::range(address, offset, len)?;
        let (base, _) = rt_allocation(rt_owned::range(address, 0, 0)?.0, 0)?;
        let (same, _) = rt_allocation(dst, n)?;
        if same != base {
            return Err("address + offset leaves the allocation".into());
        }
        if n == 0 {
            return Ok(0);
        }
        if code.is_null() {
            return Err("code is NULL".into());
        }
        // SAFETY: the caller passes `len` readable bytes at `code`; they are copied out first,
        // so an overlap with the destination cannot matter.
        let bytes = unsafe { std::slice::from_raw_parts(code, n) }.to_vec();
        exec().patch(dst, &bytes).map_err(|e| e.to_string())?;
        Ok(len)
    })
}

/// Seals the allocation containing `address..+size` (read-execute, i-cache synchronized).
#[no_mangle]
pub extern "C" fn rt_make_executable(address: i64, size: i64) -> bool {
    guard(false, || {
        let (start, len) = rt_owned::range(address, 0, size)?;
        let (base, _) = rt_allocation(start, len)?;
        seal_containing(base)?;
        Ok(true)
    })
}

/// Seals the batch of the live block at `addr` if it is still writable.
fn seal_containing(addr: usize) -> Result<(), String> {
    let exec = exec();
    let info = exec.lookup(addr, 1).ok_or_else(|| format!("{addr:#x} is not inside a live allocation"))?;
    if let Some(batch) = info.batch {
        exec.seal(batch).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Synchronizes the instruction cache for `address..+size` (a no-op on x86-64).
#[no_mangle]
pub extern "C" fn rt_flush_icache(address: i64, size: i64) {
    guard((), || {
        let (start, len) = rt_owned::range(address, 0, size)?;
        exec().sync_icache(start, len).map_err(|e| e.to_string())
    });
}

/// Returns `address` as callable code, sealing its allocation if still writable; 0 if it is
/// not inside a live allocation.
#[no_mangle]
pub extern "C" fn rt_get_function_pointer(address: i64) -> i64 {
    guard(0, || {
        let (start, _) = rt_owned::range(address, 0, 1)?;
        seal_containing(start)?;
        Ok(address)
    })
}

/// `fn` as a code address, if it is inside sealed code this library owns.
fn callable(function: i64) -> Result<usize, String> {
    let (addr, _) = rt_owned::range(function, 0, 1)?;
    match exec().lookup(addr, 1) {
        Some(info) if info.sealed => Ok(addr),
        Some(_) => {
            Err(format!("{addr:#x} is not sealed yet (call rt_get_function_pointer or rt_make_executable)"))
        }
        None => Err(format!("{addr:#x} is not inside executable memory of this library")),
    }
}

/// Calls the code at `fn` with no arguments; 0 (and an error) if it is not ours.
#[no_mangle]
pub extern "C" fn rt_call_function_0(function: i64) -> i64 {
    guard(0, || {
        let addr = callable(function)?;
        // SAFETY: `addr` is sealed code owned by this library; the caller vouches for its
        // signature, as the spec's callers do.
        let f: extern "C" fn() -> i64 = unsafe { std::mem::transmute(addr) };
        Ok(f())
    })
}

/// Calls the code at `fn` with one argument.
#[no_mangle]
pub extern "C" fn rt_call_function_1(function: i64, a1: i64) -> i64 {
    guard(0, || {
        let addr = callable(function)?;
        // SAFETY: as in `rt_call_function_0`.
        let f: extern "C" fn(i64) -> i64 = unsafe { std::mem::transmute(addr) };
        Ok(f(a1))
    })
}

/// Calls the code at `fn` with two arguments.
#[no_mangle]
pub extern "C" fn rt_call_function_2(function: i64, a1: i64, a2: i64) -> i64 {
    guard(0, || {
        let addr = callable(function)?;
        // SAFETY: as in `rt_call_function_0`.
        let f: extern "C" fn(i64, i64) -> i64 = unsafe { std::mem::transmute(addr) };
        Ok(f(a1, a2))
    })
}

/// Whether `address` is inside sealed code of this library.
#[no_mangle]
pub extern "C" fn rt_is_executable(address: i64) -> bool {
    guard(false, || Ok(callable(address).is_ok()))
}

/// PROT_* bits of the page holding `address`, or -1 if it is not this library's.
#[no_mangle]
pub extern "C" fn rt_get_protection(address: i64) -> i32 {
    guard(-1, || {
        let (addr, _) = rt_owned::range(address, 0, 0)?;
        let files = rt_owned::files();
        if let Ok(Owner::File { map, .. }) = rt_owned::owner_of(&Default::default(), &files, addr, 0) {
            return Ok(map.prot);
        }
        exec()
            .protection_at(addr)
            .map(|p| p.bits())
            .ok_or_else(|| format!("{addr:#x} is not inside a live mapping or allocation of this library"))
    })
}

/// Changes protection: allocations may be sealed (READ|EXEC) or stay READ|WRITE before sealing;
/// whole file mappings may take any protection but WRITE|EXEC together.
#[no_mangle]
pub extern "C" fn rt_set_protection(address: i64, size: i64, prot: i32) -> bool {
    guard(false, || {
        let protection = protection_from_bits(prot)?;
        let (start, len) = rt_owned::range(address, 0, size)?;
        let (allocs, mut files) = (rt_owned::allocs(), rt_owned::files());
        match rt_owned::owner_of(&allocs, &files, start, len)? {
            Owner::Alloc { start: base, .. } => {
                drop((allocs, files));
                let sealed = exec().lookup(base, 1).is_some_and(|b| b.sealed);
                match prot {
                    p if p == PROT_READ | PROT_EXEC => seal_containing(base).map(|()| true),
                    p if p == PROT_READ | PROT_WRITE && !sealed => Ok(true),
                    p if p == PROT_READ | PROT_WRITE => {
                        Err("sealed code is never made writable again; patch it with rt_write_exec_memory"
                            .into())
                    }
                    _ => Err("allocations support READ|WRITE (before sealing) and READ|EXEC".into()),
                }
            }
            Owner::File { start: base, map } => {
                if start != base || (len != map.len && len != map.mapped) {
                    return Err("rt_set_protection applies to a whole file mapping".into());
                }
                // SAFETY: the whole mapping is ours; W|X was refused above.
                unsafe { sys::protect(base as *mut u8, map.mapped, protection) }
                    .map_err(|e| e.to_string())?;
                files.insert(base, rt_owned::FileMap { prot, ..map });
                Ok(true)
            }
        }
    })
}

/// Bytes in live rt allocations (page-rounded).
#[no_mangle]
pub extern "C" fn rt_exec_memory_total() -> i64 {
    rt_owned::allocs().values().map(|a| a.size as i64).sum()
}

/// Live rt allocations.
#[no_mangle]
pub extern "C" fn rt_exec_memory_count() -> i64 {
    rt_owned::allocs().len() as i64
}

/// Prints the allocation and allocator statistics as one block on stderr.
#[no_mangle]
pub extern "C" fn rt_exec_memory_dump_stats() {
    guard((), || {
        let (count, total) = (rt_exec_memory_count(), rt_exec_memory_total());
        let files = rt_owned::files();
        let mapped: usize = files.values().map(|m| m.len).sum();
        let s = exec().stats();
        eprintln!(
            "smf exec memory: {count} rt allocations, {total} bytes; {} file mappings, {mapped} bytes\n\
             allocator: {} blocks live ({} bytes), {} pages open, {} sealed, {} trap pages, \
             {} regions, {} mappings, {} protection changes, {} patches",
            files.len(),
            s.blocks_live,
            s.bytes_live,
            s.pages_open,
            s.pages_sealed,
            s.trap_pages,
            s.regions,
            s.mappings,
            s.protection_changes,
            s.patches
        );
        Ok(())
    });
}
