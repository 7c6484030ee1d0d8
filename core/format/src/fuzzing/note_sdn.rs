//! The `note_sdn` target: the SDN reader on any text, and its writer held to it: a field the
//! writer quotes reads back as the value, a note rewritten with nothing recorded is the same
//! text, and a note rewritten with instantiations recorded reads back with exactly those rows
//! moved from "possible" to "instantiations" and every other table as it was. The mangling
//! rule is held to itself: a "possible" row agrees with itself exactly when its name is its
//! template written mangled with its type arguments, at the length computed beforehand.

use alloc::string::String;
use alloc::vec::Vec;

use crate::note_sdn::mangle::{column_arguments, mangled_len, row_agrees, write_mangled};
use crate::note_sdn::{rewrite, row_names, write_quoted, NoteSdn, Recorded};

/// Fields whose quoting is checked (the rest only walked): each check reads a note of its own.
const QUOTED_CHECKED: usize = 32;
/// "possible" rows recorded in one rewrite.
const RECORDED: usize = 3;

/// Reads `data` (its valid UTF-8 prefix) as note.sdn text and checks the writer against the
/// reader. Returns how many items were visited.
pub fn fuzz_note_sdn(data: &[u8]) -> usize {
    let text = match core::str::from_utf8(data) {
        Ok(text) => text,
        Err(e) => core::str::from_utf8(&data[..e.valid_up_to()]).unwrap_or_default(),
    };
    let note = NoteSdn::new(text);
    let mut visited = 0;
    let mut values = Vec::new();
    for table in note.tables() {
        visited += table.columns().count() + table.width();
        for row in table.rows() {
            for field in row.fields() {
                visited += usize::from(field.as_bool().is_some()) + usize::from(field.as_u64().is_some());
                if values.len() < QUOTED_CHECKED {
                    values.push(field.to_text());
                }
            }
        }
    }
    for value in &values {
        quoted_reads_back(value);
    }
    visited += rows_mangle_as_written(&note);
    let mut unchanged = String::new();
    let written = rewrite(text, &[], &mut unchanged);
    assert!(written.is_ok() && unchanged == text, "a rewrite recording nothing changed the text");
    visited + values.len() + recorded_read_back(&note, values.first().map_or("", String::as_str))
}

/// Each "possible" row (the first [`QUOTED_CHECKED`]): [`row_agrees`] says whether its name
/// (column 3) is its template (column 1) mangled with its type arguments (column 2) as the
/// writer writes it, whose length [`mangled_len`] tells beforehand. Returns the rows checked.
fn rows_mangle_as_written(note: &NoteSdn<'_>) -> usize {
    let rows = note.tables().filter(|t| t.name == "possible").flat_map(|t| t.rows());
    let mut checked = 0;
    for row in rows.take(QUOTED_CHECKED) {
        let field = |i| row.field(i).map(|f| f.to_text()).unwrap_or_default();
        let (template, type_args, name) = (field(1), field(2), field(3));
        let mut mangled = String::new();
        assert!(write_mangled(&mut mangled, &template, column_arguments(&type_args)).is_ok());
        assert_eq!(mangled_len(&template, column_arguments(&type_args)), Some(mangled.len()));
        assert_eq!(
            row_agrees(&name, &template, &type_args),
            name == mangled,
            "{name:?} against {template:?} with {type_args:?} (mangled {mangled:?})"
        );
        checked += 1;
    }
    checked
}

/// `value`, quoted by the writer as the only field of a row, reads back as `value`.
fn quoted_reads_back(value: &str) {
    let mut text = String::from("t |a, b|\n0, ");
    let _ = write_quoted(&mut text, value);
    let note = NoteSdn::new(&text);
    let row = note.table("t").and_then(|t| t.rows().next());
    let field = row.and_then(|r| r.field(1));
    assert!(
        field.is_some_and(|f| f.is_quoted() && f.eq_str(value)),
        "{value:?} quoted as {text:?} reads back otherwise"
    );
}

/// Records the first [`RECORDED`] "possible" rows of `note` (with `file`, a value of the input,
/// as their file: quoting is exercised) and checks what the rewritten note reads. Returns the
/// number of rows recorded.
fn recorded_read_back(note: &NoteSdn<'_>, file: &str) -> usize {
    let names: Vec<String> = note
        .tables()
        .filter(|t| t.name == "possible")
        .flat_map(|t| t.rows())
        .filter_map(|row| row.field(3).map(|f| f.to_text()))
        .take(RECORDED)
        .collect();
    if names.is_empty() {
        return 0;
    }
    let recorded: Vec<Recorded<'_>> = names
        .iter()
        .map(|name| Recorded {
            mangled_name: name,
            from_file: file,
            to_obj: "fuzz.o",
            status: "jit_compiled",
        })
        .collect();
    let mut out = String::new();
    assert!(rewrite(note.text(), &recorded, &mut out).is_ok(), "writing to a String cannot fail");
    for entry in &recorded {
        assert_recorded(&out, entry);
    }
    let after = NoteSdn::new(&out);
    // Every other table reads as it did.
    let others = |n: &NoteSdn<'_>| -> Vec<(String, String)> {
        n.tables()
            .filter(|t| t.name != "possible" && t.name != "instantiations")
            .flat_map(|t| {
                t.rows().map(move |r| (String::from(t.name), r.fields().map(|f| f.to_text()).collect()))
            })
            .collect()
    };
    assert_eq!(others(note), others(&after), "tables other than possible and instantiations changed");
    names.len()
}

/// Asserts that `entry` was recorded in the note `out`: no "possible" row lists its name any more, and an
/// "instantiations" row says what was recorded.
pub fn assert_recorded(out: &str, entry: &Recorded<'_>) {
    let after = NoteSdn::new(out);
    let name = entry.mangled_name;
    let rows = |table: &'static str| after.tables().filter(move |t| t.name == table).flat_map(|t| t.rows());
    let still_possible = rows("possible").any(|r| row_names(&r, name));
    assert!(!still_possible, "{name:?} was recorded but is still possible in {out:?}");
    let instantiated = rows("instantiations").any(|r| {
        let field = |i| r.field(i);
        field(3).is_some_and(|f| f.eq_str(name))
            && field(4).is_some_and(|f| f.eq_str(entry.from_file))
            && field(6).is_some_and(|f| f.eq_str(entry.to_obj))
            && field(7).is_some_and(|f| f.eq_str(entry.status))
    });
    assert!(instantiated, "{name:?} was recorded but no instantiation row says so in {out:?}");
}
