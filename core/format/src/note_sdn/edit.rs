//! Writing note.sdn: quoted fields as the toolchains escape them, and a note's text with
//! instantiations recorded (entries moved from "possible" to "instantiations"), which is how a
//! load-time instantiator keeps a module's metadata current. Nothing here allocates: output
//! goes to any [`fmt::Write`].

use core::fmt;

use super::{classify, Line, NoteSdn, Row};

/// The header line [`rewrite`] writes when a note has no "instantiations" table yet.
pub const INSTANTIATIONS_HEADER: &str =
    "instantiations |id, template, type_args, mangled_name, from_file, from_loc, to_obj, status|";

/// Column of `mangled_name` in a "possible" row.
const POSSIBLE_MANGLED: usize = 3;
/// Column of `template` and of `type_args` in a "possible" row.
const POSSIBLE_TEMPLATE: usize = 1;
const POSSIBLE_TYPE_ARGS: usize = 2;

/// One instantiation to record: which "possible" entry was made, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recorded<'a> {
    /// The entry's `mangled_name` in the "possible" table.
    pub mangled_name: &'a str,
    /// The instantiation row's `from_file` (its `from_loc` is `from_file:0:0`).
    pub from_file: &'a str,
    /// Its `to_obj`: where the code went.
    pub to_obj: &'a str,
    /// Its `status` (`jit_compiled` for load-time instantiations).
    pub status: &'a str,
}

/// Writes `text` with each of `recorded` moved from "possible" to "instantiations": the
/// "possible" rows whose `mangled_name` is recorded are left out, and one "instantiations" row
/// per recorded entry (in `recorded` order, ids continuing the table's) is added at the end of
/// the first "instantiations" table, or in a new one at the end of the text if there is none.
/// Everything else (comments, other tables, the terminator line) is written as it was. A
/// recorded name that no "possible" row lists is skipped.
///
/// Each row is compared with each recorded entry: for a few entries. An index over the rows
/// (as the instantiator's metadata keeps) writes in one pass with [`rewrite_with`].
pub fn rewrite(text: &str, recorded: &[Recorded<'_>], out: &mut impl fmt::Write) -> fmt::Result {
    let note = NoteSdn::new(text);
    let added = recorded.iter().filter_map(|entry| Some((possible_row(&note, entry.mangled_name)?, *entry)));
    rewrite_with(text, |row| is_recorded(row, recorded), added, out)
}

/// [`rewrite`] with the work of finding rows done by the caller: `moved(row)` says whether a
/// "possible" row leaves (asked once per row, in order), and `added` gives the rows to write
/// into "instantiations", each with the "possible" row it was made from (iterated once, where
/// they go). Costs one pass over `text` plus what the two callbacks cost.
pub fn rewrite_with<'t, 'r>(
    text: &'t str,
    mut moved: impl FnMut(Row<'t>) -> bool,
    added: impl Iterator<Item = (Row<'t>, Recorded<'r>)>,
    out: &mut impl fmt::Write,
) -> fmt::Result {
    let note = NoteSdn::new(text);
    let mut added = added.peekable();
    let any = added.peek().is_some();
    let mut pending = Some((next_instantiation_id(&note), added));
    let mut write_rows = |out: &mut dyn fmt::Write| -> fmt::Result {
        let Some((mut next_id, rows)) = pending.take() else { return Ok(()) };
        for (row, entry) in rows {
            write_instantiation(out, next_id, &row, &entry)?;
            // A note whose ids already reach u64::MAX (only a made-up one) gets that id again.
            next_id = next_id.saturating_add(1);
        }
        Ok(())
    };
    let mut table: Option<&str> = None;
    let mut rows_written = false;
    let mut ended_with_newline = true;
    for raw in text.split_inclusive('\n') {
        let line = classify(raw);
        let ends_table = matches!(line, Some(Line::Header { .. } | Line::End));
        if ends_table && table == Some("instantiations") && !rows_written {
            write_rows(out)?;
            rows_written = true;
        }
        if matches!(line, Some(Line::End)) && !rows_written && any {
            writeln!(out, "{INSTANTIATIONS_HEADER}")?;
            write_rows(out)?;
            rows_written = true;
        }
        match line {
            Some(Line::Header { name, .. }) => table = Some(name),
            Some(Line::Row(row)) if table == Some("possible") && moved(Row { line: row }) => continue,
            _ => {}
        }
        out.write_str(raw)?;
        ended_with_newline = raw.ends_with('\n');
    }
    if !rows_written && any {
        if !ended_with_newline {
            out.write_char('\n')?;
        }
        if table != Some("instantiations") {
            writeln!(out, "{INSTANTIATIONS_HEADER}")?;
        }
        write_rows(out)?;
    }
    Ok(())
}

/// One more than the largest numeric id of the first "instantiations" table, and at least its
/// row count.
fn next_instantiation_id(note: &NoteSdn<'_>) -> u64 {
    let Some(table) = note.table("instantiations") else { return 0 };
    let (mut count, mut next) = (0u64, 0u64);
    for row in table.rows() {
        count += 1;
        if let Some(id) = row.field(0).and_then(|f| f.as_u64()) {
            next = next.max(id.saturating_add(1));
        }
    }
    next.max(count)
}

/// The first "possible" row listing `mangled_name`.
fn possible_row<'a>(note: &NoteSdn<'a>, mangled_name: &str) -> Option<Row<'a>> {
    note.tables()
        .filter(|t| t.name == "possible")
        .find_map(|t| t.rows().find(|row| row_names(row, mangled_name)))
}

/// Whether `row` (of "possible") lists `mangled_name`.
pub fn row_names(row: &Row<'_>, mangled_name: &str) -> bool {
    row.field(POSSIBLE_MANGLED).is_some_and(|f| f.eq_str(mangled_name))
}

fn is_recorded(row: Row<'_>, recorded: &[Recorded<'_>]) -> bool {
    recorded.iter().any(|r| row_names(&row, r.mangled_name))
}

/// `    id, "template", "type_args", "mangled", "from_file", "from_file:0:0", "to_obj", "status"`
fn write_instantiation(
    out: &mut dyn fmt::Write,
    id: u64,
    possible: &Row<'_>,
    entry: &Recorded<'_>,
) -> fmt::Result {
    write!(out, "    {id}")?;
    for column in [POSSIBLE_TEMPLATE, POSSIBLE_TYPE_ARGS, POSSIBLE_MANGLED] {
        out.write_str(", ")?;
        let field = possible.field(column);
        write_quoted_chars(out, field.iter().flat_map(|f| f.chars()))?;
    }
    out.write_str(", ")?;
    write_quoted(out, entry.from_file)?;
    out.write_str(", \"")?;
    write_escaped(out, entry.from_file.chars())?;
    out.write_str(":0:0\", ")?;
    write_quoted(out, entry.to_obj)?;
    out.write_str(", ")?;
    write_quoted(out, entry.status)?;
    out.write_char('\n')
}

/// Writes `value` as a quoted field, escaping `\ " \n \r \t` as the writers do.
pub fn write_quoted(out: &mut (impl fmt::Write + ?Sized), value: &str) -> fmt::Result {
    write_quoted_chars(out, value.chars())
}

fn write_quoted_chars(
    out: &mut (impl fmt::Write + ?Sized),
    chars: impl Iterator<Item = char>,
) -> fmt::Result {
    out.write_char('"')?;
    write_escaped(out, chars)?;
    out.write_char('"')
}

fn write_escaped(out: &mut (impl fmt::Write + ?Sized), chars: impl Iterator<Item = char>) -> fmt::Result {
    for c in chars {
        match c {
            '\\' => out.write_str("\\\\")?,
            '"' => out.write_str("\\\"")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            other => out.write_char(other)?,
        }
    }
    Ok(())
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use alloc::string::String;

    use super::*;

    const NOTE: &str = "# generated\n\
        instantiations |id, template, type_args, mangled_name, from_file, from_loc, to_obj, status|\n    \
        0, \"List\", \"Int\", \"List$Int\", \"app.spl\", \"app.spl:10:5\", \"app.o\", \"compiled\"\n\
        possible |id, template, type_args, mangled_name, required_by, can_defer|\n    \
        0, \"List\", \"Float\", \"List$Float\", \"math_module\", true\n    \
        1, \"Map\", \"text,Int\", \"Map$text_Int\", \"app\", false\n\
        dependencies |from_inst, to_inst, dep_kind|\n    \
        \"List$Int\", \"Int\", \"type_param\"\n\
        # END_NOTE\n";

    fn recorded(name: &str) -> Recorded<'_> {
        Recorded { mangled_name: name, from_file: "lib/m.smf", to_obj: "jit_obj", status: "jit_compiled" }
    }

    fn rewritten(text: &str, names: &[&str]) -> String {
        let entries: alloc::vec::Vec<_> = names.iter().map(|n| recorded(n)).collect();
        let mut out = String::new();
        rewrite(text, &entries, &mut out).unwrap();
        out
    }

    fn mangled_names(text: &str, table: &str) -> alloc::vec::Vec<String> {
        let note = NoteSdn::new(text);
        let Some(table) = note.table(table) else { return alloc::vec::Vec::new() };
        let column = if table.name == "possible" { POSSIBLE_MANGLED } else { 3 };
        table.rows().map(|r| r.field(column).unwrap().to_text()).collect()
    }

    #[test]
    fn nothing_recorded_writes_the_text_unchanged() {
        assert_eq!(rewritten(NOTE, &[]), NOTE);
    }

    #[test]
    fn a_recorded_entry_moves_to_instantiations_and_reads_back() {
        let out = rewritten(NOTE, &["Map$text_Int"]);
        assert_eq!(mangled_names(&out, "possible"), ["List$Float"]);
        assert_eq!(mangled_names(&out, "instantiations"), ["List$Int", "Map$text_Int"]);
        let note = NoteSdn::new(&out);
        let row = note.table("instantiations").unwrap().rows().nth(1).unwrap();
        let fields: alloc::vec::Vec<String> = row.fields().map(|f| f.to_text()).collect();
        assert_eq!(
            fields,
            ["1", "Map", "text,Int", "Map$text_Int", "lib/m.smf", "lib/m.smf:0:0", "jit_obj", "jit_compiled"]
        );
        // The rest is as it was: the comment, the other table, the terminator.
        assert!(out.starts_with("# generated\n"));
        assert_eq!(note.table("dependencies").unwrap().rows().count(), 1);
        assert!(out.ends_with("# END_NOTE\n"));
    }

    #[test]
    fn without_an_instantiations_table_one_is_added_before_the_terminator() {
        let text = "possible |id, template, type_args, mangled_name, required_by, can_defer|\n    \
                    0, \"id\", \"i64\", \"id$i64\", \"main\", true\n# END_NOTE\n";
        let out = rewritten(text, &["id$i64", "not$listed"]);
        assert_eq!(mangled_names(&out, "possible"), alloc::vec::Vec::<String>::new());
        assert_eq!(mangled_names(&out, "instantiations"), ["id$i64"]);
        assert!(out.ends_with("jit_compiled\"\n# END_NOTE\n"), "{out}");
        // Without a terminator (and without a final newline), at the end.
        let out = rewritten(text.trim_end_matches("# END_NOTE\n").trim_end(), &["id$i64"]);
        assert_eq!(mangled_names(&out, "instantiations"), ["id$i64"]);
    }

    #[test]
    fn ids_continue_after_the_largest() {
        let text = "instantiations |id, template, type_args, mangled_name, from_file, from_loc, to_obj, status|\n    \
                    7, \"a\", \"b\", \"a$b\", \"f\", \"f:1:1\", \"o\", \"compiled\"\n\
                    possible |id, template, type_args, mangled_name, required_by, can_defer|\n    \
                    0, \"x\", \"y\", \"x$y\", \"m\", true\n";
        let out = rewritten(text, &["x$y"]);
        let note = NoteSdn::new(&out);
        let row = note.table("instantiations").unwrap().rows().nth(1).unwrap();
        assert_eq!(row.field(0).unwrap().as_u64(), Some(8));
    }

    /// Found by the `note_sdn` fuzz target: an id of u64::MAX overflowed the next id.
    #[test]
    fn ids_past_the_largest_number_stay_at_it() {
        let text = "instantiations |id, template, type_args, mangled_name, from_file, from_loc, to_obj, status|\n    \
                    18446744073709551615, \"a\", \"b\", \"a$b\", \"f\", \"f:1:1\", \"o\", \"compiled\"\n\
                    possible |id, template, type_args, mangled_name, required_by, can_defer|\n    \
                    0, \"x\", \"y\", \"x$y\", \"m\", true\n    1, \"z\", \"y\", \"z$y\", \"m\", true\n";
        let out = rewritten(text, &["x$y", "z$y"]);
        assert_eq!(mangled_names(&out, "instantiations"), ["a$b", "x$y", "z$y"]);
        let note = NoteSdn::new(&out);
        let ids: alloc::vec::Vec<Option<u64>> =
            note.table("instantiations").unwrap().rows().map(|row| row.field(0).unwrap().as_u64()).collect();
        assert_eq!(ids, [Some(u64::MAX); 3]);
    }

    #[test]
    fn quoted_values_are_escaped() {
        let mut out = String::new();
        write_quoted(&mut out, "a \"b\"\\\n").unwrap();
        assert_eq!(out, r#""a \"b\"\\\n""#);
    }
}
