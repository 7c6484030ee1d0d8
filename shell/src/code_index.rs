//! Which live module's code holds an address: the exception catcher asks it for the C++
//! runtime that threw, `smf_addr_info` and the `rt_*` calls into module code for the module
//! itself (kept alive while its code runs). A module enters when the loader shares it and
//! leaves when it drops, before its memory is freed. The index knows modules only as
//! [`IndexedCode`], so that it sits below the loader and the catcher alike.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

use crate::sync::lock;

/// What the index's users ask of a module whose code holds an address.
pub(crate) trait IndexedCode: Send + Sync {
    /// The address of the exported symbol `name`.
    fn symbol(&self, name: &[u8]) -> Option<usize>;
    /// The module itself, for the loader to take its own type back.
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// Where a module's code ends, and the module.
type Span = (usize, Weak<dyn IndexedCode>);

/// Live modules by where their code starts.
static CODE: Mutex<BTreeMap<usize, Span>> = Mutex::new(BTreeMap::new());

/// [`CODE`], locked (and taken around every fork from its first use).
fn code() -> std::sync::MutexGuard<'static, BTreeMap<usize, Span>> {
    crate::fork::hold_at_fork(crate::fork::Lock::Code, &CODE);
    lock(&CODE)
}

/// A module's place in the index, by where its code starts (`None`: a module without code,
/// never indexed); dropping it takes the module out.
#[derive(Debug)]
pub(crate) struct Entry(Option<usize>);

impl Entry {
    /// The place of code starting at `start` (none for a module without code), empty until
    /// [`Entry::index`].
    pub(crate) fn new(start: Option<usize>) -> Self {
        Self(start)
    }

    /// Indexes `module`, whose code runs from this entry's start to `end`.
    pub(crate) fn index(&self, end: usize, module: Weak<dyn IndexedCode>) {
        if let Some(start) = self.0 {
            code().insert(start, (end, module));
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(start) = self.0 {
            code().remove(&start);
        }
    }
}

/// The live module whose code (not its stubs, data or read-only data) holds `addr`.
pub(crate) fn containing(addr: usize) -> Option<Arc<dyn IndexedCode>> {
    let code = code();
    let (_, (end, module)) = code.range(..=addr).next_back()?;
    if addr >= *end {
        return None;
    }
    module.upgrade()
}
