//! Benchmark "exec": install 10,000 functions of 64 bytes and make them callable.
//!
//! Ours: one batch in the W^X allocator (blocks packed into shared pages, one protection change
//! for the whole batch). Theirs: the Simple runtime spec's original approach, one anonymous
//! mapping, one write and one protection change per function. Both run in the same process,
//! alternating; cleanup (free/munmap) is not timed for either. Also reported: the mappings each
//! side adds (target for ours: under one per 64 KiB of code), and the cost of one seal and of
//! one patch. Beside them, the floor of any allocator that puts the functions in fresh memory
//! (one mapping for all, written, one protection change: the kernel still provides and zeroes
//! every page) and ours again with an allocator in use already (its region reserved and its
//! pages recycled, as in a long-running JIT), which bound what the ratio can reach.

// Running the installed functions needs `transmute` of their addresses; the baseline maps and
// protects memory itself.
#![allow(unsafe_code)]

use std::time::{Duration, Instant};

use smf_runtime::exec::{Block, ExecAllocator};
use smf_runtime::sys::{self, Protection};

use super::code::{self, map_write_protect, returning, unmap_pages};
use super::{median, ms, ratio, us};

const FUNCTIONS: usize = 10_000;
const SIZE: usize = 64;

fn function(value: u16) -> [u8; SIZE] {
    returning(value)
}

fn codes() -> Vec<[u8; SIZE]> {
    (0..FUNCTIONS).map(|i| function((i % 65_536) as u16)).collect()
}

/// Calls the function at `addr` and checks it returns `expected` (mod 2^16).
fn check(addr: usize, expected: usize) -> Result<(), String> {
    code::check(addr, (expected % 65_536) as u16)
}

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count())
}

/// Our batch path: every function in one batch, installed under one lock, sealed once.
fn install_ours<'e>(exec: &'e ExecAllocator, codes: &[[u8; SIZE]]) -> Result<Vec<Block<'e>>, String> {
    let mut batch = exec.batch();
    let blocks = batch.install_many(codes.iter().map(|c| &c[..]), 16).map_err(|e| e.to_string())?;
    batch.seal().map_err(|e| e.to_string())?;
    Ok(blocks)
}

/// The same, one `install` call (and lock acquisition) per function.
fn install_ours_one_by_one<'e>(
    exec: &'e ExecAllocator,
    codes: &[[u8; SIZE]],
) -> Result<Vec<Block<'e>>, String> {
    let mut batch = exec.batch();
    let blocks = codes
        .iter()
        .map(|c| batch.install(c, 16))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    batch.seal().map_err(|e| e.to_string())?;
    Ok(blocks)
}

fn install_baseline(codes: &[[u8; SIZE]], page: usize) -> Result<Vec<usize>, String> {
    codes.iter().map(|code| map_write_protect(code, page)).collect()
}

/// The floor: every function in one fresh mapping, written, then made read-execute with one
/// call. Returns the mapping and its length.
fn install_floor(codes: &[[u8; SIZE]], page: usize) -> Result<(usize, usize), String> {
    let len = (codes.len() * SIZE).div_ceil(page) * page;
    let p = sys::map_anonymous(len, Protection::ReadWrite).map_err(|e| e.to_string())?;
    for (i, code) in codes.iter().enumerate() {
        // SAFETY: `p` is a fresh writable mapping of `len` bytes, room for every function.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), p.add(i * SIZE), SIZE) };
    }
    // SAFETY: the mapping is ours and nothing references it.
    unsafe { sys::protect(p, len, Protection::ReadExec) }.map_err(|e| e.to_string())?;
    Ok((p as usize, len))
}

pub(super) fn run(rounds: usize) -> Result<(), String> {
    let codes = codes();
    let page = sys::page_size();
    let (mut ours, mut ours_single, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut floors, mut ours_warm) = (Vec::new(), Vec::new());
    // An allocator in use already: its first install (region reserved, pages faulted in) is
    // not timed.
    let warm = ExecAllocator::default();
    warm.free_all(install_ours(&warm, &codes)?).map_err(|e| e.to_string())?;
    let (mut ours_maps, mut theirs_maps) = (0, 0);
    for _ in 0..rounds {
        let exec = ExecAllocator::default();
        let before = mappings();
        let start = Instant::now();
        let blocks = install_ours(&exec, &codes)?;
        ours.push(start.elapsed());
        ours_maps = mappings().saturating_sub(before);
        for i in (0..FUNCTIONS).step_by(997) {
            check(blocks[i].addr(), i)?;
        }
        exec.free_all(blocks).map_err(|e| e.to_string())?;
        drop(exec); // unmaps everything

        let exec = ExecAllocator::default();
        let start = Instant::now();
        let blocks = install_ours_one_by_one(&exec, &codes)?;
        ours_single.push(start.elapsed());
        check(blocks[FUNCTIONS - 1].addr(), FUNCTIONS - 1)?;
        exec.free_all(blocks).map_err(|e| e.to_string())?;
        drop(exec);

        let before = mappings();
        let start = Instant::now();
        let pages = install_baseline(&codes, page)?;
        theirs.push(start.elapsed());
        theirs_maps = mappings().saturating_sub(before);
        for i in (0..FUNCTIONS).step_by(997) {
            check(pages[i], i)?;
        }
        unmap_pages(pages, page)?;

        let start = Instant::now();
        let (floor_at, floor_len) = install_floor(&codes, page)?;
        floors.push(start.elapsed());
        check(floor_at + (FUNCTIONS - 1) * SIZE, FUNCTIONS - 1)?;
        // SAFETY: mapped by `install_floor`; its code is no longer used.
        unsafe { sys::unmap(floor_at as *mut u8, floor_len) }.map_err(|e| e.to_string())?;

        let start = Instant::now();
        let blocks = install_ours(&warm, &codes)?;
        ours_warm.push(start.elapsed());
        check(blocks[FUNCTIONS / 2].addr(), FUNCTIONS / 2)?;
        warm.free_all(blocks).map_err(|e| e.to_string())?;
    }
    let (ours, ours_single, theirs) = (median(ours), median(ours_single), median(theirs));
    let (floor, ours_warm) = (median(floors), median(ours_warm));
    let code_kib = (FUNCTIONS * SIZE) as f64 / 65_536.0;
    println!("exec: install {FUNCTIONS} functions of {SIZE} bytes and make them callable ({rounds} rounds, medians)");
    println!(
        "  smf-runtime batch, install_many          {:>9.3} ms  {ours_maps:>6} mappings added",
        ms(ours)
    );
    println!("  smf-runtime batch, install one by one    {:>9.3} ms", ms(ours_single));
    println!(
        "  mmap+write+mprotect per function      {:>9.3} ms  {theirs_maps:>6} mappings added",
        ms(theirs)
    );
    println!(
        "  ratio baseline / smf-runtime: {:.1}x install_many (target >= 200x), {:.1}x one by one; \
         {:.2} mappings per 64 KiB of code (target < 1)",
        ratio(theirs, ours),
        ratio(theirs, ours_single),
        ours_maps as f64 / code_kib
    );
    println!(
        "  floor, one mapping written and protected once {:>9.3} ms (bound: baseline / floor {:.1}x)",
        ms(floor),
        ratio(theirs, floor)
    );
    println!(
        "  smf-runtime batch into an allocator in use    {:>9.3} ms (baseline / it {:.1}x)",
        ms(ours_warm),
        ratio(theirs, ours_warm)
    );
    super::report::ratio("exec_alloc_vs_mmap_each", ratio(theirs, ours), super::report::Goal::AtLeast(200.0));
    super::report::ratio(
        "exec_alloc_warm_vs_mmap_each",
        ratio(theirs, ours_warm),
        super::report::Goal::Reported,
    );
    super::report::ratio(
        "exec_alloc_floor_vs_mmap_each",
        ratio(theirs, floor),
        super::report::Goal::Reported,
    );
    let (seal, patch) = seal_and_patch_costs()?;
    println!(
        "  one seal (1 block, 1 page): {:.2} us; one patch of a sealed block: {:.2} us",
        us(seal),
        us(patch)
    );
    Ok(())
}

/// Median cost of sealing a one-block batch, and of patching 4 bytes of a sealed block.
fn seal_and_patch_costs() -> Result<(Duration, Duration), String> {
    let exec = ExecAllocator::default();
    let (mut seals, mut patches) = (Vec::new(), Vec::new());
    let mut live = Vec::new();
    for i in 0..1000u16 {
        let mut batch = exec.batch();
        let block = batch.install(&function(i), 16).map_err(|e| e.to_string())?;
        let start = Instant::now();
        batch.seal().map_err(|e| e.to_string())?;
        seals.push(start.elapsed());
        let value = (i + 1).to_le_bytes();
        let offset = if cfg!(target_arch = "aarch64") { 0 } else { 1 };
        let bytes: Vec<u8> = if cfg!(target_arch = "aarch64") {
            (0xD280_0000u32 | (u32::from(i + 1) << 5)).to_le_bytes().to_vec()
        } else {
            [value[0], value[1], 0, 0].to_vec()
        };
        let start = Instant::now();
        exec.patch(&block, offset, &bytes).map_err(|e| e.to_string())?;
        patches.push(start.elapsed());
        check(block.addr(), usize::from(i) + 1)?;
        live.push(block);
    }
    Ok((median(seals), median(patches)))
}
