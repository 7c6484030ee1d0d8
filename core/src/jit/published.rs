//! Installed names, readable without a lock: a repeated request (the common case, and the one
//! that must cost no more than a `dlsym`) is a hash, a probe and a compare, with no atomic
//! read-modify-write.
//!
//! An open-addressing table of pointers to immutable nodes (name, hash, address). Writers are
//! serialized by the instantiator's lock, which is the only place a [`Writer`] lives: inserting
//! needs `&mut Writer`. A node, once published, is never changed or freed until the
//! instantiator is dropped; a full table is replaced by one twice its size holding the same
//! nodes, and the old array is kept (readers may still be probing it) until then too. Readers
//! load the current table and each slot with acquire ordering, pairing with the release stores
//! that publish them.

#![allow(unsafe_code)]

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::hash::{BuildHasher, Hasher};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use crate::cache::KeyedHasher;

/// Slots of the first table.
const INITIAL_SLOTS: usize = 64;

/// One published name.
struct Node {
    name: Box<str>,
    address: usize,
}

/// A slot: the node's hash beside its pointer, so that a probe reads no node but the match.
/// The hash is stored before the pointer is published (release), so a reader that sees the
/// pointer (acquire) sees the hash.
struct Slot {
    hash: AtomicU64,
    node: AtomicPtr<Node>,
}

/// One table: a power-of-two number of slots, null where empty.
struct Slots {
    slots: Box<[Slot]>,
}

/// `value` in a new box, or `value` back where memory cannot be had (`Box::new` aborts).
fn try_box<T>(value: T) -> Result<Box<T>, T> {
    let layout = core::alloc::Layout::new::<T>();
    if layout.size() == 0 {
        return Ok(Box::new(value));
    }
    // SAFETY: the layout's size is not zero.
    let raw = unsafe { alloc::alloc::alloc(layout) }.cast::<T>();
    if raw.is_null() {
        return Err(value);
    }
    // SAFETY: `raw` is a fresh allocation of `T`'s layout from the global allocator: writing
    // the value initializes it, and `Box::from_raw` takes ownership as `Box::new` would have.
    unsafe {
        raw.write(value);
        Ok(Box::from_raw(raw))
    }
}

impl Slots {
    fn new(len: usize) -> Box<Self> {
        let empty = |_| Slot { hash: AtomicU64::new(0), node: AtomicPtr::new(ptr::null_mut()) };
        Box::new(Self { slots: (0..len).map(empty).collect() })
    }

    /// [`Slots::new`], or the bytes that could not be had.
    fn try_new(len: usize) -> Result<Box<Self>, usize> {
        let bytes = len.saturating_mul(core::mem::size_of::<Slot>());
        let mut slots = Vec::new();
        slots.try_reserve_exact(len).map_err(|_| bytes)?;
        slots.extend(
            (0..len).map(|_| Slot { hash: AtomicU64::new(0), node: AtomicPtr::new(ptr::null_mut()) }),
        );
        // Exactly `len` reserved and filled: boxing reallocates nothing.
        try_box(Self { slots: slots.into_boxed_slice() }).map_err(|_| bytes)
    }

    /// Fills the first empty slot for `hash` (the caller keeps the table at most half full).
    fn put(&self, hash: u64, node: *mut Node) -> bool {
        match self.probe(hash).find(|s| s.node.load(Ordering::Relaxed).is_null()) {
            Some(slot) => {
                slot.hash.store(hash, Ordering::Relaxed);
                slot.node.store(node, Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// The slots probed for `hash`, in order (linear probing from the hash's slot).
    fn probe(&self, hash: u64) -> impl Iterator<Item = &Slot> {
        let mask = self.slots.len() - 1;
        // The low bits of the hash pick the first slot (the mask keeps them below the length).
        let start = usize::try_from(hash & mask as u64).unwrap_or(0);
        (0..self.slots.len()).map(move |i| &self.slots[(start + i) & mask])
    }
}

/// The lock-free side: what readers use.
pub(super) struct Published {
    current: AtomicPtr<Slots>,
    hasher: KeyedHasher,
}

/// The locked side: the tables' owner and the count, reachable only under the instantiator's
/// lock.
pub(super) struct Writer {
    /// Every table made (from `Box::into_raw`, freed when the writer is dropped); the last is
    /// the current one. Raw, so that readers' pointers stay valid while the vector grows.
    tables: Vec<NonNull<Slots>>,
    len: usize,
}

// SAFETY: the tables are heap allocations the writer owns; what they hold is atomics, and the
// nodes behind them are immutable once published.
unsafe impl Send for Writer {}

impl Published {
    /// An empty table and its writer.
    pub(super) fn new(hasher: KeyedHasher) -> (Self, Writer) {
        let first = NonNull::from(Box::leak(Slots::new(INITIAL_SLOTS)));
        let current = AtomicPtr::new(first.as_ptr());
        (Self { current, hasher }, Writer { tables: alloc::vec![first], len: 0 })
    }

    /// The hash [`Published::get_hashed`] and [`Published::insert`] take.
    pub(super) fn hash(&self, name: &[u8]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(name);
        hasher.finish()
    }

    /// The address published for `name`.
    pub(super) fn get(&self, name: &[u8]) -> Option<usize> {
        self.get_hashed(name, self.hash(name))
    }

    /// The address published for `name`, whose [`Published::hash`] is `hash`.
    pub(super) fn get_hashed(&self, name: &[u8], hash: u64) -> Option<usize> {
        // SAFETY: `current` always points to a table the writer owns, and tables are freed only
        // when the instantiator is dropped (no reader can exist then).
        let table = unsafe { &*self.current.load(Ordering::Acquire) };
        for slot in table.probe(hash) {
            let node = slot.node.load(Ordering::Acquire);
            if node.is_null() {
                return None;
            }
            if slot.hash.load(Ordering::Relaxed) == hash {
                // SAFETY: published nodes are immutable and live until the instantiator is
                // dropped.
                let node = unsafe { &*node };
                if node.name.as_bytes() == name {
                    return Some(node.address);
                }
            }
        }
        None
    }

    /// Publishes `name` (whose [`Published::hash`] is `hash`) at `address`; a name not
    /// published yet. Out of memory leaves it unpublished: the bytes that could not be had,
    /// and the name back.
    pub(super) fn insert(
        &self,
        writer: &mut Writer,
        name: Box<str>,
        hash: u64,
        address: usize,
    ) -> Result<(), (usize, Box<str>)> {
        let capacity = writer.current().map_or(0, |t| t.slots.len());
        if (writer.len + 1) * 2 > capacity {
            if let Err(bytes) = self.grow(writer, capacity * 2) {
                return Err((bytes, name));
            }
        }
        let node = match try_box(Node { name, address }) {
            Ok(node) => Box::into_raw(node),
            Err(node) => return Err((core::mem::size_of::<Node>(), node.name)),
        };
        if writer.current().is_some_and(|table| table.put(hash, node)) {
            writer.len += 1;
            return Ok(());
        }
        // Unreachable (the table is at most half full); never leak the node.
        // SAFETY: made above and never published.
        drop(unsafe { Box::from_raw(node) });
        Ok(())
    }

    /// Replaces the current table by one of `len` slots holding the same nodes (or, out of
    /// memory, keeps it: the bytes that could not be had).
    fn grow(&self, writer: &mut Writer, len: usize) -> Result<(), usize> {
        writer.tables.try_reserve(1).map_err(|_| {
            writer.tables.len().saturating_add(1).saturating_mul(core::mem::size_of::<usize>())
        })?;
        let bigger = Slots::try_new(len.max(INITIAL_SLOTS))?;
        if let Some(old) = writer.current() {
            for slot in old.slots.iter() {
                let node = slot.node.load(Ordering::Relaxed);
                if !node.is_null() {
                    bigger.put(slot.hash.load(Ordering::Relaxed), node);
                }
            }
        }
        let bigger = NonNull::from(Box::leak(bigger));
        writer.tables.push(bigger);
        // The release store publishes the filled table with its slots.
        self.current.store(bigger.as_ptr(), Ordering::Release);
        Ok(())
    }
}

impl Writer {
    /// Names published.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The current table.
    fn current(&self) -> Option<&Slots> {
        // SAFETY: tables live until the writer is dropped.
        self.tables.last().map(|t| unsafe { t.as_ref() })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // The instantiator is being dropped: no reader is left. Every node is in the last
        // table (growing copies them all).
        if let Some(current) = self.current() {
            for slot in current.slots.iter() {
                let node = slot.node.swap(ptr::null_mut(), Ordering::Relaxed);
                if !node.is_null() {
                    // SAFETY: made by `insert` with `Box::into_raw`, freed once, here.
                    drop(unsafe { Box::from_raw(node) });
                }
            }
        }
        for table in self.tables.drain(..) {
            // SAFETY: made with `Box::leak`, freed once, here.
            drop(unsafe { Box::from_raw(table.as_ptr()) });
        }
    }
}
