//! The fuzz targets' entry points (feature `testing`): each target in `fuzz/` is a one-line
//! wrapper over a function here, and `cargo test` replays every committed corpus file and past
//! crash through the same function on stable (`tests/tests/fuzz_replay.rs`). A function panics
//! only where the property it checks is broken: that is a finding.
//!
//! | target | function | checks |
//! |---|---|---|
//! | `parse` | [`fuzz_one`] | no panic, every walk of a valid module ends |
//! | `load` | [`fuzz_load`] | up to three modules linked to each other and the host; all released after |
//! | `note_sdn` | [`fuzz_note_sdn`] | quoted fields and rewritten notes read back as written |
//! | `templates` | [`fuzz_templates`] | template-code and template-meta readers end, entries lie inside |

mod note_sdn;
mod parse;
mod templates;

#[cfg(all(feature = "exec", target_os = "linux"))]
mod load;

#[cfg(all(feature = "exec", target_os = "linux"))]
pub use load::{fuzz_load, MODULE_SEPARATOR};
pub use note_sdn::fuzz_note_sdn;
pub use parse::fuzz_one;
pub use templates::fuzz_templates;
