//! Module files the cache target works on: a few slots in a directory of the process's own,
//! each holding a version of a module whose one function returns a number saying which slot
//! and version it is (so a held module can be asked whether it is still the version it was),
//! or bytes that are no module.

use std::path::{Path, PathBuf};

use smf_format::template::TemplateKind;
use smf_format::write::{ModuleBuilder, SymbolSpec, TemplateSpec};
use smf_format::Dialect;

/// Slots (module files).
pub(super) const SLOTS: u8 = 4;

/// What a slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Version {
    /// A module whose function returns [`value`] of its slot and this number; the number also
    /// sets its size (a page more code per step), so that byte budgets come into play.
    Module(u8),
    /// Bytes that are no module.
    Garbage,
}

/// What the function of `slot` at `version` returns.
pub(super) fn value(slot: u8, version: u8) -> i64 {
    i64::from(slot) * 1000 + i64::from(version)
}

/// The name of `slot`'s function (distinct per slot, so that resolving a name finds one).
pub(super) fn function_name(slot: u8) -> Vec<u8> {
    format!("fuzz_value_{slot}").into_bytes()
}

/// The directory of this process's module files (emptied once per process; those of
/// processes that have ended are removed then).
pub(super) fn directory() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        const PREFIX: &str = "smf-fuzz-cache-";
        for entry in std::fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let pid = name.to_str().and_then(|n| n.strip_prefix(PREFIX));
            if pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = std::env::temp_dir().join(format!("{PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::create_dir_all(&dir);
        dir
    })
}

/// The names the module at [`generics`] offers in its note ("possible" rows), and one it does
/// not.
pub(super) const OFFERED: [&str; 4] = ["square$i64", "identity$i64", "square$f64", "missing$i64"];

/// The path of a module offering instantiations (its note lists the first three of
/// [`OFFERED`], from templates `square` and `identity`), written once per process.
pub(super) fn generics() -> &'static Path {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let mut b = builder();
        b.add_code(b".text", &return_constant(7));
        b.add_symbol(SymbolSpec::function(b"seven", 0, 8));
        b.note_sdn(
            "instantiations |id, template, type_args, mangled_name, from_file, from_loc, to_obj, status|\n\
             possible |id, template, type_args, mangled_name, required_by, can_defer|\n\
             \x20   0, \"square\", \"i64\", \"square$i64\", \"main\", true\n\
             \x20   1, \"identity\", \"i64\", \"identity$i64\", \"main\", true\n\
             \x20   2, \"square\", \"f64\", \"square$f64\", \"main\", true",
        );
        for name in [&b"square"[..], b"identity"] {
            b.add_template_symbol(TemplateSpec {
                kind: TemplateKind::Function,
                name: name.to_vec(),
                params: vec![b"T".to_vec()],
                body: b"fn body".to_vec(),
            });
        }
        let path = directory().join("generics.smf");
        if let Err(error) = std::fs::write(&path, b.build().unwrap_or_default()) {
            panic!("cannot write the fuzz target's module file: {error}");
        }
        path
    })
}

/// A path where no file is.
pub(super) fn missing() -> &'static Path {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| directory().join("missing.smf"))
}

/// The path of a file that is no module, written once per process.
pub(super) fn garbage() -> &'static Path {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let path = directory().join("garbage.smf");
        if let Err(error) = std::fs::write(&path, b"no module at all") {
            panic!("cannot write the fuzz target's file: {error}");
        }
        path
    })
}

/// A builder for this machine's modules.
fn builder() -> ModuleBuilder {
    let mut b = ModuleBuilder::new(if cfg!(target_arch = "aarch64") { Dialect::R96 } else { Dialect::S128 });
    b.header(|h| h.arch = smf_runtime::load::HOST_ARCH);
    b
}

/// The path of `slot`.
pub(super) fn path(slot: u8) -> PathBuf {
    directory().join(format!("slot{slot}.smf"))
}

/// Writes `version` into `slot` as a new file (renamed into place: a new identity, as a
/// replaced module file has). The file it replaces is kept open in `replaced`, so that its
/// inode is not reused for a later version: a file replaced by one of the same length, inode
/// and timestamp tick is one no `stat` can tell apart (a limit of reloading by file identity,
/// not what this target looks for).
pub(super) fn write(slot: u8, version: Version, replaced: &mut Vec<std::fs::File>) {
    if let Ok(old) = std::fs::File::open(path(slot)) {
        replaced.push(old);
    }
    let bytes = match version {
        Version::Module(v) => module(slot, v),
        Version::Garbage => b"not a module at all".to_vec(),
    };
    let staging = directory().join(format!("slot{slot}.new"));
    let written = std::fs::write(&staging, bytes).and_then(|()| std::fs::rename(&staging, path(slot)));
    if let Err(error) = written {
        panic!("cannot write the fuzz target's module file: {error}");
    }
}

/// The module of `slot` at `version`: its function returns [`value`] (code for this machine).
fn module(slot: u8, version: u8) -> Vec<u8> {
    let mut code = return_constant(value(slot, version));
    code.resize(code.len() + usize::from(version % 4) * 4096, 0);
    let mut b = builder();
    b.add_code(b".text", &code);
    b.add_symbol(SymbolSpec::function(&function_name(slot), 0, 8));
    b.build().unwrap_or_default()
}

/// `return value;` (value below 65,536) in this machine's code.
pub(super) fn return_constant(value: i64) -> Vec<u8> {
    let value = u32::try_from(value).unwrap_or(0) & 0xffff;
    if cfg!(target_arch = "aarch64") {
        // movz x0, #value; ret
        let movz = 0xd280_0000 | (value << 5);
        [movz.to_le_bytes(), 0xd65f_03c0u32.to_le_bytes()].concat()
    } else {
        // mov eax, value; ret; padding to 8 bytes
        let mut code = vec![0xb8];
        code.extend_from_slice(&value.to_le_bytes());
        code.extend_from_slice(&[0xc3, 0xcc, 0xcc]);
        code
    }
}
