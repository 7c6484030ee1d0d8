//! Installed names, readable without a lock: a repeated request (the common case, and the one
//! that must cost no more than a `dlsym`) is a hash, a probe and a compare, with no atomic
//! read-modify-write.
//!
//! An open-addressing table of slots, each a name's hash, address and bytes (a pointer to the
//! name, owned by the table, and its length), filled once and never changed. Writers are
//! serialized by the instantiator's lock, which is the only place a [`Writer`] lives: inserting
//! needs `&mut Writer`. A name, once published, is never freed until the instantiator is
//! dropped; a full table is replaced by one twice its size holding copies of the same slots
//! (pointing to the same names), and the old array is kept (readers may still be probing it)
//! until then too. A slot is published by a release store of its name pointer after its other
//! fields; readers load the current table and each name pointer with acquire ordering.

#![allow(unsafe_code)]

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::hash::{BuildHasher, Hasher};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crate::lru::KeyedHasher;

/// Slots of the first table.
const INITIAL_SLOTS: usize = 64;

/// A slot: empty while its name pointer is null. The hash, address and length are stored
/// before the pointer is published (release), so a reader that sees the pointer (acquire) sees
/// them; none of them changes afterwards. The name's bytes are a `Box<str>` taken apart
/// (`Box::into_raw`), freed by the writer when the instantiator is dropped.
struct Slot {
    hash: AtomicU64,
    address: AtomicUsize,
    name_len: AtomicUsize,
    name: AtomicPtr<u8>,
}

impl Slot {
    fn empty() -> Slot {
        Slot {
            hash: AtomicU64::new(0),
            address: AtomicUsize::new(0),
            name_len: AtomicUsize::new(0),
            name: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// The name's bytes of a slot whose pointer `name` was loaded non-null (acquire).
    ///
    /// # Safety
    /// `name` is this slot's published name pointer.
    unsafe fn name_bytes(&self, name: *mut u8) -> &[u8] {
        let len = self.name_len.load(Ordering::Relaxed);
        // SAFETY: a published pointer and its length are a boxed `str`'s, live until the
        // instantiator is dropped (the caller's `&self` on it rules that out) and never written.
        unsafe { core::slice::from_raw_parts(name, len) }
    }
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
        Box::new(Self { slots: (0..len).map(|_| Slot::empty()).collect() })
    }

    /// [`Slots::new`], or the bytes that could not be had.
    fn try_new(len: usize) -> Result<Box<Self>, usize> {
        let bytes = len.saturating_mul(core::mem::size_of::<Slot>());
        let layout = core::alloc::Layout::array::<Slot>(len).map_err(|_| bytes)?;
        if layout.size() == 0 {
            return try_box(Self { slots: Box::new([]) }).map_err(|_| bytes);
        }
        // Zeroed by the allocator (fresh pages need no writing): an empty slot is all zeros.
        // SAFETY: the layout's size is not zero.
        let raw = unsafe { alloc::alloc::alloc_zeroed(layout) }.cast::<Slot>();
        if raw.is_null() {
            return Err(bytes);
        }
        // SAFETY: `raw` is a fresh allocation from the global allocator with the layout of
        // `len` slots, the one `Box<[Slot]>` frees with; zero bytes are a valid slot (integers
        // 0, a null pointer: empty).
        let slots = unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(raw, len)) };
        try_box(Self { slots }).map_err(|_| bytes)
    }

    /// Fills the first empty slot for `hash` with `address` and the name at `name` (`len`
    /// bytes); the caller keeps the table at most half full.
    fn put(&self, hash: u64, address: usize, name: *mut u8, len: usize) -> bool {
        match self.probe(hash).find(|s| s.name.load(Ordering::Relaxed).is_null()) {
            Some(slot) => {
                slot.hash.store(hash, Ordering::Relaxed);
                slot.address.store(address, Ordering::Relaxed);
                slot.name_len.store(len, Ordering::Relaxed);
                slot.name.store(name, Ordering::Release);
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
// names behind them are immutable once published.
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
            let name_ptr = slot.name.load(Ordering::Acquire);
            if name_ptr.is_null() {
                return None;
            }
            // SAFETY: the pointer was loaded from this slot, non-null.
            if slot.hash.load(Ordering::Relaxed) == hash && unsafe { slot.name_bytes(name_ptr) } == name {
                return Some(slot.address.load(Ordering::Relaxed));
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
        let Some(table) = writer.current() else {
            return Err((0, name)); // unreachable: the writer always has a table
        };
        let len = name.len();
        let raw = Box::into_raw(name).cast::<u8>();
        if table.put(hash, address, raw, len) {
            writer.len += 1;
            return Ok(());
        }
        // Unreachable (the table is at most half full): the name is given back, never leaked.
        // SAFETY: `raw` and `len` are the box taken apart above, never published.
        Err((0, unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(raw, len) as *mut str) }))
    }

    /// Replaces the current table by one of `len` slots holding the same names (or, out of
    /// memory, keeps it: the bytes that could not be had).
    fn grow(&self, writer: &mut Writer, len: usize) -> Result<(), usize> {
        writer.tables.try_reserve(1).map_err(|_| {
            writer.tables.len().saturating_add(1).saturating_mul(core::mem::size_of::<usize>())
        })?;
        let bigger = Slots::try_new(len.max(INITIAL_SLOTS))?;
        if let Some(old) = writer.current() {
            for slot in old.slots.iter() {
                let name = slot.name.load(Ordering::Relaxed);
                if !name.is_null() {
                    let hash = slot.hash.load(Ordering::Relaxed);
                    let address = slot.address.load(Ordering::Relaxed);
                    bigger.put(hash, address, name, slot.name_len.load(Ordering::Relaxed));
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
    /// Adds `by` to `counter`, a counter written only through this (under the instantiator's
    /// lock, which `&mut self` proves): a load and a store, not a read-modify-write; readers
    /// need no lock (they see it as of some moment).
    pub(super) fn count(&mut self, counter: &AtomicU64, by: u64) {
        counter.store(counter.load(Ordering::Relaxed).wrapping_add(by), Ordering::Relaxed);
    }

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
        // The instantiator is being dropped: no reader is left. Every name is in the last
        // table (growing copies them all).
        if let Some(current) = self.current() {
            for slot in current.slots.iter() {
                let name = slot.name.swap(ptr::null_mut(), Ordering::Relaxed);
                if !name.is_null() {
                    let len = slot.name_len.load(Ordering::Relaxed);
                    // SAFETY: a boxed `str` taken apart by `insert`, freed once, here.
                    drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(name, len) as *mut str) });
                }
            }
        }
        for table in self.tables.drain(..) {
            // SAFETY: made with `Box::leak`, freed once, here.
            drop(unsafe { Box::from_raw(table.as_ptr()) });
        }
    }
}
