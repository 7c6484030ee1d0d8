//! A cached version of a module: the module, the identity of the file version it was read
//! from, and how a change to that file shows ([`Watching`]: a change notice, or the identity
//! compared at gets); what a get knows of it before looking at the file ([`Freshness`]); and
//! how a load just made is to be watched ([`watched`]).

use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::WATCH_FROM_HIT;
use crate::file::{FileIdentity, ReadVersion};
use crate::imports::LinkOptions;
use crate::loader::{self, LoadRequest, ModuleError, SharedModule};
use crate::watch::Notice;

/// A cached module and the version of its file it was loaded from.
pub(super) struct Cached {
    /// This version's number in the cache (never reused: the export index's key).
    pub(super) number: u64,
    /// When it was last made the most recent in the recency list (the cache's clock).
    pub(super) used_at: Cell<u64>,
    pub(super) module: Arc<SharedModule>,
    pub(super) identity: FileIdentity,
    /// How a change to its file shows.
    pub(super) watching: Watching,
    /// Set by hits through a thread's memo (`memo.rs`), which do not move it in the recency
    /// list: eviction gives it a second chance. Made when a memo first remembers it.
    pub(super) used: Option<Arc<AtomicBool>>,
}

/// How a change to a cached version's file shows.
pub(super) enum Watching {
    /// Through its notice (set when the file may have changed), taken before the file was
    /// read or before the `stat` that proved the file still that version.
    Notice(Notice),
    /// Through its identity, compared at each get; `hits` so far (from [`WATCH_FROM_HIT`], a
    /// hit takes a notice).
    Identity { hits: u32 },
    /// Through its identity, at every get: the path cannot be watched (it ends in a symbolic
    /// link, or the watcher is unavailable).
    Never,
}

/// What a get knows of a cached version before looking at its file.
pub(super) enum Freshness {
    /// A notice watches the file and has not fired: the version is current.
    Current,
    /// Only the file's identity can tell (no notice, or the cache checks every get); `watch`:
    /// take a notice before looking.
    Unknown { identity: FileIdentity, watch: bool },
    /// Its notice fired: the file changed.
    Stale,
}

impl Cached {
    /// What a get knows of this version, the get counted if it is to compare the identity.
    pub(super) fn freshness(&mut self, check_every_get: bool) -> Freshness {
        let identity = self.identity;
        match &mut self.watching {
            // Taken in a parent process, whose watcher cannot set it here: the file's identity
            // tells, and a notice of this process's own watches it from then on.
            Watching::Notice(notice) if notice.is_orphaned() => Freshness::Unknown { identity, watch: true },
            Watching::Notice(notice) if notice.is_set() => Freshness::Stale,
            Watching::Notice(_) if !check_every_get => Freshness::Current,
            Watching::Identity { hits } if !check_every_get => {
                *hits = hits.saturating_add(1);
                Freshness::Unknown { identity, watch: *hits >= WATCH_FROM_HIT }
            }
            _ => Freshness::Unknown { identity, watch: false },
        }
    }
}

/// What a cache keeps of a load: the module, the identity of the version read, how it is
/// watched.
pub(super) type Loaded = (Arc<SharedModule>, FileIdentity, Watching);

/// What a cache keeps of `loaded`, a load of `path` made under `notice` (taken before the read
/// where the process watched already). A fresh version read while nothing watched its file
/// (a change right after the read may have left the same identity) is read again under a
/// notice, once its watch started. Takes notices and reads: outside the lock.
pub(super) fn watched(
    path: &Path,
    notice: Option<Notice>,
    loaded: Result<(Arc<SharedModule>, ReadVersion), ModuleError>,
    options: &LinkOptions<'_>,
) -> Result<Loaded, ModuleError> {
    let (module, version) = loaded?;
    if notice.is_none() && version.fresh && !version.followed_link {
        if let Some(notice) = crate::watch::watch(path) {
            let (module, version) = loader::load_file(path, &LoadRequest::path(path).linked(*options))?;
            return Ok((module, version.identity, watching_loaded(Some(notice), &version)));
        }
    }
    Ok((module, version.identity, watching_loaded(notice, &version)))
}

/// How a version just read is to be watched, `notice` the one taken before the read.
pub(super) fn watching_loaded(notice: Option<Notice>, version: &ReadVersion) -> Watching {
    match notice {
        // A change to a link's target shows in another directory.
        _ if version.followed_link => Watching::Never,
        Some(notice) => Watching::Notice(notice),
        None if !version.fresh => Watching::Identity { hits: 0 },
        // Fresh, and its path could not be watched: only the identity can tell.
        None => Watching::Never,
    }
}
