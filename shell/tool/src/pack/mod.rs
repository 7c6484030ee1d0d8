//! The packer behind `smf pack`: x86-64 ELF relocatable objects (as `gcc -c -O2 -fPIC` or
//! `clang` emit) become one SMF module ([`pack`]; `packer/` phase by phase, `elf.rs` what it
//! knows of ELF sections and relocation types, `carried.rs` how each ELF section is carried,
//! `compression.rs` `--compress` and its levels (libzstd),
//! `bounds.rs` what an object must not be to be read in linear time, `relax.rs` GOT relaxation, `call_arrays.rs` constructors and destructors, `unwind.rs` unwind
//! tables, `trial.rs` the check that what it writes loads, `error.rs` one
//! reason objects cannot be packed: [`PackError`]; `problems.rs` all of them at once:
//! [`PackFailure`]; `covering.rs` the function or variable a problem is in).
//!
//! - `.text*` sections become code, merged into one SMF section `.text` as `ld` merges them
//!   (each part padded to the next one's alignment, since SMF code sections are concatenated
//!   without padding); `.rodata*`, `.data*`, `.bss*` become data, merged into one `.rodata`,
//!   `.data` and `.bss` (a section aligned past a page starts one of its own).
//! - Read-only data that carries relocations (switch jump tables in `.rodata`, pointer tables in
//!   `.data.rel.ro*`) becomes rodata with data relocations; in R72, which has no data sections,
//!   it follows the code into the code image, sealed with it, its objects data symbols at code
//!   offsets.
//! - Global and weak functions and objects become symbols with their binding; local symbols and
//!   section symbols that relocations use become local symbols; undefined symbols become imports;
//!   common symbols (`-fcommon`, `.comm`) become bss variables, one per name, as large and as
//!   aligned as the largest (a definition overrides them; they override a weak one).
//! - Relocations in code: `R_X86_64_64` -> abs64, `PC32` -> pc32, `PLT32` -> plt32, `GOTPCREL`,
//!   `GOTPCRELX`, `REX_GOTPCRELX` -> got_pc32 (the loader gives each such symbol a GOT slot),
//!   `32`/`32S` -> abs32 (S128 only). A `GOTPCRELX`/`REX_GOTPCRELX` load of a symbol the object
//!   defines is relaxed to a direct reference (pc32) as a static linker would (`relax.rs`).
//! - Relocations in data sections (`R_X86_64_64`, `PC32`) become data relocations
//!   (`docs/format.md`, "Data relocations").
//! - Constructors and destructors (`.init_array*`, `.fini_array*`, `.ctors*`, `.dtors*`) of
//!   every object merge into the module's two call arrays in `ld`'s order (`call_arrays.rs`);
//!   code that refers to `__dso_handle` (C++ objects with destructors) gets crtbegin's
//!   finalizer, `__cxa_finalize(__dso_handle)` at release, and code that calls `atexit`,
//!   `at_quick_exit` or `pthread_atfork` gets `libc_nonshared.a`'s, registering under it
//!   (`__cxa_atexit`, `__cxa_at_quick_exit`, `__register_atfork`): its handlers go at release.
//! - GNU indirect functions (`STT_GNU_IFUNC`: `ifunc`, `target_clones`) become a stub that
//!   jumps through a writable slot, and a constructor run before the module's others fills each
//!   slot with what the resolver returns, as `ld`'s PLT entry and `R_X86_64_IRELATIVE` do
//!   (`packer/ifunc.rs`; R72, whose symbols cannot address the slot, refuses them).
//! - Every object's unwind tables (`.eh_frame`) merge into the module's one unwind table
//!   (`unwind.rs`; R72, without data sections, drops them with a [`Note`]).
//! - Notes, comments and debug info are dropped with a [`Note`]; anything
//!   that cannot be represented (thread-local storage, `.preinit_array`, instruction relocation
//!   kinds in data, other relocation types) is a problem naming it, its object and the function
//!   or variable it is in; packing goes on to find every problem, and fails with all of them.
//! - The entry point is `main` when an object defines it, or the function [`PackOptions`] names.
//! - The module written is loaded once to check it (`trial.rs`, no code run): unwind tables
//!   that would stop it from loading are dropped with a [`Note`] and the objects packed again.
//! - Several objects combine as `ld -r` would: one code image, references to names another
//!   object defines linked to the definition, a strong definition over weak ones, two strong
//!   ones an error.

mod archive;
mod bounds;
mod call_arrays;
mod carried;
mod compression;
mod covering;
mod elf;
mod error;
mod packer;
mod problems;
mod relax;
mod trial;
mod unwind;

pub use compression::{Compression, ZSTD_DEFAULT_LEVEL, ZSTD_LEVELS};
pub use error::{PackError, Site};
pub use packer::{pack, pack_inputs, pack_with, Input, PackOptions};
pub use problems::{PackFailure, Problem, LISTED_PER_KIND};
pub use trial::trial_load;

/// Something pack did that its user may want to know.
#[derive(Clone, Debug)]
pub struct Note {
    /// Every compiled object gets it (printed only with `--verbose`).
    pub routine: bool,
    /// What happened.
    pub text: String,
}
