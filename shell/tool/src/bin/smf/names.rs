//! Names from a module as the tool prints them in text: whole, on one line, unambiguous.
//! Symbol and section names may be any bytes; control characters, quotes and backslashes are
//! escaped as Rust escapes them (`\n`, `\u{1b}`, `\"`, `\\`) and bytes that are not UTF-8 as
//! `\xNN`, the same in every command. (JSON output carries names as JSON strings instead.)

use std::fmt::Write as _;

/// `bytes` escaped for a line of text.
pub(crate) fn escaped(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            // Printable text as it is (escape_debug would also escape some of it, such as
            // combining marks at the start).
            if c.is_control() || matches!(c, '"' | '\\' | '\u{2028}' | '\u{2029}') {
                out.extend(c.escape_debug());
            } else {
                out.push(c);
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

/// `bytes` escaped and in double quotes (where a name may be empty or hold spaces).
pub(crate) fn quoted(bytes: &[u8]) -> String {
    format!("\"{}\"", escaped(bytes))
}

/// Longest name a listing repeats whole in each entry that refers to it (a relocation, an
/// instruction it patches); a longer one is shortened there to its first bytes and `...`, so
/// that a listing grows with its file, not with entries times names. The symbol table's
/// listing gives every name whole, once.
pub(crate) const REPEATED_NAME_BYTES: usize = 40;

/// The first [`REPEATED_NAME_BYTES`] of `bytes` (fewer, not to split a UTF-8 character), or
/// `None` if `bytes` is not longer.
fn prefix(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.len() <= REPEATED_NAME_BYTES {
        return None;
    }
    let mut end = REPEATED_NAME_BYTES;
    // A UTF-8 character has at most three continuation bytes.
    while end > REPEATED_NAME_BYTES - 3 && bytes[end] & 0xC0 == 0x80 {
        end -= 1;
    }
    Some(&bytes[..end])
}

/// [`escaped`], shortened past [`REPEATED_NAME_BYTES`] with `...`.
pub(crate) fn escaped_short(bytes: &[u8]) -> String {
    match prefix(bytes) {
        Some(start) => format!("{}...", escaped(start)),
        None => escaped(bytes),
    }
}

/// [`quoted`], shortened past [`REPEATED_NAME_BYTES`] with `...` after the closing quote
/// (where a name of its own ending in dots cannot be mistaken for it).
pub(crate) fn quoted_short(bytes: &[u8]) -> String {
    match prefix(bytes) {
        Some(start) => format!("{}...", quoted(start)),
        None => quoted(bytes),
    }
}

/// `name` as a reader wants it: demangled when `demangle` and it is a C++ name of the Itanium
/// ABI (`_Z...`, as `nm -C` shows it), else [`escaped`]; also escaped when its demangled form
/// would pass [`smf_tool::demangle::limit`] (names built so that substitutions nest, 100 bytes each
/// demangling to half a megabyte, which the demangler stops writing at the limit).
pub(crate) fn shown(name: &[u8], demangle: bool) -> String {
    let demangled = demangle.then(|| demangled(name)).flatten();
    demangled.unwrap_or_else(|| escaped(name))
}

/// A C++ type as C++ spells it (`std::runtime_error`), from its mangled name as
/// `std::type_info::name()` gives it (`St13runtime_error`): demangled as its type-info name's
/// symbol (`_ZTS...`) is; else escaped as given.
pub(crate) fn type_name(mangled: &str) -> String {
    let symbol = format!("_ZTS{mangled}");
    match demangled(symbol.as_bytes()).as_deref().and_then(|d| d.strip_prefix("typeinfo name for ")) {
        Some(name) => name.to_owned(),
        None => escaped(mangled.as_bytes()),
    }
}

/// `name` demangled, unless it is not a C++ name or would pass the library's bound
/// ([`smf_tool::demangle::limit`]).
fn demangled(name: &[u8]) -> Option<String> {
    smf_tool::demangle::demangled(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_shortened_where_repeated_without_splitting_a_character() {
        let long = "a".repeat(39) + "é" + "tail";
        assert_eq!(escaped_short(long.as_bytes()), format!("{}...", "a".repeat(39)));
        assert_eq!(quoted_short(long.as_bytes()), format!("\"{}\"...", "a".repeat(39)));
        let just = "b".repeat(REPEATED_NAME_BYTES);
        assert_eq!(quoted_short(just.as_bytes()), format!("\"{just}\""), "at the limit, whole");
        assert_eq!(escaped_short(&[0xff; 50]), format!("{}...", "\\xff".repeat(40)));
    }

    #[test]
    fn cpp_names_demangle_unless_their_demangled_form_passes_the_limit() {
        assert_eq!(shown(b"_ZN3foo3barEv", true), "foo::bar()");
        assert_eq!(shown(b"_ZN3foo3barEv", false), "_ZN3foo3barEv");
        assert_eq!(shown(b"not_cpp", true), "not_cpp");
        assert_eq!(type_name("St13runtime_error"), "std::runtime_error");
        assert_eq!(type_name("N3app5ErrorE"), "app::Error");
        assert_eq!(type_name("i"), "int");
        assert_eq!(type_name("not a type\n"), "not a type\\n");
        // 15 nested substitutions: 118 bytes that demangle to some 557 KB, shown as they are.
        let bomb = b"_Z3f151PIS_IS_IS_IS_IS_IS_IS_IS_IS_IS_IS_IS_IS_IS_IS_IiiES0_ES1_ES2_ES3_ES4_ES5_ES6_ES7_ES8_ES9_ESA_ESB_ESC_ESD_ESE_E";
        assert_eq!(shown(bomb, true), String::from_utf8_lossy(bomb));
        // Four levels fit: demangled whole.
        let nested = b"_Z3f151PIS_IS_IS_IS_IiiES0_ES1_ES2_ES3_E";
        let shown_nested = shown(nested, true);
        assert!(
            shown_nested.starts_with("f15(P<") && shown_nested.len() < smf_tool::demangle::limit(nested),
            "{shown_nested}"
        );
    }

    #[test]
    fn names_are_escaped_once_and_unambiguously() {
        assert_eq!(escaped(b"plain_name$i64"), "plain_name$i64");
        assert_eq!(escaped(b"ctl\x01\x1f\x7f\n\t"), "ctl\\u{1}\\u{1f}\\u{7f}\\n\\t");
        assert_eq!(escaped(b"quote\"back\\slash"), "quote\\\"back\\\\slash");
        assert_eq!(escaped("naïve \u{2028}".as_bytes()), "naïve \\u{2028}");
        assert_eq!(escaped(b"\xff\xfe bad"), "\\xff\\xfe bad");
        assert_eq!(escaped(b"_ZN3fooC2Ev"), "_ZN3fooC2Ev");
        assert_eq!(quoted(b""), "\"\"");
        assert_eq!(quoted(b"a\nb"), "\"a\\nb\"");
    }
}
