//! A bounded least-recently-used cache, intrusive and allocation-free on its hot paths, and its
//! statistics ([`stats`]).
//!
//! [`LruCache`] keeps each entry in a slot of one array; the recency list's links (`prev`,
//! `next`) live in the slots themselves, and freed slots are chained through the same links. A
//! hit is one hash lookup and a list move; an eviction unlinks the tail and frees its slot;
//! neither allocates. Only an insert that finds no free slot grows the array (fallibly).
//!
//! Budgets bound the resident bytes (each entry says what it weighs) and the number of entries;
//! past either, [`LruCache::pop_over_budget`] hands out the least recently used entry, one at a
//! time, so that the caller drops it where it likes: a module's memory is freed when its last
//! reference goes, and that must not happen under the caller's lock.
//!
//! The cache is a plain data structure: generic over the key (any `Hash + Eq`, hashed by a
//! [`BuildHasher`] the caller picks) and the value, with no notion of files or loading; the std
//! shell keys it by path (a path's bytes as a [`ByteKey`], under [`KeyedHasher`]) and loads on a
//! miss, outside its lock, and [`LruCache::get_or_insert_with`] serves single-threaded callers.

mod key;
pub mod stats;

pub use crate::keyed_hash::{KeyedHasher, KeyedState};
pub use key::ByteKey;

use alloc::vec::Vec;
use core::borrow::Borrow;
use core::hash::{BuildHasher, Hash};

use hashbrown::HashTable;

/// No slot.
const NIL: u32 = u32::MAX;

/// The budgets: 0 means unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    /// Most resident bytes.
    pub max_bytes: u64,
    /// Most entries.
    pub max_entries: u64,
}

impl Budget {
    /// Whether `bytes` in `entries` entries exceed it.
    pub const fn exceeded(&self, bytes: u64, entries: u64) -> bool {
        (self.max_bytes != 0 && bytes > self.max_bytes)
            || (self.max_entries != 0 && entries > self.max_entries)
    }
}

/// Memory for one more entry could not be had; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheFull;

/// One slot: an entry (or none, when free) and its links in the recency list (or, when free,
/// `next` in the free list).
#[derive(Debug)]
struct Slot<K, V> {
    entry: Option<Entry<K, V>>,
    /// The more recently used neighbour.
    prev: u32,
    /// The less recently used neighbour (or the next free slot).
    next: u32,
}

#[derive(Debug)]
struct Entry<K, V> {
    key: K,
    value: V,
    bytes: u64,
    hash: u64,
}

/// A bounded LRU cache (see the module documentation).
#[derive(Debug)]
pub struct LruCache<K, V, S> {
    slots: Vec<Slot<K, V>>,
    /// Slot index by key hash.
    index: HashTable<u32>,
    hasher: S,
    /// Most recently used.
    head: u32,
    /// Least recently used.
    tail: u32,
    /// First free slot.
    free: u32,
    /// The entry inserted last, while it is cached: eviction never takes it.
    newest: u32,
    len: u64,
    bytes: u64,
    budget: Budget,
}

impl<K: Hash + Eq, V, S: BuildHasher> LruCache<K, V, S> {
    /// An empty cache with `budget`, hashing keys with `hasher`.
    pub fn new(hasher: S, budget: Budget) -> Self {
        Self {
            slots: Vec::new(),
            index: HashTable::new(),
            hasher,
            head: NIL,
            tail: NIL,
            free: NIL,
            newest: NIL,
            len: 0,
            bytes: 0,
            budget,
        }
    }

    /// The budgets.
    pub const fn budget(&self) -> Budget {
        self.budget
    }

    /// Changes the budgets (entries over them leave at the next [`LruCache::pop_over_budget`]).
    pub fn set_budget(&mut self, budget: Budget) {
        self.budget = budget;
    }

    /// How many entries it holds.
    pub const fn len(&self) -> u64 {
        self.len
    }

    /// Whether it holds none.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes its entries weigh together.
    pub const fn bytes(&self) -> u64 {
        self.bytes
    }

    fn slot_of<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
    {
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        let found = self.index.find(hash, |&slot| {
            slots[slot as usize].entry.as_ref().is_some_and(|e| e.hash == hash && e.key.borrow() == key)
        });
        found.copied()
    }

    fn entry(&self, slot: u32) -> &Entry<K, V> {
        // Every slot in the index or the recency list holds an entry.
        match &self.slots[slot as usize].entry {
            Some(entry) => entry,
            None => unreachable!("a linked slot is occupied"),
        }
    }

    /// [`LruCache::entry`], to change in place.
    fn entry_mut(&mut self, slot: u32) -> &mut Entry<K, V> {
        match &mut self.slots[slot as usize].entry {
            Some(entry) => entry,
            None => unreachable!("a linked slot is occupied"),
        }
    }

    /// The value of `key`, made the most recently used. Allocates nothing.
    pub fn get<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.get_mut(key).map(|value| &*value)
    }

    /// [`LruCache::get`], the value to change in place.
    pub fn get_mut<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        let slot = self.slot_of(key)?;
        self.make_most_recent(slot);
        Some(&mut self.entry_mut(slot).value)
    }

    /// The value of `key`, without changing its recency.
    pub fn peek<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.slot_of(key).map(|slot| &self.entry(slot).value)
    }

    /// Whether `key` is cached (its recency unchanged).
    pub fn contains<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.slot_of(key).is_some()
    }

    /// Caches `value`, weighing `bytes`, under `key` as the most recently used, and returns the
    /// value it replaces. Entries over the budget stay until [`LruCache::pop_over_budget`].
    pub fn insert(&mut self, key: K, value: V, bytes: u64) -> Result<Option<V>, CacheFull> {
        let old = self.remove(&key);
        let hash = self.hasher.hash_one(&key);
        // Room first, so that a failure changes nothing (but the removal, undone below).
        let slots = &self.slots;
        let room =
            self.index.try_reserve(1, |&slot| slots[slot as usize].entry.as_ref().map_or(0, |e| e.hash));
        let slot_room = self.free != NIL || self.slots.try_reserve(1).is_ok();
        if room.is_err() || !slot_room || self.slots.len() >= NIL as usize {
            if let Some(old) = old {
                // Put the old value back where it can be found (as the most recent).
                let _ = self.insert_unchecked(key, old, bytes, hash);
            }
            return Err(CacheFull);
        }
        self.insert_unchecked(key, value, bytes, hash);
        Ok(old)
    }

    /// Inserts into room reserved by the caller.
    fn insert_unchecked(&mut self, key: K, value: V, bytes: u64, hash: u64) -> u32 {
        let entry = Some(Entry { key, value, bytes, hash });
        let slot = if self.free != NIL {
            let slot = self.free;
            self.free = self.slots[slot as usize].next;
            self.slots[slot as usize].entry = entry;
            slot
        } else {
            self.slots.push(Slot { entry, prev: NIL, next: NIL });
            // `insert` checked that the array holds fewer than NIL slots.
            u32::try_from(self.slots.len() - 1).unwrap_or(NIL - 1)
        };
        let slots = &self.slots;
        self.index.insert_unique(hash, slot, |&s| slots[s as usize].entry.as_ref().map_or(0, |e| e.hash));
        self.push_front(slot);
        self.newest = slot;
        self.len += 1;
        self.bytes += bytes;
        slot
    }

    /// Removes `key`'s entry; its value, if it was cached.
    pub fn remove<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let slot = self.slot_of(key)?;
        Some(self.take(slot).1)
    }

    /// Unlinks slot `slot`, frees it, and returns its key and value.
    fn take(&mut self, slot: u32) -> (K, V) {
        self.unlink(slot);
        if self.newest == slot {
            self.newest = NIL;
        }
        let hash = self.entry(slot).hash;
        if let Ok(found) = self.index.find_entry(hash, |&s| s == slot) {
            found.remove();
        }
        let record = &mut self.slots[slot as usize];
        let entry = record.entry.take();
        record.next = self.free;
        self.free = slot;
        match entry {
            Some(entry) => {
                self.len -= 1;
                self.bytes -= entry.bytes;
                (entry.key, entry.value)
            }
            None => unreachable!("a linked slot is occupied"),
        }
    }

    /// The least recently used entry, removed, while the cache is over its budget and holds
    /// more than one entry (the newest stays, however large). Allocates nothing.
    pub fn pop_over_budget(&mut self) -> Option<(K, V)> {
        if self.len > 1 && self.budget.exceeded(self.bytes, self.len) {
            self.pop_lru()
        } else {
            None
        }
    }

    /// [`LruCache::pop_over_budget`], with a second chance: a least recently used entry whose
    /// value `used_since` says was used since it was last made the most recent (a use the
    /// cache did not see, as through a caller's own memo of it) is made the most recent
    /// instead, each entry at most once per call. The entry inserted last stays, wherever the
    /// chances moved it. Allocates nothing.
    pub fn pop_over_budget_unless(&mut self, mut used_since: impl FnMut(&V) -> bool) -> Option<(K, V)> {
        // One for each entry but the newest.
        let mut chances = self.len.saturating_sub(1);
        while self.len > 1 && self.budget.exceeded(self.bytes, self.len) {
            if self.tail == self.newest {
                // Moved back by the chances given before it: to the front, no chance spent.
                self.make_most_recent(self.newest);
            }
            let tail = self.tail;
            if chances == 0 || !used_since(&self.entry(tail).value) {
                return Some(self.take(tail));
            }
            chances -= 1;
            self.make_most_recent(tail);
        }
        None
    }

    /// The least recently used entry, removed.
    pub fn pop_lru(&mut self) -> Option<(K, V)> {
        (self.tail != NIL).then(|| self.take(self.tail))
    }

    /// Keys and values from the most to the least recently used.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        let mut at = self.head;
        core::iter::from_fn(move || {
            if at == NIL {
                return None;
            }
            let entry = self.entry(at);
            at = self.slots[at as usize].next;
            Some((&entry.key, &entry.value))
        })
    }

    /// The value cached under `key`, or the one `produce` makes (inserted as the most recently
    /// used, entries over the budget dropped): the whole policy for a caller without threads.
    pub fn get_or_insert_with<E>(
        &mut self,
        key: K,
        produce: impl FnOnce() -> Result<(V, u64), E>,
    ) -> Result<&V, GetError<E>> {
        if let Some(slot) = self.slot_of(&key) {
            self.make_most_recent(slot);
            return Ok(&self.entry(slot).value);
        }
        let (value, bytes) = produce().map_err(GetError::Produce)?;
        self.insert(key, value, bytes).map_err(|CacheFull| GetError::Full)?;
        while self.pop_over_budget().is_some() {}
        // The new entry is the most recent, which over-budget eviction never takes.
        Ok(&self.entry(self.head).value)
    }

    /// Moves `slot` to the front of the recency list (where it is already, as the entry a
    /// thread gets again and again is: nothing to write).
    fn make_most_recent(&mut self, slot: u32) {
        if self.head != slot {
            self.unlink(slot);
            self.push_front(slot);
        }
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next) = (self.slots[slot as usize].prev, self.slots[slot as usize].next);
        match prev {
            NIL => self.head = next,
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n as usize].prev = prev,
        }
    }

    fn push_front(&mut self, slot: u32) {
        let old_head = self.head;
        let record = &mut self.slots[slot as usize];
        record.prev = NIL;
        record.next = old_head;
        match old_head {
            NIL => self.tail = slot,
            h => self.slots[h as usize].prev = slot,
        }
        self.head = slot;
    }
}

/// Why [`LruCache::get_or_insert_with`] has no value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetError<E> {
    /// The producer failed.
    Produce(E),
    /// Memory for the entry could not be had.
    Full,
}

#[cfg(test)]
mod tests;
