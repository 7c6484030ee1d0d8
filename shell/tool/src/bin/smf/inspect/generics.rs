//! The parts of `smf inspect`'s reports that need interpretation: which templates a module
//! has (each entry once, however many symbols name it) and its note.sdn tables (occurrences
//! merged, rows keyed by column), in text and in JSON. The text report shortens long column
//! names in its rows, so that a report grows with its file, not with rows times names.

use std::fmt::Write as _;
use std::io;

use serde_json::Value as Json;
use smf_format::note_sdn::NoteSdn;
use smf_format::template::TemplateEntry;
use smf_format::Module;

use super::{bytes, object};
use crate::cli::count;
use crate::json_out::ObjectOut;
use crate::names::escaped;

/// The templates of a module: through template symbols where there are any (each entry once),
/// otherwise the template-code entries read in sequence when the section is exactly short-form
/// entries (full-form entries cannot be delimited without symbols pointing at them).
pub(super) fn templates<'a>(module: &Module<'a>) -> Vec<TemplateEntry<'a>> {
    // Each entry once, however many symbols name it (a report grows with its file, not with
    // symbols times entries).
    let mut seen = std::collections::HashSet::new();
    let through_symbols: Vec<_> = (module.template_entries().unwrap_or_default().into_iter())
        .map(|(_, t)| t)
        .filter(|t| seen.insert(t.offset))
        .collect();
    if !through_symbols.is_empty() {
        return through_symbols;
    }
    match module.template_code() {
        Some(code) if code.is_short_form() => code.short_entries().map_while(Result::ok).collect(),
        _ => Vec::new(),
    }
}

/// One note.sdn table, its occurrences merged: each occurrence's column names, and the rows
/// with the occurrence they came from and their decoded values.
pub(super) struct NoteTable {
    /// The table's name.
    pub(super) name: String,
    /// Each occurrence's column names.
    pub(super) columns: Vec<Vec<String>>,
    /// Each row: which occurrence's columns name its fields, and its fields' values.
    pub(super) rows: Vec<(usize, Vec<String>)>,
}

impl NoteTable {
    /// The name of field `i` of a row of occurrence `occurrence`: its column, or `field<N>`
    /// past the named columns.
    pub(super) fn key(&self, occurrence: usize, i: usize) -> std::borrow::Cow<'_, str> {
        match self.columns.get(occurrence).and_then(|c| c.get(i)) {
            Some(column) => column.into(),
            None => format!("field{i}").into(),
        }
    }
}

/// The note.sdn tables, in the order they first appear; a table that appears twice is merged
/// (found by name through a map: a file of many tables costs no search per table).
pub(super) fn note_rows(note: &NoteSdn<'_>) -> Vec<NoteTable> {
    let mut tables: Vec<NoteTable> = Vec::new();
    let mut by_name: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for table in note.tables() {
        let at = *by_name.entry(table.name.to_owned()).or_insert_with(|| {
            tables.push(NoteTable { name: table.name.to_owned(), columns: Vec::new(), rows: Vec::new() });
            tables.len() - 1
        });
        let merged = &mut tables[at];
        let occurrence = merged.columns.len();
        merged.columns.push(table.columns().map(str::to_owned).collect());
        merged.rows.extend(table.rows().map(|row| (occurrence, row.fields().map(|f| f.to_text()).collect())));
    }
    tables
}

/// Longest column name a report repeats in each row; a longer one is shortened there (the
/// text report's table line, and the JSON report's `note_sdn_columns`, give it whole), so that
/// a report grows with its file, not with rows times names.
const ROW_KEY_BYTES: usize = 40;

/// `key` as the text report's rows show it: whole, or its first [`ROW_KEY_BYTES`] and `...`.
fn row_key(key: &str) -> std::borrow::Cow<'_, str> {
    if key.len() <= ROW_KEY_BYTES {
        return key.into();
    }
    let mut end = ROW_KEY_BYTES;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &key[..end]).into()
}

/// The note.sdn tables.
pub(super) fn note_text(out: &mut String, module: &Module<'_>) {
    match module.note_sdn() {
        None => {
            let _ = writeln!(out, "\nnote.sdn: none");
        }
        Some(note) => {
            let _ = writeln!(out, "\nnote.sdn:");
            for table in note_rows(&note) {
                let _ = writeln!(out, "  {} ({})", table.name, count(table.rows.len(), "row"));
                let long: Vec<&String> =
                    table.columns.iter().flatten().filter(|c| c.len() > ROW_KEY_BYTES).collect();
                if !long.is_empty() {
                    let names: Vec<String> = long.iter().map(|c| format!("{c:?}")).collect();
                    let _ = writeln!(out, "    (columns shortened below: {})", names.join(", "));
                }
                for (occurrence, values) in &table.rows {
                    let fields: Vec<String> = (values.iter().enumerate())
                        .map(|(i, v)| format!("{}={v:?}", row_key(&table.key(*occurrence, i))))
                        .collect();
                    let _ = writeln!(out, "    {}", fields.join(" "));
                }
            }
        }
    }
}

/// The templates and the template meta.
pub(super) fn templates_text(out: &mut String, module: &Module<'_>) {
    let templates = templates(module);
    let _ = writeln!(out, "\nTemplates ({}):", templates.len());
    for t in &templates {
        let params: Vec<String> = t.params().map(escaped).collect();
        let _ = writeln!(
            out,
            "  {:<8} {}<{}> ({} params, {} body bytes, at {:#x})",
            t.kind.name(),
            escaped(t.name),
            params.join(", "),
            t.param_count,
            t.body.len(),
            t.offset
        );
    }
    if let Some(meta) = module.template_meta() {
        let _ = writeln!(out, "\nTemplate meta (version {}):", meta.version());
        for e in meta.entries() {
            let _ = writeln!(
                out,
                "  {:<9} {} ({} specializations)",
                e.category.name(),
                escaped(e.name),
                e.specializations
            );
        }
    }
}

/// The note.sdn tables (null without note.sdn): each a list of rows keyed by column name, a
/// name longer than [`ROW_KEY_BYTES`] shortened as [`json_row_key`] says (whole in
/// [`note_columns_json`]), so that the report grows with its file, not with rows times names.
pub(super) fn write_note_json(o: &mut ObjectOut<'_>, key: &str, module: &Module<'_>) -> io::Result<()> {
    let Some(note) = module.note_sdn() else { return o.value(key, &Json::Null) };
    o.object(key, |tables| {
        for table in note_rows(&note) {
            let rows = table.rows.iter().map(|(occurrence, values)| {
                let fields = values.iter().enumerate();
                Json::Object(
                    fields
                        .map(|(i, v)| (json_row_key(&table.key(*occurrence, i), i), Json::String(v.clone())))
                        .collect(),
                )
            });
            tables.array(&table.name, rows)?;
        }
        Ok(())
    })
}

/// The note.sdn tables' column names, whole (null without note.sdn): one key per table, each a
/// list of its occurrences' column lists (a table that appears twice may name its columns
/// twice, differently).
pub(super) fn note_columns_json(module: &Module<'_>) -> Json {
    module.note_sdn().map_or(Json::Null, |note| {
        Json::Object(
            note_rows(&note)
                .into_iter()
                .map(|table| {
                    let columns =
                        table.columns.into_iter().map(|names| names.into_iter().map(Json::String).collect());
                    (table.name, Json::Array(columns.collect()))
                })
                .collect(),
        )
    })
}

/// The JSON key of field `i` named `key`: whole up to [`ROW_KEY_BYTES`], else its first
/// [`ROW_KEY_BYTES`] (at a character boundary), `...` and `#i`, unique within the row (a whole
/// key is never that long) and never repeating a long name in each row.
fn json_row_key(key: &str, i: usize) -> String {
    if key.len() <= ROW_KEY_BYTES {
        return key.to_owned();
    }
    format!("{}#{i}", row_key(key))
}

/// The templates.
pub(super) fn templates_json<'m>(module: &Module<'m>) -> impl Iterator<Item = Json> + 'm {
    templates(module).into_iter().map(|t| {
        object([
            ("kind", Json::String(t.kind.name().to_owned())),
            ("name", bytes(t.name)),
            ("generic_params", Json::Array(t.params().map(bytes).collect())),
            ("param_count", Json::from(u64::from(t.param_count))),
            ("offset", Json::from(t.offset)),
            ("body_size", Json::from(t.body.len() as u64)),
        ])
    })
}

/// The template meta's entries (none without it).
pub(super) fn template_meta_json<'m>(module: &Module<'m>) -> Option<impl Iterator<Item = Json> + 'm> {
    module.template_meta().map(|meta| {
        meta.entries().map(|e| {
            object([
                ("category", Json::String(e.category.name().to_owned())),
                ("name", bytes(e.name)),
                ("specializations", Json::from(u64::from(e.specializations))),
            ])
        })
    })
}
