//! Every problem at once: pack goes on past a problem to find the others, and fails with all
//! of them ([`PackFailure`]), each naming its object ([`Problem`]). The report a person reads
//! ([`PackFailure::report`]) keeps every kind of problem and, past a few, counts the repeats of
//! one kind in one object (an object compiled without `-fPIC` has one per address it takes).

use std::collections::HashMap;
use std::fmt;

use super::elf::relocation_name;
use super::PackError;

/// One problem, and the object it is in.
#[derive(Debug)]
pub struct Problem {
    /// The object's name, as given to [`super::pack`].
    pub object: String,
    /// What is wrong, and where in the object.
    pub error: PackError,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.error)
    }
}

/// Why objects could not be packed: every problem found, in the order the objects and their
/// sections were read (never empty).
#[derive(Debug)]
pub struct PackFailure {
    /// The problems.
    pub problems: Vec<Problem>,
}

/// Problems of one kind in one object listed before the rest are counted.
pub const LISTED_PER_KIND: usize = 3;

impl PackFailure {
    /// The first problem's error.
    pub fn first(&self) -> &PackError {
        &self.problems[0].error
    }

    /// The report's lines: each problem, except that past [`LISTED_PER_KIND`] problems of one
    /// kind in one object (the same relocation type refused, say; wherever they are among the
    /// object's others) the rest are one line that counts them, after the last of them; with
    /// `all`, every problem.
    pub fn report(&self, all: bool) -> Vec<String> {
        let mut lines = Vec::with_capacity(self.problems.len().min(64));
        // The problems come object by object (`pack` sorts them so).
        for group in self.problems.chunk_by(|a, b| a.object == b.object) {
            // Each kind's count and last place in the object's problems.
            let mut kinds: HashMap<(&str, &str), (usize, usize)> = HashMap::new();
            for (i, problem) in group.iter().enumerate() {
                if let Some(kind) = problem.error.kind() {
                    let entry = kinds.entry(kind).or_insert((0, i));
                    *entry = (entry.0 + 1, i);
                }
            }
            let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
            for (i, problem) in group.iter().enumerate() {
                let Some(kind) = problem.error.kind().filter(|_| !all) else {
                    lines.push(problem.to_string());
                    continue;
                };
                let seen = seen.entry(kind).or_insert(0);
                *seen += 1;
                if *seen <= LISTED_PER_KIND {
                    lines.push(problem.to_string());
                }
                let (count, last) = kinds[&kind];
                if i == last && count > LISTED_PER_KIND {
                    let more = count - LISTED_PER_KIND;
                    lines.push(format!("{}: {more} more {} like the ones above", problem.object, kind.0));
                }
            }
        }
        lines
    }
}

impl fmt::Display for PackFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, line) in self.report(false).iter().enumerate() {
            write!(f, "{}{line}", if i > 0 { "\n" } else { "" })?;
        }
        Ok(())
    }
}

impl std::error::Error for PackFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.first())
    }
}

impl From<Problem> for PackFailure {
    fn from(problem: Problem) -> Self {
        PackFailure { problems: vec![problem] }
    }
}

impl PackError {
    /// What repeats of this problem are (a relocation refused for one reason: one per place
    /// the object uses it) and the relocation type's name; `None` for problems that each
    /// stand alone.
    pub(crate) fn kind(&self) -> Option<(&'static str, &'static str)> {
        let name = |r_type: u32| relocation_name(object::elf::RelocationType(r_type));
        Some(match self {
            PackError::Absolute32 { r_type, .. } => ("absolute 32-bit addresses", name(*r_type)),
            // Of every type: one object's are one kind (GOTTPOFF and TPOFF32 alike).
            PackError::ThreadLocalAccess { .. } => ("thread-local accesses", ""),
            PackError::ThreadLocal { .. } => ("thread-local sections", ""),
            PackError::UnsupportedRelocation { r_type, .. } => ("relocations of this type", name(*r_type)),
            PackError::DataRelocationKind { kind, .. } => ("relocations in data of this kind", kind.name()),
            PackError::CallArrayEntry { r_type, .. } => ("call array entries", r_type.map_or("none", name)),
            PackError::UnsupportedSymbol(_) => ("relocations against such symbols", ""),
            PackError::AbsoluteTarget(_) => ("relocations against absolute values", ""),
            PackError::NotElfRelocation(_) => ("relocations that are not ELF ones", ""),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::Site;

    fn absolute(object: &str, offset: u64) -> Problem {
        let at = Site { section: ".text".into(), offset, symbol: Some("f".into()) };
        Problem { object: object.into(), error: PackError::Absolute32 { at, target: "v".into(), r_type: 10 } }
    }

    #[test]
    fn repeats_of_one_kind_in_one_object_are_counted_past_a_few() {
        let mut problems: Vec<Problem> = (0..10).map(|i| absolute("a.o", i * 8)).collect();
        problems.push(Problem { object: "a.o".into(), error: PackError::Common { symbol: "c".into() } });
        problems.extend((0..2).map(|i| absolute("b.o", i)));
        let failure = PackFailure { problems };
        let lines = failure.report(false);
        assert_eq!(lines.len(), LISTED_PER_KIND + 1 + 1 + 2, "{lines:#?}");
        assert!(
            lines[0].starts_with("a.o: .text+0x0 (in f): R_X86_64_32 puts the address of v"),
            "{lines:#?}"
        );
        assert_eq!(lines[LISTED_PER_KIND], "a.o: 7 more absolute 32-bit addresses like the ones above");
        assert!(lines[LISTED_PER_KIND + 1].contains("a common symbol"), "{lines:#?}");
        assert!(lines[LISTED_PER_KIND + 2].starts_with("b.o: .text+0x0"), "{lines:#?}");
        assert_eq!(failure.report(true).len(), 13, "all: every problem");
        assert_eq!(failure.to_string().lines().count(), lines.len());
        // Kinds interleaved in one object are counted each, after its last.
        let common = |symbol: &str| Problem {
            object: "c.o".into(),
            error: PackError::Common { symbol: symbol.into() },
        };
        let tls = |offset: u64, r_type: u32| {
            let at = Site { section: ".text".into(), offset, symbol: None };
            Problem {
                object: "c.o".into(),
                error: PackError::ThreadLocalAccess { at, variable: "v".into(), r_type },
            }
        };
        let mut problems = Vec::new();
        for i in 0..6 {
            problems.push(absolute("c.o", i));
            // GOTTPOFF (22) and TPOFF32 (23) alternating: one kind.
            problems.push(tls(i, 22 + (i % 2) as u32));
        }
        problems.push(common("c"));
        let lines = PackFailure { problems }.report(false);
        assert_eq!(lines.len(), 3 + 3 + 2 + 1, "{lines:#?}");
        assert_eq!(
            lines[lines.len() - 3],
            "c.o: 3 more absolute 32-bit addresses like the ones above",
            "{lines:#?}"
        );
        assert_eq!(
            lines[lines.len() - 2],
            "c.o: 3 more thread-local accesses like the ones above",
            "{lines:#?}"
        );
    }
}
