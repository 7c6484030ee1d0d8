//! `-z defs` and `--no-undefined`, as `ld` checks a shared library it links with them: every
//! import of the module packed (but weak ones) must be defined by a shared library the link
//! line names (`-lNAME` that found one, or its path) or by those the compiler driver always
//! links (the C library, libm, libgcc_s, the dynamic loader); a misspelt or missing function is
//! then a pack error, not a load error later.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSymbol};
use smf_core::{Binding, Module, SymbolKind};

/// The libraries a compiler driver links every program and library against.
const ALWAYS_LINKED: [&str; 4] = ["libc.so.6", "libm.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2"];

/// The imports of `module` (bytes as packed) that none of `shared` nor [`ALWAYS_LINKED`]
/// defines, in table order; an error naming a library that cannot be read.
pub(crate) fn undefined(module: &[u8], shared: &[PathBuf]) -> Result<Vec<String>, String> {
    let module = Module::parse(module).map_err(|e| format!("the module packed: {e}"))?;
    let always = ALWAYS_LINKED.iter().filter_map(|name| crate::linker::system_file(name));
    let mut defined: HashSet<Vec<u8>> = HashSet::new();
    for library in shared.iter().cloned().chain(always) {
        defined.extend(exports(&library)?);
    }
    Ok(module
        .symbols()
        .filter(|s| s.kind == SymbolKind::Import && s.binding != Binding::Weak && !defined.contains(s.name))
        .map(|s| String::from_utf8_lossy(s.name).into_owned())
        .collect())
}

/// The names shared library `path` defines (its dynamic symbols); none for a linker script
/// (glibc's `libc.so`, naming the C library's files, which are checked anyway).
fn exports(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !bytes.starts_with(b"\x7fELF") {
        return Ok(Vec::new());
    }
    let file = object::File::parse(&*bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(file
        .dynamic_symbols()
        .filter(|s| !s.is_undefined() && (s.is_global() || s.is_weak()))
        .filter_map(|s| s.name_bytes().ok().map(<[u8]>::to_vec))
        .collect())
}
