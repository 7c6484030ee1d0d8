//! Fuzz target: the execution manager on any text as CLIF, compiled and loaded or refused with a
//! message (`smf::fuzzing::fuzz_clif`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The manager turns a panic inside Cranelift into a refusal (`catch_unwind`); libFuzzer's
    // panic hook would abort at it before it is caught. Panics that escape the target still
    // abort (libfuzzer-sys catches them around every input).
    static QUIET_HOOK: std::sync::Once = std::sync::Once::new();
    QUIET_HOOK.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let _ = smf::fuzzing::fuzz_clif(data);
});
