//! The shell's fuzz targets' entry points (feature `testing`, not API): each target in `fuzz/`
//! wraps one, and `cargo test` replays the target's corpus through it
//! (`tests/tests/fuzz_replay.rs`). A function panics only where a property it checks is broken.
//!
//! | target | function | checks after every step |
//! |---|---|---|
//! | `cache_ops` | [`fuzz_cache_ops`] | budgets hold, held modules still run, statistics add up |
//! | `instantiate_ops` | [`fuzz_instantiate_ops`] | names keep their addresses, made code still runs, counters, nothing left |
//! | `c_api` | [`fuzz_c_api`] | no crash; a handle that is not live fails with a message; nothing left |
//! | `ffi_ranges` | [`fuzz_ffi_ranges`] | no crash, sentinels on ranges not the library's, W^X, nothing left |
//! | `read_file` | [`fuzz_read_file`] | bytes read are the file's; each refusal the one the file calls for |
//! | `clif` | `fuzz_clif` (feature `cranelift`) | compiled and loaded, or refused with a message and nothing defined |

mod c_api;
mod cache_ops;
#[cfg(feature = "cranelift")]
mod clif;
#[cfg(feature = "rt")]
mod ffi_ranges;
mod instantiate_ops;
mod module_files;
mod read_file;
mod workers;

pub use c_api::fuzz_c_api;
pub use cache_ops::{fuzz_cache_ops, run_cache_ops, CacheOpsRun};
#[cfg(feature = "cranelift")]
pub use clif::fuzz_clif;
#[cfg(feature = "rt")]
pub use ffi_ranges::fuzz_ffi_ranges;
pub use instantiate_ops::fuzz_instantiate_ops;
pub use read_file::{fuzz_read_file, read_file_seeds};
