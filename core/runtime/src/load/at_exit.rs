//! A module's destructors at the process's exit: what `ld.so` does for a library still loaded
//! when the program exits. Given an [`ExitRegistrar`] (the shell gives the C library's
//! `__cxa_atexit` and `__cxa_finalize`), a load registers one exit handler for the module, under
//! a handle of its own, before its constructors run; whichever comes first then runs the
//! destructors, once:
//!
//! - the process's exit (`exit`, or `main` returning): the handler runs among the others, in
//!   the reverse order of registration, so after those registered later (the handlers `main`
//!   registered with `atexit`, the C++ objects the module's constructors built), as a program's
//!   `.fini_array` runs after them;
//! - the module's release: `__cxa_finalize(handle)` runs the handler, if the exit has not, and
//!   takes it off the C library's list, before the module's memory is freed; if the exit is
//!   running it on another thread (glibc calls a handler without its lock, and its finalize
//!   then skips it), the release waits for it to finish first.
//!
//! A module leaked (`mem::forget`) past its allocator leaves its handler to run destructors in
//! memory the allocator unmapped, as it leaves its unwind tables with the unwinder: the shell's
//! allocator lives as long as the process.
//!
//! Without a registrar (the core alone, without a C library), the destructors run at release
//! only, and a module still loaded at exit runs none.

#![allow(unsafe_code)]

use alloc::vec::Vec;
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicU8, Ordering};

use super::calls::{self, Catcher};
use super::fallible;

/// `__cxa_atexit`: registers `function(argument)` to run at exit under `handle`; 0 if it did.
pub type RegisterFn = unsafe extern "C" fn(
    function: unsafe extern "C" fn(*mut c_void),
    argument: *mut c_void,
    handle: *mut c_void,
) -> c_int;

/// The C library's exit handlers, as a registrar: `__cxa_atexit` and `__cxa_finalize`
/// ([`ExitRegistrar::new`]).
#[derive(Clone, Copy, Debug)]
pub struct ExitRegistrar {
    register: RegisterFn,
    /// Runs every function still registered under `handle`, last first, and forgets them.
    finalize: unsafe extern "C" fn(handle: *mut c_void),
}

impl ExitRegistrar {
    /// A registrar of `register` and `finalize`.
    ///
    /// # Safety
    /// They behave as glibc's `__cxa_atexit` and `__cxa_finalize`: `register(function,
    /// argument, handle)` has `function(argument)` called once at the process's exit, unless
    /// `finalize(handle)` was called first, which calls it then if it has not been, and after
    /// which the C library never calls it. (musl's `__cxa_finalize` does nothing: a module
    /// released would leave its handler to be called at exit with what it freed.)
    pub const unsafe fn new(
        register: RegisterFn,
        finalize: unsafe extern "C" fn(handle: *mut c_void),
    ) -> Self {
        Self { register, finalize }
    }
}

/// The same functions (compared by address, which is all a registrar is).
impl PartialEq for ExitRegistrar {
    fn eq(&self, other: &Self) -> bool {
        core::ptr::fn_addr_eq(self.register, other.register)
            && core::ptr::fn_addr_eq(self.finalize, other.finalize)
    }
}

impl Eq for ExitRegistrar {}

/// What the exit handler runs: a module's destructors and what they run through.
struct Destructors {
    /// In array order (run in reverse); taken by the one run.
    entries: spin::Mutex<Vec<usize>>,
    catch: Option<Catcher>,
    /// [`PENDING`], [`RUNNING`] or [`DONE`]: who runs them claims them first, and a release
    /// waits for a run the exit started on another thread before the code is freed.
    state: AtomicU8,
}

/// Not run yet.
const PENDING: u8 = 0;
/// Being run (by the exit, or by the release).
const RUNNING: u8 = 1;
/// Run.
const DONE: u8 = 2;

impl Destructors {
    /// Runs the destructors if no one has claimed them.
    ///
    /// # Safety
    /// The module's code is mapped.
    unsafe fn run_once(&self) -> bool {
        if self.state.compare_exchange(PENDING, RUNNING, Ordering::Acquire, Ordering::Acquire).is_err() {
            return false;
        }
        // The entries are taken under the lock, and run outside it.
        let entries = core::mem::take(&mut *self.entries.lock());
        // SAFETY: the caller's: the destructors lie in the module's mapped code.
        unsafe { calls::destruct(&entries, self.catch) };
        self.state.store(DONE, Ordering::Release);
        true
    }
}

/// A module's destructors, handed to the process's exit: run by whichever comes first, the
/// exit or [`ExitHook::release`].
pub(super) struct ExitHook {
    /// One element, whose address is the handler's argument and handle: a vector's buffer,
    /// which stays where it is while the hook is moved (and whose allocation can fail without
    /// aborting).
    destructors: Vec<Destructors>,
    registrar: ExitRegistrar,
}

impl ExitHook {
    /// `destructors` (in array order, checked to lie in the module's sealed code) handed to the
    /// process's exit through `registrar`; given back if they could not be (no memory for the
    /// hook, or the C library refused), to run at release only.
    pub(super) fn register(
        registrar: ExitRegistrar,
        destructors: Vec<usize>,
        catch: Option<Catcher>,
    ) -> Result<Self, Vec<usize>> {
        let Some(mut slot) = fallible::with_capacity::<Destructors>(1) else { return Err(destructors) };
        slot.push(Destructors {
            entries: spin::Mutex::new(destructors),
            catch,
            state: AtomicU8::new(PENDING),
        });
        let handle = slot.as_mut_ptr().cast::<c_void>();
        // SAFETY: `run` takes the pointer to the `Destructors` this hook keeps where it is until
        // `release` has had the C library run or forget the handler.
        if unsafe { (registrar.register)(run, handle, handle) } != 0 {
            let entries = slot.pop().map(|d| d.entries.into_inner()).unwrap_or_default();
            return Err(entries);
        }
        Ok(Self { destructors: slot, registrar })
    }

    /// The module is being released: runs its destructors unless the exit did, takes the
    /// handler off the C library's list, and returns once no destructor is running (one the
    /// exit started on another thread is waited for: its code is freed after this).
    ///
    /// # Safety
    /// The module's code is still mapped (its destructors may run).
    pub(super) unsafe fn release(self) {
        let handle = self.destructors.as_ptr().cast_mut().cast::<c_void>();
        // SAFETY: the handle this hook registered `run` under; `self` keeps its argument alive
        // through the call, which runs `run` at most once and forgets it (the registrar's
        // contract).
        unsafe { (self.registrar.finalize)(handle) };
        if let Some(destructors) = self.destructors.first() {
            // Forgotten by the C library: run here if the exit has not claimed them (glibc's
            // finalize skips a handler its exit is running on another thread).
            // SAFETY: the caller's: the code is mapped.
            if !unsafe { destructors.run_once() } {
                while destructors.state.load(Ordering::Acquire) != DONE {
                    core::hint::spin_loop();
                }
            }
        }
    }
}

/// The exit handler: runs the destructors `destructors` points at (a hook's [`Destructors`]),
/// if no one has.
unsafe extern "C" fn run(destructors: *mut c_void) {
    // SAFETY: registered with a hook's `Destructors`, which lives until the handler ran or was
    // forgotten (`ExitHook::release`).
    let destructors = unsafe { &*destructors.cast::<Destructors>() };
    // SAFETY: the destructors were checked to lie in the module's code, which is mapped until
    // after `release` (which waits for this run), or, at exit, for good.
    unsafe { destructors.run_once() };
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::AtomicUsize;

    /// A C library of one exit handler at a time, for the test below.
    static HANDLER: spin::Mutex<Option<(unsafe extern "C" fn(*mut c_void), usize, usize)>> =
        spin::Mutex::new(None);
    static REFUSE: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn register(
        function: unsafe extern "C" fn(*mut c_void),
        argument: *mut c_void,
        handle: *mut c_void,
    ) -> c_int {
        if REFUSE.load(Ordering::Relaxed) != 0 {
            return -1;
        }
        *HANDLER.lock() = Some((function, argument as usize, handle as usize));
        0
    }

    unsafe extern "C" fn finalize(handle: *mut c_void) {
        let taken = HANDLER.lock().take_if(|(_, _, h)| *h == handle as usize);
        if let Some((function, argument, _)) = taken {
            // SAFETY: as the C library calls a handler.
            unsafe { function(argument as *mut c_void) };
        }
    }

    // SAFETY: a C library of one handler that keeps the contract.
    const REGISTRAR: ExitRegistrar = unsafe { ExitRegistrar::new(register, finalize) };

    #[test]
    fn the_handler_runs_once_and_a_refusal_gives_the_destructors_back() {
        // No destructor entries: what runs is the taking, once (the entries are empty after).
        let hook = ExitHook::register(REGISTRAR, Vec::new(), None).ok().unwrap();
        let (_, argument, handle) = HANDLER.lock().unwrap();
        assert_eq!(argument, handle, "the argument is the handle");
        assert_eq!(argument, hook.destructors.as_ptr() as usize);
        // SAFETY: no code to run.
        unsafe { hook.release() };
        assert!(HANDLER.lock().is_none(), "forgotten at release");

        REFUSE.store(1, Ordering::Relaxed);
        let given_back = ExitHook::register(REGISTRAR, alloc::vec![0x1000, 0x2000], None).err();
        assert_eq!(given_back, Some(alloc::vec![0x1000, 0x2000]));
        REFUSE.store(0, Ordering::Relaxed);
    }
}
