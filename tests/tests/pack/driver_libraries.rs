//! The libraries a module links beyond its objects. What the compiler driver links that the
//! objects do not name: libgcc's archive, whose helpers gcc's code calls for what the
//! processor lacks (128-bit division: `__udivti3`; a population count without `popcnt`:
//! `__popcountdi2`); `smf pack` packs in the members a module needs, as `gcc -shared` links
//! them, and `-nostdlib` leaves them imports. And the shared libraries the link line names,
//! which the module records as needed and loads open, as `ld.so` opens `DT_NEEDED`.

use std::process::Command;

use crate::{run, scratch, smf_binary};

const SOURCE: &str = "\
long quotient_high(long high, long divisor) {
    unsigned __int128 a = ((unsigned __int128)high << 64) | 12345;
    return (long)(a / (unsigned __int128)divisor);
}
long bits(long x) { return __builtin_popcountl((unsigned long)x); }
";

#[test]
fn libgcc_helpers_are_packed_in_as_the_compiler_driver_links_them() {
    let dir = scratch("libgcc");
    let source = dir.join("helpers.c");
    std::fs::write(&source, SOURCE).unwrap();
    let object = dir.join("helpers.o");
    // -mno-popcnt: the population count is libgcc's whatever the machine.
    run(Command::new("gcc").args(["-c", "-O2", "-fPIC", "-mno-popcnt"]).arg(&source).arg("-o").arg(&object));
    let smf = |args: &[&std::ffi::OsStr]| Command::new(smf_binary()).args(args).output().unwrap();
    let module = dir.join("helpers.smf");
    let packed = smf(&["pack".as_ref(), object.as_os_str(), "-o".as_ref(), module.as_os_str()]);
    assert!(packed.status.success(), "{}", String::from_utf8_lossy(&packed.stderr));
    let bytes = std::fs::read(&module).unwrap();
    let parsed = smf_format::Module::parse(&bytes).unwrap();
    let imports: Vec<String> = parsed
        .symbols()
        .filter(|s| s.kind == smf_format::SymbolKind::Import)
        .map(|s| String::from_utf8_lossy(s.name).into_owned())
        .collect();
    assert!(
        !imports.iter().any(|name| name.starts_with("__udivti3") || name == "__popcountdi2"),
        "{imports:?}"
    );
    let call = |module: &std::path::Path, args: &[&str]| {
        let mut all: Vec<&std::ffi::OsStr> = vec!["run".as_ref(), module.as_os_str()];
        all.extend(args.iter().map(std::ffi::OsStr::new));
        smf(&all)
    };
    let expected = ((3u128 << 64) | 12345) / 7;
    let out = call(&module, &["quotient_high", "3", "7"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), (expected as u64 as i64).to_string());
    let out = call(&module, &["bits", &0xFF00FF.to_string()]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "16", "{}", String::from_utf8_lossy(&out.stderr));
    // Without the driver's libraries the helpers stay imports, which nothing at run provides.
    let bare = dir.join("bare.smf");
    let packed =
        smf(&["pack".as_ref(), object.as_os_str(), "-nostdlib".as_ref(), "-o".as_ref(), bare.as_os_str()]);
    assert!(packed.status.success(), "{}", String::from_utf8_lossy(&packed.stderr));
    let bytes = std::fs::read(&bare).unwrap();
    let parsed = smf_format::Module::parse(&bytes).unwrap();
    assert!(parsed.symbols().any(|s| s.kind == smf_format::SymbolKind::Import && s.name == b"__udivti3"));
    // Which `smf run` refuses in its own terms: what to give it.
    let out = call(&bare, &["quotient_high", "3", "7"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("unresolved imports: `__udivti3`") && stderr.contains("--native LIBRARY.so"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A C++ name `smf run` cannot resolve is shown as C++ spells it, with what to give for it.
#[test]
fn an_unresolved_cxx_name_is_shown_demangled() {
    let dir = scratch("demangled");
    let source = dir.join("caller.c");
    // C may call a function by its mangled name: `scale(int)`.
    std::fs::write(&source, "long _Z5scalei(int);\nlong call_scale(void) { return _Z5scalei(3); }\n")
        .unwrap();
    let object = dir.join("caller.o");
    run(Command::new("gcc").args(["-c", "-O2", "-fPIC"]).arg(&source).arg("-o").arg(&object));
    let module = dir.join("caller.smf");
    let packed = Command::new(smf_binary()).arg("pack").arg(&object).arg("-o").arg(&module).output().unwrap();
    assert!(packed.status.success(), "{}", String::from_utf8_lossy(&packed.stderr));
    let out = Command::new(smf_binary()).arg("run").arg(&module).arg("call_scale").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unresolved import `scale(int)`") && stderr.contains("libstdc++"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Imports are checked against what the loader will look in: the libraries the link line
/// names and those they need (`DT_NEEDED`, as `dlsym` of a library opened by name searches
/// them), the C library and libm; not libgcc_s, which the loader never opens by itself. What
/// none defines is a warning naming it, an error under `-z defs`.
#[test]
fn imports_are_checked_against_what_the_loader_will_look_in() {
    let dir = scratch("defs-needed");
    let source = dir.join("unwinder.c");
    // _Unwind_GetIP is libgcc_s's; libstdc++.so.6 needs libgcc_s.
    std::fs::write(
        &source,
        "unsigned long _Unwind_GetIP(void *);\nunsigned long ip(void *c) { return _Unwind_GetIP(c); }\n",
    )
    .unwrap();
    let object = dir.join("unwinder.o");
    run(Command::new("gcc").args(["-c", "-O2", "-fPIC"]).arg(&source).arg("-o").arg(&object));
    let module = dir.join("unwinder.smf");
    let pack = |args: &[&str]| {
        let out =
            Command::new(smf_binary()).arg("pack").arg(&object).args(args).arg("-o").arg(&module).output();
        let out = out.unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (packed, stderr) = pack(&["-lstdc++", "-Wl,-z,defs"]);
    assert!(packed, "libstdc++ needs libgcc_s, which defines it: {stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let (packed, stderr) = pack(&[]);
    assert!(packed, "{stderr}");
    assert!(stderr.contains("warning:") && stderr.contains("`_Unwind_GetIP`"), "{stderr}");
    // As ld takes it, and as the compiler driver does: `-z defs`, bare `--no-undefined`.
    for given in [&["-Wl,-z,defs"][..], &["-z", "defs"], &["--no-undefined"]] {
        let (packed, stderr) = pack(given);
        assert!(!packed, "{given:?}: nothing the loader looks in defines it");
        assert!(
            stderr.contains("undefined references (-z defs, --no-undefined): `_Unwind_GetIP`;"),
            "{given:?}: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A C++ module packed with `-lstdc++` records libstdc++ as needed: `smf run` runs it with no
/// `--native` (it said to give one before), `smf ldd` shows where the library is, and
/// `--no-needed` leaves its C++ imports unresolved; the library's loader opens it too
/// (`LoadRequest` linked as the process links), unless the options turn it off.
#[test]
fn a_module_packed_with_a_shared_library_opens_it_when_it_loads() {
    let dir = scratch("needed");
    let source = dir.join("words.cpp");
    std::fs::write(
        &source,
        "#include <string>\n#include <vector>\n\
         extern \"C\" long joined_length(long n) {\n\
           std::vector<std::string> parts;\n\
           for (long i = 0; i < n; i++) parts.push_back(std::to_string(i));\n\
           std::string all;\n for (auto &p : parts) all += p;\n return (long)all.size();\n}\n",
    )
    .unwrap();
    let object = dir.join("words.o");
    run(Command::new("g++").args(["-c", "-O2", "-fPIC"]).arg(&source).arg("-o").arg(&object));
    let module = dir.join("words.smf");
    let packed = Command::new(smf_binary())
        .arg("pack")
        .arg(&object)
        .arg("-lstdc++")
        .arg("-o")
        .arg(&module)
        .output()
        .unwrap();
    assert!(packed.status.success(), "{}", String::from_utf8_lossy(&packed.stderr));
    let bytes = std::fs::read(&module).unwrap();
    let needed: Vec<Vec<u8>> =
        smf_format::Module::parse(&bytes).unwrap().needed_libraries().map(<[u8]>::to_vec).collect();
    assert_eq!(needed, [b"libstdc++.so.6".to_vec()], "the soname, not the link-time file");
    let smf = |args: &[&str]| Command::new(smf_binary()).args(args).output().unwrap();
    let module_arg = module.to_str().unwrap();
    // "0123456789" and "1011": 14 characters.
    let out = smf(&["run", module_arg, "joined_length", "12"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "14\n", "{}", String::from_utf8_lossy(&out.stderr));
    let out = smf(&["run", "--no-needed", module_arg, "joined_length", "12"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unresolved imports"));
    let out = smf(&["ldd", module_arg]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("needs libstdc++.so.6 => /"), "{listing}");
    assert!(listing.contains("_Znwm => libstdc++.so.6 ("), "{listing}");
    // The library's own loader, as the C ABI and the cache load.
    let request = smf::loader::LoadRequest::bytes(&bytes);
    let loaded = smf::loader::load(&request).unwrap();
    // SAFETY: `joined_length` is `long (long)`.
    let function = unsafe { loaded.function::<extern "C" fn(i64) -> i64>(b"joined_length") }.unwrap();
    assert_eq!(function.get()(12), 14);
    let off = smf::imports::LinkOptions { open_needed: false, ..Default::default() };
    let error = smf::loader::load(&smf::loader::LoadRequest::bytes(&bytes).linked(off)).unwrap_err();
    assert!(error.to_string().contains("unresolved imports"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A needed library's code runs only when a load gets as far as resolving in it: `smf ldd`
/// reads the library's file and runs none of it (its constructor leaves a file behind), and a
/// load whose imports something before it provides (a `--lib` module) never opens it; `smf run`
/// of a module that uses it runs its constructor. With `--no-libc`, the library gives only its
/// own symbols, not those of the C library it links, which `dlsym` on its handle reaches.
#[test]
fn a_needed_library_runs_no_code_until_a_load_resolves_in_it() {
    let dir = scratch("needed-lazily");
    let marker = dir.join("constructed");
    let c = |name: &str, text: &str| {
        let source = dir.join(format!("{name}.c"));
        std::fs::write(&source, text).unwrap();
        let object = dir.join(format!("{name}.o"));
        run(Command::new("gcc").args(["-c", "-O2", "-fPIC"]).arg(&source).arg("-o").arg(&object));
        object
    };
    let library_object = c(
        "marker",
        &format!(
            "#include <stdio.h>\n__attribute__((constructor)) static void made(void) {{\n\
               FILE *f = fopen(\"{}\", \"w\"); if (f) fclose(f);\n}}\n\
             long marker_answer(void) {{ return 42; }}\n",
            marker.display()
        ),
    );
    let library = dir.join("libmarker.so");
    run(Command::new("gcc").arg("-shared").arg(&library_object).arg("-o").arg(&library));
    let smf = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(smf_binary()).args(args).env("LD_LIBRARY_PATH", &dir).output().unwrap();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let pack = |object: &std::path::Path, with_library: bool| {
        let module = object.with_extension("smf");
        let mut args: Vec<&std::ffi::OsStr> = vec!["pack".as_ref(), object.as_os_str()];
        let search = format!("-L{}", dir.display());
        if with_library {
            args.extend::<[&std::ffi::OsStr; 2]>([search.as_ref(), "-lmarker".as_ref()]);
        }
        args.extend(["-o".as_ref(), module.as_os_str()]);
        let (status, _, err) = smf(&args);
        assert_eq!(status, Some(0), "{err}");
        module
    };
    let uses = pack(
        &c("uses", "long marker_answer(void);\nlong twice(void) { return 2 * marker_answer(); }\n"),
        true,
    );
    let provider = pack(&c("provider", "long marker_answer(void) { return 7; }\n"), false);
    let counts = pack(
        &c(
            "counts",
            "#include <string.h>\nlong marker_answer(void);\n\
             unsigned long length(const char *s) { return strlen(s) + marker_answer(); }\n",
        ),
        true,
    );
    let (uses, provider, counts) = (uses.as_os_str(), provider.as_os_str(), counts.as_os_str());
    let (status, listing, _) = smf(&["ldd".as_ref(), uses]);
    assert_eq!(status, Some(0), "{listing}");
    assert!(listing.contains(&format!("needs libmarker.so => {}", library.display())), "{listing}");
    assert!(
        listing.contains(&format!("marker_answer => libmarker.so ({}, needed)", library.display())),
        "{listing}"
    );
    assert!(!marker.exists(), "smf ldd ran the library's constructor");
    let (status, out, err) = smf(&["run".as_ref(), "--lib".as_ref(), provider, uses, "twice".as_ref()]);
    assert_eq!((status, out.as_str()), (Some(0), "14\n"), "{err}");
    assert!(!marker.exists(), "a load that never resolved in the library opened it");
    let (status, out, err) = smf(&["run".as_ref(), uses, "twice".as_ref()]);
    assert_eq!((status, out.as_str()), (Some(0), "84\n"), "{err}");
    assert!(marker.exists(), "the library was opened: its constructor ran");
    // `strlen` is the C library's: through the library, or nowhere with the C library off.
    let (status, listing, _) = smf(&["ldd".as_ref(), counts]);
    assert_eq!(status, Some(0), "{listing}");
    assert!(listing.contains("(through libmarker.so, needed, which links it)"), "{listing}");
    let (status, listing, _) = smf(&["ldd".as_ref(), "--no-libc".as_ref(), counts]);
    assert_eq!(status, Some(1), "{listing}");
    assert!(listing.contains("marker_answer => libmarker.so"), "{listing}");
    assert!(listing.contains("strlen => not found"), "{listing}");
    let (status, _, err) =
        smf(&["run".as_ref(), "--no-libc".as_ref(), counts, "length".as_ref(), "0".as_ref()]);
    assert_eq!(status, Some(1), "{err}");
    assert!(err.contains("strlen"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
