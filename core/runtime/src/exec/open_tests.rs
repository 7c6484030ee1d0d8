//! Opening pages for a batch: the alignments an image or a run of blocks may ask for, an
//! image's segments placed one after the other, code placed where its data fits above it (and
//! nowhere it would not), the clean pages a batch of many opens ahead, the room a fresh region
//! is reserved with, and the run prepared for many blocks at once.

use alloc::vec;
use alloc::vec::Vec;

use super::fake::SimulatedKernel;
use super::tests::{config, PAGE};
use super::{Block, ExecAllocator, ExecError, MemoryKind};

#[test]
fn a_fresh_region_has_room_for_an_aligned_image_larger_than_the_usual_size() {
    // Regions are 16 pages; an image is aligned to 4 pages. A fresh region of 31 pages: the
    // trap page and the code (13), up to 3 to align them, the data (12) and up to 3 to align it.
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let segments = [(12 * PAGE, MemoryKind::Code), (12 * PAGE, MemoryKind::ReadWrite)];
    let image = batch.alloc_module_image(&segments, 0, 4 * PAGE).unwrap();
    assert_eq!(K.usage().bytes, 31 * PAGE);
    assert!(image.iter().all(|b| b.as_ref().unwrap().addr() % (4 * PAGE) == 0));
    batch.seal().unwrap();
    // Data alone: 20 pages and up to 3 to align them.
    let mut batch = exec.batch();
    let data = batch.alloc_module_image(&[(20 * PAGE, MemoryKind::ReadWrite)], 0, 4 * PAGE).unwrap();
    assert_eq!(K.usage().bytes, (31 + 23) * PAGE);
    assert_eq!(data[0].as_ref().unwrap().addr() % (4 * PAGE), 0);
    batch.seal().unwrap();
    drop((image, data));
}

#[test]
fn data_placed_where_there_is_room_leaves_idle_trap_pages_alone() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let code = batch.alloc_image(&[(PAGE, MemoryKind::Code)]).unwrap();
    batch.seal().unwrap();
    exec.free_all(code.into_iter().flatten()).unwrap();
    assert_eq!(exec.stats().trap_pages, 1, "kept (its region is the spare), guarding nothing now");
    let mut batch = exec.batch();
    let data = batch.alloc_image(&[(PAGE, MemoryKind::ReadWrite)]).unwrap();
    batch.seal().unwrap();
    assert_eq!(exec.stats().trap_pages, 1, "the region had room: no trap page reclaimed");
    drop(data);
}

#[test]
fn an_image_may_be_aligned_to_a_mebibyte_and_no_more() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let segments = [(PAGE, MemoryKind::Code), (PAGE, MemoryKind::ReadWrite)];
    let image = batch.alloc_module_image(&segments, 0, 1 << 20).unwrap();
    assert!(image.iter().all(|b| b.as_ref().unwrap().addr() % (1 << 20) == 0));
    assert_eq!(
        batch.alloc_module_image(&segments, 0, 2 << 20).unwrap_err(),
        ExecError::BadAlignment { align: 2 << 20 }
    );
    batch.seal().unwrap();
    drop(image);
}

#[test]
fn segments_of_one_kind_lie_one_after_the_other() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let segments = [(PAGE, MemoryKind::Code), (2 * PAGE, MemoryKind::Code), (PAGE, MemoryKind::ReadOnly)];
    let image = batch.alloc_image(&segments).unwrap();
    let addr = |i: usize| image[i].as_ref().unwrap().addr();
    assert_eq!(addr(1), addr(0) + PAGE);
    assert!(addr(2) >= addr(1) + 2 * PAGE, "the read-only data above the code");
    batch.seal().unwrap();
    drop(image);
}

#[test]
fn code_is_placed_in_a_free_stretch_only_where_its_data_fits_above_it() {
    // Regions are 16 pages. One page of data at the top stays live: the 15 pages below it are
    // free. A trap page and fourteen pages of code would take pages 0..15, leaving no page for
    // their data: the image goes to a new region, whole.
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let top = batch.alloc_image(&[(PAGE, MemoryKind::ReadWrite)]).unwrap();
    batch.seal().unwrap();
    let first = exec.regions()[0].clone();
    assert_eq!(top[0].as_ref().unwrap().addr(), first.end - PAGE);
    let mut batch = exec.batch();
    let image = batch.alloc_image(&[(14 * PAGE, MemoryKind::Code), (PAGE, MemoryKind::ReadWrite)]).unwrap();
    batch.seal().unwrap();
    assert!(image.iter().all(|b| !first.contains(&b.as_ref().unwrap().addr())), "a new region");
    // Thirteen pages fit with their page of data, below the live one.
    let mut batch = exec.batch();
    let fits = batch.alloc_image(&[(13 * PAGE, MemoryKind::Code), (PAGE, MemoryKind::ReadWrite)]).unwrap();
    batch.seal().unwrap();
    let addr = |i: usize| fits[i].as_ref().unwrap().addr();
    assert_eq!([addr(0), addr(1)], [first.start + PAGE, first.end - 2 * PAGE]);
    drop((top, image, fits));
}

#[test]
fn code_follows_sealed_code_when_its_data_fits_above_it() {
    // A page of code (after its trap page) with ten pages of data at the top of a 16-page
    // region: pages 2..6 are free. Three pages of code right after the sealed code leave page 5
    // for their data; a new trap page before them would not.
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let first = batch.alloc_image(&[(PAGE, MemoryKind::Code), (10 * PAGE, MemoryKind::ReadWrite)]).unwrap();
    batch.seal().unwrap();
    let region = exec.regions()[0].clone();
    assert_eq!(first[0].as_ref().unwrap().addr(), region.start + PAGE);
    let mut batch = exec.batch();
    let second = batch.alloc_image(&[(3 * PAGE, MemoryKind::Code), (PAGE, MemoryKind::ReadWrite)]).unwrap();
    batch.seal().unwrap();
    let addr = |i: usize| second[i].as_ref().unwrap().addr();
    assert_eq!([addr(0), addr(1)], [region.start + 2 * PAGE, region.start + 5 * PAGE]);
    assert_eq!(exec.stats().trap_pages, 1, "no new trap page");
    drop((first, second));
}

#[test]
fn a_batch_of_many_opens_no_page_ahead_that_its_data_needs() {
    // Trap page, fourteen pages of code and one of data fill a fresh 16-page region: the one
    // clean page after the code is the data's, not a page to open ahead for more code.
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch_of_many();
    let image = batch.alloc_image(&[(14 * PAGE, MemoryKind::Code), (PAGE, MemoryKind::ReadWrite)]).unwrap();
    assert_eq!((exec.regions().len(), exec.stats().pages_open), (1, 16));
    batch.seal().unwrap();
    drop(image);
}

#[test]
fn a_batch_of_many_opens_ahead_only_free_clean_pages() {
    // Three one-page blocks sealed; the first two freed and trimmed (clean again). A batch of
    // many placing a block at page 0 opens page 1 ahead, and stops at the live page 2.
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let mut pages: Vec<_> = (0..3).map(|_| Some(batch.alloc(PAGE, PAGE).unwrap())).collect();
    batch.seal().unwrap();
    let base = pages[0].as_ref().unwrap().addr();
    exec.free_all([0, 1].map(|i| pages[i].take().unwrap())).unwrap();
    exec.trim().unwrap();
    let mut batch = exec.batch_of_many();
    let block = batch.alloc(64, 16).unwrap();
    assert_eq!((block.addr(), exec.stats().pages_open), (base, 2));
    batch.seal().unwrap();
    drop((block, pages));
}

#[test]
fn blocks_prepared_together_are_faulted_in_together_and_checked_first() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    assert!(batch.install_many([].into_iter(), 16).unwrap().is_empty());
    assert_eq!(K.usage().mappings, 0, "nothing to place: no region reserved");
    let code = vec![0xC3; PAGE];
    let codes = [&code[..], &code[..], &code[..]];
    // Refused before any page is opened: an alignment past a page, or not a power of two.
    for align in [2 * PAGE, 24] {
        assert_eq!(
            batch.install_many(codes.into_iter(), align).unwrap_err(),
            ExecError::BadAlignment { align }
        );
        assert_eq!(exec.stats().pages_open, 0);
    }
    let blocks = batch.install_many(codes.into_iter(), PAGE).unwrap();
    assert_eq!(K.last_populate(), Some((blocks[0].addr(), 3 * PAGE)), "one call for the three pages");
    batch.seal().unwrap();
    drop(blocks);
}

#[test]
fn code_alone_goes_on_in_its_batch_s_run_with_no_room_left_for_data() {
    // Three pages of data at the top of a 16-page region, the lowest of them freed (dirty).
    // A batch of many places an image's code after a trap page, opens the clean pages ahead of
    // it up to the dirty one, and puts the image's data there: no page of the region is free.
    // More code with no data of its own needs no room above it: it goes on in the run.
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let mut top: Vec<_> =
        (0..3).map(|_| batch.alloc_image(&[(PAGE, MemoryKind::ReadWrite)]).unwrap()).collect();
    batch.seal().unwrap();
    let region = exec.regions()[0].clone();
    assert_eq!(top[2][0].as_ref().unwrap().addr(), region.end - 3 * PAGE);
    exec.free_all(top.remove(2).into_iter().flatten()).unwrap();
    let mut batch = exec.batch_of_many();
    let first = batch.alloc_image(&[(PAGE, MemoryKind::Code), (PAGE, MemoryKind::ReadWrite)]).unwrap();
    assert_eq!(first[1].as_ref().unwrap().addr(), region.end - 3 * PAGE, "the dirty page");
    assert_eq!(exec.stats().pages_open, 14, "every page but the two live ones");
    let second = batch.alloc_image(&[(PAGE, MemoryKind::Code)]).unwrap();
    assert_eq!(second[0].as_ref().unwrap().addr(), first[0].as_ref().unwrap().addr() + PAGE);
    batch.seal().unwrap();
    drop((top, first, second));
}

#[test]
fn a_batch_of_many_packs_its_images_code_and_writable_data_at_their_alignment() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch_of_many();
    fn image<'a>(
        batch: &mut crate::exec::CodeBatch<'a>,
        code: usize,
        align: usize,
    ) -> (Block<'a>, Block<'a>) {
        let segments = [(code, MemoryKind::Code), (100, MemoryKind::ReadWrite)];
        let blocks = batch.alloc_module_image(&segments, 0, align).unwrap();
        let [Some(code), Some(data)] = <[_; 2]>::try_from(blocks).unwrap() else { panic!("two blocks") };
        (code, data)
    }
    let first = image(&mut batch, 100, 16);
    let second = image(&mut batch, 40, 64);
    let third = image(&mut batch, 8, 16);
    let fourth = image(&mut batch, 8, 512);
    // Code: each at least a cache line, the next at its alignment after the one before.
    assert_eq!(first.0.addr() % PAGE, 0);
    assert_eq!((first.0.size(), second.0.size(), third.0.size()), (128, 64, 64));
    assert_eq!(second.0.addr(), first.0.addr() + 128);
    assert_eq!(third.0.addr(), second.0.addr() + 64);
    assert_eq!(fourth.0.addr(), first.0.addr() + 512, "the third ends at 256: the fourth at 512");
    // Writable data likewise, in a run of its own above the code.
    assert_eq!(first.1.addr() % PAGE, 0);
    assert!(first.1.addr() > fourth.0.addr());
    assert_eq!((first.1.size(), second.1.size(), third.1.size(), fourth.1.size()), (128, 128, 128, 512));
    assert_eq!(second.1.addr(), first.1.addr() + 128);
    assert_eq!(third.1.addr(), second.1.addr() + 128);
    assert_eq!(fourth.1.addr(), first.1.addr() + 512);
    // Read-only data apart from the code keeps pages of its own.
    let segments = [(100, MemoryKind::Code), (100, MemoryKind::ReadOnly), (100, MemoryKind::ReadWrite)];
    let fifth = batch.alloc_module_image(&segments, 0, 16).unwrap();
    let [Some(code), Some(read_only), Some(data)] = <[_; 3]>::try_from(fifth).unwrap() else { panic!("3") };
    assert_eq!((code.addr(), data.addr()), (fourth.0.addr() + 512, fourth.1.addr() + 512));
    assert_eq!((read_only.addr() % PAGE, read_only.size()), (0, PAGE));
    // Writable data larger than the room left in the data run opens a run of its own.
    let segments = [(100, MemoryKind::Code), (PAGE, MemoryKind::ReadWrite)];
    let sixth = batch.alloc_module_image(&segments, 0, 16).unwrap();
    let large = sixth[1].as_ref().unwrap();
    assert_eq!((large.addr() % PAGE, large.size()), (0, PAGE), "not after the fifth's data");
    drop(sixth);
    assert_eq!(exec.stats().blocks_live, 11);
    batch.seal().unwrap();
    // The shared pages seal to their kind; freeing two images of four keeps them for the rest.
    let (code_page, data_page) = (first.0.addr(), first.1.addr());
    assert_eq!(K.protection_at(code_page), Some(crate::sys::Protection::ReadExec));
    assert_eq!(K.protection_at(data_page), Some(crate::sys::Protection::ReadWrite));
    assert_eq!(K.protection_at(read_only.addr()), Some(crate::sys::Protection::Read));
    let pages_sealed = exec.stats().pages_sealed;
    assert_eq!(pages_sealed, 3, "one page of code, one of writable data, one read-only");
    exec.free_all([first.0, first.1, second.0, second.1, code, read_only, data]).unwrap();
    assert_eq!(K.protection_at(code_page), Some(crate::sys::Protection::ReadExec), "the third's code");
    assert_eq!(
        exec.stats().pages_sealed,
        pages_sealed - 1,
        "the read-only page went back, the shared ones stay"
    );
    exec.free_all([third.0, third.1, fourth.0, fourth.1]).unwrap();
    assert_ne!(K.protection_at(code_page), Some(crate::sys::Protection::ReadExec), "empty: released");
    assert_eq!((exec.stats().blocks_live, exec.stats().pages_sealed), (0, 0));

    // A batch that is not of many gives each image's code and data whole pages.
    let mut batch = exec.batch();
    let (a, b) = (image(&mut batch, 100, 16), image(&mut batch, 40, 16));
    assert_eq!((a.0.size(), b.0.addr() - a.0.addr()), (PAGE, PAGE));
    assert_eq!((a.1.size(), a.1.addr() - b.1.addr()), (PAGE, PAGE), "data from the top down");
    batch.seal().unwrap();
    drop((a, b));
}

#[test]
fn an_image_freed_before_its_batch_of_many_is_sealed_leaves_the_runs_open_for_the_next() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch_of_many();
    let segments = [(100, MemoryKind::Code), (100, MemoryKind::ReadWrite)];
    let failed = batch.alloc_module_image(&segments, 0, 16).unwrap();
    let (code_at, data_at) = (failed[0].as_ref().unwrap().addr(), failed[1].as_ref().unwrap().addr());
    let open = exec.stats().pages_open;
    // A load that fails gives its blocks back with its batch still open.
    exec.free_all(failed.into_iter().flatten()).unwrap();
    assert_eq!(exec.stats().pages_open, open, "its pages stay open: the batch's cursors are in them");
    let next = batch.alloc_module_image(&segments, 0, 16).unwrap();
    let (code, data) = (next[0].as_ref().unwrap(), next[1].as_ref().unwrap());
    // The cursors only move forward: the freed bytes are not handed out again.
    assert_eq!((code.addr(), data.addr()), (code_at + 128, data_at + 128));
    batch.seal().unwrap();
    assert_eq!(K.protection_at(code.addr()), Some(crate::sys::Protection::ReadExec));
    assert_eq!(K.protection_at(data.addr()), Some(crate::sys::Protection::ReadWrite));
    assert_eq!(exec.stats().pages_sealed, 2, "one page of code, one of data");
    drop(next);
    assert_eq!(exec.stats().pages_sealed, 0);
}
