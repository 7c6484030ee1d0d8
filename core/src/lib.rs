//! `smf-core`: read, validate and write SMF (Simple Module Format) modules, in `no_std`.
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
//! dialect, and their names), [`wire`] (raw views of the on-disk structures: bounds checks
//! and byte offsets only), [`detect`] (which layouts a file may have), [`note_sdn`] and
//! [`template`] (readers for the metadata sections), [`module`] (validation and layout, over
//! all of these), [`write`](mod@write) (the builder).
//!
//! On Linux, `sys` wraps the few syscalls the crate makes (through rustix's `linux_raw`
//! backend, no libc; `sys::rt_kit` those only the shell's `rt_*` exports use) and, with `alloc`, `file` reads module files from paths under one policy
//! (never blocking, bounded, never torn); with the `exec` feature, `exec` is a W^X executable page allocator over
//! it and `load` the loader over `module` and `exec`.
//!
//! # Example
//!
//! Write a module with the builder, validate it, load it into executable memory and call it
//! (the code is x86-64's `mov eax, 42; ret`):
//!
//! ```
//! use smf_core::exec::ExecAllocator;
//! use smf_core::load::{LoadOptions, LoadedModule, TableResolver};
//! use smf_core::write::{ModuleBuilder, SymbolSpec};
//! use smf_core::{Dialect, Module};
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
//!
//! // Loading places, relocates and seals (W^X); imports would resolve through the resolver.
//! let exec = ExecAllocator::default();
//! let loaded = LoadedModule::load(&exec, &bytes, &TableResolver(&[]), &LoadOptions::default())?;
//! // SAFETY: `answer` takes nothing and returns an integer (writing eax clears rax's top half).
//! let answer = unsafe { loaded.function::<extern "C" fn() -> i64>(b"answer") }.expect("exported");
//! # #[cfg(target_arch = "x86_64")]
//! assert_eq!(answer.get()(), 42);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod bytes;
#[cfg(feature = "alloc")]
pub mod cache;
pub mod compress;
pub mod detect;
mod dialect;
mod error;
#[cfg(all(feature = "exec", target_os = "linux"))]
pub mod exec;
#[cfg(all(feature = "alloc", target_os = "linux"))]
pub mod file;
mod fnv;
#[cfg(any(test, feature = "testing"))]
pub mod fuzzing;
#[cfg(all(feature = "exec", target_os = "linux"))]
pub mod jit;
#[cfg(feature = "alloc")]
mod keyed_hash;
pub mod kinds;
#[cfg(all(feature = "exec", target_os = "linux"))]
pub mod load;
pub mod module;
pub mod note_sdn;
#[cfg(feature = "alloc")]
mod sort;
#[cfg(target_os = "linux")]
pub mod sys;
pub mod template;
pub mod wire;
#[cfg(feature = "alloc")]
pub mod write;

pub use dialect::{Dialect, HeaderPlacement};
pub use error::{CallArrayProblem, CompressionProblem, Error, ErrorKind, Result, UnwindProblem};
pub use fnv::fnv1a;
pub use kinds::{
    Binding, CallArray, ModuleFlags, RelocKind, SectionFlags, SectionType, SymbolFlags, SymbolKind,
};
pub use module::{Module, ParseOptions, Relocation, Section, Symbol, SymbolTarget};
