//! Opaque handles for objects C owns one reference to (`SmfCache *`, `SmfJit *`): values from
//! a counter that never repeats (multiples of 16), looked up in a table of live objects before
//! anything is touched, never dereferenced. A call clones the object's `Arc` and releases the
//! table's lock first, so freeing a handle on another thread waits for nothing, and the object
//! goes when the last call using it returns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// Live objects of one kind by handle.
pub(crate) struct Handles<T> {
    /// What the handles are called in messages (`"SmfCache"`).
    kind: &'static str,
    live: RwLock<Option<HashMap<usize, Arc<T>>>>,
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
        live.get_or_insert_with(HashMap::new).insert(handle, Arc::new(value));
        handle
    }

    /// The object behind `handle`: a reference of the caller's own.
    pub(crate) fn get<P>(&self, handle: *const P) -> Result<Arc<T>, String> {
        if handle.is_null() {
            return Err(format!("{} handle is NULL", self.kind));
        }
        let live = self.live.read().unwrap_or_else(PoisonError::into_inner);
        live.as_ref()
            .and_then(|t| t.get(&(handle as usize)))
            .cloned()
            .ok_or_else(|| format!("{handle:p} is not a live {} handle", self.kind))
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
