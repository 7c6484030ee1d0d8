//! Archives among pack's inputs (`.a`, as `ar` makes them), taken as `ld` takes them: a member
//! is packed only if it defines a name that the objects, or the members taken already, refer
//! to and nothing defines yet (or holds it as a common symbol; a name held only as a common
//! symbol takes the member that defines it), until no member is needed any more (as if every archive were in
//! one `--start-group`); a member nothing needs is left out. Every member is taken of an
//! archive marked so (`--whole-archive`), and of every archive when archives alone are given
//! (a static library made into a module), but the compiler driver's (libgcc's), which gives
//! only what the others need. Members are added after the objects, in archive
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
    names: Names<'i>,
    taken: bool,
}

impl<'i> Member<'i> {
    /// Takes the member: its names join the needs and the definitions ([`Needs::add`]).
    fn take(&mut self, needs: &mut Needs<'i>) {
        self.taken = true;
        needs.add(&self.names);
    }
}

/// The global names an object defines, holds as common symbols, and refers to.
#[derive(Default)]
struct Names<'i> {
    /// Defined, strongly or weakly.
    defines: Vec<&'i [u8]>,
    /// Common symbols (`-fcommon`, `.comm`).
    commons: Vec<&'i [u8]>,
    /// Referred to without a definition (strongly: a weak reference pulls no member in, as in
    /// `ld`).
    refers: Vec<&'i [u8]>,
}

/// The names of `file`.
fn names<'i>(file: &object::File<'i>) -> Names<'i> {
    let mut names = Names::default();
    for symbol in file.symbols() {
        let Ok(name) = symbol.name_bytes() else { continue };
        if name.is_empty() {
            continue;
        }
        if symbol.is_undefined() {
            if !symbol.is_weak() {
                names.refers.push(name);
            }
        } else if symbol.is_common() {
            names.commons.push(name);
        } else if symbol.is_global() {
            names.defines.push(name);
        }
    }
    names
}

/// What the inputs taken so far need of the archives, as `ld` reads it: a name referred to and
/// not defined takes the first member that defines it or holds it as a common symbol; a name
/// held only as a common symbol takes the first member that defines it (whose definition then
/// overrides the common symbols).
#[derive(Default)]
struct Needs<'i> {
    /// Names to look for: each with whether only a definition will do (a common symbol's).
    wanted: Vec<(&'i [u8], bool)>,
    /// Names defined (strongly or weakly) by what was taken.
    defined: HashSet<&'i [u8]>,
    /// Names held as common symbols by what was taken.
    common: HashSet<&'i [u8]>,
}

impl<'i> Needs<'i> {
    /// An input's names taken in.
    fn add(&mut self, names: &Names<'i>) {
        self.wanted.extend(names.refers.iter().map(|&name| (name, false)));
        self.wanted.extend(names.commons.iter().map(|&name| (name, true)));
        self.common.extend(names.commons.iter().copied());
        self.defined.extend(names.defines.iter().copied());
    }
}

/// Bytes a member's name may take past the archive's size, on average, before the archive is
/// refused ([`PackError::ArchiveNamesShared`]): members sharing one long name (GNU's `/N`)
/// would have each member's name read again (by `object` as it reads the member, then in every
/// message about it), the square of the archive's size.
const NAME_SHARING: u64 = 256;

/// One archive among the inputs.
struct Archive<'i> {
    name: &'i str,
    /// How many members it has.
    members: usize,
    /// Whether every member is taken.
    whole: bool,
    /// The compiler driver's (never taken whole).
    driver: bool,
}

/// `inputs` with each archive replaced by the members the rest needs (all of them for an
/// archive taken whole), the names `referred` among the needs (the entry point and `-u`'s, which
/// `ld` counts as references).
pub(super) fn select<'i>(inputs: &[Input<'i>], referred: impl IntoIterator<Item = &'i [u8]>) -> Selected<'i> {
    let mut selected = Selected { inputs: Vec::new(), problems: Vec::new(), notes: Vec::new() };
    let mut needs =
        Needs { wanted: referred.into_iter().map(|name| (name, false)).collect(), ..Needs::default() };
    let mut members: Vec<Member<'_>> = Vec::new();
    // The first member (in input and archive order) defining each name or holding it as a
    // common symbol; the first defining it.
    let mut providers: HashMap<&[u8], usize> = HashMap::new();
    let mut definers: HashMap<&[u8], usize> = HashMap::new();
    let mut archives: Vec<Archive<'i>> = Vec::new();
    for &Input { name, bytes, whole_archive, driver_library } in inputs {
        if !is_archive(bytes) {
            // An object that does not parse is the packer's problem to report, in its place.
            // So is one whose names cannot be read in linear time (`bounds.rs`).
            if let Ok(file) = object::File::parse(bytes) {
                if super::bounds::check(&file, bytes.len() as u64).is_ok() {
                    needs.add(&names(&file));
                }
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
        let index = archives.len();
        let mut count = 0;
        // The members' names read so far, held to the archive's size and NAME_SHARING bytes a
        // member: `object` reads each name as it reads the member, so the walk stops as soon as
        // they pass it.
        let mut names_read = 0u64;
        for member in archive.members() {
            let member = match member.and_then(|m| Ok((m.name(), m.data(bytes)?))) {
                Ok(member) => member,
                Err(error) => {
                    selected
                        .problems
                        .push(Problem { object: name.to_owned(), error: PackError::Archive(error) });
                    break;
                }
            };
            count += 1;
            names_read += member.0.len() as u64;
            let allowed = (bytes.len() as u64).saturating_add(NAME_SHARING.saturating_mul(count as u64));
            if names_read > allowed {
                let error = PackError::ArchiveNamesShared { members: count as u64 };
                selected.problems.push(Problem { object: name.to_owned(), error });
                break;
            }
            let (member_name, data) = member;
            let member_name = format!("{name}({})", String::from_utf8_lossy(member_name));
            // A member that is not an object (a symbol index of another format, text) defines
            // nothing: no reference takes it.
            let Ok(file) = object::File::parse(data) else { continue };
            if let Err(error) = super::bounds::check(&file, data.len() as u64) {
                selected.problems.push(Problem { object: member_name, error });
                continue;
            }
            let names = names(&file);
            for &define in &names.defines {
                providers.entry(define).or_insert(members.len());
                definers.entry(define).or_insert(members.len());
            }
            for &common in &names.commons {
                providers.entry(common).or_insert(members.len());
            }
            members.push(Member { name: member_name, bytes: data, archive: index, names, taken: false });
        }
        archives.push(Archive { name, members: count, whole: whole_archive, driver: driver_library });
    }
    // Archives alone (a static library made into a module): every member, as ld's
    // --whole-archive takes them; nothing would need any.
    let alone = selected.inputs.is_empty();
    if alone {
        archives.iter_mut().filter(|archive| !archive.driver).for_each(|archive| archive.whole = true);
    }
    for member in members.iter_mut().filter(|m| archives[m.archive].whole) {
        member.take(&mut needs);
    }
    while let Some((name, definition_only)) = needs.wanted.pop() {
        if needs.defined.contains(name) {
            continue;
        }
        // A name held as a common symbol is satisfied by nothing less than a definition.
        let found = match definition_only || needs.common.contains(name) {
            true => definers.get(name),
            false => providers.get(name),
        };
        let Some(&m) = found else { continue };
        if !members[m].taken {
            members[m].take(&mut needs);
        }
    }
    for (index, archive) in archives.iter().enumerate() {
        let taken: Vec<&Member<'_>> = members.iter().filter(|m| m.archive == index && m.taken).collect();
        let (name, count) = (archive.name, archive.members);
        if archive.driver {
            let text = format!(
                "took {} of the {count} members of {name} (as the compiler driver links it)",
                taken.len()
            );
            selected.notes.push(Note { routine: taken.is_empty(), text });
            selected.inputs.extend(taken.iter().map(|m| (m.name.clone(), m.bytes)));
            continue;
        }
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
    fn members_sharing_one_long_name_are_refused_once_their_names_pass_the_archive() {
        let long = [vec![b'a'; 2000], b"/\n".to_vec()].concat();
        let problems = |names: &[&str]| {
            let bytes = archive(&long, names);
            let selected = select(&[Input::new("lib.a", &bytes), Input::new("app.o", b"")], []);
            selected.problems.into_iter().map(|p| p.error).collect::<Vec<_>>()
        };
        // 40 members make the archive 2002 + 68 + 40 * 60 bytes: 2000 bytes a member of names
        // (and 256 more allowed) pass it at the third.
        for spelled in ["/0", "/0 x", "/00"] {
            let refused = problems(&[spelled; 40]);
            assert!(
                matches!(refused.as_slice(), [PackError::ArchiveNamesShared { members: 3 }]),
                "{spelled}: {refused:?}"
            );
        }
        // The long name once, and distinct names, are read.
        assert!(problems(&["/0"]).is_empty());
        let distinct = b"first.o/\nsecond.o/\n";
        let bytes = archive(distinct, &["/0", "/9", "/0"]);
        assert!(select(&[Input::new("lib.a", &bytes), Input::new("app.o", b"")], []).problems.is_empty());
    }

    #[test]
    fn only_ar_magic_is_an_archive() {
        assert!(is_archive(b"!<arch>\nrest"));
        assert!(is_archive(b"!<thin>\n"));
        assert!(!is_archive(b"\x7fELF"));
        assert!(!is_archive(b"!<arch>"));
    }
}
