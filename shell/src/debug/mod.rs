//! Loaded code that debuggers, profilers and crash reports can see.
//!
//! - `gdb.rs`: modules loaded through the shell are described to GDB (and to tools that read
//!   GDB's JIT interface) by an in-memory ELF object (`elf.rs`): its functions by name and
//!   address, its unwind tables where it has them. Building that object copies the module's
//!   names, symbols and unwind tables (a sixth of a load of Lua), so a module is described at
//!   its load only when a debugger listens (`waiting.rs`: GDB's breakpoint is on the interface's
//!   function, or the process was traced when it first loaded); otherwise it waits, and every
//!   waiting module is described as soon as a load finds a debugger listening, or when
//!   [`describe_waiting`] is called. `SMF_GDB_JIT=1` describes every module at its load,
//!   `SMF_GDB_JIT=0` none; [`crate::imports::LinkOptions::debug_info`] (C:
//!   `SMF_LOAD_NO_DEBUG_INFO`) leaves one load out.
//! - `perf_map.rs`: with `SMF_PERF_MAP=1`, every module's functions are appended to
//!   `/tmp/perf-PID.map` for `perf report`.
//! - `functions.rs`: a module's functions by address, for `symbol+offset` in crash reports
//!   and for `smf_addr_info` (as `dladdr`).
//!
//! What a module registered is undone when it is released, before its memory is freed.

mod elf;
pub mod functions;
mod gdb;
pub mod perf_map;
mod waiting;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use smf_runtime::load::LoadedModule;

pub use functions::{Function, FunctionName, Functions};
pub use waiting::describe_waiting;

/// The environment variable that turns the GDB JIT interface off (`0`) or on at every load
/// (`1`; unset: when a debugger listens).
pub const GDB_JIT_ENV: &str = "SMF_GDB_JIT";

/// `SMF_GDB_JIT`'s setting (read once).
fn gdb_setting() -> Option<bool> {
    static SETTING: OnceLock<Option<bool>> = OnceLock::new();
    *SETTING.get_or_init(|| match std::env::var_os(GDB_JIT_ENV) {
        Some(value) if value == "0" => Some(false),
        Some(value) if value == "1" => Some(true),
        _ => None,
    })
}

/// Whether modules are described to GDB (unless `SMF_GDB_JIT=0`).
pub(crate) fn gdb_enabled() -> bool {
    gdb_setting() != Some(false)
}

/// A loaded module a debugger can be told about after its load.
pub(crate) trait Describable: Send + Sync {
    /// The module.
    fn loaded(&self) -> &LoadedModule<'static>;
    /// What it registered.
    fn registration(&self) -> &Registration;
}

/// What one loaded module registered with debuggers; unregistered when dropped.
#[derive(Debug, Default)]
pub(crate) struct Registration {
    /// Its object in GDB's list, once described.
    gdb: OnceLock<gdb::Registered>,
    /// Its number among the modules waiting to be described (0: never waited).
    waiting: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.waiting != 0 && self.gdb.get().is_none() {
            waiting::forget(self.waiting);
        }
    }
}

/// What `module` (loaded from `path`, if from a file) registers with what the process asks for:
/// the perf map now; GDB's JIT interface by [`describe`] once the module is shared. Nothing
/// when `wanted` is false.
pub(crate) fn register(module: &LoadedModule<'_>, path: Option<&Path>, wanted: bool) -> Registration {
    if !wanted {
        return Registration::default();
    }
    if perf_map::enabled() {
        let label = path.and_then(Path::file_name).map_or_else(|| "module".into(), |n| n.to_string_lossy());
        perf_map::append(module, &Functions::of(module), &label);
    }
    let waiting = if gdb_enabled() { waiting::number() } else { 0 };
    Registration { gdb: OnceLock::new(), waiting }
}

/// Describes `module` to GDB now if a debugger listens (with every module waiting), else puts
/// it among those waiting (see the module documentation).
pub(crate) fn describe<M: Describable + 'static>(module: &Arc<M>) {
    let number = module.registration().waiting;
    if number == 0 {
        return;
    }
    if gdb_setting() == Some(true) || waiting::debugger_listening() {
        describe_waiting();
        describe_now(&**module);
    } else {
        let weak = Arc::downgrade(module);
        waiting::wait(number, weak);
    }
}

/// Builds `module`'s object and links it into GDB's list (nothing if its memory cannot be had).
fn describe_now(module: &dyn Describable) {
    let loaded = module.loaded();
    let unwind = loaded
        .unwind_table_bytes(0)
        .zip(loaded.unwind_tables().first())
        .map(|(bytes, table)| elf::UnwindTables { addr: table.addr, bytes });
    if let Some(registered) = elf::describe(loaded, unwind).and_then(gdb::register) {
        // Set once: a module is described by its load or by one pass over those waiting.
        let _ = module.registration().gdb.set(registered);
    }
}

/// Registers one instantiated function (`name`, `len` bytes at `address`, for machine `arch`,
/// instantiated from the module at `path`) as the process asks: GDB's JIT interface, the perf
/// map. The registration lives as long as the code: its holder drops it before freeing it.
pub(crate) fn register_function(
    name: &[u8],
    address: usize,
    len: usize,
    arch: u8,
    path: &Path,
) -> Registration {
    let gdb = if gdb_enabled() {
        elf::describe_function(name, address, len, arch).and_then(gdb::register)
    } else {
        None
    };
    if perf_map::enabled() {
        let label = path.file_name().map_or_else(|| "instantiated".into(), |n| n.to_string_lossy());
        perf_map::append_one(name, address, len, &label);
    }
    let described = OnceLock::new();
    if let Some(gdb) = gdb {
        let _ = described.set(gdb);
    }
    Registration { gdb: described, waiting: 0 }
}

impl Registration {
    /// Whether nothing was registered.
    pub(crate) fn is_empty(&self) -> bool {
        self.gdb.get().is_none()
    }
}

/// The in-memory objects GDB would read now, most recent first (for tests and tools that
/// check what a debugger sees).
pub fn gdb_objects() -> Vec<Vec<u8>> {
    gdb::registered_objects()
}
