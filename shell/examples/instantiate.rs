//! Load-time instantiation, end to end: a module lists in its note.sdn the generic
//! instantiations it may need (`square$i64`, `identity$i64`); this program plays the Simple
//! runtime, whose compiler turns a template into machine code when one is first asked for.
//!
//! ```text
//! cargo run -p smf-loader --example instantiate -- examples/generics.smf
//! ```
//!
//! The "compiler" here is a toy that knows two templates and emits x86-64 (or aarch64) code
//! for the `i64` instantiations; a real runtime hands `request.template_bytes` to its code
//! generator. Everything else is the library: reading the note, the checks, installing the
//! code W^X, keeping it, and recording the instantiation in the module's metadata.

// Calling instantiated code means vouching for its signature (`Generics::function` is unsafe).
#![allow(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;

use smf::cache::ModuleCache;
use smf::instantiate::{Generics, Request};
use smf_runtime::instantiate::InstantiatorConfig;

/// Machine code for `template` at `i64`, or why not.
fn compile(_jit: &Generics, request: &Request<'_>) -> Result<Vec<u8>, String> {
    if request.type_args != "i64" {
        return Err(format!("no code generator for {} at {}", request.template, request.type_args));
    }
    let aarch64 = cfg!(target_arch = "aarch64");
    let words = |w: &[u32]| w.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>();
    Ok(match request.template {
        // square(x) = x * x: imul rdi, rdi; mov rax, rdi; ret  |  mul x0, x0, x0; ret
        "square" if aarch64 => words(&[0x9B00_7C00, 0xD65F_03C0]),
        "square" => vec![0x48, 0x0F, 0xAF, 0xFF, 0x48, 0x89, 0xF8, 0xC3],
        // identity(x) = x: mov rax, rdi; ret  |  ret
        "identity" if aarch64 => words(&[0xD65F_03C0]),
        "identity" => vec![0x48, 0x89, 0xF8, 0xC3],
        other => return Err(format!("unknown template {other}")),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path: PathBuf =
        std::env::args_os().nth(1).map_or_else(|| "examples/generics.smf".into(), PathBuf::from);
    let cache = Arc::new(ModuleCache::new(0, 0));
    let generics = Generics::new(Arc::clone(&cache), InstantiatorConfig::default(), compile);

    // First request: compiled, installed, recorded. Second: the same code, no compile.
    let square = generics.instantiate(&path, "square$i64")?;
    assert_eq!(generics.instantiate(&path, "square$i64")?, square);
    // A typed handle that borrows the Generics (the code lives while the Generics does).
    // SAFETY: the compiler above emitted `fn(i64) -> i64` for square$i64.
    let square_fn = unsafe { generics.function::<extern "C" fn(i64) -> i64>(&path, "square$i64") }?;
    println!("square$i64(7) = {}", square_fn.get()(7));

    // The runtime's lookup: an export of a cached module, else an instantiation (mangled as
    // Simple mangles generics: identity + [i64] -> identity$i64).
    let identity = generics.resolve_generic("identity", &["i64"])?;
    // The same function as a typed handle that borrows the Generics (no address cast by hand).
    // SAFETY: as above, `fn(i64) -> i64`.
    let identity_fn = unsafe { generics.function::<extern "C" fn(i64) -> i64>(&path, "identity$i64") }?;
    assert_eq!(identity_fn.get() as usize, identity);
    println!("identity$i64(42) = {}", identity_fn.get()(42));

    // What the module does not offer, and what the compiler refuses.
    println!("List$Bool: {}", generics.instantiate(&path, "List$Bool").unwrap_err());
    println!("square$f64: {}", generics.instantiate(&path, "square$f64").unwrap_err());

    let stats = generics.stats();
    println!(
        "{} instantiations, {} cache hit(s), {} compile failure(s), {} bytes of code",
        stats.instantiations, stats.cache_hits, stats.compile_failures, stats.code_bytes
    );
    // The module's metadata now lists both as instantiations (status jit_compiled).
    print!("{}", generics.note_sdn(&path)?.unwrap_or_default());
    Ok(())
}
