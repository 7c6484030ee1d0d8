//! Fuzz target: the C ABI's module, cache and instantiator functions with live, stale,
//! wrongly typed, made-up and NULL handles (`smf::fuzzing::fuzz_c_api`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = smf::fuzzing::fuzz_c_api(data);
});
