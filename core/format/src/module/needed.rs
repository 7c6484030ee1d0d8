//! The shared libraries a module needs (our extension, `docs/format.md` "Needed libraries"):
//! a note section named `note.needed` (type 7, as the S128 writer's notes are) holding one
//! library name a line, as ELF's `DT_NEEDED` names them (`libstdc++.so.6`). A loader that
//! does not know the extension skips the section, as it skips every note: the module then
//! loads where the libraries are otherwise given, and fails on its imports where they are not.
//!
//! Names are what a loader hands `dlopen`, which opens and runs what a name finds: only file
//! names (no `/`: nothing outside the system's search path), of letters, digits and `._+-`, 1
//! to [`MAX_NAME`] bytes, at most [`MAX_NEEDED`] of them.

use crate::error::NeededProblem;

/// The name of the section.
pub const NEEDED_SECTION: &[u8] = b"note.needed";

/// Most libraries a module may name.
pub const MAX_NEEDED: usize = 64;

/// Most bytes of one library's name.
pub const MAX_NAME: usize = 255;

/// Checks the section's bytes: names as the module documentation says.
pub(crate) fn check(data: &[u8]) -> Result<(), NeededProblem> {
    let mut count = 0;
    for (line, name) in names(data).enumerate() {
        let line = u32::try_from(line).unwrap_or(u32::MAX);
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(NeededProblem::NameLength { line });
        }
        if !is_file_name(name) {
            return Err(NeededProblem::NameCharacters { line });
        }
        count += 1;
        if count > MAX_NEEDED {
            return Err(NeededProblem::TooMany);
        }
    }
    Ok(())
}

/// Whether `name` (non-empty) is made as a needed library's name must be: letters, digits and
/// `._+-`, not starting with `.`.
pub fn is_file_name(name: &[u8]) -> bool {
    name.first().is_some_and(|&b| b != b'.')
        && name.iter().all(|&b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
}

/// The names of a checked section, in order (a final newline ends the last one).
pub(crate) fn names(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    data.split(|&b| b == b'\n').filter(move |_| !data.is_empty())
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::*;

    #[test]
    fn names_are_file_names_of_the_search_path_and_bounded() {
        assert_eq!(check(b"libstdc++.so.6\nlibz.so.1\n"), Ok(()));
        assert_eq!(
            names(b"libstdc++.so.6\nlibz.so.1\n").collect::<Vec<_>>(),
            [&b"libstdc++.so.6"[..], b"libz.so.1"]
        );
        assert_eq!(names(b"").count(), 0);
        assert_eq!(check(b""), Ok(()));
        assert_eq!(check(b"liba.so\n\nlibb.so"), Err(NeededProblem::NameLength { line: 1 }));
        assert_eq!(check(b"/tmp/evil.so"), Err(NeededProblem::NameCharacters { line: 0 }));
        assert_eq!(check(b"../libx.so"), Err(NeededProblem::NameCharacters { line: 0 }));
        assert_eq!(check(b"lib\x00.so"), Err(NeededProblem::NameCharacters { line: 0 }));
        assert_eq!(check(&[b'a'; MAX_NAME + 1]), Err(NeededProblem::NameLength { line: 0 }));
        let many = "liba.so\n".repeat(MAX_NEEDED + 1);
        assert_eq!(check(many.as_bytes()), Err(NeededProblem::TooMany));
        assert_eq!(check("liba.so\n".repeat(MAX_NEEDED).as_bytes()), Ok(()));
    }
}
