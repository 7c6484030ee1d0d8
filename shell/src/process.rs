//! Process-wide state shared by the C ABI and the loader: the executable allocator, the page
//! size and the load options.
//!
//! Two environment variables, read once, at the first use of the library:
//! - `SMF_ALLOW_RWX=1`: read-write-execute pages may exist. A debugging switch (for tools that
//!   insist on patching code in place); without it no page this library maps is ever writable
//!   and executable.
//! - `SMF_RODATA_NOEXEC=1`: modules' read-only data is sealed read-only and not executable, in
//!   pages of its own, at one more protection change per load
//!   ([`ReadOnlyData::NotExecutable`]); by default it is sealed with the code.

use std::sync::{Mutex, OnceLock};

use smf_runtime::exec::{ExecAllocator, ExecConfig};
use smf_runtime::load::{ExitRegistrar, LoadOptions, ReadOnlyData, UnwindRegistrar};

/// The environment variable that opts into read-write-execute pages (debugging only).
pub const ALLOW_RWX_ENV: &str = "SMF_ALLOW_RWX";

/// The environment variable that keeps read-only data out of executable pages.
pub const RODATA_NOEXEC_ENV: &str = "SMF_RODATA_NOEXEC";

static EXEC: OnceLock<ExecAllocator> = OnceLock::new();
static LOAD_OPTIONS: OnceLock<LoadOptions> = OnceLock::new();

fn env_is_1(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| v == "1")
}

/// The options every load through the shell (paths, bytes, the C ABI) uses: modules' unwind
/// tables go to the process's unwinder (libgcc's, which Rust's std and every C++ program on
/// Linux link), so that exceptions, backtraces and debuggers walk through module frames; their
/// destructors go to the C library's exit handlers, so that a module still loaded at exit runs
/// them then, as a shared library does (with glibc; musl's `__cxa_finalize` cannot take one
/// back, so there they run at release only).
#[allow(unsafe_code)] // the exit registrar's contract, which glibc keeps
pub fn load_options() -> &'static LoadOptions {
    LOAD_OPTIONS.get_or_init(|| {
        let read_only_data =
            if env_is_1(RODATA_NOEXEC_ENV) { ReadOnlyData::NotExecutable } else { ReadOnlyData::WithCode };
        let unwind = Some(UnwindRegistrar { register: register_frame, deregister: deregister_frame });
        // SAFETY: glibc's `__cxa_atexit` and `__cxa_finalize` are the contract's model. musl's
        // `__cxa_finalize` does nothing: there destructors run at release only.
        let at_exit =
            cfg!(target_env = "gnu").then(|| unsafe { ExitRegistrar::new(__cxa_atexit, __cxa_finalize) });
        LoadOptions {
            read_only_data,
            unwind,
            catch: Some(crate::catch::CATCHER),
            at_exit,
            ..LoadOptions::default()
        }
    })
}

extern "C" {
    /// The C library's: registers `function(argument)` to run at exit under `handle`.
    fn __cxa_atexit(
        function: unsafe extern "C" fn(*mut std::ffi::c_void),
        argument: *mut std::ffi::c_void,
        handle: *mut std::ffi::c_void,
    ) -> std::ffi::c_int;
    /// The C library's: runs what is registered under `handle`, and forgets it.
    fn __cxa_finalize(handle: *mut std::ffi::c_void);
    /// libgcc's: registers a whole `.eh_frame` table (records up to the zero terminator).
    fn __register_frame(begin: *const u8);
    /// libgcc's: takes a table registered with `__register_frame` back.
    fn __deregister_frame(begin: *const u8);
}

/// The page size, from the C library's copy of the auxiliary vector (`getauxval(AT_PAGESZ)`,
/// no syscall) the first time it is asked for; the core's probe (three syscalls) only if that
/// has none.
#[allow(unsafe_code)] // a C library call, and the core's trust in its answer
pub fn page_size() -> usize {
    static GIVEN: std::sync::Once = std::sync::Once::new();
    GIVEN.call_once(|| {
        // SAFETY: `getauxval` only reads the vector the kernel gave the process.
        let size = unsafe { getauxval(AT_PAGESZ) };
        if let Ok(size) = usize::try_from(size) {
            // SAFETY: `AT_PAGESZ` is the kernel's page size; the core refuses a value that is
            // not a page size (0 when the vector has none) and keeps one it knows already.
            let _ = unsafe { smf_runtime::sys::use_page_size(size) };
        }
    });
    smf_runtime::sys::page_size()
}

/// `AT_PAGESZ` (`<elf.h>`): the auxiliary vector's page size.
const AT_PAGESZ: std::ffi::c_ulong = 6;

extern "C" {
    /// The C library's (glibc, musl): an auxiliary vector entry, 0 if the vector has none.
    fn getauxval(kind: std::ffi::c_ulong) -> std::ffi::c_ulong;
}

/// Serializes the library's calls into libgcc's table registry, and is taken around every
/// fork ([`crate::fork`]): libgcc's own lock is not, so a child forked while another thread
/// registered or took back a module's tables would wait for it forever at its first load.
static UNWIND_TABLES: Mutex<()> = Mutex::new(());

/// [`UNWIND_TABLES`] held.
fn unwind_tables() -> std::sync::MutexGuard<'static, ()> {
    crate::fork::hold_at_fork(crate::fork::Lock::UnwindTables, &UNWIND_TABLES);
    crate::sync::lock(&UNWIND_TABLES)
}

/// libgcc's `__register_frame` of `table`, under [`UNWIND_TABLES`].
///
/// # Safety
/// `__register_frame`'s: a whole unwind table that stays mapped until taken back.
#[allow(unsafe_code)]
unsafe extern "C" fn register_frame(table: *const u8) {
    let _held = unwind_tables();
    // SAFETY: the caller's contract.
    unsafe { __register_frame(table) }
}

/// libgcc's `__deregister_frame` of `table`, under [`UNWIND_TABLES`].
///
/// # Safety
/// `__deregister_frame`'s: a table registered with [`register_frame`], still mapped.
#[allow(unsafe_code)]
unsafe extern "C" fn deregister_frame(table: *const u8) {
    let _held = unwind_tables();
    // SAFETY: the caller's contract.
    unsafe { __deregister_frame(table) }
}

/// The process's executable allocator.
pub fn exec() -> &'static ExecAllocator {
    let exec = EXEC.get_or_init(|| {
        page_size();
        let allow_rwx = env_is_1(ALLOW_RWX_ENV);
        ExecAllocator::new(ExecConfig { allow_rwx, ..ExecConfig::default() })
    });
    crate::fork::hold_at_fork(crate::fork::Lock::Allocator, &ProcessAllocator);
    exec
}

/// The process's allocator as a lock taken around every fork ([`crate::fork`]).
struct ProcessAllocator;

impl crate::fork::Hold for ProcessAllocator {
    fn hold(&'static self) -> Box<dyn std::any::Any> {
        // Registered once the allocator exists.
        Box::new(EXEC.get().map(ExecAllocator::hold))
    }
}
