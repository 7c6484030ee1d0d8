//! The packer's last check: the module it wrote loads here (placed, linked, relocated, its
//! unwind tables and call arrays checked, then released; no code of it runs), every import
//! resolved to code placed by the same allocator, as a module's imports from other modules are.
//! A module that parses but that no loader would load (an object's unwind record describing
//! code outside the module, say) is caught here instead of at its first load.

use smf_runtime::exec::ExecAllocator;
use smf_runtime::load::{LoadError, LoadOptions, LoadedModule, Resolved, Resolver};

/// Resolves every import to one address: a block of the trial loads' allocator.
struct AnyImport(usize);

impl Resolver for AnyImport {
    fn resolve(&self, _name: &[u8]) -> Option<Resolved> {
        Some(Resolved { addr: self.0, keepalive: None })
    }
}

/// The allocator trial loads use, and the address of a block of it that every import resolves
/// to (both kept for the process's life); `None` where executable memory cannot be had here.
fn allocator() -> Option<&'static (ExecAllocator, usize)> {
    static EXEC: std::sync::OnceLock<Option<(ExecAllocator, usize)>> = std::sync::OnceLock::new();
    EXEC.get_or_init(|| {
        let exec = ExecAllocator::default();
        let mut batch = exec.batch();
        let addr = batch.alloc(64, 16).ok().map(|block| {
            let addr = block.addr();
            // Kept: imports point into it for every trial load to come.
            std::mem::forget(block);
            addr
        });
        let addr = batch.seal().ok().and(addr)?;
        Some((exec, addr))
    })
    .as_ref()
}

/// Loads `module` (constructors not run) and releases it. A failure of the memory itself
/// (a system refusing executable mappings) is not the module's: the check is then skipped.
pub fn trial_load(module: &[u8]) -> Result<(), LoadError> {
    let Some((exec, imports)) = allocator() else { return Ok(()) };
    // Any architecture: pack runs anywhere, and no code of the module runs here.
    let options = LoadOptions { run_constructors: false, require_arch: None, ..LoadOptions::default() };
    match LoadedModule::load(exec, module, &AnyImport(*imports), &options) {
        Ok(_) | Err(LoadError::Memory(_) | LoadError::OutOfMemory { .. }) => Ok(()),
        Err(error) => Err(error),
    }
}
