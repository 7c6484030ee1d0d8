//! The `exec_ops` target: the W^X allocator driven by operations decoded from the input
//! (batches opened, filled, sealed and abandoned; blocks and module images allocated, written,
//! patched and freed; `trim`; a kernel call made to fail at any point) over the simulated
//! kernel, with a shadow copy of every block's bytes. After every step:
//! - every live block holds exactly the bytes written to it (a failed patch changed nothing);
//! - the allocator's view of each block (sealed, kind, protection) is the kernel's: the
//!   bookkeeping stays true to the pages, whatever call failed;
//! - sealed code is executable and never writable (unless the RWX debugging switch is on),
//!   open pages writable and never executable;
//! - every error from the kernel is one the fault injector made (so the allocator never asked
//!   for a writable and executable page, or for a range it does not have);
//! - the live block count is the number of blocks held.
//!
//! At the end every block and batch is dropped, `trim` retries what failed, and the simulated
//! kernel holds no mapping once the allocator is gone.

#![allow(unsafe_code)]

use alloc::vec;
use alloc::vec::Vec;

use crate::exec::{
    Block, CodeBatch, ExecAllocator, ExecConfig, ExecError, FaultInjector, MemoryKind, SimulatedKernel,
};
use crate::sys::Protection;
use smf_format::fuzzing::Input;

/// Most operations one input runs.
const MAX_OPS: usize = 64;
/// Most batches open at once.
const MAX_BATCHES: usize = 3;
/// Most blocks held at once.
const MAX_BLOCKS: usize = 24;

/// The simulated kernels, one per page size and RWX switch (each input runs alone: see
/// [`fuzz_exec_ops`]'s lock), each behind a fault injector.
static SIM_4K: SimulatedKernel = SimulatedKernel::new();
static SIM_16K: SimulatedKernel = SimulatedKernel::with_page_size(16 << 10, false);
static SIM_RWX: SimulatedKernel = SimulatedKernel::with_page_size(4 << 10, true);
static FAULTS_4K: FaultInjector = FaultInjector::new(&SIM_4K);
static FAULTS_16K: FaultInjector = FaultInjector::new(&SIM_16K);
static FAULTS_RWX: FaultInjector = FaultInjector::new(&SIM_RWX);

/// Where a held block stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Its batch is open: written through the batch.
    Open,
    /// Sealed.
    Sealed,
    /// Its batch ended without a seal (dropped), or its seal failed midway (pages sealed before
    /// the failure stay sealed, the others end open): valid, written no more.
    Ended,
}

/// A block, the bytes it must hold, what it is and where it stands.
struct Held<'a> {
    block: Block<'a>,
    batch: u64,
    shadow: Vec<u8>,
    kind: MemoryKind,
    stage: Stage,
}

/// The allocator under test, its kernel and what the input made so far.
struct Run<'a> {
    exec: &'a ExecAllocator,
    sim: &'static SimulatedKernel,
    faults: &'static FaultInjector,
    rwx: bool,
    /// Empty regions the allocator may keep.
    spare_regions: usize,
    batches: Vec<CodeBatch<'a>>,
    held: Vec<Held<'a>>,
    /// Operations that ran.
    ops: usize,
}

/// Runs the operations of `data` on an allocator over a simulated kernel (the first byte
/// chooses the page size, the RWX switch and the region size) and checks the allocator's
/// promises after each; returns the number of operations run.
pub fn fuzz_exec_ops(data: &[u8]) -> usize {
    static ALONE: spin::Mutex<()> = spin::Mutex::new(());
    let _alone = ALONE.lock();
    let mut input = Input::new(data);
    let setup = input.byte();
    let (sim, faults, rwx) = match setup % 3 {
        0 => (&SIM_4K, &FAULTS_4K, false),
        1 => (&SIM_16K, &FAULTS_16K, false),
        _ => (&SIM_RWX, &FAULTS_RWX, true),
    };
    faults.disarm();
    assert_eq!(sim.usage().mappings, 0, "an earlier input left mappings behind");
    let page = 4096usize << (2 * usize::from(setup % 3 == 1));
    let config = ExecConfig {
        region_size: page << (2 + (setup >> 2) % 8),
        spare_regions: usize::from(setup >> 5 & 1),
        allow_rwx: rwx,
    };
    let exec = ExecAllocator::with_kernel(config, faults);
    let ops = {
        let spare_regions = config.spare_regions;
        let mut run = Run {
            exec: &exec,
            sim,
            faults,
            rwx,
            spare_regions,
            batches: Vec::new(),
            held: Vec::new(),
            ops: 0,
        };
        while !input.is_empty() && run.ops < MAX_OPS {
            run.step(&mut input);
            run.ops += 1;
            run.check();
        }
        run.finish()
    };
    drop(exec);
    assert_eq!(sim.usage().mappings, 0, "mappings left once the allocator was dropped");
    ops
}

impl<'a> Run<'a> {
    /// Runs one operation, checking what it returns against what it may return.
    fn step(&mut self, input: &mut Input<'_>) {
        let op = input.byte();
        let failures = self.faults.failures();
        let result = match op % 14 {
            0 => {
                if self.batches.len() < MAX_BATCHES {
                    let batch = match input.byte() % 2 {
                        0 => self.exec.batch(),
                        _ => self.exec.batch_of_many(),
                    };
                    self.batches.push(batch);
                }
                Ok(())
            }
            1 => self.alloc(input),
            2 => self.install(input),
            3 => self.install_many(input),
            4 => self.image(input),
            5 => self.write(input),
            6 => self.seal(input),
            7 => {
                self.abandon(input);
                Ok(())
            }
            8 => self.patch(input),
            9 => {
                self.drop_blocks(input);
                Ok(())
            }
            10 => self.free_all(input),
            11 => {
                self.faults.fail_call(usize::from(input.byte() % 8));
                Ok(())
            }
            12 => self.exec.trim(),
            _ => {
                self.probe(input);
                Ok(())
            }
        };
        if let Err(error) = result {
            let _ = smf_format::fuzzing::formatted(&error);
            if let ExecError::Sys(sys) = error {
                assert!(
                    self.faults.failures() > failures,
                    "the kernel refused a call the allocator made ({sys}): not an injected failure"
                );
            }
        }
    }

    fn batch_index(&self, input: &mut Input<'_>) -> Option<usize> {
        let n = self.batches.len();
        (n > 0).then(|| usize::from(input.byte()) % n)
    }

    fn block_index(&self, input: &mut Input<'_>) -> Option<usize> {
        let n = self.held.len();
        (n > 0).then(|| usize::from(input.byte()) % n)
    }

    fn hold(&mut self, block: Block<'a>, batch: u64, shadow: Vec<u8>, kind: MemoryKind) {
        assert_eq!(block.size(), shadow.len(), "a block's size is not what was asked for");
        self.held.push(Held { block, batch, shadow, kind, stage: Stage::Open });
    }

    /// A size of up to 64 KiB, sometimes zero, sometimes several pages.
    fn size(input: &mut Input<'_>) -> usize {
        let raw = input.u16();
        if raw & 0x8000 != 0 {
            (raw & 0x7FFF) * 4
        } else {
            raw & 0x0FFF
        }
    }

    /// An alignment: mostly a power of two up to twice the page, sometimes not one.
    fn align(input: &mut Input<'_>) -> usize {
        let b = input.byte();
        if b & 0x80 != 0 {
            usize::from(b & 0x7F)
        } else {
            1 << (b % 16)
        }
    }

    fn alloc(&mut self, input: &mut Input<'_>) -> Result<(), ExecError> {
        let (size, align) = (Self::size(input), Self::align(input));
        let Some(b) = self.batch_index(input) else { return Ok(()) };
        let result = self.batches[b].alloc(size, align);
        let page = self.exec.page_size();
        match &result {
            Err(ExecError::ZeroSize) => assert_eq!(size, 0),
            Err(ExecError::BadAlignment { .. }) => assert!(!align.is_power_of_two() || align > page),
            Err(ExecError::Sys(_)) => {}
            Err(other) => panic!("alloc({size}, {align}) failed: {other}"),
            Ok(block) => {
                assert!(
                    size > 0 && align.is_power_of_two() && align <= page,
                    "alloc({size}, {align}) succeeded"
                );
                assert_eq!(block.addr() % align, 0, "a block is not aligned as asked");
                assert!(block.size() >= size);
            }
        }
        let block = result?;
        let (id, len) = (self.batches[b].id().raw(), block.size());
        if self.held.len() < MAX_BLOCKS {
            self.hold(block, id, vec![0; len], MemoryKind::Code);
        }
        Ok(())
    }

    fn install(&mut self, input: &mut Input<'_>) -> Result<(), ExecError> {
        let len = Self::size(input).min(8192);
        let code = input.bytes(len);
        let Some(b) = self.batch_index(input) else { return Ok(()) };
        let block = self.batches[b].install(&code, 16)?;
        let mut shadow = code;
        shadow.resize(block.size(), 0);
        let id = self.batches[b].id().raw();
        if self.held.len() < MAX_BLOCKS {
            self.hold(block, id, shadow, MemoryKind::Code);
        }
        Ok(())
    }

    fn install_many(&mut self, input: &mut Input<'_>) -> Result<(), ExecError> {
        let count = usize::from(input.byte() % 6);
        let codes: Vec<Vec<u8>> = (0..count)
            .map(|_| {
                let len = usize::from(input.byte());
                input.bytes(len)
            })
            .collect();
        let Some(b) = self.batch_index(input) else { return Ok(()) };
        let blocks = self.batches[b].install_many(codes.iter().map(Vec::as_slice), 16)?;
        assert_eq!(blocks.len(), codes.len());
        let id = self.batches[b].id().raw();
        for (block, code) in blocks.into_iter().zip(codes) {
            let mut shadow = code;
            shadow.resize(block.size(), 0);
            if self.held.len() < MAX_BLOCKS {
                self.hold(block, id, shadow, MemoryKind::Code);
            }
        }
        Ok(())
    }

    /// A module image of up to three segments; its first bytes are written at once when the
    /// allocation says they will be (its contract).
    fn image(&mut self, input: &mut Input<'_>) -> Result<(), ExecError> {
        let kinds = [MemoryKind::Code, MemoryKind::ReadOnly, MemoryKind::ReadWrite];
        let count = input.byte() % 4;
        let segments: Vec<(usize, MemoryKind)> = (0..count)
            .map(|_| {
                let size = Self::size(input);
                (size, kinds[usize::from(input.byte()) % 3])
            })
            .collect();
        let overwritten = if input.byte() & 1 != 0 { segments.first().map_or(0, |s| s.0) } else { 0 };
        let align = 1usize << (input.byte() % 22);
        let Some(b) = self.batch_index(input) else { return Ok(()) };
        let blocks = self.batches[b].alloc_module_image(&segments, overwritten, align)?;
        assert_eq!(blocks.len(), segments.len());
        let id = self.batches[b].id().raw();
        let pattern = input.bytes(64);
        // The first `overwritten` bytes are the first segment's (when it has any); the caller
        // writes them in full. Every other byte of the image must read zero, recycled or not.
        for (i, (block, (size, kind))) in blocks.into_iter().zip(segments).enumerate() {
            let Some(block) = block else {
                assert_eq!(size, 0, "a segment of {size} bytes got no block");
                continue;
            };
            let mut shadow = vec![0; block.size()];
            if overwritten > 0 && i == 0 {
                for (i, byte) in shadow.iter_mut().enumerate() {
                    *byte = pattern[i % pattern.len()];
                }
                self.batches[b]
                    .write(&block, 0, &shadow)
                    .expect("an image block of the batch takes its bytes");
            }
            // Not held past the limit: dropped here, which frees it.
            if self.held.len() < MAX_BLOCKS {
                self.hold(block, id, shadow, kind);
            }
        }
        Ok(())
    }

    fn write(&mut self, input: &mut Input<'_>) -> Result<(), ExecError> {
        let (offset, len) = (input.u16(), usize::from(input.byte()));
        let bytes = input.bytes(len);
        let (Some(i), Some(b)) = (self.block_index(input), self.batch_index(input)) else { return Ok(()) };
        let held = &mut self.held[i];
        let result = self.batches[b].write(&held.block, offset, &bytes);
        let ours = held.stage == Stage::Open && held.batch == self.batches[b].id().raw();
        let inside = offset.checked_add(len).is_some_and(|end| end <= held.shadow.len());
        match result {
            Ok(()) => {
                assert!(ours && inside, "a write outside an open block of the batch succeeded");
                held.shadow[offset..offset + len].copy_from_slice(&bytes);
            }
            Err(ExecError::NotOwned { .. }) => {
                assert!(!(ours && inside), "a write inside its block was refused")
            }
            Err(other) => panic!("a write failed: {other}"),
        }
        Ok(())
    }

    fn seal(&mut self, input: &mut Input<'_>) -> Result<(), ExecError> {
        let Some(b) = self.batch_index(input) else { return Ok(()) };
        let batch = self.batches.swap_remove(b);
        let id = batch.id().raw();
        let result = batch.seal();
        let stage = if result.is_ok() { Stage::Sealed } else { Stage::Ended };
        for held in self.held.iter_mut().filter(|h| h.batch == id) {
            held.stage = stage;
        }
        result
    }

    fn abandon(&mut self, input: &mut Input<'_>) {
        let Some(b) = self.batch_index(input) else { return };
        let id = self.batches.swap_remove(b).id().raw();
        for held in self.held.iter_mut().filter(|h| h.batch == id) {
            held.stage = Stage::Ended;
        }
    }

    fn patch(&mut self, input: &mut Input<'_>) -> Result<(), ExecError> {
        let (offset, len) = (input.u16(), usize::from(input.byte()));
        let bytes = input.bytes(len);
        let Some(i) = self.block_index(input) else { return Ok(()) };
        let held = &mut self.held[i];
        let sealed = self.exec.lookup(held.block.addr(), 1).is_some_and(|info| info.sealed);
        let result = self.exec.patch(&held.block, offset, &bytes);
        let inside = offset.checked_add(len).is_some_and(|end| end <= held.shadow.len());
        match &result {
            Ok(()) => {
                assert!(inside && sealed, "a patch of an unsealed block or outside succeeded");
                held.shadow[offset..offset + len].copy_from_slice(&bytes);
            }
            Err(ExecError::NotOwned { .. }) => {
                assert!(!inside, "a patch inside its block was refused as not ours")
            }
            Err(ExecError::NotSealed { .. }) => assert!(!sealed, "a sealed block was refused a patch"),
            Err(ExecError::Sys(_)) => assert!(sealed),
            Err(other) => panic!("a patch failed: {other}"),
        }
        result
    }

    /// Drops up to four held blocks (each freed as it goes).
    fn drop_blocks(&mut self, input: &mut Input<'_>) {
        for _ in 0..input.byte() % 5 {
            if let Some(i) = self.block_index(input) {
                drop(self.held.swap_remove(i));
            }
        }
    }

    /// Frees a run of held blocks together.
    fn free_all(&mut self, input: &mut Input<'_>) -> Result<(), ExecError> {
        let Some(start) = self.block_index(input) else { return Ok(()) };
        let end = (start + usize::from(input.byte() % 6)).min(self.held.len());
        let blocks: Vec<Block<'a>> = self.held.drain(start..end).map(|h| h.block).collect();
        self.exec.free_all(blocks)
    }

    /// Lookups at addresses in, around and between blocks: only a live block answers, with
    /// itself.
    fn probe(&mut self, input: &mut Input<'_>) {
        let Some(i) = self.block_index(input) else { return };
        let delta = input.u16() as isize - 0x8000;
        let addr = self.held[i].block.addr().wrapping_add_signed(delta);
        match self.exec.lookup(addr, 1) {
            Some(info) => {
                let owner = self.held.iter().find(|h| h.block.contains(addr, 1));
                let owner = owner.expect("a lookup answered with a block no one holds");
                assert_eq!((info.addr, info.size), (owner.block.addr(), owner.block.size()));
            }
            None => {
                assert!(!self.held.iter().any(|h| h.block.contains(addr, 1)), "a held block was not found")
            }
        }
        let _ = self.exec.sync_icache(&self.held[i].block, 0, 1);
    }

    /// The promises that hold after every operation (the module doc lists them).
    fn check(&self) {
        let stats = self.exec.stats();
        assert_eq!(stats.blocks_live, self.held.len(), "live blocks are not the blocks held");
        let held_bytes: usize = self.held.iter().map(|h| h.block.size()).sum();
        assert_eq!(stats.bytes_live, held_bytes, "live bytes are not the held blocks' sizes");
        assert_eq!(stats.regions, self.sim.usage().mappings, "regions are not the kernel's mappings");
        let page = self.exec.page_size();
        for held in &self.held {
            let (addr, size) = (held.block.addr(), held.block.size());
            // SAFETY: the block is live (held), inside a simulated mapping: heap memory,
            // readable whatever protection the simulation records; nothing writes it meanwhile.
            let bytes = unsafe { core::slice::from_raw_parts(addr as *const u8, size) };
            assert!(bytes == held.shadow.as_slice(), "a block does not hold what was written to it");
            let info = self.exec.lookup(addr, size).expect("a held block is live");
            assert_eq!((info.addr, info.size, info.kind), (addr, size, held.kind));
            match held.stage {
                Stage::Open => {
                    assert_eq!(info.batch.map(|b| b.raw()), Some(held.batch), "an open block's batch")
                }
                Stage::Sealed => assert!(info.sealed, "a block of a sealed batch is not sealed"),
                Stage::Ended => {}
            }
            let expected = match (info.sealed, held.kind) {
                (true, MemoryKind::Code) if self.rwx => Protection::ReadWriteExec,
                (true, MemoryKind::Code) => Protection::ReadExec,
                (true, MemoryKind::ReadOnly) => Protection::Read,
                (true, MemoryKind::ReadWrite) => Protection::ReadWrite,
                (false, _) if self.rwx => Protection::ReadWriteExec,
                (false, _) => Protection::ReadWrite,
            };
            let mut at = addr & !(page - 1);
            while at < addr + size {
                let kernel = self.sim.protection_at(at);
                assert_eq!(
                    self.exec.protection_at(at),
                    kernel,
                    "the allocator's protection is not the page's"
                );
                assert_eq!(kernel, Some(expected), "a {:?} block's page is {kernel:?}", held.stage);
                at += page;
            }
        }
    }

    /// Drops everything, retries what failed, and checks that nothing is left; returns the
    /// operations run.
    fn finish(mut self) -> usize {
        self.faults.disarm();
        self.batches.clear();
        self.held.clear();
        self.exec.trim().expect("trim without failures");
        let stats = self.exec.stats();
        let left =
            (stats.blocks_live, stats.bytes_live, stats.pages_open, stats.pages_sealed, stats.trap_pages);
        assert_eq!(left, (0, 0, 0, 0, 0), "pages left once every block was freed and trimmed: {stats:?}");
        assert!(stats.regions <= self.spare_regions, "more regions kept than spare: {stats:?}");
        self.ops
    }
}
