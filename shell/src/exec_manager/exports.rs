//! The process-wide namespace compiled functions are exported into: added to every load's
//! lookup order (`crate::imports::add_symbol_source`) when the first manager is made, it is
//! asked right after the host symbols, so a module loaded
//! after a function was compiled can call it by name. Per name, the latest definition is found
//! first; cleaning a manager up withdraws its definitions, and an earlier one (of another
//! manager) is found again. Entries hold their module weakly (its manager holds it); a
//! resolution hands out a strong reference, so whoever linked to a compiled function keeps its
//! code alive after the manager is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use cranelift_codegen::ir::Signature;
use smf_runtime::load::{Resolved, Resolver};

use crate::loader::SharedModule;
use crate::sync::lock;

/// One definition of a name.
struct Definition {
    /// The manager that compiled it.
    owner: u64,
    module: Weak<SharedModule>,
    addr: usize,
    /// Its signature (what calls compiled later are checked against).
    signature: Arc<Signature>,
}

/// Definitions by name, the latest last.
static EXPORTS: Mutex<Option<HashMap<Vec<u8>, Vec<Definition>>>> = Mutex::new(None);

/// [`EXPORTS`], locked (and taken around every fork from its first use).
fn exports() -> std::sync::MutexGuard<'static, Option<HashMap<Vec<u8>, Vec<Definition>>>> {
    crate::fork::hold_at_fork(crate::fork::Lock::Compiled, &EXPORTS);
    lock(&EXPORTS)
}

/// Definitions ready to export ([`definitions`]), made before any lock is taken.
pub(super) struct Prepared(Vec<(Vec<u8>, Definition)>);

/// Each `(name, addr, signature)` of `module`, compiled by manager `owner`, ready to
/// [`export`].
pub(super) fn definitions(
    owner: u64,
    names: &[(&[u8], usize, Arc<Signature>)],
    module: &Arc<SharedModule>,
) -> Prepared {
    Prepared(
        names
            .iter()
            .map(|(name, addr, signature)| {
                let module = Arc::downgrade(module);
                (name.to_vec(), Definition { owner, module, addr: *addr, signature: signature.clone() })
            })
            .collect(),
    )
}

/// The signature of the definition of `name` a load would link to now (the latest live one).
pub(super) fn signature_of(name: &[u8]) -> Option<Arc<Signature>> {
    let exports = exports();
    let definitions = exports.as_ref()?.get(name)?;
    definitions.iter().rev().find(|d| d.module.strong_count() > 0).map(|d| d.signature.clone())
}

/// Exports `prepared`: each found before every earlier definition of its name. (The manager
/// calls it holding its own table's lock, so that its table and the namespace agree on which
/// batch defined a name last; the lock order is the manager's, then this one.)
pub(super) fn export(prepared: Prepared) {
    let mut exports = exports();
    let map = exports.get_or_insert_with(HashMap::new);
    map.reserve(prepared.0.len());
    for (key, definition) in prepared.0 {
        map.entry(key).or_default().push(definition);
    }
}

/// Withdraws every definition manager `owner` exported.
pub(super) fn withdraw(owner: u64) {
    let mut exports = exports();
    if let Some(map) = exports.as_mut() {
        map.retain(|_, definitions| {
            definitions.retain(|d| d.owner != owner);
            !definitions.is_empty()
        });
    }
}

/// Adds the namespace to every later load's lookup order, once per process.
pub(super) fn join_lookup_order() {
    static JOINED: std::sync::Once = std::sync::Once::new();
    JOINED.call_once(|| {
        // The one source the library adds: its slot is free.
        let _ = crate::imports::add_symbol_source(&CompiledFunctions);
    });
}

/// The namespace as a resolver (the latest live definition of a name).
#[derive(Clone, Copy, Debug, Default)]
pub struct CompiledFunctions;

impl Resolver for CompiledFunctions {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        let exports = exports();
        let definitions = exports.as_ref()?.get(name)?;
        let (module, addr) = definitions.iter().rev().find_map(|d| Some((d.module.upgrade()?, d.addr)))?;
        drop(exports);
        let keepalive: Arc<dyn std::any::Any + Send + Sync> = module;
        Some(Resolved { addr, keepalive: Some(keepalive) })
    }

    fn describe(&self, out: &mut dyn std::fmt::Write) -> std::fmt::Result {
        out.write_str("compiled functions")
    }
}
