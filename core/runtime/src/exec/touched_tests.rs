//! Pages a batch opens but may not use: the clean pages a batch of many opens ahead of its
//! blocks, and the pages between blocks that an alignment skips. Those never written go back
//! clean at the seal, with no syscall, and are not kept as dirty; only the pages a caller
//! writes are committed, with one call for several. Recycled pages are zeroed, and nothing
//! between them.

use alloc::vec;
use alloc::vec::Vec;

use super::fake::SimulatedKernel;
use super::tests::{bytes, config, PAGE};
use super::{Block, ExecAllocator, MemoryKind};

#[test]
fn pages_opened_ahead_and_never_used_go_back_clean() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut single = exec.batch();
    let alone = single.alloc(64, 16).unwrap();
    assert_eq!(exec.stats().pages_open, 1, "a batch for one block opens no page ahead");
    single.seal().unwrap();
    drop(alone);
    let mut batch = exec.batch_of_many();
    let block = batch.alloc(64, 16).unwrap();
    assert!(exec.stats().pages_open > 1, "a new run opens clean pages ahead for the batch");
    batch.seal().unwrap();
    assert_eq!((exec.stats().pages_open, exec.stats().pages_sealed), (0, 1));
    // Never committed, they went back with no syscall and are not kept as dirty pages: `trim`
    // has nothing to discard.
    let before = exec.stats().protection_changes;
    exec.trim().unwrap();
    assert_eq!(exec.stats().protection_changes, before);
    // Freed after use, a page is dirty: `trim` discards it.
    drop(block);
    let freed = exec.stats().protection_changes;
    exec.trim().unwrap();
    assert_eq!(exec.stats().protection_changes, freed + 1);
}

#[test]
fn only_the_pages_the_caller_writes_are_touched_and_committed_ahead() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    // Exactly one page of code: the pages opened ahead after it are never touched.
    let mut batch = exec.batch_of_many();
    let one = batch.install(&vec![0xC3; PAGE], 16).unwrap();
    assert!(exec.stats().pages_open > 1, "pages opened ahead");
    batch.seal().unwrap();
    let before = exec.stats().protection_changes;
    exec.trim().unwrap();
    assert_eq!(
        exec.stats().protection_changes,
        before,
        "the pages ahead went back clean: nothing to discard"
    );
    // Three pages the caller writes, on fresh pages: faulted in with one call, not one fault each.
    let calls = K.calls();
    let mut batch = exec.batch();
    let three = batch.install(&vec![0xC3; 3 * PAGE], 16).unwrap();
    assert_eq!(K.calls() - calls, 1, "one populate for the three pages");
    assert_eq!(K.last_populate(), Some((three.addr(), 3 * PAGE)), "exactly the three pages");
    batch.seal().unwrap();
    // A run grown for three pages more: from the first page it opens to the block's last.
    let mut batch = exec.batch();
    let small = batch.install(&[0xC3; 64], 16).unwrap();
    let grown = batch.install(&vec![0xC3; 3 * PAGE], 16).unwrap();
    assert_eq!(grown.addr(), small.addr() + 64, "placed in the same run");
    assert_eq!(K.last_populate(), Some((small.addr() + PAGE, 3 * PAGE)));
    batch.seal().unwrap();
    drop((one, three, small, grown));
}

#[test]
fn pages_an_alignment_skips_are_neither_touched_nor_committed() {
    // Where the run lies against the alignment depends on where the simulation's memory lies:
    // its mappings aligned to the alignment, the region starts on it, and the first run, at its
    // start, can grow to the next multiple (a run near the region's end could not, and a new run
    // elsewhere would skip nothing).
    static K: SimulatedKernel = SimulatedKernel::with_aligned_mappings(8 * PAGE);
    assert!(alignment_skips_pages_clean(&K), "the run never grew over the pages an alignment skips");
}

/// Whether the run grew over pages an alignment skipped; if it did, asserts that they were
/// neither touched nor committed.
fn alignment_skips_pages_clean(kernel: &'static SimulatedKernel) -> bool {
    let exec = ExecAllocator::with_kernel(config(), kernel);
    let mut batch = exec.batch();
    let align = 8 * PAGE;
    let mut blocks = vec![batch.alloc(16, 16).unwrap()];
    // A run that ends on a multiple of 8 pages grows by a page first, so that the alignment
    // below skips pages.
    let run_end = |blocks: &Vec<Block<'_>>| blocks.last().map_or(0, |b| (b.addr() / PAGE + 1) * PAGE);
    if run_end(&blocks) % align == 0 {
        blocks.push(batch.alloc(PAGE, PAGE).unwrap());
    }
    let skipped = align - run_end(&blocks) % align;
    // The image's code starts at the next multiple of 8 pages: the run grows over the pages
    // before it, which nothing writes, and the page the code is copied into.
    let calls = kernel.calls();
    let image = batch.alloc_module_image(&[(PAGE, MemoryKind::Code)], PAGE, align).unwrap();
    let code = image[0].as_ref().unwrap().addr();
    assert_eq!(code % align, 0);
    if code != run_end(&blocks) + skipped {
        batch.seal().unwrap();
        return false;
    }
    assert!(skipped >= PAGE);
    assert_eq!(kernel.calls(), calls, "one page written: nothing to fault in ahead");
    batch.seal().unwrap();
    // The skipped pages went back clean: `trim` has nothing to discard.
    let before = exec.stats().protection_changes;
    exec.trim().unwrap();
    assert_eq!(exec.stats().protection_changes, before, "a skipped page was booked as written");
    drop((blocks, image));
    true
}

#[test]
fn zeroing_a_recycled_image_leaves_the_block_between_its_code_and_data_alone() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let shape = [(PAGE, MemoryKind::Code), (PAGE, MemoryKind::ReadWrite)];
    let mut first = exec.batch();
    let old = first.alloc_image(&shape).unwrap();
    first.seal().unwrap();
    // A block after the image's code, below its data at the region's top.
    let mut second = exec.batch();
    let between = second.alloc(64, 16).unwrap();
    second.write(&between, 0, &[0xAB; 64]).unwrap();
    second.seal().unwrap();
    let old: Vec<usize> = old.into_iter().flatten().map(|b| b.addr()).collect();
    assert!(old[0] < between.addr() && between.addr() < old[1]);
    // The image's pages, freed, are recycled for the next image of the same shape: both are
    // zeroed, and nothing between them.
    let mut third = exec.batch();
    let again = third.alloc_image(&shape).unwrap();
    let again: Vec<usize> = again.iter().flatten().map(|b| b.addr()).collect();
    assert_eq!(again, old, "the recycled pages");
    assert_eq!(bytes(between.addr(), 64), [0xAB; 64], "a live block was zeroed");
    third.seal().unwrap();
}

#[test]
fn recycled_pages_are_zeroed_however_many_ranges_they_make() {
    // Nine pages, every other one recycled (dirty) and the others discarded (clean): opened
    // together they make five separate ranges to zero, more than the list zeroed after the
    // lock holds (the rest are zeroed at once).
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let mut pages: Vec<Option<Block<'_>>> = (0..9).map(|_| Some(batch.alloc(PAGE, PAGE).unwrap())).collect();
    for page in pages.iter().flatten() {
        batch.write(page, 0, &[0xAA; PAGE]).unwrap();
    }
    batch.seal().unwrap();
    let start = pages[0].as_ref().unwrap().addr();
    assert!(pages.iter().flatten().enumerate().all(|(i, p)| p.addr() == start + i * PAGE));
    exec.free_all((1..9).step_by(2).filter_map(|i| pages[i].take())).unwrap();
    exec.trim().unwrap(); // the odd pages discarded: clean
    exec.free_all(pages.into_iter().flatten()).unwrap(); // the even ones recycled: dirty
    let mut batch = exec.batch();
    let block = batch.alloc(9 * PAGE, PAGE).unwrap();
    assert_eq!(block.addr(), start, "the nine pages again");
    assert!(bytes(start, 9 * PAGE).iter().all(|&b| b == 0), "a recycled page kept its bytes");
    batch.seal().unwrap();
}

#[test]
fn an_image_of_data_alone_opens_only_its_data_and_faults_in_what_is_overwritten() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let image = batch
        .alloc_module_image(&[(0, MemoryKind::Code), (2 * PAGE, MemoryKind::ReadWrite)], 2 * PAGE, 1)
        .unwrap();
    assert!(image[0].is_none(), "no code");
    let data = image[1].as_ref().unwrap();
    assert_eq!(exec.stats().pages_open, 2, "no code pages, no trap page");
    assert_eq!(K.last_populate(), Some((data.addr(), 2 * PAGE)), "the data the caller overwrites");
    batch.seal().unwrap();
    drop(image);
}

#[test]
fn a_data_run_opens_clean_pages_ahead_for_the_next_images_and_gives_the_unused_back_clean() {
    static K: SimulatedKernel = SimulatedKernel::new();
    // Regions with room for a data run's pages ahead (32) above the code's.
    let exec = ExecAllocator::with_kernel(super::ExecConfig { region_size: 256 * PAGE, ..config() }, &K);
    let mut batch = exec.batch_of_many();
    let segments = [(100, MemoryKind::Code), (100, MemoryKind::ReadWrite)];
    let first = batch.alloc_module_image(&segments, 0, 16).unwrap();
    let open = exec.stats().pages_open;
    assert_eq!(open, 1 + 2 * (1 + 32), "a trap page, then code and data runs, each with 32 pages ahead");
    let second = batch.alloc_module_image(&segments, 0, 16).unwrap();
    assert_eq!(exec.stats().pages_open, open, "the second image packs into the open runs");
    let data = |image: &Vec<Option<Block<'_>>>| image[1].as_ref().unwrap().addr();
    assert_eq!(data(&second), data(&first) + 128);
    let before_seal = exec.stats().protection_changes;
    batch.seal().unwrap();
    // One change seals the code (data pages stay read-write); the pages ahead go back free.
    assert_eq!(exec.stats().protection_changes, before_seal + 1);
    assert_eq!((exec.stats().pages_open, exec.stats().pages_sealed), (0, 2), "a page of code, one of data");
    assert_eq!(exec.stats().pages_recycled, 0, "never written: not kept as dirty");
    let before = exec.stats().protection_changes;
    exec.trim().unwrap();
    assert_eq!(exec.stats().protection_changes, before, "nothing to discard");
    drop((first, second));
}

#[test]
fn a_data_run_opens_only_the_clean_pages_after_its_first_block() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(super::ExecConfig { region_size: 256 * PAGE, ..config() }, &K);
    // A module's data page freed at the top of the region: free again, dirty (kept for reuse).
    let segments = [(100, MemoryKind::Code), (100, MemoryKind::ReadWrite)];
    let mut plain = exec.batch();
    let old = plain.alloc_module_image(&segments, 0, 16).unwrap();
    plain.seal().unwrap();
    let top = old[1].as_ref().unwrap().addr();
    drop(old);
    assert!(exec.stats().pages_recycled > 0, "freed pages kept dirty");
    let mut batch = exec.batch_of_many();
    let first = batch.alloc_module_image(&segments, 0, 16).unwrap();
    let data = first[1].as_ref().unwrap().addr();
    assert_eq!(data, top - 32 * PAGE, "the highest free stretch with room for 32 more pages");
    // The run holds its block's page and the 31 clean pages after it, not the dirty one: data
    // that fits in 32 pages only with the dirty one opens a run of its own.
    let fits_with_dirty = [(100, MemoryKind::Code), (32 * PAGE - 64, MemoryKind::ReadWrite)];
    let second = batch.alloc_module_image(&fits_with_dirty, 0, 16).unwrap();
    let large = second[1].as_ref().unwrap().addr();
    assert_ne!(large, data + 128);
    assert_eq!(large % PAGE, 0);
    batch.seal().unwrap();
    drop((first, second));
}
