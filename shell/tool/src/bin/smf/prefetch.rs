//! `smf prefetch`: load a set of module files into a module cache on worker threads, linked as
//! `run` links (the `--lib` modules, the `--native` libraries, the C library); print how many
//! loaded and failed and how long it took, and name each failure. `-` reads the files' names
//! from standard input, one per line (`find . -name '*.smf' | smf prefetch -`).

use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;

use smf::cache::{CacheLinking, ModuleCache};

use crate::args::PrefetchArgs;
use crate::cli::{count, err, out, report, EXIT_BAD, EXIT_OK};
use crate::error::CommandError;
use crate::link::{Linked, Linking};

/// Runs `smf prefetch`; the exit status.
pub(crate) fn command(args: &PrefetchArgs) -> i32 {
    match prefetch(args) {
        Ok(status) => status,
        Err(error) => {
            report(&error);
            EXIT_BAD
        }
    }
}

fn prefetch(args: &PrefetchArgs) -> Result<i32, CommandError> {
    let threads =
        args.threads.map_or_else(|| std::thread::available_parallelism().map_or(1, usize::from), usize::from);
    let paths = paths(&args.files)?;
    // No more threads than files (the report says how many could work).
    let threads = threads.clamp(1, paths.len().max(1));
    let linked = Linked::open(&args.link, Linking::WithConstructors)?;
    let cache = ModuleCache::new(0, 0);
    cache.set_linking(CacheLinking {
        resolver: Some(linked.provided()),
        c_library: linked.c_library(),
        open_needed: linked.open_needed(),
        ..CacheLinking::default()
    });
    // A progress line on a terminal, when there are enough files for it to matter.
    let progress = paths.len() >= 50 && std::io::stderr().is_terminal();
    let total = paths.len();
    let report_progress = |done: usize| {
        if progress && (done % 25 == 0 || done == total) {
            eprint!("\rsmf prefetch: {done}/{total}");
        }
    };
    let started = std::time::Instant::now();
    let failures = cache.prefetch_reporting(&paths, threads, &report_progress);
    let elapsed = started.elapsed();
    if progress {
        eprintln!();
    }
    for (_, error) in &failures {
        err(&format!("smf: {error}\n")); // the error names its file
    }
    let loaded = total - failures.len();
    out(&format!(
        "{} loaded, {} failed, in {:.1} ms on {}\n",
        count(loaded, "module"),
        failures.len(),
        elapsed.as_secs_f64() * 1000.0,
        count(threads, "thread")
    ));
    Ok(if failures.is_empty() { EXIT_OK } else { EXIT_BAD })
}

/// The files to load: `files`, with `-` replaced by the names read from standard input (one
/// per line; empty lines skipped), each name once (the counts are of files, not of mentions).
fn paths(files: &[String]) -> Result<Vec<PathBuf>, CommandError> {
    let mut paths = Vec::with_capacity(files.len());
    let mut seen = std::collections::HashSet::new();
    let mut add = |name: String| {
        if seen.insert(name.clone()) {
            paths.push(PathBuf::from(name));
        }
    };
    for file in files {
        if file != "-" {
            add(file.clone());
            continue;
        }
        for line in std::io::stdin().lock().lines() {
            let line = line.map_err(|error| CommandError::Read { path: "-".to_owned(), error })?;
            if !line.is_empty() {
                add(line);
            }
        }
    }
    Ok(paths)
}
