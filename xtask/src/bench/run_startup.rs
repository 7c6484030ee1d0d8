//! `run_startup_vs_native`: a program that exits at once, packed and started by `smf run`,
//! against the same C linked natively (`gcc -O2`): whole processes, the two alternated round
//! by round, the ratio of each round's times (ours over native: smaller is better). What a
//! user of `smf run` pays to start a program beyond what the system's own loader pays.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::report::{self, Goal};
use super::{median, ms, ratio_percentiles};

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
    let Some(dir) = super::packing_dir("run-startup")? else { return Ok(()) };
    build(&dir)?;
    let smf = super::smf_tool();
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
