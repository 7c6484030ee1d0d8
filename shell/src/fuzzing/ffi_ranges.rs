//! The `ffi_ranges` target: the `rt_*` memory functions called in sequences decoded from the
//! input, with addresses inside, around and far from real allocations and file mappings, inside
//! this program's own heap and stack, and anywhere at all; offsets and lengths mostly ones a
//! caller would pass, sometimes anything. No call may crash; a call on a range that is not the
//! library's (this program's own buffers) gets its failure sentinel; after every call no
//! mapping of the process is writable and executable at once; at the end, once everything made
//! is freed, the library holds no allocation more than before. No code is ever called.

use std::ffi::CString;

use arbitrary::{Arbitrary, Unstructured};

use crate::ffi::rt_exec::*;
use crate::ffi::rt_mmap::*;

/// Most calls one input makes.
const MAX_CALLS: usize = 48;

/// An address.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Address {
    /// Near something the library made (by index among those made), shifted (within a few
    /// pages: what it made is mostly that small).
    Made { index: u8, delta: i16 },
    /// Inside this program's own heap buffer, shifted within it.
    Heap { delta: u16 },
    /// Anywhere.
    Raw(i64),
}

/// A size.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Size {
    /// The size of something made, shifted.
    Made { index: u8, delta: i16 },
    /// Any.
    Raw(i64),
}

/// A number for an argument with few meaningful values: one of them (by index), or any.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Number {
    /// The meaningful value of this index (modulo their count).
    Chosen(u8),
    /// Any.
    Raw(i64),
}

impl Number {
    /// This number, its meaningful values being `chosen`.
    fn among(self, chosen: &[i64]) -> i64 {
        match self {
            Number::Chosen(i) => chosen[usize::from(i) % chosen.len()],
            Number::Raw(value) => value,
        }
    }

    /// This number as a C `int`, its meaningful values being `chosen` (a raw one cut to 32
    /// bits, as a C caller's would be).
    #[allow(clippy::cast_possible_truncation)]
    fn among_ints(self, chosen: &[i32]) -> i32 {
        match self {
            Number::Chosen(i) => chosen[usize::from(i) % chosen.len()],
            Number::Raw(value) => value as i32,
        }
    }
}

/// The offsets into a range a caller would mostly pass.
const OFFSETS: &[i64] = &[0, 1, 8, 100, 4095, 4096, 8192, -1];

/// The lengths a caller would mostly pass.
const LENGTHS: &[i64] = &[0, 1, 16, 100, 4096, 5000, -1];

/// A length to pass and a buffer of that many bytes: a length over 64 KiB is cut to that (a
/// negative one is passed as it is, with no buffer).
fn buffer(length: i64) -> (i64, Vec<u8>) {
    let bytes = usize::try_from(length).map_or(0, |n| n.min(1 << 16));
    let length = if length < 0 { length } else { bytes as i64 };
    (length, vec![0u8; bytes])
}

/// One call.
#[derive(Arbitrary, Debug)]
enum Call {
    AllocExec { size: u32 },
    AllocRw { size: u32 },
    MapFile { prot: Number, flags: Number, offset: Number, length: Number },
    Free { at: Address, size: Size },
    Write { at: Address, offset: Number, len: u16 },
    MakeExecutable { at: Address, size: Size },
    FlushIcache { at: Address, size: Size },
    FunctionPointer { at: Address },
    IsExecutable { at: Address },
    GetProtection { at: Address },
    SetProtection { at: Address, size: Size, prot: i32 },
    Munmap { at: Address, size: Size },
    ReadBytes { at: Address, offset: Number, length: Number },
    ReadString { at: Address, offset: Number, max_length: Number, cap: Number },
    Msync { at: Address, size: Size, is_async: bool },
    Mlock { at: Address, size: Size },
    Munlock { at: Address, size: Size },
    Madvise { at: Address, size: Size, advice: i32 },
}

/// What the library made for this input: allocations and file mappings.
#[derive(Clone, Copy, Debug)]
struct Made {
    address: i64,
    size: i64,
    mapping: bool,
}

/// The file the mappings map (three pages and a bit).
fn mapped_file() -> &'static CString {
    static FILE: std::sync::OnceLock<CString> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let path = super::module_files::directory().join("mapped.bin");
        let bytes: Vec<u8> = (0..3 * 4096 + 100).map(|i| (i % 251) as u8).collect();
        if let Err(error) = std::fs::write(&path, bytes) {
            panic!("cannot write the fuzz target's file: {error}");
        }
        CString::new(path.into_os_string().into_encoded_bytes()).unwrap_or_default()
    })
}

/// Runs the calls `data` decodes to; returns how many ran.
pub fn fuzz_ffi_ranges(data: &[u8]) -> usize {
    let mut input = Unstructured::new(data);
    let before = rt_exec_memory_count();
    let mut heap = vec![0x5Au8; 1 << 16];
    let mut made: Vec<Made> = Vec::new();
    let mut calls = 0;
    while calls < MAX_CALLS {
        let Ok(call) = Call::arbitrary(&mut input) else { break };
        let heap_range = heap.as_ptr() as i64..heap.as_ptr() as i64 + heap.len() as i64;
        let address = |at: Address| match at {
            Address::Made { index, delta } => made
                .get(usize::from(index) % made.len().max(1))
                .map_or(i64::from(delta), |m| m.address.wrapping_add(i64::from(delta))),
            Address::Heap { delta } => heap_range.start + i64::from(delta),
            Address::Raw(raw) => raw,
        };
        let size = |size: Size| match size {
            Size::Made { index, delta } => made
                .get(usize::from(index) % made.len().max(1))
                .map_or(i64::from(delta), |m| m.size.wrapping_add(i64::from(delta))),
            Size::Raw(raw) => raw,
        };
        // A call on this program's own heap must fail: the range is not the library's.
        let ours = |at: Address| matches!(at, Address::Heap { .. });
        match call {
            Call::AllocExec { size } => {
                record(&mut made, rt_alloc_exec_memory(i64::from(size % (1 << 20))), size, false)
            }
            Call::AllocRw { size } => {
                record(&mut made, rt_alloc_rw_memory(i64::from(size % (1 << 20))), size, false)
            }
            Call::MapFile { prot, flags, offset, length } => {
                // Mostly arguments a caller would pass (every protection, both sharings, the
                // file's pages, lengths up to past its end), sometimes anything.
                let prot = prot.among_ints(&[1, 3, 0, 2, 4, 5, 7]);
                let flags = flags.among_ints(&[MAP_PRIVATE, MAP_SHARED]);
                let offset = offset.among(&[0, 4096, 8192, 12288, 16384, 100]);
                let length = length.among(&[0, 1, 100, 4096, 5000, 3 * 4096 + 100, 1 << 20]);
                // SAFETY: a NUL-terminated path.
                #[allow(unsafe_code)]
                let mapping = unsafe { rt_mmap_file(mapped_file().as_ptr(), prot, flags, offset, length) };
                if mapping.address != 0 {
                    made.push(Made { address: mapping.address, size: mapping.size, mapping: true });
                }
            }
            Call::Free { at, size: s } => {
                let start = address(at);
                let freed = rt_free_exec_memory(start, size(s));
                assert!(!(freed && ours(at)), "freed this program's heap");
                forget_if(&mut made, freed, start);
            }
            Call::Write { at, offset, len } => {
                let offset = offset.among(OFFSETS);
                let code = vec![0xCCu8; usize::from(len)];
                // SAFETY: `code` is readable for `len` bytes.
                #[allow(unsafe_code)]
                let written =
                    unsafe { rt_write_exec_memory(address(at), code.as_ptr(), i64::from(len), offset) };
                assert!(
                    !(written >= 0 && ours(at)) || len == 0 && written <= 0,
                    "wrote into this program's heap"
                );
            }
            Call::MakeExecutable { at, size: s } => {
                let sealed = rt_make_executable(address(at), size(s));
                assert!(!(sealed && ours(at)), "made this program's heap executable");
            }
            Call::FlushIcache { at, size: s } => rt_flush_icache(address(at), size(s)),
            Call::FunctionPointer { at } => {
                let pointer = rt_get_function_pointer(address(at));
                assert!(!(pointer != 0 && ours(at)), "a function pointer into this program's heap");
            }
            Call::IsExecutable { at } => {
                let executable = rt_is_executable(address(at));
                assert!(!(executable && ours(at)), "this program's heap is not executable");
            }
            Call::GetProtection { at } => {
                let _ = rt_get_protection(address(at));
            }
            Call::SetProtection { at, size: s, prot } => {
                let set = rt_set_protection(address(at), size(s), prot);
                assert!(!(set && ours(at)), "changed the protection of this program's heap");
            }
            Call::Munmap { at, size: s } => {
                let start = address(at);
                let unmapped = rt_munmap(start, size(s));
                assert!(!(unmapped && ours(at)), "unmapped this program's heap");
                forget_if(&mut made, unmapped, start);
            }
            Call::ReadBytes { at, offset, length } => {
                let offset = offset.among(OFFSETS);
                let (length, mut dst) = buffer(length.among(LENGTHS));
                // SAFETY: `dst` is writable for `length` bytes (none if it is negative).
                #[allow(unsafe_code)]
                let read = unsafe { rt_mmap_read_bytes(address(at), offset, length, dst.as_mut_ptr()) };
                assert!(!(read > 0 && ours(at)), "read this program's heap as a mapping");
            }
            Call::ReadString { at, offset, max_length, cap } => {
                let (offset, max_length) = (offset.among(OFFSETS), max_length.among(LENGTHS));
                let (cap, mut dst) = buffer(cap.among(LENGTHS));
                // SAFETY: `dst` is writable for `cap` bytes (none if it is negative).
                #[allow(unsafe_code)]
                let read =
                    unsafe { rt_mmap_read_string(address(at), offset, max_length, dst.as_mut_ptr(), cap) };
                assert!(!(read >= 0 && ours(at)), "read this program's heap as a mapping");
            }
            Call::Msync { at, size: s, is_async } => {
                let synced = rt_msync(address(at), size(s), is_async);
                assert!(!(synced && ours(at)), "synced this program's heap as a mapping");
            }
            Call::Mlock { at, size: s } => {
                let _ = rt_mlock(address(at), size(s));
            }
            Call::Munlock { at, size: s } => {
                let _ = rt_munlock(address(at), size(s));
            }
            Call::Madvise { at, size: s, advice } => {
                let advised = rt_madvise(address(at), size(s), advice);
                assert!(!(advised && ours(at)), "advised the kernel on this program's heap");
            }
        }
        assert!(heap.iter().all(|&b| b == 0x5A), "this program's heap was written");
        no_writable_code();
        calls += 1;
    }
    for m in made.drain(..) {
        if m.mapping {
            assert!(rt_munmap(m.address, m.size), "a mapping made here could not be unmapped: {m:?}");
        } else {
            assert!(
                rt_free_exec_memory(m.address, m.size),
                "an allocation made here could not be freed: {m:?}"
            );
        }
    }
    heap.clear();
    assert_eq!(rt_exec_memory_count(), before, "allocations left behind");
    calls
}

/// Records an allocation of `size` at `address` (0: failed).
fn record(made: &mut Vec<Made>, address: i64, size: u32, mapping: bool) {
    if address != 0 {
        made.push(Made { address, size: i64::from(size % (1 << 20)), mapping });
    }
}

/// Forgets what starts at `address` once a call released it.
fn forget_if(made: &mut Vec<Made>, released: bool, address: i64) {
    if released {
        made.retain(|m| m.address != address);
    }
}

/// No mapping of this process is writable and executable (its map, read from the kernel).
fn no_writable_code() {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else { return };
    for line in maps.lines() {
        let permissions = line.split_whitespace().nth(1).unwrap_or("");
        assert!(!(permissions.contains('w') && permissions.contains('x')), "writable and executable: {line}");
    }
}
