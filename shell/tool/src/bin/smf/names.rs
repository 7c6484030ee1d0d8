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

#[cfg(test)]
mod tests {
    use super::*;

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
