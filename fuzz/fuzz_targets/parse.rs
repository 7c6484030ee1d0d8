//! Fuzz target: every way of parsing and walking a module (`smf_format::fuzzing::fuzz_one`).
//! Crashes found here are replayed on stable by `cargo test` (tests/tests/fuzz_replay.rs) once
//! copied into `fuzz/regressions/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = smf_format::fuzzing::fuzz_one(data);
});
