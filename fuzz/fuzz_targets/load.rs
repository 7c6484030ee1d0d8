//! Fuzz target: load (parse, place, relocate, seal) and unload any bytes
//! (`smf_core::fuzzing::fuzz_load`). Crashes are replayed by tests/tests/fuzz_replay.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = smf_core::fuzzing::fuzz_load(data);
});
