//! Fuzz target: a compressed section's frame on any bytes, and the writer's frames read back
//! (`smf_format::fuzzing::fuzz_compressed`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = smf_format::fuzzing::fuzz_compressed(data);
});
