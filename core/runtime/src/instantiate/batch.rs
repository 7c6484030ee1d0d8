//! Batches: many names compiled on one thread, installed together with one write.
//!
//! A [`Staging`] is one thread's batch. Each claimed name's code is staged instead of
//! installed: copied (with no lock held) into the thread's staging buffer, at the next
//! [`GRANULE`] boundary, so that the buffer is the image to install. The names stay in flight,
//! so other threads asking for them wait as they would for a compile. Flushing installs the
//! buffer with one call to the installer (one `pwrite` into the arena, or one sealed batch),
//! then publishes every name at once.
//!
//! A batch is flushed when it finishes or is dropped, and earlier whenever waiting for it
//! could stall a request: when a compile of the batch asks for a name the batch staged (it
//! needs that address now), and before its thread waits for another thread's compile (which
//! may be waiting for a name the batch staged).
//!
//! A caller that gives one thread number from two OS threads (which [`super::Caller`]
//! forbids) gets no piece lost or published at another's code: a buffer being copied into is
//! marked taken (a second stage then installs its code alone, a flush leaves it to the flush
//! after the copy), and a flush publishes only the pieces it took (its token in
//! [`Staged::Installing`]).

use alloc::vec::Vec;

use super::request::{acceptable, Outcome};
use super::{Claim, InFlight, InstantiateError, Instantiator, Piece, Staged, StagingBuffer};
use crate::exec::GRANULE;

/// One thread's batch of instantiations (see the module doc).
#[derive(Debug)]
pub struct Staging<'i, 'a> {
    instantiator: &'i Instantiator<'a>,
    thread: u64,
    done: bool,
}

impl<'a> Instantiator<'a> {
    /// A batch for `thread` (the [`super::Caller::thread`] of its requests): claims staged in
    /// it are installed together when it is finished or dropped.
    pub fn staging(&self, thread: u64) -> Staging<'_, 'a> {
        Staging { instantiator: self, thread, done: false }
    }

    /// How the request for `name` ended, once nothing of it is in flight: its address, or the
    /// failure of its last compile; `None` if neither is known.
    pub fn outcome(&self, name: &str) -> Option<Result<usize, InstantiateError>> {
        if let Some(address) = self.lookup(name) {
            return Some(Ok(address));
        }
        let table = self.table.lock();
        let failed = table.failed.get(name).map(|(_, error)| Err(error.clone()));
        failed
    }

    /// Installs every piece `thread` staged, with one call to the installer, and publishes
    /// them (or fails them all with the installer's error, which is returned).
    pub(super) fn flush(&self, thread: u64) -> Result<(), InstantiateError> {
        let mut table = self.table.lock();
        // A buffer being copied into is installed by the flush after its stage (see
        // `StagingBuffer::taken`).
        let Some(at) = table.staging.iter().position(|b| b.thread == thread && !b.taken) else {
            return Ok(());
        };
        let image = table.staging.swap_remove(at).bytes;
        let token = table.next_serial;
        table.next_serial += 1;
        let mut pieces = 0usize;
        for flight in table.in_flight.iter_mut().filter(|f| f.owner == thread) {
            if let Staged::Pending(piece) = flight.staged {
                flight.staged = Staged::Installing(piece, token);
                pieces += 1;
            }
        }
        drop(table);
        if pieces == 0 {
            return Ok(()); // what was staged failed before it was kept
        }
        let installed = self.installer.install(&image).map_err(InstantiateError::Install);
        drop(image);
        let mut table = self.table.lock();
        let super::Table { in_flight, failed, writer, waiting, .. } = &mut *table;
        let ours = |f: &mut InFlight| matches!(f.staged, Staged::Installing(_, t) if t == token);
        for flight in in_flight.extract_if(ours) {
            let Staged::Installing(piece, _) = flight.staged else { continue };
            let outcome = match &installed {
                Ok(base) => Outcome::Installed { address: base + piece.at, bytes: piece.len },
                Err(error) => Outcome::Failed(error.clone()),
            };
            // A name that could not be published fails (recorded where memory allows).
            let _ = self.conclude(failed, writer, flight, outcome);
        }
        let waiters = !waiting.is_empty();
        drop(table);
        self.announce(waiters);
        installed.map(|_| ())
    }

    /// `thread`'s staging buffer, taken out of the table to be written with the lock released
    /// (given back with [`Instantiator::give_back`]); its entry is made if it has none.
    fn take_buffer(table: &mut super::Table, thread: u64) -> Take {
        if let Some(entry) = table.staging.iter_mut().find(|b| b.thread == thread) {
            if entry.taken {
                return Take::Busy;
            }
            entry.taken = true;
            return Take::Taken(core::mem::take(&mut entry.bytes));
        }
        if table.staging.try_reserve(1).is_err() {
            return Take::NoRoom;
        }
        table.staging.push(StagingBuffer { thread, bytes: Vec::new(), taken: true });
        Take::Taken(Vec::new())
    }

    /// Puts `thread`'s staging buffer back in its entry; the buffer back if the entry is gone
    /// (never, while taken: no flush removes it).
    fn give_back(table: &mut super::Table, thread: u64, buffer: Vec<u8>) -> Result<(), Vec<u8>> {
        match table.staging.iter_mut().find(|b| b.thread == thread && b.taken) {
            Some(entry) => {
                entry.bytes = buffer;
                entry.taken = false;
                Ok(())
            }
            None => Err(buffer),
        }
    }
}

/// What taking a thread's staging buffer gave.
enum Take {
    Taken(Vec<u8>),
    /// Another stage is copying into it (one thread number given by two OS threads).
    Busy,
    /// No memory for the thread's entry.
    NoRoom,
}

/// Appends `code` to a staging buffer at the next [`GRANULE`] boundary: where it lies, or the
/// bytes the grown buffer would need (the buffer then unchanged).
fn append(buffer: &mut Vec<u8>, code: &[u8]) -> Result<Piece, InstantiateError> {
    let too_large = InstantiateError::OutOfMemory { bytes: usize::MAX };
    let at = buffer.len().checked_next_multiple_of(GRANULE).ok_or(too_large.clone())?;
    let end = at.checked_add(code.len()).ok_or(too_large)?;
    buffer.try_reserve(end - buffer.len()).map_err(|_| InstantiateError::OutOfMemory { bytes: end })?;
    buffer.resize(at, 0);
    buffer.extend_from_slice(code);
    Ok(Piece { at, len: code.len() })
}

impl Staging<'_, '_> {
    /// Stages `code` as `claim`'s: copied now, installed with the rest of the batch. A claim
    /// made on another thread than the batch's is installed at once instead. The name's
    /// address is known once the batch is flushed ([`Instantiator::outcome`]).
    pub fn stage(&self, mut claim: Claim<'_, '_, '_>, code: &[u8]) -> Result<(), InstantiateError> {
        let instantiator = self.instantiator;
        acceptable(code).map_err(|error| claim.fail_with(error))?;
        let (hash, serial, thread) = (claim.hash, claim.serial, self.thread);
        if !core::ptr::addr_eq(claim.instantiator, instantiator) {
            // Another instantiator's claim: installed there, at once.
            return claim.install(code).map(|_| ());
        }
        let ours = |f: &InFlight| f.serial == serial && f.owner == thread;
        let mut table = instantiator.table.lock();
        if table.in_flight.find(hash, ours).is_none() {
            drop(table);
            return claim.install(code).map(|_| ());
        }
        let taken = Instantiator::take_buffer(&mut table, thread);
        drop(table);
        // The buffer is this stage's alone until it is given back below (its entry marked
        // taken), and nothing between runs anything of the caller's: the copy needs no lock.
        let mut buffer = match taken {
            Take::Taken(buffer) => buffer,
            Take::Busy => return claim.install(code).map(|_| ()),
            Take::NoRoom => {
                let bytes = core::mem::size_of::<StagingBuffer>();
                return Err(claim.fail_with(InstantiateError::OutOfMemory { bytes }));
            }
        };
        let appended = append(&mut buffer, code);
        let mut table = instantiator.table.lock();
        if let Err(buffer) = Instantiator::give_back(&mut table, thread, buffer) {
            // Unreachable (a taken entry stays): installed alone, the buffer freed unlocked.
            drop(table);
            drop(buffer);
            return claim.install(code).map(|_| ());
        }
        let piece = match appended {
            Ok(piece) => piece,
            Err(error) => {
                drop(table);
                return Err(claim.fail_with(error));
            }
        };
        let Some(flight) = table.in_flight.find_mut(hash, |f| ours(f)) else {
            // Unreachable: only the claim or this thread's flush ends the name, and neither
            // ran. Installed alone (its copy in the buffer goes unused).
            drop(table);
            return claim.install(code).map(|_| ());
        };
        flight.staged = Staged::Pending(piece);
        claim.done = true;
        Ok(())
    }

    /// Installs what the batch staged; the installer's error, if it failed (every staged name
    /// then fails with it).
    pub fn finish(mut self) -> Result<(), InstantiateError> {
        self.done = true;
        self.instantiator.flush(self.thread)
    }
}

impl Drop for Staging<'_, '_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.instantiator.flush(self.thread);
        }
    }
}
