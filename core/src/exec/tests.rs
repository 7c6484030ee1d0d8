//! The allocator over the simulated kernel: its state machine and unsafe code run under Miri
//! (no syscalls), and a fault injector fails every kernel call of a load, seal, patch and free
//! in turn, checking that the error is clean, nothing leaks and the allocator keeps working.
//!
//! Each test has kernels of its own (statics: the allocator needs `&'static dyn Kernel`, and
//! tests run in parallel).

// Reading the blocks back and driving the simulated kernel directly needs raw pointers.
#![allow(unsafe_code)]

use alloc::vec;
use alloc::vec::Vec;

use super::fake::{FaultInjector, SimulatedKernel, SimulatedUsage};
use super::{AllocatorStats, Block, ExecAllocator, ExecConfig, ExecError, MemoryKind};
use crate::load::{LoadBatch, LoadOptions, LoadedModule, TableResolver};
use crate::sys::Protection;
use crate::write::{samples, ModuleBuilder, SymbolSpec};
use crate::{Dialect, RelocKind};

pub(super) const PAGE: usize = 4096;

/// Small regions keep the simulation (and Miri) fast.
pub(super) fn config() -> ExecConfig {
    ExecConfig { region_size: 16 * PAGE, ..ExecConfig::default() }
}

/// The bytes at `addr..addr+len` (memory of a live block of ours).
pub(super) fn bytes(addr: usize, len: usize) -> Vec<u8> {
    // SAFETY: callers pass ranges inside live blocks, which the simulation keeps allocated.
    unsafe { core::slice::from_raw_parts(addr as *const u8, len) }.to_vec()
}

/// What must be back where it was after a failed operation (counters excepted).
fn shape(stats: AllocatorStats) -> [usize; 6] {
    [
        stats.blocks_live,
        stats.bytes_live,
        stats.pages_open,
        stats.pages_sealed,
        stats.trap_pages,
        stats.regions,
    ]
}

#[test]
fn a_sealed_block_is_read_execute_and_a_freed_one_read_write_again() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let block = batch.alloc(64, 16).unwrap();
    assert_eq!(bytes(block.addr(), 64), vec![0; 64], "fresh blocks are zero");
    assert_eq!(K.protection_at(block.addr()), Some(Protection::ReadWrite));
    batch.write(&block, 0, &samples::RETURN_42).unwrap();
    batch.seal().unwrap();
    assert_eq!(K.protection_at(block.addr()), Some(Protection::ReadExec));
    assert_eq!(bytes(block.addr(), 6), samples::RETURN_42);
    assert!(exec.lookup(block.addr(), 1).unwrap().is_executable());
    let addr = block.addr();
    drop(block);
    assert_eq!(exec.lookup(addr, 1), None);
    assert_eq!(K.protection_at(addr), Some(Protection::ReadWrite), "freed pages lose execute");
    assert_eq!(shape(exec.stats()), [0, 0, 0, 0, 0, 1], "one spare region stays");
    drop(exec);
    assert_eq!(K.usage(), SimulatedUsage::default(), "dropping the allocator unmaps everything");
}

#[test]
fn several_open_blocks_are_handed_out_at_once_only_when_disjoint_and_of_the_batch() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let (a, b) = (batch.alloc(64, 16).unwrap(), batch.alloc(32, 16).unwrap());
    let [first, none, second] = batch.blocks_mut([Some(&a), None, Some(&b)]).unwrap();
    first.fill(1);
    second.fill(2);
    assert_eq!((first.len(), none.len(), second.len()), (64, 0, 32));
    assert_eq!((bytes(a.addr(), 64), bytes(b.addr(), 32)), (vec![1; 64], vec![2; 32]));
    assert!(batch.blocks_mut([Some(&a), Some(&a)]).is_err(), "one block twice would alias");
    // Adjacent blocks do not overlap, in either order.
    assert_eq!(b.addr(), a.addr() + 64);
    let [second, first] = batch.blocks_mut([Some(&b), Some(&a)]).unwrap();
    assert_eq!((second.len(), first.len()), (32, 64));
    let mut other = exec.batch();
    let c = other.alloc(16, 16).unwrap();
    assert!(batch.blocks_mut([Some(&a), Some(&c)]).is_err(), "another batch's block");
}

#[test]
fn small_blocks_of_one_batch_share_a_page_and_seal_with_one_change() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let codes: Vec<[u8; 6]> = (0..100u8).map(|i| [0xB8, i, 0, 0, 0, 0xC3]).collect();
    let blocks = batch.install_many(codes.iter().map(|c| &c[..]), 16).unwrap();
    let before = exec.stats().protection_changes;
    batch.seal().unwrap();
    assert!(exec.stats().protection_changes - before <= 2);
    assert_eq!(exec.stats().pages_sealed, 1, "100 blocks of 16 bytes fit one page");
    for (i, block) in blocks.iter().enumerate() {
        assert_eq!(bytes(block.addr(), 16)[..6], codes[i], "block {i}");
        assert_eq!(bytes(block.addr() + 6, 10), vec![0; 10], "the granule's tail is zero");
    }
    exec.free_all(blocks).unwrap();
    assert_eq!(shape(exec.stats())[..5], [0; 5]);
}

#[test]
fn an_image_seals_each_segment_to_its_kind_behind_a_trap_page() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let segments = [(PAGE, MemoryKind::Code), (PAGE, MemoryKind::ReadOnly), (PAGE, MemoryKind::ReadWrite)];
    let image = batch.alloc_image(&segments).unwrap();
    let addrs: Vec<usize> = image.iter().map(|b| b.as_ref().unwrap().addr()).collect();
    batch.seal().unwrap();
    let expected = [Protection::ReadExec, Protection::Read, Protection::ReadWrite];
    for (addr, protection) in addrs.iter().zip(expected) {
        assert_eq!(K.protection_at(*addr), Some(protection));
    }
    let trap = addrs[0] - PAGE;
    assert_eq!(K.protection_at(trap), Some(Protection::ReadExec));
    let fill = if cfg!(target_arch = "x86_64") { 0xCC } else { 0 };
    assert!(bytes(trap, PAGE).iter().all(|&b| b == fill), "the trap page faults when run");
    assert_eq!(exec.stats().trap_pages, 1);
    drop(image);
    assert_eq!(exec.stats().trap_pages, 1, "the trap page outlives the code");
    assert_eq!(K.usage().executable_pages, 1);
    exec.trim().unwrap();
    assert_eq!((exec.stats().trap_pages, K.usage().executable_pages), (0, 0));
}

#[test]
fn an_image_goes_whole_to_a_region_with_room_for_its_data_above_its_code() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(ExecConfig { region_size: 8 * PAGE, ..config() }, &K);
    let addr = |b: &Option<Block<'_>>| b.as_ref().unwrap().addr();
    // A trap page, three pages of code and three of data at the top fill the region.
    let mut batch = exec.batch();
    let mut first =
        batch.alloc_image(&[(3 * PAGE, MemoryKind::Code), (3 * PAGE, MemoryKind::ReadWrite)]).unwrap();
    batch.seal().unwrap();
    let base = exec.regions()[0].start;
    assert_eq!([addr(&first[0]), addr(&first[1])], [base + PAGE, base + 5 * PAGE]);
    // With its data freed, four pages follow its code: room for four pages of code and
    // nothing above them.
    exec.free_all(first.remove(1)).unwrap();
    let mut batch = exec.batch();
    let second = batch.alloc_image(&[(4 * PAGE, MemoryKind::Code), (PAGE, MemoryKind::ReadWrite)]).unwrap();
    batch.seal().unwrap();
    let regions = exec.regions();
    assert_eq!(regions.len(), 2);
    assert!(second.iter().all(|b| regions[1].contains(&addr(b))), "code and data in the new region");
    assert!(addr(&second[0]) < addr(&second[1]));
    // Code alone fits right after the first image's code, with no trap page of its own.
    let mut batch = exec.batch();
    let third = batch.alloc_image(&[(4 * PAGE, MemoryKind::Code)]).unwrap();
    batch.seal().unwrap();
    assert_eq!(addr(&third[0]), base + 4 * PAGE);
    assert_eq!(exec.stats().trap_pages, 2, "one per region");
    assert_eq!(K.protection_at(base + 7 * PAGE), Some(Protection::ReadExec));
}

#[test]
fn a_data_page_freed_while_its_batch_is_open_is_released_at_once() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let mut image =
        batch.alloc_image(&[(PAGE, MemoryKind::Code), (2 * PAGE, MemoryKind::ReadWrite)]).unwrap();
    let code_block = batch.alloc(64, 16).unwrap();
    let open = exec.stats().pages_open;
    // The data pages lie outside the batch's current run of code: no later block goes there.
    exec.free_all(image.remove(1)).unwrap();
    assert_eq!(exec.stats().pages_open, open - 2);
    // A block freed in the current run keeps its page open for the batch's next blocks.
    exec.free_all([code_block]).unwrap();
    assert_eq!(exec.stats().pages_open, open - 2);
    let next = batch.alloc(64, 16).unwrap();
    batch.seal().unwrap();
    // The run of code grew after the data's run was opened: it is the code run that grew.
    let sealed = exec.lookup(next.addr(), 64).is_some_and(|b| b.sealed);
    assert!(sealed, "the block in the grown run is sealed with its batch");
}

#[test]
fn a_region_whose_code_and_trap_page_are_gone_is_unmapped() {
    // A sealed trap page stops counting as a used page of its region, so a region left with
    // nothing but its trap page is empty once the trap is trimmed, and goes back to the kernel.
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(ExecConfig { spare_regions: 0, ..config() }, &K);
    let mut batch = exec.batch();
    let image = batch.alloc_image(&[(PAGE, MemoryKind::Code)]).unwrap();
    batch.seal().unwrap();
    assert_eq!((exec.stats().trap_pages, K.usage().mappings), (1, 1));
    drop(image);
    exec.trim().unwrap();
    assert_eq!((exec.stats().regions, K.usage().mappings), (0, 0), "the empty region is unmapped");
}

/// Leaves `pages` pages of code full of old bytes (0xAA), sealed then freed, for the
/// allocator to recycle; their address.
fn recycled_code(exec: &ExecAllocator, pages: usize) -> usize {
    let mut batch = exec.batch();
    let old = batch.alloc_image(&[(pages * PAGE, MemoryKind::Code)]).unwrap().remove(0).unwrap();
    batch.write(&old, 0, &vec![0xAA; pages * PAGE]).unwrap();
    batch.seal().unwrap();
    old.addr()
}

#[test]
fn recycled_pages_are_zeroed_except_what_the_caller_overwrites() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let old_addr = recycled_code(&exec, 2);
    let mut batch = exec.batch();
    let again = batch.alloc_module_image(&[(2 * PAGE, MemoryKind::Code)], PAGE + 100, 1).unwrap();
    let again = again[0].as_ref().unwrap();
    assert_eq!(again.addr(), old_addr);
    let seen = batch.block_mut(again).unwrap().to_vec();
    assert_eq!(seen[PAGE], 0xAA, "left to the caller");
    assert!(seen[PAGE + 100..].iter().all(|&b| b == 0));
}

#[test]
fn what_the_caller_overwrites_is_the_first_segment_wherever_it_lies() {
    // Found by the `exec_ops` fuzz target: with data first and code after it, the bytes left
    // unzeroed for the caller were taken at the start of the code, which the caller never wrote.
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let old_addr = recycled_code(&exec, 2);
    let mut batch = exec.batch();
    let segments = [(PAGE, MemoryKind::ReadWrite), (2 * PAGE, MemoryKind::Code)];
    let image = batch.alloc_module_image(&segments, PAGE, 1).unwrap();
    let code = image[1].as_ref().unwrap();
    assert_eq!(code.addr(), old_addr, "the code reuses the recycled pages");
    assert!(batch.block_mut(code).unwrap().iter().all(|&b| b == 0), "code the caller does not write is zero");
}

#[test]
fn a_patch_replaces_the_touched_pages_with_a_sealed_copy() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let a = batch.install(&samples::RETURN_42, 16).unwrap();
    let b = batch.install(&[0x31, 0xC0, 0xC3], 16).unwrap();
    batch.seal().unwrap();
    let changes = exec.stats().protection_changes;
    exec.patch(&a, 1, &[7]).unwrap();
    assert_eq!(bytes(a.addr(), 6), [0xB8, 7, 0, 0, 0, 0xC3]);
    assert_eq!(bytes(b.addr(), 3), [0x31, 0xC0, 0xC3], "the neighbour is untouched");
    assert_eq!(K.protection_at(a.addr()), Some(Protection::ReadExec));
    assert_eq!(exec.stats().patches, 1);
    // Map the copy, seal it, move it over: three changes.
    assert_eq!(exec.stats().protection_changes - changes, 3);
    // A block further into the page is patched where it lies, not at the page's start.
    exec.patch(&b, 2, &[0x90]).unwrap();
    assert_eq!(bytes(b.addr(), 3), [0x31, 0xC0, 0x90]);
    assert_eq!(bytes(a.addr(), 6), [0xB8, 7, 0, 0, 0, 0xC3], "the neighbour is untouched");
    assert_eq!((exec.stats().patches, exec.stats().protection_changes - changes), (2, 6));
    assert!(matches!(exec.patch(&a, 15, &[0, 0]), Err(ExecError::NotOwned { .. })));
    let mut open = exec.batch();
    let c = open.alloc(16, 16).unwrap();
    assert_eq!(exec.patch(&c, 0, &[1]), Err(ExecError::NotSealed { addr: c.addr() }));
}

/// Found in review: an empty patch at a block's end was judged by whatever lay at that
/// address (here: nothing, the block ends its region) instead of by the block.
#[test]
fn an_empty_patch_at_a_blocks_end_is_the_blocks() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(ExecConfig { region_size: PAGE, ..config() }, &K);
    let mut batch = exec.batch();
    let whole = batch.alloc(PAGE, PAGE).unwrap();
    assert_eq!(exec.patch(&whole, PAGE, &[]), Err(ExecError::NotSealed { addr: whole.addr() + PAGE }));
    batch.seal().unwrap();
    assert_eq!(exec.stats().regions, 1, "the block fills its region");
    assert_eq!(exec.patch(&whole, PAGE, &[]), Ok(()));
    assert!(matches!(exec.patch(&whole, PAGE, &[1]), Err(ExecError::NotOwned { .. })));
}

#[test]
fn an_ended_batch_leaves_its_blocks_to_their_owners() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let kept = {
        let mut batch = exec.batch();
        let kept = batch.alloc(3 * PAGE, PAGE).unwrap();
        batch.write(&kept, PAGE, &[9; 16]).unwrap();
        kept
    };
    assert_eq!(bytes(kept.addr() + PAGE, 16), vec![9; 16]);
    assert_eq!(K.protection_at(kept.addr()), Some(Protection::ReadWrite));
    assert_eq!(exec.stats().pages_open, 3, "its pages stay with it, open to no one else");
    let mut other = exec.batch();
    assert!(matches!(other.block_mut(&kept), Err(ExecError::NotOwned { .. })));
    drop(kept);
    assert_eq!(shape(exec.stats())[..5], [0; 5]);
}

#[test]
fn blocks_larger_than_a_region_get_their_own_and_empty_regions_go_back() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let small = batch.alloc(16, 16).unwrap();
    let big = batch.alloc_image(&[(40 * PAGE, MemoryKind::ReadWrite)]).unwrap().remove(0).unwrap();
    batch.seal().unwrap();
    assert_eq!((exec.stats().regions, K.usage().mappings), (2, 2));
    drop(big);
    drop(small);
    assert_eq!((exec.stats().regions, K.usage().mappings), (1, 1), "one spare region is kept");
}

/// Found by the `exec_ops` fuzz target: a release booked its deferred page changes by region
/// index, and the same release unmapped an emptied region in front of it, so the booking went
/// to the wrong region (or past the last). One free here empties the first region at once (its
/// page needs no protection change) and defers the second's (sealed code becomes free).
#[test]
fn a_release_that_unmaps_an_earlier_region_books_its_changes_where_they_were_made() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let one_page = ExecConfig { region_size: PAGE, spare_regions: 0, allow_rwx: false };
    let exec = ExecAllocator::with_kernel(one_page, &K);
    let open = {
        let mut batch = exec.batch();
        batch.alloc(PAGE, 16).unwrap()
    };
    let (sealed, third) = {
        let mut batch = exec.batch();
        let sealed = batch.install(&[0xC3; 32], 16).unwrap();
        let third = batch.install(&[0x90; PAGE], 16).unwrap();
        batch.seal().unwrap();
        (sealed, third)
    };
    assert_eq!(exec.stats().regions, 3);
    let (sealed_addr, third_addr) = (sealed.addr(), third.addr());
    exec.free_all([open, sealed]).unwrap();
    assert_eq!(exec.stats().regions, 1, "both emptied regions went back");
    assert!(exec.lookup(sealed_addr, 1).is_none());
    let info = exec.lookup(third_addr, PAGE).expect("the block no one freed is still there");
    assert!(info.is_executable());
    assert_eq!(K.protection_at(third_addr), Some(Protection::ReadExec));
    assert_eq!(bytes(third_addr, PAGE), vec![0x90; PAGE]);
    drop(third);
    assert_eq!(shape(exec.stats())[..5], [0; 5]);
}

/// Found by the `exec_ops` fuzz target: a batch that freed its own blocks opened the same pages
/// again for a module image, so its runs overlapped, and the seal planned (and booked) those
/// pages twice: the trap page stopped counting as used twice, and a later release underflowed.
#[test]
fn a_batch_that_reopens_pages_it_freed_seals_each_page_once() {
    static K: SimulatedKernel = SimulatedKernel::new();
    // The first block leaves its region no room to grow into: the image needs a new run.
    let exec = ExecAllocator::with_kernel(ExecConfig { region_size: 8 * PAGE, ..config() }, &K);
    let mut batch = exec.batch();
    let first = batch.alloc(6 * PAGE + 16, 16).unwrap();
    let reused = first.addr();
    drop(first);
    let image = batch.alloc_image(&[(5 * PAGE, MemoryKind::Code)]).unwrap().remove(0).unwrap();
    assert!(image.addr() < reused + 6 * PAGE, "the image reuses pages the batch freed");
    let changes = exec.stats().protection_changes;
    batch.seal().unwrap();
    let stats = exec.stats();
    assert_eq!((stats.pages_sealed, stats.trap_pages, stats.pages_open), (5, 1, 0));
    assert_eq!(stats.protection_changes - changes, 1, "the trap page and the code, sealed together once");
    drop(image);
    assert_eq!(shape(exec.stats())[..4], [0; 4]);
    exec.trim().unwrap();
    assert_eq!(shape(exec.stats())[..5], [0; 5], "the trap page went back too");
}

/// Found in review: a block freed while its batch's seal changes protections (outside the lock)
/// had its emptied page released at once, though the seal was about to make it executable and
/// book it sealed; the page was then released twice, the region's used count ran out with a
/// block still in it, and the region was unmapped under that block.
#[test]
fn a_block_freed_while_its_batch_is_sealed_keeps_its_page_until_the_seal_is_booked() {
    static K: SimulatedKernel = SimulatedKernel::new();
    static F: FaultInjector = FaultInjector::new(&K);
    static EXEC: spin::Once<ExecAllocator> = spin::Once::new();
    static FREED_MEANWHILE: spin::Mutex<Option<Block<'static>>> = spin::Mutex::new(None);
    let exec = EXEC.call_once(|| ExecAllocator::with_kernel(ExecConfig { spare_regions: 0, ..config() }, &F));
    let mut batch = exec.batch();
    let freed = batch.install(&[0xC3; 16], 16).unwrap();
    let kept = batch.alloc(PAGE, PAGE).unwrap();
    batch.write(&kept, 0, &[0x90; 16]).unwrap();
    assert_eq!(kept.addr(), freed.addr() + PAGE, "one block per page");
    *FREED_MEANWHILE.lock() = Some(freed);
    // The seal's first call is its protection change, made outside the lock.
    F.interleave_at(0, || drop(FREED_MEANWHILE.lock().take()));
    batch.seal().unwrap();
    assert!(FREED_MEANWHILE.lock().is_none(), "the block was freed during the seal");
    let stats = exec.stats();
    assert_eq!((stats.regions, stats.blocks_live, stats.pages_sealed), (1, 1, 1), "{stats:?}");
    assert!(exec.lookup(kept.addr(), PAGE).is_some_and(|info| info.is_executable()));
    assert_eq!(K.protection_at(kept.addr()), Some(Protection::ReadExec));
    assert_eq!(bytes(kept.addr(), 16), vec![0x90; 16]);
    drop(kept);
    assert_eq!(shape(exec.stats())[..5], [0; 5]);
}

/// Found in review: runs a batch opened in a region that emptied and was unmapped stay in its
/// list; a region reserved since at the same addresses (the simulation's heap, like the
/// kernel, reuses them) made such a stale run overlap a live one, and the merged run lay in no
/// region, so the seal skipped the live pages and reported success. (Where the addresses are
/// not reused, the stale run overlaps nothing and the test passes either way.)
#[test]
fn a_run_left_from_an_unmapped_region_does_not_hide_live_pages_from_the_seal() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(
        ExecConfig { region_size: 8 * PAGE, spare_regions: 0, allow_rwx: false },
        &K,
    );
    let mut batch = exec.batch();
    let big = batch.alloc(12 * PAGE, 16).unwrap();
    drop(big);
    assert_eq!(exec.stats().regions, 0, "the emptied region went back");
    let image = batch.alloc_image(&[(PAGE, MemoryKind::Code)]).unwrap().remove(0).unwrap();
    batch.seal().unwrap();
    assert!(
        exec.lookup(image.addr(), PAGE).is_some_and(|info| info.is_executable()),
        "the image was not sealed"
    );
    assert_eq!(K.protection_at(image.addr()), Some(Protection::ReadExec));
}

/// A sealed block's function handle formats without its address (found by mutation testing:
/// nothing looked at it).
#[test]
fn a_function_handle_formats_without_its_address() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let block = batch.install(&samples::RETURN_42, 16).unwrap();
    batch.seal().unwrap();
    // SAFETY: only formatted, never called.
    let function = unsafe { block.function::<extern "C" fn() -> u32>(0) }.expect("sealed code");
    assert_eq!(alloc::format!("{function:?}"), "Function { .. }");
}

#[test]
fn bad_requests_are_refused_without_touching_the_kernel() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    assert_eq!(batch.alloc(0, 16).unwrap_err(), ExecError::ZeroSize);
    assert_eq!(batch.alloc(16, 3).unwrap_err(), ExecError::BadAlignment { align: 3 });
    assert!(matches!(batch.alloc(usize::MAX - 4, 16), Err(ExecError::TooLarge { .. })));
    assert_eq!(batch.install_many([&[][..]].into_iter(), 16).unwrap_err(), ExecError::ZeroSize);
    assert_eq!(
        batch.alloc_module_image(&[(PAGE, MemoryKind::Code)], 0, 3 * PAGE).unwrap_err(),
        ExecError::BadAlignment { align: 3 * PAGE }
    );
    assert_eq!(K.calls(), 0);
}

#[test]
fn the_rwx_switch_patches_in_place() {
    static K: SimulatedKernel = SimulatedKernel::with_page_size(PAGE, true);
    let exec = ExecAllocator::with_kernel(ExecConfig { allow_rwx: true, ..config() }, &K);
    let mut batch = exec.batch();
    let block = batch.install(&samples::RETURN_42, 16).unwrap();
    assert_eq!(K.protection_at(block.addr()), Some(Protection::ReadWriteExec));
    batch.seal().unwrap();
    exec.patch(&block, 1, &[5]).unwrap();
    assert_eq!((bytes(block.addr() + 1, 1)[0], exec.stats().patches), (5, 0));
}

#[test]
fn the_simulation_refuses_writable_and_executable_pages() {
    static K: SimulatedKernel = SimulatedKernel::new();
    use super::kernel::Kernel;
    let page = K.map_anonymous(PAGE, Protection::ReadWrite).unwrap();
    // SAFETY: `page` is a mapping of ours that nothing references.
    let refused = unsafe { K.protect(page, PAGE, Protection::ReadWriteExec) };
    assert!(refused.is_err());
    // SAFETY: as above; it is not used afterwards.
    unsafe { K.unmap(page, PAGE) }.unwrap();
    assert_eq!(K.usage(), SimulatedUsage::default());
}

/// A module with code, read-only data, data and bss, a branch and a GOT load to an import out
/// of reach (a stub and a GOT slot), and absolute and PC-relative references.
fn module() -> Vec<u8> {
    let mut b = ModuleBuilder::new(Dialect::R96);
    let mut code = vec![0x90u8; 64];
    code[..6].copy_from_slice(&samples::RETURN_42);
    b.add_code(b".text", &code);
    let data = b.add_data(b".data", &7u64.to_le_bytes());
    let rodata = b.add_rodata(b".rodata", b"hello\0");
    b.add_bss(b".bss", 64);
    let answer = b.add_symbol(SymbolSpec::function(b"answer", 0, 6));
    let greeting = b.add_symbol(SymbolSpec::data(b"greeting", rodata, 0, 6));
    b.add_symbol(SymbolSpec::data(b"counter", data, 0, 8));
    let import = b.add_symbol(SymbolSpec::import(b"external_fn"));
    b.add_relocation(20, greeting, RelocKind::Pc32, -4);
    b.add_relocation(24, answer, RelocKind::Abs64, 0);
    b.add_relocation(36, import, RelocKind::Plt32, -4);
    b.add_relocation(40, import, RelocKind::GotPc32, -4);
    b.build().unwrap()
}

const IMPORTS: TableResolver<'static> = TableResolver(&[(b"external_fn", 0x1000)]);

fn options() -> LoadOptions {
    LoadOptions { require_arch: None, ..LoadOptions::default() }
}

#[test]
fn a_module_loads_relocates_and_seals_over_the_simulation() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let file = module();
    let loaded = LoadedModule::load(&exec, &file, &IMPORTS, &options()).unwrap();
    let answer = loaded.symbol(b"answer").unwrap();
    assert_eq!(bytes(answer, 6), samples::RETURN_42);
    assert_eq!(bytes(answer + 24, 8), (answer as u64).to_le_bytes(), "Abs64 relocated");
    let greeting = loaded.symbol(b"greeting").unwrap();
    assert_eq!(bytes(greeting, 6), b"hello\0");
    let pc32 = i32::from_le_bytes(bytes(answer + 20, 4).try_into().unwrap());
    let target = (answer as i64).wrapping_add(24).wrapping_add(i64::from(pc32)) as u64;
    assert_eq!(target, greeting as u64, "Pc32 relocated");
    assert_eq!(K.protection_at(answer), Some(Protection::ReadExec));
    let counter = loaded.symbol(b"counter").unwrap();
    assert_eq!(
        (bytes(counter, 8), K.protection_at(counter)),
        (7u64.to_le_bytes().to_vec(), Some(Protection::ReadWrite))
    );
    drop(loaded);
    assert_eq!(shape(exec.stats())[..4], [0; 4]);
}

/// Runs `op` failing each kernel call it makes in turn: every failure is an error or is
/// recovered from, leaves the allocator's pages and the kernel's mappings where they were
/// (after `trim`), and the allocator then runs `op` again successfully.
fn fail_each_call<T>(
    exec: &ExecAllocator,
    kernel: &SimulatedKernel,
    injector: &FaultInjector,
    op: &dyn Fn(&ExecAllocator) -> Result<T, ExecError>,
) {
    // Warm up (the first operation reserves a region that stays as the spare), then measure.
    drop(op(exec).unwrap());
    exec.trim().unwrap();
    let (base_shape, base_usage) = (shape(exec.stats()), kernel.usage());
    let before = injector.calls();
    drop(op(exec).unwrap());
    let calls = injector.calls() - before;
    exec.trim().unwrap();
    assert!(calls > 0, "the operation makes kernel calls");
    for k in 0..calls {
        let failed_before = injector.failures();
        injector.fail_call(k);
        let result = op(exec);
        injector.disarm();
        assert_eq!(injector.failures(), failed_before + 1, "call {k} of {calls} was failed");
        if let Err(e) = &result {
            assert!(matches!(e, ExecError::Sys(_)), "call {k}: a kernel error, not {e:?}");
        }
        drop(result);
        exec.trim().unwrap();
        assert_eq!(shape(exec.stats()), base_shape, "call {k} of {calls}: allocator pages");
        assert_eq!(kernel.usage(), base_usage, "call {k} of {calls}: kernel mappings");
        drop(op(exec).unwrap_or_else(|e| panic!("after call {k} failed, the allocator broke: {e}")));
        exec.trim().unwrap();
    }
}

#[test]
fn every_kernel_call_of_alloc_seal_and_free_can_fail_cleanly() {
    static K: SimulatedKernel = SimulatedKernel::new();
    static F: FaultInjector = FaultInjector::new(&K);
    let exec = ExecAllocator::with_kernel(config(), &F);
    let op = |exec: &ExecAllocator| -> Result<(), ExecError> {
        let mut batch = exec.batch();
        let image = batch.alloc_module_image(
            &[(2 * PAGE, MemoryKind::Code), (PAGE, MemoryKind::ReadOnly), (PAGE, MemoryKind::ReadWrite)],
            2 * PAGE,
            1,
        )?;
        let code = image[0].as_ref().ok_or(ExecError::ZeroSize)?;
        batch.write(code, 0, &vec![0xC3; 2 * PAGE])?;
        batch.seal()?;
        exec.free_all(image.into_iter().flatten())
    };
    fail_each_call(&exec, &K, &F, &op);
}

#[test]
fn every_kernel_call_of_a_patch_can_fail_cleanly() {
    static K: SimulatedKernel = SimulatedKernel::new();
    static F: FaultInjector = FaultInjector::new(&K);
    let exec = ExecAllocator::with_kernel(config(), &F);
    let op = |exec: &ExecAllocator| -> Result<(), ExecError> {
        let mut batch = exec.batch();
        let block = batch.install(&samples::RETURN_42, 16)?;
        batch.seal()?;
        let patched = exec.patch(&block, 1, &[9]);
        // A failed patch leaves the code as it was.
        let expected = if patched.is_ok() { 9 } else { 42 };
        assert_eq!(bytes(block.addr() + 1, 1)[0], expected);
        patched
    };
    fail_each_call(&exec, &K, &F, &op);
}

#[test]
fn every_kernel_call_of_a_module_load_can_fail_cleanly() {
    static K: SimulatedKernel = SimulatedKernel::new();
    static F: FaultInjector = FaultInjector::new(&K);
    let exec = ExecAllocator::with_kernel(config(), &F);
    let file = module();
    let op = |exec: &ExecAllocator| -> Result<Vec<u8>, ExecError> {
        match LoadedModule::load(exec, &file, &IMPORTS, &options()) {
            Ok(loaded) => Ok(bytes(loaded.symbol(b"answer").unwrap_or_default(), 6)),
            Err(crate::load::LoadError::Memory(e)) => Err(e),
            Err(e) => panic!("not a memory error: {e}"),
        }
    };
    fail_each_call(&exec, &K, &F, &op);
}

#[test]
fn every_kernel_call_of_a_batch_load_can_fail_cleanly() {
    static K: SimulatedKernel = SimulatedKernel::new();
    static F: FaultInjector = FaultInjector::new(&K);
    let exec = ExecAllocator::with_kernel(config(), &F);
    let file = module();
    let op = |exec: &ExecAllocator| -> Result<Vec<Vec<u8>>, ExecError> {
        let mut batch = LoadBatch::new(exec);
        let memory = |e| match e {
            crate::load::LoadError::Memory(e) => e,
            e => panic!("not a memory error: {e}"),
        };
        for _ in 0..3 {
            batch.add(&file, &IMPORTS, &options()).map_err(memory)?;
        }
        let modules = batch.seal().map_err(memory)?;
        Ok(modules.iter().map(|m| bytes(m.symbol(b"answer").unwrap_or_default(), 6)).collect())
    };
    fail_each_call(&exec, &K, &F, &op);
}

#[test]
fn a_batch_load_seals_its_modules_code_with_one_protection_change() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(ExecConfig { region_size: 64 * PAGE, ..config() }, &K);
    let file = module();
    let before = exec.stats().protection_changes;
    let one_by_one: Vec<_> =
        (0..4).map(|_| LoadedModule::load(&exec, &file, &IMPORTS, &options()).unwrap()).collect();
    let each = exec.stats().protection_changes - before;
    let mut batch = LoadBatch::new(&exec);
    for _ in 0..4 {
        batch.add(&file, &IMPORTS, &options()).unwrap();
    }
    let before = exec.stats().protection_changes;
    let together = batch.seal().unwrap();
    assert_eq!(exec.stats().protection_changes - before, 1, "one for the code of all four");
    assert_eq!(each, 4, "one each, loaded one by one");
    for module in one_by_one.iter().chain(&together) {
        let answer = module.symbol(b"answer").unwrap();
        assert_eq!(
            (bytes(answer, 6), K.protection_at(answer)),
            (samples::RETURN_42.to_vec(), Some(Protection::ReadExec))
        );
    }
    drop((one_by_one, together));
    assert_eq!(shape(exec.stats())[..4], [0; 4]);
}

#[test]
fn a_failed_seal_ends_the_batch_and_leaks_nothing() {
    static K: SimulatedKernel = SimulatedKernel::new();
    static F: FaultInjector = FaultInjector::new(&K);
    let exec = ExecAllocator::with_kernel(config(), &F);
    let mut batch = exec.batch();
    let block = batch.install(&samples::RETURN_42, 16).unwrap();
    F.fail_call(0); // the seal's mprotect
    assert!(matches!(batch.seal(), Err(ExecError::Sys(_))));
    assert_eq!(K.protection_at(block.addr()), Some(Protection::ReadWrite), "not sealed");
    assert!(!exec.lookup(block.addr(), 1).unwrap().is_executable());
    assert_eq!(exec.stats().pages_open, 1, "the block's page stays with it");
    let blocks: Vec<Block<'_>> = vec![block];
    exec.free_all(blocks).unwrap();
    // Released with the block, without waiting for `trim`.
    assert_eq!(shape(exec.stats())[..5], [0; 5]);
    assert_eq!(K.usage().executable_pages, 0);

    // Pages the batch opened ahead and never used go at once when its seal fails.
    let mut batch = exec.batch_of_many();
    let a = batch.alloc(2 * PAGE, PAGE).unwrap();
    let b = batch.alloc(16, 16).unwrap(); // in the pages opened ahead with the first
    assert_eq!(b.addr(), a.addr() + 2 * PAGE);
    assert!(exec.stats().pages_open > 3, "pages opened ahead: {}", exec.stats().pages_open);
    F.fail_call(0);
    assert!(matches!(batch.seal(), Err(ExecError::Sys(_))));
    assert_eq!(exec.stats().pages_open, 3, "the empty pages were released");
    exec.free_all([a, b]).unwrap();
    assert_eq!(shape(exec.stats())[..5], [0; 5]);

    // An image whose seal fails after its code run was sealed: nothing stays behind either.
    let mut batch = exec.batch();
    let image = batch.alloc_image(&[(PAGE, MemoryKind::Code), (PAGE, MemoryKind::ReadOnly)]).unwrap();
    F.fail_call(1); // the second protection change: the read-only page
    assert!(matches!(batch.seal(), Err(ExecError::Sys(_))));
    let code = image[0].as_ref().unwrap().addr();
    assert_eq!(K.protection_at(code), Some(Protection::ReadExec), "the code run was sealed");
    drop(image);
    let stats = exec.stats();
    assert_eq!((stats.blocks_live, stats.pages_open, stats.pages_sealed), (0, 0, 0));
    assert_eq!(K.usage().executable_pages, 1, "only the trap page stays executable");
}

#[test]
fn blocks_installed_together_leave_no_old_bytes_for_the_next_block() {
    // Found by review: the room made for blocks at a large alignment was marked as written
    // past the last block, so the next block of the batch got recycled bytes.
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let old_addr = recycled_code(&exec, 1);
    let mut b = exec.batch();
    let codes: [&[u8]; 2] = [&[0xC3; 16], &[0xC3; 20]];
    let blocks = b.install_many(codes.into_iter(), 64).unwrap();
    assert_eq!(blocks[0].addr(), old_addr, "in the recycled page");
    let next = b.alloc(64, 16).unwrap();
    assert!(bytes(next.addr(), 64).iter().all(|&byte| byte == 0), "a new block is zero");
}

#[test]
fn an_open_page_whose_release_failed_is_booked_with_the_protection_it_has() {
    // Found by review: booked sealed with its kind's protection, an open data page of the RWX
    // mode (really read-write-execute) was later freed as if read-write: a free page stayed
    // executable.
    static K: SimulatedKernel = SimulatedKernel::with_page_size(PAGE, true);
    static F: FaultInjector = FaultInjector::new(&K);
    let config = ExecConfig { allow_rwx: true, ..config() };
    let exec = ExecAllocator::with_kernel(config, &F);
    let mut batch = exec.batch();
    let mut image = batch.alloc_image(&[(PAGE, MemoryKind::Code), (PAGE, MemoryKind::ReadWrite)]).unwrap();
    assert_eq!(exec.stats().protection_changes, 2, "RWX mode opens the code's and the data's pages");
    let data = image.remove(1).unwrap();
    let data_addr = data.addr();
    assert_eq!(K.protection_at(data_addr), Some(Protection::ReadWriteExec), "open pages in RWX mode");
    F.fail_call(0); // the release of the freed data page
    drop(data);
    assert_eq!(K.protection_at(data_addr), Some(Protection::ReadWriteExec));
    F.disarm();
    drop(image);
    // The seal releases the pages its batch left empty, the stranded one among them.
    batch.seal().unwrap();
    assert_eq!(K.protection_at(data_addr), Some(Protection::ReadWrite), "free again, not executable");
    assert_eq!(K.usage().executable_pages, 0);
    exec.trim().unwrap();
    assert_eq!(shape(exec.stats())[..5], [0; 5]);
}
