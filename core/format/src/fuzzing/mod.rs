//! The fuzz targets' entry points (feature `testing`): each target in `fuzz/` is a one-line
//! wrapper over a function here, and `cargo test` replays every committed corpus file and past
//! crash through the same function on stable (`tests/tests/fuzz_replay.rs`). A function panics
//! only where the property it checks is broken: that is a finding.
//!
//! | target | function | checks |
//! |---|---|---|
//! | `parse` | [`fuzz_one`] | no panic, every walk of a valid module ends |
//! | `compressed` | `fuzz_compressed` | a compressed section's frame: never more than its place, nothing written past the stated length, the writer's frames read back |
//! | `note_sdn` | [`fuzz_note_sdn`] | quoted fields and rewritten notes read back as written |
//! | `templates` | [`fuzz_templates`] | template-code and template-meta readers end, entries lie inside |
//! | `write` | `fuzz_write` | what the writer writes reads back as written, or is refused with a typed error |
//!
//! The runtime's targets (`load`, `exec_ops`, and `note_sdn`'s check of the instantiator's
//! metadata) are `smf_runtime::fuzzing`'s.

#[cfg(feature = "alloc")]
mod compressed;
#[cfg(feature = "alloc")]
mod input;
#[cfg(feature = "alloc")]
pub use input::Input;
mod note_sdn;
mod parse;
mod templates;
#[cfg(feature = "alloc")]
mod write;

use core::error::Error;
use core::fmt;

/// The bytes `value` formats to, shown and debugged, counted without keeping them: the fuzz
/// entry points format every error they meet, so that error messages are fuzzed too (they are
/// what a user reads about hostile input).
pub fn formatted(value: &(impl fmt::Display + fmt::Debug)) -> usize {
    /// Counts what is written.
    struct Count(usize);
    impl fmt::Write for Count {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0 += s.len();
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = fmt::write(&mut count, format_args!("{value} {value:?}"));
    count.0
}

/// [`formatted`] for an error and every error behind it ([`Error::source`]), as an error
/// report prints them.
pub fn formatted_chain(error: &(dyn Error + 'static)) -> usize {
    let mut bytes = formatted(&error);
    let mut source = error.source();
    while let Some(error) = source {
        bytes += formatted(&error);
        source = error.source();
    }
    bytes
}

#[cfg(feature = "alloc")]
pub use compressed::fuzz_compressed;
pub use note_sdn::{assert_recorded, fuzz_note_sdn};
pub use parse::fuzz_one;
pub use templates::fuzz_templates;
#[cfg(feature = "alloc")]
pub use write::fuzz_write;
