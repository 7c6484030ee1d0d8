//! Change notices for cached files: inotify watches on the directories holding them, and one
//! thread that reads the kernel's events and marks the cached versions of changed files stale.
//!
//! The module cache asks [`watch`] for a [`Notice`] before it reads a file, or before the
//! `stat` that proves the file still the version it cached (it watches a path once the path is
//! gotten repeatedly or its file is fresh, and loads take their notice before reading once the
//! process watches: the watcher's set-up, and the kernel's teardown of its inotify instance at
//! exit, cost a process milliseconds); a `get` then only loads the flag (no syscall). An event
//! for the file's name in its directory (a file renamed over it, created, written, its
//! attributes changed, deleted, moved away) sets the flag; so does losing events (the kernel's
//! queue overflowed) or the directory's watch ending (the directory was deleted or moved). A
//! notice is one-shot: once set, the cache loads the file again. Because the notice is taken
//! before the read or the `stat`, a change that lands between them still marks the version
//! stale.
//!
//! What it cannot see, so the cache drops the notice (or [`watch`] answers `None`) and compares
//! the file's identity on every get instead: paths that are symbolic links (a change to the
//! target shows in another directory; the read tells) and any path when inotify is unavailable (its limits reached, or not
//! supported). It cannot see changes made on another machine to a network file system either;
//! such caches should check every get ([`crate::cache::ModuleCache::set_check_every_get`]).
//!
//! The thread marks a notice within microseconds of the change, but asynchronously: a get
//! racing the rename itself may still return the old version.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

/// Set when the file it was taken for may have changed since (a clone shares the flag); taken
/// in one process ([`crate::fork::generation`]), whose watcher thread sets it.
#[derive(Clone, Debug)]
pub(crate) struct Notice {
    flag: Arc<AtomicBool>,
    generation: u64,
}

impl Notice {
    /// Whether the file may have changed since the notice was taken (an orphaned notice cannot
    /// tell, so it says so).
    pub(crate) fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire) || self.is_orphaned()
    }

    /// Whether the notice was taken in a parent process: its watcher thread is not this
    /// process's, and nothing here will set it.
    pub(crate) fn is_orphaned(&self) -> bool {
        self.generation != crate::fork::generation()
    }
}

/// The events that mean a watched name may now hold another file, or another version of it.
fn changes() -> WatchFlags {
    WatchFlags::MOVED_TO
        | WatchFlags::MOVED_FROM
        | WatchFlags::CREATE
        | WatchFlags::DELETE
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::MODIFY
        | WatchFlags::ATTRIB
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF
        | WatchFlags::ONLYDIR
}

struct Table {
    /// Whether the thread still reads events (cleared, under this lock, if its descriptor
    /// failed: no new notices then).
    alive: bool,
    /// Watch descriptors by directory.
    dirs: HashMap<PathBuf, i32>,
    /// The notices handed out, by watch descriptor and file name.
    names: HashMap<i32, HashMap<OsString, Vec<Weak<AtomicBool>>>>,
}

impl Default for Table {
    fn default() -> Self {
        Self { alive: true, dirs: HashMap::new(), names: HashMap::new() }
    }
}

struct Watcher {
    fd: OwnedFd,
    table: Mutex<Table>,
}

impl Watcher {
    fn table(&self) -> MutexGuard<'_, Table> {
        crate::sync::lock(&self.table)
    }
}

/// The process's watcher, made at the first [`watch`] of each process (a forked child makes
/// its own: the thread reading its parent's events stayed in the parent); published once per
/// process and never freed. `None` inside if inotify is unavailable.
static WATCHER: AtomicPtr<Published> = AtomicPtr::new(std::ptr::null_mut());

/// A process's watcher, by the fork generation it was made in.
struct Published {
    generation: u64,
    watcher: Option<Watcher>,
}

/// A notice for the file at `path`, to be taken before the file is read (or before the `stat`
/// that proves it still the version read); `None` where changes cannot be watched (see the
/// module documentation). Whether the path is a symbolic link is
/// for the caller to find out (the read says: [`crate::file::ReadVersion::followed_link`]) and
/// the notice then to be dropped: asking here would cost every load a `stat`.
pub(crate) fn watch(path: &Path) -> Option<Notice> {
    let name = path.file_name()?.to_os_string();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let watcher = started()?;
    // Twice at most: if the directory's watch goes away between adding it and registering
    // the notice (the directory was removed or moved), it is added again.
    for _ in 0..2 {
        let known = {
            let table = watcher.table();
            if !table.alive {
                return None;
            }
            table.dirs.get(&dir).copied()
        };
        let wd = match known {
            Some(wd) => wd,
            // Outside the lock: the kernel gives a directory the same descriptor every time.
            None => {
                let wd = inotify::add_watch(watcher.fd.as_fd(), &dir, changes()).ok()?;
                let mut table = watcher.table();
                // Without memory for the entry the path goes unwatched (its identity compared).
                table.dirs.try_reserve(1).ok()?;
                table.dirs.insert(dir.clone(), wd);
                wd
            }
        };
        if let Some(notice) = watcher.table().register(&dir, wd, &name) {
            return Some(notice);
        }
    }
    None
}

/// [`watch`], where the process's watcher runs already, or its parent's ran when it forked
/// (none is started for it otherwise).
#[allow(unsafe_code)] // the published watcher, a raw pointer never freed
pub(crate) fn watch_if_started(path: &Path) -> Option<Notice> {
    // SAFETY: a published watcher is never freed.
    unsafe { WATCHER.load(Ordering::Acquire).as_ref() }?.watcher.as_ref()?;
    watch(path)
}

impl Table {
    /// A notice for `name` in `dir` watched as `wd`, if the watcher still reads events and
    /// `dir` is still watched as `wd`: a notice registered after the watcher stopped, or under
    /// a watch the kernel dropped, would never be set.
    fn register(&mut self, dir: &Path, wd: i32, name: &OsStr) -> Option<Notice> {
        if !self.alive || self.dirs.get(dir) != Some(&wd) {
            return None;
        }
        let flag = Arc::new(AtomicBool::new(false));
        // The tables grow with the paths watched: without memory, the path goes unwatched.
        self.names.try_reserve(1).ok()?;
        let names = self.names.entry(wd).or_default();
        names.try_reserve(1).ok()?;
        let notices = names.entry(name.to_os_string()).or_default();
        notices.retain(|weak| weak.strong_count() > 0);
        notices.try_reserve(1).ok()?;
        notices.push(Arc::downgrade(&flag));
        Some(Notice { flag, generation: crate::fork::generation() })
    }
}

/// This process's watcher, making it (and its thread) at its first call in each process.
#[allow(unsafe_code)] // the published watcher, a raw pointer never freed
fn started() -> Option<&'static Watcher> {
    crate::fork::count_forks();
    let generation = crate::fork::generation();
    let current = WATCHER.load(Ordering::Acquire);
    // SAFETY: a published watcher is never freed, and never changed but through its lock.
    if let Some(published) = unsafe { current.as_ref() }.filter(|p| p.generation == generation) {
        return published.watcher.as_ref();
    }
    let watcher = inotify::init(CreateFlags::CLOEXEC)
        .ok()
        .map(|fd| Watcher { fd, table: Mutex::new(Table::default()) });
    let fresh = Box::into_raw(Box::new(Published { generation, watcher }));
    let published: &'static Published =
        match WATCHER.compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire) {
            // SAFETY: just published, never freed.
            Ok(_) => unsafe { &*fresh },
            Err(other) => {
                // Another thread of this process published first: ours goes (nobody saw it).
                // SAFETY: `fresh` was never published.
                drop(unsafe { Box::from_raw(fresh) });
                // SAFETY: published, never freed.
                return unsafe { other.as_ref() }.filter(|p| p.generation == generation)?.watcher.as_ref();
            }
        };
    let watcher = published.watcher.as_ref()?;
    // A thread of the C library's (`worker.rs`): std's would end the process if its signal
    // stack could not be mapped, at whatever moment the thread got to it.
    if !crate::worker::spawn_detached(c"smf-watch", move || read_events(watcher)) {
        // No thread to set notices: none is handed out.
        watcher.table().alive = false;
        return None;
    }
    Some(watcher)
}

/// Sets every notice in `notices`.
fn set_all(notices: impl IntoIterator<Item = Weak<AtomicBool>>) {
    for notice in notices {
        if let Some(flag) = notice.upgrade() {
            flag.store(true, Ordering::Release);
        }
    }
}

/// The watcher thread: reads events forever and sets the notices they concern. It allocates
/// nothing: the notices are set where they are listed (atomic stores, under the table's lock),
/// and an event's name is looked up as read.
fn read_events(watcher: &Watcher) {
    let mut buffer = [MaybeUninit::<u8>::uninit(); 16 << 10];
    let mut reader = inotify::Reader::new(watcher.fd.as_fd(), &mut buffer);
    loop {
        let event = match reader.next() {
            Ok(event) => event,
            Err(rustix::io::Errno::INTR) => continue,
            // The descriptor failed: nothing is watched any more, so everything may change.
            Err(_) => {
                let mut table = watcher.table();
                table.alive = false;
                table.names.drain().flat_map(|(_, n)| n.into_values()).for_each(set_all);
                table.dirs.clear();
                return;
            }
        };
        let (wd, events) = (event.wd(), event.events());
        let name = event.file_name().map(|n| OsStr::from_bytes(n.to_bytes()));
        let mut table = watcher.table();
        if events.contains(ReadFlags::QUEUE_OVERFLOW) {
            table.names.values_mut().flat_map(|n| n.drain().map(|(_, v)| v)).for_each(set_all);
        } else if events.intersects(ReadFlags::IGNORED | ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF) {
            // The directory went away or moved: its names may hold anything now.
            table.dirs.retain(|_, w| *w != wd);
            table.names.remove(&wd).into_iter().flat_map(HashMap::into_values).for_each(set_all);
        } else if let Some(name) = name {
            table.names.get_mut(&wd).and_then(|n| n.remove(name)).into_iter().for_each(set_all);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("smf-watch-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Waits up to five seconds for `notice` to be set.
    fn fires(notice: &Notice) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !notice.is_set() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    #[test]
    fn a_rename_over_the_file_or_a_write_to_it_sets_its_notice_and_nothing_else_does() {
        let dir = scratch("rename");
        let path = dir.join("m.smf");
        std::fs::write(&path, b"one").unwrap();
        let notice = watch(&path).expect("inotify works here");
        let other = watch(&dir.join("m.smf")).unwrap(); // a second notice for the same name
                                                        // Another file of the directory changes: not this one's business.
        std::fs::write(dir.join("unrelated.smf"), b"x").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!notice.is_set());
        std::fs::write(dir.join("m.tmp"), b"two").unwrap();
        std::fs::rename(dir.join("m.tmp"), &path).unwrap();
        assert!(fires(&notice) && fires(&other), "a rename over it");

        let again = watch(&path).unwrap();
        std::fs::write(&path, b"three").unwrap();
        assert!(fires(&again), "a write in place");
        let gone = watch(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(fires(&gone), "a deletion");
    }

    #[test]
    fn no_notice_is_registered_that_nothing_would_set() {
        let mut table = Table::default();
        let dir = Path::new("/some/dir");
        table.dirs.insert(dir.to_path_buf(), 7);
        assert!(table.register(dir, 7, OsStr::new("m.smf")).is_some());
        // The kernel dropped the directory's watch (or it is watched under another one now).
        assert!(table.register(dir, 8, OsStr::new("m.smf")).is_none());
        assert!(table.register(Path::new("/other"), 7, OsStr::new("m.smf")).is_none());
        // The watcher stopped reading: nothing would ever set a notice.
        table.alive = false;
        assert!(table.register(dir, 7, OsStr::new("m.smf")).is_none());
    }

    #[test]
    fn a_notice_is_taken_by_name_before_the_file_is_read_and_set_by_its_creation() {
        // Links are not told apart here (the read says; the cache then drops the notice).
        let dir = scratch("by-name");
        let notice = watch(&dir.join("later.smf")).expect("a notice in a directory that exists");
        assert!(!notice.is_set());
        std::fs::write(dir.join("later.smf"), b"x").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !notice.is_set() {
            assert!(std::time::Instant::now() < deadline, "the creation never set the notice");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(watch(&dir.join("no-such-directory/m.smf")).is_none(), "nothing to watch");
    }
}
