//! [`LoadOptions`]: how a load parses, which architecture it accepts, how it protects read-only
//! data ([`ReadOnlyData`]), and whether and how it runs constructors and destructors and registers
//! unwind tables; [`HOST_ARCH`], the architecture a default load accepts.

use smf_format::kinds::{ARCH_AARCH64, ARCH_X86_64};
use smf_format::ParseOptions;

use super::{Catcher, ExitRegistrar, UnwindRegistrar};

/// The SMF architecture byte of the machine this code runs on (0 x86-64, 1 aarch64).
pub const HOST_ARCH: u8 = if cfg!(target_arch = "x86_64") {
    ARCH_X86_64
} else if cfg!(target_arch = "aarch64") {
    ARCH_AARCH64
} else {
    u8::MAX
};

/// How to load.
///
/// ```
/// use smf_runtime::exec::ExecAllocator;
/// use smf_runtime::load::{LoadOptions, LoadedModule, ReadOnlyData};
/// use smf_format::write::samples;
/// use smf_format::Dialect;
///
/// let exec = ExecAllocator::default();
/// // Read-only data in pages of its own (not executable), no constructors run.
/// let options =
///     LoadOptions { read_only_data: ReadOnlyData::NotExecutable, run_constructors: false, ..LoadOptions::default() };
/// let module = LoadedModule::load(&exec, &samples::return_42(Dialect::S128), &(), &options)?;
/// assert!(module.symbol(b"main").is_some());
/// # Ok::<(), smf_runtime::load::LoadError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// How to parse.
    pub parse: ParseOptions,
    /// Refuse modules for another architecture (default: the host's). `None` loads any, for
    /// tools and tests that relocate without running.
    pub require_arch: Option<u8>,
    /// Route every branch to an import through its stub, even when the import is within the
    /// branch's reach (to test stubs; off by default).
    pub force_stubs: bool,
    /// How read-only data (rodata and the GOT) is protected once sealed.
    pub read_only_data: ReadOnlyData,
    /// Run the module's constructors once it is sealed, and its destructors when it is
    /// released (default). Off, neither runs (their entries are still checked): for tools that
    /// load a module to look at it, and for fuzzing.
    pub run_constructors: bool,
    /// Hands the module's unwind tables (`docs/format.md`, "Unwind tables") to the process's
    /// unwinder once the module is sealed, before its constructors run, and takes them back at
    /// release after its destructors ran (the shell gives libgcc's `__register_frame`). `None`
    /// (the default): the tables are checked, kept, and registered with nothing.
    pub unwind: Option<UnwindRegistrar>,
    /// Runs the module's constructors and destructors, stopping an exception that escapes one
    /// ([`Catcher`]): one escaping a constructor fails the load (its destructors then run, as
    /// at a release, and its memory is freed), one escaping a destructor is dropped. `None`
    /// (the default): they are called directly, and an exception escaping one aborts the
    /// process (it is never unwound through the loader, whose frames free the module's memory).
    pub catch: Option<Catcher>,
    /// Hands the module's destructors to the process's exit before its constructors run
    /// ([`ExitRegistrar`]: the shell gives the C library's `__cxa_atexit` and
    /// `__cxa_finalize`): they run at its release, or at exit if it is still loaded then, after
    /// the exit handlers registered later, as a program's and its libraries' run. `None` (the
    /// default): at release only. A module must then be released, not leaked, before its
    /// allocator goes.
    pub at_exit: Option<ExitRegistrar>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            parse: ParseOptions::default(),
            require_arch: Some(HOST_ARCH),
            force_stubs: false,
            read_only_data: ReadOnlyData::default(),
            run_constructors: true,
            unwind: None,
            catch: None,
            at_exit: None,
        }
    }
}

/// How a module's read-only data (its rodata sections and GOT slots) is protected once the
/// module is sealed. Either way it is never writable after relocation, and no page is ever
/// writable and executable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ReadOnlyData {
    /// Read and execute, right after the code (and its stubs) in the same pages, at the next
    /// multiple of its alignment: sealing a module is then one protection change, the least a
    /// load can make, and read-only data takes no page of its own. Read-only bytes become
    /// executable, as they were in ELF text segments before `ld -z separate-code`.
    #[default]
    WithCode,
    /// Read only, not executable: one more protection change (and one more kernel mapping)
    /// per module that has read-only data. `cargo xtask bench load` measures the difference.
    /// A linked module (`docs/format.md`, "Linked modules"; `smf pack` without
    /// `-z separate-code`) keeps its read-only data with its code whatever this says: its
    /// code reaches it at fixed distances.
    NotExecutable,
}
