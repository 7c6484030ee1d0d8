//! Fuzz target: load-time instantiation requests through a compiler callback that succeeds,
//! fails, recurses or emits any bytes (`smf::fuzzing::fuzz_instantiate_ops`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = smf::fuzzing::fuzz_instantiate_ops(data);
});
