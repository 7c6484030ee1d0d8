//! Constructors and destructors across packed modules, C and C++ (static objects, local
//! statics, vtables against libstdc++): run in the order and with the results of a native link;
//! `atexit` handlers run at release.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use smf_runtime::load::{LoadOptions, LoadedModule, Resolved, Resolver};

use crate::{allocator, call, native, pack, run, says, scratch, source, Call, Loaded, WITH_DATA};

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
    let resolver = smf_runtime::load::Chain(libstdcxx, smf::imports::CLibrary);
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
        let parsed = smf_format::Module::parse(&bytes).unwrap();
        // The module's own handle (its finalizer, a local function: named among its function
        // names, the code's references linked to it), never an import.
        assert!(!parsed.symbols().any(|s| s.name == b"__dso_handle"));
        assert!(parsed.function_names().iter().any(|f| f.name() == b"__dso_handle" && f.size == 12));
        RECORDED.with(|r| r.borrow_mut().clear());
        let resolver = smf_runtime::load::Chain(
            WithRecord(Loaded(vec![])),
            smf_runtime::load::Chain(libstdcxx.clone(), smf::imports::CLibrary),
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

/// `atexit` in a module (glibc's shared C library has none: programs and libraries link it from
/// `libc_nonshared.a`): pack gives the module its own, registering under the module's
/// `__dso_handle`, so its exit handlers run when it is released, last registered first, as a
/// shared library's run at `dlclose`.
#[test]
fn atexit_in_a_module_registers_handlers_that_run_at_its_release() {
    let dir = scratch("atexit");
    let source = dir.join("exits.c");
    std::fs::write(
        &source,
        "#include <stdlib.h>\n\
         static long *out;\n\
         static void add_one(void) { *out += 1; }\n\
         static void times_ten(void) { *out *= 10; }\n\
         long register_exits(long *p) { out = p; return atexit(add_one) | atexit(times_ten); }\n",
    )
    .unwrap();
    for dialect in WITH_DATA {
        let object = dir.join("exits.o");
        run(Command::new("gcc").args(["-c", "-O2", "-fPIC"]).arg(&source).arg("-o").arg(&object));
        let (bytes, notes) =
            smf_tool::pack::pack(&[(object.display().to_string(), std::fs::read(&object).unwrap())], dialect)
                .unwrap();
        assert!(notes.iter().any(|n| n.text.contains("added atexit")), "{dialect}");
        let parsed = smf_format::Module::parse(&bytes).unwrap();
        let imports: Vec<&[u8]> =
            parsed.symbols().filter(|s| s.kind == smf_format::SymbolKind::Import).map(|s| s.name).collect();
        assert!(!imports.contains(&&b"atexit"[..]), "{dialect}: {imports:?}");
        let module =
            LoadedModule::load(allocator(), &bytes, &smf::imports::CLibrary, &LoadOptions::default())
                .unwrap();
        let mut value: i64 = 5;
        assert_eq!(call(&module, "register_exits", &[std::ptr::addr_of_mut!(value) as i64]), 0);
        assert_eq!(value, 5, "{dialect}: nothing runs before the release");
        drop(module);
        // Last registered first: (5 * 10) + 1.
        assert_eq!(value, 51, "{dialect}");
    }
}
