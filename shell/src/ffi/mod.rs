//! The C ABI: `smf_last_error` and, behind the default `rt` feature, the 26 `rt_*` functions
//! of the Simple runtime's SFFI specs (`../shared/spec/ffi.md`, declared in `include/smf.h`).
//!
//! Rules every export follows: arguments are checked (null, negative, overflowing, and every
//! address against the library's own live mappings and allocations) before any memory is
//! touched; a failure returns the documented sentinel and records a message readable with
//! `smf_last_error()` on the same thread; no panic crosses the boundary (each body runs under
//! `catch_unwind`, a panic becomes an error; `smf_last_error` and `smf_clear_error`, the error
//! mechanism itself, only hand out or reset the thread's buffer). Every failure is an
//! `FfiError` (`failure.rs`), recorded and turned into a sentinel or a code
//! in one place.

#![allow(unsafe_code)]

pub mod addr;
pub mod cache;
mod cstr;
mod demangle;
pub mod error;
#[cfg(feature = "cranelift")]
pub mod exec_manager;
mod failure;
mod handles;
pub mod imports;
pub mod instantiate;
mod instantiate_callback;
mod instantiate_codes;
#[cfg(feature = "rt")]
mod rt_budget;
#[cfg(feature = "rt")]
mod rt_error;
#[cfg(feature = "rt")]
pub mod rt_exec;
#[cfg(feature = "rt")]
mod rt_kit;
#[cfg(feature = "rt")]
pub mod rt_mmap;
#[cfg(feature = "rt")]
mod rt_owned;
pub mod smf_module;
#[cfg(test)]
mod tests;

pub(crate) use cstr::{c_name, c_path, c_str};
pub use error::{clear_error, last_error, set_error};
#[cfg(feature = "rt")]
pub(crate) use failure::non_negative;
pub(crate) use failure::{coded, guard, ArgError, FfiError};
