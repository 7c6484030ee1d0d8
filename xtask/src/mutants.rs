//! `cargo xtask mutants [--in-diff BASE] [--max N] [--shard K/N] [--file GLOB]...`: cargo-mutants over
//! the loader (`core/runtime/src/load/`) and the allocator (`core/runtime/src/exec/`), installing cargo-mutants
//! if it is missing. Each mutant is judged by the core's unit tests and the integration tests
//! of those two areas (the slow hostile-input and out-of-memory binaries are left out: their
//! properties are the fuzz targets' and the `oom` test's, run in full by `cargo test`).
//! `--in-diff BASE` mutates only the lines changed since git revision BASE (what CI runs);
//! `--shard K/N` runs the K-th of N slices (a full run takes hours on two cores); `--max N` runs
//! at most about N mutants, a slice of the selection when it holds more (CI's time bound: each
//! mutant costs a build and the tests, about half a minute). Results go to
//! `target/mutants/mutants.out/` (`caught.txt`, `missed.txt`, `timeout.txt`, `unviable.txt`).

use std::fs;
use std::process::Command;

use crate::workspace_root;

/// What is mutated: the loader and the allocator, without the allocator's test doubles.
const MUTATED: [&str; 2] = ["core/runtime/src/load/**", "core/runtime/src/exec/**"];
const NOT_MUTATED: [&str; 11] = [
    "core/runtime/src/exec/fake.rs",
    "core/runtime/src/exec/file_tests.rs",
    "core/runtime/src/exec/free_tests.rs",
    "core/runtime/src/exec/tests.rs",
    "core/runtime/src/exec/placed_tests.rs",
    "core/runtime/src/exec/touched_tests.rs",
    "core/runtime/src/exec/fault_tests.rs",
    "core/runtime/src/exec/region_tests.rs",
    "core/runtime/src/exec/open_tests.rs",
    "core/runtime/src/exec/region_unit_tests.rs",
    "core/runtime/src/exec/release_tests.rs",
];

/// The integration test binaries that judge a mutant (besides the core's unit tests).
const TESTS: [&str; 10] = [
    "load",
    "files",
    "link",
    "exec",
    "exec_faults",
    "wx",
    "data_relocations",
    "constructors",
    "unwind",
    "fuzz_replay",
];

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    // cargo-mutants' own options; what judges a mutant comes after `--` (see `TESTS`).
    let mut options: Vec<String> = ["--package", "smf-runtime"].map(String::from).to_vec();
    let mut files_given = false;
    let mut max = None;
    let mut shard_given = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().cloned().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--in-diff" => {
                let Some(diff) = diff_since(&value("--in-diff")?)? else { return Ok(()) };
                options.extend(["--in-diff".into(), diff]);
            }
            "--shard" => {
                options.extend(["--shard".into(), value("--shard")?]);
                shard_given = true;
            }
            "--file" => {
                options.extend(["--file".into(), value("--file")?]);
                files_given = true;
            }
            "--max" => {
                let n = value("--max")?;
                max = Some(n.parse::<usize>().map_err(|e| format!("--max {n}: {e}"))?.max(1));
            }
            other => return Err(format!("unknown option {other} (see the usage)")),
        }
    }
    if !files_given {
        for glob in MUTATED {
            options.extend(["--file".into(), glob.into()]);
        }
    }
    for glob in NOT_MUTATED {
        options.extend(["--exclude".into(), glob.into()]);
    }
    crate::install_cargo_tool("mutants", "cargo-mutants")?;
    if let (Some(max), false) = (max, shard_given) {
        let count = listed(&options)?;
        let slices = count.div_ceil(max).max(1);
        if slices > 1 {
            println!("{count} mutants: running the first of {slices} slices (--max {max})");
            options.extend(["--shard".into(), format!("0/{slices}")]);
        }
    }
    options.extend(["--test-package", "smf-runtime,smf-tests"].map(String::from));
    // cargo-mutants tests its unmutated baseline in the mutated package alone, where the
    // integration test binaries named below do not exist: the baseline is skipped (`cargo
    // test` in CI is that baseline) and the timeouts are set instead. The judges' tests run in
    // under 2 s for any mutant that does not hang them (the longest seen in 500 mutants: 1.6 s),
    // while a mutant that breaks a loop's exit holds its job for the whole timeout: 30 s is
    // room enough for a loaded machine without letting a commit full of bit loops (11 hangs in
    // 19 mutants) take most of CI's time.
    options.extend(["--baseline", "skip", "--timeout", "30", "--build-timeout", "600"].map(String::from));
    options.extend(["--output", "target/mutants"].map(String::from));
    let mut mutants = Command::new("cargo");
    mutants.arg("mutants").args(&options).args(["--", "--lib"]);
    for test in TESTS {
        mutants.args(["--test", test]);
    }
    println!("running {mutants:?}");
    let status = mutants.current_dir(workspace_root()).status().map_err(|e| e.to_string())?;
    // cargo-mutants exits 2 when mutants were missed, 3 on timeouts: the report says which.
    match status.code() {
        Some(0) => Ok(()),
        // Exit 3 (timeouts) takes precedence over 2 (missed), so the missed list is read. A
        // mutant that makes a test hang (one that breaks a loop's exit, say) is caught by the
        // timeout, as FUZZING.md counts it; only a missed one fails.
        Some(2 | 3) => {
            let missed = workspace_root().join("target/mutants/mutants.out/missed.txt");
            let missed = fs::read_to_string(&missed).map_err(|e| format!("{}: {e}", missed.display()))?;
            if missed.trim().is_empty() {
                println!("xtask: every mutant was caught, some by the timeout (a test hung): see target/mutants/mutants.out/timeout.txt");
                Ok(())
            } else {
                Err("mutants survived: see target/mutants/mutants.out/missed.txt".into())
            }
        }
        _ => Err(format!("cargo mutants failed ({status})")),
    }
}

/// The loader's and the allocator's changes since git revision `base`, written to a file for
/// `--in-diff`; `None` (said) when there are none.
fn diff_since(base: &str) -> Result<Option<String>, String> {
    let diff = Command::new("git")
        .args(["diff", base, "--"])
        .args(MUTATED.map(|glob| glob.trim_end_matches("/**")))
        .current_dir(workspace_root())
        .output()
        .map_err(|e| format!("git diff: {e}"))?;
    if !diff.status.success() {
        return Err(format!("git diff {base} failed: {}", String::from_utf8_lossy(&diff.stderr)));
    }
    if diff.stdout.is_empty() {
        println!("no change to the loader or the allocator since {base}: nothing to mutate");
        return Ok(None);
    }
    let target = workspace_root().join("target");
    fs::create_dir_all(&target).map_err(|e| e.to_string())?;
    let path = target.join("mutants.diff");
    fs::write(&path, &diff.stdout).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(path.to_string_lossy().into_owned()))
}

/// How many mutants `options` select.
fn listed(options: &[String]) -> Result<usize, String> {
    let list = Command::new("cargo")
        .arg("mutants")
        .args(options)
        .arg("--list")
        .current_dir(workspace_root())
        .output()
        .map_err(|e| e.to_string())?;
    if !list.status.success() {
        return Err(format!("cargo mutants --list failed: {}", String::from_utf8_lossy(&list.stderr)));
    }
    Ok(String::from_utf8_lossy(&list.stdout).lines().count())
}
