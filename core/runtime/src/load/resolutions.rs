//! The resolver contract: during one load, [`Resolver::resolve`] is called at most once per
//! distinct name, however many of the module's symbols import it. The answers are kept here
//! for the load's duration and handed out again; the table allocates nothing for a module
//! without imports, and copies no name: each stays where the load found it (the module's
//! string table, which outlives the table). Names come hashed ([`HashedName`]: keyed, strongly universal, so no file can
//! make them collide): the table finds them by that hash, in an index sized once for every
//! symbol the module has (no name is asked more often than a symbol imports it), and hands the
//! hash to the resolver with the name.

use alloc::vec::Vec;

use super::symtab::bucket_count;
use super::{fallible, HashedName, Resolved, Resolver};

/// One answer: its name, and what the resolver said.
#[derive(Debug)]
struct Answer<'n> {
    hash: u32,
    name: &'n [u8],
    resolved: Option<Resolved>,
}

/// The answers a resolver gave during one load.
pub(super) struct Resolutions<'r, 'n> {
    resolver: &'r dyn Resolver,
    answers: Vec<Answer<'n>>,
    /// Open addressing over `answers`: index + 1 per bucket, 0 for empty; made at the first
    /// name, a power of two of at least twice `symbols`, so at most half full.
    buckets: Vec<u32>,
    /// How many symbols the module has: how many names it may ask at most.
    symbols: usize,
}

impl core::fmt::Debug for Resolutions<'_, '_> {
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

impl<'r, 'n> Resolutions<'r, 'n> {
    /// No answers yet, from `resolver`, for a module of `symbols` symbols.
    pub(super) fn new(resolver: &'r dyn Resolver, symbols: usize) -> Self {
        Self { resolver, answers: Vec::new(), buckets: Vec::new(), symbols }
    }

    /// The resolver answering.
    pub(super) fn resolver(&self) -> &'r dyn Resolver {
        self.resolver
    }

    /// What the resolver says of `name`: asked the first time, remembered after.
    pub(super) fn resolve(&mut self, name: HashedName<'n>) -> Result<Asked, OutOfMemory> {
        let bucket = match self.find(name)? {
            Found::Answer(at) => {
                let resolved = self.answers.get(at).and_then(|a| a.resolved.clone());
                return Ok(Asked { resolved, first_time: false });
            }
            Found::Empty(bucket) => bucket,
        };
        let resolved = self.resolver.resolve_hashed(name);
        let answer = Answer { hash: name.hash32(), name: name.bytes(), resolved: resolved.clone() };
        fallible::push(&mut self.answers, answer).ok_or(OutOfMemory)?;
        let slot = u32::try_from(self.answers.len()).map_err(|_| OutOfMemory)?;
        *self.buckets.get_mut(bucket).ok_or(OutOfMemory)? = slot;
        Ok(Asked { resolved, first_time: true })
    }

    /// Where `name`'s answer is, or the empty bucket it goes into; the index made or grown first
    /// if it has no room for one more.
    fn find(&mut self, name: HashedName<'_>) -> Result<Found, OutOfMemory> {
        if self.answers.len() >= self.buckets.len() / 2 {
            self.grow()?;
        }
        let (bytes, hash) = (name.bytes(), name.hash32());
        let mask = self.buckets.len() - 1;
        let mut bucket = hash as usize & mask;
        // Never full: at most half the buckets are taken.
        loop {
            let Some(at) = self.buckets.get(bucket).and_then(|&slot| (slot as usize).checked_sub(1)) else {
                return Ok(Found::Empty(bucket));
            };
            let answer = self.answers.get(at).ok_or(OutOfMemory)?;
            if answer.hash == hash && answer.name == bytes {
                return Ok(Found::Answer(at));
            }
            bucket = (bucket + 1) & mask;
        }
    }

    /// Makes the index (sized for every symbol) or, past that, doubles it (a caller asking more
    /// names than the module has symbols).
    #[cold]
    fn grow(&mut self) -> Result<(), OutOfMemory> {
        let count = bucket_count(self.symbols.max(self.answers.len() + 1)).max(self.buckets.len() * 2);
        let mut buckets = fallible::filled(0u32, count).ok_or(OutOfMemory)?;
        let mask = count - 1;
        for (slot, answer) in (1u32..).zip(&self.answers) {
            let mut bucket = answer.hash as usize & mask;
            while buckets.get(bucket).is_some_and(|&taken| taken != 0) {
                bucket = (bucket + 1) & mask;
            }
            *buckets.get_mut(bucket).ok_or(OutOfMemory)? = slot;
        }
        self.buckets = buckets;
        Ok(())
    }
}

/// Where [`Resolutions::find`] found a name.
enum Found {
    /// Its answer's index.
    Answer(usize),
    /// The empty bucket ending its probe.
    Empty(usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn answers_are_remembered_and_counted() {
        let table = [(&b"five"[..], 5usize)];
        let resolver = super::super::TableResolver(&table);
        let mut resolutions = Resolutions::new(&resolver, 4);
        assert!(format!("{resolutions:?}").starts_with("Resolutions { answers: 0"));
        let first = resolutions.resolve(HashedName::new(b"five")).unwrap();
        let again = resolutions.resolve(HashedName::new(b"five")).unwrap();
        assert!(first.first_time && !again.first_time);
        assert_eq!(first.resolved.map(|r| r.addr), Some(5));
        assert_eq!(format!("{:?}", again.resolved), "Some(Resolved { addr: 5, keepalive: false })");
        assert_eq!(again.resolved.map(|r| r.addr), Some(5));
        assert!(resolutions.resolve(HashedName::new(b"none")).unwrap().resolved.is_none());
        assert!(format!("{resolutions:?}").starts_with("Resolutions { answers: 2"), "{resolutions:?}");
    }

    #[test]
    fn more_names_than_symbols_grow_the_index_and_each_is_asked_once() {
        let names: Vec<alloc::string::String> = (0..100).map(|i| format!("f{i}")).collect();
        let table: Vec<(&[u8], usize)> = names.iter().zip(1..).map(|(n, a)| (n.as_bytes(), a)).collect();
        let resolver = super::super::TableResolver(&table);
        let mut resolutions = Resolutions::new(&resolver, 1);
        for (round, first_time) in [(0, true), (1, false)] {
            for (name, addr) in names.iter().zip(1..) {
                let asked = resolutions.resolve(HashedName::new(name.as_bytes())).unwrap();
                assert_eq!(asked.first_time, first_time, "{name}, round {round}");
                assert_eq!(asked.resolved.map(|r| r.addr), Some(addr), "{name}, round {round}");
            }
        }
        assert!(format!("{resolutions:?}").starts_with("Resolutions { answers: 100"), "{resolutions:?}");
    }
}
