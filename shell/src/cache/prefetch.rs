//! Prefetch: many files loaded into a cache at once, in chunks loaded together (one seal
//! each), on the calling thread first and on worker threads when the work is long enough;
//! failed files retried once alone; the prefetch a module's header announces.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use smf_runtime::load::LoadError;

use super::{Counting, ModuleCache};
use crate::loader::ModuleError;

impl ModuleCache {
    /// Loads `paths` into the cache on up to `threads` threads (see
    /// [`ModuleCache::prefetch_indexed`]); returns how many of them are cached afterwards.
    pub fn prefetch(&self, paths: &[PathBuf], threads: usize) -> usize {
        let _ = self.prefetch_indexed(paths, threads, &|_| {});
        paths.iter().filter(|p| self.contains(p)).count()
    }

    /// [`ModuleCache::prefetch_indexed`], returning the files that did not load with why.
    pub fn prefetch_reporting(
        &self,
        paths: &[PathBuf],
        threads: usize,
        done: &(dyn Fn(usize) + Sync),
    ) -> Vec<(PathBuf, ModuleError)> {
        let failures = self.prefetch_indexed(paths, threads, done);
        failures.into_iter().map(|(i, error)| (paths[i].clone(), error)).collect()
    }

    /// Loads `paths` into the cache on up to `threads` threads, the calling one included (at
    /// least it: a thread that cannot be started leaves its share to the others; the others
    /// are started only once the calling thread has loaded alone for 100 us, for the files left
    /// then), in chunks of up to 32 files that load together (sealed at once:
    /// `loader::load_together`), calling
    /// `done(n)` as the `n`th file is through; returns the indices of the files that did not
    /// load, with why, in order. Each file loads or fails on its own. Files whose load failed
    /// on an unresolved import are tried again, one by one, as long as a round loads one of
    /// them: a module whose imports another file of the set provides loads whatever the order.
    /// (Files of one chunk, like files loaded on different threads, do not see each other's
    /// exports while they load: a weak import, or a name the host also exports, binds as if the
    /// other file were not loaded yet. Where such a binding's order matters, get the files
    /// one by one in dependency order.)
    /// The statistics count each file once: a miss, and a load failure if it never loaded.
    pub fn prefetch_indexed<P: AsRef<Path> + Sync>(
        &self,
        paths: &[P],
        threads: usize,
        done: &(dyn Fn(usize) + Sync),
    ) -> Vec<(usize, ModuleError)> {
        let next = AtomicUsize::new(0);
        let finished = AtomicUsize::new(0);
        // Room for every file's failure, taken up front (by the calling thread): a worker then
        // records one without allocating. Without it, failures are recorded while room lasts.
        let mut room = Vec::new();
        let _ = room.try_reserve_exact(paths.len());
        let failures = Mutex::new(room);
        let chunk =
            paths.len().div_ceil(threads.max(1).saturating_mul(CHUNKS_PER_THREAD)).clamp(1, MAX_CHUNK);
        // Loads the next chunk of files together; false once there is none.
        let step = || {
            let first = next.fetch_add(chunk, Ordering::Relaxed);
            let Some(files) = paths.get(first..paths.len().min(first.saturating_add(chunk))) else {
                return false;
            };
            // Failures are recorded where room for them can be had (a worker allocates
            // nothing it cannot do without).
            let fail = |i: usize, error: ModuleError| {
                let mut failures = crate::sync::lock(&failures);
                if failures.try_reserve(1).is_ok() {
                    failures.push((i, error));
                }
            };
            match self.get_many(files, Counting::MISS) {
                Ok(results) => {
                    for (i, result) in (first..).zip(results) {
                        if let Err(error) = result {
                            fail(i, error);
                        }
                        done(finished.fetch_add(1, Ordering::Relaxed) + 1);
                    }
                }
                Err(super::OutOfMemory) => {
                    for i in first..first + files.len() {
                        fail(i, ModuleError::Load(None, LoadError::OutOfMemory { bytes: files.len() }));
                        done(finished.fetch_add(1, Ordering::Relaxed) + 1);
                    }
                }
            }
            !files.is_empty()
        };
        let work = || while step() {};
        // The calling thread works alone first: starting a thread costs about what loading a
        // few small modules does, so threads are started only for work that outlasts that, and
        // only for the chunks left then (at most one each).
        let alone_since = Instant::now();
        while alone_since.elapsed() < ALONE_FOR && step() {}
        let left = paths.len().saturating_sub(next.load(Ordering::Relaxed));
        if left == 0 {
            return self.retried(paths, failures);
        }
        let workers = threads.clamp(1, left.div_ceil(chunk));
        // Threads of the C library's (`worker.rs`): where one cannot be had (memory, the
        // process's thread limit), the ones running share its files, down to the calling
        // thread alone; none can end the process by starting.
        crate::worker::run_alongside(workers - 1, WORKER_STACK, &work);
        self.retried(paths, failures)
    }

    /// A prefetch's `failures` in path order, after the files that failed on an unresolved
    /// import were tried again, one by one, as long as a round loads one of them.
    fn retried<P: AsRef<Path>>(
        &self,
        paths: &[P],
        failures: Mutex<Vec<(usize, ModuleError)>>,
    ) -> Vec<(usize, ModuleError)> {
        let mut failures = crate::sync::into_inner(failures);
        failures.sort_unstable_by_key(|&(i, _)| i);
        let unresolved = |e: &ModuleError| matches!(e, ModuleError::Load(_, LoadError::Unresolved { .. }));
        loop {
            let before = failures.len();
            failures.retain_mut(|(i, error)| {
                if !unresolved(error) {
                    return true;
                }
                match self.get_counted(paths[*i].as_ref(), Counting::NONE) {
                    Ok(_) => false,
                    Err(again) => {
                        *error = again;
                        true
                    }
                }
            });
            if failures.len() == before {
                break;
            }
        }
        self.lock().stats.load_failures += failures.len() as u64;
        failures
    }

    /// Honours the prefetch hint of the executable module at `module`: when its header sets
    /// `prefetch_hint`, prefetches (on one thread per core) the first `prefetch_file_count` of
    /// `candidates`, the module files the runtime would look in, in its own order (the format
    /// names no files, only how many to prefetch at start-up); loads nothing otherwise. Returns
    /// how many of those files are cached afterwards. Reads and validates the module (its
    /// header alone cannot be trusted before the rest is checked).
    pub fn prefetch_announced(&self, module: &Path, candidates: &[PathBuf]) -> Result<usize, ModuleError> {
        let bytes = crate::file::read(module).map_err(|e| ModuleError::reading(module, e))?;
        let parsed = smf_format::Module::parse(&bytes)
            .map_err(|e| ModuleError::Load(Some(module.to_path_buf()), LoadError::Format(e)))?;
        let header = parsed.header();
        if header.prefetch_hint == 0 {
            return Ok(0);
        }
        let announced = &candidates[..candidates.len().min(usize::from(header.prefetch_file_count))];
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(self.prefetch(announced, threads))
    }
}

/// A prefetch worker's stack (std's default for spawned threads).
const WORKER_STACK: usize = 2 << 20;

/// Most files a prefetch loads together (one seal for all: see
/// `loader::load_together`). While threads run, a seal costs more than its
/// syscall: taking write or execute rights away flushes the TLB of every core that runs one
/// of the process's threads, an interrupt each (some 50 us on a virtual machine whose other
/// core must be scheduled first). A fresh process prefetching the start-up benchmark's 200
/// modules on two threads took 13 interrupts per run (background ones included) in chunks of
/// up to 16, 8-9 in chunks of up to 32, and ran 2.5% faster (400 alternated runs). Chunks
/// stay small where many threads share the files ([`CHUNKS_PER_THREAD`]): files that are not
/// in the page cache take long to read, and an even share matters more there (8 threads on
/// 200 such files: 1.4-1.9x faster than one by one with 2 chunks per thread, 2.0-2.3x with 4).
const MAX_CHUNK: usize = 32;

/// Chunks a prefetch hands each thread at least, for an even share of the work.
const CHUNKS_PER_THREAD: usize = 4;

/// How long a prefetch's calling thread loads alone before it starts threads for the files
/// left: about what starting two threads costs here (their stacks mapped, the kernel's clone,
/// the first schedule), so that a prefetch of a few small modules starts none (`cargo xtask
/// bench chart`, count panel: 5 small modules took longer per module on two threads than one).
const ALONE_FOR: std::time::Duration = std::time::Duration::from_micros(100);
