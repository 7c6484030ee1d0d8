//! Every other function of `smf.h` at an address-space limit: a case each, swept by
//! `address_space_limit_child` as the cases of `main.rs` are (`smf_calls.rs`: the `smf_*`
//! functions; `rt_calls.rs`: the `rt_*` ones, with the budget of executable memory the header
//! declares among them). Each case prepares its state with no limit set (a loaded module, a
//! cache, an instantiator, an allocation or a mapping, an execution manager) and makes its one
//! call under the limit, which succeeds when the call does what `smf.h` says (a handle, a 0
//! code, the value expected; for a function returning nothing, no failure recorded and its
//! effect seen). Calls that cannot fail (getters, frees) succeed at the tightest limit; those
//! whose input is large fail there first, with an error naming memory.
//!
//! One test runs every case in a child of its own; another checks that every function `smf.h`
//! declares has a case, and that every case is one of them.

use std::cell::Cell;
use std::ffi::{c_char, CStr};
use std::path::Path;

use smf::ffi::smf_module as module_ffi;
use smf_format::template::TemplateKind;
use smf_format::write::{ModuleBuilder, SymbolSpec, TemplateSpec};
use smf_format::Dialect;

use super::{Module, SWEPT_HERE};

/// One export's case.
struct Case {
    /// The export's name, and the case's (`SMF_RLIMIT_CASE`).
    name: &'static str,
    /// Whether the call must fail at the tightest limit (it allocates in proportion to its input).
    fails_at_0: bool,
    /// Writes the files the case reads into its directory (no limit set).
    files: fn(&Path),
    /// The child's side: the sweep of the call, over the files in the directory.
    run: fn(&Path),
}

/// The [`Case`] of the function `$run`, named after it (the export it calls).
macro_rules! case {
    ($run:ident, $fails_at_0:expr, $files:expr) => {
        Case { name: stringify!($run), fails_at_0: $fails_at_0, files: $files, run: $run }
    };
}

mod rt_calls;
mod smf_calls;

/// Every case of this module.
fn cases() -> impl Iterator<Item = &'static Case> {
    smf_calls::CASES.iter().chain(rt_calls::CASES)
}

/// The child's side of case `name` (it panics on a name no case has).
pub(super) fn child(name: &str, dir: &Path) {
    let case = cases().find(|c| c.name == name).unwrap_or_else(|| panic!("no case {name}"));
    // The cases' files are fresh: the change watcher may start its thread during a call, under
    // the limit (a thread of the C library's, which fails to start rather than ending the
    // process: `worker.rs`).
    (case.run)(dir);
}

#[test]
fn every_export_at_an_address_space_limit_fails_cleanly_or_works() {
    // One child per case, in turn; every failure is collected, so that one hides no other.
    let failures: Vec<String> =
        cases().filter_map(|c| crate::swept_in_child(c.name, c.fails_at_0, c.files).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases().count(),
        failures.join("\n\n")
    );
}

#[test]
fn every_export_of_smf_h_has_an_address_space_case() {
    let header = std::fs::read_to_string(smf_tests::workspace().join("shell/include/smf.h")).unwrap();
    let declared = declared_functions(&header);
    let found = |name: &str| declared.iter().any(|f| f == name);
    assert!(found("smf_last_error") && found("rt_exec_manager_last_error"), "not read as C: {declared:?}");
    let mut names: Vec<&str> = SWEPT_HERE.iter().copied().chain(cases().map(|c| c.name)).collect();
    let missing: Vec<&String> = declared.iter().filter(|f| !names.contains(&f.as_str())).collect();
    let unknown: Vec<&&str> = names.iter().filter(|n| !declared.iter().any(|f| f == *n)).collect();
    assert!(missing.is_empty(), "functions of smf.h without a case: {missing:?}");
    assert!(unknown.is_empty(), "cases of no function of smf.h: {unknown:?}");
    let count = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), count, "a case is given twice");
}

/// The functions `header` declares: in each declaration, the name before its first `(`.
/// Comments, preprocessor lines (macros among them) and typedefs (of callback types among them)
/// are left out.
fn declared_functions(header: &str) -> Vec<String> {
    let mut code = String::new();
    let mut rest = header;
    while let Some(start) = rest.find("/*") {
        code.push_str(&rest[..start]);
        let end = rest[start..].find("*/").expect("every comment ends");
        rest = &rest[start + end + 2..];
    }
    code.push_str(rest);
    let code: Vec<&str> = code.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
    let code = code.join("\n");
    code.split([';', '{', '}'])
        .map(str::trim)
        .filter(|declaration| !declaration.starts_with("typedef"))
        .filter_map(|declaration| {
            let before = declaration[..declaration.find('(')?].trim_end();
            let name = before.rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next()?;
            (!name.is_empty()).then(|| name.to_owned())
        })
        .collect()
}

// ---- What the cases share -------------------------------------------------------------------

/// For cases that read no file.
fn no_files(_: &Path) {}

/// The file of [`rich_module`] in a case's directory.
const RICH: &str = "rich.smf";

/// A module of this machine's code: `answer` (returns 42; the entry point), templates `identity`
/// and `List`, and the note.sdn of `smf_tests::generics` (which offers `identity$i64`).
fn rich_module() -> Vec<u8> {
    let mut b = ModuleBuilder::new(Dialect::R96);
    if cfg!(target_arch = "aarch64") {
        b.header(|h| h.arch = 1);
    }
    let code = smf_tests::return_const(42);
    b.add_code(b".text", &code);
    b.add_symbol(SymbolSpec::function(b"answer", 0, u64::try_from(code.len()).unwrap()));
    b.note_sdn(smf_tests::generics::NOTE);
    for (kind, name, body) in [
        (TemplateKind::Function, "identity", "fn identity(x: T) -> T: x"),
        (TemplateKind::Struct, "List", "fields"),
    ] {
        let (name, params, body) = (name.into(), vec![b"T".to_vec()], body.into());
        b.add_template_symbol(TemplateSpec { kind, name, params, body });
    }
    b.entry_point(0);
    b.build().unwrap()
}

/// Writes [`RICH`].
fn write_rich(dir: &Path) {
    std::fs::write(dir.join(RICH), rich_module()).unwrap();
}

/// [`rich_module`], loaded from memory (no limit set).
fn loaded() -> Module {
    let bytes = rich_module();
    let module = Module::default();
    // SAFETY: `bytes.len()` readable bytes.
    let handle = unsafe { module_ffi::smf_module_load_bytes(bytes.as_ptr(), bytes.len()) };
    assert!(module.keep(handle), "{}", smf::ffi::last_error());
    module
}

/// Whether the call just made recorded no failure (the sweep forgets the thread's last error
/// before each call). Allocates nothing.
fn nothing_recorded() -> bool {
    let error = smf::ffi::error::smf_last_error();
    // SAFETY: the thread's NUL-terminated buffer, valid for the thread's life.
    unsafe { *error == 0 }
}

/// Whether the C string `text` (or NULL) reads `expected`. Allocates nothing.
///
/// # Safety
/// `text` is NULL or a NUL-terminated string.
unsafe fn reads(text: *const c_char, expected: &[u8]) -> bool {
    // SAFETY: non-null here, and NUL-terminated per our caller's contract.
    !text.is_null() && unsafe { CStr::from_ptr(text) }.to_bytes() == expected
}

/// Whether the thread's last error mentions `part`. Allocates nothing.
fn error_mentions(part: &[u8]) -> bool {
    // SAFETY: the thread's NUL-terminated buffer, valid for the thread's life.
    let error = unsafe { CStr::from_ptr(smf::ffi::error::smf_last_error()) }.to_bytes();
    error.windows(part.len()).any(|w| w == part)
}

/// A handle the state holds until `run` takes it (to free it, the call under test): freed with
/// `free` when dropped unless taken (with no limit set).
struct Taken<H: Copy> {
    handle: Cell<Option<H>>,
    free: fn(H),
}

impl<H: Copy> Taken<H> {
    /// None yet.
    fn empty(free: fn(H)) -> Self {
        Self { handle: Cell::new(None), free }
    }

    fn new(handle: H, free: fn(H)) -> Self {
        Self { handle: Cell::new(Some(handle)), free }
    }

    /// Holds `handle` (to free when dropped).
    fn put(&self, handle: H) {
        self.handle.set(Some(handle));
    }

    fn get(&self) -> H {
        self.handle.get().expect("a handle")
    }

    /// The handle, no longer freed when dropped.
    fn take(&self) -> H {
        self.handle.take().expect("a handle")
    }
}

impl<H: Copy> Drop for Taken<H> {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            (self.free)(handle);
        }
    }
}
