//! A module's instantiation metadata as an instantiator keeps it: the module's note.sdn text,
//! what its "possible" table offers, and which of those have been instantiated since (moved to
//! "instantiations" with status `jit_compiled` when the text is written out).
//!
//! The note is parsed once, when the metadata is made, into an index of the "possible" entries
//! by decoded mangled name (keyed hash: a note cannot be written to collide). Asking what a
//! name is offered as, recording it and asking whether it is recorded then cost a hash and a
//! compare, whatever the note's size; writing the note out is one pass over it. Every
//! allocation is fallible: out of memory is an error, never an abort.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::hash::{BuildHasher, Hasher};
use core::ops::Range;

use hashbrown::HashTable;

use super::InstantiateError;
use crate::lru::KeyedHasher;
use smf_format::note_sdn::{self, Field, NoteSdn, Recorded, Row, TERMINATOR};

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

/// One distinct mangled name of the "possible" tables (its first row): the decoded fields, as
/// ranges of [`ModuleMetadata::decoded`], and when it was recorded.
#[derive(Clone, Debug)]
struct Entry {
    name: Range<usize>,
    template: Range<usize>,
    type_args: Range<usize>,
    /// Its place in [`ModuleMetadata::order`] plus one; 0 while not recorded.
    recorded: usize,
}

/// One module's metadata: its note text, an index of what it offers, and the names
/// instantiated from it.
#[derive(Clone, Debug)]
pub struct ModuleMetadata {
    /// The note.sdn text, without its terminator line (empty if the module has none).
    text: String,
    /// Where the module came from (`from_file` of the rows written for it).
    from_file: String,
    /// The decoded fields of every entry, one after another.
    decoded: String,
    entries: Vec<Entry>,
    /// Indices of `entries`, by the hash of the decoded name.
    by_name: HashTable<usize>,
    hasher: KeyedHasher,
    /// Entries recorded, in the order they were.
    order: Vec<usize>,
}

/// Memory for `bytes` could not be had.
fn out_of_memory(bytes: usize) -> InstantiateError {
    InstantiateError::OutOfMemory { bytes }
}

/// A copy of `s` in a fresh `String`.
fn try_copy(s: &str) -> Result<String, InstantiateError> {
    let mut copy = String::new();
    copy.try_reserve_exact(s.len()).map_err(|_| out_of_memory(s.len()))?;
    copy.push_str(s);
    Ok(copy)
}

/// One more item's room in `v`.
fn room<T>(v: &mut Vec<T>) -> Result<(), InstantiateError> {
    let bytes = v.len().saturating_add(1).saturating_mul(core::mem::size_of::<T>());
    v.try_reserve(1).map_err(|_| out_of_memory(bytes))
}

impl ModuleMetadata {
    /// The metadata of a module whose note.sdn text is `note` (`None` without one), loaded
    /// from `from_file`: the note copied and its "possible" tables indexed.
    pub fn new(note: Option<&str>, from_file: &str) -> Result<Self, InstantiateError> {
        let mut metadata = Self {
            text: try_copy(note.unwrap_or_default())?,
            from_file: try_copy(from_file)?,
            decoded: String::new(),
            entries: Vec::new(),
            by_name: HashTable::new(),
            hasher: KeyedHasher::per_process(),
            order: Vec::new(),
        };
        metadata.index()?;
        Ok(metadata)
    }

    /// Indexes the first row of each mangled name of the "possible" tables.
    fn index(&mut self) -> Result<(), InstantiateError> {
        let text = core::mem::take(&mut self.text);
        let indexed = self.index_rows(&text);
        self.text = text;
        indexed
    }

    fn index_rows(&mut self, text: &str) -> Result<(), InstantiateError> {
        let note = NoteSdn::new(text);
        for table in note.tables().filter(|t| t.name == "possible") {
            for row in table.rows() {
                let Some(name) = row.field(MANGLED) else { continue };
                let hash = self.hash_field(&name);
                if self.find(hash, |stored| name.eq_str(stored)).is_some() {
                    continue; // the first row of a name answers
                }
                let field = |column| row.field(column);
                let entry = Entry {
                    name: self.decode(Some(name))?,
                    template: self.decode(field(TEMPLATE))?,
                    type_args: self.decode(field(TYPE_ARGS))?,
                    recorded: 0,
                };
                room(&mut self.entries)?;
                self.entries.push(entry);
                let Self { by_name, entries, decoded, hasher, .. } = self;
                let rehash = |&i: &usize| hash_of(hasher, &decoded[entries[i].name.clone()]);
                let bytes = entries.len().saturating_mul(2 * core::mem::size_of::<usize>());
                by_name.try_reserve(1, rehash).map_err(|_| out_of_memory(bytes))?;
                by_name.insert_unique(hash, entries.len() - 1, rehash);
            }
        }
        Ok(())
    }

    /// Appends `field`'s decoded value to `decoded` (nothing for a missing field): its range.
    fn decode(&mut self, field: Option<Field<'_>>) -> Result<Range<usize>, InstantiateError> {
        let start = self.decoded.len();
        if let Some(field) = field {
            let len = field.content().len();
            self.decoded
                .try_reserve(len)
                .map_err(|_| out_of_memory(self.decoded.len().saturating_add(len)))?;
            self.decoded.extend(field.chars());
        }
        Ok(start..self.decoded.len())
    }

    /// The hash of a field's decoded value (as [`hash_of`] hashes a `&str`).
    fn hash_field(&self, field: &Field<'_>) -> u64 {
        let content = field.content();
        if !content.contains('\\') {
            return hash_of(&self.hasher, content);
        }
        let mut state = self.hasher.build_hasher();
        for c in field.chars() {
            state.write(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
        state.finish()
    }

    /// The entry whose decoded name hashes to `hash` and satisfies `is`.
    fn find(&self, hash: u64, is: impl Fn(&str) -> bool) -> Option<usize> {
        self.by_name.find(hash, |&i| is(&self.decoded[self.entries[i].name.clone()])).copied()
    }

    fn entry_named(&self, mangled_name: &str) -> Option<usize> {
        self.find(hash_of(&self.hasher, mangled_name), |stored| stored == mangled_name)
    }

    /// The entry a "possible" row names.
    fn entry_of(&self, row: &Row<'_>) -> Option<usize> {
        let name = row.field(MANGLED)?;
        self.find(self.hash_field(&name), |stored| name.eq_str(stored))
    }

    /// The "possible" entry listing `mangled_name` (the first, if several do); instantiated
    /// entries still answer, so that the module's offer does not change as it is used. An
    /// error ([`InstantiateError::OutOfMemory`]) only if memory for the answer cannot be had.
    pub fn possible(&self, mangled_name: &str) -> Result<Option<Possible>, InstantiateError> {
        let Some(i) = self.entry_named(mangled_name) else { return Ok(None) };
        let entry = &self.entries[i];
        Ok(Some(Possible {
            template: try_copy(&self.decoded[entry.template.clone()])?,
            type_args: try_copy(&self.decoded[entry.type_args.clone()])?,
        }))
    }

    /// Whether the "possible" tables list `mangled_name`.
    pub fn offers(&self, mangled_name: &str) -> bool {
        self.entry_named(mangled_name).is_some()
    }

    /// Every name the "possible" tables list, once each, in the note's order.
    pub fn offered(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|entry| &self.decoded[entry.name.clone()])
    }

    /// Records that `mangled_name` was instantiated (once; later calls change nothing; a name
    /// the note does not offer is not recorded). An error only if memory for the record
    /// cannot be had.
    pub fn record(&mut self, mangled_name: &str) -> Result<(), InstantiateError> {
        let Some(i) = self.entry_named(mangled_name) else { return Ok(()) };
        if self.entries[i].recorded == 0 {
            room(&mut self.order)?;
            self.order.push(i);
            self.entries[i].recorded = self.order.len();
        }
        Ok(())
    }

    /// Whether `mangled_name` was recorded.
    pub fn is_recorded(&self, mangled_name: &str) -> bool {
        self.entry_named(mangled_name).is_some_and(|i| self.entries[i].recorded != 0)
    }

    /// Names recorded, in order.
    pub fn recorded(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(|&i| &self.decoded[self.entries[i].name.clone()])
    }

    /// Writes the note as it stands: recorded entries moved from "possible" to
    /// "instantiations" (status [`JIT_COMPILED`]), then the terminator line. One pass over
    /// the note; an error if `out` fails or memory for the recorded rows cannot be had.
    pub fn write(&self, out: &mut impl fmt::Write) -> fmt::Result {
        let note = NoteSdn::new(&self.text);
        // The first row of each recorded entry, in the order recorded.
        let mut rows: Vec<Option<Row<'_>>> = Vec::new();
        rows.try_reserve_exact(self.order.len()).map_err(|_| fmt::Error)?;
        rows.resize(self.order.len(), None);
        for table in note.tables().filter(|t| t.name == "possible") {
            for row in table.rows() {
                if let Some(slot) = self.entry_of(&row).and_then(|i| self.entries[i].recorded.checked_sub(1))
                {
                    rows[slot].get_or_insert(row);
                }
            }
        }
        let added = self.order.iter().zip(rows).filter_map(|(&i, row)| {
            let recorded = Recorded {
                mangled_name: &self.decoded[self.entries[i].name.clone()],
                from_file: &self.from_file,
                to_obj: JIT_OBJECT,
                status: JIT_COMPILED,
            };
            Some((row?, recorded))
        });
        let moved = |row: Row<'_>| self.entry_of(&row).is_some_and(|i| self.entries[i].recorded != 0);
        let mut tracked = LastChar { out, last: '\n' };
        note_sdn::rewrite_with(&self.text, moved, added, &mut tracked)?;
        if tracked.last != '\n' {
            tracked.out.write_char('\n')?;
        }
        tracked.out.write_str(core::str::from_utf8(TERMINATOR).unwrap_or_default())?;
        tracked.out.write_char('\n')
    }

    /// [`ModuleMetadata::write`] into a new `String` (with room for one more byte, a C
    /// caller's NUL); [`InstantiateError::OutOfMemory`] if memory for it cannot be had.
    pub fn to_text(&self) -> Result<String, InstantiateError> {
        // The note, plus a row per recorded entry: its fields and the module's name twice.
        let per_row = 64usize.saturating_add(self.from_file.len().saturating_mul(2));
        let estimate = self
            .text
            .len()
            .saturating_add(self.decoded.len())
            .saturating_add(self.order.len().saturating_mul(per_row))
            .saturating_add(32);
        let mut out = FallibleString { text: String::new(), failed: None };
        out.text.try_reserve(estimate).map_err(|_| out_of_memory(estimate))?;
        let written = self.write(&mut out);
        if let Some(bytes) = out.failed {
            return Err(out_of_memory(bytes));
        }
        // Otherwise only the table of recorded rows can have failed: memory too.
        written.map_err(|_| {
            out_of_memory(self.order.len().saturating_mul(core::mem::size_of::<Option<Row<'_>>>()))
        })?;
        out.text.try_reserve(1).map_err(|_| out_of_memory(out.text.len().saturating_add(1)))?;
        Ok(out.text)
    }
}

/// The hash of `s` as the index keys names.
fn hash_of(hasher: &KeyedHasher, s: &str) -> u64 {
    let mut state = hasher.build_hasher();
    state.write(s.as_bytes());
    state.finish()
}

/// A `String` writer whose growth is fallible: the first failure (the bytes it needed) is kept
/// and ends the write.
struct FallibleString {
    text: String,
    failed: Option<usize>,
}

impl fmt::Write for FallibleString {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.text.try_reserve(s.len()).is_err() {
            self.failed = Some(self.text.len().saturating_add(s.len()));
            return Err(fmt::Error);
        }
        self.text.push_str(s);
        Ok(())
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
