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
//! Locks of objects the caller makes (a `ModuleCache`, an instantiator, an execution manager,
//! an `ExecAllocator` of its own) are not taken: a child must not use an object another thread
//! was using at the fork (`smf.h` says so).

use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, OnceLock, RwLock};

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
    /// The registry of loaded modules' exports (`loader/registry.rs`).
    Registry,
    /// The C ABI's handle tables: modules, caches, instantiators, execution managers.
    Modules,
    Caches,
    Instantiators,
    #[cfg_attr(not(feature = "cranelift"), allow(dead_code))]
    Managers,
    /// The host symbols and what the C library gave (`imports.rs`).
    Host,
    CLibrary,
    /// The execution managers' compiled functions by name and the front end.
    #[cfg_attr(not(feature = "cranelift"), allow(dead_code))]
    Compiled,
    #[cfg_attr(not(feature = "cranelift"), allow(dead_code))]
    FrontEnd,
    /// The `rt_*` allocations and mapped files.
    #[cfg_attr(not(feature = "rt"), allow(dead_code))]
    RtAllocations,
    #[cfg_attr(not(feature = "rt"), allow(dead_code))]
    RtFiles,
    /// Live modules' code by address (`code_index.rs`).
    Code,
    /// The debugger's list of described modules (`debug/gdb.rs`).
    Debuggers,
    /// The process's executable memory allocator (`process.rs`).
    Allocator,
}

/// How many [`Lock`]s there are.
const LOCKS: usize = Lock::Allocator as usize + 1;

/// A lock the prepare handler can take: held while the returned guard lives.
pub(crate) trait Hold: Sync {
    /// Takes the lock; it is let go when the returned value is dropped.
    fn hold(&'static self) -> Box<dyn Any>;
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

thread_local! {
    /// The locks the prepare handler took, on the thread that forks, until the parent or child
    /// handler lets go of them.
    static HELD: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
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

/// Before `fork`: every registered lock, taken in order.
extern "C" fn prepare() {
    let held: Vec<Box<dyn Any>> =
        HOLDERS.iter().filter_map(|slot| slot.get()).map(|lock| lock.hold()).collect();
    HELD.with(|slot| *slot.borrow_mut() = held);
}

/// After `fork`, in the parent: the locks let go.
extern "C" fn in_parent() {
    let held = HELD.with(|slot| std::mem::take(&mut *slot.borrow_mut()));
    drop(held);
}

/// After `fork`, in the child (the C library calls it before `fork` returns there): one
/// generation more, and the locks the forking thread took let go (their state is whole: no
/// other thread held them).
extern "C" fn in_child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
    let held = HELD.with(|slot| std::mem::take(&mut *slot.borrow_mut()));
    drop(held);
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
