//! Archives among pack's inputs (`.a`, as `ar` makes them), taken as `ld` takes them: a member
//! is packed only if it defines a name that the objects, or the members taken already, refer
//! to and nothing defines yet, until no member is needed any more (as if every archive were in
//! one `--start-group`); a member nothing needs is left out. Every member is taken of an
//! archive marked so (`--whole-archive`), and of every archive when archives alone are given
//! (a static library made into a module). Members are added after the objects, in archive
//! order, each named `archive(member)`.

use std::collections::{HashMap, HashSet};

use object::read::archive::ArchiveFile;
use object::{Object, ObjectSymbol};

use super::{Input, Note, PackError, Problem};

/// Whether `bytes` are an archive (`ar`'s magic; a thin archive's too, which is refused).
pub(super) fn is_archive(bytes: &[u8]) -> bool {
    bytes.starts_with(b"!<arch>\n") || bytes.starts_with(b"!<thin>\n")
}

/// The inputs to pack: the objects, then the archive members they need.
pub(super) struct Selected<'i> {
    /// (name for messages, bytes) of each input to pack.
    pub(super) inputs: Vec<(String, &'i [u8])>,
    /// Archives that could not be read.
    pub(super) problems: Vec<Problem>,
    /// How many members of each archive were taken.
    pub(super) notes: Vec<Note>,
}

/// One member of an archive: what it defines and what it needs.
struct Member<'i> {
    name: String,
    bytes: &'i [u8],
    /// Which archive (for the notes).
    archive: usize,
    defines: Vec<&'i [u8]>,
    refers: Vec<&'i [u8]>,
    taken: bool,
}

impl<'i> Member<'i> {
    /// Takes the member: what it refers to joins the names `wanted`, what it defines those
    /// `defined`.
    fn take(&mut self, wanted: &mut Vec<&'i [u8]>, defined: &mut HashSet<&'i [u8]>) {
        self.taken = true;
        wanted.extend(self.refers.iter().copied());
        defined.extend(self.defines.iter().copied());
    }
}

/// The names `file` defines (globally: strong, weak or common) and those it refers to without
/// defining (strongly: a weak reference pulls no member in, as in `ld`).
fn names<'i>(file: &object::File<'i>) -> (Vec<&'i [u8]>, Vec<&'i [u8]>) {
    let (mut defines, mut refers) = (Vec::new(), Vec::new());
    for symbol in file.symbols() {
        let Ok(name) = symbol.name_bytes() else { continue };
        if name.is_empty() {
            continue;
        }
        if symbol.is_undefined() {
            if !symbol.is_weak() {
                refers.push(name);
            }
        } else if symbol.is_global() {
            // A common symbol too: `ld` takes a member for it as for a definition.
            defines.push(name);
        }
    }
    (defines, refers)
}

/// Bytes a member's long name may share with others' on average ([`names_within_bounds`]).
const NAME_SHARING: u64 = 256;

/// Whether the members' long names (GNU's `/N`: the name at offset N of the `//` member, up to
/// its `\n` or NUL) fit the names table and [`NAME_SHARING`] bytes a member: members sharing
/// one long name would have each member's name read (by `object`, then in every message about
/// the member) the square of the archive's size. One walk over the members' headers, each
/// name's end found by a binary search among the table's.
fn names_within_bounds(bytes: &[u8]) -> Result<(), PackError> {
    const HEADER: usize = 60;
    let mut at = 8; // after "!<arch>\n"
    let mut ends: Vec<usize> = Vec::new();
    let mut table_len = 0;
    let (mut named, mut read) = (0u64, 0u64);
    while let Some(header) = bytes.get(at..at + HEADER) {
        // A header that does not parse is `object`'s to report: the walk stops there.
        let Some(size) =
            std::str::from_utf8(&header[48..58]).ok().and_then(|s| s.trim_end().parse::<usize>().ok())
        else {
            break;
        };
        let Some(data) = (at + HEADER).checked_add(size).and_then(|end| bytes.get(at + HEADER..end)) else {
            break;
        };
        let name = &header[..16];
        if name.starts_with(b"// ") {
            ends = data.iter().enumerate().filter(|(_, &b)| b == b'\n' || b == 0).map(|(i, _)| i).collect();
            table_len = data.len();
        } else if let Some(offset) = long_name_offset(name) {
            let first = ends.partition_point(|&end| end < offset);
            if let Some(&end) = ends.get(first) {
                named += 1;
                read += (end - offset) as u64;
                if read > (table_len as u64).saturating_add(NAME_SHARING.saturating_mul(named)) {
                    return Err(PackError::ArchiveNamesShared { members: named });
                }
            }
        }
        at = at + HEADER + size + (size & 1);
    }
    Ok(())
}

/// The offset a GNU long name (`/` and decimal digits, space-padded) gives; `None` for another
/// name.
fn long_name_offset(name: &[u8]) -> Option<usize> {
    let digits = name.strip_prefix(b"/")?;
    let digits = std::str::from_utf8(digits).ok()?.trim_end();
    digits.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
    digits.parse().ok()
}

/// One archive among the inputs.
struct Archive<'i> {
    name: &'i str,
    /// How many members it has.
    members: usize,
    /// Whether every member is taken.
    whole: bool,
}

/// `inputs` with each archive replaced by the members the rest needs (all of them for an
/// archive taken whole), the names `referred` among the needs (the entry point and `-u`'s, which
/// `ld` counts as references).
pub(super) fn select<'i>(inputs: &[Input<'i>], referred: impl IntoIterator<Item = &'i [u8]>) -> Selected<'i> {
    let mut selected = Selected { inputs: Vec::new(), problems: Vec::new(), notes: Vec::new() };
    let mut defined: HashSet<&[u8]> = HashSet::new();
    let mut wanted: Vec<&[u8]> = referred.into_iter().collect();
    let mut members: Vec<Member<'_>> = Vec::new();
    // The first member (in input and archive order) defining each name.
    let mut providers: HashMap<&[u8], usize> = HashMap::new();
    let mut archives: Vec<Archive<'i>> = Vec::new();
    for &Input { name, bytes, whole_archive } in inputs {
        if !is_archive(bytes) {
            // An object that does not parse is the packer's problem to report, in its place.
            if let Ok(file) = object::File::parse(bytes) {
                let (defines, refers) = names(&file);
                defined.extend(defines);
                wanted.extend(refers);
            }
            selected.inputs.push((name.to_owned(), bytes));
            continue;
        }
        let archive = match ArchiveFile::parse(bytes) {
            Ok(archive) if !archive.is_thin() => archive,
            Ok(_) => {
                let error = PackError::ThinArchive;
                selected.problems.push(Problem { object: name.to_owned(), error });
                continue;
            }
            Err(error) => {
                selected.problems.push(Problem { object: name.to_owned(), error: PackError::Archive(error) });
                continue;
            }
        };
        if let Err(error) = names_within_bounds(bytes) {
            selected.problems.push(Problem { object: name.to_owned(), error });
            continue;
        }
        let index = archives.len();
        let mut count = 0;
        for member in archive.members() {
            let member = match member.and_then(|m| Ok((m.name().to_vec(), m.data(bytes)?))) {
                Ok(member) => member,
                Err(error) => {
                    selected
                        .problems
                        .push(Problem { object: name.to_owned(), error: PackError::Archive(error) });
                    break;
                }
            };
            count += 1;
            let (member_name, data) = member;
            let member_name = format!("{name}({})", String::from_utf8_lossy(&member_name));
            // A member that is not an object (a symbol index of another format, text) defines
            // nothing: no reference takes it.
            let Ok(file) = object::File::parse(data) else { continue };
            let (defines, refers) = names(&file);
            for &define in &defines {
                providers.entry(define).or_insert(members.len());
            }
            members.push(Member {
                name: member_name,
                bytes: data,
                archive: index,
                defines,
                refers,
                taken: false,
            });
        }
        archives.push(Archive { name, members: count, whole: whole_archive });
    }
    // Archives alone (a static library made into a module): every member, as ld's
    // --whole-archive takes them; nothing would need any.
    let alone = selected.inputs.is_empty();
    if alone {
        archives.iter_mut().for_each(|archive| archive.whole = true);
    }
    for member in members.iter_mut().filter(|m| archives[m.archive].whole) {
        member.take(&mut wanted, &mut defined);
    }
    while let Some(name) = wanted.pop() {
        if defined.contains(name) {
            continue;
        }
        let Some(&m) = providers.get(name) else { continue };
        if !members[m].taken {
            members[m].take(&mut wanted, &mut defined);
        }
    }
    for (index, archive) in archives.iter().enumerate() {
        let taken: Vec<&Member<'_>> = members.iter().filter(|m| m.archive == index && m.taken).collect();
        let (name, count) = (archive.name, archive.members);
        let text = match (alone, archive.whole) {
            (true, _) => {
                format!(
                    "took all {} object members of {name} (no objects given: the whole archive)",
                    taken.len()
                )
            }
            (false, true) => format!("took all {} object members of {name} (--whole-archive)", taken.len()),
            (false, false) => format!("took {} of the {count} members of {name}", taken.len()),
        };
        // An empty archive (glibc's libpthread.a, libdl.a: stubs since their functions moved
        // into the C library) is noted only with --verbose.
        selected.notes.push(Note { routine: count == 0, text });
        selected.inputs.extend(taken.iter().map(|m| (m.name.clone(), m.bytes)));
    }
    selected
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archive of `members` empty members named `names` each (GNU long names, offsets
    /// into a names table holding `table`).
    fn archive(table: &[u8], names: &[&str]) -> Vec<u8> {
        let header =
            |name: &str, size: usize| format!("{name:<16}{:<12}{:<6}{:<6}{:<8}{size:<10}`\n", 0, 0, 0, 644);
        let mut bytes = b"!<arch>\n".to_vec();
        bytes.extend_from_slice(header("//", table.len()).as_bytes());
        bytes.extend_from_slice(table);
        if table.len() % 2 == 1 {
            bytes.push(b'\n');
        }
        for name in names {
            bytes.extend_from_slice(header(name, 0).as_bytes());
        }
        bytes
    }

    #[test]
    fn members_sharing_one_long_name_past_the_bound_are_refused_before_they_are_read() {
        let long = [vec![b'a'; 2000], b"/\n".to_vec()].concat();
        let many = archive(&long, &["/0"; 40]);
        assert!(ArchiveFile::parse(many.as_slice()).is_ok(), "an archive object reads");
        // The names table and 256 bytes a member: 2002 + 256 n >= 2000 n up to n = 1.
        assert!(matches!(names_within_bounds(&many), Err(PackError::ArchiveNamesShared { members: 2 })));
        // Distinct names, and a short name shared by a few, are read.
        let distinct = [b"first.o/\nsecond.o/\n".as_slice()].concat();
        assert!(names_within_bounds(&archive(&distinct, &["/0", "/9", "/0"])).is_ok());
        let refused = select(&[Input::new("lib.a", &many)], []).problems;
        assert!(matches!(refused.as_slice(), [Problem { error: PackError::ArchiveNamesShared { .. }, .. }]));
    }

    #[test]
    fn only_ar_magic_is_an_archive() {
        assert!(is_archive(b"!<arch>\nrest"));
        assert!(is_archive(b"!<thin>\n"));
        assert!(!is_archive(b"\x7fELF"));
        assert!(!is_archive(b"!<arch>"));
    }
}
