//! Replays the committed fuzz corpus and every input that ever crashed the fuzzer through the
//! same entry point the fuzz target uses, on stable, as an ordinary test.

// Casts here are of test and tool values known to be small.
#![allow(clippy::cast_possible_truncation)]

use std::path::Path;

fn replay(dir: &Path) -> usize {
    let mut replayed = 0;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_file() && !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
            let bytes = std::fs::read(&path).unwrap();
            let _ = smf_core::fuzzing::fuzz_one(&bytes);
            let _ = smf_core::fuzzing::fuzz_load(&bytes);
            replayed += 1;
        }
    }
    replayed
}

#[test]
fn corpus_and_regressions_replay_without_panicking() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("fuzz");
    let seeds = replay(&root.join("corpus").join("parse"));
    replay(&root.join("regressions"));
    assert!(seeds >= 6, "the seed corpus is missing ({seeds} files)");
}
