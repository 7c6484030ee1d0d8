//! Fuzz target: the `rt_*` memory functions on ranges inside, around and far from what they
//! made, and on this program's own heap (`smf::fuzzing::fuzz_ffi_ranges`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = smf::fuzzing::fuzz_ffi_ranges(data);
});
