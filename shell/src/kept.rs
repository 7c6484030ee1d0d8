//! What an error keeps of a name the caller gave: at most [`KEPT_BYTES`] of it (the message
//! a C caller reads holds 1 KiB), so that failing on a name of any length allocates a few
//! hundred bytes, never a copy of the name (an allocation that, refused, would end the process).

use std::borrow::Cow;

/// Bytes of a name an error keeps; a longer one keeps its start and `...`.
pub(crate) const KEPT_BYTES: usize = 256;

/// `name` as an error keeps it.
pub(crate) fn kept(name: &[u8]) -> Box<[u8]> {
    if name.len() <= KEPT_BYTES {
        return name.into();
    }
    let mut out = Vec::with_capacity(KEPT_BYTES + 3);
    out.extend_from_slice(&name[..KEPT_BYTES]);
    out.extend_from_slice(b"...");
    out.into_boxed_slice()
}

/// [`kept`] of text (cut at a character's start).
pub(crate) fn kept_str(name: &str) -> String {
    if name.len() <= KEPT_BYTES {
        return name.to_owned();
    }
    let mut end = KEPT_BYTES;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &name[..end])
}

/// [`kept`] of bytes shown as text (invalid UTF-8 replaced).
pub(crate) fn kept_lossy(name: &[u8]) -> String {
    let cut = &name[..name.len().min(KEPT_BYTES)];
    let more = if name.len() > KEPT_BYTES { "..." } else { "" };
    match String::from_utf8_lossy(cut) {
        Cow::Borrowed(text) => format!("{text}{more}"),
        Cow::Owned(text) => format!("{text}{more}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_keep_their_start_and_short_ones_all_of_them() {
        assert_eq!(&*kept(b"name"), b"name");
        let long = vec![b'x'; 1 << 20];
        assert_eq!(kept(&long).len(), KEPT_BYTES + 3);
        assert!(kept(&long).ends_with(b"x..."));
        let text = "é".repeat(1000);
        let cut = kept_str(&text);
        assert!(cut.len() <= KEPT_BYTES + 3 && cut.ends_with("é..."), "{cut}");
        assert_eq!(kept_str("short"), "short");
        assert_eq!(kept_lossy(b"f\xff"), "f\u{fffd}");
        assert_eq!(kept_lossy(&long).len(), KEPT_BYTES + 3);
    }
}
