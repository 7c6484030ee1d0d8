//! The resolver contract: during one load, [`Resolver::resolve`] is called at most once per
//! distinct name, however many of the module's symbols import it. The answers are kept here
//! for the load's duration and handed out again; the table allocates nothing for a module
//! without imports.

use alloc::vec::Vec;

use hashbrown::HashTable;

use super::{Resolved, Resolver};
use crate::lru::KeyedHasher;

/// One answer: where its name lies in `names`, and what the resolver said.
#[derive(Debug)]
struct Answer {
    hash: u64,
    name: core::ops::Range<usize>,
    resolved: Option<Resolved>,
}

/// The answers a resolver gave during one load.
pub(super) struct Resolutions<'r> {
    resolver: &'r dyn Resolver,
    /// The names' hasher (keyed: the file chooses the names).
    hasher: KeyedHasher,
    /// The names asked, back to back.
    names: Vec<u8>,
    answers: HashTable<Answer>,
}

impl core::fmt::Debug for Resolutions<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Resolutions").field("answers", &self.answers.len()).finish_non_exhaustive()
    }
}

/// What the resolver said of a name, and whether this load asked it for the first time.
#[derive(Debug)]
pub(super) struct Asked {
    /// The answer.
    pub(super) resolved: Option<Resolved>,
    /// Whether no symbol before this one had the name.
    pub(super) first_time: bool,
}

/// Memory for one more answer could not be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct OutOfMemory;

impl<'r> Resolutions<'r> {
    /// No answers yet, from `resolver`.
    pub(super) fn new(resolver: &'r dyn Resolver) -> Self {
        Self { resolver, hasher: KeyedHasher::per_process(), names: Vec::new(), answers: HashTable::new() }
    }

    /// The resolver answering.
    pub(super) fn resolver(&self) -> &'r dyn Resolver {
        self.resolver
    }

    /// What the resolver says of `name`: asked the first time, remembered after.
    pub(super) fn resolve(&mut self, name: &[u8]) -> Result<Asked, OutOfMemory> {
        let hash = self.hasher.hash_bytes(name);
        let names = &self.names;
        let found = self.answers.find(hash, |a| a.hash == hash && names.get(a.name.clone()) == Some(name));
        if let Some(answer) = found {
            return Ok(Asked { resolved: answer.resolved.clone(), first_time: false });
        }
        let resolved = self.resolver.resolve(name);
        self.names.try_reserve(name.len()).map_err(|_| OutOfMemory)?;
        self.answers.try_reserve(1, |a| a.hash).map_err(|_| OutOfMemory)?;
        let start = self.names.len();
        self.names.extend_from_slice(name);
        let answer = Answer { hash, name: start..self.names.len(), resolved: resolved.clone() };
        self.answers.insert_unique(hash, answer, |a| a.hash);
        Ok(Asked { resolved, first_time: true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn answers_are_remembered_and_counted() {
        let table = [(&b"five"[..], 5usize)];
        let resolver = super::super::TableResolver(&table);
        let mut resolutions = Resolutions::new(&resolver);
        assert!(format!("{resolutions:?}").starts_with("Resolutions { answers: 0"));
        let first = resolutions.resolve(b"five").unwrap();
        let again = resolutions.resolve(b"five").unwrap();
        assert!(first.first_time && !again.first_time);
        assert_eq!(first.resolved.map(|r| r.addr), Some(5));
        assert_eq!(format!("{:?}", again.resolved), "Some(Resolved { addr: 5, keepalive: false })");
        assert_eq!(again.resolved.map(|r| r.addr), Some(5));
        assert!(resolutions.resolve(b"none").unwrap().resolved.is_none());
        assert!(format!("{resolutions:?}").starts_with("Resolutions { answers: 2"), "{resolutions:?}");
    }
}
