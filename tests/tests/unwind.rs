//! Unwind tables (`docs/format.md`, "Unwind tables"): the format's rules on hostile tables, the
//! loader's check that every FDE describes the module's own code, registration with the
//! process's unwinder from load to release; and what it is for, through packed C and C++: a C++
//! exception thrown in a module and caught inside it or by its caller in the host, and Rust's
//! backtrace walking from a host callback through module frames to the test itself.

#![cfg(target_arch = "x86_64")]
// Calling loaded code goes through unsafe lookups.
#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use smf::imports::LinkOptions;
use smf::loader::{load, LoadRequest};
use smf_format::module::unwind::FdeProblem;
use smf_format::write::{samples, ModuleBuilder, SectionSpec, SymbolSpec};
use smf_format::{Dialect, ErrorKind, Module, RelocKind, SectionFlags, SectionType, UnwindProblem};
use smf_runtime::exec::ExecAllocator;
use smf_runtime::load::{LoadError, LoadOptions, LoadedModule, UnwindFault, UnwindRegistrar};
use smf_tests::{build_smf_package, scratch, workspace};

/// The sample's table (one CIE, one FDE for a 16-byte function, the terminator).
fn table() -> Vec<u8> {
    samples::eh_frame(16)
}

/// Where the FDE's initial location lies in [`table`].
const FDE_LOCATION: u64 = samples::EH_FRAME_LOCATION;

/// A module with a function `f` (16 bytes of `ret`) and the unwind table `table`, whose FDE's
/// initial location points `past` bytes after `f`.
fn module_with(table: Vec<u8>, past: i64) -> Vec<u8> {
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b".text", &[0xC3; 16]);
    let f = b.add_symbol(SymbolSpec::function(b"f", 0, 16));
    let flags = SectionFlags::READ | SectionFlags::UNWIND;
    let section = b.add_section(SectionSpec::new(SectionType::RoData, b".eh_frame", flags, table, 8));
    b.add_data_relocation(section, FDE_LOCATION, f, RelocKind::Pc32, past);
    b.build().unwrap()
}

#[test]
fn a_record_in_the_64_bit_form_is_refused_as_the_processs_unwinder_does_not_read_it() {
    // libgcc walks `.eh_frame` by 32-bit lengths: a table it misreads was accepted once, and
    // withdrawing it after an unwind had read it aborted the process.
    let short = table();
    let field = |at: usize| u32::from_le_bytes(short[at..at + 4].try_into().unwrap());
    let mut long = short[..24].to_vec();
    long.extend_from_slice(&u32::MAX.to_le_bytes());
    long.extend_from_slice(&u64::from(field(24)).to_le_bytes()); // the FDE's length, 64-bit
    long.extend_from_slice(&(field(28) + 8).to_le_bytes()); // its CIE pointer, 8 bytes further
    long.extend_from_slice(&short[32..]);
    let error = Module::parse(&module_with(long, 0)).unwrap_err();
    assert!(
        matches!(error.kind, ErrorKind::BadUnwindTable { problem: UnwindProblem::LongRecord { at: 24 }, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("a record with a 64-bit length"), "{error}");
    assert!(error.to_string().contains("(record at 0x18)"), "{error}");
}

#[test]
fn a_table_breaking_the_format_is_refused_with_the_rule() {
    let bad = |table: Vec<u8>| Module::parse(&module_with(table, 0)).unwrap_err().kind;
    let mut unterminated = table();
    unterminated.truncate(unterminated.len() - 4);
    assert!(matches!(
        bad(unterminated),
        ErrorKind::BadUnwindTable { problem: UnwindProblem::NoTerminator, .. }
    ));
    let mut long = table();
    long[24..28].copy_from_slice(&1000u32.to_le_bytes());
    assert!(matches!(
        bad(long),
        ErrorKind::BadUnwindTable { problem: UnwindProblem::RecordOutside { at: 24 }, .. }
    ));
    // As writable data, or without the marker data relocations bring.
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b".text", &[0xC3; 16]);
    let flags = SectionFlags::READ | SectionFlags::WRITE | SectionFlags::UNWIND;
    b.add_section(SectionSpec::new(SectionType::Data, b".eh_frame", flags, table(), 8));
    let kind = Module::parse(&b.build().unwrap()).unwrap_err().kind;
    assert!(
        matches!(kind, ErrorKind::BadUnwindTable { problem: UnwindProblem::NotReadOnlyData, .. }),
        "{kind:?}"
    );
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b".text", &[0xC3; 16]);
    let flags = SectionFlags::READ | SectionFlags::UNWIND;
    b.add_section(SectionSpec::new(SectionType::RoData, b".eh_frame", flags, table(), 8));
    let kind = Module::parse(&b.build().unwrap()).unwrap_err().kind;
    assert!(matches!(kind, ErrorKind::BadUnwindTable { problem: UnwindProblem::NoMarker, .. }), "{kind:?}");
}

/// What the registrar below was handed, in order: (registered, address).
static CALLS: std::sync::Mutex<Vec<(bool, usize)>> = std::sync::Mutex::new(Vec::new());

unsafe extern "C" fn record_register(table: *const u8) {
    CALLS.lock().unwrap().push((true, table as usize));
}

unsafe extern "C" fn record_deregister(table: *const u8) {
    CALLS.lock().unwrap().push((false, table as usize));
}

#[test]
fn every_fde_must_describe_the_module_code_and_the_table_is_registered_until_release() {
    let exec = ExecAllocator::default();
    let registrar = UnwindRegistrar { register: record_register, deregister: record_deregister };
    let options = LoadOptions { unwind: Some(registrar), ..LoadOptions::default() };

    let module = LoadedModule::load(&exec, &module_with(table(), 0), &(), &options).unwrap();
    let tables = module.unwind_tables().to_vec();
    assert_eq!(tables.len(), 1);
    assert_eq!(module.unwind_table_bytes(0).map(<[u8]>::len), Some(table().len()));
    // The FDE now holds the distance from itself to `f`, as the unwinder reads it.
    let bytes = module.unwind_table_bytes(0).unwrap();
    let field = tables[0].addr + usize::try_from(FDE_LOCATION).unwrap();
    let relative = i32::from_le_bytes(bytes[32..36].try_into().unwrap());
    assert_eq!(field as i64 + i64::from(relative), module.symbol(b"f").unwrap() as i64);
    assert_eq!(*CALLS.lock().unwrap(), [(true, tables[0].addr)], "registered once sealed");
    drop(module);
    assert_eq!(
        *CALLS.lock().unwrap(),
        [(true, tables[0].addr), (false, tables[0].addr)],
        "and back at release"
    );

    // An FDE claiming code that is not the module's (past its end) is refused.
    CALLS.lock().unwrap().clear();
    let error = LoadedModule::load(&exec, &module_with(table(), 4096), &(), &options).unwrap_err();
    assert!(
        matches!(
            error,
            LoadError::UnwindTable { record: 24, fault: UnwindFault::OutsideCode { len: 16, .. }, .. }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("outside the module's code"), "{error}");
    // Starting before the code and ending inside it, or starting inside and running past its
    // end: refused too (both ends must lie in the code).
    for past in [-8, 8] {
        let error = LoadedModule::load(&exec, &module_with(table(), past), &(), &options).unwrap_err();
        assert!(
            matches!(error, LoadError::UnwindTable { fault: UnwindFault::OutsideCode { len: 16, .. }, .. }),
            "{past}: {error:?}"
        );
    }
    assert!(CALLS.lock().unwrap().is_empty(), "nothing registered");

    // An FDE whose CIE pointer leads nowhere cannot be read as the unwinder would read it: the
    // message says so in words.
    let mut orphan = table();
    orphan[28..32].copy_from_slice(&4096u32.to_le_bytes()); // back past the table's start
    let error = LoadedModule::load(&exec, &module_with(orphan, 0), &(), &options).unwrap_err();
    assert!(
        matches!(
            error,
            LoadError::UnwindTable { record: 24, fault: UnwindFault::Unreadable(FdeProblem::NoCie), .. }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .ends_with("the unwind table's record at 0x18 cannot be read: it names no CIE of the table"),
        "{error}"
    );
    assert!(CALLS.lock().unwrap().is_empty(), "nothing registered");
}

/// `gcc`/`g++ -c -O2 -fPIC` of `source` (written to `dir`), packed by `smf pack`: the module's path.
fn packed(dir: &Path, name: &str, source: &str, compiler: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, source).unwrap();
    let object = path.with_extension("o");
    let compiled =
        Command::new(compiler).args(["-c", "-O2", "-fPIC"]).arg(&path).arg("-o").arg(&object).status();
    assert!(compiled.unwrap().success());
    let module = path.with_extension("smf");
    let smf = build_smf_package().join("smf");
    let packed = Command::new(smf).arg("pack").arg(&object).arg("-o").arg(&module).status().unwrap();
    assert!(packed.success());
    module
}

#[test]
fn a_cpp_exception_thrown_in_a_module_is_caught_inside_it_and_by_the_host() {
    let dir = scratch("unwind", "cpp");
    let module = packed(
        &dir,
        "thrower.cpp",
        "#include <stdexcept>\n#include <string>\n\
         extern \"C\" __attribute__((noinline)) long throw_if(long x) {\n\
             if (x) throw std::runtime_error(\"boom \" + std::to_string(x));\n    return 1;\n}\n\
         extern \"C\" __attribute__((noinline)) long pass_through(long x) { return throw_if(x) + 1; }\n\
         extern \"C\" long catch_inside(long x) {\n\
             try { return pass_through(x); } catch (const std::exception &e) { return -(long)std::string(e.what()).size(); }\n}\n",
        "g++",
    );
    let host = dir.join("host.cpp");
    std::fs::write(
        &host,
        "#include <cstdio>\n#include <stdexcept>\n#include \"smf.h\"\n\
         int main(int argc, char **argv) {\n\
             SmfLoadOptions options = {nullptr, nullptr, SMF_LOAD_PROCESS_SYMBOLS};\n\
             SmfModule *m = smf_module_load_ex(argv[1], &options);\n\
             if (!m) { std::fprintf(stderr, \"%s\\n\", smf_last_error()); return 1; }\n\
             auto pass = (long (*)(long))smf_module_function(m, \"pass_through\");\n\
             auto inside = (long (*)(long))smf_module_function(m, \"catch_inside\");\n\
             std::printf(\"inside %ld %ld\\n\", inside(0), inside(7));\n\
             try { pass(3); std::printf(\"not thrown\\n\"); }\n\
             catch (const std::runtime_error &e) { std::printf(\"caught: %s\\n\", e.what()); }\n\
             int64_t args[1] = {4}, result = 0;\n\
             int rc = smf_module_call(m, \"pass_through\", args, 1, &result);\n\
             std::printf(\"call %d: %s; uncaught %d\\n\", rc, smf_last_error(), std::uncaught_exceptions());\n\
             smf_module_release(m);\n\
             SmfModule *c = smf_module_load_ex(argv[2], &options);\n\
             std::printf(\"constructor: %s; uncaught %d\\n\", c ? \"loaded\" : smf_last_error(), std::uncaught_exceptions());\n\
             SmfModule *d = smf_module_load_ex(argv[3], &options);\n\
             if (!d) { std::fprintf(stderr, \"%s\\n\", smf_last_error()); return 1; }\n\
             smf_module_release(d);\n\
             std::printf(\"destructor: released; uncaught %d\\n\", std::uncaught_exceptions());\n\
             return 0;\n}\n",
    )
    .unwrap();
    let library = build_smf_package().join("libsmf.a");
    let exe = dir.join("host");
    let built = Command::new("g++")
        .arg("-O2")
        .arg(&host)
        .arg("-I")
        .arg(workspace().join("shell/include"))
        .arg(&library)
        .args(["-lpthread", "-ldl", "-lm", "-lgcc_s", "-o"])
        .arg(&exe)
        .status();
    assert!(built.unwrap().success());
    let constructor = packed(
        &dir,
        "throwing_constructor.cpp",
        "#include <cstdio>\n#include <stdexcept>\n\
         struct Built { Built() { std::printf(\"built\\n\"); } ~Built() { std::printf(\"unbuilt\\n\"); } };\n\
         struct Boom { Boom() { throw std::runtime_error(\"in a constructor\"); } };\n\
         static Built built;\nstatic Boom boom;\n\
         extern \"C\" long never_reached(void) { return 1; }\n",
        "g++",
    );
    let destructor = packed(
        &dir,
        "throwing_destructor.cpp",
        "#include <stdexcept>\n\
         __attribute__((destructor)) static void bye() { throw std::runtime_error(\"in a destructor\"); }\n\
         extern \"C\" long alive(void) { return 1; }\n",
        "g++",
    );
    let out = Command::new(&exe).arg(&module).arg(&constructor).arg(&destructor).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Caught inside the module ("boom 7" is 6 bytes), and thrown through two module frames to
    // the host's catch; called by name, stopped at the call (an error, the thread's count of
    // uncaught exceptions back to 0, as after `catch (...) {}`); out of a constructor, the
    // load fails and the module is released (the object built before it destroyed); out of a
    // destructor, dropped, the release goes on.
    let expected = format!(
        "inside 2 -6\ncaught: boom 3\n\
         call -1: an exception of C++ type `St13runtime_error` escaped `pass_through` (caught at the call and \
         discarded); uncaught 0\n\
         built\nunbuilt\n\
         constructor: {}: an exception escaped constructor 0 of 1 (caught; the module was released); \
         uncaught 0\n\
         destructor: released; uncaught 0\n",
        constructor.display()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    // smf run names the thrown type as C++ spells it.
    let run = Command::new(build_smf_package().join("smf"))
        .args(["run", "--native", "libstdc++.so.6"])
        .arg(&module)
        .args(["pass_through", "3"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.ends_with("an exception of type std::runtime_error escaped `pass_through` (caught at the call and discarded)\n"),
        "{stderr}"
    );
}

/// The backtrace a host callback took from inside module code.
static BACKTRACE: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

extern "C" fn take_backtrace() -> i64 {
    *BACKTRACE.lock().unwrap() = std::backtrace::Backtrace::force_capture().to_string();
    1
}

/// A module packed from C (in a scratch directory named `name`) whose `outer(f)` calls
/// `inner(f)`, which calls the host's `f`: two module frames between the host and its callback.
fn calls_back(name: &str) -> std::sync::Arc<smf::loader::SharedModule> {
    let dir = scratch("unwind", name);
    let module = packed(
        &dir,
        "calls_back.c",
        "__attribute__((noinline)) long inner(long (*f)(void)) { return f() + 1; }\n\
         __attribute__((noinline)) long outer(long (*f)(void)) { return inner(f) * 2; }\n",
        "gcc",
    );
    let bytes = std::fs::read(&module).unwrap();
    let options = LinkOptions { local: true, ..LinkOptions::default() };
    load(&LoadRequest::bytes(&bytes).named(&module).linked(options)).unwrap()
}

#[test]
fn rust_backtraces_walk_from_a_host_callback_through_module_frames() {
    let module = calls_back("backtrace");
    type Outer = extern "C" fn(extern "C" fn() -> i64) -> i64;
    // SAFETY: `outer` takes a function returning a long and returns a long.
    let outer = unsafe { module.loaded().function::<Outer>(b"outer") }.unwrap();
    assert_eq!(outer.get()(take_backtrace), 4);
    let trace = BACKTRACE.lock().unwrap().clone();
    // The unwinder got from the callback, through `inner` and `outer` (which it knows only
    // from the module's registered table), to this test's own frame.
    assert!(trace.contains("rust_backtraces_walk_from_a_host_callback_through_module_frames"), "{trace}");
}

extern "C-unwind" fn panic_in_callback() -> i64 {
    panic!("from the host callback")
}

/// A Rust panic in a host callback unwinds through the module's frames and past the boundary
/// that stops other languages' exceptions ([`smf::loader::SharedModule::call`]'s), to the
/// caller's `catch_unwind`; the module works on.
#[test]
fn a_rust_panic_in_a_host_callback_reaches_the_callers_catch_unwind() {
    let module = calls_back("panic");
    let callback = panic_in_callback as extern "C-unwind" fn() -> i64 as usize as i64;
    // SAFETY: `outer` takes a function returning a long and returns a long.
    let call = std::panic::AssertUnwindSafe(|| unsafe { module.call_integers(Some(b"outer"), &[callback]) });
    let unwound = std::panic::catch_unwind(call);
    let payload = unwound.expect_err("the panic reached catch_unwind");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"from the host callback"));
    let callback = take_backtrace as extern "C" fn() -> i64 as usize as i64;
    // SAFETY: as above.
    assert_eq!(unsafe { module.call_integers(Some(b"outer"), &[callback]) }, Ok(4));
}
