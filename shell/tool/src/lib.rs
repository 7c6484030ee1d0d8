//! `smf-tool`: the `smf` command-line tool's package, kept apart from the `smf` library so that
//! the tool's crates (clap, serde_json, object, libc) are not the library's.
//!
//! The library half holds what tests and tools call directly: [`pack`], ELF relocatable objects
//! into one SMF module (the only user of `object`). The binary `smf` (`src/bin/smf/`) adds the
//! command line, the reports and the crash reporter of `smf run`.
//!
//! ```no_run
//! use smf_format::{Dialect, Module};
//!
//! let object = std::fs::read("fib.o")?; // from `gcc -c -O2 -fPIC fib.c`
//! let (bytes, notes) = smf_tool::pack::pack(&[("fib.o".into(), object)], Dialect::S128)?;
//! for note in notes.iter().filter(|note| !note.routine) {
//!     eprintln!("{}", note.text);
//! }
//! assert!(Module::parse(&bytes).is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod demangle;
#[cfg(feature = "testing")]
pub mod fuzzing;
pub mod pack;
