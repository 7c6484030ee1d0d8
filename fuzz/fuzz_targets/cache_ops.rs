//! Fuzz target: a module cache on a small budget driven by decoded operations, its promises
//! checked after every step (`smf::fuzzing::fuzz_cache_ops`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = smf::fuzzing::fuzz_cache_ops(data);
});
