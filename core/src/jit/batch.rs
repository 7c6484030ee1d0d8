//! Batches: many names compiled on one thread, installed together with one write.
//!
//! A [`Staging`] is one thread's batch. Each claimed name's code is staged (copied out of the
//! compiler's buffer) instead of installed; the names stay in flight, so other threads asking
//! for them wait as they would for a compile. Flushing lays the staged pieces out in one image
//! (each at a [`GRANULE`] boundary) and installs it with one call to the installer (one
//! `pwrite` into the arena, or one sealed batch), then publishes every name at once.
//!
//! A batch is flushed when it finishes or is dropped, and earlier whenever waiting for it
//! could stall a request: when a compile of the batch asks for a name the batch staged (it
//! needs that address now), and before its thread waits for another thread's compile (which
//! may be waiting for a name the batch staged).

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::request::{acceptable, Outcome};
use super::{Claim, InFlight, Instantiator, JitError, Staged};
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
    pub fn outcome(&self, name: &str) -> Option<Result<usize, JitError>> {
        if let Some(address) = self.lookup(name) {
            return Some(Ok(address));
        }
        let table = self.table.lock();
        let failed = table.failed.get(name).map(|(_, error)| Err(error.clone()));
        failed
    }

    /// Installs every piece `thread` staged, with one call to the installer, and publishes
    /// them (or fails them all with the installer's error, which is returned).
    pub(super) fn flush(&self, thread: u64) -> Result<(), JitError> {
        let mine = |f: &InFlight| f.owner == thread && matches!(f.staged, Staged::Pending(_));
        // Only `thread` stages its own pieces, and this is `thread`: the count holds while the
        // lock is released to make room for them.
        let count = self.table.lock().in_flight.iter().filter(|f| mine(f)).count();
        if count == 0 {
            return Ok(());
        }
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        let room = pieces.try_reserve_exact(count);
        {
            let mut table = self.table.lock();
            for flight in table.in_flight.iter_mut().filter(|f| mine(f)) {
                let piece = if room.is_ok() { pieces.len() } else { usize::MAX };
                if let Staged::Pending(code) =
                    core::mem::replace(&mut flight.staged, Staged::Installing(piece))
                {
                    if room.is_ok() {
                        pieces.push(code);
                    }
                }
            }
        }
        let installed = match room {
            Ok(()) => self.install_pieces(&pieces),
            Err(_) => {
                Err(JitError::OutOfMemory { bytes: count.saturating_mul(core::mem::size_of::<Vec<u8>>()) })
            }
        };
        let mut table = self.table.lock();
        let super::Table { in_flight, failed, writer, waiting, .. } = &mut *table;
        let ours = |f: &mut InFlight| f.owner == thread && matches!(f.staged, Staged::Installing(_));
        for flight in in_flight.extract_if(ours) {
            let Staged::Installing(piece) = flight.staged else { continue };
            let outcome = match (&installed, pieces.get(piece)) {
                (Ok((base, starts)), Some(code)) => {
                    self.code_bytes.fetch_add(code.len() as u64, Ordering::Relaxed);
                    Outcome::Installed(base + starts[piece])
                }
                (Err(error), _) => Outcome::Failed(error.clone()),
                (Ok(_), None) => Outcome::Failed(JitError::OutOfMemory { bytes: 0 }),
            };
            // A name that could not be published fails (recorded where memory allows).
            let _ = self.conclude(failed, writer, flight, outcome);
        }
        let waiters = !waiting.is_empty();
        drop(table);
        self.announce(waiters);
        installed.map(|_| ())
    }

    /// Lays `pieces` out one after another at [`GRANULE`] boundaries and installs them with one
    /// call: the image's address and each piece's offset in it.
    fn install_pieces(&self, pieces: &[Vec<u8>]) -> Result<(usize, Vec<usize>), JitError> {
        let rounded = |code: &Vec<u8>| code.len().checked_next_multiple_of(GRANULE);
        let total = pieces
            .iter()
            .try_fold(0usize, |sum, code| sum.checked_add(rounded(code)?))
            .ok_or(JitError::OutOfMemory { bytes: usize::MAX })?;
        let mut image: Vec<u8> = Vec::new();
        let mut starts: Vec<usize> = Vec::new();
        image.try_reserve_exact(total).map_err(|_| JitError::OutOfMemory { bytes: total })?;
        starts.try_reserve_exact(pieces.len()).map_err(|_| JitError::OutOfMemory {
            bytes: pieces.len().saturating_mul(core::mem::size_of::<usize>()),
        })?;
        for code in pieces {
            starts.push(image.len());
            image.extend_from_slice(code);
            image.resize(image.len().next_multiple_of(GRANULE), 0);
        }
        let base = self.installer.install(&image).map_err(JitError::Install)?;
        Ok((base, starts))
    }
}

impl Staging<'_, '_> {
    /// Stages `code` as `claim`'s: copied now, installed with the rest of the batch. A claim
    /// made on another thread than the batch's is installed at once instead. The name's
    /// address is known once the batch is flushed ([`Instantiator::outcome`]).
    pub fn stage(&self, mut claim: Claim<'_, '_, '_>, code: &[u8]) -> Result<(), JitError> {
        let jit = self.instantiator;
        acceptable(code).map_err(|error| claim.fail_with(error))?;
        let mut copy = Vec::new();
        copy.try_reserve_exact(code.len())
            .map_err(|_| claim.fail_with(JitError::OutOfMemory { bytes: code.len() }))?;
        copy.extend_from_slice(code);
        let mut table = jit.table.lock();
        let Some(flight) =
            table.in_flight.find_mut(claim.hash, |f| f.serial == claim.serial && f.owner == self.thread)
        else {
            drop(table);
            return claim.install(&copy).map(|_| ());
        };
        flight.staged = Staged::Pending(copy);
        claim.done = true;
        Ok(())
    }

    /// Installs what the batch staged; the installer's error, if it failed (every staged name
    /// then fails with it).
    pub fn finish(mut self) -> Result<(), JitError> {
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
