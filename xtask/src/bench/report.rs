//! The benchmarks' results as other tools read them: one line per result,
//!
//! ```text
//! ratio NAME VALUE        (the alternative's time / ours: above 1 we are faster, unless noted)
//! footprint NAME VALUE    (a size or count: smaller is better)
//! ```
//!
//! (`parallel_load_scaling` adds the floor's own scaling: `ratio parallel_load_scaling 0.86
//! floor 0.80`), each with its target, checked in a summary at the end of the run, and written
//! to `target/bench/results.tsv` (name, kind, value, goal, met) for the report page.

use std::fmt;
use std::sync::Mutex;

use crate::workspace_root;

/// What a result should be.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Goal {
    /// At least this.
    AtLeast(f64),
    /// At most this.
    AtMost(f64),
    /// At least the value given beside it (the floor's own).
    AtLeastFloor,
    /// Reported, no target.
    Reported,
}

impl fmt::Display for Goal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Goal::AtLeast(x) => write!(f, ">= {x}"),
            Goal::AtMost(x) => write!(f, "<= {x}"),
            Goal::AtLeastFloor => f.write_str(">= floor"),
            Goal::Reported => f.write_str("reported"),
        }
    }
}

/// One result.
#[derive(Clone, Debug)]
struct Result {
    kind: &'static str,
    name: &'static str,
    value: f64,
    floor: Option<f64>,
    goal: Goal,
}

impl Result {
    /// Whether the target is met (`None`: no target).
    fn met(&self) -> Option<bool> {
        match self.goal {
            Goal::AtLeast(x) => Some(self.value >= x),
            Goal::AtMost(x) => Some(self.value <= x),
            Goal::AtLeastFloor => self.floor.map(|floor| self.value >= floor),
            Goal::Reported => None,
        }
    }
}

/// This run's results, in the order reported.
static RESULTS: Mutex<Vec<Result>> = Mutex::new(Vec::new());

fn record(result: Result) {
    let mut line = format!("{} {} {}", result.kind, result.name, number(result.value));
    if let Some(floor) = result.floor {
        line.push_str(&format!(" floor {}", number(floor)));
    }
    println!("{line}");
    RESULTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(result);
}

/// A value as the lines give it: ratios to 3 significant decimals, counts whole.
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    }
}

/// Reports the ratio `name`.
pub(crate) fn ratio(name: &'static str, value: f64, goal: Goal) {
    record(Result { kind: "ratio", name, value, floor: None, goal });
}

/// Reports the ratio `name` beside the floor's own (`ratio NAME VALUE floor FLOOR`).
pub(crate) fn ratio_with_floor(name: &'static str, value: f64, floor: f64) {
    record(Result { kind: "ratio", name, value, floor: Some(floor), goal: Goal::AtLeastFloor });
}

/// Reports the footprint `name`.
pub(crate) fn footprint(name: &'static str, value: u64, goal: Goal) {
    footprint_average(name, value as f64, goal);
}

/// A `footprint` line for an average count (a fraction: printed with decimals).
pub(crate) fn footprint_average(name: &'static str, value: f64, goal: Goal) {
    record(Result { kind: "footprint", name, value, floor: None, goal });
}

/// The results file.
fn results_path() -> std::path::PathBuf {
    workspace_root().join("target").join("bench").join("results.tsv")
}

/// Starts a run: the previous run's results file is removed (a run that fails early must not
/// leave another run's results to be read as its own).
pub(crate) fn start() -> std::result::Result<(), String> {
    match std::fs::remove_file(results_path()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("{}: {e}", results_path().display()))
        }
        _ => Ok(()),
    }
}

/// Prints every result of the run against its target and writes them to
/// `target/bench/results.tsv`.
pub(crate) fn summary() -> std::result::Result<(), String> {
    let results = RESULTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    if results.is_empty() {
        return Ok(());
    }
    println!("summary: {} results", results.len());
    let mut tsv = String::from("kind\tname\tvalue\tfloor\tgoal\tmet\n");
    for r in &results {
        let met = match r.met() {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "-",
        };
        let floor = r.floor.map(number).unwrap_or_default();
        println!("  {:<9} {:<28} {:>12} {:>10}  {met}", r.kind, r.name, number(r.value), r.goal.to_string());
        tsv.push_str(&format!("{}\t{}\t{}\t{floor}\t{}\t{met}\n", r.kind, r.name, number(r.value), r.goal));
    }
    let path = results_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&path, tsv).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("written to {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_whole_or_to_three_decimals() {
        assert_eq!(number(2048.0), "2048");
        assert_eq!(number(2.345_67), "2.346");
        assert_eq!(number(0.8), "0.800");
    }

    #[test]
    fn a_target_is_met_on_its_side_only() {
        let r = |value, floor, goal| Result { kind: "ratio", name: "x", value, floor, goal };
        assert_eq!(r(1.5, None, Goal::AtLeast(1.5)).met(), Some(true));
        assert_eq!(r(1.4, None, Goal::AtLeast(1.5)).met(), Some(false));
        assert_eq!(r(1.3, None, Goal::AtMost(1.3)).met(), Some(true));
        assert_eq!(r(1.31, None, Goal::AtMost(1.3)).met(), Some(false));
        assert_eq!(r(0.86, Some(0.80), Goal::AtLeastFloor).met(), Some(true));
        assert_eq!(r(0.79, Some(0.80), Goal::AtLeastFloor).met(), Some(false));
        assert_eq!(r(7.0, None, Goal::Reported).met(), None);
    }
}
