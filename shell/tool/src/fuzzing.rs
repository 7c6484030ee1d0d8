//! The `pack` fuzz target's entry point (feature `testing`): any bytes as an ELF relocatable
//! object into [`crate::pack::pack`]. Whatever it writes must be a module `smf verify` accepts
//! and the loader loads ([`crate::pack::trial_load`]): pack never writes a file the rest of the
//! tool chain refuses (pack checks the load itself; this holds it to that). `fuzz/fuzz_targets/pack.rs` wraps it, and
//! `cargo test` replays its corpus through it.

use smf_format::{Dialect, ErrorKind, Module};

use smf_runtime::load::LoadError;

use crate::pack::PackError;

/// Packs `data` as one object; what pack writes is checked to parse and load, and pack may
/// refuse the object but never for having made a module that does not validate, nor one that
/// does not load for a reason other than the object's own relocations (a value that does not
/// fit its field, which `ld` refuses too), its constructors (an entry that is not code) or size
/// (an image over the loader's limit): those are the packer's bugs. Returns the
/// size of the module written (0 when pack refused the input).
pub fn fuzz_pack(data: &[u8]) -> usize {
    let bytes = match crate::pack::pack(&[("fuzz.o".into(), data.to_vec())], Dialect::S128) {
        Ok((bytes, _notes)) => bytes,
        Err(failure) => {
            // Every problem's message, as `smf pack` prints them (error messages are fuzzed too).
            let _ = failure.report(true);
            for problem in &failure.problems {
                if is_packers_own(&problem.error) {
                    panic!("pack made a module it could not write: {}", problem.error);
                }
            }
            return 0;
        }
    };
    if let Err(error) = Module::parse(&bytes) {
        panic!("pack wrote a module that does not verify: {error}");
    }
    if let Err(error) = crate::pack::trial_load(&bytes) {
        panic!("pack wrote a module that does not load: {error}");
    }
    bytes.len()
}

/// Whether `error` says pack made a module it should not have (see [`fuzz_pack`]).
fn is_packers_own(error: &PackError) -> bool {
    match error {
        PackError::Invalid(e) => !matches!(e.kind, ErrorKind::ImageTooLarge { .. }),
        PackError::DoesNotLoad(
            LoadError::Relocation { .. } | LoadError::TooLarge(_) | LoadError::CallOutsideCode { .. },
        ) => false,
        PackError::DoesNotLoad(_) => true,
        _ => false,
    }
}
