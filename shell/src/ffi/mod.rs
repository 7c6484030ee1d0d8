//! The C ABI: `smf_last_error` and, behind the default `rt` feature, the 26 `rt_*` functions
//! of the Simple runtime's SFFI specs (`../shared/spec/ffi.md`, declared in `include/smf.h`).
//!
//! Rules every export follows: arguments are checked (null, negative, overflowing, and every
//! address against the library's own live mappings and allocations) before any memory is
//! touched; a failure returns the documented sentinel and records a message readable with
//! `smf_last_error()` on the same thread; no panic crosses the boundary (each body runs under
//! `catch_unwind`, a panic becomes an error; `smf_last_error` and `smf_clear_error`, the error
//! mechanism itself, only hand out or reset the thread's buffer).

#![allow(unsafe_code)]

pub mod cache;
mod cstr;
pub mod error;
mod handles;
pub mod imports;
pub mod jit;
#[cfg(feature = "rt")]
mod rt_budget;
#[cfg(feature = "rt")]
pub mod rt_exec;
#[cfg(feature = "rt")]
pub mod rt_mmap;
#[cfg(feature = "rt")]
mod rt_owned;
pub mod smf_module;

pub(crate) use cstr::{c_name, c_path, c_str};
pub use error::{clear_error, last_error, set_error};

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `body`, turning an `Err` or a panic into `sentinel` with the message recorded.
#[cfg_attr(not(feature = "rt"), allow(dead_code))]
pub(crate) fn guard<T>(sentinel: T, body: impl FnOnce() -> Result<T, String>) -> T {
    match unwinding_stops_here(body) {
        Some(Ok(value)) => value,
        Some(Err(message)) => {
            set_error(&message);
            sentinel
        }
        None => sentinel,
    }
}

/// Runs `body`; a panic stops here (no unwinding into C): `None`, with the message recorded.
/// Every `extern "C"` function runs its work through this (or [`guard`]).
pub(crate) fn unwinding_stops_here<R>(body: impl FnOnce() -> R) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => Some(value),
        Err(_) => {
            set_error("internal error: a panic was caught at the C boundary");
            None
        }
    }
}

/// A non-negative `i64` from C as `usize`.
#[cfg_attr(not(feature = "rt"), allow(dead_code))]
pub(crate) fn non_negative(value: i64, what: &str) -> Result<usize, String> {
    usize::try_from(value).map_err(|_| format!("{what} {value} is negative"))
}
