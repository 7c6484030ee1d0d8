//! `smf ldd`'s view of the libraries a module names as needed: found as files where the
//! dynamic linker looks for a name (`LD_LIBRARY_PATH`, then the system's directories) and read
//! (their dynamic symbols and the libraries they need), never opened, so that listing a
//! module's imports runs none of their code. An import resolves in the first library named
//! that defines it, or in a library it needs (breadth first), as `dlsym` on its handle finds
//! it; with the C library turned off, in a library named only (a load then takes only a
//! library's own symbols).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Libraries read at most for one library named (what it needs, and what those need).
const MOST_IN_SCOPE: usize = 64;

/// A library file read: the names it defines, the libraries it needs.
#[derive(Debug)]
struct LibraryFile {
    path: PathBuf,
    exports: HashSet<Vec<u8>>,
    needs: Vec<String>,
}

/// One library the module names.
#[derive(Debug)]
pub(crate) struct NeededFile {
    /// As the module names it.
    pub(crate) name: String,
    /// Where it was found and read, or why not.
    pub(crate) found: Result<PathBuf, String>,
    /// It, then what it needs, breadth first: where `dlsym` on its handle looks.
    scope: Vec<Rc<LibraryFile>>,
}

/// Every library a module names, read.
#[derive(Debug, Default)]
pub(crate) struct NeededFiles {
    pub(crate) libraries: Vec<NeededFile>,
}

/// Where an import resolves among the libraries named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FoundIn<'n> {
    /// The library named that finds it.
    pub(crate) named: &'n str,
    /// The file defining it: that library's, or one it needs.
    pub(crate) file: &'n Path,
}

impl NeededFiles {
    /// The libraries `names` (as a module names them), each found and read.
    pub(crate) fn read<'a>(names: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut read: HashMap<PathBuf, Rc<LibraryFile>> = HashMap::new();
        let libraries = names
            .into_iter()
            .map(|name| {
                let name = String::from_utf8_lossy(name).into_owned();
                let found = locate(&name).ok_or_else(|| "not found on the search path".to_owned());
                let found = found.and_then(|path| library_file(&path, &mut read).map(|_| path));
                let scope = match &found {
                    Ok(path) => scope_of(path, &mut read),
                    Err(_) => Vec::new(),
                };
                NeededFile { name, found, scope }
            })
            .collect();
        Self { libraries }
    }

    /// Where `symbol` resolves: in the first library named whose scope defines it (its own
    /// symbols only if `own_only`).
    pub(crate) fn find(&self, symbol: &[u8], own_only: bool) -> Option<FoundIn<'_>> {
        self.libraries.iter().find_map(|library| {
            let scope =
                if own_only { &library.scope[..library.scope.len().min(1)] } else { &library.scope[..] };
            let file = scope.iter().find(|file| file.exports.contains(symbol))?;
            Some(FoundIn { named: &library.name, file: &file.path })
        })
    }
}

/// `name` as the dynamic linker finds it: a path as it is, a file name in `LD_LIBRARY_PATH`'s
/// directories, then in the system's.
fn locate(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name)).filter(|path| path.is_file());
    }
    let from_environment = std::env::var_os("LD_LIBRARY_PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .filter(|dir| !dir.as_os_str().is_empty())
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    });
    from_environment.or_else(|| crate::linker::system_file(name))
}

/// The library at `path`, read once (kept in `read`); an error saying why it cannot be.
fn library_file(
    path: &Path,
    read: &mut HashMap<PathBuf, Rc<LibraryFile>>,
) -> Result<Rc<LibraryFile>, String> {
    if let Some(file) = read.get(path) {
        return Ok(Rc::clone(file));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut exports = HashSet::new();
    let needs = crate::defs::exports(&bytes, |name| {
        exports.insert(name.to_vec());
    })
    .map_err(|e| format!("{}: not a shared library: {e}", path.display()))?;
    let file = Rc::new(LibraryFile { path: path.to_path_buf(), exports, needs });
    read.insert(path.to_path_buf(), Rc::clone(&file));
    Ok(file)
}

/// The library at `path`, then what it needs, breadth first, each once (those that cannot be
/// found or read left out).
fn scope_of(path: &Path, read: &mut HashMap<PathBuf, Rc<LibraryFile>>) -> Vec<Rc<LibraryFile>> {
    let mut scope: Vec<Rc<LibraryFile>> = Vec::new();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut queue = std::collections::VecDeque::from([path.to_path_buf()]);
    while let Some(path) = queue.pop_front() {
        if scope.len() >= MOST_IN_SCOPE || !seen.insert(path.clone()) {
            continue;
        }
        let Ok(file) = library_file(&path, read) else { continue };
        queue.extend(file.needs.iter().filter_map(|name| locate(name)));
        scope.push(file);
    }
    scope
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_library_s_symbols_and_those_of_what_it_needs_are_found_without_opening_it() {
        let needed = NeededFiles::read([&b"libm.so.6"[..], b"libsmf-no-such-library.so.9"]);
        assert!(needed.libraries[0].found.is_ok(), "{:?}", needed.libraries[0].found);
        assert!(needed.libraries[1].found.is_err());
        let cos = needed.find(b"cos", false).expect("libm defines cos");
        assert_eq!(cos.named, "libm.so.6");
        assert!(cos.file.ends_with("libm.so.6"), "{}", cos.file.display());
        // libm needs the C library: `system` is found through it, not as libm's own.
        let system = needed.find(b"system", false).expect("through libm, the C library's");
        assert!(system.file.ends_with("libc.so.6"), "{}", system.file.display());
        assert_eq!(needed.find(b"system", true), None);
        assert_eq!(needed.find(b"smf_no_such_symbol", false), None);
    }
}
