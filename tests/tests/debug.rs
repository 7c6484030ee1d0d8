//! Loaded code that debuggers and profilers can see: the in-memory objects the GDB JIT
//! interface hands GDB (read back here with `object`), gdb itself on a crashing module, the
//! perf map, and what an address is in (as `dladdr`).

#![cfg(target_arch = "x86_64")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use object::{Object, ObjectSection, ObjectSymbol};
use smf::imports::LinkOptions;
use smf::loader::{load, LoadRequest, SharedModule};
use smf_format::write::samples;
use smf_format::Dialect;
use smf_tests::{build_smf_package, scratch, workspace};
use smf_tool::pack::{pack_inputs, Input, PackOptions};

/// Links without joining the process's registry (the tests of this binary run side by side).
fn local(debug_info: bool) -> LinkOptions<'static> {
    LinkOptions { local: true, debug_info, ..LinkOptions::default() }
}

fn recursion() -> PathBuf {
    workspace().join("examples/recursion.smf")
}

/// The module's functions: name -> (address, size).
fn functions(module: &SharedModule) -> BTreeMap<String, (usize, u64)> {
    let symbols = module.loaded().symbols();
    let (code, _) = module.loaded().code();
    // The functions its file names apart from its symbols (`static` ones pack moved there).
    let apart = module.loaded().function_names().iter().map(|f| {
        (String::from_utf8_lossy(f.name()).into_owned(), (code + usize::try_from(f.offset).unwrap(), f.size))
    });
    (0..symbols.len())
        .filter_map(|i| {
            let symbol = symbols.get(i)?;
            (symbol.kind == smf_format::SymbolKind::Function && symbol.addr != 0).then(|| {
                let name = String::from_utf8_lossy(symbols.name(i).unwrap()).into_owned();
                (name, (symbol.addr, symbols.size(i).unwrap()))
            })
        })
        .chain(apart)
        .collect()
}

/// The object GDB would read for the module whose code starts at `code`.
fn gdb_object(code: usize) -> Option<Vec<u8>> {
    smf::debug::gdb_objects().into_iter().find(|bytes| {
        let file = object::File::parse(bytes.as_slice()).unwrap();
        file.section_by_name(".text").is_some_and(|text| text.address() == code as u64)
    })
}

/// No debugger listens here (none has its breakpoint on the interface, the test is not
/// traced): a module waits to be described until `describe_waiting` (or a load that finds a
/// debugger listening, which the gdb test below sees) describes it.
#[test]
fn every_module_is_described_to_gdb_once_asked_until_it_is_released() {
    let module = load(&LoadRequest::path(&recursion()).linked(local(true))).unwrap();
    let (code, code_len) = module.loaded().code();
    assert!(gdb_object(code).is_none(), "described at its load with no debugger listening");
    // One released while it waits is never described.
    let gone = load(&LoadRequest::path(&recursion()).linked(local(true))).unwrap();
    let gone_code = gone.loaded().code().0;
    drop(gone);
    smf::debug::describe_waiting();
    assert!(gdb_object(gone_code).is_none(), "a module released while waiting");
    let bytes = gdb_object(code).expect("the module's object is in GDB's list");
    let file = object::File::parse(bytes.as_slice()).unwrap();
    assert_eq!(file.architecture(), object::Architecture::X86_64);
    let text = file.section_by_name(".text").unwrap();
    assert_eq!((text.address(), text.size()), (code as u64, code_len as u64));
    // Every function, at its address, with its size, in .text (a relocatable object's symbol
    // values are offsets in their section, which sits at the module's code).
    let described: BTreeMap<String, (u64, u64)> = file
        .symbols()
        .filter(|s| s.kind() == object::SymbolKind::Text && s.section_index() == Some(text.index()))
        .map(|s| (s.name().unwrap().to_owned(), (text.address() + s.address(), s.size())))
        .collect();
    let expected = functions(&module);
    assert!(expected.contains_key("fib") && expected.contains_key("ackermann"), "{expected:?}");
    for (name, (addr, size)) in &expected {
        assert_eq!(described.get(name), Some(&(*addr as u64, *size)), "{name}");
    }
    drop(module);
    assert!(gdb_object(code).is_none(), "taken out of GDB's list at release");

    let quiet = load(&LoadRequest::path(&recursion()).linked(local(false))).unwrap();
    smf::debug::describe_waiting();
    assert!(gdb_object(quiet.loaded().code().0).is_none(), "debug_info: false registers nothing");
}

#[test]
fn an_address_names_its_function_and_offset_as_dladdr_does() {
    let module = load(&LoadRequest::path(&recursion()).linked(local(true))).unwrap();
    let fib = module.symbol(b"fib").unwrap();
    assert_eq!(module.function_at(fib), Some((&b"fib"[..], 0)));
    assert_eq!(module.function_at(fib + 3), Some((&b"fib"[..], 3)));
    let (code, len) = module.loaded().code();
    assert_eq!(module.function_at(code + len), None, "past the code");
    let found = smf::loader::code_containing(fib + 3).expect("the module holds it");
    assert!(std::sync::Arc::ptr_eq(&found, &module));
}

#[test]
fn a_static_function_is_named_from_the_modules_function_names() {
    let dir = scratch("debug", "static-name");
    let module = load(&LoadRequest::path(&crashing_module(&dir)).linked(local(true))).unwrap();
    assert_eq!(module.symbol(b"middle"), None, "not among the symbols a load links");
    let (code, _) = module.loaded().code();
    let middle = module.loaded().function_names().iter().find(|f| f.name() == b"middle").unwrap();
    let start = code + usize::try_from(middle.offset).unwrap();
    assert!(middle.size > 2);
    assert_eq!(module.function_at(start + 2), Some((&b"middle"[..], 2)));
    assert_eq!(module.function_at_with_nul(start), Some((&b"middle\0"[..], 0)));
}

/// Compiles and packs `crash.c`, whose `outer` calls `middle` (static: named among the module's
/// function names, not its symbols) calls `deref`, which dereferences its argument; returns the
/// module's path.
fn crashing_module(dir: &Path) -> PathBuf {
    let source = dir.join("crash.c");
    std::fs::write(
        &source,
        "__attribute__((noinline)) long deref(long *p) { return *p + 1; }\n\
         __attribute__((noinline)) static long middle(long x) { return deref((long *)x) * 2; }\n\
         long outer(long x) { return middle(x) + 3; }\n",
    )
    .unwrap();
    let object = dir.join("crash.o");
    let compiled =
        Command::new("gcc").args(["-c", "-O2", "-fPIC"]).arg(&source).arg("-o").arg(&object).status();
    assert!(compiled.unwrap().success());
    let module = dir.join("crash.smf");
    let smf = build_smf_package().join("smf");
    let packed = Command::new(&smf).arg("pack").arg(&object).arg("-o").arg(&module).status().unwrap();
    assert!(packed.success());
    module
}

#[test]
fn gdb_names_the_module_functions_in_a_crash_backtrace() {
    let gdb = Command::new("gdb").arg("--version").output();
    assert!(gdb.is_ok_and(|o| o.status.success()), "gdb is needed (.ci/run installs it)");
    let dir = scratch("debug", "gdb");
    let module = crashing_module(&dir);
    let smf = build_smf_package().join("smf");
    let out = Command::new("gdb")
        .args(["-nx", "-batch", "-ex", "run", "-ex", "bt"])
        .arg("--args")
        .arg(&smf)
        .args(["run"])
        .arg(&module)
        .args(["outer", "0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let frames: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
    // Named by the object the JIT interface handed gdb, and unwound exactly (one frame each, no
    // guesses between them) by the module's unwind table in it.
    let named = |i: usize, name: &str| frames.get(i).is_some_and(|f| f.contains(&format!(" in {name} ")));
    assert!(named(0, "deref") && named(1, "middle") && named(2, "outer"), "{text}");
    // Then the program's own: the call's closure, run through the boundary that stops
    // exceptions (`smf_loader_catch_call`, unwound by its own table), to `SharedModule::call`.
    // (A frame gdb shows as inlined, as release builds have them, has no address: `#8  name`.)
    let at = |name: &str| {
        frames.iter().position(|f| f.contains(&format!(" in {name}")) || f.contains(&format!("  {name}")))
    };
    let (boundary, call) = (at("smf_loader_catch_call "), at("smf::loader::SharedModule::call<i64> "));
    assert!(
        frames.get(3).is_some_and(|f| f.contains(" in smf::loader::call::")),
        "then the program's own:\n{text}"
    );
    assert!(boundary.is_some_and(|b| call.is_some_and(|c| 3 < b && b < c)), "{text}");
}

#[test]
fn the_perf_map_lists_every_function_with_its_address_and_size() {
    // The map is the process's: a child process (this test again) loads with SMF_PERF_MAP=1
    // and prints what it loaded; this one reads the child's map.
    if let Some(path) = std::env::var_os("SMF_PERF_MAP_CHILD") {
        // As if an earlier process of this PID had left its map (PIDs are reused).
        let own_map = smf::debug::perf_map::path_for(std::process::id());
        std::fs::write(&own_map, "1000 10 stale_function [an earlier process]\n").unwrap();
        let module = load(&LoadRequest::path(Path::new(&path)).linked(local(true))).unwrap();
        let functions = functions(&module);
        for (name, &(addr, size)) in &functions {
            // A label without a size where a sized function starts (the section's symbol at
            // its first function) is left out: perf names that code by the function.
            let beside_a_function = functions.values().any(|&(at, sized)| at == addr && sized > 0);
            if size == 0 && beside_a_function {
                println!("absent {addr:x} {name}");
                continue;
            }
            // A function whose symbol has no size is listed with size 1 (perf needs one).
            println!("expect {addr:x} {:x} {name}", size.max(1));
        }
        return;
    }
    // recursion.c packed with its read-only data apart (`-z separate-code`): its unwind
    // table's references to the code stay relocations, which pack writes against the module's
    // functions rather than against a label of the section beside the first one.
    let dir = scratch("debug", "perf-map");
    let object = dir.join("recursion.o");
    let source = workspace().join("examples/c/recursion.c");
    let built = Command::new("gcc").args(["-c", "-O2", "-fPIC"]).arg(&source).arg("-o").arg(&object).status();
    assert!(built.unwrap().success());
    let bytes = std::fs::read(&object).unwrap();
    let options = PackOptions { separate_code: true, ..PackOptions::new(Dialect::S128) };
    let (packed, _) = pack_inputs(&[Input::new("recursion.o", &bytes)], &options).unwrap();
    let module = dir.join("recursion.smf");
    std::fs::write(&module, packed).unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "the_perf_map_lists_every_function_with_its_address_and_size", "--nocapture"])
        .env("SMF_PERF_MAP_CHILD", &module)
        .env("SMF_PERF_MAP", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let map_path = smf::debug::perf_map::path_for(child.id());
    let child = child.wait_with_output().unwrap();
    assert!(child.status.success());
    let stdout = String::from_utf8_lossy(&child.stdout);
    let expected: Vec<(String, String, String)> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("expect "))
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let mut next = || parts.next().unwrap().to_owned();
            (next(), next(), next())
        })
        .collect();
    assert!(expected.len() >= 4, "{stdout}");
    let map = std::fs::read_to_string(&map_path).expect("the child's perf map");
    let _ = std::fs::remove_file(&map_path);
    assert!(!map.contains("stale_function"), "an earlier process's map is emptied first:\n{map}");
    for (addr, size, name) in &expected {
        let line = format!("{addr} {size} {name} [recursion.smf]");
        assert!(map.lines().any(|l| l == line), "{line} in\n{map}");
    }
    // No label beside a function (`Functions::named` leaves such out: its unit test); the
    // static functions, named apart from the symbols, listed as the others are.
    assert!(!stdout.contains("absent "), "{stdout}");
    assert!(expected.iter().any(|(_, _, name)| name == "ackermann.localalias"), "{stdout}");
    assert_eq!(map.lines().count(), expected.len(), "{map}");
}

#[test]
fn an_instantiated_function_is_described_to_gdb_while_its_jit_lives() {
    use smf::cache::ModuleCache;
    use smf::instantiate::{Generics, Request};
    // square(x) = x * x: imul rdi, rdi; mov rax, rdi; ret
    let compile =
        |_: &Generics, _: &Request<'_>| Ok::<_, String>(vec![0x48, 0x0F, 0xAF, 0xFF, 0x48, 0x89, 0xF8, 0xC3]);
    let dir = scratch("debug", "generics");
    let path = dir.join("generics.smf");
    std::fs::copy(workspace().join("examples/generics.smf"), &path).unwrap();
    let cache = std::sync::Arc::new(ModuleCache::new(0, 0));
    let generics = Generics::new(cache, smf_runtime::instantiate::InstantiatorConfig::default(), compile);
    let square = generics.instantiate(&path, "square$i64").unwrap();
    let bytes = gdb_object(square).expect("the function's object is in GDB's list");
    let file = object::File::parse(bytes.as_slice()).unwrap();
    let text = file.section_by_name(".text").unwrap();
    assert_eq!((text.address(), text.size()), (square as u64, 8));
    let symbol = file.symbols().find(|s| s.kind() == object::SymbolKind::Text).unwrap();
    assert_eq!((symbol.name(), symbol.address(), symbol.size()), (Ok("square$i64"), 0, 8));
    drop(generics);
    assert!(gdb_object(square).is_none(), "taken out of GDB's list with the Generics");
}

/// Runs this test binary's test `name` alone in a child process with the perf map on, `role`
/// set in `SMF_PERF_MAP_ROLE`; its standard output.
fn with_perf_map(name: &str, role: &str) -> String {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("SMF_PERF_MAP_ROLE", role)
        .env("SMF_PERF_MAP", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&child.stdout).into_owned();
    assert!(child.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&child.stderr));
    assert!(stdout.contains("test result: ok. 1 passed"), "{stdout}");
    stdout
}

#[test]
fn the_perf_map_never_follows_a_link_planted_at_its_path() {
    let name = "the_perf_map_never_follows_a_link_planted_at_its_path";
    if std::env::var_os("SMF_PERF_MAP_ROLE").is_some_and(|r| r == "planted") {
        // This process's map path, planted before its first load: a link to a file of ours.
        let victim = scratch("debug", "perf-victim").join("victim");
        std::fs::write(&victim, "untouched\n").unwrap();
        let map = smf::debug::perf_map::path();
        let _ = std::fs::remove_file(&map);
        std::os::unix::fs::symlink(&victim, &map).unwrap();
        let module = load(&LoadRequest::path(&recursion()).linked(local(true)));
        let link = std::fs::symlink_metadata(&map).map(|m| m.file_type().is_symlink());
        let _ = std::fs::remove_file(&map);
        assert!(module.is_ok(), "the load goes on without a map");
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "untouched\n",
            "nothing appended through the link"
        );
        assert!(link.unwrap(), "the link is left as it was");
        return;
    }
    with_perf_map(name, "planted");
}

#[test]
#[allow(unsafe_code)]
fn a_forked_child_writes_a_perf_map_of_its_own() {
    let name = "a_forked_child_writes_a_perf_map_of_its_own";
    if std::env::var_os("SMF_PERF_MAP_ROLE").is_some_and(|r| r == "parent") {
        extern "C" {
            fn fork() -> i32;
            fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
            fn _exit(status: i32) -> !;
        }
        let parent_map = smf::debug::perf_map::path();
        let first = load(&LoadRequest::path(&recursion()).linked(local(true))).unwrap();
        let before = std::fs::read_to_string(&parent_map).unwrap();
        assert!(before.contains("[recursion.smf]"), "{before}");
        // SAFETY: the child (this test runs alone, on one thread) loads a module and leaves
        // through _exit, running nothing of the parent's.
        let child = unsafe { fork() };
        if child == 0 {
            let loaded =
                load(&LoadRequest::bytes(&samples::return_42(Dialect::R96)).named("child.smf".as_ref()));
            let own = std::fs::read_to_string(smf::debug::perf_map::path()).unwrap_or_default();
            let code = if loaded.is_ok() && own.contains("[child.smf]") { 0 } else { 1 };
            // SAFETY: ends the child at once.
            unsafe { _exit(code) };
        }
        let mut status = 0;
        // SAFETY: our child, and a status to write.
        assert_eq!(unsafe { waitpid(child, &mut status, 0) }, child);
        let child_map = smf::debug::perf_map::path_for(child as u32);
        let after = std::fs::read_to_string(&parent_map).unwrap();
        let _ = (std::fs::remove_file(&parent_map), std::fs::remove_file(&child_map));
        assert_eq!(status, 0, "the child's load named in the child's map");
        assert_eq!(after, before, "nothing of the child's in the parent's map");
        drop(first);
        return;
    }
    with_perf_map(name, "parent");
}
