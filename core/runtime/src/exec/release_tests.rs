//! Sealing and giving pages back: which seals make other threads re-fetch instructions, pages
//! written then given back handed out zeroed, frees that leave their protection changes for
//! outside the lock, the recycling budget and `trim` (what it discards, counts and keeps), trap
//! pages whose code went before the seal, pages another batch took meanwhile, frees out of
//! address order, and emptied regions.

// Reading the blocks back and running deferred changes needs raw pointers and unsafe calls.
#![allow(unsafe_code)]

use alloc::vec;
use alloc::vec::Vec;

use super::fake::SimulatedKernel;
use super::tests::{bytes, config, shape, PAGE};
use super::{ExecAllocator, ExecConfig, MemoryKind};
use crate::sys::Protection;
use smf_format::write::samples;

#[test]
fn other_threads_are_made_to_refetch_instructions_when_code_is_sealed_and_only_then() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut data = exec.batch();
    let _data = data.alloc_image(&[(PAGE, MemoryKind::ReadOnly), (PAGE, MemoryKind::ReadWrite)]).unwrap();
    data.seal().unwrap();
    assert_eq!(K.syncs(), 0, "no code sealed");
    let mut code = exec.batch();
    let _code = code.install(&samples::RETURN_42, 16).unwrap();
    code.seal().unwrap();
    assert_eq!(K.syncs(), 1, "code sealed");
}

#[test]
fn pages_written_and_given_back_are_zero_when_handed_out_again() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    // Written by a batch that was dropped unsealed: its pages go back free.
    let mut abandoned = exec.batch();
    let block = abandoned.alloc(64, 16).unwrap();
    abandoned.write(&block, 0, &[0xAA; 64]).unwrap();
    let addr = block.addr();
    drop((block, abandoned));
    let mut batch = exec.batch();
    let block = batch.alloc(64, 16).unwrap();
    assert_eq!((block.addr(), bytes(addr, 64)), (addr, vec![0; 64]), "the abandoned batch's page");
    drop((block, batch));
    // Sealed writable data (free pages' own protection), written, then freed.
    let segments = [(PAGE, MemoryKind::Code), (PAGE, MemoryKind::ReadWrite)];
    let mut batch = exec.batch();
    let image = batch.alloc_image(&segments).unwrap();
    let data = image[1].as_ref().unwrap().addr();
    batch.block_mut(image[1].as_ref().unwrap()).unwrap().fill(0x55);
    batch.seal().unwrap();
    drop(image);
    let mut batch = exec.batch();
    let image = batch.alloc_image(&segments).unwrap();
    assert_eq!(image[1].as_ref().unwrap().addr(), data, "the same data page");
    assert_eq!(bytes(data, PAGE), vec![0; PAGE], "the freed data page");
}

#[test]
fn freeing_leaves_its_protection_changes_for_outside_the_lock() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let block = batch.install(&samples::RETURN_42, 16).unwrap();
    batch.seal().unwrap();
    let addr = block.addr();
    core::mem::forget(block); // freed below, through the state
    let mut state = exec.state.lock();
    let calls = K.calls();
    state.begin_release(&[addr]).unwrap();
    assert_eq!(K.calls(), calls, "no kernel call while the lock is held");
    let mut deferred = state.take_deferred();
    assert_eq!(deferred.len(), 1, "the code page's change, left for the caller");
    // SAFETY: just handed out by this allocator's state, and not run yet.
    let failure = deferred.iter_mut().find_map(|change| unsafe { change.run(&K) }.err());
    state.finish_release(deferred, failure).unwrap();
    drop(state);
    assert_eq!((K.calls(), K.protection_at(addr)), (calls + 1, Some(Protection::ReadWrite)));
    assert_eq!(exec.lookup(addr, 1), None);
}

#[test]
fn trimming_counts_each_protection_change_it_makes() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let image = batch.alloc_image(&[(2 * PAGE, MemoryKind::Code)]).unwrap();
    batch.seal().unwrap();
    drop(image);
    assert_eq!(exec.stats().trap_pages, 1, "the freed code's trap page stays");
    let (before, calls) = (exec.stats().protection_changes, K.calls());
    exec.trim().unwrap();
    // The trap page made free (one mprotect), then it and the freed code pages, one run of
    // free pages kept for reuse, discarded (one call).
    assert_eq!(exec.stats().protection_changes - before, 2);
    assert_eq!(K.calls() - calls, 2);
    assert_eq!(exec.stats().pages_recycled, 0, "all discarded");
}

#[test]
fn pages_given_back_past_the_recycling_budget_are_discarded() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let budget = super::state::RECYCLED_PAGES;
    let exec = ExecAllocator::with_kernel(ExecConfig { region_size: (budget + 64) * PAGE, ..config() }, &K);
    let mut batch = exec.batch();
    let code = batch.alloc(budget * PAGE, PAGE).unwrap();
    batch.seal().unwrap();
    let mut abandoned = exec.batch();
    let block = abandoned.alloc(64, 16).unwrap();
    abandoned.write(&block, 0, &[0xAA; 64]).unwrap();
    drop(block);
    // The code freed, exactly the budget's pages: kept for reuse, made writable again.
    drop(code);
    // Then the page written by a batch dropped unsealed: past the budget, so discarded.
    let (before, calls) = (exec.stats().protection_changes, K.calls());
    drop(abandoned);
    assert_eq!((exec.stats().protection_changes - before, K.calls() - calls), (1, 1), "one discard");
}

#[test]
fn a_trap_page_whose_code_was_freed_before_the_seal_is_not_sealed() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let image = batch.alloc_image(&[(PAGE, MemoryKind::Code), (PAGE, MemoryKind::ReadWrite)]).unwrap();
    let trap = image[0].as_ref().unwrap().addr() - PAGE;
    let mut image = image.into_iter();
    drop(image.next()); // the code, before the seal: its page is given back at once
                        // Another batch's code takes that page, right after the trap page.
    let mut other = exec.batch();
    let taken = other.alloc(64, 16).unwrap();
    assert_eq!(taken.addr(), trap + PAGE);
    batch.seal().unwrap();
    let stats = exec.stats();
    assert_eq!((stats.trap_pages, stats.pages_sealed), (0, 1), "only the data page is sealed");
    assert_eq!(K.protection_at(trap), Some(Protection::ReadWrite), "the trap page is free again");
}

#[test]
fn a_page_a_batch_gave_back_and_another_batch_took_is_left_to_that_batch_by_the_seal() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut first = exec.batch();
    let whole = first.alloc(PAGE, 16).unwrap();
    let _next = first.alloc(64, 16).unwrap(); // the cursor moves on to the next page
    let page = whole.addr();
    drop(whole); // its page is behind the cursor: given back at once
    let mut second = exec.batch();
    let taken = second.alloc(64, 16).unwrap();
    assert_eq!(taken.addr(), page, "the page given back");
    first.seal().unwrap();
    assert_eq!(K.protection_at(page), Some(Protection::ReadWrite), "still open for the second batch");
    second.write(&taken, 0, &samples::RETURN_42).unwrap();
    second.seal().unwrap();
    assert_eq!(
        (K.protection_at(page), bytes(page, 6)),
        (Some(Protection::ReadExec), samples::RETURN_42.to_vec())
    );
}

#[test]
fn blocks_freed_out_of_order_give_their_pages_back_with_one_change() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let blocks: Vec<_> = (0..4).map(|_| batch.alloc(PAGE, PAGE).unwrap()).collect();
    batch.seal().unwrap();
    assert!(blocks.windows(2).all(|pair| pair[1].addr() == pair[0].addr() + PAGE), "four pages in a row");
    let mut blocks: Vec<_> = blocks.into_iter().map(Some).collect();
    // Freed as pages 0, 2, 1, 3: two ranges (0 and 1..4) that meet once sorted.
    let order = [0, 2, 1, 3].map(|i| blocks[i].take().unwrap());
    let before = exec.stats().protection_changes;
    exec.free_all(order).unwrap();
    assert_eq!(exec.stats().protection_changes - before, 1, "one mprotect for the four pages");
    assert_eq!(exec.stats().pages_sealed, 0);
}

#[test]
fn freeing_a_block_of_an_open_batch_keeps_the_page_its_neighbour_lives_in() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let (gone, kept) = (batch.alloc(64, 16).unwrap(), batch.alloc(64, 16).unwrap());
    let _later = batch.alloc(PAGE, PAGE).unwrap(); // the cursor moves past their page
    let page = kept.addr() & !(PAGE - 1);
    drop(gone);
    let mut other = exec.batch();
    let elsewhere = other.alloc(64, 16).unwrap();
    assert_ne!(elsewhere.addr() & !(PAGE - 1), page, "the page still holds a block of the first batch");
    batch.write(&kept, 0, &samples::RETURN_42).unwrap();
    batch.seal().unwrap();
    assert_eq!(
        (K.protection_at(page), bytes(kept.addr(), 6)),
        (Some(Protection::ReadExec), samples::RETURN_42.to_vec())
    );
}

#[test]
fn trimming_keeps_every_page_that_holds_a_block_guards_code_or_awaits_its_batch() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    // Sealed code behind a trap page.
    let mut sealed = exec.batch();
    let image = sealed.alloc_image(&[(PAGE, MemoryKind::Code)]).unwrap();
    sealed.seal().unwrap();
    // An open batch's page whose only block was freed (the batch may place more there).
    let mut open = exec.batch();
    drop(open.alloc(64, 16).unwrap());
    // A block living on after its batch was dropped unsealed.
    let mut ended = exec.batch();
    let kept = ended.alloc(64, 16).unwrap();
    drop(ended);
    let (before, code) = (exec.stats(), image[0].as_ref().unwrap().addr());
    assert_eq!((before.pages_sealed, before.trap_pages, before.pages_open), (1, 1, 2));
    exec.trim().unwrap();
    assert_eq!(shape(exec.stats()), shape(before), "nothing released");
    let protections = [code - PAGE, code, kept.addr()].map(|addr| K.protection_at(addr));
    assert_eq!(
        protections,
        [Some(Protection::ReadExec), Some(Protection::ReadExec), Some(Protection::ReadWrite)]
    );
}

#[test]
fn emptied_regions_are_unmapped_but_the_spare_ones() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    // Three blocks of 12 pages: a region (16 pages) each.
    let blocks: Vec<_> = (0..3).map(|_| batch.alloc(12 * PAGE, PAGE).unwrap()).collect();
    for block in &blocks {
        batch.write(block, 0, &[0xAA; 64]).unwrap();
    }
    batch.seal().unwrap();
    assert_eq!(exec.stats().regions, 3);
    exec.free_all(blocks).unwrap();
    assert_eq!(exec.stats().regions, 1, "one spare region stays");
    exec.trim().unwrap();
    assert_eq!(exec.stats().pages_recycled, 0, "the unmapped regions' pages are not counted as kept");
}

#[test]
fn a_recycled_page_opened_again_is_no_longer_counted_as_kept() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let mut pages: Vec<_> = (0..4).map(|_| Some(batch.alloc(PAGE, PAGE).unwrap())).collect();
    batch.seal().unwrap();
    exec.free_all([1, 2].map(|i| pages[i].take().unwrap())).unwrap();
    assert_eq!(exec.stats().pages_recycled, 2);
    // The first free pages are the recycled ones: one of them is opened (and zeroed) again.
    let mut batch = exec.batch();
    let again = batch.alloc(PAGE, PAGE).unwrap();
    assert_eq!(again.addr(), pages[0].as_ref().unwrap().addr() + PAGE, "the first page freed");
    assert_eq!(exec.stats().pages_recycled, 1);
    batch.seal().unwrap();
    drop((again, pages));
}

#[test]
fn trimming_discards_every_run_of_pages_kept_for_reuse() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let mut pages: Vec<_> = (0..8).map(|_| Some(batch.alloc(PAGE, PAGE).unwrap())).collect();
    batch.seal().unwrap();
    // Pages 4, 5 and 7 freed: two runs kept for reuse, the second after a live page.
    exec.free_all([4, 5, 7].map(|i| pages[i].take().unwrap())).unwrap();
    assert_eq!(exec.stats().pages_recycled, 3);
    let before = exec.stats().protection_changes;
    exec.trim().unwrap();
    assert_eq!((exec.stats().pages_recycled, exec.stats().protection_changes - before), (0, 2));
    drop(pages);
}
