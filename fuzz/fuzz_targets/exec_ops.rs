//! Fuzz target: the W^X allocator over a simulated kernel that fails the calls the input picks
//! (`smf_runtime::fuzzing::fuzz_exec_ops`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = smf_runtime::fuzzing::fuzz_exec_ops(data);
});
