//! Opaque handles (`SmfModule *`, `SmfCache *`, `SmfJit *`), one table type for all of them:
//! never dereferenced, looked up in a table of live objects before anything is touched. Each
//! handle counts the references C holds to it (one for caches and instantiators, which C frees
//! once; `smf_module_retain` adds to a module's), and the object leaves the table with the last. A value says its type: bits 4..8 hold the type's
//! tag, the bits above a per-type counter that never repeats (so values are multiples of 16,
//! distinct across types, and never come back). A handle given where another type is expected
//! is an error naming both types, never a lookup that finds the wrong object. A call clones the
//! object's `Arc` and releases the table's lock first, so freeing a handle on another thread
//! waits for nothing, and the object goes when the last call using it returns.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use crate::fork::{Hold, Lock};

/// Hashes handles: distinct counter values times 256 plus a type tag, which one multiply
/// spreads (every call looks a handle up, so SipHash would be a real share of a cached
/// `smf_jit_instantiate`).
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

/// A live handle: its object, and how many references C holds to the handle.
struct Entry<T> {
    value: Arc<T>,
    refs: u64,
}

type Table<T> = HashMap<usize, Entry<T>, BuildHasherDefault<HandleHasher>>;

/// Every handle type, by the name C knows it by; a type's tag is its index plus 1.
const KINDS: [&str; 4] = ["SmfModule", "SmfCache", "SmfJit", "ExecManager"];

/// Per type, the counter value its next handle takes (from 1).
static ISSUED: [AtomicUsize; KINDS.len()] = [const { AtomicUsize::new(1) }; KINDS.len()];

/// Where a value keeps its type's tag.
const TAG_SHIFT: u32 = 4;
/// Where a value keeps its counter.
const COUNTER_SHIFT: u32 = 8;

/// One handle type: its name and tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Kind {
    name: &'static str,
    /// Its index in [`KINDS`].
    index: usize,
}

/// Whether two names are the same (`==` is not `const`).
const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

impl Kind {
    /// The type called `name` (a name outside [`KINDS`] fails the build where it is `const`).
    const fn named(name: &'static str) -> Self {
        let mut index = 0;
        while index < KINDS.len() {
            if same(KINDS[index], name) {
                return Self { name, index };
            }
            index += 1;
        }
        panic!("not a handle type")
    }

    /// A value no handle had before, of this type.
    fn issue(self) -> usize {
        let n = ISSUED[self.index].fetch_add(1, Ordering::Relaxed);
        n << COUNTER_SHIFT | (self.index + 1) << TAG_SHIFT
    }

    /// The type a handle of which once had the value `handle`, if one did.
    fn of<P>(handle: *const P) -> Option<Self> {
        let value = handle as usize;
        let tag = value >> TAG_SHIFT & 0xF;
        let index = tag.checked_sub(1).filter(|&i| i < KINDS.len())?;
        let n = value >> COUNTER_SHIFT;
        let issued =
            value.trailing_zeros() >= TAG_SHIFT && n >= 1 && n < ISSUED[index].load(Ordering::Relaxed);
        issued.then_some(Self { name: KINDS[index], index })
    }

    /// Why `handle`, not a live handle of this type, is refused: NULL, a handle of another type
    /// (named), or no live handle.
    fn refuse<P>(self, handle: *const P) -> HandleError {
        let found = match Self::of(handle) {
            _ if handle.is_null() => HandleProblem::Null,
            Some(other) if other != self => HandleProblem::OtherType(other.name),
            Some(_) => HandleProblem::Freed,
            None => HandleProblem::Unknown,
        };
        HandleError { wanted: self.name, handle: handle as usize, found }
    }
}

/// A handle that is not a live one of the type wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HandleError {
    /// The type wanted (`SmfModule`, ...).
    pub(crate) wanted: &'static str,
    /// The value given.
    pub(crate) handle: usize,
    /// What it is instead.
    pub(crate) found: HandleProblem,
}

/// What a refused handle is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HandleProblem {
    /// NULL.
    Null,
    /// A live handle of the type named so.
    OtherType(&'static str),
    /// A handle of the type wanted that was freed.
    Freed,
    /// No handle this library handed out.
    Unknown,
}

impl std::fmt::Display for HandleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (wanted, handle) = (self.wanted, self.handle);
        match self.found {
            HandleProblem::Null => write!(f, "{wanted} handle is NULL"),
            HandleProblem::OtherType(other) => {
                write!(f, "{handle:#x} is an {other} handle, not an {wanted} handle")
            }
            HandleProblem::Freed => write!(f, "{handle:#x} is not a live {wanted} handle (it was freed)"),
            HandleProblem::Unknown => write!(f, "{handle:#x} is not a live {wanted} handle"),
        }
    }
}

/// Live objects of one kind by handle.
pub(crate) struct Handles<T> {
    /// Their type.
    kind: Kind,
    /// Where the table's lock comes in the locks held around `fork` ([`crate::fork`]).
    rank: Lock,
    live: RwLock<Option<Table<T>>>,
}

impl<T> Handles<T> {
    /// The handles of type `kind` (a name of [`KINDS`]), whose lock is taken around `fork` as
    /// `rank`.
    pub(crate) const fn new(kind: &'static str, rank: Lock) -> Self {
        Self { kind: Kind::named(kind), rank, live: RwLock::new(None) }
    }

    /// A new handle owning `value` (one reference).
    pub(crate) fn insert(&'static self, value: T) -> usize
    where
        T: Send + Sync + 'static,
    {
        self.insert_shared(Arc::new(value))
    }

    /// A new handle keeping `value` (one reference).
    pub(crate) fn insert_shared(&'static self, value: Arc<T>) -> usize
    where
        T: Send + Sync + 'static,
    {
        // The table is locked around every fork once it holds something.
        crate::fork::hold_at_fork(self.rank, self);
        let handle = self.kind.issue();
        let mut live = crate::sync::write(&self.live);
        live.get_or_insert_with(Table::default).insert(handle, Entry { value, refs: 1 });
        handle
    }

    /// One more reference to `handle`.
    pub(crate) fn retain<P>(&self, handle: *const P) -> Result<(), HandleError> {
        let mut live = crate::sync::write(&self.live);
        let entry = live.as_mut().and_then(|t| t.get_mut(&(handle as usize)));
        let entry = entry.ok_or_else(|| self.kind.refuse(handle))?;
        entry.refs = entry.refs.saturating_add(1);
        Ok(())
    }

    /// The object behind `handle`: a reference of the caller's own.
    pub(crate) fn get<P>(&self, handle: *const P) -> Result<Arc<T>, HandleError> {
        self.find(handle, Arc::clone)
    }

    /// Runs `f` on the object behind `handle` with the table's (read) lock held: for short
    /// work that never calls back into the library, so that no reference is taken.
    pub(crate) fn with<P, R>(&self, handle: *const P, f: impl FnOnce(&T) -> R) -> Result<R, HandleError> {
        self.find(handle, |value| f(value))
    }

    /// Runs `f` on the live entry of `handle`, under the read lock.
    fn find<P, R>(&self, handle: *const P, f: impl FnOnce(&Arc<T>) -> R) -> Result<R, HandleError> {
        let live = crate::sync::read(&self.live);
        match live.as_ref().and_then(|t| t.get(&(handle as usize))) {
            Some(entry) => Ok(f(&entry.value)),
            None => Err(self.kind.refuse(handle)),
        }
    }

    /// The first live object `f` accepts (a reference of the caller's own).
    pub(crate) fn find_live(&self, f: impl Fn(&T) -> bool) -> Option<Arc<T>> {
        let live = crate::sync::read(&self.live);
        live.as_ref()?.values().find(|entry| f(&entry.value)).map(|entry| Arc::clone(&entry.value))
    }

    /// Drops one reference to `handle` (NULL: nothing); with the last, the handle ends and
    /// the object is dropped here, outside the table's lock, unless a call still uses it.
    pub(crate) fn release<P>(&self, handle: *const P) -> Result<(), HandleError> {
        if handle.is_null() {
            return Ok(());
        }
        let mut live = crate::sync::write(&self.live);
        let table = live.as_mut().ok_or_else(|| self.kind.refuse(handle))?;
        let entry = table.get_mut(&(handle as usize)).ok_or_else(|| self.kind.refuse(handle))?;
        entry.refs -= 1;
        let ended = if entry.refs == 0 { table.remove(&(handle as usize)) } else { None };
        drop(live);
        drop(ended);
        Ok(())
    }
}

impl<T: Send + Sync + 'static> Hold for Handles<T> {
    fn hold(&'static self) -> Box<dyn std::any::Any> {
        Box::new(crate::sync::write(&self.live))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_handle_says_what_it_is_instead() {
        static MODULES: Handles<u8> = Handles::new("SmfModule", Lock::Modules);
        static CACHES: Handles<u8> = Handles::new("SmfCache", Lock::Caches);
        let module = MODULES.insert(1) as *const u8;
        let cache = CACHES.insert(2) as *const u8;
        let refused = |handle: *const u8| MODULES.get(handle).map(|_| ()).unwrap_err();
        let null = refused(std::ptr::null());
        assert_eq!((null.wanted, null.found), ("SmfModule", HandleProblem::Null));
        assert_eq!(null.to_string(), "SmfModule handle is NULL");
        let other = refused(cache);
        assert_eq!(other.found, HandleProblem::OtherType("SmfCache"));
        assert_eq!(other.to_string(), format!("{cache:p} is an SmfCache handle, not an SmfModule handle"));
        assert_eq!(refused(0x8 as *const u8).found, HandleProblem::Unknown);
        MODULES.release(module).unwrap();
        let freed = refused(module);
        assert_eq!(freed.found, HandleProblem::Freed);
        assert!(freed.to_string().ends_with("is not a live SmfModule handle (it was freed)"));
        assert_eq!(MODULES.retain(module), Err(freed));
        CACHES.release(cache).unwrap();
    }
}
