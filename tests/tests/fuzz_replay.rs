//! Replays every fuzz target's committed corpus (`fuzz/corpus/TARGET/`) and every input that
//! ever crashed a target (`fuzz/regressions/TARGET/`) through the same entry point the target
//! wraps, on stable, as ordinary tests: a property a target checks that breaks fails here.

use std::path::{Path, PathBuf};

/// Held by the replays of targets that count what the process-wide allocator holds (each
/// fuzz target runs alone in its process; these tests share one).
static PROCESS_ALLOCATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The fuzz directory.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("fuzz")
}

/// Runs `entry` on every file of `fuzz/corpus/TARGET/` and `fuzz/regressions/TARGET/`; the
/// number of corpus files.
fn replay(target: &str, entry: fn(&[u8]) -> usize) -> usize {
    let files = |dir: PathBuf| -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
            .collect();
        files.sort();
        files
    };
    let corpus = files(fuzz_dir().join("corpus").join(target));
    for path in corpus.iter().chain(&files(fuzz_dir().join("regressions").join(target))) {
        let bytes = std::fs::read(path).unwrap();
        eprintln!("{}", path.display());
        entry(&bytes);
    }
    corpus.len()
}

#[test]
fn the_parse_corpus_replays() {
    let seeds = replay("parse", smf_format::fuzzing::fuzz_one);
    assert!(seeds >= 6, "the seed corpus is missing ({seeds} files)");
}

#[test]
fn the_load_corpus_replays_and_links() {
    let seeds = replay("load", smf_runtime::fuzzing::fuzz_load);
    assert!(seeds >= 6, "the seed corpus is missing ({seeds} files)");
    // The linked seeds load every module: the consumers' imports resolve to the provider and
    // the host (the third's `nowhere` through the fallback).
    let three = std::fs::read(fuzz_dir().join("corpus/load/linked-three")).unwrap();
    assert_eq!(smf_runtime::fuzzing::fuzz_load(&three), 1 + 3 + 5, "symbols of the three modules");
    // The aarch64 seeds load on any host (nothing runs): every aarch64 relocation kind is
    // applied, with and without forced branch stubs (a module that fails counts 1).
    for (seed, symbols) in [("aarch64-linked", 2 + 7), ("aarch64-unforced", 2 + 2)] {
        let bytes = std::fs::read(fuzz_dir().join("corpus/load").join(seed)).unwrap();
        assert_eq!(smf_runtime::fuzzing::fuzz_load(&bytes), symbols, "symbols of {seed}");
    }
}

#[test]
fn the_note_sdn_corpus_replays() {
    let seeds = replay("note_sdn", smf_runtime::fuzzing::fuzz_note_sdn);
    assert!(seeds >= 3, "the seed corpus is missing ({seeds} files)");
}

#[test]
fn the_compressed_corpus_replays_and_its_section_seeds_decompress() {
    let seeds = replay("compressed", smf_format::fuzzing::fuzz_compressed);
    assert!(seeds >= 12, "the seed corpus is missing ({seeds} files)");
    for seed in ["text-S128", "rodata-R96", "frame-zeros", "frame-zstd-text"] {
        let bytes = std::fs::read(fuzz_dir().join("corpus/compressed").join(seed)).unwrap();
        assert!(smf_format::fuzzing::fuzz_compressed(&bytes) > 0, "{seed} decompresses");
    }
}

#[test]
fn the_templates_corpus_replays() {
    let seeds = replay("templates", smf_format::fuzzing::fuzz_templates);
    assert!(seeds >= 4, "the seed corpus is missing ({seeds} files)");
}

#[test]
fn the_pack_corpus_replays_and_every_seed_packs() {
    let seeds = replay("pack", smf_tool::fuzzing::fuzz_pack);
    assert!(seeds >= 4, "the seed corpus is missing ({seeds} files)");
    for entry in std::fs::read_dir(fuzz_dir().join("corpus/pack")).unwrap().flatten() {
        let bytes = std::fs::read(entry.path()).unwrap();
        assert!(smf_tool::fuzzing::fuzz_pack(&bytes) > 0, "{} does not pack", entry.path().display());
    }
}

/// Replays `target`, a target decoding a sequence of calls that counts what the process-wide
/// allocator holds (so alone among these tests), and checks that its seeds decode to calls:
/// `entry` returns how many it made.
fn replay_calls(target: &str, entry: fn(&[u8]) -> usize) {
    let _alone = PROCESS_ALLOCATOR.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let seeds = replay(target, entry);
    assert!(seeds >= 6, "the seed corpus is missing ({seeds} files)");
    let calls: usize = (0..6)
        .map(|k| std::fs::read(fuzz_dir().join(format!("corpus/{target}/pattern-{k}"))).unwrap())
        .map(|pattern| entry(&pattern))
        .sum();
    assert!(calls >= 8, "the seeds of {target} decode to {calls} calls in all");
}

#[test]
fn the_cache_ops_corpus_replays_and_runs_operations() {
    replay_calls("cache_ops", smf::fuzzing::fuzz_cache_ops);
}

#[test]
fn cache_ops_reaches_the_threads_memo_when_gets_trust_notices() {
    let _alone = PROCESS_ALLOCATOR.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // No budget; gets trusting notices, or checking every time; then, the input spent (read as
    // zeros), 64 gets of slot 0 (operation 0 is `Get`).
    let trusting = smf::fuzzing::run_cache_ops(&[0, 0, 1]);
    assert_eq!(trusting.operations, 64);
    assert!(trusting.memo_hits > 0, "{trusting:?}");
    let checking = smf::fuzzing::run_cache_ops(&[0, 0, 0]);
    assert_eq!(checking, smf::fuzzing::CacheOpsRun { operations: 64, memo_hits: 0 });
}

#[test]
fn the_ffi_ranges_corpus_replays_and_makes_calls() {
    replay_calls("ffi_ranges", smf::fuzzing::fuzz_ffi_ranges);
}

#[test]
fn the_jit_ops_corpus_replays_and_makes_requests() {
    replay_calls("instantiate_ops", smf::fuzzing::fuzz_instantiate_ops);
}

#[test]
fn the_c_api_corpus_replays_and_makes_calls() {
    replay_calls("c_api", smf::fuzzing::fuzz_c_api);
}

#[test]
fn the_read_file_corpus_replays_and_reads() {
    let seeds = replay("read_file", smf::fuzzing::fuzz_read_file);
    // One seed per kind of file, contents or none (for a large file: the magic at its start
    // or not), writer or none, clock (as the xtask writes them); the files with contents, read
    // alone, read their bytes.
    assert!(seeds >= 48, "the seed corpus is missing ({seeds} files)");
    for kind in ["small-bytes", "large-magic", "fifo-bytes"] {
        let read = std::fs::read_dir(fuzz_dir().join("corpus/read_file"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{kind}-alone-")))
            .map(|e| smf::fuzzing::fuzz_read_file(&std::fs::read(e.path()).unwrap()))
            .max();
        assert!(read.is_some_and(|n| n > 0), "no {kind} seed reads a byte");
    }
}

#[test]
fn the_write_corpus_replays_and_reads_back() {
    let seeds = replay("write", smf_format::fuzzing::fuzz_write);
    assert!(seeds >= 6, "the seed corpus is missing ({seeds} files)");
    // The patterns write modules that read back with their symbols.
    let read: usize = (0..6)
        .map(|k| std::fs::read(fuzz_dir().join(format!("corpus/write/pattern-{k}"))).unwrap())
        .map(|pattern| smf_format::fuzzing::fuzz_write(&pattern))
        .sum();
    assert!(read > 6, "the seeds of write read back {read} symbols in all");
}

#[test]
fn the_exec_ops_corpus_replays_and_runs_operations() {
    replay_calls("exec_ops", smf_runtime::fuzzing::fuzz_exec_ops);
}
