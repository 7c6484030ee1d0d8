//! Fuzz target: any bytes as an ELF object into `smf pack`; what it writes must verify and load
//! (`smf_tool::fuzzing::fuzz_pack`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = smf_tool::fuzzing::fuzz_pack(data);
});
