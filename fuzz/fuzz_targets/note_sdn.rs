//! Fuzz target: the note.sdn reader on any text, its writer checked against it
//! (`smf_core::fuzzing::fuzz_note_sdn`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = smf_core::fuzzing::fuzz_note_sdn(data);
});
