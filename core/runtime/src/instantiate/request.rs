//! One request, in the order of checks the module doc gives: what the table says of the name
//! (there, being compiled here or elsewhere, failed), claiming it, compiling with no lock held,
//! and publishing the outcome to any thread that waited for it.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use super::published::Writer;
use super::{
    Caller, CompileFailure, Failed, InFlight, InstantiateError, Instantiated, Instantiator, Staged, Table,
};

/// The most code one instantiation may install (64 MiB): more is a compiler's bug.
pub const MAX_CODE: usize = 64 << 20;

/// What a look at the table found for a name.
enum Found {
    /// Installed at this address.
    Ready(usize),
    /// Claimed for the caller: the claim's serial.
    Claimed(u64),
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
        plan: impl FnOnce() -> Result<Option<P>, InstantiateError>,
        compile: impl FnOnce(P) -> Result<C, InstantiateError>,
    ) -> Result<Instantiated, InstantiateError> {
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
        plan: impl FnOnce() -> Result<Option<P>, InstantiateError>,
    ) -> Result<Begun<'i, 'a, 'n, P>, InstantiateError> {
        let hash = self.published.hash(name.as_bytes());
        if let Some(address) = self.cached_hashed(name.as_bytes(), hash, caller)? {
            return Ok(Begun::Ready(address));
        }
        if caller.stack.iter().any(|n| **n == *name) {
            return Err(InstantiateError::Circular { cycle: own_cycle(caller.stack, name) });
        }
        let serial = match self.claim(name, hash, caller)? {
            Found::Ready(address) => {
                self.count_hit(caller.thread);
                return Ok(Begun::Ready(address));
            }
            Found::Claimed(serial) => serial,
        };
        let claim = Claim { instantiator: self, name, hash, serial, done: false };
        // Whether the name is offered is asked once the name is ours, with no lock held; if it
        // is not (or the plan fails), the claim is given back and waiters look again.
        match plan() {
            Ok(Some(planned)) => Ok(Begun::Claimed(claim, planned)),
            Ok(None) => Err(claim.release(InstantiateError::NotFound)),
            Err(error) => Err(claim.release(error)),
        }
    }

    /// The first checks of a request, without a lock: disabled ([`InstantiateError::NotFound`]), the
    /// depth limit ([`InstantiateError::DepthExceeded`]), then the address if `name` is installed
    /// (counted as a cache hit). `Ok(None)`: the request must go on ([`Instantiator::begin`]).
    /// `name` is bytes: a name that is not UTF-8 is never installed, so callers holding bytes
    /// need not validate them to ask.
    pub fn cached(&self, name: &[u8], caller: Caller<'_>) -> Result<Option<usize>, InstantiateError> {
        self.cached_hashed(name, self.published.hash(name), caller)
    }

    /// [`Instantiator::cached`] of a name whose hash is computed already.
    fn cached_hashed(
        &self,
        name: &[u8],
        hash: u64,
        caller: Caller<'_>,
    ) -> Result<Option<usize>, InstantiateError> {
        if !self.config.enabled {
            return Err(InstantiateError::NotFound);
        }
        if caller.stack.len() >= self.config.max_depth as usize {
            return Err(InstantiateError::DepthExceeded { limit: self.config.max_depth });
        }
        let found = self.published.get_hashed(name, hash);
        if found.is_some() {
            self.count_hit(caller.thread);
        }
        Ok(found)
    }

    /// Claims `name` for `caller`, or finds it installed, waiting while another thread compiles
    /// it (and getting that compile's failure, if it fails). A name the caller's own batch
    /// compiled and has not installed yet is installed now, with the rest of the batch; so is
    /// the batch before the caller waits for another thread (which may be waiting for it).
    fn claim(&self, name: &str, hash: u64, caller: Caller<'_>) -> Result<Found, InstantiateError> {
        let mut table = self.table.lock();
        let mut waited_for = None;
        loop {
            if let Some(address) = self.published.get_hashed(name.as_bytes(), hash) {
                return Ok(Found::Ready(address));
            }
            if let Some(compiling) = table.in_flight.find(hash, |f| *f.name == *name) {
                let staged = !matches!(compiling.staged, Staged::No);
                if compiling.owner == caller.thread && staged {
                    // Ours, compiled and waiting for the batch: install the batch, then look
                    // again (a failed install is this request's answer too).
                    waited_for = Some(compiling.attempt);
                    drop(table);
                    let _ = self.flush(caller.thread);
                    table = self.table.lock();
                    continue;
                }
                if compiling.owner == caller.thread {
                    return Err(InstantiateError::Circular { cycle: own_cycle(caller.stack, name) });
                }
                if table.staging.iter().any(|b| b.thread == caller.thread) {
                    drop(table);
                    let _ = self.flush(caller.thread);
                    table = self.table.lock();
                    continue;
                }
                let hash_of = |n: &str| self.published.hash(n.as_bytes());
                if let Some(cycle) = cross_thread_cycle(&table, name, caller, hash_of) {
                    return Err(InstantiateError::Circular { cycle });
                }
                if waited_for.is_none() {
                    self.waits.fetch_add(1, Ordering::Relaxed);
                }
                waited_for = Some(compiling.attempt);
                let seen = self.generation.load(Ordering::Acquire);
                let waiter = (caller.thread, copied(name)?);
                let room = core::mem::size_of_val(&waiter);
                table.waiting.try_reserve(1).map_err(|_| InstantiateError::OutOfMemory { bytes: room })?;
                table.waiting.push(waiter);
                drop(table);
                wait_for_change(&self.generation, seen);
                table = self.table.lock();
                if let Some(at) = table.waiting.iter().position(|(t, n)| *t == caller.thread && **n == *name)
                {
                    table.waiting.swap_remove(at);
                }
                continue;
            }
            let failed = if table.failed.is_empty() { None } else { table.failed.get(name) };
            let attempt = match (failed, waited_for) {
                (Some((attempt, error)), Some(waited)) if *attempt == waited => return Err(error.clone()),
                (Some((attempt, _)), _) => attempt.wrapping_add(1),
                (None, _) => 1,
            };
            let limit = self.max_instantiations();
            if table.writer.len().saturating_add(table.in_flight.len()) >= limit {
                return Err(InstantiateError::LimitReached { limit });
            }
            let room = core::mem::size_of::<InFlight>();
            table
                .in_flight
                .try_reserve(1, |f| f.hash)
                .map_err(|_| InstantiateError::OutOfMemory { bytes: room })?;
            let serial = table.next_serial;
            table.next_serial += 1;
            let flight = InFlight {
                name: copied(name)?,
                hash,
                owner: caller.thread,
                attempt,
                serial,
                staged: Staged::No,
            };
            table.in_flight.insert_unique(hash, flight, |f| f.hash);
            return Ok(Found::Claimed(serial));
        }
    }

    /// Ends the claim `serial` on the name hashed `hash` with `outcome` (the lock held).
    /// Waiters are woken by the caller ([`Instantiator::announce`]). An error if installed code
    /// could not be published (out of memory: the name then failed).
    pub(super) fn settle(
        &self,
        table: &mut Table,
        serial: u64,
        hash: u64,
        outcome: Outcome,
    ) -> Result<(), InstantiateError> {
        let Table { in_flight, failed, writer, .. } = table;
        if let Ok(entry) = in_flight.find_entry(hash, |f| f.serial == serial) {
            let (flight, _) = entry.remove();
            return self.conclude(failed, writer, flight, outcome);
        }
        Ok(())
    }

    /// Publishes the address of a name no longer in flight, or records its failure for the
    /// waiters of that attempt. Out of memory to publish it fails the name (returned); out of
    /// memory to record a failure leaves it unrecorded (its waiters then ask again).
    pub(super) fn conclude(
        &self,
        failed: &mut Failed,
        writer: &mut Writer,
        flight: InFlight,
        outcome: Outcome,
    ) -> Result<(), InstantiateError> {
        let InFlight { name, hash, attempt, .. } = flight;
        let (name, error) = match outcome {
            Outcome::Installed { address, bytes } => {
                writer.count(&self.code_bytes, bytes as u64);
                if !failed.is_empty() {
                    failed.remove(&*name);
                }
                match self.published.insert(writer, name, hash, address) {
                    Ok(()) => {
                        writer.count(&self.instantiations, 1);
                        return Ok(());
                    }
                    Err((bytes, name)) => (name, InstantiateError::OutOfMemory { bytes }),
                }
            }
            Outcome::Failed(error) => (name, error),
            Outcome::Released => return Ok(()),
        };
        writer.count(&self.compile_failures, 1);
        if failed.try_reserve(1).is_ok() {
            failed.insert(name, (attempt, error.clone()));
        }
        match error {
            InstantiateError::OutOfMemory { .. } => Err(error),
            _ => Ok(()),
        }
    }

    /// Tells the threads waiting for a compile that one ended (the lock released).
    pub(super) fn announce(&self, waiters: bool) {
        self.generation.fetch_add(1, Ordering::Release);
        if waiters {
            wake_all(&self.generation);
        }
    }
}

/// How a claim ends.
pub(super) enum Outcome {
    /// Installed at `address`, `bytes` long.
    Installed {
        address: usize,
        bytes: usize,
    },
    Failed(InstantiateError),
    /// Not offered after all: the name is free again, nothing recorded.
    Released,
}

/// A claimed name: installing its code or failing it publishes the outcome to every thread
/// waiting for it; dropping it unfinished (the compiler panicked) publishes a failure, so that
/// no waiter waits forever.
#[derive(Debug)]
pub struct Claim<'i, 'a, 'n> {
    pub(super) instantiator: &'i Instantiator<'a>,
    pub(super) name: &'n str,
    pub(super) hash: u64,
    pub(super) serial: u64,
    pub(super) done: bool,
}

impl<'n> Claim<'_, '_, 'n> {
    /// The name claimed.
    pub fn name(&self) -> &'n str {
        self.name
    }

    /// Installs `code` as the name's (sealed executable memory); its address.
    pub fn install(mut self, code: &[u8]) -> Result<usize, InstantiateError> {
        let instantiator = self.instantiator;
        let installed = acceptable(code)
            .and_then(|()| instantiator.installer.install(code).map_err(InstantiateError::Install));
        match installed {
            Ok(address) => {
                self.finish(Outcome::Installed { address, bytes: code.len() })?;
                Ok(address)
            }
            Err(error) => Err(self.fail_with(error)),
        }
    }

    /// Gives the name up with `error` (what waiters get too); returns it.
    pub fn fail(mut self, error: InstantiateError) -> InstantiateError {
        self.fail_with(error)
    }

    pub(super) fn fail_with(&mut self, error: InstantiateError) -> InstantiateError {
        // A failure needs nothing published: it cannot fail again.
        let _ = self.finish(Outcome::Failed(error.clone()));
        error
    }

    /// Gives the name back untouched (it was not offered); returns `error`.
    fn release(mut self, error: InstantiateError) -> InstantiateError {
        let _ = self.finish(Outcome::Released);
        error
    }

    fn finish(&mut self, outcome: Outcome) -> Result<(), InstantiateError> {
        self.done = true;
        let instantiator = self.instantiator;
        let mut table = instantiator.table.lock();
        let settled = instantiator.settle(&mut table, self.serial, self.hash, outcome);
        let waiters = !table.waiting.is_empty();
        drop(table);
        instantiator.announce(waiters);
        settled
    }
}

/// Whether `code` is something to install: not empty, at most [`MAX_CODE`] bytes.
pub(super) fn acceptable(code: &[u8]) -> Result<(), InstantiateError> {
    if code.is_empty() {
        return Err(InstantiateError::Compile(CompileFailure::NoCode));
    }
    if code.len() > MAX_CODE {
        return Err(InstantiateError::Compile(CompileFailure::TooMuchCode { bytes: code.len() }));
    }
    Ok(())
}

impl Drop for Claim<'_, '_, '_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.finish(Outcome::Failed(InstantiateError::Compile(CompileFailure::Panicked)));
        }
    }
}

/// A copy of `name` to keep, or the error that there is no memory for one (a caller's name
/// may be of any length).
fn copied(name: &str) -> Result<Box<str>, InstantiateError> {
    let mut copy = alloc::string::String::new();
    copy.try_reserve_exact(name.len()).map_err(|_| InstantiateError::OutOfMemory { bytes: name.len() })?;
    copy.push_str(name);
    Ok(copy.into_boxed_str())
}

/// The cycle a request for `name` closes on its own thread: from `name` in the stack to the
/// innermost name, then `name` again.
fn own_cycle(stack: &[Box<str>], name: &str) -> Vec<Box<str>> {
    let from = stack.iter().position(|n| **n == *name).unwrap_or(stack.len());
    stack[from..].iter().cloned().chain(core::iter::once(name.into())).collect()
}

/// The cycle that waiting for `name` would close across threads, if any: `name`'s owner waits
/// for a name whose owner waits ... for a name `caller`'s thread is compiling.
/// `hash_of` hashes a name as the table does.
fn cross_thread_cycle(
    table: &Table,
    name: &str,
    caller: Caller<'_>,
    hash_of: impl Fn(&str) -> u64,
) -> Option<Vec<Box<str>>> {
    let mut path: Vec<Box<str>> = Vec::new();
    path.push(name.into());
    let mut wanted: &str = name;
    for _ in 0..=table.waiting.len() {
        let owner = table.in_flight.find(hash_of(wanted), |f| *f.name == *wanted)?.owner;
        if owner == caller.thread {
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
        let (_, next) = table.waiting.iter().find(|(thread, _)| *thread == owner)?;
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
