//! Fuzz target: the template-code and template-meta readers on any bytes
//! (`smf_format::fuzzing::fuzz_templates`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = smf_format::fuzzing::fuzz_templates(data);
});
