//! The C ABI from C: the programs of `tests/c/` and `examples/host/exec_manager.c` are
//! compiled with `gcc -Wall -Wextra -Werror -pedantic` against `include/smf.h`, linked once
//! against `libsmf.a` and once against `libsmf.so` (built with the execution manager), and run.
//! `rt_test.c` exercises every `rt_*` function and checks `/proc/self/maps` for rwx mappings
//! after each step.

use std::path::{Path, PathBuf};

use smf_tests::{build_smf_package, workspace};
use std::process::Command;

/// Compiles `tests/c/{program}.c` against the static or the shared library and runs it with
/// `arg`; returns its stdout and stderr after checking it passed.
fn compile_and_run(profile: &Path, program: &str, shared: bool, arg: &Path) -> (String, String) {
    let kind = if shared { "shared" } else { "static" };
    let out_dir = profile.join("c-tests");
    std::fs::create_dir_all(&out_dir).unwrap();
    let exe = out_dir.join(format!("{program}_{kind}"));
    let mut gcc = Command::new("gcc");
    gcc.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1", "-pthread"])
        .arg("-I")
        .arg(workspace().join("shell/include"))
        .arg(workspace().join(format!("tests/c/{program}.c")))
        .arg("-o")
        .arg(&exe);
    if shared {
        gcc.arg("-L").arg(profile).arg("-lsmf").arg(format!("-Wl,-rpath,{}", profile.display()));
    } else {
        gcc.arg(profile.join("libsmf.a")).args(["-lpthread", "-ldl", "-lm", "-lrt", "-lgcc_s"]);
    }
    let output = gcc.output().expect("run gcc");
    assert!(output.status.success(), "gcc failed:\n{}", String::from_utf8_lossy(&output.stderr));

    // `SMF_C_TEST_RUNNER` (a command and its arguments, such as valgrind's) runs the program;
    // `cargo xtask valgrind` sets it.
    let runner = std::env::var("SMF_C_TEST_RUNNER").unwrap_or_default();
    let mut runner = runner.split_whitespace();
    let mut run = match runner.next() {
        Some(program) => {
            let mut run = Command::new(program);
            run.args(runner).arg(&exe);
            run
        }
        None => Command::new(&exe),
    };
    // The documented defaults, whatever the environment running the tests says.
    let run = run.env_remove("SMF_EXEC_BUDGET").arg(arg).output().expect("run the C test");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{program} ({kind}) failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    if shared {
        // The program really used the shared library.
        let ldd = Command::new("ldd").arg(&exe).output().expect("run ldd");
        assert!(String::from_utf8_lossy(&ldd.stdout).contains("libsmf.so"));
    }
    (stdout, stderr)
}

/// A scratch directory for one C test run.
fn scratch(profile: &Path, name: &str) -> PathBuf {
    let dir = profile.join("c-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_rt_functions_pass_from_c_against_the_static_and_the_shared_library() {
    let profile = build_smf_package();
    for shared in [false, true] {
        let dir = scratch(&profile, if shared { "rt-shared" } else { "rt-static" });
        let (_, stderr) = compile_and_run(&profile, "rt_test", shared, &dir);
        assert!(stderr.contains("smf exec memory:"), "rt_exec_memory_dump_stats printed nothing: {stderr}");
    }
}

#[test]
#[cfg(target_arch = "x86_64")] // the linking fixtures hold x86-64 code
fn the_module_functions_pass_from_c_against_the_static_and_the_shared_library() {
    use smf_format::write::samples;
    use smf_format::Dialect;
    use smf_tests::linking::{application, library, with_metadata};
    let profile = build_smf_package();
    for shared in [false, true] {
        let dir = scratch(&profile, if shared { "module-shared" } else { "module-static" });
        for d in Dialect::ALL {
            let lower = d.name().to_ascii_lowercase();
            std::fs::write(dir.join(format!("return42.{lower}.smf")), samples::return_42(d)).unwrap();
            std::fs::write(dir.join(format!("lib.{lower}.smf")), library(d)).unwrap();
            std::fs::write(dir.join(format!("app.{lower}.smf")), application(d)).unwrap();
        }
        std::fs::write(dir.join("metadata.smf"), with_metadata()).unwrap();
        std::fs::copy(workspace().join("examples/recursion.smf"), dir.join("recursion.smf")).unwrap();
        compile_and_run(&profile, "module_test", shared, &dir);
    }
}

#[test]
#[cfg(target_arch = "x86_64")] // the linking fixtures hold x86-64 code
fn imports_resolve_in_the_documented_order_from_c_against_the_static_and_the_shared_library() {
    use smf_format::Dialect;
    use smf_tests::linking::{application, importer, library};
    let profile = build_smf_package();
    for shared in [false, true] {
        let dir = scratch(&profile, if shared { "imports-shared" } else { "imports-static" });
        std::fs::write(dir.join("lib.r96.smf"), library(Dialect::R96)).unwrap();
        std::fs::write(dir.join("lib.s128.smf"), library(Dialect::S128)).unwrap();
        std::fs::write(dir.join("app.r96.smf"), application(Dialect::R96)).unwrap();
        std::fs::write(dir.join("importer.smf"), importer(&["ext_a", "ext_b", "ext_c"])).unwrap();
        std::fs::write(dir.join("strlen.smf"), importer(&["strlen"])).unwrap();
        compile_and_run(&profile, "imports_test", shared, &dir);
    }
}

#[test]
#[cfg(target_arch = "x86_64")] // the fixtures hold x86-64 code
fn the_module_cache_works_from_c_against_the_static_and_the_shared_library() {
    use smf_tests::linking::{importer, returning as module};
    let profile = build_smf_package();
    for shared in [false, true] {
        let dir = scratch(&profile, if shared { "cache-shared" } else { "cache-static" });
        for i in 0..8u8 {
            std::fs::write(dir.join(format!("m{i}.smf")), module(&format!("f{i}"), i, 0)).unwrap();
        }
        for i in 0..3 {
            std::fs::write(dir.join(format!("big{i}.smf")), module(&format!("big{i}"), 0, 64 << 10)).unwrap();
        }
        std::fs::write(dir.join("v1.smf"), module("version", 1, 0)).unwrap();
        std::fs::write(dir.join("v2.smf"), module("version", 2, 0)).unwrap();
        std::fs::write(dir.join("importer.smf"), importer(&["ext_a"])).unwrap();
        compile_and_run(&profile, "cache_test", shared, &dir);
    }
}

#[test]
#[cfg(target_arch = "x86_64")] // the fixtures hold x86-64 code
fn a_handle_of_another_type_is_an_error_naming_both_from_c_against_the_static_and_the_shared_library() {
    use smf_tests::linking::returning as module;
    let profile = build_smf_package();
    for shared in [false, true] {
        let dir = scratch(&profile, if shared { "handles-shared" } else { "handles-static" });
        std::fs::write(dir.join("m0.smf"), module("f0", 0, 0)).unwrap();
        compile_and_run(&profile, "handles_test", shared, &dir);
    }
}

#[test]
fn load_time_instantiation_works_from_c_against_the_static_and_the_shared_library() {
    let profile = build_smf_package();
    for shared in [false, true] {
        let dir = scratch(&profile, if shared { "jit-shared" } else { "jit-static" });
        std::fs::write(dir.join("generics.smf"), smf_tests::generics::module()).unwrap();
        std::fs::write(dir.join("importer.smf"), smf_tests::importer::module()).unwrap();
        compile_and_run(&profile, "jit_test", shared, &dir);
    }
}

#[test]
#[cfg(target_arch = "x86_64")] // examples/recursion.smf holds x86-64 code
fn the_example_in_the_header_compiles_pedantic_and_prints_what_it_says() {
    let profile = build_smf_package();
    let header = std::fs::read_to_string(workspace().join("shell/include/smf.h")).unwrap();
    // The indented lines of the top comment's example, without what follows two spaces.
    let start = header.find(" * Example").expect("an example in the header");
    let body: String = header[start..]
        .lines()
        .skip_while(|l| !l.starts_with(" *     "))
        .take_while(|l| l.starts_with(" *     "))
        .map(|l| l[7..].split("  ").next().unwrap_or_default().to_owned() + "\n")
        .collect();
    assert!(body.contains("smf_module_function"), "{body}");
    let dir = scratch(&profile, "header-example");
    let source = dir.join("example.c");
    std::fs::write(
        &source,
        format!("#include <stdio.h>\n#include \"smf.h\"\nint main(void) {{\n{body}return 0;\n}}\n"),
    )
    .unwrap();
    let exe = dir.join("example");
    let gcc = Command::new("gcc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
        .arg(workspace().join("shell/include"))
        .arg(&source)
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(&profile)
        .arg("-lsmf")
        .arg(format!("-Wl,-rpath,{}", profile.display()))
        .output()
        .expect("run gcc");
    assert!(gcc.status.success(), "{body}\n{}", String::from_utf8_lossy(&gcc.stderr));
    let run = Command::new(&exe).current_dir(workspace()).output().expect("run the example");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(String::from_utf8_lossy(&run.stdout), "832040\n");
}

/// Function names declared in `smf.h`: outside the execution manager's part (`#ifdef
/// SMF_EXEC_MANAGER`, a library built with the cranelift feature), and inside it.
fn header_functions() -> (Vec<String>, Vec<String>) {
    let header = std::fs::read_to_string(workspace().join("shell/include/smf.h")).unwrap();
    let (mut outside, mut inside) = (Vec::new(), Vec::new());
    let mut in_exec_manager = false;
    for line in header.lines() {
        if line.starts_with("#ifdef SMF_EXEC_MANAGER") {
            in_exec_manager = true;
        } else if line.starts_with("#endif /* SMF_EXEC_MANAGER") {
            in_exec_manager = false;
        }
        if line.trim_start().starts_with(['/', '*', '#']) || !line.contains('(') {
            continue;
        }
        let before_paren = &line[..line.find('(').unwrap_or(0)];
        let Some(name) = before_paren.rsplit(|c: char| !(c.is_alphanumeric() || c == '_')).next() else {
            continue;
        };
        if name.starts_with("rt_") || name.starts_with("smf_") {
            if in_exec_manager { &mut inside } else { &mut outside }.push(name.to_owned());
        }
    }
    for names in [&mut outside, &mut inside] {
        names.sort();
        names.dedup();
    }
    (outside, inside)
}

/// `rt_*` and `smf_*` functions the shared library exports.
fn exported_functions(library: &Path) -> Vec<String> {
    let nm = Command::new("nm").args(["-D", "--defined-only"]).arg(library).output().expect("run nm");
    let mut names: Vec<String> = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let (kind, name) = (parts.nth(1)?, parts.next()?);
            (kind == "T" && (name.starts_with("rt_") || name.starts_with("smf_"))).then(|| name.to_owned())
        })
        .collect();
    names.sort();
    names
}

#[test]
fn the_header_declares_exactly_what_the_library_exports() {
    let profile = build_smf_package();
    let (declared, exec_manager) = header_functions();
    // This build has the execution manager (feature cranelift): its functions are the part
    // under `SMF_EXEC_MANAGER`, the rest every build's (the default build's exports are
    // checked by CI's install step, a build without `rt` by its own).
    let mut all: Vec<String> = declared.iter().chain(&exec_manager).cloned().collect();
    all.sort();
    let exported = exported_functions(&profile.join("libsmf.so"));
    assert_eq!(all, exported);
    // The execution manager's part is what its module exports.
    let source = std::fs::read_to_string(workspace().join("shell/src/ffi/exec_manager.rs")).unwrap();
    let mut defined: Vec<String> = source
        .lines()
        .filter_map(|l| l.split_once("extern \"C\" fn ")?.1.split('(').next().map(str::to_owned))
        .collect();
    defined.sort();
    assert_eq!(exec_manager, defined);
    assert_eq!(defined.len(), 11);
    assert_eq!(declared.iter().filter(|n| n.starts_with("rt_")).count(), 26, "the spec's 26 rt_* functions");
}

#[test]
#[cfg(target_arch = "x86_64")] // the example's CLIF is compiled for the host
fn the_execution_manager_compiles_and_runs_clif_from_c_against_the_static_and_the_shared_library() {
    let profile = build_smf_package();
    for shared in [false, true] {
        let dir = scratch(&profile, if shared { "exec-manager-shared" } else { "exec-manager-static" });
        let exe = dir.join("exec_manager");
        let mut gcc = Command::new("gcc");
        gcc.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-DSMF_EXEC_MANAGER", "-I"])
            .arg(workspace().join("shell/include"))
            .arg(workspace().join("examples/host/exec_manager.c"))
            .arg("-o")
            .arg(&exe);
        if shared {
            gcc.arg("-L").arg(&profile).arg("-lsmf").arg(format!("-Wl,-rpath,{}", profile.display()));
        } else {
            gcc.arg(profile.join("libsmf.a")).args(["-lpthread", "-ldl", "-lm", "-lrt", "-lgcc_s"]);
        }
        let built = gcc.output().expect("run gcc");
        assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
        // 20! fits; 66! is 0 modulo 2^64: a 0 result that is not a failure.
        for (n, expected) in [("20", "2432902008176640000\n"), ("66", "0\n")] {
            let run = Command::new(&exe).arg(n).output().expect("run exec_manager");
            assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
            assert_eq!(String::from_utf8_lossy(&run.stdout), expected);
        }
    }
}
