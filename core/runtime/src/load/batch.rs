//! Loading several modules together: each is validated, placed, linked and relocated as it is
//! added, into one open batch of the allocator, and all are sealed at once, with one protection
//! change for their code where loading them one by one makes one each (and the other threads'
//! TLB flush that goes with it). Then each is finished in the order added: its unwind tables
//! registered, its constructors run.

use alloc::vec::Vec;

use super::{fallible, LoadError, LoadOptions, LoadedModule, Resolver, Staged};
use crate::exec::{CodeBatch, ExecAllocator};

/// Modules being loaded together; [`LoadBatch::seal`] hands them out.
///
/// ```
/// use smf_runtime::exec::ExecAllocator;
/// use smf_runtime::load::{LoadBatch, LoadOptions};
/// use smf_format::write::samples;
/// use smf_format::Dialect;
///
/// let exec = ExecAllocator::default();
/// let mut batch = LoadBatch::new(&exec);
/// for _ in 0..3 {
///     batch.add(&samples::return_42(Dialect::S128), &(), &LoadOptions::default())?;
/// }
/// // A module that does not load leaves the others staged.
/// assert!(batch.add(b"not a module", &(), &LoadOptions::default()).is_err());
/// let modules = batch.seal()?;
/// assert_eq!(modules.len(), 3);
/// assert!(modules.iter().all(|m| m.symbol(b"main").is_some()));
/// # Ok::<(), smf_runtime::load::LoadError>(())
/// ```
pub struct LoadBatch<'a> {
    batch: CodeBatch<'a>,
    staged: Vec<Staged<'a>>,
}

impl core::fmt::Debug for LoadBatch<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LoadBatch").field("staged", &self.staged.len()).finish_non_exhaustive()
    }
}

impl<'a> LoadBatch<'a> {
    /// An empty batch of `allocator`.
    pub fn new(allocator: &'a ExecAllocator) -> Self {
        Self { batch: allocator.batch_of_many(), staged: Vec::new() }
    }

    /// Stages `file` as [`LoadedModule::load`] would load it, up to the seal: nothing of it runs
    /// and no address of it is handed out until [`LoadBatch::seal`]. A module that does not load
    /// gives its error and frees what it had taken; the modules staged before it stay.
    pub fn add(
        &mut self,
        file: &[u8],
        resolver: &dyn Resolver,
        options: &LoadOptions,
    ) -> Result<(), LoadError> {
        if self.staged.try_reserve(1).is_err() {
            return Err(LoadError::OutOfMemory {
                bytes: fallible::grown_bytes::<Staged<'_>>(self.staged.len()),
            });
        }
        let staged = Staged::new(&mut self.batch, file, None, resolver, options)?;
        self.staged.push(staged);
        Ok(())
    }

    /// How many modules are staged.
    pub fn len(&self) -> usize {
        self.staged.len()
    }

    /// Whether no module is staged.
    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    /// Seals every staged module at once, then finishes each in the order added (unwind tables
    /// registered, constructors run) and hands them out in that order. If the seal fails, no
    /// module is handed out and everything staged is freed; if an exception escapes a module's
    /// constructor (with [`super::LoadOptions::catch`]), the first such failure is returned and
    /// every module is released ([`LoadBatch::seal_each`] keeps the others).
    pub fn seal(self) -> Result<Vec<LoadedModule<'a>>, LoadError> {
        self.seal_each()?.into_iter().collect()
    }

    /// [`LoadBatch::seal`], each module's outcome on its own: a module whose constructor an
    /// exception escaped fails alone (released), the others are handed out, in the order added.
    /// `Err` only if the seal fails (nothing is handed out then).
    pub fn seal_each(self) -> Result<Vec<Result<LoadedModule<'a>, LoadError>>, LoadError> {
        let LoadBatch { batch, staged } = self;
        let mut modules = fallible::with_capacity(staged.len()).ok_or(LoadError::OutOfMemory {
            bytes: fallible::bytes_of::<Result<LoadedModule<'_>, LoadError>>(staged.len()),
        })?;
        batch.seal()?;
        modules.extend(staged.into_iter().map(Staged::finish));
        Ok(modules)
    }
}
