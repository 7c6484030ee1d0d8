//! `run_startup_vs_native`: a program that exits at once, packed and started by `smf run`,
//! against the same C linked natively (`gcc -O2`): whole processes, the two alternated round
//! by round, the ratio of each round's times (ours over native: smaller is better). What a
//! user of `smf run` pays to start a program beyond what the system's own loader pays.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::report::{self, Goal};
use super::{median, ms, ratio_percentiles};
use crate::workspace_root;

/// The program: `main` returns at once.
const SOURCE: &str = "int main(void) { return 0; }\n";

/// Runs `command` once; its time, or why it failed.
fn time(command: &mut Command) -> Result<Duration, String> {
    let start = Instant::now();
    let status = command.status().map_err(|e| format!("{command:?}: {e}"))?;
    let elapsed = start.elapsed();
    status.success().then_some(elapsed).ok_or_else(|| format!("{command:?} exited with {status}"))
}

/// Builds the module and the native program in `dir`.
fn build(dir: &Path) -> Result<(), String> {
    let source = dir.join("exits.c");
    std::fs::write(&source, SOURCE).map_err(|e| e.to_string())?;
    let gcc = |args: &[&str], out: &str| -> Result<(), String> {
        let status = Command::new("gcc")
            .args(args)
            .arg(&source)
            .arg("-o")
            .arg(dir.join(out))
            .status()
            .map_err(|e| format!("gcc: {e}"))?;
        status.success().then_some(()).ok_or_else(|| format!("gcc {args:?} failed"))
    };
    gcc(&["-c", "-O2", "-fPIC"], "exits.o")?;
    gcc(&["-O2"], "exits-native")?;
    super::load::pack(&[dir.join("exits.o")], &dir.join("exits.smf"))
}

pub(super) fn run(rounds: usize) -> Result<(), String> {
    if !cfg!(target_arch = "x86_64") {
        println!("run startup: skipped (smf pack reads x86-64 objects)");
        return Ok(());
    }
    let dir = workspace_root().join("target").join("bench-run-startup");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    build(&dir)?;
    // `pack` built it.
    let smf = workspace_root().join("target").join("release").join("smf");
    let (module, native) = (dir.join("exits.smf"), dir.join("exits-native"));
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..rounds + 1 {
        let ours_first = round % 2 == 0;
        let (mut t_ours, mut t_theirs) = (Duration::ZERO, Duration::ZERO);
        for side in [ours_first, !ours_first] {
            match side {
                true => t_ours = time(Command::new(&smf).arg("run").arg(&module))?,
                false => t_theirs = time(&mut Command::new(&native))?,
            }
        }
        // The first round warms the page cache.
        if round > 0 {
            ours.push(t_ours);
            theirs.push(t_theirs);
        }
    }
    // Ours over native: the spread of each round's ratio.
    let [low, mid, high] = ratio_percentiles(&ours, &theirs);
    println!(
        "run startup: `smf run` of a packed program that exits at once {:.2} ms, the native program {:.2} ms; smf / native {mid:.2}x (10th-90th percentile {low:.2}-{high:.2}, {rounds} rounds)",
        ms(median(ours)),
        ms(median(theirs)),
    );
    report::ratio("run_startup_vs_native", mid, Goal::AtMost(1.2));
    Ok(())
}
