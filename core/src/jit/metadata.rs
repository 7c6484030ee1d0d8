//! A module's instantiation metadata as an instantiator keeps it: the module's note.sdn text,
//! what its "possible" table offers, and which of those have been instantiated since (moved to
//! "instantiations" with status `jit_compiled` when the text is written out).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::note_sdn::{self, NoteSdn, Recorded, TERMINATOR};

/// Column of `template`, `type_args` and `mangled_name` in a "possible" row.
const TEMPLATE: usize = 1;
const TYPE_ARGS: usize = 2;
const MANGLED: usize = 3;

/// What `to_obj` says of load-time instantiations (the Simple instantiator's word).
pub const JIT_OBJECT: &str = "jit_obj";
/// The status of a load-time instantiation.
pub const JIT_COMPILED: &str = "jit_compiled";

/// An entry of the "possible" table: what to instantiate for a mangled name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Possible {
    /// The template's name (`List`).
    pub template: String,
    /// The type arguments as written (`Float`, `text, Int`).
    pub type_args: String,
}

/// One module's metadata: its note text and the names instantiated from it.
#[derive(Clone, Debug, Default)]
pub struct ModuleMetadata {
    /// The note.sdn text, without its terminator line (empty if the module has none).
    text: String,
    /// Where the module came from (`from_file` of the rows written for it).
    from_file: String,
    /// Names instantiated, in the order they were.
    recorded: Vec<String>,
}

impl ModuleMetadata {
    /// The metadata of a module whose note.sdn text is `note` (`None` without one), loaded
    /// from `from_file`.
    pub fn new(note: Option<&str>, from_file: &str) -> Self {
        Self { text: note.unwrap_or_default().into(), from_file: from_file.into(), recorded: Vec::new() }
    }

    /// The "possible" entry listing `mangled_name` (the first, if several do); instantiated
    /// entries still answer, so that the module's offer does not change as it is used.
    pub fn possible(&self, mangled_name: &str) -> Option<Possible> {
        let note = NoteSdn::new(&self.text);
        let row = note
            .tables()
            .filter(|t| t.name == "possible")
            .find_map(|t| t.rows().find(|r| r.field(MANGLED).is_some_and(|f| f.eq_str(mangled_name))))?;
        let text = |column| row.field(column).map(|f| f.to_text()).unwrap_or_default();
        Some(Possible { template: text(TEMPLATE), type_args: text(TYPE_ARGS) })
    }

    /// Records that `mangled_name` was instantiated (once; later calls change nothing). An
    /// error only if memory for the record cannot be had.
    pub fn record(&mut self, mangled_name: &str) -> Result<(), alloc::collections::TryReserveError> {
        if self.is_recorded(mangled_name) {
            return Ok(());
        }
        self.recorded.try_reserve(1)?;
        let mut name = String::new();
        name.try_reserve_exact(mangled_name.len())?;
        name.push_str(mangled_name);
        self.recorded.push(name);
        Ok(())
    }

    /// Whether `mangled_name` was recorded.
    pub fn is_recorded(&self, mangled_name: &str) -> bool {
        self.recorded.iter().any(|r| r == mangled_name)
    }

    /// Names recorded, in order.
    pub fn recorded(&self) -> impl Iterator<Item = &str> {
        self.recorded.iter().map(String::as_str)
    }

    /// Writes the note as it stands: recorded entries moved from "possible" to
    /// "instantiations" (status [`JIT_COMPILED`]), then the terminator line.
    pub fn write(&self, out: &mut impl fmt::Write) -> fmt::Result {
        let recorded: Vec<Recorded<'_>> = self
            .recorded
            .iter()
            .map(|name| Recorded {
                mangled_name: name,
                from_file: &self.from_file,
                to_obj: JIT_OBJECT,
                status: JIT_COMPILED,
            })
            .collect();
        let mut tracked = LastChar { out, last: '\n' };
        note_sdn::rewrite(&self.text, &recorded, &mut tracked)?;
        if tracked.last != '\n' {
            tracked.out.write_char('\n')?;
        }
        tracked.out.write_str(core::str::from_utf8(TERMINATOR).unwrap_or_default())?;
        tracked.out.write_char('\n')
    }
}

/// A writer that remembers the last character written through it.
struct LastChar<'w, W> {
    out: &'w mut W,
    last: char,
}

impl<W: fmt::Write> fmt::Write for LastChar<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(c) = s.chars().next_back() {
            self.last = c;
        }
        self.out.write_str(s)
    }
}
