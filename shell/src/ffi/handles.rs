//! Opaque handles for objects C owns one reference to (`SmfCache *`, `SmfJit *`): values from
//! a counter that never repeats (multiples of 16), looked up in a table of live objects before
//! anything is touched, never dereferenced. A call clones the object's `Arc` and releases the
//! table's lock first, so freeing a handle on another thread waits for nothing, and the object
//! goes when the last call using it returns.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// Hashes handles: distinct counter values times 16, which one multiply spreads (every call
/// looks a handle up, so SipHash would be a real share of a cached `smf_jit_instantiate`).
#[derive(Default)]
pub(crate) struct HandleHasher(u64);

impl Hasher for HandleHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

type Table<T> = HashMap<usize, Arc<T>, BuildHasherDefault<HandleHasher>>;

/// Live objects of one kind by handle.
pub(crate) struct Handles<T> {
    /// What the handles are called in messages (`"SmfCache"`).
    kind: &'static str,
    live: RwLock<Option<Table<T>>>,
    next: AtomicUsize,
}

impl<T> Handles<T> {
    pub(crate) const fn new(kind: &'static str) -> Self {
        Self { kind, live: RwLock::new(None), next: AtomicUsize::new(1) }
    }

    /// A new handle owning `value`.
    pub(crate) fn insert(&self, value: T) -> usize {
        let handle = self.next.fetch_add(1, Ordering::Relaxed) << 4;
        let mut live = self.live.write().unwrap_or_else(PoisonError::into_inner);
        live.get_or_insert_with(Table::default).insert(handle, Arc::new(value));
        handle
    }

    /// The object behind `handle`: a reference of the caller's own.
    pub(crate) fn get<P>(&self, handle: *const P) -> Result<Arc<T>, String> {
        self.find(handle, Arc::clone)
    }

    /// Runs `f` on the object behind `handle` with the table's (read) lock held: for short
    /// work that never calls back into the library, so that no reference is taken.
    pub(crate) fn with<P, R>(&self, handle: *const P, f: impl FnOnce(&T) -> R) -> Result<R, String> {
        self.find(handle, |value| f(value))
    }

    /// Runs `f` on the live entry of `handle`, under the read lock.
    fn find<P, R>(&self, handle: *const P, f: impl FnOnce(&Arc<T>) -> R) -> Result<R, String> {
        let live = self.live.read().unwrap_or_else(PoisonError::into_inner);
        match live.as_ref().and_then(|t| t.get(&(handle as usize))) {
            Some(value) => Ok(f(value)),
            None if handle.is_null() => Err(format!("{} handle is NULL", self.kind)),
            None => Err(format!("{handle:p} is not a live {} handle", self.kind)),
        }
    }

    /// The first live object `f` accepts (a reference of the caller's own).
    pub(crate) fn find_live(&self, f: impl Fn(&T) -> bool) -> Option<Arc<T>> {
        let live = self.live.read().unwrap_or_else(PoisonError::into_inner);
        live.as_ref()?.values().find(|value| f(value)).cloned()
    }

    /// Ends `handle` (NULL: nothing); the object is dropped here, outside the table's lock,
    /// unless a call still uses it.
    pub(crate) fn remove<P>(&self, handle: *const P) -> Result<(), String> {
        if handle.is_null() {
            return Ok(());
        }
        let removed = self
            .live
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
            .and_then(|t| t.remove(&(handle as usize)));
        match removed {
            Some(value) => {
                drop(value);
                Ok(())
            }
            None => Err(format!("{handle:p} is not a live {} handle", self.kind)),
        }
    }
}
