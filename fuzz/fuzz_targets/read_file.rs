//! Fuzz target: the core's module file reading on regular files, large files, FIFOs,
//! directories, missing paths and links the input makes (`smf::fuzzing::fuzz_read_file`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = smf::fuzzing::fuzz_read_file(data);
});
