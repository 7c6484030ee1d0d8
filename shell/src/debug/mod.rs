//! Loaded code that debuggers, profilers and crash reports can see.
//!
//! - `gdb.rs`: every module loaded through the shell is described to GDB (and to tools that
//!   read GDB's JIT interface) by an in-memory ELF object (`elf.rs`): its functions by name
//!   and address, its unwind tables where it has them. On by default; `SMF_GDB_JIT=0` turns it
//!   off for the process, [`crate::imports::LinkOptions::debug_info`] (C:
//!   `SMF_LOAD_NO_DEBUG_INFO`) for one load. It costs one small allocation per module (a few
//!   hundred bytes plus 24 per symbol) and a lock taken twice.
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

use std::path::Path;
use std::sync::OnceLock;

use smf_runtime::load::LoadedModule;

pub use functions::{Function, Functions};

/// The environment variable that turns the GDB JIT interface off (`0`).
pub const GDB_JIT_ENV: &str = "SMF_GDB_JIT";

/// Whether modules are described to GDB (unless `SMF_GDB_JIT=0`; read once).
pub(crate) fn gdb_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os(GDB_JIT_ENV).is_none_or(|v| v != "0"))
}

/// What one loaded module registered with debuggers; unregistered when dropped.
#[derive(Debug, Default)]
pub(crate) struct Registration {
    /// Held for its `Drop`, which takes the module out of GDB's list.
    _gdb: Option<gdb::Registered>,
}

/// Registers `module` (loaded from `path`, if from a file) with what the process asks for:
/// GDB's JIT interface, the perf map. Nothing when `wanted` is false.
pub(crate) fn register(module: &LoadedModule<'_>, path: Option<&Path>, wanted: bool) -> Registration {
    if !wanted {
        return Registration::default();
    }
    let unwind = module
        .unwind_table_bytes(0)
        .zip(module.unwind_tables().first())
        .map(|(bytes, table)| elf::UnwindTables { addr: table.addr, bytes });
    let gdb = if gdb_enabled() { elf::describe(module, unwind).and_then(gdb::register) } else { None };
    if perf_map::enabled() {
        let label = path.and_then(Path::file_name).map_or_else(|| "module".into(), |n| n.to_string_lossy());
        perf_map::append(module, &Functions::of(module), &label);
    }
    Registration { _gdb: gdb }
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
    Registration { _gdb: gdb }
}

impl Registration {
    /// Whether nothing was registered.
    pub(crate) fn is_empty(&self) -> bool {
        self._gdb.is_none()
    }
}

/// The in-memory objects GDB would read now, most recent first (for tests and tools that
/// check what a debugger sees).
pub fn gdb_objects() -> Vec<Vec<u8>> {
    gdb::registered_objects()
}
