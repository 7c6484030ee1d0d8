//! Fuzz target: the module writer driven by decoded operations; what it writes the reader
//! reads back as written, or refuses with a typed error (`smf_format::fuzzing::fuzz_write`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = smf_format::fuzzing::fuzz_write(data);
});
