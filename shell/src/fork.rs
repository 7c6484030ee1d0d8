//! What the library does around `fork`. A child has the parent's memory but only the thread
//! that forked, so two things need handling, both through `pthread_atfork` handlers registered
//! when something first needs them (children inherit the registration):
//!
//! - **A generation**, counted up in each child, by which state made for the parent is told
//!   from the child's own: the change watcher's thread stayed in the parent, so the notices it
//!   would have set ([`crate::watch`]) never fire in the child; they answer by their generation.
//! - **The process-wide locks.** A lock another thread held at the fork would stay held in the
//!   child forever (its holder is not there to let go), and what it guards could be half
//!   changed. Each such lock is registered here ([`hold_at_fork`]) when first used; the prepare
//!   handler takes every registered one, in [`Lock`] order, before the process forks (waiting
//!   for holders to finish, as their work under a lock is short and never waits on a fork), and
//!   the parent and child handlers let go of them. The order is one no code path reverses:
//!   each lock is taken alone or before those after it.
//!
//! - **The locks of the objects a caller makes**: caches, instantiators, execution managers.
//!   Each registers itself when made ([`hold_object_at_fork`], weakly: the list never keeps one
//!   alive); the prepare handler keeps each live one alive across the fork and takes its locks,
//!   by [`Object`] kind, between the handle tables and the other process-wide locks. In the
//!   child, each is told before its locks are let go that the other threads are gone
//!   ([`Hold::in_child`]: an instantiator gives up the names they were compiling, which the
//!   child would otherwise wait for). So a child may go on using a cache or an instantiator
//!   its parent's threads were using when it forked. An object dropped during a fork is
//!   emptied under its locks by its `Drop` (which waits for the fork), so the handlers' last
//!   reference, if theirs is last, releases no module inside them.
//!   An `ExecAllocator` a caller makes itself is not the library's to hold (it has
//!   `ExecAllocator::hold`). The `rt_*` registries hold each allocation's and mapping's own
//!   lock with theirs (`ffi/rt_owned.rs`).
//!
//! The whole order, which no code path reverses (each lock is taken alone or before those
//! after it): the C ABI's handle tables (a lookup may ask an object a question under its
//! table's lock), then objects (an instantiator asks its cache; objects release modules and
//! export compiled functions under their locks), then the other process-wide locks.

use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock, RwLock, Weak};

/// How many forks lie between the process that started the library's watching and this one.
static GENERATION: AtomicU64 = AtomicU64::new(0);

extern "C" {
    /// The C library's (glibc, musl; std links it).
    fn pthread_atfork(
        prepare: Option<extern "C" fn()>,
        parent: Option<extern "C" fn()>,
        child: Option<extern "C" fn()>,
    ) -> i32;
}

/// The library's process-wide locks, in the order the prepare handler takes them.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Lock {
    /// The C ABI's handle tables: modules, caches, instantiators, execution managers.
    Modules,
    Caches,
    Instantiators,
    #[cfg_attr(not(feature = "cranelift"), allow(dead_code))]
    Managers,
    /// The registry of loaded modules' exports (`loader/registry.rs`).
    Registry,
    /// The host symbols and what the C library gave (`imports.rs`).
    Host,
    CLibrary,
    /// The execution managers' compiled functions by name and the front end.
    #[cfg_attr(not(feature = "cranelift"), allow(dead_code))]
    Compiled,
    #[cfg_attr(not(feature = "cranelift"), allow(dead_code))]
    FrontEnd,
    /// The `rt_*` allocations and mapped files (each registry with its entries' locks).
    #[cfg_attr(not(feature = "rt"), allow(dead_code))]
    RtAllocations,
    #[cfg_attr(not(feature = "rt"), allow(dead_code))]
    RtFiles,
    /// Live modules' code by address (`code_index.rs`).
    Code,
    /// The modules waiting to be described to a debugger (`debug/waiting.rs`).
    DebuggersWaiting,
    /// The debugger's list of described modules (`debug/gdb.rs`).
    Debuggers,
    /// The library's calls into libgcc's unwind table registry (`process.rs`).
    UnwindTables,
    /// The process's executable memory allocator (`process.rs`).
    Allocator,
}

/// How many [`Lock`]s there are.
const LOCKS: usize = Lock::Allocator as usize + 1;

/// The locks the objects' turn comes after (the handle tables).
const OBJECTS_AFTER: usize = Lock::Managers as usize + 1;

/// The kinds of objects whose locks are taken around `fork`, in the order they are taken (an
/// execution manager calls neither of the others under its locks; an instantiator asks its
/// cache for modules under its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Object {
    #[cfg_attr(not(feature = "cranelift"), allow(dead_code))]
    Manager,
    Instantiator,
    Cache,
}

/// A lock the prepare handler can take: held while the returned guard lives.
pub(crate) trait Hold: Sync {
    /// Takes the lock; it is let go when the returned value is dropped.
    fn hold(&'static self) -> Box<dyn Any>;

    /// In the child, before `held` (what [`Hold::hold`] returned) is let go: forgets what
    /// threads other than this one (the only one the child has) were in the middle of, where
    /// someone could otherwise wait for them forever.
    fn in_child(&self, _held: &mut dyn Any) {}
}

impl<T: Send + 'static> Hold for Mutex<T> {
    fn hold(&'static self) -> Box<dyn Any> {
        Box::new(crate::sync::lock(self))
    }
}

impl<T: Send + Sync + 'static> Hold for RwLock<T> {
    fn hold(&'static self) -> Box<dyn Any> {
        Box::new(crate::sync::write(self))
    }
}

/// The registered locks, by [`Lock`].
static HOLDERS: [OnceLock<&'static dyn Hold>; LOCKS] = [const { OnceLock::new() }; LOCKS];

/// A live object's locks, held weakly.
type Registered = (Object, Weak<dyn Hold + Send>);

/// The objects made so far (dead ones swept out as the list grows).
static OBJECTS: Mutex<Objects> = Mutex::new(Objects { all: Vec::new(), swept: 0 });

struct Objects {
    all: Vec<Registered>,
    /// How many were live at the last sweep.
    swept: usize,
}

/// What the prepare handler took, until the parent or child handler lets go of it.
#[derive(Default)]
struct Taken {
    /// The guards of process-wide locks, let go first (declared first: dropped first).
    guards: Vec<Box<dyn Any>>,
    /// The objects' guards, one per owner (they borrow from `owners`).
    objects: Vec<Box<dyn Any>>,
    /// The objects whose locks are held, kept alive until their guards are gone. The last
    /// reference may end here, with no lock of the library held: the objects' own `Drop`s
    /// take out under their locks what must not be released inside a fork's handlers.
    owners: Vec<Arc<dyn Hold + Send>>,
}

thread_local! {
    /// What the prepare handler took, on the thread that forks.
    static HELD: RefCell<Taken> =
        const { RefCell::new(Taken { guards: Vec::new(), objects: Vec::new(), owners: Vec::new() }) };
}

/// Has the prepare handler take `lock` (the lock `rank` names) around every fork from now on.
/// Called where the lock is first used: a lock no thread has used cannot be held.
#[inline]
pub(crate) fn hold_at_fork(rank: Lock, lock: &'static dyn Hold) {
    let slot = &HOLDERS[rank as usize];
    if slot.get().is_none() {
        register_handlers();
        let _ = slot.set(lock);
    }
}

/// Has the prepare handler take `object`'s locks (its [`Hold`]) around every fork while it
/// lives, in `kind`'s turn. Called when an object is made, with no lock of the library held.
/// Without memory to list it, the object is not held at forks (a child then must not use it
/// if another thread was using it at the fork).
pub(crate) fn hold_object_at_fork<T: Hold + Send + 'static>(kind: Object, object: &Arc<T>) {
    register_handlers();
    let weak: Weak<dyn Hold + Send> = Arc::downgrade(object) as Weak<dyn Hold + Send>;
    let mut objects = crate::sync::lock(&OBJECTS);
    if objects.all.len() >= 2 * objects.swept.max(16) {
        objects.all.retain(|(_, object)| object.strong_count() > 0);
        objects.swept = objects.all.len();
    }
    if objects.all.try_reserve(1).is_ok() {
        objects.all.push((kind, weak));
    }
}

/// Before `fork`: the handle tables, the live objects' locks (kind by kind, in the order they
/// were made) and every other registered lock, taken in order.
extern "C" fn prepare() {
    let mut taken = Taken::default();
    let (tables, others) = HOLDERS.split_at(OBJECTS_AFTER);
    taken.guards.extend(tables.iter().filter_map(|slot| slot.get()).map(|lock| lock.hold()));
    let objects = crate::sync::lock(&OBJECTS);
    let mut live: Vec<(Object, Arc<dyn Hold + Send>)> =
        objects.all.iter().filter_map(|(kind, object)| Some((*kind, object.upgrade()?))).collect();
    live.sort_by_key(|(kind, _)| *kind);
    for (_, object) in live {
        #[allow(unsafe_code)]
        // SAFETY: the object lives at a fixed address while `taken.owners` holds it, and the
        // guards borrowing it are dropped before the owners (`Taken`'s field order), so the
        // reference never outlives it.
        let borrowed: &'static (dyn Hold + Send) = unsafe { &*Arc::as_ptr(&object) };
        taken.objects.push(borrowed.hold());
        taken.owners.push(object);
    }
    taken.guards.push(Box::new(objects));
    taken.guards.extend(others.iter().filter_map(|slot| slot.get()).map(|lock| lock.hold()));
    HELD.with(|slot| *slot.borrow_mut() = taken);
}

/// After `fork`, in the parent: the locks let go.
extern "C" fn in_parent() {
    let taken = HELD.with(|slot| std::mem::take(&mut *slot.borrow_mut()));
    drop(taken);
}

/// After `fork`, in the child (the C library calls it before `fork` returns there): one
/// generation more, each object told that the other threads are gone, and the locks the
/// forking thread took let go (their state is whole: no other thread held them).
extern "C" fn in_child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
    let mut taken = HELD.with(|slot| std::mem::take(&mut *slot.borrow_mut()));
    for (held, owner) in taken.objects.iter_mut().zip(&taken.owners) {
        owner.in_child(held.as_mut());
    }
    drop(taken);
}

/// Registers the handlers (once per process; children inherit them).
fn register_handlers() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        #[allow(unsafe_code)]
        // SAFETY: the handlers take and let go of the library's own locks and count a
        // generation; the registration outlives nothing it points to.
        let _ = unsafe { pthread_atfork(Some(prepare), Some(in_parent), Some(in_child)) };
    });
}

/// Counts forks from now on (once per process; children inherit the registration).
pub(crate) fn count_forks() {
    register_handlers();
}

/// This process's generation: 0 in the process that called [`count_forks`] first, one more in
/// each child forked since.
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}
