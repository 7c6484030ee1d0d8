//! The shared libraries a module names as needed (`note.needed`, `docs/format.md` "Needed
//! libraries"), opened while it loads, as `ld.so` opens a library's `DT_NEEDED`:
//! [`NeededLibraries`] is told the names before the module's first import is resolved
//! (`Resolver::needs`), opens each with `dlopen` (by file name: the system's search path) and
//! resolves in them, in order. A library nothing resolves against is closed once the load
//! ends; one the module links to stays open while the module holds its symbols. A library
//! that cannot be opened is no error by itself: an import left unresolved says why.
//!
//! A load that names none pays nothing: no allocation, no call.

use std::cell::RefCell;
use std::fmt;

use smf_runtime::load::{Resolved, Resolver};

use crate::native::SharedLibrary;

/// The libraries of one load (or of one batch of loads: those any of its modules needs).
#[derive(Debug, Default)]
pub struct NeededLibraries {
    /// Opened, in the order named.
    opened: RefCell<Vec<SharedLibrary>>,
    /// Those that could not be, with `dlerror`'s reason.
    missing: RefCell<Vec<(String, String)>>,
}

impl NeededLibraries {
    /// None yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether any library was named.
    pub fn is_empty(&self) -> bool {
        self.opened.borrow().is_empty() && self.missing.borrow().is_empty()
    }

    /// The library that resolves `name` (its name as the module gives it), and the address.
    pub fn find(&self, name: &[u8]) -> Option<(String, usize)> {
        let opened = self.opened.borrow();
        opened.iter().find_map(|library| Some((library.name().to_owned(), library.resolve(name)?.addr)))
    }

    /// The names of the libraries opened, in order.
    pub fn opened(&self) -> Vec<String> {
        self.opened.borrow().iter().map(|library| library.name().to_owned()).collect()
    }
}

impl Resolver for NeededLibraries {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        self.opened.borrow().iter().find_map(|library| library.resolve(name))
    }

    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        let (opened, missing) = (self.opened.borrow(), self.missing.borrow());
        if opened.is_empty() && missing.is_empty() {
            return out.write_str("no needed library");
        }
        out.write_str("needed libraries:")?;
        for library in opened.iter() {
            write!(out, " {}", library.name())?;
        }
        for (name, reason) in missing.iter() {
            write!(out, " {name} (cannot be opened: {reason})")?;
        }
        Ok(())
    }

    fn needs(&self, libraries: &[&[u8]]) {
        for &name in libraries {
            // The format admits only ASCII file names.
            let Ok(name) = std::str::from_utf8(name) else { continue };
            let known = self.opened.borrow().iter().any(|l| l.name() == name)
                || self.missing.borrow().iter().any(|(n, _)| n == name);
            if known {
                continue;
            }
            match SharedLibrary::open(name) {
                Ok(library) => self.opened.borrow_mut().push(library),
                Err(reason) => self.missing.borrow_mut().push((name.to_owned(), reason)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_libraries_are_opened_once_and_resolve_in_order_and_missing_ones_are_said() {
        let needed = NeededLibraries::new();
        assert!(needed.is_empty());
        assert!(needed.resolve(b"cos").is_none(), "nothing opened yet");
        needed.needs(&[b"libm.so.6", b"libsmf-no-such-library.so.9", b"libm.so.6"]);
        assert_eq!(needed.opened(), ["libm.so.6"]);
        assert!(needed.resolve(b"cos").is_some(), "libm's cos");
        assert_eq!(needed.find(b"cos").map(|(library, _)| library).as_deref(), Some("libm.so.6"));
        let mut described = String::new();
        needed.describe(&mut described).unwrap();
        assert!(
            described
                .starts_with("needed libraries: libm.so.6 libsmf-no-such-library.so.9 (cannot be opened: "),
            "{described}"
        );
    }
}
