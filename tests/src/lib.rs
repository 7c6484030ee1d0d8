//! Shared helpers for the integration tests: fixtures and an allocation counter.

// Casts here are of test and tool values known to be small.
#![allow(clippy::cast_possible_truncation)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use std::time::Duration;

use smf_format::write::samples;
use smf_format::Dialect;

mod maps;
pub use maps::{
    alone, assert_no_rwx, file_mappings, mapping_at, mappings_within, maps, resident, writable_aliases,
    FileMapping,
};

/// Every fixture the sweeps run over: name and bytes.
pub fn fixtures() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for d in Dialect::ALL {
        out.push((format!("return_42_{d}"), samples::return_42(d)));
        out.push((format!("rich_{d}"), samples::rich(d)));
        out.push((format!("data_pointers_{d}"), samples::data_pointers(d)));
        out.push((format!("call_arrays_{d}"), samples::call_arrays(d)));
    }
    for d in [Dialect::S128, Dialect::R96] {
        out.push((format!("unwind_table_{d}"), samples::unwind_table(d)));
    }
    out.push(("stubbed_S128".into(), stubbed(Dialect::S128)));
    out.push(("stubbed_R96".into(), stubbed(Dialect::R96)));
    out
}

/// The shebang every stubbed fixture starts with.
pub const SHEBANG: &[u8] = b"#!/usr/bin/env simple\n";

/// The rich module of `dialect` behind a shebang stub (S128 trailer or R96 appended header).
pub fn stubbed(dialect: Dialect) -> Vec<u8> {
    let mut b = samples_builder(dialect);
    b.stub(SHEBANG);
    if dialect == Dialect::R96 {
        b.placement(smf_format::HeaderPlacement::Trailer);
    }
    b.build().expect("stubbed module builds")
}

/// A small builder with code, a symbol and a relocation.
pub fn samples_builder(dialect: Dialect) -> smf_format::write::ModuleBuilder {
    use smf_format::write::{ModuleBuilder, SymbolSpec};
    let mut b = ModuleBuilder::new(dialect);
    b.add_code(b".text", &samples::RETURN_42);
    let main = b.add_symbol(SymbolSpec::function(b"main", 0, 6));
    b.add_relocation(1, main, smf_format::RelocKind::Pc32, 0);
    b.note_sdn("possible |id, template, type_args, mangled_name, required_by, can_defer|\n 0, \"A\", \"B\", \"A$B\", \"m\", true");
    b.entry_point(0);
    b
}

/// A global allocator that counts allocations made by the current thread, so tests can assert
/// that parsing allocates nothing.
#[derive(Debug)]
pub struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method forwards to `System` unchanged; the counter is a const-initialized
// thread-local `Cell`, which never allocates and cannot re-enter the allocator.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations made by this thread so far (counts only where `CountingAllocator` is installed).
pub fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// CPU time this thread has used: unlike wall-clock time, unaffected by other processes.
pub fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec.unsigned_abs(), u32::try_from(t.tv_nsec).unwrap_or(0))
}

/// Machine code for a function returning `value` (x86-64: `mov eax, imm32; ret`, aarch64:
/// `movz x0, #imm16; ret`).
pub fn return_const(value: u16) -> Vec<u8> {
    if cfg!(target_arch = "aarch64") {
        let movz = 0xD280_0000u32 | (u32::from(value) << 5);
        let ret = 0xD65F_03C0u32;
        [movz.to_le_bytes(), ret.to_le_bytes()].concat()
    } else {
        let mut code = vec![0xB8];
        code.extend_from_slice(&u32::from(value).to_le_bytes());
        code.push(0xC3);
        code
    }
}

/// Offset and bytes that change a [`return_const`] function to return `value`.
pub fn return_const_patch(value: u16) -> (usize, Vec<u8>) {
    if cfg!(target_arch = "aarch64") {
        (0, (0xD280_0000u32 | (u32::from(value) << 5)).to_le_bytes().to_vec())
    } else {
        (1, u32::from(value).to_le_bytes().to_vec())
    }
}

/// Calls the sealed code at the start of `block` as `extern "C" fn() -> i64` (the tests'
/// blocks hold [`return_const`] code); panics if the block is not sealed code.
#[allow(unsafe_code)]
pub fn call(block: &smf_runtime::exec::Block<'_>) -> i64 {
    // SAFETY: the tests' code blocks hold functions returning a constant in rax/x0.
    let f = unsafe { block.function::<extern "C" fn() -> i64>(0) }.expect("sealed code");
    f.get()()
}

/// Loading from Rust: the helpers the loading tests share.
pub mod loading {
    use std::sync::Arc;

    use smf_runtime::exec::ExecAllocator;
    use smf_runtime::load::{LoadError, LoadOptions, LoadedModule, Resolved, Resolver};

    /// Calls the exported function `name` of `module` as `extern "C" fn() -> i64`.
    #[allow(unsafe_code)]
    pub fn call0(module: &LoadedModule<'_>, name: &[u8]) -> i64 {
        // SAFETY: every function called here is a test module's function returning an integer.
        let f = unsafe { module.function::<extern "C" fn() -> i64>(name) };
        f.unwrap_or_else(|| panic!("no function {}", String::from_utf8_lossy(name))).get()()
    }

    pub fn load<'a>(
        exec: &'a ExecAllocator,
        file: &[u8],
        resolver: &dyn Resolver,
    ) -> Result<LoadedModule<'a>, LoadError> {
        LoadedModule::load(exec, file, resolver, &LoadOptions::default())
    }

    /// Resolves against loaded modules, keeping them alive from their importers.
    #[derive(Debug)]
    pub struct Modules<'a>(pub Vec<Arc<LoadedModule<'a>>>);

    impl Resolver for Modules<'static> {
        fn resolve(&self, name: &[u8]) -> Option<Resolved> {
            self.0.iter().find_map(|m| {
                let addr = m.symbol(name)?;
                Some(Resolved { addr, keepalive: Some(m.clone()) })
            })
        }
    }

    pub fn leak_allocator() -> &'static ExecAllocator {
        Box::leak(Box::new(ExecAllocator::default()))
    }
}

/// Modules that link to each other, with real x86-64 code, for the loading tests (Rust and C).
pub mod linking {
    use smf_format::template::TemplateKind;
    use smf_format::write::{samples, ModuleBuilder, SymbolSpec, TemplateSpec};
    use smf_format::{Dialect, RelocKind};

    /// A library exporting `five` (returns 5) and `counter` (data, 7).
    pub fn library(dialect: Dialect) -> Vec<u8> {
        let mut b = ModuleBuilder::new(dialect);
        b.add_code(b".text", &[0xB8, 5, 0, 0, 0, 0xC3]);
        b.add_symbol(SymbolSpec::function(b"five", 0, 6));
        if dialect == Dialect::R72 {
            // R72 cannot address data sections: keep `counter` inside the code.
            b.add_code(b".text.data", &7u64.to_le_bytes());
            b.add_symbol(SymbolSpec {
                kind: smf_format::SymbolKind::Data,
                ..SymbolSpec::function(b"counter", 6, 8)
            });
        } else {
            let data = b.add_data(b".data", &7u64.to_le_bytes());
            b.add_symbol(SymbolSpec::data(b"counter", data, 0, 8));
        }
        b.build().unwrap()
    }

    /// A module (R96) whose function `name` returns `value`, with `data` bytes of writable
    /// data (so that it weighs more).
    pub fn returning(name: &str, value: u8, data: usize) -> Vec<u8> {
        let mut b = ModuleBuilder::new(Dialect::R96);
        b.add_code(b".text", &[0xB8, value, 0, 0, 0, 0xC3]);
        b.add_symbol(SymbolSpec::function(name.as_bytes(), 0, 6));
        if data > 0 {
            b.add_data(b".data", &vec![1; data]);
        }
        b.build().unwrap()
    }

    /// A module importing each of `imports` (R96), and for each import `N` two functions:
    /// `addr_N` returns the address it resolved to (`mov rax, [rip+GOT(N)]; ret`), `call_N`
    /// jumps to it with the caller's arguments (`jmp [rip+GOT(N)]`). Each import has two
    /// symbol entries, so that a resolver asked once per name is seen to be.
    pub fn importer(imports: &[&str]) -> Vec<u8> {
        let mut b = ModuleBuilder::new(Dialect::R96);
        let mut code = Vec::new();
        let mut relocations = Vec::new();
        for i in 0..imports.len() {
            let addr = code.len() as u64;
            code.extend_from_slice(&[0x48, 0x8B, 0x05, 0, 0, 0, 0, 0xC3]);
            let call = code.len() as u64;
            code.extend_from_slice(&[0xFF, 0x25, 0, 0, 0, 0]);
            code.resize(code.len().next_multiple_of(16), 0xCC);
            relocations.push((i, addr + 3, call + 2));
        }
        b.add_code(b".text", &code);
        let mut symbols = Vec::new();
        for (i, name) in imports.iter().enumerate() {
            let at = (i * 16) as u64;
            b.add_symbol(SymbolSpec::function(format!("addr_{name}").as_bytes(), at, 8));
            b.add_symbol(SymbolSpec::function(format!("call_{name}").as_bytes(), at + 8, 6));
        }
        for name in imports {
            symbols.push(b.add_symbol(SymbolSpec::import(name.as_bytes())));
        }
        for name in imports {
            b.add_symbol(SymbolSpec::import(name.as_bytes()));
        }
        for (i, addr, call) in relocations {
            b.add_relocation(addr, symbols[i], RelocKind::GotPc32, -4);
            b.add_relocation(call, symbols[i], RelocKind::GotPc32, -4);
        }
        b.build().unwrap()
    }

    /// An application using every x86-64 relocation kind of its dialect:
    /// - `local_counter`: `mov rax, [rip+counter]; ret` (pc32, to its own data, 11)
    /// - `call_five`: `sub rsp, 8; call five; add rsp, 8; ret` (plt32 to an import)
    /// - `got_counter`: `mov rax, [rip+GOT(counter)]; mov rax, [rax]; ret` (got_pc32 to an import)
    /// - `addr_of_local`: `movabs rax, local_data; ret` (abs64)
    /// - `small`: `mov eax, imm32; ret` (abs32 in S128, against an import resolved from a table)
    /// - `add3`: `a + b + c`
    pub fn application(dialect: Dialect) -> Vec<u8> {
        application_builder(dialect).build().unwrap()
    }

    /// [`application`] linked as `smf pack` links (`ModuleBuilder::link`): its calls and GOT
    /// loads of imports go through the stubs and GOT slots the linked layout pins.
    pub fn linked_application(dialect: Dialect) -> Vec<u8> {
        let mut b = application_builder(dialect);
        b.link().unwrap();
        b.build().unwrap()
    }

    /// [`application`]'s builder, complete.
    fn application_builder(dialect: Dialect) -> ModuleBuilder {
        let mut b = ModuleBuilder::new(dialect);
        let mut code = Vec::new();
        let at = |code: &Vec<u8>| code.len() as u64;
        let f_local = at(&code);
        code.extend_from_slice(&[0x48, 0x8B, 0x05, 0, 0, 0, 0, 0xC3]);
        code.resize(16, 0xCC);
        let f_call = at(&code);
        code.extend_from_slice(&[0x48, 0x83, 0xEC, 0x08, 0xE8, 0, 0, 0, 0, 0x48, 0x83, 0xC4, 0x08, 0xC3]);
        code.resize(32, 0xCC);
        let f_got = at(&code);
        code.extend_from_slice(&[0x48, 0x8B, 0x05, 0, 0, 0, 0, 0x48, 0x8B, 0x00, 0xC3]);
        code.resize(48, 0xCC);
        let f_abs64 = at(&code);
        code.extend_from_slice(&[0x48, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0xC3]);
        code.resize(64, 0xCC);
        let f_small = at(&code);
        code.extend_from_slice(&[0xB8, 0, 0, 0, 0, 0xC3]);
        code.resize(72, 0xCC);
        let f_add3 = at(&code);
        code.extend_from_slice(&[0x48, 0x8D, 0x04, 0x37, 0x48, 0x01, 0xD0, 0xC3]); // lea rax,[rdi+rsi]; add rax,rdx
        code.resize(80, 0xCC);
        let local_data_in_code = dialect == Dialect::R72;
        if local_data_in_code {
            code.extend_from_slice(&11u64.to_le_bytes());
        }
        b.add_code(b".text", &code);
        let local = if local_data_in_code {
            b.add_symbol(SymbolSpec {
                kind: smf_format::SymbolKind::Data,
                ..SymbolSpec::function(b"local_data", 80, 8)
            })
        } else {
            let data = b.add_data(b".data", &11u64.to_le_bytes());
            b.add_symbol(SymbolSpec::data(b"local_data", data, 0, 8))
        };
        b.add_symbol(SymbolSpec::function(b"local_counter", f_local, 8));
        b.add_symbol(SymbolSpec::function(b"call_five", f_call, 14));
        b.add_symbol(SymbolSpec::function(b"got_counter", f_got, 11));
        b.add_symbol(SymbolSpec::function(b"addr_of_local", f_abs64, 11));
        b.add_symbol(SymbolSpec::function(b"small", f_small, 6));
        b.add_symbol(SymbolSpec::function(b"add3", f_add3, 8));
        let five = b.add_symbol(SymbolSpec::import(b"five"));
        let counter = b.add_symbol(SymbolSpec::import(b"counter"));
        b.add_relocation(f_local + 3, local, RelocKind::Pc32, -4);
        b.add_relocation(f_call + 5, five, RelocKind::Plt32, -4);
        b.add_relocation(f_got + 3, counter, RelocKind::GotPc32, -4);
        b.add_relocation(f_abs64 + 2, local, RelocKind::Abs64, 0);
        if dialect == Dialect::S128 {
            let small = b.add_symbol(SymbolSpec::import(b"small_constant"));
            b.add_relocation(f_small + 1, small, RelocKind::Abs32, 0);
        } else {
            b.add_relocation(0, 0, RelocKind::None, 0);
        }
        b.entry_point(f_call);
        b
    }

    /// An R96 module returning 42 with the spec's note.sdn and a template symbol `List`.
    pub fn with_metadata() -> Vec<u8> {
        let mut b = ModuleBuilder::new(Dialect::R96);
        b.add_code(b".text", &samples::RETURN_42);
        b.add_symbol(SymbolSpec::function(b"main", 0, 6));
        b.note_sdn(samples::NOTE_SDN_EXAMPLE);
        b.add_template_symbol(TemplateSpec {
            kind: TemplateKind::Struct,
            name: b"List".to_vec(),
            params: vec![b"T".to_vec()],
            body: b"fields".to_vec(),
        });
        b.entry_point(0);
        b.build().unwrap()
    }
}

/// A module offering generic instantiations, for the load-time instantiation tests.
pub mod generics {
    use smf_format::template::TemplateKind;
    use smf_format::write::{ModuleBuilder, SymbolSpec, TemplateSpec};
    use smf_format::Dialect;

    /// Its note.sdn: one instantiation made at compile time, and what may be made at load time.
    /// `chain$*` depend on each other in a cycle (a -> b -> c -> a); `deep$N` needs
    /// `deep$N+1`; `List$Float` needs `identity$i64`.
    pub const NOTE: &str = r#"# generics.smf: what its code may instantiate
instantiations |id, template, type_args, mangled_name, from_file, from_loc, to_obj, status|
    0, "List", "Int", "List$Int", "app.spl", "app.spl:3:1", "app.o", "compiled"
possible |id, template, type_args, mangled_name, required_by, can_defer|
    0, "identity", "i64", "identity$i64", "main", true
    1, "List", "Float", "List$Float", "main", true
    2, "Pair", "Int, text", "Pair$Int_text", "main", false
    3, "chain", "a", "chain$a", "main", true
    4, "chain", "b", "chain$b", "main", true
    5, "chain", "c", "chain$c", "main", true
    6, "fails", "x", "fails$x", "main", true
    7, "deep", "1", "deep$1", "main", true
    8, "deep", "2", "deep$2", "main", true
    9, "deep", "3", "deep$3", "main", true
    10, "deep", "4", "deep$4", "main", true
    11, "deep", "5", "deep$5", "main", true
dependencies |from_inst, to_inst, dep_kind|
    "List$Float", "identity$i64", "call""#;

    /// The module (this machine's architecture): `answer` returns 42; templates `identity`
    /// (a function of `T`) and `List` (a struct of `T`); [`NOTE`].
    pub fn module() -> Vec<u8> {
        module_with_note(NOTE)
    }

    /// [`module`] with another note.sdn.
    pub fn module_with_note(note: &str) -> Vec<u8> {
        let mut b = ModuleBuilder::new(Dialect::R96);
        if cfg!(target_arch = "aarch64") {
            b.header(|h| h.arch = 1);
        }
        let code = super::return_const(42);
        b.add_code(b".text", &code);
        b.add_symbol(SymbolSpec::function(b"answer", 0, code.len() as u64));
        b.note_sdn(note);
        b.add_template_symbol(TemplateSpec {
            kind: TemplateKind::Function,
            name: b"identity".to_vec(),
            params: vec![b"T".to_vec()],
            body: b"fn identity(x: T) -> T: x".to_vec(),
        });
        b.add_template_symbol(TemplateSpec {
            kind: TemplateKind::Struct,
            name: b"List".to_vec(),
            params: vec![b"T".to_vec()],
            body: b"fields".to_vec(),
        });
        b.build().unwrap()
    }
}

/// A module that imports an instantiation another module offers, for the re-entrancy tests:
/// its `slot` (8 bytes in its code) holds the address of `identity$i64` once loaded, which a
/// resolver must find (through the instantiator, as a runtime does); it offers `extra$x`
/// (template "extra") itself.
pub mod importer {
    use smf_format::write::{ModuleBuilder, SymbolSpec};
    use smf_format::{Dialect, RelocKind};

    /// Its note.sdn.
    pub const NOTE: &str = r#"possible |id, template, type_args, mangled_name, required_by, can_defer|
    0, "extra", "x", "extra$x", "main", true"#;

    /// Where `slot` is in the code.
    pub const SLOT: u64 = 16;

    /// The module (this machine's architecture).
    pub fn module() -> Vec<u8> {
        let mut b = ModuleBuilder::new(Dialect::R96);
        if cfg!(target_arch = "aarch64") {
            b.header(|h| h.arch = 1);
        }
        let mut code = super::return_const(7);
        let len = code.len() as u64;
        code.resize(SLOT as usize + 8, 0);
        b.add_code(b".text", &code);
        b.add_symbol(SymbolSpec::function(b"seven", 0, len));
        b.add_symbol(SymbolSpec::function(b"slot", SLOT, 8));
        let identity = b.add_symbol(SymbolSpec::import(b"identity$i64"));
        b.add_relocation(SLOT, identity, RelocKind::Abs64, 0);
        b.note_sdn(NOTE);
        b.build().unwrap()
    }
}

/// A fresh directory for one test's files (`<tmp>/smf-<area>-<pid>-<name>`), removed with
/// everything in it when the test process exits (kept with `SMF_KEEP_SCRATCH` set, to look at
/// what a failing test left).
pub fn scratch(area: &str, name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("smf-{area}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    scratch_dirs::remove_at_exit(&dir);
    dir
}

/// The scratch directories a test process made, removed at its exit (the test harness ends
/// with `exit`, which runs `atexit` handlers; a test's own `Drop` would remove a directory
/// that a `scratch(..).join(..)` still names).
mod scratch_dirs {
    use std::path::{Path, PathBuf};
    use std::sync::{Mutex, Once};

    /// The directories, and the process that made them.
    static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    static MADE_BY: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

    extern "C" {
        fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
    }

    /// Lists `dir` for removal when the process exits.
    pub(super) fn remove_at_exit(dir: &Path) {
        static REGISTERED: Once = Once::new();
        REGISTERED.call_once(|| {
            MADE_BY.store(std::process::id(), std::sync::atomic::Ordering::Relaxed);
            #[allow(unsafe_code)]
            // SAFETY: `remove_all` is an `extern "C" fn()` that does not unwind (it catches
            // nothing that can panic: poisoning is taken care of, removal errors are ignored).
            unsafe {
                atexit(remove_all);
            }
        });
        DIRS.lock().unwrap_or_else(|p| p.into_inner()).push(dir.to_path_buf());
    }

    /// Removes the listed directories, in the process that listed them only (a forked child
    /// that exits runs the handlers it inherited: it must not take its parent's files away).
    extern "C" fn remove_all() {
        if std::process::id() != MADE_BY.load(std::sync::atomic::Ordering::Relaxed)
            || std::env::var_os("SMF_KEEP_SCRATCH").is_some()
        {
            return;
        }
        let dirs = std::mem::take(&mut *DIRS.lock().unwrap_or_else(|p| p.into_inner()));
        for dir in dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The directory of the test binaries' profile (`target/debug`, ...).
pub fn profile_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(std::path::Path::parent).expect("target/<profile>").to_path_buf()
}

/// The workspace root.
pub fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// `tests/c/NAME` compiled as `smf pack` expects (`gcc -c -O2 -fPIC`) into `dir`: the object's
/// path.
pub fn compile_c(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let object = dir.join(name).with_extension("o");
    let status = std::process::Command::new("gcc")
        .args(["-c", "-O2", "-fPIC"])
        .arg(workspace().join("tests/c").join(name))
        .arg("-o")
        .arg(&object)
        .status()
        .expect("gcc");
    assert!(status.success(), "gcc failed on {name}");
    object
}

/// Builds the `smf` library (`libsmf.a`, `libsmf.so`, with the execution manager: feature
/// `cranelift`), the `smf` binary (package `smf-tool`) and the examples into the test profile's
/// target directory, fresh even when only this package's tests were asked for.
///
/// It builds what `cargo test --workspace` builds (the workspace's libraries, tests and
/// examples, in the test profile, features unified with the tests' dependencies), plus the
/// `smf` binary: after that command every unit is already built and only the binary is
/// linked. (A `cargo build -p smf-loader -p smf-tool` resolves features without the tests'
/// dependencies, in the dev profile: a second build of every dependency, Cranelift's among
/// them, minutes on a CI machine.)
pub fn build_smf_package() -> std::path::PathBuf {
    let profile = profile_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "--quiet", "--workspace", "--lib", "--tests", "--examples", "--bin", "smf"])
        .current_dir(workspace());
    if profile.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    } else {
        cmd.args(["--profile", "test"]);
    }
    if let Some(target) = profile.parent() {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    assert!(
        cmd.status().expect("run cargo build").success(),
        "cargo build of the workspace and the smf binary failed"
    );
    // Programs linked against libsmf.so record its SONAME, libsmf.so.0: give it that name too,
    // as an installation does (`cargo xtask install`).
    // (Test binaries run side by side: one of them makes the link, the others find it.)
    match std::os::unix::fs::symlink("libsmf.so", profile.join("libsmf.so.0")) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => panic!("link libsmf.so.0: {e}"),
        _ => {}
    }
    profile
}

/// CLIF functions of chosen shapes for the execution manager's tests (`exec_manager`,
/// `scaling`): the ones register allocation finds hardest.
pub mod clif {
    /// `%name(i64) -> i64` over `values` values all live at once: `v_i = v_(i-1) + v0` (so
    /// `v_i = (i + 1) * v0`), then their sum from the last to the first, added to `v0`: `(values +
    /// 1) * (values + 2) / 2` times the argument.
    pub fn all_live(name: &str, values: usize) -> String {
        let mut text = defining(name, values);
        let sum = summing(&mut text, values);
        text.push_str(&format!("    return v{sum}\n}}\n"));
        text
    }

    /// `%name(i64) -> i64` with `blocks` blocks in a chain, each adding one of `blocks` values
    /// defined in the first block (all live across every block) to a running sum: as
    /// [`all_live`]'s, `(blocks + 1) * (blocks + 2) / 2` times the argument.
    pub fn live_across_blocks(name: &str, blocks: usize) -> String {
        let mut text = defining(name, blocks);
        text.push_str("    jump block1\n");
        let (mut sum, mut next) = (0, blocks + 1);
        for b in 1..=blocks {
            text.push_str(&format!("block{b}:\n    v{next} = iadd v{sum}, v{b}\n    jump block{}\n", b + 1));
            (sum, next) = (next, next + 1);
        }
        text.push_str(&format!("block{}:\n    return v{sum}\n}}\n", blocks + 1));
        text
    }

    /// `%name(i64) -> i64` with `values` values defined in its first block ([`all_live`]'s),
    /// live across a `br_table` of `entries` entries (all to one block, which sums them as
    /// [`all_live`] does; the default to a block returning the argument): `(values + 1) *
    /// (values + 2) / 2` times an argument of 1.
    pub fn live_across_table(name: &str, values: usize, entries: usize) -> String {
        let mut text = defining(name, values);
        let index = 2 * values + 1;
        let targets = vec!["block1"; entries].join(", ");
        text.push_str(&format!(
            "    v{index} = ireduce.i32 v0\n    br_table v{index}, block2, [{targets}]\nblock1:\n"
        ));
        let sum = summing(&mut text, values);
        text.push_str(&format!("    return v{sum}\nblock2:\n    return v0\n}}\n"));
        text
    }

    /// The function's opening and its first block's `values` values, `v_i = v_(i-1) + v0`.
    fn defining(name: &str, values: usize) -> String {
        let mut text = format!("function %{name}(i64) -> i64 {{\nblock0(v0: i64):\n");
        for i in 1..=values {
            text.push_str(&format!("    v{i} = iadd v{}, v0\n", i - 1));
        }
        text
    }

    /// The sum of `v0` and the `values` values, from the last to the first, onto `text`; the
    /// number of the value holding it.
    fn summing(text: &mut String, values: usize) -> usize {
        let (mut sum, mut next) = (0, values + 1);
        for i in (1..=values).rev() {
            text.push_str(&format!("    v{next} = iadd v{sum}, v{i}\n"));
            (sum, next) = (next, next + 1);
        }
        sum
    }
}
