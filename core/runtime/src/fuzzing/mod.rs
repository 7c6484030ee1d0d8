//! The runtime's fuzz targets' entry points (feature `testing`): each target in `fuzz/` is a
//! one-line wrapper over a function here or in `smf_format::fuzzing`, and `cargo test` replays
//! every committed corpus file and past crash through the same function on stable
//! (`tests/tests/fuzz_replay.rs`). A function panics only where the property it checks is
//! broken: that is a finding.
//!
//! | target | function | checks |
//! |---|---|---|
//! | `load` | [`fuzz_load`] | up to three modules linked to each other and the host; all released after |
//! | `exec_ops` | [`fuzz_exec_ops`] | the W^X allocator over a simulated, failing kernel: bytes kept, bookkeeping true to the pages, nothing left |
//! | `note_sdn` | [`fuzz_note_sdn`] | the format's checks, and the instantiator's metadata agreeing with the reader |

mod exec_ops;
mod load;
mod note_sdn;

pub use exec_ops::fuzz_exec_ops;
pub use load::{fuzz_load, MODULE_SEPARATOR};
pub use note_sdn::fuzz_note_sdn;
