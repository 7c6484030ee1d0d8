//! One request, in the order of checks the module doc gives: what the table says of the name
//! (there, being compiled here or elsewhere, failed), claiming it, compiling with no lock held,
//! and publishing the outcome to any thread that waited for it.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use super::{Caller, Entry, Instantiated, Instantiator, JitError, Table};

/// What the table says of a name.
enum Existing {
    /// Installed at this address.
    Ready(usize),
    /// Nobody has it (or its last compile failed and this request retries).
    Absent,
}

/// What [`Instantiator::begin`] found.
#[derive(Debug)]
pub enum Begun<'i, 'a, 'n, P> {
    /// The name is installed at this address.
    Ready(usize),
    /// The name is the caller's to compile: the plan, and the claim to finish with the code.
    Claimed(Claim<'i, 'a, 'n>, P),
}

impl<'a> Instantiator<'a> {
    /// The code of `name`, instantiating it if needed (see the module doc for the checks):
    /// `plan` says whether and how the name is offered (`None`: not offered), `compile` turns
    /// the plan into machine code. Neither is called with a lock held, and `compile` may
    /// call `instantiate` again on the same thread (with `name` pushed on the caller's stack).
    pub fn instantiate<P, C: AsRef<[u8]>>(
        &self,
        name: &str,
        caller: Caller<'_>,
        plan: impl FnOnce() -> Result<Option<P>, JitError>,
        compile: impl FnOnce(P) -> Result<C, JitError>,
    ) -> Result<Instantiated, JitError> {
        match self.begin(name, caller, plan)? {
            Begun::Ready(address) => Ok(Instantiated { address, compiled: false }),
            Begun::Claimed(claim, planned) => match compile(planned) {
                Ok(code) => {
                    claim.install(code.as_ref()).map(|address| Instantiated { address, compiled: true })
                }
                Err(error) => Err(claim.fail(error)),
            },
        }
    }

    /// The first half of [`Instantiator::instantiate`], for callers that cannot lend the
    /// caller's stack across the compile: the checks, then either the address or a claim on
    /// the name. The compile happens between this and [`Claim::install`] (or [`Claim::fail`]).
    pub fn begin<'i, 'n, P>(
        &'i self,
        name: &'n str,
        caller: Caller<'_>,
        plan: impl FnOnce() -> Result<Option<P>, JitError>,
    ) -> Result<Begun<'i, 'a, 'n, P>, JitError> {
        if !self.config.enabled {
            return Err(JitError::NotFound);
        }
        if caller.stack.len() >= self.config.max_depth as usize {
            return Err(JitError::DepthExceeded { limit: self.config.max_depth });
        }
        let mut plan = Some(plan);
        let mut planned = None;
        loop {
            if let Existing::Ready(address) = self.existing(name, caller)? {
                self.cache_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Begun::Ready(address));
            }
            if let Some(plan) = plan.take() {
                planned = Some(plan()?.ok_or(JitError::NotFound)?);
            }
            if let Some(attempt) = self.claim(name, caller)? {
                let claim = Claim { instantiator: self, name, attempt, done: false };
                return match planned {
                    Some(planned) => Ok(Begun::Claimed(claim, planned)),
                    // Unreachable: the first look that finds the name absent plans it.
                    None => Err(claim.fail(JitError::NotFound)),
                };
            }
            // Another thread claimed it between our look and our claim: look again.
        }
    }

    /// What the table says of `name` for `caller`, waiting while another thread compiles it.
    fn existing(&self, name: &str, caller: Caller<'_>) -> Result<Existing, JitError> {
        let mut table = self.table.lock();
        let mut waited_for = None;
        loop {
            match table.entries.get(name) {
                Some(Entry::Ready { address }) => return Ok(Existing::Ready(*address)),
                _ if caller.stack.iter().any(|n| **n == *name) => {
                    return Err(JitError::Circular { cycle: own_cycle(caller.stack, name) })
                }
                None => return Ok(Existing::Absent),
                Some(Entry::Failed { attempt, error }) => {
                    return match waited_for {
                        Some(waited) if waited == *attempt => Err(error.clone()),
                        _ => Ok(Existing::Absent),
                    };
                }
                Some(Entry::InFlight { owner, attempt }) => {
                    if *owner == caller.thread {
                        return Err(JitError::Circular { cycle: own_cycle(caller.stack, name) });
                    }
                    if let Some(cycle) = cross_thread_cycle(&table, name, caller) {
                        return Err(JitError::Circular { cycle });
                    }
                    if waited_for.is_none() {
                        self.waits.fetch_add(1, Ordering::Relaxed);
                    }
                    waited_for = Some(*attempt);
                    let seen = self.generation.load(Ordering::Acquire);
                    table.waiting.push((caller.thread, name.into()));
                    drop(table);
                    wait_for_change(&self.generation, seen);
                    table = self.table.lock();
                    if let Some(at) =
                        table.waiting.iter().position(|(t, n)| *t == caller.thread && **n == *name)
                    {
                        table.waiting.swap_remove(at);
                    }
                }
            }
        }
    }

    /// Marks `name` in flight for `caller`; its attempt number, or `None` if another thread
    /// got there first.
    fn claim(&self, name: &str, caller: Caller<'_>) -> Result<Option<u32>, JitError> {
        let mut table = self.table.lock();
        let attempt = match table.entries.get(name) {
            None => 1,
            Some(Entry::Failed { attempt, .. }) => attempt.wrapping_add(1),
            Some(Entry::Ready { .. } | Entry::InFlight { .. }) => return Ok(None),
        };
        let limit = self.max_instantiations();
        if table.claimed >= limit {
            return Err(JitError::LimitReached { limit });
        }
        table.entries.insert(name.into(), Entry::InFlight { owner: caller.thread, attempt });
        table.claimed += 1;
        Ok(Some(attempt))
    }
}

/// A claimed name: installing its code or failing it publishes the outcome to every thread
/// waiting for it; dropping it unfinished (the compiler panicked) publishes a failure, so that
/// no waiter waits forever.
#[derive(Debug)]
pub struct Claim<'i, 'a, 'n> {
    instantiator: &'i Instantiator<'a>,
    name: &'n str,
    attempt: u32,
    done: bool,
}

impl Claim<'_, '_, '_> {
    /// Installs `code` as the name's (sealed executable memory); its address.
    pub fn install(mut self, code: &[u8]) -> Result<usize, JitError> {
        let jit = self.instantiator;
        let installed = if code.is_empty() {
            Err(JitError::Compile { message: "the compiler returned no code".into() })
        } else {
            jit.installer.install(code).map_err(JitError::Install)
        };
        if installed.is_ok() {
            jit.code_bytes.fetch_add(code.len() as u64, Ordering::Relaxed);
        }
        self.finish(installed)
    }

    /// Gives the name up with `error` (what waiters get too); returns it.
    pub fn fail(mut self, error: JitError) -> JitError {
        match self.finish(Err(error)) {
            Err(error) => error,
            Ok(_) => JitError::NotFound,
        }
    }

    fn finish(&mut self, outcome: Result<usize, JitError>) -> Result<usize, JitError> {
        self.done = true;
        let jit = self.instantiator;
        let mut table = jit.table.lock();
        let entry = match &outcome {
            Ok(address) => {
                jit.instantiations.fetch_add(1, Ordering::Relaxed);
                Entry::Ready { address: *address }
            }
            Err(error) => {
                table.claimed -= 1;
                jit.compile_failures.fetch_add(1, Ordering::Relaxed);
                Entry::Failed { attempt: self.attempt, error: error.clone() }
            }
        };
        if let Some(slot) = table.entries.get_mut(self.name) {
            *slot = entry;
        }
        let waiters = !table.waiting.is_empty();
        jit.generation.fetch_add(1, Ordering::Release);
        drop(table);
        if waiters {
            wake_all(&jit.generation);
        }
        outcome
    }
}

impl Drop for Claim<'_, '_, '_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.finish(Err(JitError::Compile { message: "the compiler panicked".into() }));
        }
    }
}

/// The cycle a request for `name` closes on its own thread: from `name` in the stack to the
/// innermost name, then `name` again.
fn own_cycle(stack: &[Box<str>], name: &str) -> Vec<Box<str>> {
    let from = stack.iter().position(|n| **n == *name).unwrap_or(stack.len());
    stack[from..].iter().cloned().chain(core::iter::once(name.into())).collect()
}

/// The cycle that waiting for `name` would close across threads, if any: `name`'s owner waits
/// for a name whose owner waits ... for a name `caller`'s thread is compiling.
fn cross_thread_cycle(table: &Table, name: &str, caller: Caller<'_>) -> Option<Vec<Box<str>>> {
    let mut path: Vec<Box<str>> = Vec::new();
    path.push(name.into());
    let mut wanted: &str = name;
    for _ in 0..=table.waiting.len() {
        let Some(Entry::InFlight { owner, .. }) = table.entries.get(wanted) else { return None };
        if *owner == caller.thread {
            // `wanted` is ours: the cycle runs from it through our stack to `name` and back.
            let from = caller.stack.iter().position(|n| **n == *wanted);
            let ours = from.map(|from| &caller.stack[from..]).unwrap_or_default();
            let mut cycle: Vec<Box<str>> = ours.to_vec();
            if ours.is_empty() {
                cycle.push(wanted.into());
            }
            cycle.extend(path);
            return Some(cycle);
        }
        let (_, next) = table.waiting.iter().find(|(thread, _)| thread == owner)?;
        path.push(next.clone());
        wanted = next;
    }
    None
}

/// Sleeps until `generation` no longer holds `seen` (or spuriously).
fn wait_for_change(generation: &AtomicU32, seen: u32) {
    #[cfg(not(miri))]
    crate::sys::futex_wait(generation, seen);
    #[cfg(miri)]
    while generation.load(Ordering::Acquire) == seen {
        core::hint::spin_loop();
    }
}

fn wake_all(generation: &AtomicU32) {
    #[cfg(not(miri))]
    crate::sys::futex_wake(generation, i32::MAX as u32);
    #[cfg(miri)]
    let _ = generation;
}
