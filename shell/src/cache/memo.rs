//! Each thread's memo of the modules it gets again and again: a hit on one of them takes no
//! lock.
//!
//! A get that hits under the cache's lock a version watched by a change notice, of a module the
//! same thread hit among its last [`RECENT`] locked hits, is remembered here: the cache (its
//! identity), the cache's generation then, the path's bytes, the module (`Weak`: a memo never keeps
//! a module alive, nor its memory mapped, once the cache lets it go; only the counts' small
//! allocation stays until the memo lets go of it), its notice and its use flag (made, under the
//! cache's lock, when a memo first remembers the module: one small allocation per cached module). A
//! later get of that path by that thread, with the cache's generation unchanged (no module cached,
//! replaced, evicted or forgotten since: the memo's entry is still the cache's,
//! [`super::ModuleCache::generation`]), the notice not fired and the cache not checking every get,
//! is that same hit: the module, counted, without the lock. Its use is flagged for the cache's
//! eviction, which gives a flagged module a second chance
//! ([`smf_runtime::lru::LruCache::pop_over_budget_unless`]) since the hit did not move it in the
//! recency list.
//!
//! Only a module hit twice within a thread's last [`RECENT`] locked hits is remembered: a
//! thread cycling through more modules than the memo holds never pays for remembering them
//! (a locked hit's bookkeeping for the memo is a look at eight addresses).

use std::cell::RefCell;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use crate::loader::SharedModule;
use crate::watch::Notice;

/// Modules a thread's memo holds (and locked hits it remembers to tell which to hold).
const RECENT: usize = 8;

/// One remembered hit.
struct Entry {
    cache: u64,
    generation: u64,
    /// [`Tag::of`] the path: compared first, so that a path the memo does not hold is told
    /// apart from the ones it holds without comparing whole paths.
    tag: Tag,
    path: Box<[u8]>,
    module: Weak<SharedModule>,
    notice: Notice,
    used: Arc<AtomicBool>,
}

/// One thread's memo.
#[derive(Default)]
struct Memo {
    entries: heapless::Vec<Entry, RECENT>,
    /// The slot the next entry takes once all are taken.
    next: usize,
    /// The modules of the last locked hits (as addresses: compared, never followed), and the
    /// slot the next takes.
    recent: [usize; RECENT],
    next_recent: usize,
}

/// A path's length and last eight bytes: paths of one directory share their beginnings and
/// differ at their ends.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Tag {
    len: usize,
    end: u64,
}

impl Tag {
    fn of(path: &[u8]) -> Tag {
        let end = match path.last_chunk::<8>() {
            Some(last) => u64::from_le_bytes(*last),
            None => path.iter().fold(0, |end, &byte| end << 8 | u64::from(byte)),
        };
        Tag { len: path.len(), end }
    }
}

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::new(Memo::default());
}

/// What the cache knows of a hit it made under its lock, for the memo.
pub(super) struct LockedHit<'a> {
    pub(super) cache: u64,
    pub(super) generation: u64,
    pub(super) path: &'a Path,
    pub(super) module: &'a Arc<SharedModule>,
    pub(super) notice: &'a Notice,
    /// The cached module's use flag (made when a memo first remembers it).
    pub(super) used: &'a mut Option<Arc<AtomicBool>>,
}

/// The module this thread remembers at `path` of cache `cache`, if the cache is still at
/// `generation` as when it was remembered and its notice has not fired; its use flagged.
pub(super) fn hit(cache: u64, generation: u64, path: &Path) -> Option<Arc<SharedModule>> {
    // A thread the library started keeps no memo (`crate::worker`).
    if !crate::worker::keeps_state() {
        return None;
    }
    let path = path.as_os_str().as_encoded_bytes();
    MEMO.try_with(|memo| {
        let memo = memo.borrow();
        if memo.entries.is_empty() {
            return None;
        }
        let tag = Tag::of(path);
        let entry = memo.entries.iter().find(|e| e.tag == tag && e.cache == cache && *e.path == *path)?;
        if entry.generation != generation || entry.notice.is_set() {
            return None;
        }
        let module = entry.module.upgrade()?;
        // Written only when not set already: threads hitting one module read the flag's line
        // rather than each writing it.
        if !entry.used.load(Ordering::Relaxed) {
            entry.used.store(true, Ordering::Relaxed);
        }
        Some(module)
    })
    .ok()
    .flatten()
}

/// An entry a thread's memo let go of, to drop once the cache's lock is released.
pub(super) struct Forgotten {
    _entry: Entry,
}

/// Whether this thread hit `module` among its last [`RECENT`] locked hits; if not, this hit is
/// one of them from now on. Called under the cache's lock, always after [`hit`] on the same
/// thread (which set this thread's memo up, outside the lock).
pub(super) fn hit_before(module: &Arc<SharedModule>) -> bool {
    if !crate::worker::keeps_state() {
        return false;
    }
    let address = Arc::as_ptr(module) as usize;
    MEMO.try_with(|memo| {
        let mut memo = memo.borrow_mut();
        if memo.recent.contains(&address) {
            return true;
        }
        let at = memo.next_recent;
        memo.recent[at] = address;
        memo.next_recent = (at + 1) % RECENT;
        false
    })
    .unwrap_or(false)
}

/// Remembers `hit` (its module hit before: [`hit_before`]); the entry it replaced, if any.
/// Called under the cache's lock: its path's copy is the one allocation (and the module's
/// use flag, the first time).
#[cold]
pub(super) fn remember(hit: LockedHit<'_>) -> Option<Forgotten> {
    if !crate::worker::keeps_state() {
        return None;
    }
    let path: Box<[u8]> = hit.path.as_os_str().as_encoded_bytes().into();
    MEMO.try_with(|memo| {
        let mut memo = memo.borrow_mut();
        let entry = Entry {
            cache: hit.cache,
            generation: hit.generation,
            tag: Tag::of(&path),
            path,
            module: Arc::downgrade(hit.module),
            notice: hit.notice.clone(),
            used: Arc::clone(hit.used.get_or_insert_with(Arc::default)),
        };
        // The path's old entry, else a free slot, else the oldest.
        let same = memo
            .entries
            .iter()
            .position(|e| e.tag == entry.tag && e.cache == hit.cache && e.path == entry.path);
        let old = match same {
            Some(at) => std::mem::replace(&mut memo.entries[at], entry),
            None => match memo.entries.push(entry) {
                Ok(()) => return None,
                Err(entry) => {
                    let at = memo.next;
                    memo.next = (at + 1) % RECENT;
                    std::mem::replace(&mut memo.entries[at], entry)
                }
            },
        };
        Some(Forgotten { _entry: old })
    })
    .ok()
    .flatten()
}
