//! Kernel calls that fail: a fault injector fails every kernel call of a load, seal, patch and
//! free in turn, checking that the error is clean, nothing leaks and the allocator keeps
//! working; a failed seal or page release leaves no page behind, nor one wrongly executable.

use alloc::vec;
use alloc::vec::Vec;

use super::fake::{FaultInjector, SimulatedKernel};
use super::tests::{bytes, config, module, options, shape, IMPORTS, PAGE};
use super::{Block, ExecAllocator, ExecConfig, ExecError, MemoryKind};
use crate::load::{LoadBatch, LoadedModule};
use crate::sys::Protection;
use smf_format::write::samples;

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
        assert_eq!(exec.stats().pages_recycled, 0, "call {k} of {calls}: trimmed, none kept for reuse");
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
