//! `rt_*` executable memory (the SFFI `exec_memory.spl` spec), under W^X.
//!
//! Each allocation is a page-rounded block in a batch of its own in the process's
//! [`ExecAllocator`](smf_runtime::exec::ExecAllocator): read-write until sealed, then
//! read-execute. Both call sequences of the spec work: explicit (`rt_alloc_rw_memory`,
//! `rt_write_exec_memory`, `rt_make_executable`) and implicit (`rt_alloc_exec_memory`,
//! `rt_write_exec_memory`, `rt_flush_icache`, `rt_get_function_pointer`, which seals). Writing to
//! a sealed allocation patches it through a sealed copy of the touched pages. Calls go only to
//! sealed code this library owns. Allocations together stay within the process's budget of
//! executable memory (`rt_budget.rs`; `smf_exec_budget`, `smf_set_exec_budget`).

use std::sync::{Arc, Mutex};

use super::rt_error::{Inside, Owned, RtError};
use super::rt_owned::{self, Owner, Phase, RtAlloc, PROT_EXEC, PROT_READ, PROT_WRITE};
use super::{guard, non_negative, rt_budget, FfiError};
use crate::loader::SharedModule;
use crate::process::exec;

/// Largest single rt allocation: 1 GiB (reserved, committed only as it is written).
const MAX_ALLOCATION: usize = 1 << 30;

fn allocate(size: i64) -> Result<i64, FfiError> {
    let size = non_negative(size, "size")?;
    if size == 0 {
        return Err(RtError::ZeroSize.into());
    }
    if size > MAX_ALLOCATION {
        return Err(RtError::TooLarge(size).into());
    }
    let page = crate::process::page_size();
    let rounded = size.div_ceil(page) * page;
    // The budget first: nothing is mapped past it (the charge goes back if the mapping fails).
    let charge = rt_budget::charge(rounded)?;
    let mut batch = exec().batch();
    let block = batch.alloc(rounded, page)?;
    let addr = block.addr();
    let alloc = RtAlloc { block, requested: size, phase: Mutex::new(Phase::Open(batch)), _charge: charge };
    rt_owned::allocs().insert(addr, Arc::new(alloc));
    Ok(addr as i64)
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

/// Frees an allocation (`size` as allocated or requested, or 0 for the whole allocation). The
/// memory goes once no other call is still using it (a call running code in it keeps it until
/// the code returns).
#[no_mangle]
pub extern "C" fn rt_free_exec_memory(address: i64, size: i64) -> bool {
    guard(false, || {
        let (start, size) = rt_owned::range(address, 0, size)?;
        let mut allocs = rt_owned::allocs();
        let alloc = allocs.get(&start).ok_or(RtError::NotAStart(start, Owned::Allocation))?;
        if size != 0 && size != alloc.size() && size != alloc.requested {
            let of = Owned::Allocation;
            return Err(RtError::SizeMismatch { size, actual: alloc.requested, of }.into());
        }
        let alloc = allocs.remove(&start);
        drop(allocs);
        drop(alloc); // frees the block unless a call still holds it
        Ok(true)
    })
}

/// The rt allocation containing `start..start+len` (file mappings do not count here).
fn rt_allocation(start: usize, len: usize) -> Result<Arc<RtAlloc>, RtError> {
    rt_owned::alloc_containing(start, len).ok_or(RtError::NotInside {
        start,
        len: Some(len),
        what: Inside::Allocation,
    })
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
        let alloc = rt_allocation(rt_owned::range(address, 0, 0)?.0, 0)?;
        if !alloc.block.contains(dst, n) {
            return Err(RtError::LeavesAllocation.into());
        }
        if n == 0 {
            return Ok(0);
        }
        if code.is_null() {
            return Err(super::ArgError::Null("code").into());
        }
        // SAFETY: the caller passes `len` readable bytes at `code`; they are copied out first
        // (into memory that may be refused: an error, not an abort), so an overlap with the
        // destination cannot matter.
        let source = unsafe { std::slice::from_raw_parts(code, n) };
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(n).map_err(|_| RtError::NoRoomForCopy(n))?;
        bytes.extend_from_slice(source);
        let offset = dst - alloc.block.addr();
        let mut phase = alloc.phase();
        match &mut *phase {
            Phase::Open(batch) => batch.write(&alloc.block, offset, &bytes),
            Phase::Sealed => exec().patch(&alloc.block, offset, &bytes),
            Phase::Broken => return Err(RtError::Broken(alloc.block.addr()).into()),
        }?;
        Ok(len)
    })
}

/// Seals `alloc` if it is still writable (read-execute, instruction cache synchronized).
fn seal(alloc: &RtAlloc) -> Result<(), RtError> {
    let mut phase = alloc.phase();
    match std::mem::replace(&mut *phase, Phase::Broken) {
        Phase::Open(batch) => {
            batch.seal().map_err(|e| RtError::SealFailed(alloc.block.addr(), e))?;
            *phase = Phase::Sealed;
            Ok(())
        }
        Phase::Sealed => {
            *phase = Phase::Sealed;
            Ok(())
        }
        Phase::Broken => Err(RtError::Broken(alloc.block.addr())),
    }
}

/// Seals the allocation containing `address..+size` (read-execute, i-cache synchronized).
#[no_mangle]
pub extern "C" fn rt_make_executable(address: i64, size: i64) -> bool {
    guard(false, || {
        let (start, len) = rt_owned::range(address, 0, size)?;
        seal(&*rt_allocation(start, len)?)?;
        Ok(true)
    })
}

/// Synchronizes the instruction cache for `address..+size` (a no-op on x86-64, and for module
/// code, which loading synchronized).
#[no_mangle]
pub extern "C" fn rt_flush_icache(address: i64, size: i64) {
    guard((), || {
        let (start, len) = rt_owned::range(address, 0, size)?;
        if let Some(alloc) = rt_owned::alloc_containing(start, len) {
            let offset = start - alloc.block.addr();
            return Ok(exec().sync_icache(&alloc.block, offset, len)?);
        }
        match crate::loader::code_containing(start) {
            Some(_) => Ok(()),
            None => Err(RtError::NotInside { start, len: Some(len), what: Inside::Code }.into()),
        }
    });
}

/// Returns `address` as callable code, sealing its allocation if still writable; 0 if it is
/// not inside a live rt allocation.
#[no_mangle]
pub extern "C" fn rt_get_function_pointer(address: i64) -> i64 {
    guard(0, || {
        let (start, _) = rt_owned::range(address, 0, 1)?;
        seal(&*rt_allocation(start, 1)?)?;
        Ok(address)
    })
}

/// `function` as a code address, with what keeps it alive: inside a sealed rt allocation,
/// inside the code of a live loaded module (not its data, read-only data or stubs), or inside
/// code a live instantiator (`smf_jit_*`) installed.
fn callable(function: i64) -> Result<(usize, Callee), FfiError> {
    let (addr, _) = rt_owned::range(function, 0, 1)?;
    if let Some(alloc) = rt_owned::alloc_containing(addr, 1) {
        let sealed = matches!(*alloc.phase(), Phase::Sealed);
        let executable = exec().lookup(addr, 1).is_some_and(|b| b.is_executable());
        return if sealed && executable {
            Ok((addr, Callee::Alloc(alloc)))
        } else {
            Err(RtError::NotSealed(addr).into())
        };
    }
    if let Some(module) = crate::loader::code_containing(addr) {
        return Ok((addr, Callee::Shared(module)));
    }
    match super::instantiate::generics_containing(addr) {
        Some(generics) => Ok((addr, Callee::Generics(generics))),
        None => Err(RtError::NotInside { start: addr, len: None, what: Inside::ExecutableCode }.into()),
    }
}

/// What keeps code alive while it is being called.
#[derive(Debug)]
enum Callee {
    Alloc(Arc<RtAlloc>),
    Shared(Arc<SharedModule>),
    Generics(Arc<crate::instantiate::Generics>),
}

/// Calls the code at `function` as `F` through `call`, holding its allocation or module until
/// the call returns.
///
/// # Safety
/// A function whose signature is `F`'s starts at `function`.
unsafe fn call_as<F: Copy>(function: i64, call: impl FnOnce(F) -> i64) -> Result<i64, FfiError> {
    let (addr, callee) = callable(function)?;
    let f = match &callee {
        // SAFETY: the signature is the caller's contract; the handle borrows `callee`, which
        // keeps the code alive for the call.
        Callee::Alloc(alloc) => unsafe { alloc.block.function::<F>(addr - alloc.block.addr()) },
        // SAFETY: as above.
        Callee::Shared(module) => unsafe { module.loaded().function_at::<F>(addr) },
        // SAFETY: as above.
        Callee::Generics(generics) => unsafe { generics.instantiator().function_at::<F>(addr) },
    };
    Ok(call(f.ok_or(RtError::NotCallable(addr))?.get()))
}

/// Calls the code at `fn` with no arguments; 0 (and an error) if it is not ours.
///
/// # Safety
/// `fn` is the address of a function of signature `int64_t (void)` (this library checks that
/// it is executable code it owns, not that it is such a function).
#[no_mangle]
pub unsafe extern "C" fn rt_call_function_0(function: i64) -> i64 {
    // SAFETY: forwarded to our caller's contract.
    guard(0, || unsafe { call_as(function, |f: extern "C" fn() -> i64| f()) })
}

/// Calls the code at `fn` with one argument.
///
/// # Safety
/// As `rt_call_function_0`, for the signature `int64_t (int64_t)`.
#[no_mangle]
pub unsafe extern "C" fn rt_call_function_1(function: i64, a1: i64) -> i64 {
    // SAFETY: forwarded to our caller's contract.
    guard(0, || unsafe { call_as(function, |f: extern "C" fn(i64) -> i64| f(a1)) })
}

/// Calls the code at `fn` with two arguments.
///
/// # Safety
/// As `rt_call_function_0`, for the signature `int64_t (int64_t, int64_t)`.
#[no_mangle]
pub unsafe extern "C" fn rt_call_function_2(function: i64, a1: i64, a2: i64) -> i64 {
    // SAFETY: forwarded to our caller's contract.
    guard(0, || unsafe { call_as(function, |f: extern "C" fn(i64, i64) -> i64| f(a1, a2)) })
}

/// Whether `address` is inside code of this library that may be called: a sealed rt
/// allocation, or a live module's code (never its data).
#[no_mangle]
pub extern "C" fn rt_is_executable(address: i64) -> bool {
    guard(false, || Ok(callable(address).is_ok()))
}

/// PROT_* bits of the page holding `address`, or -1 if it is not this library's: a file
/// mapping's, a page of the executable allocator's (rt allocations, modules), or READ|EXEC for
/// code a live instantiator installed (in its arena, which the allocator does not see), as
/// `rt_is_executable` and `rt_call_function_*` recognize it.
#[no_mangle]
pub extern "C" fn rt_get_protection(address: i64) -> i32 {
    guard(-1, || {
        let (addr, _) = rt_owned::range(address, 0, 0)?;
        if let Some(map) = rt_owned::file_containing(addr, 0) {
            return Ok(*map.prot());
        }
        if let Some(protection) = exec().protection_at(addr) {
            return Ok(rt_owned::protection_bits(protection));
        }
        match super::instantiate::generics_containing(addr) {
            Some(_) => Ok(PROT_READ | PROT_EXEC),
            None => {
                Err(RtError::NotInside { start: addr, len: None, what: Inside::MappingOrAllocation }.into())
            }
        }
    })
}

/// Changes protection: allocations may be sealed (READ|EXEC) or stay READ|WRITE before sealing;
/// whole file mappings may be made READ, READ|WRITE or NONE (never executable: see
/// `rt_mmap_file`).
#[no_mangle]
pub extern "C" fn rt_set_protection(address: i64, size: i64, prot: i32) -> bool {
    guard(false, || {
        let protection = rt_owned::protection_from_bits(prot)?;
        let (start, len) = rt_owned::range(address, 0, size)?;
        match rt_owned::owner_of(start, len)? {
            Owner::Alloc(alloc) => {
                let open = matches!(*alloc.phase(), Phase::Open(_));
                match prot {
                    p if p == PROT_READ | PROT_EXEC => Ok(seal(&alloc).map(|()| true)?),
                    p if p == PROT_READ | PROT_WRITE && open => Ok(true),
                    p if p == PROT_READ | PROT_WRITE => Err(RtError::SealedStaysSealed.into()),
                    _ => Err(RtError::AllocationProtection.into()),
                }
            }
            Owner::File(map) => {
                if start != map.addr || (len != map.len && len != map.mapped) {
                    return Err(RtError::NotWholeMapping.into());
                }
                if prot & PROT_EXEC != 0 {
                    return Err(RtError::ExecutableFile.into());
                }
                map.set_prot(prot, protection)?;
                Ok(true)
            }
        }
    })
}

/// Bytes in live rt allocations (page-rounded).
#[no_mangle]
pub extern "C" fn rt_exec_memory_total() -> i64 {
    guard(-1, || Ok(rt_owned::allocs().values().map(|a| a.size() as i64).fold(0, i64::saturating_add)))
}

/// Live rt allocations.
#[no_mangle]
pub extern "C" fn rt_exec_memory_count() -> i64 {
    guard(-1, || Ok(rt_owned::allocs().len() as i64))
}

/// The process-wide budget of rt allocations in bytes (0: none): `SMF_EXEC_BUDGET`, else 4 GiB,
/// unless `smf_set_exec_budget` changed it.
#[no_mangle]
pub extern "C" fn smf_exec_budget() -> u64 {
    guard(0, || Ok(rt_budget::budget()))
}

/// Sets the budget of rt allocations (0: none); returns the one it replaces. Allocations held
/// stay; past the new budget, later ones fail until enough is freed.
#[no_mangle]
pub extern "C" fn smf_set_exec_budget(bytes: u64) -> u64 {
    guard(0, || Ok(rt_budget::set_budget(bytes)))
}

/// Prints the allocation and allocator statistics as one block on stderr.
#[no_mangle]
pub extern "C" fn rt_exec_memory_dump_stats() {
    guard((), || {
        let (count, total) = (rt_exec_memory_count(), rt_exec_memory_total());
        let (file_count, mapped) = {
            let files = rt_owned::files();
            (files.len(), files.values().map(|m| m.len).sum::<usize>())
        };
        let s = exec().stats();
        eprintln!(
            "smf exec memory: {count} rt allocations, {total} bytes; {} file mappings, {mapped} bytes\n\
             allocator: {} blocks live ({} bytes), {} pages open, {} sealed, {} trap pages, \
             {} recycled, {} regions, {} mappings, {} protection changes, {} patches",
            file_count,
            s.blocks_live,
            s.bytes_live,
            s.pages_open,
            s.pages_sealed,
            s.trap_pages,
            s.pages_recycled,
            s.regions,
            s.mappings,
            s.protection_changes,
            s.patches
        );
        Ok(())
    });
}
