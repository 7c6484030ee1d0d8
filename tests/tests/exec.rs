//! The W^X executable allocator from Rust: both call paths of installing code, thousands of
//! small blocks and the mappings they cost, patching, reuse, bad arguments, threads. After
//! every step no mapping of the process may be writable and executable.

// Casts here are of test values known to be small.
#![allow(clippy::cast_possible_truncation)]
// Reading and running installed machine code needs raw pointers.
#![allow(unsafe_code)]

use smf_runtime::exec::{Block, ExecAllocator, ExecConfig, ExecError};
use smf_runtime::sys::Protection;
use smf_tests::{assert_no_rwx, call, mappings_within, return_const, return_const_patch};

#[test]
fn a_sealed_block_runs_and_is_never_writable_and_executable() {
    let exec = ExecAllocator::default();
    let mut batch = exec.batch();
    let block = batch.alloc(64, 16).unwrap();
    assert_eq!(block.addr() % 16, 0);
    assert_eq!(block.size(), 64);
    assert_eq!(exec.protection_at(block.addr()), Some(Protection::ReadWrite));
    // Fresh blocks are zeroed.
    // SAFETY: the block is 64 readable bytes of ours.
    let zeroed = unsafe { std::slice::from_raw_parts(block.as_ptr(), 64) }.iter().all(|&b| b == 0);
    assert!(zeroed);
    batch.write(&block, 0, &return_const(42)).unwrap();
    assert_no_rwx("written");
    batch.seal().unwrap();
    assert_eq!(exec.protection_at(block.addr()), Some(Protection::ReadExec));
    assert!(exec.lookup(block.addr(), 1).unwrap().sealed);
    assert_no_rwx("sealed");
    assert_eq!(call(&block), 42);
    let addr = block.addr();
    drop(block);
    assert_eq!(exec.lookup(addr, 1), None);
    assert_eq!(exec.stats().blocks_live, 0);
}

#[test]
fn thousands_of_small_blocks_share_pages_and_cost_few_mappings() {
    let exec = ExecAllocator::default();
    let mut batch = exec.batch();
    let blocks: Vec<_> = (0..5000u16).map(|i| batch.install(&return_const(i), 16).unwrap()).collect();
    let changes_before_seal = exec.stats().protection_changes;
    batch.seal().unwrap();
    let stats = exec.stats();
    // One mprotect seals the batch; at most one more releases pages opened ahead but unused.
    assert!(stats.protection_changes - changes_before_seal <= 2, "{stats:?}");
    assert_eq!(stats.blocks_live, 5000);
    assert_eq!(stats.bytes_live, 5000 * 16);
    let page = exec.page_size();
    assert!(stats.pages_sealed <= (5000 * 16) / page + 1, "{stats:?}");
    // Kernel view: the sealed pages, then the rest of the reservation.
    let kernel = mappings_within(&exec.regions());
    assert!(kernel <= 3, "{kernel} mappings for 5000 blocks");
    assert_no_rwx("5000 blocks sealed");
    for (i, block) in blocks.iter().enumerate() {
        assert_eq!(call(block), i as i64);
    }
    exec.free_all(blocks).unwrap();
    let stats = exec.stats();
    assert_eq!((stats.blocks_live, stats.pages_sealed, stats.pages_open), (0, 0, 0));
    assert!(mappings_within(&exec.regions()) <= 1, "freed pages are discarded and merge back");
}

#[test]
fn a_thousand_small_modules_do_not_cost_a_thousand_mappings() {
    let exec = ExecAllocator::default();
    let mut all = Vec::new();
    for m in 0..1000u16 {
        let mut batch = exec.batch();
        for f in 0..3 {
            all.push((batch.install(&return_const(m * 3 + f), 16).unwrap(), m * 3 + f));
        }
        batch.seal().unwrap();
    }
    let kernel = mappings_within(&exec.regions());
    assert!(kernel <= 4, "1000 sealed batches occupy {kernel} kernel mappings");
    assert!(exec.stats().pages_sealed <= 1000);
    assert_no_rwx("1000 modules");
    for (block, value) in &all {
        assert_eq!(call(block), i64::from(*value));
    }
}

#[test]
fn patching_a_sealed_block_keeps_its_neighbours_running() {
    let exec = ExecAllocator::default();
    let mut batch = exec.batch();
    let a = batch.install(&return_const(1), 16).unwrap();
    let b = batch.install(&return_const(2), 16).unwrap();
    batch.seal().unwrap();
    let page = exec.page_size();
    assert_eq!(a.addr() / page, b.addr() / page, "both blocks share a page");
    let (offset, bytes) = return_const_patch(7);
    let changes = exec.stats().protection_changes;
    exec.patch(&a, offset, &bytes).unwrap();
    assert_no_rwx("patched");
    assert_eq!((call(&a), call(&b)), (7, 2));
    let stats = exec.stats();
    assert_eq!(stats.patches, 1);
    assert!(stats.protection_changes > changes);
    assert_eq!(exec.protection_at(a.addr()), Some(Protection::ReadExec));
    // A patch may not leave its block.
    assert!(matches!(exec.patch(&a, a.size() - 1, &[0, 0]), Err(ExecError::NotOwned { .. })));
    // Nor reach a block still open in its batch: that is written through the batch.
    let mut open = exec.batch();
    let c = open.install(&return_const(3), 16).unwrap();
    assert_eq!(exec.patch(&c, 0, &[0xC3]), Err(ExecError::NotSealed { addr: c.addr() }));
}

#[test]
fn freed_pages_and_regions_are_reused() {
    let exec = ExecAllocator::new(ExecConfig { region_size: 64 << 10, ..ExecConfig::default() });
    for round in 0..50 {
        let mut batch = exec.batch();
        let blocks: Vec<_> = (0..100).map(|_| batch.install(&return_const(round), 16).unwrap()).collect();
        batch.seal().unwrap();
        exec.free_all(blocks).unwrap();
        let stats = exec.stats();
        assert!(stats.regions <= 1, "round {round}: {stats:?}");
        assert_eq!(stats.pages_sealed + stats.pages_open, 0);
    }
    // A block larger than a region gets a region of its own, unmapped when freed.
    let mut batch = exec.batch();
    let big = batch.alloc(1 << 20, 4096).unwrap();
    assert_eq!(big.addr() % 4096, 0);
    batch.seal().unwrap();
    assert_eq!(exec.stats().regions, 2);
    drop(big);
    assert_eq!(exec.stats().regions, 1, "one spare region is kept, the other unmapped");
}

#[test]
fn an_unsealed_batch_dropped_leaves_its_blocks_to_their_owners() {
    let exec = ExecAllocator::default();
    let kept = {
        let mut batch = exec.batch();
        drop(batch.alloc(100, 16).unwrap());
        let kept = batch.alloc(5000, 64).unwrap();
        batch.write(&kept, 0, &[7; 5000]).unwrap();
        kept
    };
    // The batch ended: the block it handed out is still its owner's, whole and writable.
    let stats = exec.stats();
    assert_eq!((stats.blocks_live, stats.pages_sealed), (1, 0));
    assert_eq!(exec.protection_at(kept.addr()), Some(Protection::ReadWrite));
    // SAFETY: the block is live (we own it) and 5000 readable bytes.
    assert!(unsafe { std::slice::from_raw_parts(kept.as_ptr(), 5000) }.iter().all(|&b| b == 7));
    drop(kept);
    let stats = exec.stats();
    assert_eq!((stats.blocks_live, stats.pages_open, stats.pages_sealed), (0, 0, 0));
}

#[test]
fn a_freed_blocks_address_reused_by_another_block_belongs_to_that_block_alone() {
    // Ownership is a type: freeing A consumes it, so nothing can free A "again" once B has
    // taken its place (before, any holder of A's address could free B's code).
    let exec = ExecAllocator::new(ExecConfig { region_size: 64 << 10, ..ExecConfig::default() });
    let mut batch = exec.batch();
    let a = batch.install(&return_const(1), 16).unwrap();
    batch.seal().unwrap();
    let addr = a.addr();
    drop(a);
    let b = loop {
        let mut batch = exec.batch();
        let b = batch.install(&return_const(2), 16).unwrap();
        batch.seal().unwrap();
        if b.addr() == addr {
            break b;
        }
    };
    assert_eq!(exec.stats().blocks_live, 1);
    assert_eq!(call(&b), 2);
    // Blocks of another allocator are not this one's to free.
    let other = ExecAllocator::default();
    let mut foreign = other.batch();
    let f = foreign.install(&return_const(3), 16).unwrap();
    foreign.seal().unwrap();
    exec.free_all([f]).unwrap();
    assert_eq!((exec.stats().blocks_live, other.stats().blocks_live), (1, 0), "freed by its own");
    assert!(matches!(exec.patch(&b, 64, &[0]), Err(ExecError::NotOwned { .. })));
}

#[test]
fn bad_requests_are_refused() {
    let exec = ExecAllocator::default();
    let page = exec.page_size();
    let mut batch = exec.batch();
    assert_eq!(batch.alloc(0, 16).unwrap_err(), ExecError::ZeroSize);
    assert_eq!(batch.alloc(16, 3).unwrap_err(), ExecError::BadAlignment { align: 3 });
    assert_eq!(batch.alloc(16, page * 2).unwrap_err(), ExecError::BadAlignment { align: page * 2 });
    assert!(matches!(batch.alloc(usize::MAX - 4, 16), Err(ExecError::TooLarge { .. })));
    let block = batch.alloc(32, page).unwrap();
    assert_eq!(block.addr() % page, 0);
    assert!(matches!(batch.write(&block, 30, &[0; 4]), Err(ExecError::NotOwned { .. })));
    assert!(matches!(batch.write(&block, usize::MAX, &[0; 4]), Err(ExecError::NotOwned { .. })));
    assert_eq!(exec.lookup(usize::MAX - 1, 8), None);
    // A block of another batch is not this batch's to write.
    let mut other = exec.batch();
    assert!(matches!(other.write(&block, 0, &[0]), Err(ExecError::NotOwned { .. })));
    assert!(matches!(other.block_mut(&block), Err(ExecError::NotOwned { .. })));
    batch.seal().unwrap();
    assert!(matches!(other.write(&block, 0, &[0]), Err(ExecError::NotOwned { .. })), "nor once sealed");
}

#[test]
fn four_threads_allocate_seal_call_and_free_concurrently() {
    let exec = ExecAllocator::default();
    std::thread::scope(|scope| {
        for t in 0..4u16 {
            let exec = &exec;
            scope.spawn(move || {
                for round in 0..200u16 {
                    let value = t * 1000 + round;
                    let mut batch = exec.batch();
                    let blocks: Vec<_> =
                        (0..4).map(|k| batch.install(&return_const(value + k), 16).unwrap()).collect();
                    batch.seal().unwrap();
                    for (k, block) in blocks.iter().enumerate() {
                        assert_eq!(call(block), i64::from(value) + k as i64);
                    }
                    if round % 50 == 0 {
                        assert_no_rwx("threads");
                    }
                    exec.free_all(blocks).unwrap();
                }
            });
        }
    });
    let stats = exec.stats();
    assert_eq!((stats.blocks_live, stats.bytes_live), (0, 0));
}

#[test]
fn the_mapping_estimate_follows_protections() {
    // It counts the process's mappings: alone, so no other test maps beside it.
    if !smf_tests::alone("the_mapping_estimate_follows_protections") {
        return;
    }
    use smf_runtime::exec::MemoryKind;
    let exec = ExecAllocator::default();
    // A sealed read-write data segment next to free (read-write) pages is one kernel mapping.
    let mut batch = exec.batch();
    let _data = batch.alloc_image(&[(4096, MemoryKind::ReadWrite)]).unwrap();
    batch.seal().unwrap();
    assert_eq!(exec.stats().mappings, 1);
    assert_eq!(mappings_within(&exec.regions()), 1);
    // Code then read-only data: three runs (RX, R, the free rest).
    let mut batch = exec.batch();
    let _image = batch.alloc_image(&[(4096, MemoryKind::Code), (4096, MemoryKind::ReadOnly)]).unwrap();
    batch.seal().unwrap();
    // The kernel may merge more than the estimate assumes (qemu-user's emulated maps do), never
    // less: the estimate is an upper bound.
    let (estimate, kernel) = (exec.stats().mappings, mappings_within(&exec.regions()));
    assert!(kernel <= estimate, "kernel {kernel}, estimate {estimate}");
    assert!((3..=4).contains(&estimate), "{estimate}");
}

#[test]
fn module_images_start_each_segment_at_the_asked_alignment() {
    use smf_runtime::exec::{ExecError, MemoryKind};
    let exec = ExecAllocator::default();
    let page = exec.page_size();
    let align = 16 * page;
    let segments =
        [(page + 1, MemoryKind::Code), (10, MemoryKind::ReadOnly), (3 * page, MemoryKind::ReadWrite)];
    // Sealed blocks stay live (kept here), so each round finds the earlier ones in use.
    let mut kept = Vec::new();
    for round in 0..5 {
        // A one-page image in between leaves the next free page unaligned.
        let mut filler = exec.batch();
        kept.push(filler.alloc_image(&[(page, MemoryKind::ReadWrite)]).unwrap());
        filler.seal().unwrap();
        let mut batch = exec.batch();
        let blocks = batch.alloc_module_image(&segments, 0, align).unwrap();
        for block in blocks.iter().flatten() {
            assert_eq!(block.addr() % align, 0, "round {round}: {block:?}");
            assert_eq!(block.size() % align, 0, "segments are rounded to the alignment: {block:?}");
        }
        let (code, read_only, data) =
            (blocks[0].as_ref().unwrap(), blocks[1].as_ref().unwrap(), blocks[2].as_ref().unwrap());
        assert_eq!(data.addr(), read_only.addr() + align, "data segments stay back to back");
        assert!(read_only.addr() >= code.addr() + code.size(), "data lies above the code");
        let region = exec.regions().into_iter().find(|r| r.contains(&code.addr())).unwrap();
        assert!(region.contains(&(data.addr() + data.size() - 1)), "in the code's region");
        batch.seal().unwrap();
        kept.push(blocks);
    }
    let mut batch = exec.batch();
    assert_eq!(
        batch.alloc_module_image(&segments, 0, 3 * page).unwrap_err(),
        ExecError::BadAlignment { align: 3 * page }
    );
    assert_eq!(
        batch.alloc_module_image(&segments, 0, 2 << 20).unwrap_err(),
        ExecError::BadAlignment { align: 2 << 20 }
    );
    let aligned = batch.alloc_module_image(&segments, 0, 1 << 20).unwrap();
    assert_eq!(aligned[0].as_ref().unwrap().addr() % (1 << 20), 0, "up to 1 MiB is honoured");
}

#[test]
fn recycled_pages_are_zeroed_except_the_bytes_the_caller_overwrites() {
    use smf_runtime::exec::MemoryKind;
    let exec = ExecAllocator::default();
    let page = exec.page_size();
    // Two pages full of old bytes, freed: they stay committed and are recycled.
    let mut batch = exec.batch();
    let old = batch.alloc_image(&[(2 * page, MemoryKind::Code)]).unwrap().remove(0).unwrap();
    batch.write(&old, 0, &vec![0xAA; 2 * page]).unwrap();
    batch.seal().unwrap();
    let old_addr = old.addr();
    drop(old);
    // The next image's caller overwrites its first page and 100 bytes of the second.
    let mut batch = exec.batch();
    let again =
        batch.alloc_module_image(&[(2 * page, MemoryKind::Code)], page + 100, 1).unwrap().remove(0).unwrap();
    assert_eq!(again.addr(), old_addr, "the recycled pages are the ones reused");
    let bytes = batch.block_mut(&again).unwrap().to_vec();
    assert!(bytes[page + 100..].iter().all(|&b| b == 0), "past what the caller overwrites, all zero");
    assert_eq!(bytes[page], 0xAA, "what the caller overwrites is left to it");
}

/// What a trap page holds: `int3` on x86-64, `udf #0` (a zero word) on aarch64.
const TRAP_BYTE: u8 = if cfg!(target_arch = "x86_64") { 0xCC } else { 0 };

/// Allocates and seals a module-like image: two pages of code returning `value`, one page of
/// data. Returns the blocks (code, data).
fn code_image(exec: &ExecAllocator, value: u16) -> (Block<'_>, Block<'_>) {
    use smf_runtime::exec::MemoryKind;
    let page = exec.page_size();
    let mut batch = exec.batch();
    let mut blocks = batch
        .alloc_image(&[(2 * page, MemoryKind::Code), (page, MemoryKind::ReadWrite)])
        .unwrap()
        .into_iter();
    let (code, data) = (blocks.next().unwrap().unwrap(), blocks.next().unwrap().unwrap());
    batch.write(&code, 0, &return_const(value)).unwrap();
    batch.seal().unwrap();
    (code, data)
}

#[test]
fn freed_code_leaves_a_trap_page_that_the_next_image_seals_beside() {
    // It counts the process's mappings: alone, so no other test maps beside it.
    if !smf_tests::alone("freed_code_leaves_a_trap_page_that_the_next_image_seals_beside") {
        return;
    }
    use smf_runtime::exec::MemoryKind;
    let exec = ExecAllocator::default();
    let page = exec.page_size();
    // A data image first, so the code does not start the region.
    let mut filler = exec.batch();
    let _filler = filler.alloc_image(&[(page, MemoryKind::ReadWrite)]).unwrap();
    filler.seal().unwrap();

    let (code_block, data) = code_image(&exec, 7);
    let code = code_block.addr();
    let trap = code - page;
    assert_eq!(exec.stats().trap_pages, 1);
    // SAFETY: the trap page is sealed read-execute, hence readable, and ours.
    let fill = unsafe { std::slice::from_raw_parts(trap as *const u8, page) };
    assert!(fill.iter().all(|&b| b == TRAP_BYTE), "the page before the code faults when run");
    let (mapping, perms) = smf_tests::mapping_at(trap).unwrap();
    assert_eq!(perms, "r-xp");
    assert!(mapping.contains(&code), "the trap page and the code are one mapping");
    assert_eq!(call(&code_block), 7);
    assert_no_rwx("trap page");

    let live = mappings_within(&exec.regions());
    exec.free_all([code_block, data]).unwrap();
    let stats = exec.stats();
    assert_eq!((stats.blocks_live, stats.pages_sealed, stats.trap_pages), (1, 1, 1), "the filler stays");
    let (mapping, perms) = smf_tests::mapping_at(trap).unwrap();
    assert_eq!((mapping.end, perms.as_str()), (code, "r-xp"), "only the trap page stays executable");
    assert_eq!(smf_tests::mapping_at(code).unwrap().1, "rw-p", "freed code is not executable");
    // Freeing moved the boundary between two mappings: none was split or merged.
    assert_eq!(mappings_within(&exec.regions()), live);

    let (again, _data) = code_image(&exec, 9);
    assert_eq!(again.addr(), code, "the next image goes right after the trap page");
    assert_eq!(mappings_within(&exec.regions()), live, "and seals by moving the boundary back");
    assert_eq!(exec.stats().trap_pages, 1);
    assert_eq!(call(&again), 9);
}

#[test]
fn images_loaded_one_after_another_share_two_mappings() {
    // Code follows earlier sealed code from the bottom of a region and data fills it from the
    // top, so that 100 images leave one mapping of code (behind one trap page) and one of
    // free pages and data, rather than two per image.
    let exec = ExecAllocator::default();
    let page = exec.page_size();
    let images: Vec<(Block<'_>, Block<'_>)> = (0..100).map(|i| code_image(&exec, i)).collect();
    assert_eq!((exec.stats().trap_pages, exec.stats().regions), (1, 1));
    for pair in images.windows(2) {
        assert_eq!(pair[1].0.addr(), pair[0].0.addr() + 2 * page, "code after code");
        assert_eq!(pair[1].1.addr(), pair[0].1.addr() - page, "data below data");
    }
    assert!(images[99].0.addr() < images[99].1.addr());
    // The kernel may merge with neighbouring mappings, never split more.
    assert!(mappings_within(&exec.regions()) <= 2, "{}", mappings_within(&exec.regions()));
    assert!(exec.stats().mappings <= 2, "the estimate agrees: {}", exec.stats().mappings);
    for (i, (code, _)) in images.iter().enumerate() {
        assert_eq!(call(code), i as i64);
    }
    assert_no_rwx("one after another");
    // Every other image freed: the rest still run, and the code after a freed one needs no
    // trap page of its own.
    let (kept, freed): (Vec<_>, Vec<_>) = images.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    exec.free_all(freed.into_iter().flat_map(|(_, (code, data))| [code, data])).unwrap();
    for (i, (code, _)) in &kept {
        assert_eq!(call(code), *i as i64);
    }
    assert_eq!(exec.stats().trap_pages, 1);
    assert_no_rwx("every other freed");
}

#[test]
fn an_abandoned_image_takes_its_new_trap_page_with_it() {
    // It counts the process's mappings: alone, so no other test maps beside it.
    if !smf_tests::alone("an_abandoned_image_takes_its_new_trap_page_with_it") {
        return;
    }
    use smf_runtime::exec::MemoryKind;
    let exec = ExecAllocator::default();
    let page = exec.page_size();
    let mut batch = exec.batch();
    drop(batch.alloc_image(&[(page, MemoryKind::Code)]).unwrap());
    drop(batch);
    let stats = exec.stats();
    assert_eq!((stats.blocks_live, stats.pages_open, stats.pages_sealed, stats.trap_pages), (0, 0, 0, 0));
    assert_eq!(mappings_within(&exec.regions()), 1, "the region is one read-write mapping again");

    // An image abandoned after an existing trap page leaves that page as it was.
    let (code, data) = code_image(&exec, 1);
    let code_addr = code.addr();
    exec.free_all([code, data]).unwrap();
    let before = mappings_within(&exec.regions());
    let mut batch = exec.batch();
    let image = batch.alloc_image(&[(page, MemoryKind::Code)]).unwrap();
    assert_eq!(image[0].as_ref().unwrap().addr(), code_addr);
    drop(batch);
    drop(image);
    assert_eq!(exec.stats().trap_pages, 1);
    assert_eq!(mappings_within(&exec.regions()), before);
    assert_no_rwx("abandoned");
}

#[test]
fn idle_trap_pages_are_reclaimed_before_a_new_region_is_reserved() {
    use smf_runtime::exec::MemoryKind;
    let page = ExecAllocator::default().page_size();
    let exec = ExecAllocator::new(ExecConfig { region_size: 8 * page, ..ExecConfig::default() });
    // A 3-page code image behind its trap page at the region's start, freed: the trap page
    // stays, guarding nothing.
    let mut batch = exec.batch();
    let code = batch.alloc_image(&[(3 * page, MemoryKind::Code)]).unwrap().remove(0).unwrap();
    batch.seal().unwrap();
    let base = exec.regions()[0].start;
    assert_eq!(code.addr(), base + page);
    drop(code);
    assert_eq!(exec.stats().trap_pages, 1);
    // Seven pages of code go right after it (it guards them again).
    let mut batch = exec.batch();
    let big = batch.alloc_image(&[(7 * page, MemoryKind::Code)]).unwrap().remove(0).unwrap();
    batch.seal().unwrap();
    assert_eq!((big.addr(), exec.stats().regions, exec.stats().trap_pages), (base + page, 1, 1));
    drop(big);
    // Eight pages of data need the whole region: only the idle trap page stands in the way.
    let mut batch = exec.batch();
    let data = batch.alloc_image(&[(8 * page, MemoryKind::ReadWrite)]).unwrap().remove(0).unwrap();
    batch.seal().unwrap();
    assert_eq!((data.addr(), exec.stats().regions), (base, 1));
    assert_eq!(exec.stats().trap_pages, 0);
    assert_no_rwx("reclaimed");
}

#[test]
fn trim_gives_back_trap_pages_and_recycled_pages() {
    // It counts the process's mappings: alone, so no other test maps beside it.
    if !smf_tests::alone("trim_gives_back_trap_pages_and_recycled_pages") {
        return;
    }
    let exec = ExecAllocator::default();
    let (code, data) = code_image(&exec, 3);
    exec.free_all([code, data]).unwrap();
    assert_eq!((exec.stats().trap_pages, mappings_within(&exec.regions())), (1, 2));
    exec.trim().unwrap();
    assert_eq!((exec.stats().trap_pages, mappings_within(&exec.regions())), (0, 1));
    // The freed pages were discarded: the next image starts from zeroed pages again.
    let (again, _data) = code_image(&exec, 4);
    assert_eq!(call(&again), 4);
}

// x86-64 only: qemu-user, which runs the aarch64 tests, shows its host's pagemap and may
// ignore MADV_POPULATE_WRITE.
#[cfg(target_arch = "x86_64")]
#[test]
fn the_pages_an_image_is_written_through_are_faulted_in_ahead_and_its_bss_is_not() {
    use smf_runtime::exec::MemoryKind;
    use smf_tests::resident;
    let exec = ExecAllocator::default();
    let page = exec.page_size();
    let mut batch = exec.batch();
    let segments = [(3 * page, MemoryKind::Code), (16 * page, MemoryKind::ReadWrite)];
    let blocks = batch.alloc_module_image(&segments, 3 * page, 1).unwrap();
    let (code, bss) = (blocks[0].as_ref().unwrap().addr(), blocks[1].as_ref().unwrap().addr());
    for at in (code - page..code + 3 * page).step_by(page) {
        assert!(resident(at, page), "trap and code page {:#x} are faulted in", at - code);
    }
    assert!((bss..bss + 16 * page).step_by(page).all(|at| !resident(at, page)), "bss stays lazy");
}

#[test]
fn a_code_arena_knows_its_code_and_gives_pieces_larger_than_a_region_one_of_their_own() {
    use smf_runtime::exec::{CodeArena, Kernel, GRANULE, LINUX};
    let page = LINUX.page_size();
    let arena = CodeArena::new(&LINUX, page);
    let first = arena.install(&return_const(1)).unwrap();
    assert!(arena.contains(first, GRANULE) && arena.contains(first, page), "its region, a page");
    assert!(!arena.contains(first, page + 1), "past its region");
    assert!(!arena.contains(first - 1, 1) && !arena.contains(first - 1, 2), "before its region");
    assert_eq!(
        format!("{arena:?}"),
        format!("CodeArena {{ region_size: {page}, installed: {}, .. }}", return_const(1).len())
    );
    // A piece larger than a region gets one of its own; the region being filled stays.
    arena.install(&vec![0; page + 1]).unwrap();
    assert_eq!(arena.stats().regions, 2);
    assert_eq!(
        arena.install(&return_const(2)).unwrap(),
        first + return_const(1).len().next_multiple_of(GRANULE),
        "the first region still fills"
    );
    // A piece of exactly a region fills a new one, which the next install finds full.
    arena.install(&vec![0; page]).unwrap();
    assert_eq!(arena.stats().regions, 3);
    arena.install(&return_const(3)).unwrap();
    assert_eq!(arena.stats().regions, 4);
}

#[test]
#[allow(unsafe_code)]
fn a_forked_child_never_writes_into_code_its_parent_runs() {
    // It forks: alone, so that the child has no other test's threads to inherit.
    if !smf_tests::alone("a_forked_child_never_writes_into_code_its_parent_runs") {
        return;
    }
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    use smf_runtime::exec::{function_pointer, CodeArena, LINUX};
    extern "C" {
        fn fork() -> i32;
        fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
        fn _exit(status: i32) -> !;
    }
    let run = |address: usize| {
        // SAFETY: every piece installed here is `return_const`: no arguments, an integer back.
        unsafe { function_pointer::<extern "C" fn() -> i64>(address) }.unwrap()()
    };
    let arena = CodeArena::new(&LINUX, 1 << 16);
    let first = arena.install(&return_const(1)).unwrap();
    let (mut to_child, mut in_child) = UnixStream::pair().unwrap();
    // SAFETY: the child (this test runs alone) installs into the arena it inherited, calls
    // what it installed and leaves through _exit, running nothing of the parent's.
    let child = unsafe { fork() };
    if child == 0 {
        let mut go = [0u8];
        in_child.read_exact(&mut go).unwrap();
        let own = arena.install(&return_const(2)).unwrap();
        let code = if run(own) == 2 && run(first) == 1 { 0 } else { 1 };
        // SAFETY: ends the child at once.
        unsafe { _exit(code) };
    }
    // The parent installs after the fork, where a child sharing its cursor would write next.
    let second = arena.install(&return_const(3)).unwrap();
    to_child.write_all(b"g").unwrap();
    let mut status = -1;
    // SAFETY: our child, and a status to write.
    assert_eq!(unsafe { waitpid(child, &mut status, 0) }, child);
    assert_eq!(status, 0, "the child's code ran as installed");
    assert_eq!((run(first), run(second)), (1, 3), "the parent's code is its own after the child installed");
    let third = arena.install(&return_const(4)).unwrap();
    assert_eq!((run(second), run(third)), (3, 4));
    assert_no_rwx("after a child installed");
}

/// Code mapped from a file ([`smf_runtime::exec::CodeBatch::map_file`]) runs from the file's
/// pages: once sealed the process maps the file read-execute (never writable and executable),
/// and once the block is freed nothing of the file stays mapped.
#[test]
fn code_mapped_from_a_file_runs_from_its_pages_and_is_unmapped_once_freed() {
    let page = smf_runtime::sys::page_size();
    let path =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("mapped-{}.bin", std::process::id()));
    // Page 0 traps; page 1 returns 7.
    let mut content = vec![0xCC; 2 * page];
    content[page..page + return_const(7).len()].copy_from_slice(&return_const(7));
    std::fs::write(&path, &content).unwrap();
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let file = smf_runtime::sys::OpenFile::open_nonblocking(&c_path).unwrap();
    let file_lines = || {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let name = path.to_string_lossy().into_owned();
        maps.lines().filter(|l| l.ends_with(name.as_str())).map(str::to_owned).collect::<Vec<_>>()
    };
    let exec = ExecAllocator::default();
    let mut batch = exec.batch();
    let block = batch.alloc(2 * page, page).unwrap();
    batch.map_file(&block, 0, page, &file, page as u64).unwrap();
    batch.write(&block, page, &return_const(9)).unwrap();
    assert_eq!(file_lines().len(), 1, "{:?}", file_lines());
    assert!(file_lines()[0].split_whitespace().nth(1) == Some("rw-p"), "open: {:?}", file_lines());
    batch.seal().unwrap();
    assert_no_rwx("mapped from a file and sealed");
    assert!(file_lines()[0].split_whitespace().nth(1) == Some("r-xp"), "sealed: {:?}", file_lines());
    assert_eq!(call(&block), 7, "the file's code runs");
    drop(block);
    assert_eq!(file_lines(), Vec::<String>::new(), "nothing of the file stays mapped");
    std::fs::remove_file(&path).unwrap();
}
