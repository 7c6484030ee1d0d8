//! How a load finds its imports: the [`Resolver`] trait, what it asks ([`HashedName`]: a name
//! with its hash, computed once per import and handed along every resolver of a chain), what it
//! answers ([`Resolved`]: an address and the module that owns it, kept alive by the importer),
//! and the resolvers that need nothing but the core (none, a fixed table, one after another).

use alloc::sync::Arc;
use core::any::Any;
use core::fmt;

use crate::keyed_hash::KeyedHasher;

/// Something a loaded module keeps alive because it links to it (another module).
pub type Keepalive = Arc<dyn Any + Send + Sync>;

/// A name and its [`KeyedHasher::hash32`] under the process's key
/// ([`KeyedHasher::per_process`]): what a load hashed once and every resolver of its chain may
/// look up by, instead of hashing the name again. Made only here, so the hash is always the
/// name's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashedName<'n> {
    bytes: &'n [u8],
    hash: u32,
}

impl<'n> HashedName<'n> {
    /// `bytes` and its hash.
    #[inline]
    pub fn new(bytes: &'n [u8]) -> Self {
        Self { bytes, hash: KeyedHasher::per_process().hash32(bytes) }
    }

    /// `bytes` with the hash the caller computed under the process's key (the link stage hashes
    /// a name where it lies in the string table).
    #[inline(always)]
    pub(crate) const fn hashed(bytes: &'n [u8], hash: u32) -> Self {
        Self { bytes, hash }
    }

    /// The name.
    #[inline(always)]
    pub const fn bytes(&self) -> &'n [u8] {
        self.bytes
    }

    /// Its [`KeyedHasher::hash32`] under the process's key: what the loader's symbol and export
    /// indexes hold for it, and what tables of names keyed alike may look it up by.
    #[inline(always)]
    pub const fn hash32(&self) -> u32 {
        self.hash
    }
}

/// An import's resolution: its address and, if it lives in another module, that module.
#[derive(Clone)]
pub struct Resolved {
    /// The symbol's address.
    pub addr: usize,
    /// The owner to keep alive while the importing module lives.
    pub keepalive: Option<Keepalive>,
}

impl fmt::Debug for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolved")
            .field("addr", &self.addr)
            .field("keepalive", &self.keepalive.is_some())
            .finish()
    }
}

/// Finds the address of an imported symbol.
///
/// What a load guarantees its resolver: [`LoadedModule::load`](super::LoadedModule::load) calls `resolve` at most once per
/// distinct name (several import symbols of one name, and the load's internal retries, share
/// the first answer), in the order the module's symbol table first names them, and holds no
/// lock of the allocator while it does, so a resolver may itself load a module (a dependency).
/// A load that fails may have asked about names it then did not link.
pub trait Resolver {
    /// The exported symbol named `name`, if this resolver knows it.
    fn resolve(&self, name: &[u8]) -> Option<Resolved>;

    /// [`Resolver::resolve`] of a name whose hash is at hand: what a load calls. A resolver
    /// whose table is keyed by [`HashedName::hash32`] looks the name up without hashing it
    /// again; chains hand the same hash to each of theirs. The default asks
    /// [`Resolver::resolve`]; both must give the same answer.
    #[inline]
    fn resolve_hashed(&self, name: HashedName<'_>) -> Option<Resolved> {
        self.resolve(name.bytes())
    }

    /// Where it looks, for the message of an import nothing resolved ("host symbols, 3 loaded
    /// modules"); written only when a load fails that way.
    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        out.write_str("a resolver")
    }

    /// The shared libraries the module being loaded names as needed (its `note.needed`, in
    /// order: `docs/format.md`, "Needed libraries"), told before its first import is resolved,
    /// and only when it names some. A resolver that opens libraries (the shell's) opens them
    /// here and resolves in them; the default ignores them.
    fn needs(&self, _libraries: &[&[u8]]) {}
}

/// Resolves nothing.
impl Resolver for () {
    fn resolve(&self, _name: &[u8]) -> Option<Resolved> {
        None
    }

    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        out.write_str("nowhere (no resolver)")
    }
}

impl<R: Resolver + ?Sized> Resolver for &R {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        (**self).resolve(name)
    }

    fn resolve_hashed(&self, name: HashedName<'_>) -> Option<Resolved> {
        (**self).resolve_hashed(name)
    }

    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        (**self).describe(out)
    }

    fn needs(&self, libraries: &[&[u8]]) {
        (**self).needs(libraries);
    }
}

/// A caller-supplied table of `(name, address)` pairs.
#[derive(Clone, Copy, Debug)]
pub struct TableResolver<'t>(pub &'t [(&'t [u8], usize)]);

impl Resolver for TableResolver<'_> {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        self.0.iter().find(|(n, _)| *n == name).map(|&(_, addr)| Resolved { addr, keepalive: None })
    }

    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        write!(out, "a table of {} symbols", self.0.len())
    }
}

/// Tries `A`, then `B`.
#[derive(Clone, Copy, Debug)]
pub struct Chain<A, B>(pub A, pub B);

impl<A: Resolver, B: Resolver> Resolver for Chain<A, B> {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        self.resolve_hashed(HashedName::new(name))
    }

    fn resolve_hashed(&self, name: HashedName<'_>) -> Option<Resolved> {
        self.0.resolve_hashed(name).or_else(|| self.1.resolve_hashed(name))
    }

    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        self.0.describe(out)?;
        out.write_str(", ")?;
        self.1.describe(out)
    }

    fn needs(&self, libraries: &[&[u8]]) {
        self.0.needs(libraries);
        self.1.needs(libraries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    /// `resolver`'s answer for `name`, through a generic parameter (a `&R` is one too).
    fn address<R: Resolver>(resolver: R, name: &[u8]) -> Option<usize> {
        resolver.resolve(name).map(|r| r.addr)
    }

    #[test]
    // The borrows are the point: they go through `impl Resolver for &R`.
    #[allow(clippy::needless_borrows_for_generic_args)]
    fn resolvers_answer_and_describe_themselves_through_references_and_chains() {
        let table = [(&b"five"[..], 5usize)];
        let table = TableResolver(&table);
        assert_eq!(address(&table, b"five"), Some(5));
        assert_eq!(address(&table, b"six"), None);
        assert_eq!(address(Chain((), &table), b"five"), Some(5));
        // A chain hands the name's hash along; each resolver answers as by the name alone.
        let hashed = |name| Chain((), &table).resolve_hashed(HashedName::new(name)).map(|r| r.addr);
        assert_eq!((hashed(b"five"), hashed(b"six")), (Some(5), None));
        assert_eq!(HashedName::new(b"five").bytes(), b"five");
        assert_eq!(HashedName::new(b"five").hash32(), KeyedHasher::per_process().hash32(b"five"));
        let mut said = String::new();
        Chain(&table, ()).describe(&mut said).unwrap();
        assert_eq!(said, "a table of 1 symbols, nowhere (no resolver)");
    }
}
