//! Fuzz target: the note.sdn reader on any text, its writer checked against it
//! (`smf_runtime::fuzzing::fuzz_note_sdn`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = smf_runtime::fuzzing::fuzz_note_sdn(data);
});
