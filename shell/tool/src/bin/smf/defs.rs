//! `-z defs` and `--no-undefined`, as `ld` checks a shared library it links with them: every
//! import of the module packed (but weak ones) must be defined by a shared library the link
//! line names (`-lNAME` that found one, or its path; a linker script found so, as
//! `libncurses.so`'s `INPUT(libncurses.so.6 -ltinfo)`, for the libraries it names), by the
//! libraries those need (`DT_NEEDED`: `dlsym` of a library opened by name searches them too),
//! or by what the loader always looks in (the C library and libm, and the dynamic loader the C
//! library needs), with a version a link may take (not a hidden one: `_sys_errlist`'s old
//! ones); a misspelt or missing function is then a pack error, not a load error later.
//! Without `-z defs`, what is left is a warning (`pack.rs`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use object::read::elf::{Dyn as _, ElfFile64, SectionHeader as _, Sym as _};
use object::Endianness;
use smf_format::{Binding, Module, SymbolKind};

/// The libraries the loader always resolves imports in (`smf run`, the C ABI's loads): the C
/// library (with the dynamic loader it needs) and libm. libgcc_s is not among them: its
/// helpers are packed from libgcc's archive, its unwinder comes with the libraries that need it.
const ALWAYS_LINKED: [&str; 2] = ["libc.so.6", "libm.so.6"];

/// Libraries read at most, linker scripts' included (a script naming scripts in a circle).
const MOST_LIBRARIES: usize = 64;

/// The imports of `module` (bytes as packed) that none of `shared` (and what the linker
/// scripts among them name) nor [`ALWAYS_LINKED`] defines, in table order; an error naming a
/// library that cannot be read.
pub(crate) fn undefined(module: &[u8], shared: &[PathBuf]) -> Result<Vec<String>, String> {
    let module = Module::parse(module).map_err(|e| format!("the module packed: {e}"))?;
    let imports: Vec<&[u8]> = module
        .symbols()
        .filter(|s| s.kind == SymbolKind::Import && s.binding != Binding::Weak)
        .map(|s| s.name)
        .collect();
    let mut wanted: HashSet<&[u8]> = imports.iter().copied().collect();
    let always = ALWAYS_LINKED.iter().filter_map(|name| crate::linker::system_file(name));
    let mut queue: Vec<PathBuf> = shared.iter().cloned().chain(always).collect();
    let mut read = HashSet::new();
    while let Some(library) = queue.pop() {
        if wanted.is_empty() || read.len() >= MOST_LIBRARIES {
            break;
        }
        if !read.insert(library.clone()) {
            continue;
        }
        let bytes = std::fs::read(&library).map_err(|e| format!("{}: {e}", library.display()))?;
        if bytes.starts_with(b"\x7fELF") {
            let needed = provided(&bytes, &mut wanted).map_err(|e| format!("{}: {e}", library.display()))?;
            queue.extend(needed.iter().filter_map(|name| crate::linker::system_file(name)));
        } else {
            queue.extend(script_inputs(&bytes, &library));
        }
    }
    let mut reported = HashSet::new();
    Ok(imports
        .into_iter()
        .filter(|name| wanted.contains(name) && reported.insert(*name))
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect())
}

/// The names a module packed against `shared` records as needed (`docs/format.md`, "Needed
/// libraries"): each library's `DT_SONAME` (else its file name), a linker script's libraries in
/// its stead, each once, in order; what the loader always opens (the C library, libm, the
/// dynamic loader) left out, and a name a module cannot record (not a plain file name) noted.
pub(crate) fn needed_names(shared: &[PathBuf], notes: &mut Vec<String>) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::new();
    let mut queue: Vec<PathBuf> = shared.iter().rev().cloned().collect();
    let mut read = HashSet::new();
    while let Some(library) = queue.pop() {
        if read.len() >= MOST_LIBRARIES || !read.insert(library.clone()) {
            continue;
        }
        let bytes = std::fs::read(&library).map_err(|e| format!("{}: {e}", library.display()))?;
        if !bytes.starts_with(b"\x7fELF") {
            queue.extend(script_inputs(&bytes, &library).into_iter().rev());
            continue;
        }
        let file_name = library.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let name = soname(&bytes).unwrap_or(file_name);
        let always = ["libc.so.6", "libm.so.6", "ld-linux-x86-64.so.2"];
        if always.contains(&name.as_str()) || names.contains(&name) {
            continue;
        }
        if smf_format::module::needed::is_file_name(name.as_bytes()) {
            names.push(name);
        } else {
            notes.push(format!(
                "{}: its name {name:?} cannot be recorded as needed: give it at load",
                library.display()
            ));
        }
    }
    Ok(names)
}

/// Shared library `bytes`' `DT_SONAME`, if it has one.
fn soname(bytes: &[u8]) -> Option<String> {
    let file = ElfFile64::<Endianness>::parse(bytes).ok()?;
    let endian = file.endian();
    let sections = file.elf_section_table();
    for section in sections.iter() {
        let Ok(Some((entries, strings_at))) = section.dynamic(endian, bytes) else { continue };
        let strings = sections.strings(endian, bytes, strings_at).ok()?;
        let entry = entries.iter().find(|d| d.d_tag(endian) == object::elf::DT_SONAME)?;
        return entry.string(endian, strings).ok().map(|name| String::from_utf8_lossy(name).into_owned());
    }
    None
}

/// Takes out of `wanted` the names shared library `bytes` defines with a version a link may
/// take (its dynamic symbols, a hidden version's left out); returns the libraries it needs
/// (`DT_NEEDED`).
fn provided(bytes: &[u8], wanted: &mut HashSet<&[u8]>) -> Result<Vec<String>, object::Error> {
    exports(bytes, |name| {
        wanted.remove(name);
    })
}

/// Calls `each` with every name shared library `bytes` defines with a version a link may take
/// (its dynamic symbols, a hidden version's left out); returns the libraries it needs
/// (`DT_NEEDED`), in order.
pub(crate) fn exports(bytes: &[u8], mut each: impl FnMut(&[u8])) -> Result<Vec<String>, object::Error> {
    let file = ElfFile64::<Endianness>::parse(bytes)?;
    let endian = file.endian();
    let sections = file.elf_section_table();
    let mut needed = Vec::new();
    for section in sections.iter() {
        let Some((entries, strings_at)) = section.dynamic(endian, bytes)? else { continue };
        let strings = sections.strings(endian, bytes, strings_at)?;
        for entry in entries.iter().filter(|d| d.d_tag(endian) == object::elf::DT_NEEDED) {
            if let Ok(name) = entry.string(endian, strings) {
                needed.push(String::from_utf8_lossy(name).into_owned());
            }
        }
    }
    let symbols = file.elf_dynamic_symbol_table();
    let versions = file.elf_section_table().versions(endian, bytes)?;
    for (index, symbol) in symbols.iter().enumerate() {
        if symbol.is_undefined(endian) || symbol.is_local() {
            continue;
        }
        let hidden = versions
            .as_ref()
            .is_some_and(|v| v.version_index(endian, object::SymbolIndex(index)).is_hidden());
        if hidden {
            continue;
        }
        if let Ok(name) = symbols.symbol_name(endian, symbol) {
            each(name);
        }
    }
    Ok(needed)
}

/// The shared libraries linker script `bytes` (at `path`) names in its `INPUT` and `GROUP`
/// statements (`AS_NEEDED` ones too): paths, names beside the script or in the system's
/// directories, and `-lNAME`s found there; archives are left out (pack reads none of them here).
fn script_inputs(bytes: &[u8], path: &Path) -> Vec<PathBuf> {
    let text = String::from_utf8_lossy(bytes);
    let beside = path.parent().unwrap_or(Path::new("/"));
    let mut inputs = Vec::new();
    for statement in ["INPUT", "GROUP"] {
        for (at, _) in text.match_indices(statement) {
            let Some(open) = text[at..].find('(') else { continue };
            let Some(close) = text[at + open..].find(')') else { continue };
            // Up to the statement's first `)`: an `AS_NEEDED (...)` inside ends it, its names
            // are read by the same walk as the statement's (the outer `(` is skipped).
            let body = &text[at + open + 1..at + open + close];
            for word in body.split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')') {
                let found = match word {
                    "" | "AS_NEEDED" => None,
                    w if w.ends_with(".a") => None,
                    w if w.starts_with("-l") => crate::linker::system_file(&format!("lib{}.so", &w[2..])),
                    w if w.starts_with('/') => Some(PathBuf::from(w)),
                    w => {
                        Some(beside.join(w)).filter(|p| p.is_file()).or_else(|| crate::linker::system_file(w))
                    }
                };
                inputs.extend(found);
            }
        }
    }
    inputs
}

#[cfg(test)]
mod tests {
    use super::script_inputs;
    use std::path::Path;

    #[test]
    fn a_linker_script_names_the_libraries_it_links() {
        let dir = std::env::temp_dir().join(format!("smf-defs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("libbeside.so.1"), b"").unwrap();
        let script = b"/* GNU ld script */\nOUTPUT_FORMAT(elf64-x86-64)\n\
            GROUP ( /lib/x86_64-linux-gnu/libc.so.6 /usr/lib/x86_64-linux-gnu/libc_nonshared.a  AS_NEEDED ( /lib64/ld-linux-x86-64.so.2 ) )\n\
            INPUT(libbeside.so.1)\n";
        let mut found = script_inputs(script, &dir.join("libx.so"));
        found.sort();
        let mut expected = [
            Path::new("/lib/x86_64-linux-gnu/libc.so.6").to_path_buf(),
            Path::new("/lib64/ld-linux-x86-64.so.2").to_path_buf(),
            dir.join("libbeside.so.1"),
        ];
        expected.sort();
        assert_eq!(found, expected);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
