//! Pages of a block mapped from a file ([`super::CodeBatch::map_file`]): they show the file's
//! bytes, are read-write while the batch is open and sealed with it, are discarded (not kept
//! for reuse, unlike the block's other pages) once freed, and a mapping the kernel refuses leaves the block for the caller to
//! write; refused requests change nothing. The simulated kernel reads the file through a
//! syscall, which Miri cannot run.

// Reading the blocks back needs raw pointers.
#![allow(unsafe_code)]

extern crate std;

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use super::fake::{FaultInjector, SimulatedKernel};
use super::tests::{bytes, config, PAGE};
use super::{ExecAllocator, ExecError, MemoryKind};
use crate::sys::{OpenFile, Protection};

/// A file of `pages` pages, page `i` filled with `i + 1`, opened for reading.
fn file_of_pages(name: &str, pages: u8) -> OpenFile {
    let path = std::env::temp_dir().join(format!("smf-map-{}-{name}", std::process::id()));
    let content: Vec<u8> = (0..pages).flat_map(|i| vec![i + 1; PAGE]).collect();
    std::fs::write(&path, content).unwrap();
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let file = OpenFile::open_nonblocking(&c_path).unwrap();
    std::fs::remove_file(&path).unwrap(); // the open file keeps it
    file
}

#[test]
#[cfg_attr(miri, ignore = "the simulated kernel reads the file through a syscall, which Miri cannot run")]
fn mapped_pages_show_the_file_seal_with_the_block_and_are_discarded_once_freed() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let file = file_of_pages("seal", 3);
    let mut batch = exec.batch();
    let image = batch.alloc_module_image(&[(4 * PAGE, MemoryKind::Code)], 4 * PAGE, 1).unwrap();
    let code = image[0].as_ref().unwrap();
    let addr = code.addr();
    // Pages 1 and 2 of the block from the file's pages 1 and 2; the caller writes the others.
    batch.map_file(code, PAGE, 2 * PAGE, &file, PAGE as u64).unwrap();
    batch.write(code, 0, &[0xC3; PAGE]).unwrap();
    batch.write(code, 3 * PAGE, &[0xC3; PAGE]).unwrap();
    assert!(
        bytes(addr + PAGE, 2 * PAGE) == [vec![2; PAGE], vec![3; PAGE]].concat(),
        "the file's pages 1 and 2"
    );
    assert_eq!(K.protection_at(addr + PAGE), Some(Protection::ReadWrite), "open: as the block's others");
    batch.seal().unwrap();
    for page in 0..4 {
        assert_eq!(K.protection_at(addr + page * PAGE), Some(Protection::ReadExec), "page {page} sealed");
    }
    assert!(bytes(addr + PAGE, PAGE) == vec![2; PAGE], "the file's bytes, sealed");
    let recycled = exec.stats().pages_recycled;
    drop(image);
    // Freed: the mapped pages discarded (zero pages, nothing of the file's), the block's
    // others kept for reuse as usual.
    assert!(bytes(addr + PAGE, 2 * PAGE).iter().all(|&b| b == 0), "the mapped pages are discarded");
    assert_eq!(K.protection_at(addr + PAGE), Some(Protection::ReadWrite));
    assert_eq!(exec.stats().pages_recycled, recycled + 2, "the two copied pages are kept for reuse");
    // The same pages serve a new block as fresh ones.
    let mut batch = exec.batch();
    let block = batch.alloc(4 * PAGE, 16).unwrap();
    assert!(bytes(block.addr(), 4 * PAGE).iter().all(|&b| b == 0), "handed out zeroed");
}

#[test]
#[cfg_attr(miri, ignore = "the simulated kernel reads the file through a syscall, which Miri cannot run")]
fn requests_that_are_not_whole_pages_of_an_open_block_are_refused_and_change_nothing() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let file = file_of_pages("refused", 2);
    let mut batch = exec.batch();
    let block = batch.alloc(2 * PAGE, 16).unwrap();
    let addr = block.addr();
    batch.write(&block, 0, &[0x55; 2 * PAGE]).unwrap();
    let not_mappable = |offset: usize, len: usize| ExecError::NotMappable { addr: addr + offset, len };
    assert_eq!(batch.map_file(&block, 1, PAGE, &file, 0), Err(not_mappable(1, PAGE)), "a page's middle");
    assert_eq!(batch.map_file(&block, 0, 100, &file, 0), Err(not_mappable(0, 100)), "part of a page");
    assert_eq!(
        batch.map_file(&block, 0, PAGE, &file, 1),
        Err(not_mappable(0, PAGE)),
        "a file offset off a page"
    );
    assert_eq!(batch.map_file(&block, 0, 0, &file, 0), Err(not_mappable(0, 0)), "nothing");
    assert!(matches!(batch.map_file(&block, PAGE, 2 * PAGE, &file, 0), Err(ExecError::NotOwned { .. })));
    assert!(matches!(batch.map_file(&block, usize::MAX, PAGE, &file, 0), Err(ExecError::NotOwned { .. })));
    let mut other = exec.batch();
    assert!(
        matches!(other.map_file(&block, 0, PAGE, &file, 0), Err(ExecError::NotOwned { .. })),
        "another batch's"
    );
    assert!(bytes(addr, 2 * PAGE).iter().all(|&b| b == 0x55), "the block as written");
    drop(other);
    batch.seal().unwrap();
    let recycled = exec.stats().pages_recycled;
    drop(block);
    assert!(exec.stats().pages_recycled > recycled, "nothing was mapped: the pages are kept for reuse");
}

#[test]
#[cfg_attr(miri, ignore = "the simulated kernel reads the file through a syscall, which Miri cannot run")]
fn a_mapping_the_kernel_refuses_leaves_the_block_to_its_writer_and_nothing_behind() {
    static K: SimulatedKernel = SimulatedKernel::new();
    static F: FaultInjector = FaultInjector::new(&K);
    let exec = ExecAllocator::with_kernel(config(), &F);
    let file = file_of_pages("fails", 2);
    // Warm up: the first image reserves the region that stays as the spare.
    drop(exec.batch().alloc(PAGE, 16).unwrap());
    exec.trim().unwrap();
    let usage = K.usage();
    let mut batch = exec.batch();
    let image = batch.alloc_module_image(&[(2 * PAGE, MemoryKind::Code)], 2 * PAGE, 1).unwrap();
    let code = image[0].as_ref().unwrap();
    F.fail_call(0);
    assert!(matches!(batch.map_file(code, 0, 2 * PAGE, &file, 0), Err(ExecError::Sys(_))));
    F.disarm();
    // The caller copies instead.
    batch.write(code, 0, &[0xC3; 2 * PAGE]).unwrap();
    batch.seal().unwrap();
    assert!(bytes(code.addr(), 2 * PAGE).iter().all(|&b| b == 0xC3), "the caller's copy");
    drop(image);
    exec.trim().unwrap();
    assert_eq!((K.usage(), exec.stats().pages_recycled), (usage, 0), "nothing left behind");
}

#[test]
fn pages_to_be_mapped_are_not_faulted_in_first() {
    static K: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &K);
    let mut batch = exec.batch();
    let segments = [(6 * PAGE, MemoryKind::Code)];
    let image = batch.alloc_module_image_mapping(&segments, 6 * PAGE, 0..4 * PAGE, 1).unwrap();
    let code = image[0].as_ref().unwrap().addr();
    let (from, len) = K.last_populate().expect("the copied pages are faulted in");
    assert_eq!(
        (from, from + len),
        (code + 4 * PAGE, code + 6 * PAGE),
        "only the pages after the mapped ones"
    );
    // Mapped at the end: the pages before (fresh pages, as above: recycled ones are not
    // faulted in).
    static L: SimulatedKernel = SimulatedKernel::new();
    let exec = ExecAllocator::with_kernel(config(), &L);
    let mut batch = exec.batch();
    let image = batch.alloc_module_image_mapping(&segments, 6 * PAGE, 3 * PAGE..6 * PAGE, 1).unwrap();
    let code = image[0].as_ref().unwrap().addr();
    let (from, len) = L.last_populate().unwrap();
    assert!(from <= code && from + len == code + 3 * PAGE, "up to the mapped pages");
}
