//! Shared helpers for the integration tests: fixtures and an allocation counter.

// Casts here are of test and tool values known to be small.
#![allow(clippy::cast_possible_truncation)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use std::time::Duration;

use smf_core::write::samples;
use smf_core::Dialect;

/// Every fixture the sweeps run over: name and bytes.
pub fn fixtures() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for d in Dialect::ALL {
        out.push((format!("return_42_{d}"), samples::return_42(d)));
        out.push((format!("rich_{d}"), samples::rich(d)));
    }
    out.push(("stubbed_S128".into(), stubbed(Dialect::S128)));
    out.push(("stubbed_R96".into(), stubbed(Dialect::R96)));
    out
}

/// The shebang every stubbed fixture starts with.
pub const SHEBANG: &[u8] = b"#!/usr/bin/env simple\n";

/// The rich module of `dialect` behind a shebang stub (S128 trailer or R96 appended header).
pub fn stubbed(dialect: Dialect) -> Vec<u8> {
    let mut b = samples_builder(dialect);
    b.stub(SHEBANG);
    if dialect == Dialect::R96 {
        b.placement(smf_core::HeaderPlacement::Trailer);
    }
    b.build().expect("stubbed module builds")
}

/// A small builder with code, a symbol and a relocation.
pub fn samples_builder(dialect: Dialect) -> smf_core::write::ModuleBuilder {
    use smf_core::write::{ModuleBuilder, SymbolSpec};
    let mut b = ModuleBuilder::new(dialect);
    b.add_code(b".text", &samples::RETURN_42);
    let main = b.add_symbol(SymbolSpec::function(b"main", 0, 6));
    b.add_relocation(1, main, smf_core::RelocKind::Pc32, 0);
    b.note_sdn("possible |id, template, type_args, mangled_name, required_by, can_defer|\n 0, \"A\", \"B\", \"A$B\", \"m\", true");
    b.entry_point(0);
    b
}

/// A global allocator that counts allocations made by the current thread, so tests can assert
/// that parsing allocates nothing.
#[derive(Debug)]
pub struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method forwards to `System` unchanged; the counter is a const-initialized
// thread-local `Cell`, which never allocates and cannot re-enter the allocator.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations made by this thread so far (counts only where `CountingAllocator` is installed).
pub fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// CPU time this thread has used: unlike wall-clock time, unaffected by other processes.
pub fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec.unsigned_abs(), u32::try_from(t.tv_nsec).unwrap_or(0))
}

/// Machine code for a function returning `value` (x86-64: `mov eax, imm32; ret`, aarch64:
/// `movz x0, #imm16; ret`).
pub fn return_const(value: u16) -> Vec<u8> {
    if cfg!(target_arch = "aarch64") {
        let movz = 0xD280_0000u32 | (u32::from(value) << 5);
        let ret = 0xD65F_03C0u32;
        [movz.to_le_bytes(), ret.to_le_bytes()].concat()
    } else {
        let mut code = vec![0xB8];
        code.extend_from_slice(&u32::from(value).to_le_bytes());
        code.push(0xC3);
        code
    }
}

/// Offset and bytes that change a [`return_const`] function to return `value`.
pub fn return_const_patch(value: u16) -> (usize, Vec<u8>) {
    if cfg!(target_arch = "aarch64") {
        (0, (0xD280_0000u32 | (u32::from(value) << 5)).to_le_bytes().to_vec())
    } else {
        (1, u32::from(value).to_le_bytes().to_vec())
    }
}

/// The lines of `/proc/self/maps`.
pub fn maps() -> Vec<String> {
    std::fs::read_to_string("/proc/self/maps").unwrap_or_default().lines().map(str::to_owned).collect()
}

/// Panics if any mapping of this process is writable and executable.
pub fn assert_no_rwx(step: &str) {
    for line in maps() {
        let perms = line.split_whitespace().nth(1).unwrap_or("");
        assert!(!(perms.contains('w') && perms.contains('x')), "{step}: rwx mapping: {line}");
    }
}

/// Number of mappings of this process.
pub fn mapping_count() -> usize {
    maps().len()
}

/// Kernel mappings of this process that overlap any of `ranges`.
pub fn mappings_within(ranges: &[std::ops::Range<usize>]) -> usize {
    maps()
        .iter()
        .filter_map(|line| {
            let (start, end) = line.split_whitespace().next()?.split_once('-')?;
            Some(usize::from_str_radix(start, 16).ok()?..usize::from_str_radix(end, 16).ok()?)
        })
        .filter(|m| ranges.iter().any(|r| m.start < r.end && r.start < m.end))
        .count()
}
