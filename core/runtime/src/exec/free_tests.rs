//! Freeing many blocks at once: the pages they empty go back with one protection change per
//! run when freed in order, and every page goes back whatever the order, however many
//! separate ranges the blocks lie in.

use alloc::vec::Vec;

use super::fake::SimulatedKernel;
use super::tests::{config, PAGE};
use super::{Block, ExecAllocator, ExecConfig};
use crate::sys::Protection;

/// `count` sealed blocks of a page each, side by side in one region.
fn page_blocks(exec: &ExecAllocator, count: usize) -> Vec<Block<'_>> {
    let mut batch = exec.batch();
    let blocks = (0..count).map(|_| batch.alloc(PAGE, PAGE).unwrap()).collect();
    batch.seal().unwrap();
    blocks
}

#[test]
fn blocks_freed_in_order_go_back_with_one_change() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(ExecConfig { region_size: 128 * PAGE, ..config() }, &K);
    let blocks = page_blocks(&exec, 100);
    let before = exec.stats().protection_changes;
    exec.free_all(blocks).unwrap();
    assert_eq!(exec.stats().protection_changes - before, 1, "one run, one change");
    assert_eq!(exec.stats().pages_sealed, 0);
}

#[test]
fn blocks_in_more_separate_ranges_than_one_list_holds_all_go_back() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(ExecConfig { region_size: 128 * PAGE, ..config() }, &K);
    let mut blocks: Vec<Option<Block<'_>>> = page_blocks(&exec, 100).into_iter().map(Some).collect();
    let addrs: Vec<usize> = blocks.iter().flatten().map(Block::addr).collect();
    // Every other page first, in a scrambled order: 50 ranges that do not meet.
    let scrambled = (0..50).map(|i| (i * 37 % 50) * 2);
    let odd: Vec<Block<'_>> = scrambled.map(|i| blocks[i].take().unwrap()).collect();
    let before = exec.stats().protection_changes;
    exec.free_all(odd).unwrap();
    assert_eq!(exec.stats().protection_changes - before, 50, "50 separate pages");
    assert_eq!(exec.stats().blocks_live, 50);
    for (i, &addr) in addrs.iter().enumerate() {
        let expected = if i % 2 == 0 { Protection::ReadWrite } else { Protection::ReadExec };
        assert_eq!(K.protection_at(addr), Some(expected), "page {i}");
    }
    // Then the rest, backwards: they fill the gaps.
    exec.free_all(blocks.into_iter().rev().flatten()).unwrap();
    let stats = exec.stats();
    assert_eq!((stats.blocks_live, stats.pages_sealed), (0, 0));
    assert!(addrs.iter().all(|&a| K.protection_at(a) == Some(Protection::ReadWrite)));
}
