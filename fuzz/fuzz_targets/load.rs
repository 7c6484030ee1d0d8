//! Fuzz target: up to three modules from one input, loaded and linked to each other and the
//! host, then all released (`smf_runtime::fuzzing::fuzz_load`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = smf_runtime::fuzzing::fuzz_load(data);
});
