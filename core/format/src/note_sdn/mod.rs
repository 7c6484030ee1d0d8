//! Reader for note.sdn, the instantiation metadata text ("SDN" tables), without allocation.
//!
//! Grammar, as the Simple toolchain's parser applies it: lines are trimmed; blank lines and `#`
//! lines without `|` are skipped; a line containing `|` that starts with neither `"` nor a digit
//! is a table header `name |col, col, ...|`; any other line is a row of the current table, split
//! on commas outside double quotes, with `\` escaping the next character. Rows narrower than the
//! table (the spec's widths for its six tables, the header's column count for others) are
//! dropped. Everything here borrows the text; [`Field::chars`] decodes escapes lazily.
//!
//! `edit.rs` writes: a text with instantiations recorded ([`rewrite`]), quoted fields.
//! [`mangle`] is how a row's name follows from its template and type arguments.

use core::fmt;

mod edit;
pub mod mangle;

pub use edit::{rewrite, rewrite_with, row_names, write_quoted, Recorded, INSTANTIATIONS_HEADER};

/// The bytes that end the note text.
pub const TERMINATOR: &[u8] = b"# END_NOTE";
/// How far readers scan for the terminator.
pub const SCAN_LIMIT: usize = 1 << 20;

/// The spec's tables and their row widths.
pub const KNOWN_TABLES: [(&str, usize); 6] = [
    ("instantiations", 8),
    ("possible", 6),
    ("type_inferences", 6),
    ("dependencies", 3),
    ("circular_warnings", 3),
    ("circular_errors", 3),
];

/// The note text before its `# END_NOTE` line, found within [`SCAN_LIMIT`] bytes of `region`.
///
/// The terminator must start a line (or the region) and end the line (or the region).
pub fn terminated_text(region: &[u8]) -> Option<&[u8]> {
    // Without the newline that precedes the terminator line.
    terminator_line(region).map(|at| &region[..at.saturating_sub(1)])
}

/// Where the first `# END_NOTE` line starts in `region`, if one starts within [`SCAN_LIMIT`]
/// bytes (what ends a note for every reader, and what a writer must not put inside one).
pub fn terminator_line(region: &[u8]) -> Option<usize> {
    let window = &region[..region.len().min(SCAN_LIMIT + TERMINATOR.len() + 1)];
    let mut line_start = 0usize;
    loop {
        let rest = window.get(line_start..)?;
        if rest.starts_with(TERMINATOR) {
            let after = rest.get(TERMINATOR.len()).copied();
            if matches!(after, None | Some(b'\n') | Some(b'\r')) && line_start <= SCAN_LIMIT {
                return Some(line_start);
            }
        }
        let newline = rest.iter().position(|&b| b == b'\n')?;
        line_start += newline + 1;
    }
}

/// A note.sdn text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoteSdn<'a> {
    text: &'a str,
}

impl<'a> NoteSdn<'a> {
    /// Reads `text` (with or without its terminator line).
    pub const fn new(text: &'a str) -> Self {
        Self { text }
    }

    /// The whole text.
    pub const fn text(&self) -> &'a str {
        self.text
    }

    /// The tables, in text order.
    pub fn tables(&self) -> Tables<'a> {
        Tables { lines: Lines::new(self.text) }
    }

    /// The first table named `name`.
    pub fn table(&self, name: &str) -> Option<Table<'a>> {
        self.tables().find(|t| t.name == name)
    }
}

/// What a trimmed line is.
enum Line<'a> {
    Header { name: &'a str, columns: &'a str },
    Row(&'a str),
    End,
}

/// Iterator over meaningful lines (headers and rows), stopping at the terminator.
#[derive(Clone, Debug)]
struct Lines<'a> {
    rest: &'a str,
}

impl<'a> Lines<'a> {
    const fn new(text: &'a str) -> Self {
        Self { rest: text }
    }

    fn next_line(&mut self) -> Option<Line<'a>> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (line, rest) = match self.rest.find('\n') {
                Some(n) => (&self.rest[..n], &self.rest[n + 1..]),
                None => (self.rest, ""),
            };
            self.rest = rest;
            match classify(line) {
                Some(Line::End) => {
                    self.rest = "";
                    return Some(Line::End);
                }
                Some(line) => return Some(line),
                None => continue,
            }
        }
    }
}

/// What one raw line of the text is; `None` for lines the grammar skips (blank, comments).
fn classify(line: &str) -> Option<Line<'_>> {
    let line = line.trim();
    if line.as_bytes() == TERMINATOR {
        return Some(Line::End);
    }
    if line.is_empty() || (line.starts_with('#') && !line.contains('|')) {
        return None;
    }
    let first = line.as_bytes()[0];
    if line.contains('|') && first != b'"' && !first.is_ascii_digit() {
        let bar = line.find('|').unwrap_or(0);
        let name = line[..bar].trim();
        let inner = &line[bar + 1..];
        let columns = inner.strip_suffix('|').unwrap_or(inner);
        return Some(Line::Header { name, columns });
    }
    Some(Line::Row(line))
}

/// Iterator over the tables of a note.
#[derive(Clone, Debug)]
pub struct Tables<'a> {
    lines: Lines<'a>,
}

impl<'a> Iterator for Tables<'a> {
    type Item = Table<'a>;

    fn next(&mut self) -> Option<Table<'a>> {
        loop {
            match self.lines.next_line()? {
                Line::Header { name, columns } => {
                    return Some(Table { name, columns, body: self.lines.clone() });
                }
                Line::Row(_) => continue,
                Line::End => return None,
            }
        }
    }
}

/// One table: a name, its columns and its rows.
#[derive(Clone, Debug)]
pub struct Table<'a> {
    /// The table name.
    pub name: &'a str,
    columns: &'a str,
    body: Lines<'a>,
}

impl<'a> Table<'a> {
    /// Column names, trimmed.
    pub fn columns(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.columns.split(',').map(str::trim).filter(|c| !c.is_empty())
    }

    /// Row width below which rows are dropped.
    pub fn width(&self) -> usize {
        KNOWN_TABLES
            .iter()
            .find(|(name, _)| *name == self.name)
            .map(|&(_, width)| width)
            .unwrap_or_else(|| self.columns().count())
    }

    /// Rows at least [`Table::width`] fields wide.
    pub fn rows(&self) -> impl Iterator<Item = Row<'a>> + 'a {
        let width = self.width();
        let mut lines = self.body.clone();
        core::iter::from_fn(move || match lines.next_line()? {
            Line::Row(line) => Some(Some(Row { line })),
            Line::Header { .. } | Line::End => None,
        })
        .flatten()
        .filter(move |row| row.fields().count() >= width)
    }
}

/// One row of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row<'a> {
    line: &'a str,
}

impl<'a> Row<'a> {
    /// The raw, trimmed line.
    pub const fn line(&self) -> &'a str {
        self.line
    }

    /// The fields, split on commas outside quotes.
    pub fn fields(&self) -> Fields<'a> {
        Fields { rest: Some(self.line) }
    }

    /// Field `index`.
    pub fn field(&self, index: usize) -> Option<Field<'a>> {
        self.fields().nth(index)
    }
}

/// Iterator over a row's fields.
#[derive(Clone, Debug)]
pub struct Fields<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        let rest = self.rest?;
        let bytes = rest.as_bytes();
        let (mut in_quotes, mut escaped) = (false, false);
        for (i, &b) in bytes.iter().enumerate() {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quotes = !in_quotes;
            } else if b == b',' && !in_quotes {
                self.rest = Some(&rest[i + 1..]);
                return Some(Field::new(&rest[..i]));
            }
        }
        self.rest = None;
        Some(Field::new(rest))
    }
}

/// One field: a bare word or a quoted string with escapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field<'a> {
    raw: &'a str,
}

impl<'a> Field<'a> {
    fn new(raw: &'a str) -> Self {
        Self { raw: raw.trim() }
    }

    /// The raw text, trimmed, with quotes and escapes as written.
    pub const fn raw(&self) -> &'a str {
        self.raw
    }

    /// Whether the field is a quoted string.
    pub fn is_quoted(&self) -> bool {
        self.raw.len() >= 2 && self.raw.starts_with('"') && self.raw.ends_with('"') && !self.ends_in_escape()
    }

    fn ends_in_escape(&self) -> bool {
        // `"abc\"` is an opening quote, text and an escaped quote: not closed.
        let inner = &self.raw.as_bytes()[1..self.raw.len() - 1];
        inner.iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
    }

    /// The content between the quotes (or the bare word), escapes not yet decoded.
    pub fn content(&self) -> &'a str {
        if self.is_quoted() {
            &self.raw[1..self.raw.len() - 1]
        } else {
            self.raw
        }
    }

    /// The decoded characters (`\n`, `\r`, `\t` are control characters; `\x` is `x`).
    pub fn chars(&self) -> impl Iterator<Item = char> + 'a {
        let mut chars = self.content().chars();
        core::iter::from_fn(move || {
            let c = chars.next()?;
            if c != '\\' {
                return Some(c);
            }
            Some(match chars.next() {
                Some('n') => '\n',
                Some('r') => '\r',
                Some('t') => '\t',
                Some(other) => other,
                None => '\\',
            })
        })
    }

    /// Whether the decoded value equals `s`.
    pub fn eq_str(&self, s: &str) -> bool {
        self.chars().eq(s.chars())
    }

    /// A bare `true`/`false`.
    pub fn as_bool(&self) -> Option<bool> {
        match self.raw {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }

    /// A bare decimal integer.
    pub fn as_u64(&self) -> Option<u64> {
        self.raw.parse().ok()
    }

    /// The decoded value as a `String`.
    #[cfg(feature = "alloc")]
    pub fn to_text(&self) -> alloc::string::String {
        self.chars().collect()
    }
}

impl fmt::Display for Field<'_> {
    /// Writes the decoded value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.chars().try_for_each(|c| fmt::Write::write_char(f, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminator_must_be_its_own_line() {
        assert_eq!(terminated_text(b"a\n# END_NOTE\nrest"), Some(&b"a"[..]));
        assert_eq!(terminated_text(b"a\n# END_NOTE"), Some(&b"a"[..]));
        assert_eq!(terminated_text(b"# END_NOTE\n"), Some(&b""[..]));
        assert_eq!(terminated_text(b"a # END_NOTE\n"), None);
        assert_eq!(terminated_text(b"a\n# END_NOTES\n"), None);
        assert_eq!(terminated_text(b""), None);
    }

    #[test]
    #[cfg_attr(miri, ignore = "scans 1 MiB, too slow interpreted; runs natively in cargo test")]
    fn terminator_past_the_scan_limit_is_not_found() {
        let mut far = [b'x'; SCAN_LIMIT + 40];
        far[SCAN_LIMIT + 1] = b'\n';
        far[SCAN_LIMIT + 2..SCAN_LIMIT + 12].copy_from_slice(TERMINATOR);
        far[SCAN_LIMIT + 12] = b'\n';
        assert_eq!(terminated_text(&far), None);
        far[100] = b'\n';
        far[101..111].copy_from_slice(TERMINATOR);
        far[111] = b'\n';
        assert_eq!(terminated_text(&far).map(<[u8]>::len), Some(100));
    }

    #[test]
    fn quoted_fields_keep_commas_and_decode_escapes() {
        let row = Row { line: r#"0, "a, b", "say \"hi\"\n", bare, "back\\slash""# };
        let fields: [Field<'_>; 5] = core::array::from_fn(|i| row.field(i).unwrap());
        assert!(fields[1].eq_str("a, b"));
        assert!(fields[2].eq_str("say \"hi\"\n"));
        assert!(fields[3].eq_str("bare"));
        assert!(!fields[3].is_quoted());
        assert!(fields[4].eq_str("back\\slash"));
        assert_eq!(row.fields().count(), 5);
    }
}
