//! `smf-runtime`: SMF (Simple Module Format) modules in executable memory, in `no_std` and
//! without libc, on Linux: the kernel seam, a W^X executable page allocator, the loader, load-time
//! instantiation of generic templates, the module cache's core (an intrusive LRU) and file
//! reading.
//!
//! What a module is (reading, validation, writing) is `smf-format`'s; this crate takes a
//! validated [`smf_format::Module`] into memory. Layers, bottom up (each uses only those before
//! it): [`sys`] (the few syscalls, through rustix's `linux_raw` backend: no libc),
//! [`keyed_hash`] (the keyed hash of every table whose keys a file controls), [`lru`] (the
//! module cache's core: an intrusive LRU), [`file`](mod@file) (module files read under one
//! policy: never blocking, bounded, never torn), [`exec`] (the W^X executable page allocator
//! over a [`exec::Kernel`]), [`load`] (place, link, relocate, seal, over `exec`),
//! [`instantiate`] (generic templates instantiated at load time, over `load`).
//!
//! # Example
//!
//! Write a module, load it into executable memory and call it (the code is x86-64's
//! `mov eax, 42; ret`):
//!
//! ```
//! use smf_format::write::{ModuleBuilder, SymbolSpec};
//! use smf_format::Dialect;
//! use smf_runtime::exec::ExecAllocator;
//! use smf_runtime::load::{LoadOptions, LoadedModule, TableResolver};
//!
//! let mut builder = ModuleBuilder::new(Dialect::R96);
//! builder.add_code(b".text", &[0xB8, 42, 0, 0, 0, 0xC3]);
//! builder.add_symbol(SymbolSpec::function(b"answer", 0, 6));
//! let bytes = builder.build()?;
//!
//! // Loading validates, places, relocates and seals (W^X); imports would resolve through the
//! // resolver.
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

#[cfg(not(target_os = "linux"))]
compile_error!("smf-runtime runs on Linux: it makes its own system calls (rustix's linux_raw backend)");

extern crate alloc;

pub mod exec;
pub mod file;
#[cfg(any(test, feature = "testing"))]
pub mod fuzzing;
pub mod instantiate;
pub mod keyed_hash;
pub mod load;
pub mod lru;
mod name_hash;
pub mod sys;
