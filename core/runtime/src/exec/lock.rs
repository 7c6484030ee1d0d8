//! The allocator's lock: a mutex whose waiters sleep in the kernel (`futex`, through
//! [`crate::sys`]) after a short spin, instead of spinning for as long as the holder needs, so
//! a thread waiting for the allocator leaves its core to others. No libc: the futex calls are
//! direct syscalls. Under Miri, which cannot make them, waiters only spin.
//!
//! The classic three-state futex mutex: 0 unlocked, 1 locked, 2 locked with (possible)
//! sleepers; unlocking from 2 wakes one sleeper.

#![allow(unsafe_code)]

use core::cell::UnsafeCell;
use core::fmt;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, Ordering};

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

/// Tries this many times before sleeping (a holder usually leaves within a few microseconds).
const SPINS: u32 = 500;

/// A mutual-exclusion lock whose waiters sleep.
pub(crate) struct Lock<T> {
    state: AtomicU32,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `value` to one thread at a time, so sharing it across
// threads only moves `T` between them: `T: Send` is enough.
unsafe impl<T: Send> Sync for Lock<T> {}
// SAFETY: as above; the lock owns its value.
unsafe impl<T: Send> Send for Lock<T> {}

impl<T> fmt::Debug for Lock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock").field("state", &self.state.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

impl<T> Lock<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self { state: AtomicU32::new(UNLOCKED), value: UnsafeCell::new(value) }
    }

    /// The value, through exclusive access to the lock (no locking needed).
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }

    /// Waits for the lock and holds it until the guard is dropped.
    pub(crate) fn lock(&self) -> Guard<'_, T> {
        if self.state.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.lock_contended();
        }
        Guard { lock: self }
    }

    #[cold]
    fn lock_contended(&self) {
        for _ in 0..SPINS {
            if self.state.load(Ordering::Relaxed) == UNLOCKED
                && self.state.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_ok()
            {
                return;
            }
            core::hint::spin_loop();
        }
        // Mark the lock contended; whoever unlocks it then wakes a sleeper.
        while self.state.swap(CONTENDED, Ordering::Acquire) != UNLOCKED {
            wait(&self.state);
        }
    }

    fn unlock(&self) {
        if self.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            wake(&self.state);
        }
    }
}

/// Sleeps while the lock is contended (under Miri, which cannot sleep in the kernel: spins).
fn wait(state: &AtomicU32) {
    #[cfg(not(miri))]
    crate::sys::futex_wait(state, CONTENDED);
    #[cfg(miri)]
    {
        let _ = state;
        core::hint::spin_loop();
    }
}

/// Wakes one sleeper (under Miri no one sleeps).
fn wake(state: &AtomicU32) {
    #[cfg(not(miri))]
    crate::sys::futex_wake(state, 1);
    #[cfg(miri)]
    let _ = state;
}

/// Access to the locked value; unlocks when dropped.
pub(crate) struct Guard<'a, T> {
    lock: &'a Lock<T>,
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this thread holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard exists only while this thread holds the lock, and `&mut self`
        // makes this the only reference through it.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.lock.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_take_turns_and_every_increment_counts() {
        extern crate std;
        let lock = Lock::new(0u64);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..if cfg!(miri) { 50 } else { 20_000 } {
                        *lock.lock() += 1;
                    }
                });
            }
        });
        assert_eq!(*lock.lock(), if cfg!(miri) { 200 } else { 80_000 });
        assert_eq!(lock.state.load(Ordering::Relaxed), UNLOCKED);
    }

    #[test]
    fn one_thread_holds_it_at_a_time_while_the_others_spin_or_sleep() {
        extern crate std;
        use core::sync::atomic::AtomicBool;
        let lock = Lock::new(0u64);
        let inside = AtomicBool::new(false);
        let rounds = if cfg!(miri) { 20 } else { 2_000 };
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for round in 0..rounds {
                        let mut guard = lock.lock();
                        assert!(!inside.swap(true, Ordering::SeqCst), "two threads hold the lock");
                        *guard += 1;
                        // Now and then held longer than the others spin, so they sleep in
                        // the kernel and the unlock has sleepers to wake.
                        if round % 50 == 0 && !cfg!(miri) {
                            std::thread::sleep(core::time::Duration::from_micros(300));
                        }
                        inside.store(false, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(*lock.lock(), 4 * rounds);
    }

    /// CPU time the calling thread has used, in clock ticks (user and system).
    #[cfg(not(miri))]
    fn thread_cpu_ticks() -> u64 {
        extern crate std;
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let fields: std::vec::Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        // After the command: state is field 3 of stat(5), utime 14 and stime 15.
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    #[cfg(not(miri))]
    #[test]
    fn a_thread_waiting_long_sleeps_instead_of_spinning() {
        extern crate std;
        let lock = Lock::new(());
        let guard = lock.lock();
        assert_eq!(std::format!("{lock:?}"), "Lock { state: 1, .. }");
        let used = std::thread::scope(|scope| {
            let waiter = scope.spawn(|| {
                let before = thread_cpu_ticks();
                drop(lock.lock());
                thread_cpu_ticks() - before
            });
            std::thread::sleep(core::time::Duration::from_millis(500));
            drop(guard);
            waiter.join().unwrap()
        });
        // Spinning for the half second would use some 50 ticks (a tick is 10 ms) on an idle
        // core. (Under qemu-user, whose own /proc may report no CPU time, this proves less.)
        assert!(used < 10, "the waiter used {used} ticks of CPU while it waited");
        assert_eq!(std::format!("{lock:?}"), "Lock { state: 0, .. }");
    }
}
