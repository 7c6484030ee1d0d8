//! `smf`: the std side of smf-loader.
//!
//! What a module is lives in `smf-format`, the memory and loading mechanisms in `smf-runtime`
//! (both `no_std`, re-exported as [`format`](mod@format) and [`runtime`]); this crate adds
//! what needs an operating system and a user: reading files by path, module caches, load-time
//! instantiation, the process-wide executable allocator, and the C ABI (`ffi`). The `smf`
//! command-line tool and its ELF packer are a package of their own (`smf-tool`, in
//! `shell/tool/`), so that their crates (clap, serde_json, object, libc) stay out of the library.
//!
//! # Example
//!
//! Load a module file (its imports resolving against modules loaded before and, here, the C
//! library), look a function up and call it:
//!
//! ```
//! use std::path::Path;
//!
//! use smf::imports::LinkOptions;
//! use smf::loader::{load, LoadRequest};
//!
//! let path = Path::new("../examples/recursion.smf"); // C's fib, packed by `smf pack`
//! let options = LinkOptions { process_symbols: true, ..LinkOptions::default() };
//! let module = load(&LoadRequest::path(path).linked(options))?;
//! assert!(module.symbol(b"fib").is_some());
//! # #[cfg(target_arch = "x86_64")]
//! # {
//! // SAFETY: `fib` takes one integer and returns one.
//! let fib20 = unsafe { module.call_integers(Some(b"fib"), &[20]) }?;
//! assert_eq!(fib20, 6765);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Modules by path with hot reload: [`cache::ModuleCache`]; generic instantiation at load
//! time: [`instantiate::Generics`] (`shell/examples/instantiate.rs` walks through it).

#![warn(missing_docs)]

pub mod cache;
mod catch;
mod code_index;
pub mod debug;
#[cfg(feature = "cranelift")]
pub mod exec_manager;
pub mod ffi;
pub mod file;
mod fork;
#[cfg(feature = "testing")]
pub mod fuzzing;
pub mod imports;
pub mod instantiate;
mod kept;
pub mod loader;
pub mod native;
pub mod needed;
pub mod process;
mod sync;
mod watch;
mod worker;

pub use smf_format as format;
pub use smf_runtime as runtime;
