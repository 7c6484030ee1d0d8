//! The shared libraries a module names as needed (`note.needed`, `docs/format.md` "Needed
//! libraries"), opened as `ld.so` opens a library's `DT_NEEDED` and resolved in, in order:
//! [`NeededLibraries`] is told the names once the module is validated (`Resolver::needs`), and
//! opens them (`dlopen`, by file name: the system's search path) when the first import gets
//! as far as them in the lookup order. So a module that fails its checks, or whose imports
//! the sources before them provide, runs no library's constructors. A library nothing
//! resolves against is closed once the load ends; one the module links to stays open while the
//! module holds its symbols. A library that cannot be opened is no error by itself: an import
//! left unresolved says why.
//!
//! With the C library turned off ([`NeededLibraries::own_symbols_only`]), a library answers
//! only with symbols it defines itself: `dlsym` on its handle would also reach the libraries
//! it links, the C library among them.
//!
//! A load that names none pays nothing: no allocation, no call.

use std::cell::RefCell;
use std::fmt;

use smf_runtime::load::{Resolved, Resolver};

use crate::native::SharedLibrary;

/// The libraries of one load (or of one batch of loads: those any of its modules needs).
#[derive(Debug, Default)]
pub struct NeededLibraries {
    /// Named, not opened yet, in the order named.
    named: RefCell<Vec<String>>,
    /// Opened, in the order named.
    opened: RefCell<Vec<SharedLibrary>>,
    /// Those that could not be, with `dlerror`'s reason.
    missing: RefCell<Vec<(String, String)>>,
    /// Only symbols a library defines itself are taken from it.
    own_only: bool,
}

impl NeededLibraries {
    /// None yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Libraries that answer only with the symbols they define themselves (for a load with
    /// the C library turned off).
    pub fn own_symbols_only() -> Self {
        Self { own_only: true, ..Self::default() }
    }

    /// Whether any library was named.
    pub fn is_empty(&self) -> bool {
        self.named.borrow().is_empty() && self.opened.borrow().is_empty() && self.missing.borrow().is_empty()
    }

    /// The library that resolves `name` (its name as the module gives it), and the address.
    pub fn find(&self, name: &[u8]) -> Option<(String, usize)> {
        self.open_named();
        let opened = self.opened.borrow();
        opened
            .iter()
            .find_map(|library| Some((library.name().to_owned(), self.in_library(library, name)?.addr)))
    }

    /// The names of the libraries opened, in order (none before an import asked for them).
    pub fn opened(&self) -> Vec<String> {
        self.opened.borrow().iter().map(|library| library.name().to_owned()).collect()
    }

    /// `name` in `library`, as this load takes symbols from it.
    fn in_library(&self, library: &SharedLibrary, name: &[u8]) -> Option<Resolved> {
        if self.own_only {
            library.resolve_own(name)
        } else {
            library.resolve(name)
        }
    }

    /// Opens the libraries named and not opened yet, in order.
    fn open_named(&self) {
        if self.named.borrow().is_empty() {
            return;
        }
        let named = std::mem::take(&mut *self.named.borrow_mut());
        for name in named {
            match SharedLibrary::open(&name) {
                Ok(library) => self.opened.borrow_mut().push(library),
                Err(reason) => self.missing.borrow_mut().push((name, reason)),
            }
        }
    }
}

impl Resolver for NeededLibraries {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        self.open_named();
        self.opened.borrow().iter().find_map(|library| self.in_library(library, name))
    }

    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        let (named, opened, missing) = (self.named.borrow(), self.opened.borrow(), self.missing.borrow());
        if named.is_empty() && opened.is_empty() && missing.is_empty() {
            return out.write_str("no needed library");
        }
        out.write_str("needed libraries:")?;
        for library in opened.iter() {
            write!(out, " {}", library.name())?;
        }
        for name in named.iter() {
            write!(out, " {name} (not opened: nothing asked for it)")?;
        }
        for (name, reason) in missing.iter() {
            write!(out, " {name} (cannot be opened: {reason})")?;
        }
        if self.own_only {
            out.write_str(" (their own symbols only)")?;
        }
        Ok(())
    }

    fn needs(&self, libraries: &[&[u8]]) {
        for &name in libraries {
            // The format admits only ASCII file names.
            let Ok(name) = std::str::from_utf8(name) else { continue };
            let known = self.named.borrow().iter().any(|n| n == name)
                || self.opened.borrow().iter().any(|l| l.name() == name)
                || self.missing.borrow().iter().any(|(n, _)| n == name);
            if !known {
                self.named.borrow_mut().push(name.to_owned());
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
        assert!(needed.opened().is_empty(), "opened only when an import gets as far as them");
        assert!(!needed.is_empty(), "named");
        assert!(needed.resolve(b"smf_no_such_symbol").is_none());
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

    #[test]
    fn with_the_c_library_off_a_library_gives_only_its_own_symbols() {
        let needed = NeededLibraries::own_symbols_only();
        needed.needs(&[b"libm.so.6"]);
        assert!(needed.resolve(b"cos").is_some(), "libm's own cos");
        // libm links the C library: its handle reaches `system`, which is not libm's.
        assert!(NeededLibraries::new().resolve(b"system").is_none(), "nothing named: nothing found");
        let reaching = NeededLibraries::new();
        reaching.needs(&[b"libm.so.6"]);
        assert!(reaching.resolve(b"system").is_some(), "through libm's handle, the C library's");
        assert!(needed.resolve(b"system").is_none(), "not libm's own");
        let mut described = String::new();
        needed.describe(&mut described).unwrap();
        assert!(described.ends_with("(their own symbols only)"), "{described}");
    }
}
