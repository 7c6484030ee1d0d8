//! `smf-format`: read, validate and write SMF (Simple Module Format) modules, in `no_std`, with
//! no operating system and no `unsafe` code.
//!
//! Real SMF files come in three incompatible layouts ([`Dialect`]): S128 (self-hosted Simple
//! compiler, header as a 128-byte trailer), R96 (Rust seed compiler, 96-byte header at offset 0)
//! and R72 (older Rust builders). [`Module::parse`] detects the layout by structure, validates
//! everything a loader will rely on, and returns a borrowed, validated view. Nothing in parsing
//! allocates; hostile input gets a typed [`Error`] saying what and where, never a panic.
//!
//! With the `alloc` feature, [`write::ModuleBuilder`] writes any dialect the way the real
//! writers do.
//!
//! Layers, bottom up (each uses only those before it): [`kinds`] (what the numbers mean per
//! dialect, and their names), [`wire`] (raw views of the on-disk structures), [`detect`] (which
//! layouts a file may have), [`note_sdn`] and [`template`] (readers for the metadata sections),
//! [`compress`] (compressed payloads), [`module`] (validation and layout, over all of these),
//! [`write`](mod@write) (the builder). Loading a module into memory is `smf-runtime`'s.
//!
//! # Example
//!
//! Write a module with the builder and validate it (the code is x86-64's `mov eax, 42; ret`):
//!
//! ```
//! use smf_format::write::{ModuleBuilder, SymbolSpec};
//! use smf_format::{Dialect, Module};
//!
//! let mut builder = ModuleBuilder::new(Dialect::R96);
//! builder.add_code(b".text", &[0xB8, 42, 0, 0, 0, 0xC3]);
//! builder.add_symbol(SymbolSpec::function(b"answer", 0, 6));
//! let bytes = builder.build()?;
//!
//! // Parsing validates everything a loader relies on, and allocates nothing.
//! let module = Module::parse(&bytes)?;
//! assert_eq!(module.dialect(), Dialect::R96);
//! assert!(module.symbols().any(|s| s.name == b"answer"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod bytes;
pub mod compress;
pub mod detect;
mod dialect;
mod error;
mod fnv;
#[cfg(any(test, feature = "testing"))]
pub mod fuzzing;
pub mod kinds;
pub mod module;
pub mod note_sdn;
pub mod sort;
pub mod template;
pub mod wire;
#[cfg(feature = "alloc")]
pub mod write;

pub use bytes::align_up;
pub use dialect::{Dialect, HeaderPlacement};
pub use error::{
    CompressionProblem, Error, ErrorKind, FunctionNamesProblem, NeededProblem, Result, UnwindProblem,
};
pub use fnv::fnv1a;
pub use kinds::{
    Binding, CallArray, CallArrayProblem, ModuleFlags, RelocKind, SectionFlags, SectionType, SymbolFlags,
    SymbolKind,
};
pub use module::{Module, ParseOptions, Relocation, Section, Symbol, SymbolTarget};
