//! Load-time instantiation of generic templates: the mechanism under the C ABI's `smf_jit_*`.
//!
//! A module lists in its note.sdn "possible" table the instantiations it may need
//! (`List$Float`) and carries the templates' code. When a program first asks for one, the
//! runtime's compiler turns the template into machine code, which an [`Instantiator`]
//! installs in sealed executable memory (`install.rs`: a [`crate::exec::CodeArena`]), keeps
//! by name, and hands out. [`metadata::ModuleMetadata`] keeps a module's note current (entries
//! moved to "instantiations" with status `jit_compiled`).
//!
//! [`Instantiator::instantiate`] checks, in the order the Simple runtime's tests expect:
//! disabled → [`InstantiateError::NotFound`]; the caller's depth at the limit →
//! [`InstantiateError::DepthExceeded`]; already instantiated → the same address, no second compile; in
//! progress on this thread → [`InstantiateError::Circular`] with the cycle; not offered (the caller's
//! `plan` finds no "possible" entry) → [`InstantiateError::NotFound`]; otherwise compile (through the
//! caller's `compile`, with no lock held), install, keep.
//!
//! Threads: the compiler may ask for its dependencies re-entrantly on the same thread; the
//! caller says which names that thread is already instantiating ([`Caller::stack`]), which is
//! where cycles and the depth limit are found. Requests on different threads run side by side;
//! one that finds its name being compiled on another thread waits for that compile (futex) and
//! gets its outcome, so two threads asking for the same name get one compile and one address.
//! A wait that would close a cycle across threads (A compiles X and waits for Y, B compiles Y
//! and asks for X) is [`InstantiateError::Circular`] instead of a deadlock.
//!
//! Code lives as long as its instantiator: nothing is freed before it is dropped.

mod batch;
mod error;
mod install;
pub mod metadata;
mod published;
mod request;

pub use batch::Staging;
pub use error::{CompileFailure, CompilerError, InstantiateError, ModuleUnavailable};
pub use request::{Begun, Claim, MAX_CODE};

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use hashbrown::{HashMap, HashTable};

use crate::exec::ExecAllocator;
use crate::lru::KeyedHasher;
use install::Installer;

/// Settings of an instantiator (the C ABI's `SmfJitConfig`, and a limit of its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstantiatorConfig {
    /// Instantiation depth limit: a request made while this many are in progress on its
    /// thread fails with [`InstantiateError::DepthExceeded`].
    pub max_depth: u32,
    /// When false, every request is [`InstantiateError::NotFound`].
    pub enabled: bool,
    /// Whether instantiations are recorded in their module's metadata.
    pub update_metadata: bool,
    /// Most instantiations kept; more fail with [`InstantiateError::LimitReached`].
    pub max_instantiations: usize,
}

impl Default for InstantiatorConfig {
    /// Depth 50, enabled, recording, no limit on the number (the C ABI's defaults).
    fn default() -> Self {
        Self { max_depth: 50, enabled: true, update_metadata: true, max_instantiations: usize::MAX }
    }
}

/// Who asks: a thread (any number unique among live threads) and the names that thread is
/// instantiating now, outermost first.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    /// The asking thread.
    pub thread: u64,
    /// Names in progress on that thread, outermost first.
    pub stack: &'a [Box<str>],
}

/// A successful request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instantiated {
    /// Where the code starts.
    pub address: usize,
    /// Whether this request compiled it (false: it was there, or another thread compiled it).
    pub compiled: bool,
}

/// Counters of an instantiator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InstantiatorStats {
    /// Instantiations compiled and installed.
    pub instantiations: u64,
    /// Requests answered with code already there.
    pub cache_hits: u64,
    /// Compiles (or installs) that failed.
    pub compile_failures: u64,
    /// Bytes of code installed.
    pub code_bytes: u64,
    /// Requests that waited for another thread's compile of the same name.
    pub waits: u64,
}

/// A name being compiled.
#[derive(Debug)]
struct InFlight {
    name: Box<str>,
    /// Its [`published::Published::hash`].
    hash: u64,
    /// The compiling thread.
    owner: u64,
    /// Which compile of this name it is (waiters get the outcome of the one they waited for).
    attempt: u32,
    /// Tells this claim from every other: how it is found when it ends.
    serial: u64,
    /// Its code, if compiled for a batch and not yet installed ([`Staging`]).
    staged: Staged,
}

/// Where a claim's compiled code is, while the name is in flight.
#[derive(Debug)]
enum Staged {
    /// Not compiled yet (or installed at once, as a single request's is).
    No,
    /// Compiled for its thread's batch, in its thread's staging buffer; installed when the
    /// batch is flushed.
    Pending(Piece),
    /// Taken by its thread's flush, being installed: the piece, and which flush took it
    /// (a [`Table::next_serial`] of its own, so that no other flush publishes it).
    Installing(Piece, u64),
}

/// Where a staged name's code lies in its thread's staging buffer (and so in the image the
/// flush installs): `len` bytes from `at`, a [`crate::exec::GRANULE`] boundary.
#[derive(Clone, Copy, Debug)]
struct Piece {
    at: usize,
    len: usize,
}

/// Names whose last compile failed, with its attempt and error.
type Failed = HashMap<Box<str>, (u32, InstantiateError), KeyedHasher>;

/// Bookkeeping under the lock. Installed names are in [`published`].
struct Table {
    /// Names being compiled (one chain of dependencies per compiling thread, and the names
    /// batches staged), by name (hashed with [`published::Published::hash`]).
    in_flight: HashTable<InFlight>,
    /// Names whose last compile failed: its attempt and error (kept for that compile's waiters;
    /// a new request compiles again).
    failed: Failed,
    /// Threads waiting for a name another thread compiles, and that name.
    waiting: Vec<(u64, Box<str>)>,
    /// The published names' writer.
    writer: published::Writer,
    /// The next claim's [`InFlight::serial`] (and a flush's token, [`Staged::Installing`]).
    next_serial: u64,
    /// Each thread's staged code ([`Staging`]). A thread has an entry from its first staged
    /// name until its batch is flushed.
    staging: Vec<StagingBuffer>,
}

/// One thread's staged code: the pieces of its batch laid out as they will be installed.
#[derive(Debug)]
struct StagingBuffer {
    thread: u64,
    bytes: Vec<u8>,
    /// Taken out by a stage copying into it with the lock released; until it is given back,
    /// no other stage takes it and no flush installs it. (With honest thread numbers that
    /// never happens: a thread stages and flushes one thing at a time. Two OS threads giving
    /// one number, which [`Caller::thread`] forbids, then get a second stage's code installed
    /// alone and a flush that waits for the next one, never a piece lost or misplaced.)
    taken: bool,
}

/// Cache hits are counted in this many cache-line-sized stripes (by thread), so that threads
/// hitting at once do not contend for one counter.
const HIT_STRIPES: usize = 8; // `count_hit` takes the top 3 bits

#[repr(align(64))]
#[derive(Default)]
struct Stripe(AtomicU64);

/// An [`Instantiator`]'s locks, held ([`Instantiator::hold`]) until this is dropped.
pub struct Held<'i, 'a> {
    table: crate::exec::lock::Guard<'i, Table>,
    _arena: crate::exec::ArenaHeld<'i>,
    _blocks: spin::MutexGuard<'i, Vec<crate::exec::Block<'a>>>,
}

impl fmt::Debug for Held<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Held")
    }
}

impl Held<'_, '_> {
    /// In a child forked while these locks were held, where only `survivor` (the forking
    /// thread's [`Caller::thread`]) is left: the names other threads were compiling, staging
    /// or installing, and their waits, are given up (nothing is published or recorded for
    /// them: a request in the child compiles them anew). Without it, a child asking for such a
    /// name would wait for a thread that is not there.
    pub fn forget_other_threads(&mut self, survivor: u64) {
        let table = &mut *self.table;
        table.in_flight.retain(|flight| flight.owner == survivor);
        table.waiting.retain(|(thread, _)| *thread == survivor);
        table.staging.retain(|buffer| buffer.thread == survivor);
    }
}

/// Instantiated code by mangled name (see the module doc).
pub struct Instantiator<'a> {
    config: InstantiatorConfig,
    /// The live instantiation limit (`config.max_instantiations` at first).
    max_instantiations: core::sync::atomic::AtomicUsize,
    installer: Installer<'a>,
    /// Installed names, read without the lock.
    published: published::Published,
    table: crate::exec::lock::Lock<Table>,
    /// Bumped (and waiters woken) whenever a compile ends.
    generation: AtomicU32,
    /// Written only through [`published::Writer::count`], under the lock (as are
    /// `compile_failures` and `code_bytes`).
    instantiations: AtomicU64,
    cache_hits: [Stripe; HIT_STRIPES],
    compile_failures: AtomicU64,
    code_bytes: AtomicU64,
    waits: AtomicU64,
}

impl fmt::Debug for Instantiator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instantiator").field("config", &self.config).field("stats", &self.stats()).finish()
    }
}

impl<'a> Instantiator<'a> {
    /// An instantiator with `config`, installing code through `allocator` (its kernel's
    /// shared memory, or its batches).
    pub fn new(allocator: &'a ExecAllocator, config: InstantiatorConfig) -> Self {
        let hasher = KeyedHasher::per_process();
        let (published, writer) = published::Published::new(hasher);
        Self {
            config,
            max_instantiations: core::sync::atomic::AtomicUsize::new(config.max_instantiations),
            installer: Installer::new(allocator),
            published,
            table: crate::exec::lock::Lock::new(Table {
                in_flight: HashTable::new(),
                failed: HashMap::with_hasher(hasher),
                waiting: Vec::new(),
                writer,
                next_serial: 0,
                staging: Vec::new(),
            }),
            generation: AtomicU32::new(0),
            instantiations: AtomicU64::new(0),
            cache_hits: Default::default(),
            compile_failures: AtomicU64::new(0),
            code_bytes: AtomicU64::new(0),
            waits: AtomicU64::new(0),
        }
    }

    /// Takes every lock of the instantiator (its table, then where code is installed) until
    /// the returned value is dropped: for a caller that must keep its bookkeeping still, such
    /// as a process that forks while other threads instantiate. None of its calls takes one of
    /// them while holding another in a different order, or calls out while holding one.
    pub fn hold(&self) -> Held<'_, 'a> {
        let table = self.table.lock();
        let (arena, blocks) = self.installer.hold();
        Held { table, _arena: arena, _blocks: blocks }
    }

    /// Its settings (with the instantiation limit as it stands).
    pub fn config(&self) -> InstantiatorConfig {
        InstantiatorConfig { max_instantiations: self.max_instantiations(), ..self.config }
    }

    /// Limits the number of instantiations kept (installed or in flight) from now on; more
    /// fail with [`InstantiateError::LimitReached`]. Code already installed stays.
    pub fn set_max_instantiations(&self, limit: usize) {
        self.max_instantiations.store(limit, Ordering::Relaxed);
    }

    fn max_instantiations(&self) -> usize {
        self.max_instantiations.load(Ordering::Relaxed)
    }

    /// The address of `name` if it is instantiated (no lock taken).
    pub fn lookup(&self, name: &str) -> Option<usize> {
        self.published.get(name.as_bytes())
    }

    /// The instantiated function `name` as the function pointer type `F`, borrowing the
    /// instantiator so that the code lives while the handle does; `None` if `name` is not
    /// instantiated (or `F` is not a function pointer type).
    ///
    /// # Safety
    /// `F` is an `extern "C" fn` type whose signature is the instantiated function's.
    #[allow(unsafe_code)]
    pub unsafe fn function<F: Copy>(&self, name: &str) -> Option<crate::exec::Function<'_, F>> {
        // SAFETY: installed code lives until the instantiator is dropped, which the handle's
        // borrow prevents; the signature is the caller's contract.
        unsafe { crate::exec::Function::at(self.lookup(name)?) }
    }

    /// Whether `addr` lies inside code this instantiator installed.
    pub fn contains_code(&self, addr: usize) -> bool {
        self.installer.contains(addr)
    }

    /// The code at `addr` (inside code this instantiator installed) as the function pointer
    /// type `F`, borrowing the instantiator; `None` elsewhere.
    ///
    /// # Safety
    /// A function whose signature is `F`'s starts at `addr`.
    #[allow(unsafe_code)]
    pub unsafe fn function_at<F: Copy>(&self, addr: usize) -> Option<crate::exec::Function<'_, F>> {
        if !self.contains_code(addr) {
            return None;
        }
        // SAFETY: installed code lives while the instantiator does (borrowed by the handle); the
        // signature is the caller's contract.
        unsafe { crate::exec::Function::at(addr) }
    }

    /// Its counters.
    pub fn stats(&self) -> InstantiatorStats {
        InstantiatorStats {
            instantiations: self.instantiations.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.iter().map(|s| s.0.load(Ordering::Relaxed)).sum(),
            compile_failures: self.compile_failures.load(Ordering::Relaxed),
            code_bytes: self.code_bytes.load(Ordering::Relaxed),
            waits: self.waits.load(Ordering::Relaxed),
        }
    }

    fn count_hit(&self, thread: u64) {
        // Tokens may be aligned addresses: their top bits after a multiply pick the stripe.
        let stripe = usize::try_from(thread.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61).unwrap_or(0);
        self.cache_hits[stripe].0.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether code goes to the shared-memory arena (false where the kernel refused it and
    /// each function gets a sealed batch).
    pub fn uses_arena(&self) -> bool {
        self.installer.uses_arena()
    }
}

#[cfg(test)]
mod tests;
