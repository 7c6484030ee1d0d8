//! `smf`: the std side of smf-loader.
//!
//! The format, validation and memory mechanisms live in `smf-core` (`no_std`); this crate adds
//! what needs an operating system and a user: reading files by path, the reports of the `smf`
//! command-line tool, the process-wide executable allocator, and the C ABI (`ffi`).

#![warn(missing_docs)]

pub mod cache;
pub mod cli;
pub mod ffi;
pub mod file;
pub mod imports;
pub mod inspect;
pub mod jit;
pub mod json;
pub mod loader;
pub mod runtime;
mod watch;

pub use smf_core as core;
