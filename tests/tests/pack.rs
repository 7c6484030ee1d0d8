//! The packer on real compiler output: C sources compiled by gcc at test time (`-O2 -fPIC`),
//! packed into every dialect that can hold them (by the library, `smf_tool::pack::pack`),
//! loaded and called; every result must equal the same function compiled natively by gcc and
//! called from a generated C driver. Also: jump tables and read-only pointer tables (packed with
//! the code), calls across two packed modules; and through the `smf` binary: `smf pack`'s notes,
//! `smf run`'s crash reports and linking, and each thing SMF cannot represent is a clear error.

#![cfg(target_arch = "x86_64")]
// Calling loaded code goes through the (unsafe) typed lookup; test values are small.
#![allow(unsafe_code, clippy::cast_possible_truncation)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use smf_core::exec::ExecAllocator;
use smf_core::load::{LoadOptions, LoadedModule, ReadOnlyData, Resolved, Resolver};
use smf_core::module::RelocatedImage;
use smf_core::{Dialect, RelocKind, SectionType};
use smf_tests::{build_smf_package, workspace};
use smf_tool::pack::{Note, PackError, PackFailure};

/// A call: function name and integer arguments.
type Call = (&'static str, &'static [i64]);

fn smf_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_smf_package().join("smf"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = smf_tests::profile_dir().join("pack-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn source(name: &str) -> PathBuf {
    let examples = workspace().join("examples/c").join(name);
    if examples.exists() {
        examples
    } else {
        workspace().join("tests/c").join(name)
    }
}

/// Results of `calls` from the sources compiled natively with a generated driver. A source's
/// own `main` is renamed `example_main` (callable as "main").
fn native(dir: &Path, sources: &[&str], calls: &[Call]) -> Vec<i64> {
    let mut driver = String::from("#include <stdio.h>\n");
    for (name, args) in calls {
        let name = if *name == "main" { "example_main" } else { name };
        let params = if args.is_empty() { "void".to_owned() } else { vec!["long"; args.len()].join(", ") };
        driver.push_str(&format!("long {name}({params});\n"));
    }
    driver.push_str("int main(void) {\n");
    for (name, args) in calls {
        let name = if *name == "main" { "example_main" } else { name };
        let args: Vec<String> = args.iter().map(|a| format!("{a}L")).collect();
        driver.push_str(&format!("    printf(\"%ld\\n\", {name}({}));\n", args.join(", ")));
    }
    driver.push_str("    return 0;\n}\n");
    let driver_path = dir.join("driver.c");
    std::fs::write(&driver_path, driver).unwrap();
    let exe = dir.join("native");
    let mut gcc = Command::new("gcc");
    gcc.args(["-O2", "-fPIC", "-Dmain=example_main", "-o"]).arg(&exe);
    for s in sources {
        gcc.arg(source(s));
    }
    gcc.args(["-lm", "-lstdc++"]);
    // The driver's own main must keep its name: compile it separately.
    let driver_obj = dir.join("driver.o");
    run(Command::new("gcc").args(["-O2", "-c", "-o"]).arg(&driver_obj).arg(&driver_path));
    gcc.arg(&driver_obj);
    run(&mut gcc);
    let out = run(&mut Command::new(&exe));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.parse().unwrap()).collect()
}

/// `gcc -c -O2` (with `extra`) into an object in `dir`; returns (its name for messages, its bytes).
fn compile(dir: &Path, source: &Path, extra: &[&str]) -> (String, Vec<u8>) {
    let object = dir.join(source.file_name().unwrap()).with_extension("o");
    run(Command::new("gcc").args(["-c", "-O2"]).args(extra).arg(source).arg("-o").arg(&object));
    (object.display().to_string(), std::fs::read(&object).unwrap())
}

/// `gcc -c -O2` then the packer into `dialect`; returns the module bytes and the packer's notes.
fn pack(
    dir: &Path,
    source_name: &str,
    dialect: Dialect,
    extra: &[&str],
) -> Result<(Vec<u8>, Vec<Note>), PackFailure> {
    smf_tool::pack::pack(&[compile(dir, &source(source_name), extra)], dialect)
}

/// Whether `notes` has one that `smf pack` prints by default (not routine) containing `text`.
fn says(notes: &[Note], text: &str) -> bool {
    notes.iter().any(|note| !note.routine && note.text.contains(text))
}

fn allocator() -> &'static ExecAllocator {
    static EXEC: OnceLock<ExecAllocator> = OnceLock::new();
    EXEC.get_or_init(ExecAllocator::default)
}

struct Loaded(Vec<Arc<LoadedModule<'static>>>);

impl Resolver for Loaded {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        self.0.iter().find_map(|m| Some(Resolved { addr: m.symbol(name)?, keepalive: Some(m.clone()) }))
    }
}

fn call(module: &LoadedModule<'_>, name: &str, args: &[i64]) -> i64 {
    type Integers = extern "C" fn(i64, i64, i64, i64, i64, i64) -> i64;
    // SAFETY: every function called here takes integer arguments and returns an integer.
    let f = unsafe { module.function::<Integers>(name.as_bytes()) };
    let f = f.unwrap_or_else(|| panic!("no function {name}")).get();
    let mut a = [0i64; 6];
    a[..args.len()].copy_from_slice(args);
    f(a[0], a[1], a[2], a[3], a[4], a[5])
}

fn check_source(name: &str, dialects: &[Dialect], calls: &[Call]) {
    let dir = scratch(name.trim_end_matches(".c"));
    let expected = native(&dir, &[name], calls);
    for &dialect in dialects {
        let (bytes, notes) =
            pack(&dir, name, dialect, &["-fPIC"]).unwrap_or_else(|e| panic!("{name} {dialect}: {e}"));
        // Routine drops (unwind tables, compiler identification) are not reported by default.
        assert!(!says(&notes, "dropped section"), "{notes:?}");
        let module = LoadedModule::load(allocator(), &bytes, &(), &LoadOptions::default()).unwrap();
        let got: Vec<i64> = calls.iter().map(|(f, args)| call(&module, f, args)).collect();
        assert_eq!(got, expected, "{name} packed as {dialect}");
    }
}

const ALL: [Dialect; 3] = [Dialect::S128, Dialect::R96, Dialect::R72];
const WITH_DATA: [Dialect; 2] = [Dialect::S128, Dialect::R96];

#[test]
fn recursion_matches_native() {
    let calls: &[Call] = &[
        ("fib", &[20]),
        ("factorial", &[15]),
        ("ackermann", &[2, 3]),
        ("ackermann", &[3, 3]),
        ("main", &[]),
    ];
    check_source("recursion.c", &ALL, calls);
}

#[test]
fn string_constants_match_native() {
    let calls: &[Call] = &[
        ("text_length", &[]),
        ("count_char", &[101]),
        ("count_char", &[97]),
        ("checksum", &[]),
        ("main", &[]),
    ];
    check_source("strings.c", &WITH_DATA, calls);
}

#[test]
fn global_data_matches_native() {
    let calls: &[Call] = &[
        ("bump", &[5]),
        ("bump", &[-2]),
        ("fill_and_sum", &[10]),
        ("call_count", &[]),
        ("main", &[]),
        ("call_count", &[]),
    ];
    check_source("globals.c", &WITH_DATA, calls);
}

/// `read_own()`, `read_table(2)`, `read_imported()` and `sum()` of got.c packed into `bytes`,
/// its import `imported` holding 35.
fn got_results(bytes: &[u8]) -> Vec<i64> {
    static IMPORTED: i64 = 35;
    let table: [(&[u8], usize); 1] = [(b"imported", &raw const IMPORTED as usize)];
    let resolver = smf_core::load::TableResolver(&table);
    let loaded = LoadedModule::load(allocator(), bytes, &resolver, &LoadOptions::default()).unwrap();
    [("read_own", &[][..]), ("read_table", &[2]), ("read_imported", &[]), ("sum", &[])]
        .iter()
        .map(|(f, args)| call(&loaded, f, args))
        .collect()
}

#[test]
fn got_loads_of_own_symbols_are_relaxed_and_imports_keep_their_slot() {
    use smf_core::{Module, RelocKind};
    let dir = scratch("got");
    let (bytes, _) = pack(&dir, "got.c", Dialect::S128, &["-fPIC"]).unwrap();
    let module = Module::parse(&bytes).unwrap();
    let kinds_against = |name: &[u8]| -> Vec<RelocKind> {
        module
            .relocations()
            .filter(|r| module.symbol(r.symbol).is_some_and(|s| s.name == name))
            .map(|r| r.kind)
            .collect()
    };
    let own = [kinds_against(b"own"), kinds_against(b"own_table")].concat();
    assert!(!own.is_empty() && own.iter().all(|&k| k == RelocKind::Pc32), "own globals: {own:?}");
    let imported = kinds_against(b"imported");
    assert!(!imported.is_empty() && imported.iter().all(|&k| k == RelocKind::GotPc32), "{imported:?}");

    // The relaxed code still reads the right values (lea instead of a load from the GOT), and the
    // import goes through its slot.
    assert_eq!(got_results(&bytes), [7, 3, 35, 7 + 4 + 35]);
}

#[test]
fn one_section_per_function_merges_into_one_text_section_as_ld_merges_them() {
    use smf_core::Module;
    let dir = scratch("function-sections");
    let code_sections = |bytes: &[u8]| -> Vec<(Vec<u8>, u64)> {
        let module = Module::parse(bytes).unwrap();
        module.code_sections().map(|(s, at)| (s.name.to_vec(), at)).collect()
    };
    // got.c's four functions, each in a section of its own; the GOT loads relaxed inside the
    // merged section at each function's place in it.
    let (bytes, _) = pack(&dir, "got.c", Dialect::S128, &["-fPIC", "-ffunction-sections"]).unwrap();
    assert_eq!(code_sections(&bytes), [(b".text".to_vec(), 0)]);
    assert_eq!(got_results(&bytes), [7, 3, 35, 7 + 4 + 35]);

    // A function aligned past a page starts a section of its own (the padding before it is not
    // stored), at its alignment in the code image; what follows it merges again.
    let source = dir.join("aligned.c");
    std::fs::write(
        &source,
        "long before(long x) { return x + 1; }\n\
         __attribute__((aligned(8192))) long aligned(long x) { return x * 3; }\n\
         long after(long x) { return aligned(x) + before(x); }\n",
    )
    .unwrap();
    let object = compile(&dir, &source, &["-fPIC", "-ffunction-sections"]);
    let (bytes, _) = smf_tool::pack::pack(&[object], Dialect::R96).unwrap();
    let sections = code_sections(&bytes);
    assert_eq!(sections.len(), 2, "{sections:?}");
    assert_eq!(sections[1].1 % 8192, 0, "{sections:?}");
    let first = Module::parse(&bytes).unwrap().code_sections().next().unwrap().0;
    assert!(first.size < 64 && first.virtual_size == 8192, "the padding is stored: {first:?}");
    let loaded = LoadedModule::load(allocator(), &bytes, &(), &LoadOptions::default()).unwrap();
    assert_eq!(call(&loaded, "after", &[5]), 15 + 6);

    // Every compiled shape, one section per function, against native.
    let expected = native(&dir, &["cases.c"], &[("sum_squares", &[100]), ("collatz", &[27])]);
    let (bytes, _) = pack(&dir, "cases.c", Dialect::R96, &["-fPIC", "-ffunction-sections"]).unwrap();
    assert_eq!(code_sections(&bytes).len(), 1);
    let loaded = LoadedModule::load(allocator(), &bytes, &(), &LoadOptions::default()).unwrap();
    assert_eq!([call(&loaded, "sum_squares", &[100]), call(&loaded, "collatz", &[27])][..], expected);
}

/// `bytes` (an ELF64 object) with section `name`'s size set to `size`.
fn with_section_size(mut bytes: Vec<u8>, name: &str, size: u64) -> Vec<u8> {
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes(b[at..at + 2].try_into().unwrap()) as usize;
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize;
    let (shoff, entsize, count, strndx) =
        (u64_at(&bytes, 0x28), u16_at(&bytes, 0x3a), u16_at(&bytes, 0x3c), u16_at(&bytes, 0x3e));
    let strings = u64_at(&bytes, shoff + strndx * entsize + 0x18);
    for i in 0..count {
        let header = shoff + i * entsize;
        let start = strings + u32::from_le_bytes(bytes[header..header + 4].try_into().unwrap()) as usize;
        let end = start + bytes[start..].iter().position(|&b| b == 0).unwrap();
        if &bytes[start..end] == name.as_bytes() {
            bytes[header + 0x20..header + 0x28].copy_from_slice(&size.to_le_bytes());
        }
    }
    bytes
}

#[test]
fn merging_sections_never_reaches_across_into_another_or_past_any_size() {
    let dir = scratch("merge-edges");
    // A GOT load at the very start of `.text.b`: the two bytes before it are `.text.a`'s, which
    // look like a `mov` opcode; relaxing must not rewrite them.
    let source = dir.join("edge.s");
    std::fs::write(
        &source,
        "    .section .text.a,\"ax\",@progbits\n    .globl fa\nfa: .byte 0x90, 0x8B, 0x05\n\
         .section .text.b,\"ax\",@progbits\n    .globl fb\nfb: .reloc ., R_X86_64_REX_GOTPCRELX, fa-4\n    .long 0\n    ret\n",
    )
    .unwrap();
    let (bytes, _) = smf_tool::pack::pack(&[compile(&dir, &source, &[])], Dialect::S128).unwrap();
    let module = smf_core::Module::parse(&bytes).unwrap();
    let (text, _) = module.code_sections().next().unwrap();
    assert_eq!(text.data[..3], [0x90, 0x8B, 0x05], "fa's bytes");
    assert!(module.relocations().all(|r| r.kind == RelocKind::GotPc32), "not relaxed at a part's start");

    // A bss section claiming nearly 2^64 bytes before another: refused as too large, never an
    // overflow (in a debug build, a panic).
    let source = dir.join("bss.c");
    std::fs::write(&source, "char a[16]; long b[4]; int f(void) { return a[0] + b[0]; }\n").unwrap();
    let (name, object) = compile(&dir, &source, &["-fdata-sections", "-fno-common"]);
    let object = with_section_size(object, ".bss.b", 0xFFFF_FFFF_FFFF_FFF9);
    let refused = smf_tool::pack::pack(&[(name, object)], Dialect::S128).unwrap_err().to_string();
    assert!(refused.contains("too large") || refused.contains("limit"), "{refused}");
}

#[test]
fn compiled_code_shapes_match_native() {
    let calls: &[Call] = &[
        ("sum_squares", &[100]),
        ("next_id", &[]),
        ("next_id", &[]),
        ("mulhi", &[0x7fff_ffff_ffff_ffff, 0x1234_5678]),
        ("apply", &[1, 30, 12]),
        ("apply", &[0, 30, 12]),
        ("collatz", &[27]),
        ("six", &[60, 5, 4, 3, 2, 1]),
    ];
    check_source("cases.c", &WITH_DATA, calls);
}

#[test]
fn pointers_in_writable_data_are_relocated_and_match_native() {
    // The calls run in order against one loaded module, as natively: the table and the
    // pointer changed by one call are what the next one reads.
    let calls: &[Call] = &[
        ("first", &[]),
        ("operate", &[0, 30, 12]),
        ("operate", &[1, 30, 12]),
        ("set_operation", &[0, 1]),
        ("operate", &[0, 30, 12]),
        ("name_sum", &[0]),
        ("name_sum", &[3]),
        ("list_sum", &[]),
        ("greeting_moves", &[1]),
        ("first", &[]),
    ];
    check_source("data_pointers.c", &WITH_DATA, calls);
}

#[test]
fn jump_tables_match_native_in_every_dialect() {
    let calls: &[Call] = &[
        ("dispatch", &[0, 40, 2]),
        ("dispatch", &[2, 40, 2]),
        ("dispatch", &[3, 40, 0]),
        ("dispatch", &[5, 3, 4]),
        ("dispatch", &[9, 12, 3]),
        ("dispatch", &[10, 1, 1]),
        ("dispatch", &[-1, 1, 1]),
        ("run_program", &[1, 100]),
        ("run_program", &[-77, 1000]),
    ];
    check_source("jump_tables.c", &ALL, calls);
}

#[test]
fn read_only_pointer_tables_become_relocated_rodata_and_match_native() {
    let calls: &[Call] = &[
        ("word_score", &[3]),
        ("word_score", &[7]),
        ("word_initial", &[12]),
        ("operate", &[0, 9, 4]),
        ("operate", &[1, 9, 4]),
        ("operate", &[2, 9, 4]),
        ("operate", &[3, 9, 4]),
        ("shape_score", &[0, 5]),
        ("shape_score", &[1, 5]),
        ("classify", &[97]),
        ("classify", &[99]),
        ("classify", &[101]),
        ("classify", &[122]),
    ];
    check_source("tables.c", &WITH_DATA, calls);

    let dir = scratch("tables-placement");
    let (bytes, notes) = pack(&dir, "tables.c", Dialect::S128, &["-fPIC"]).unwrap();
    assert!(!says(&notes, "into the code image"), "{notes:?}");
    // `shapes` (a const array of pointers, in `.data.rel.ro.local`) is a data symbol of the
    // module's rodata section, where its pointers are data relocations; the jump table in
    // `.rodata` likewise.
    let parsed = smf_core::Module::parse(&bytes).unwrap();
    let entry = parsed.symbols().find(|s| s.name == b"shapes").unwrap();
    assert_eq!(entry.kind, smf_core::SymbolKind::Data, "an object, not a function");
    let smf_core::SymbolTarget::Data { section, .. } = entry.target else { panic!("{:?}", entry.target) };
    let section = parsed.section(section).unwrap();
    assert_eq!(section.name, b".rodata");
    assert_eq!(section.section_type, SectionType::RoData);
    let data_relocations = parsed.relocations().filter(|r| r.image == RelocatedImage::Data).count();
    assert!(data_relocations >= 6, "{data_relocations} data relocations");
    for (options, expected) in [
        (LoadOptions::default(), "r-x"),
        (LoadOptions { read_only_data: ReadOnlyData::NotExecutable, ..LoadOptions::default() }, "r--"),
    ] {
        let module = LoadedModule::load(allocator(), &bytes, &(), &options).unwrap();
        let shapes = module.symbol(b"shapes").unwrap();
        let (_, perms) = smf_tests::mapping_at(shapes).unwrap();
        assert!(perms.starts_with(expected), "shapes lies in a {perms} mapping");
        // SAFETY: `shapes` points at two {const char *, long (*)(long)} pairs the loader relocated.
        let (name, area) = unsafe {
            let entry = shapes as *const usize;
            (std::ffi::CStr::from_ptr(*entry.add(2) as *const std::ffi::c_char), *entry.add(3))
        };
        assert_eq!(name.to_bytes(), b"triangle");
        // SAFETY: the second pointer is the module's `triangle_area(long)`.
        let area = unsafe { module.function_at::<extern "C" fn(i64) -> i64>(area) };
        assert_eq!(area.expect("a pointer into the module's code").get()(6), 18);
    }

    // R72 has no data sections: read-only data with relocations joins the code image there.
    let (_, notes) = pack(&dir, "jump_tables.c", Dialect::R72, &["-fPIC"]).unwrap();
    assert!(says(&notes, "packed .rodata into the code image"), "{notes:?}");
}

/// The lines a native program prints that is built from `driver` (C after `#include <stdio.h>`
/// and a `record(long)` that prints `record N`) and `sources`, linked against `library`'s
/// source built as a shared library (by the compiler named, as `lib{name}.so`): what `ld.so`
/// makes of the same code a test packs into modules.
fn native_with_library(
    dir: &Path,
    (compiler, library_source, name): (&str, &str, &str),
    sources: &[&str],
    driver: &str,
) -> Vec<String> {
    let library = dir.join(format!("lib{name}.so"));
    run(Command::new(compiler)
        .args(["-O2", "-fPIC", "-shared", "-o"])
        .arg(&library)
        .arg(source(library_source)));
    let driver_path = dir.join("driver.c");
    let record = "void record(long v) { printf(\"record %ld\\n\", v); }\n";
    std::fs::write(&driver_path, format!("#include <stdio.h>\n{record}{driver}")).unwrap();
    let exe = dir.join("native");
    let mut gcc = Command::new("gcc");
    // -rdynamic: the library's `record` is the program's.
    gcc.args(["-O2", "-fPIC", "-rdynamic", "-o"]).arg(&exe).arg(&driver_path);
    gcc.args(sources.iter().map(|s| source(s)));
    gcc.arg(format!("-L{}", dir.display()))
        .args([&format!("-l{name}"), &format!("-Wl,-rpath,{}", dir.display())]);
    run(&mut gcc);
    let out = run(&mut Command::new(&exe));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

thread_local! {
    /// What packed modules' `record` calls recorded on this thread, as the native run prints them.
    static RECORDED: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

extern "C" fn record(value: i64) {
    RECORDED.with(|r| r.borrow_mut().push(format!("record {value}")));
}

/// The host's `record`, then the modules in `Loaded`.
struct WithRecord(Loaded);

impl Resolver for WithRecord {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        if name == b"record" {
            return Some(Resolved { addr: record as extern "C" fn(i64) as usize, keepalive: None });
        }
        self.0.resolve(name)
    }
}

/// Constructors and destructors in two modules, the second importing the first's data and
/// functions: what the first's constructors built is there when the second's run, priorities
/// order them as in a native link, destructors run in reverse at release, the importer's first,
/// all as `ld.so` runs the same C built as a shared library and a program linked to it.
#[test]
fn constructors_across_two_modules_run_as_a_native_link_runs_them() {
    let dir = scratch("constructors");
    let expected = native_with_library(
        &dir,
        ("gcc", "ctor_lib.c", "ctor"),
        &["ctor_app.c"],
        "long lib_value(void); long app_value(void);\n\
         int main(void) { printf(\"value %ld\\nvalue %ld\\n\", lib_value(), app_value()); return 0; }\n",
    );
    assert_eq!(expected.len(), 5, "{expected:?}");

    for dialect in WITH_DATA {
        let (lib, notes) = pack(&dir, "ctor_lib.c", dialect, &["-fPIC"]).unwrap();
        assert!(!says(&notes, "init_array"), "{notes:?}");
        let (app, _) = pack(&dir, "ctor_app.c", dialect, &["-fPIC"]).unwrap();
        RECORDED.with(|r| r.borrow_mut().clear());
        let lib = LoadedModule::load(allocator(), &lib, &WithRecord(Loaded(vec![])), &LoadOptions::default());
        let lib = Arc::new(lib.unwrap());
        let resolver = WithRecord(Loaded(vec![lib.clone()]));
        let app = LoadedModule::load(allocator(), &app, &resolver, &LoadOptions::default()).unwrap();
        drop(resolver);
        let mut got = vec![
            format!("value {}", call(&lib, "lib_value", &[])),
            format!("value {}", call(&app, "app_value", &[])),
        ];
        drop(app);
        drop(lib);
        got.extend(RECORDED.with(|r| r.take()));
        assert_eq!(got, expected, "{dialect}");
    }
}

/// C++: a class hierarchy called through vtables (`.data.rel.ro` with data relocations, type
/// info referring to libstdc++'s), a global object built by a static constructor, and a
/// function-local static (guarded by libstdc++'s `__cxa_guard_*`), linked against libstdc++ as
/// `smf run --native libstdc++.so.6` links it: the same results as the same code built natively.
#[test]
fn cpp_classes_static_constructors_and_local_statics_match_native() {
    let dir = scratch("cpp");
    let calls: &[Call] = &[
        ("shape_area", &[0, 5, 0]),
        ("shape_area", &[1, 6, 4]),
        ("registry_created", &[]),
        ("next_count", &[]),
        ("next_count", &[]),
    ];
    let expected = native(&dir, &["shapes.cpp"], calls);
    let libstdcxx = smf::native::SharedLibrary::open("libstdc++.so.6").unwrap();
    let resolver = smf_core::load::Chain(libstdcxx, smf::imports::CLibrary);
    for dialect in WITH_DATA {
        let (bytes, _) = pack(&dir, "shapes.cpp", dialect, &["-fPIC"]).unwrap();
        let module = LoadedModule::load(allocator(), &bytes, &resolver, &LoadOptions::default()).unwrap();
        let got: Vec<i64> = calls.iter().map(|(f, args)| call(&module, f, args)).collect();
        assert_eq!(got, expected, "shapes.cpp packed as {dialect}");
    }
}

/// C++ objects with destructors (two globals, a function-local static): `__cxa_atexit`
/// registers them under the module's `__dso_handle`, and the finalizer pack adds runs them when
/// the module is released, in reverse order of construction, as the same code built as a shared
/// library runs them (here at exit, the library never being closed).
#[test]
fn cpp_destructors_of_static_objects_run_at_release_as_natively() {
    let dir = scratch("cpp-cleanup");
    let expected = native_with_library(
        &dir,
        ("g++", "cleanup.cpp", "cleanup"),
        &[],
        "long touch_late(void);\n\
         int main(void) { long v = touch_late(); printf(\"value %ld\\n\", v); return 0; }\n",
    );
    assert_eq!(expected.len(), 7, "{expected:?}");

    let libstdcxx = smf::native::SharedLibrary::open("libstdc++.so.6").unwrap();
    for dialect in WITH_DATA {
        let (bytes, _) = pack(&dir, "cleanup.cpp", dialect, &["-fPIC"]).unwrap();
        let parsed = smf_core::Module::parse(&bytes).unwrap();
        assert!(parsed.symbols().any(|s| s.name == b"__dso_handle" && s.binding == smf_core::Binding::Local));
        RECORDED.with(|r| r.borrow_mut().clear());
        let resolver = smf_core::load::Chain(
            WithRecord(Loaded(vec![])),
            smf_core::load::Chain(libstdcxx.clone(), smf::imports::CLibrary),
        );
        let module = LoadedModule::load(allocator(), &bytes, &resolver, &LoadOptions::default()).unwrap();
        let value = call(&module, "touch_late", &[]);
        let mut got = RECORDED.with(|r| r.take());
        got.push(format!("value {value}"));
        drop(module);
        got.extend(RECORDED.with(|r| r.take()));
        assert_eq!(got, expected, "{dialect}");
    }
}

#[test]
fn calls_across_two_packed_modules_match_native() {
    let dir = scratch("two-modules");
    let calls: &[Call] = &[("lcm", &[21, 6]), ("set_scale", &[10]), ("main", &[]), ("gcd", &[84, 36])];
    let expected = native(&dir, &["mathlib.c", "app.c"], calls);
    for lib_dialect in WITH_DATA {
        for app_dialect in ALL {
            let (lib, _) = pack(&dir, "mathlib.c", lib_dialect, &["-fPIC"]).unwrap();
            let (app, _) = pack(&dir, "app.c", app_dialect, &["-fPIC"]).unwrap();
            let lib = Arc::new(LoadedModule::load(allocator(), &lib, &(), &LoadOptions::default()).unwrap());
            let resolver = Loaded(vec![lib.clone()]);
            let app = LoadedModule::load(allocator(), &app, &resolver, &LoadOptions::default()).unwrap();
            let got: Vec<i64> = calls
                .iter()
                .map(|(f, args)| {
                    if app.symbol(f.as_bytes()).is_some() {
                        call(&app, f, args)
                    } else {
                        call(&lib, f, args)
                    }
                })
                .collect();
            assert_eq!(got, expected, "mathlib as {lib_dialect}, app as {app_dialect}");
        }
    }
}

/// `gcc -c -O2 -fPIC` of each source, then one call of the packer on all the objects; the
/// module's bytes, or the packer's error.
fn pack_together(dir: &Path, sources: &[&Path], dialect: Dialect) -> Result<Vec<u8>, PackFailure> {
    let objects: Vec<_> = sources.iter().map(|source| compile(dir, source, &["-fPIC"])).collect();
    smf_tool::pack::pack(&objects, dialect).map(|(bytes, _)| bytes)
}

#[test]
fn several_objects_pack_into_one_module_that_matches_native() {
    let dir = scratch("together");
    let calls: &[Call] = &[("lcm", &[21, 6]), ("set_scale", &[10]), ("main", &[]), ("gcd", &[84, 36])];
    let expected = native(&dir, &["mathlib.c", "app.c"], calls);
    for dialect in WITH_DATA {
        let bytes = pack_together(&dir, &[&source("app.c"), &source("mathlib.c")], dialect).unwrap();
        let parsed = smf_core::Module::parse(&bytes).unwrap();
        // app's reference to gcd links to mathlib's definition: no import is left.
        assert!(parsed.symbols().all(|s| s.kind != smf_core::SymbolKind::Import), "{dialect}");
        assert!(parsed.header().is_executable(), "main is the entry point");
        let module = LoadedModule::load(allocator(), &bytes, &(), &LoadOptions::default()).unwrap();
        let got: Vec<i64> = calls.iter().map(|(f, args)| call(&module, f, args)).collect();
        assert_eq!(got, expected, "{dialect}");
    }

    // A strong definition beats a weak one (in either order); an import both need is one import.
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let weak = write(
        "weak.c",
        "#include <string.h>\n__attribute__((weak)) long hook(void) { return 1; }\n\
         long first(const char *s) { return hook() + (long)strlen(s); }\n",
    );
    let strong = write("strong.c", "#include <string.h>\nlong hook(void) { return 40; }\nlong second(const char *s) { return hook() + (long)strlen(s); }\n");
    for order in [[&weak, &strong], [&strong, &weak]] {
        let order: Vec<&Path> = order.iter().map(|p| p.as_path()).collect();
        let bytes = pack_together(&dir, &order, Dialect::R96).unwrap();
        let parsed = smf_core::Module::parse(&bytes).unwrap();
        let imports: Vec<_> = parsed
            .symbols()
            .filter(|s| s.kind == smf_core::SymbolKind::Import)
            .map(|s| s.name.to_vec())
            .collect();
        assert_eq!(imports, [b"strlen".to_vec()]);
        let strlen: extern "C" fn(*const std::ffi::c_char) -> usize = libc_strlen;
        let libc = [(&b"strlen"[..], strlen as usize)];
        let module = LoadedModule::load(
            allocator(),
            &bytes,
            &smf_core::load::TableResolver(&libc),
            &LoadOptions::default(),
        )
        .unwrap();
        let (ab, abc) = (c"ab".as_ptr() as i64, c"abc".as_ptr() as i64);
        assert_eq!((call(&module, "first", &[ab]), call(&module, "second", &[abc])), (42, 43));
    }

    // Two strong definitions: refused, naming both objects.
    let again = write("again.c", "long hook(void) { return 7; }\n");
    let failure = pack_together(&dir, &[&strong, &again], Dialect::R96).unwrap_err();
    let problem = &failure.problems[0];
    assert!(
        matches!(&problem.error, PackError::DefinedTwice { name, first, second }
            if name == "hook" && first.ends_with("strong.o") && second.ends_with("again.o")),
        "{failure}"
    );
    assert!(problem.object.ends_with("again.o"), "{failure}");
    assert!(problem.error.to_string().starts_with("hook is defined in both"), "{failure}");
}

extern "C" fn libc_strlen(s: *const std::ffi::c_char) -> usize {
    // SAFETY: the packed code passes NUL-terminated string constants.
    unsafe { std::ffi::CStr::from_ptr(s) }.to_bytes().len()
}

/// A packed C file calling the C library (`strlen`, `sqrt`, `hypot`; with
/// `-fstack-protector-all`, `__stack_chk_fail` too) runs under `smf run` as the native build
/// does: what no `--lib` provides links against the C library. With `--no-libc` it does not
/// load, and the error says what it could not find and where it looked.
#[test]
fn smf_run_links_the_c_library_as_a_native_build_does() {
    let dir = scratch("libc");
    let calls: &[Call] = &[
        ("count_chars", &[17]),
        ("copy_and_sum", &[20]),
        ("root", &[1_000_000]),
        ("root", &[-4]),
        ("hypotenuse", &[3, 4]),
    ];
    let expected = native(&dir, &["libc_calls.c"], calls);
    for (flags, import) in
        [(&["-fPIC"][..], "strlen"), (&["-fPIC", "-fstack-protector-all"], "__stack_chk_fail")]
    {
        let (bytes, _) = pack(&dir, "libc_calls.c", Dialect::R96, flags).unwrap();
        let parsed = smf_core::Module::parse(&bytes).unwrap();
        let imports: Vec<&[u8]> =
            parsed.symbols().filter(|s| s.kind == smf_core::SymbolKind::Import).map(|s| s.name).collect();
        for name in [import, "sqrt", "hypot"] {
            assert!(imports.contains(&name.as_bytes()), "{flags:?}: no import {name}");
        }
        let module = dir.join("libc_calls.smf");
        std::fs::write(&module, &bytes).unwrap();
        let smf_run = |extra: &[&str], f: &str, args: &[i64]| {
            let args: Vec<String> = args.iter().map(i64::to_string).collect();
            Command::new(smf_binary())
                .arg("run")
                .args(extra)
                .arg(&module)
                .arg(f)
                .args(&args)
                .output()
                .unwrap()
        };
        let got: Vec<i64> = calls
            .iter()
            .map(|(f, args)| {
                let out = smf_run(&[], f, args);
                assert!(out.status.success(), "{f}: {}", String::from_utf8_lossy(&out.stderr));
                String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
            })
            .collect();
        assert_eq!(got, expected, "{flags:?}");
        // A double result, printed as one with --ret f64 (shortest form that reads back).
        let out = smf_run(&["--ret", "f64"], "square_root", &[2]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{}\n", 2f64.sqrt()), "{flags:?}");
        let out = smf_run(&["--no-libc"], "count_chars", &[1]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("unresolved import") && stderr.contains("(looked in: 0 libraries)"),
            "{stderr}"
        );
    }
}

/// By default pack reports what a reader may want to know (debug info dropped, in one line),
/// not what every object has; `--verbose` reports that too, `--quiet` nothing.
#[test]
fn pack_notes_say_what_matters() {
    let dir = scratch("notes");
    let object = dir.join("recursion.o");
    run(Command::new("gcc")
        .args(["-c", "-O2", "-g", "-fPIC"])
        .arg(source("recursion.c"))
        .arg("-o")
        .arg(&object));
    let notes = |flag: Option<&str>| {
        let out = Command::new(smf_binary())
            .arg("pack")
            .args(flag)
            .arg(&object)
            .arg("-o")
            .arg(dir.join("recursion.smf"))
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let default = notes(None);
    assert_eq!(default.lines().count(), 1, "{default}");
    assert!(default.contains("dropped the debug info ("), "{default}");
    let verbose = notes(Some("--verbose"));
    assert!(verbose.contains("dropped section .comment (compiler identification)"), "{verbose}");
    assert!(!verbose.contains(".eh_frame"), "unwind tables are kept: {verbose}");
    assert!(verbose.contains("debug info"), "{verbose}");
    assert_eq!(notes(Some("--quiet")), "");
}

/// A module function that crashes makes `smf run` print one line (the module, the symbol, the
/// signal and what it means, the faulting address, the function and offset of the faulting
/// instruction) and exit 1, not die of a bare signal: an invalid access, an illegal
/// instruction, a division by zero, a stack overflow.
#[test]
fn a_crash_in_a_module_function_is_reported_in_one_line() {
    let dir = scratch("crash");
    let source = dir.join("crash.s");
    std::fs::write(
        &source,
        ".text\n\
         .globl null_read\n.type null_read,@function\nnull_read: mov (0), %rax\n ret\n\
         .globl bad_op\n.type bad_op,@function\nbad_op: ud2\n\
         .globl divide\n.type divide,@function\ndivide: xor %ecx,%ecx\n mov %rdi,%rax\n cqo\n idiv %rcx\n ret\n\
         .globl deep\n.type deep,@function\ndeep: sub $4096,%rsp\n movq $0,(%rsp)\n call deep\n add $4096,%rsp\n ret\n",
    )
    .unwrap();
    let object = dir.join("crash.o");
    run(Command::new("gcc").arg("-c").arg(&source).arg("-o").arg(&object));
    let module = dir.join("crash.smf");
    run(Command::new(smf_binary()).arg("pack").arg(&object).arg("-o").arg(&module));
    for (function, signal, address) in [
        ("null_read", "SIGSEGV (invalid memory access)", Some("at address 0x0 in null_read+0x0 (crash.smf)")),
        ("bad_op", "SIGILL (illegal instruction)", None),
        ("divide", "SIGFPE (arithmetic error)", None),
        ("deep", "SIGSEGV (invalid memory access)", None),
    ] {
        let out = Command::new(smf_binary()).arg("run").arg(&module).arg(function).arg("1").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{function}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        let expected = format!("smf: {}: `{function}` crashed: {signal} at address 0x", module.display());
        assert!(stderr.starts_with(&expected), "{stderr}");
        // Where: the function the faulting instruction is in, and how far into it.
        let place = format!(" in {function}+0x");
        assert!(stderr.contains(&place) && stderr.ends_with(" (crash.smf)\n"), "{stderr}");
        if let Some(address) = address {
            assert!(stderr.contains(address), "{stderr}");
        }
    }
}

#[test]
fn what_smf_cannot_represent_is_a_clear_error() {
    let dir = scratch("errors");
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let compile = |src: &Path, extra: &[&str]| {
        let obj = src.with_extension("o");
        run(Command::new("gcc").args(["-c", "-O2"]).args(extra).arg(src).arg("-o").arg(&obj));
        obj
    };
    let pack_obj = |obj: &Path, dialect: &str| {
        let out = Command::new(smf_binary())
            .arg("pack")
            .arg(obj)
            .arg("-o")
            .arg(obj.with_extension("smf"))
            .args(["--dialect", dialect])
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // The library's refusal, typed, for the same object: its first problem.
    let refusal = |obj: &Path, dialect: Dialect| {
        let object = (obj.display().to_string(), std::fs::read(obj).unwrap());
        let failure = smf_tool::pack::pack(&[object], dialect).unwrap_err();
        assert!(failure.problems.iter().all(|p| p.object == obj.display().to_string()), "{failure}");
        failure.problems.into_iter().next().unwrap().error
    };

    // A pointer in writable data packs (a data relocation) where symbols can address data;
    // R72's cannot.
    let pointer = compile(
        &write("pointer.c", "const char *message = \"hi\";\nlong f(void) { return message[0]; }\n"),
        &["-fPIC"],
    );
    let (code, err) = pack_obj(&pointer, "r72");
    assert_eq!(code, Some(1));
    assert!(err.contains("R72 symbols cannot address data sections"), "{err}");
    assert!(matches!(refusal(&pointer, Dialect::R72), PackError::R72Data { .. }));
    for dialect in ["r96", "s128"] {
        let (code, err) = pack_obj(&pointer, dialect);
        assert_eq!(code, Some(0), "{err}");
        let out = Command::new(smf_binary())
            .arg("run")
            .arg(pointer.with_extension("smf"))
            .arg("f")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "104\n",
            "{dialect}: 'h' read through the relocated pointer"
        );
    }

    // A relocation in data of a kind that patches instructions: named, with its kind.
    let plt = compile(&write("plt.s", ".data\n.globl table\ntable:\n.long ext@PLT\n"), &[]);
    let (code, err) = pack_obj(&plt, "r96");
    assert_eq!(code, Some(1));
    assert!(err.contains(".data+0x0: a plt32 relocation in data"), "{err}");
    assert!(
        matches!(refusal(&plt, Dialect::R96), PackError::DataRelocationKind { at, kind: RelocKind::Plt32 } if at.section == ".data"),
    );

    let tls = compile(&write("tls.c", "__thread long t;\nlong g(void) { return ++t; }\n"), &["-fPIC"]);
    let (code, err) = pack_obj(&tls, "s128");
    assert_eq!(code, Some(1));
    assert!(err.contains("thread-local storage"), "{err}");
    assert!(matches!(refusal(&tls, Dialect::S128), PackError::ThreadLocal { .. }));

    // Without -fPIC: absolute 32-bit addresses, which no module loaded above 4 GiB can hold.
    // Refused in every dialect, with the fix, rather than packed into a module that verifies
    // and never loads.
    let absolute = compile(&write("abs.c", "long v = 3;\nlong *where(void) { return &v; }\n"), &["-fno-pic"]);
    for dialect in ["r96", "s128"] {
        let (code, err) = pack_obj(&absolute, dialect);
        assert_eq!(code, Some(1), "{dialect}");
        assert!(err.contains("R_X86_64_32") && err.contains("compile it with -fPIC"), "{err}");
    }
    let typed = refusal(&absolute, Dialect::S128);
    assert!(
        matches!(&typed, PackError::Absolute32 { r_type: 10 | 11, target, .. } if target == "v"),
        "{typed}"
    );

    let data =
        compile(&write("data.c", "long counter = 1;\nlong get(void) { return counter; }\n"), &["-fPIC"]);
    let (code, err) = pack_obj(&data, "r72");
    assert_eq!(code, Some(1));
    assert!(err.contains("R72"), "{err}");
    assert!(matches!(refusal(&data, Dialect::R72), PackError::R72Data { .. }));

    // An object whose symbol lies past its section (as a corrupted or hand-written one can):
    // refused with the reason, before anything is written.
    let beyond = compile(
        &write(
            "beyond.s",
            ".text\n.globl f\n.type f,@function\nf: ret\n.size f,1\n\
             .globl beyond\n.type beyond,@function\n.set beyond, f+100\n.size beyond, 4\n",
        ),
        &[],
    );
    let (code, err) = pack_obj(&beyond, "s128");
    assert_eq!(code, Some(1));
    assert!(err.contains("symbol beyond is defined at 0x64, past the end of its section"), "{err}");
    assert!(matches!(refusal(&beyond, Dialect::S128), PackError::SymbolOutsideSection { value: 100, .. }));
    assert!(!beyond.with_extension("smf").exists(), "nothing written");

    let not_elf = write("not.o", "definitely not ELF");
    let (code, err) = pack_obj(&not_elf, "s128");
    assert_eq!(code, Some(1));
    assert!(err.contains("not an ELF object"), "{err}");
    assert!(matches!(refusal(&not_elf, Dialect::S128), PackError::NotElf(_)));
    // More refusals, typed: a common symbol, pre-initialization functions, constructor entries
    // that are not whole addresses, a TLS access to another object's
    // variable, an executable.
    let common = compile(
        &write("common.c", "int shared;\nint get(void) { return shared; }\n"),
        &["-fPIC", "-fcommon"],
    );
    assert!(matches!(refusal(&common, Dialect::S128), PackError::Common { symbol } if symbol == "shared"));
    let preinit = compile(
        &write("preinit.c", "static void f(void) {}\n__attribute__((section(\".preinit_array\"), used)) static void (*p)(void) = f;\n"),
        &["-fPIC"],
    );
    let typed = refusal(&preinit, Dialect::S128);
    assert!(matches!(&typed, PackError::PreinitArray { section } if section == ".preinit_array"), "{typed}");
    let absolute = compile(&write("absolute.s", ".section .init_array,\"aw\"\n.quad 0x1234\n"), &[]);
    let typed = refusal(&absolute, Dialect::S128);
    assert!(matches!(&typed, PackError::CallArrayEntry { r_type: None, .. }), "{typed}");
    assert!(
        typed.to_string().contains(".init_array+0x0: a constructor or destructor entry without a relocation"),
        "{typed}"
    );
    let narrow =
        compile(&write("narrow.s", ".text\nf: ret\n.section .init_array,\"aw\"\n.long f\n.long 0\n"), &[]);
    let typed = refusal(&narrow, Dialect::S128);
    assert!(matches!(&typed, PackError::CallArrayEntry { r_type: Some(10), .. }), "{typed}");
    let tls_use =
        compile(&write("tls_use.c", "extern __thread long t;\nlong h(void) { return t; }\n"), &["-fPIC"]);
    let typed = refusal(&tls_use, Dialect::S128);
    assert!(
        matches!(&typed, PackError::ThreadLocalAccess { variable, at, .. } if variable == "t" && at.symbol.as_deref() == Some("h")),
        "{typed}"
    );
    let exe = dir.join("exe");
    run(Command::new("gcc").arg(write("main.c", "int main(void) { return 0; }\n")).arg("-o").arg(&exe));
    assert!(matches!(refusal(&exe, Dialect::S128), PackError::NotX86Relocatable));
    let (code, _) = pack_obj(&not_elf, "elf64");
    assert_eq!(code, Some(2), "an unknown dialect is a usage error");
}

#[test]
fn every_problem_is_reported_at_once_with_its_object_and_where_it_is() {
    let dir = scratch("problems");
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let object = |name: &str, text: &str, flags: &[&str]| {
        let (path, _) = compile(&dir, &write(name, text), flags);
        PathBuf::from(path)
    };
    let bad = write("bad.o", "not an object");
    // Five absolute addresses of `v` (no -fPIC), one per function.
    let absolute = object(
        "absolute.c",
        "long v[8];\nlong *p0(void) { return &v[0]; }\nlong *p1(void) { return &v[1]; }\n\
         long *p2(void) { return &v[2]; }\nlong *p3(void) { return &v[3]; }\nlong *p4(void) { return &v[4]; }\n",
        &["-fno-pic"],
    );
    // A thread-local variable (its section, and the access in `bump`) and a common symbol.
    let local = object(
        "local.c",
        "__thread long counter;\nint shared;\nlong bump(void) { return ++counter + shared; }\n",
        &["-fPIC", "-fcommon"],
    );
    let twice = object("twice.c", "long *p0(void) { return 0; }\n", &["-fPIC"]);
    let paths = [&bad, &absolute, &local, &twice];
    let inputs: Vec<_> = paths.iter().map(|p| (p.display().to_string(), std::fs::read(p).unwrap())).collect();
    let failure = smf_tool::pack::pack(&inputs, Dialect::S128).unwrap_err();
    let name = |p: &Path| p.display().to_string();
    let of = |p: &Path| {
        let object = name(p);
        failure.problems.iter().filter(move |problem| problem.object == object)
    };

    assert!(
        matches!(of(&bad).map(|p| &p.error).collect::<Vec<_>>()[..], [PackError::NotElf(_)]),
        "{failure}"
    );
    let sites: Vec<_> = of(&absolute)
        .map(|p| match &p.error {
            PackError::Absolute32 { at, target, .. } if target == "v" => {
                at.symbol.clone().unwrap_or_default()
            }
            other => panic!("{other}"),
        })
        .collect();
    assert_eq!(sites, ["p0", "p1", "p2", "p3", "p4"], "each address, in the function that takes it");
    let local_errors: Vec<_> = of(&local).map(|p| &p.error).collect();
    assert!(
        local_errors
            .iter()
            .any(|e| matches!(e, PackError::ThreadLocal { variables, .. } if variables == &["counter"])),
        "{failure}"
    );
    assert!(
        local_errors.iter().any(|e| matches!(e, PackError::Common { symbol } if symbol == "shared")),
        "{failure}"
    );
    assert!(
        local_errors.iter().any(|e| matches!(e, PackError::ThreadLocalAccess { at, variable, .. }
            if variable == "counter" && at.symbol.as_deref() == Some("bump"))),
        "{failure}"
    );
    assert!(
        matches!(&of(&twice).map(|p| &p.error).collect::<Vec<_>>()[..], [PackError::DefinedTwice { name, .. }] if name == "p0"),
        "{failure}"
    );
    let order: Vec<_> = failure.problems.iter().map(|p| p.object.clone()).collect();
    let mut sorted = order.clone();
    sorted.sort_by_key(|o| paths.iter().position(|p| name(p) == *o));
    assert_eq!(order, sorted, "object by object, in the order given");

    // The tool prints them all (repeats of one kind past three counted), then exits 1 having
    // written nothing.
    let out = dir.join("out.smf");
    let pack_all = |extra: &[&str]| {
        let output = Command::new(smf_binary())
            .arg("pack")
            .args(paths)
            .arg("-o")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (code, stderr) = pack_all(&[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!out.exists(), "nothing written");
    let total = failure.problems.len();
    assert!(stderr.ends_with(&format!("smf pack: {total} problems; no module written\n")), "{stderr}");
    for needle in [
        format!("smf pack: {}: not an ELF object", name(&bad)),
        format!("smf pack: {}: .text+0x", name(&absolute)),
        format!("smf pack: {}: 2 more absolute 32-bit addresses like the one above", name(&absolute)),
        format!("smf pack: {}: section .tbss (counter): thread-local storage", name(&local)),
        format!(
            "smf pack: {}: symbol shared: common symbols cannot be represented (compile with -fno-common)",
            name(&local)
        ),
        "(in bump): R_X86_64_TLSGD reaches thread-local variable counter".to_owned(),
        format!("smf pack: {}: p0 is defined in both", name(&twice)),
    ] {
        assert!(stderr.contains(&needle), "{needle:?} in\n{stderr}");
    }
    assert_eq!(stderr.matches("puts the address of v in 32 bits").count(), 3, "{stderr}");
    assert!(
        !stderr.contains("neither defined"),
        "the use of a refused common symbol is not one more problem\n{stderr}"
    );
    let (_, verbose) = pack_all(&["--verbose"]);
    assert_eq!(
        verbose.matches("puts the address of v in 32 bits").count(),
        5,
        "--verbose: all of them\n{verbose}"
    );
}

/// Packs the `pack` fuzz target's regression input `name` (an object, in S128).
fn pack_regression(name: &str) -> Result<(Vec<u8>, Vec<Note>), PackFailure> {
    let object = std::fs::read(workspace().join("fuzz/regressions/pack").join(name)).unwrap();
    smf_tool::pack::pack(&[("bad.o".into(), object)], Dialect::S128)
}

/// An object whose unwind record describes code outside the module (found by the `pack` fuzz
/// target: the module pack wrote parsed but no loader would load it) packs without its unwind
/// tables, with a note saying why, into a module that loads.
#[test]
fn unwind_tables_that_would_not_load_are_dropped_with_a_note() {
    let keeping = pack_regression("unwind-record-outside-code");
    let (bytes, notes) = keeping.unwrap_or_else(|f| panic!("{}", f.report(true).join("\n")));
    assert!(says(&notes, "unwind tables dropped"), "{notes:?}");
    assert!(says(&notes, "outside the module's code"), "the note says why: {notes:?}");
    let module = smf_core::Module::parse(&bytes).unwrap();
    let unwind = module.sections().filter(|s| s.flags.contains(smf_core::SectionFlags::UNWIND)).count();
    assert_eq!(unwind, 0, "no unwind table is kept");
    assert_eq!(smf_tool::pack::trial_load(&bytes), Ok(()));
}

/// A symbol whose size runs past the end of its section (found by the `pack` fuzz target: pack
/// wrote a module that did not validate) has its size cut at the section's end, with a note.
#[test]
fn a_symbol_size_past_its_section_is_cut_there_with_a_note() {
    let packed = pack_regression("symbol-size-past-its-section");
    let (bytes, notes) = packed.unwrap_or_else(|f| panic!("{}", f.report(true).join("\n")));
    assert!(
        says(&notes, "symbol op_mul: size 12947848928690184 runs past the end of its section, cut to"),
        "{notes:?}"
    );
    let module = smf_core::Module::parse(&bytes).unwrap();
    let op_mul = module.symbols().find(|s| s.name == b"op_mul").unwrap();
    assert!(op_mul.value + op_mul.size <= module.code_size(), "{op_mul:?}");
}

/// A loaded section whose alignment is no power of two (found by the `pack` fuzz target: pack
/// wrote a module that did not validate) is a problem naming the alignment.
#[test]
fn a_section_alignment_that_is_no_power_of_two_is_refused() {
    let failure = pack_regression("section-alignment-not-a-power-of-two").err().unwrap();
    let bad = failure
        .problems
        .iter()
        .any(|p| matches!(p.error, PackError::BadAlignment { align, .. } if !align.is_power_of_two()));
    assert!(bad, "{}", failure.report(true).join("\n"));
    assert!(!failure
        .problems
        .iter()
        .any(|p| matches!(p.error, PackError::Invalid(_) | PackError::DoesNotLoad(_))));
}

/// A loaded section named `note.sdn` (found by the `pack` fuzz target: pack made a module whose
/// note.sdn was a data section, which no reader takes) is refused, naming the reserved name.
#[test]
fn a_section_named_as_smf_names_its_metadata_is_refused() {
    let failure = pack_regression("section-named-note-sdn").err().unwrap();
    let reserved = failure
        .problems
        .iter()
        .any(|p| matches!(&p.error, PackError::ReservedSectionName { section } if section == "note.sdn"));
    assert!(reserved, "{}", failure.report(true).join("\n"));
}
