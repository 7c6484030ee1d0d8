//! `smf run`: calling the entry point or a named symbol with typed arguments and results,
//! linking `--lib` modules and `--native` libraries, reading a module from a pipe, and failing
//! with one line (exit 1) or a usage error (exit 2).

use smf_format::write::samples;
use smf_format::Dialect;

use crate::{example, scratch, smf, write};
#[cfg(target_arch = "x86_64")]
use crate::{packed_c, packed_source};

/// `run --native LIBRARY` links the module against a native shared library too: a packed C++
/// module needs libstdc++ (type info, guards of local statics), which `run` alone does not
/// offer; a library that cannot be opened is an error naming it.
#[test]
fn run_links_native_libraries_given_with_native() {
    let dir = scratch("native");
    let object = dir.join("shapes.o");
    let source = smf_tests::workspace().join("tests/c/shapes.cpp");
    let status = std::process::Command::new("g++")
        .args(["-c", "-O2", "-fPIC"])
        .arg(&source)
        .arg("-o")
        .arg(&object)
        .status()
        .unwrap();
    assert!(status.success());
    let module = dir.join("shapes.smf").to_string_lossy().into_owned();
    let packed = smf(&["pack", &object.to_string_lossy(), "-o", &module]);
    assert_eq!(packed.status, 0, "{}", packed.err);
    let alone = smf(&["run", &module, "shape_area", "1", "6", "4"]);
    assert_eq!(alone.status, 1);
    assert!(alone.err.contains("__cxa_guard_acquire"), "{}", alone.err);
    let linked = smf(&["run", "--native", "libstdc++.so.6", &module, "shape_area", "1", "6", "4"]);
    assert_eq!((linked.status, linked.out.as_str()), (0, "123\n"), "{}", linked.err);
    let missing = smf(&["run", "--native", "libnot-there.so.3", &module, "next_count"]);
    assert_eq!(missing.status, 1);
    assert!(missing.err.contains("--native libnot-there.so.3: cannot open"), "{}", missing.err);
}

#[test]
fn run_calls_the_entry_point_or_a_symbol_and_prints_the_result() {
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--ret", "i64", &example("recursion.smf")], "6765\n"),
        (&["run", &example("recursion.smf"), "fib", "10"], "55\n"),
        (&["run", &example("recursion.smf"), "ackermann", "2", "0x3"], "9\n"),
        (&["run", &example("strings.smf"), "text_length"], "51\n"),
        (&["run", &example("globals.smf"), "bump", "-101"], "-1\n"),
        (&["run", "--ret", "i64", "--lib", &example("mathlib.smf"), &example("app.smf")], "1075\n"),
        (&["run", "--lib", &example("mathlib.smf"), &example("app.smf"), "set_scale", "10"], "70\n"),
        (&["run", "--ret", "i64", &example("return42.r72.smf")], "42\n"),
    ];
    for (args, expected) in cases {
        let o = smf(args);
        assert_eq!((o.status, o.out.as_str(), o.err.as_str()), (0, *expected, ""), "{args:?}");
    }
    // The entry point runs as the program: its result is the exit status (the low 8 bits, as
    // the kernel keeps them), nothing printed after its output.
    let programs: &[(&[&str], i32)] = &[
        (&["run", &example("recursion.smf")], 6765 & 0xFF),
        (&["run", "--lib", &example("mathlib.smf"), &example("app.smf")], 1075 & 0xFF),
        (&["run", &example("return42.r72.smf")], 42),
    ];
    for (args, status) in programs {
        let o = smf(args);
        assert_eq!((o.status, o.out.as_str(), o.err.as_str()), (*status, "", ""), "{args:?}");
    }
}

/// The entry point is called as C's `main(argc, argv, envp)`: argv is FILE, then the strings
/// after `--`, envp the environment; `--ret status` exits with main's result as a program's
/// status. Strings after `--` with a SYMBOL are a usage error. (x86-64: packs a C object.)
#[cfg(target_arch = "x86_64")]
#[test]
fn run_passes_the_entry_point_argv_and_exits_with_its_status() {
    let dir = scratch("argv");
    let module = packed_source(
        &dir,
        "echo",
        "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n\
         int main(int argc, char **argv, char **envp) {\n\
           for (int i = 1; i < argc; i++) printf(\"%s%s\", argv[i], i + 1 < argc ? \" \" : \"\\n\");\n\
           int found = 0;\n\
           for (char **e = envp; *e; e++) found |= strcmp(*e, \"SMF_RUN_TEST=here\") == 0;\n\
           if (argv[argc] != NULL || !found || strstr(argv[0], \"echo.smf\") == NULL) return 99;\n\
           return argc > 1 ? atoi(argv[1]) : 7;\n\
         }\n",
    );
    let run = |args: &[&str]| {
        let out = std::process::Command::new(smf_tests::build_smf_package().join("smf"))
            .args(args)
            .env("SMF_RUN_TEST", "here")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    // No strings: argc 1 (argv[0] the file), the result printed.
    assert_eq!(run(&["run", "--ret", "i32", &module]), (Some(0), "7\n".into(), String::new()));
    assert_eq!(
        run(&["run", "--ret", "i32", &module, "--", "42", "and", "-x", "--ret"]),
        (Some(0), "42 and -x --ret\n42\n".into(), String::new())
    );
    // Help flags after `--` are the program's.
    assert_eq!(
        run(&["run", "--ret", "i32", &module, "--", "0", "-h", "--help", "-V"]),
        (Some(0), "0 -h --help -V\n0\n".into(), String::new())
    );
    // The result as the exit status, its low 8 bits, nothing printed after the program's own.
    assert_eq!(run(&["run", "--ret", "status", &module, "--", "3"]), (Some(3), "3\n".into(), String::new()));
    assert_eq!(run(&["run", "--ret=status", &module, "--", "258"]), (Some(2), "258\n".into(), String::new()));
    // main may change argv, as getopt does (it moves options before the other arguments).
    let getopt_module = packed_source(
        &dir,
        "getopt",
        "#include <stdio.h>\n#include <unistd.h>\n\
         int main(int argc, char **argv) {\n\
           int verbose = 0, c;\n\
           while ((c = getopt(argc, argv, \"v\")) != -1) verbose += c == 'v';\n\
           argv[0][0] = 'X';\n\
           printf(\"%d %s %c\\n\", verbose, argv[optind], argv[0][0]);\n\
           return 0;\n\
         }\n",
    );
    assert_eq!(
        run(&["run", "--ret", "status", &getopt_module, "--", "file", "-v", "-v"]),
        (Some(0), "2 file X\n".into(), String::new())
    );
    let (status, out, err) = run(&["run", &module, "main", "--", "1"]);
    assert_eq!((status, out.as_str()), (Some(2), ""));
    assert!(err.contains("arguments after `--` are the entry point's argv; `main` takes"), "{err}");
}

/// A packed program writing to a pipe whose reader has gone ends by SIGPIPE, as the native
/// program does (`yes | head`), instead of seeing each write fail: Rust's start-up ignores
/// the signal, and `smf run` gives it back its default action before the module runs.
#[cfg(target_arch = "x86_64")]
#[test]
fn run_of_a_program_whose_reader_left_ends_by_sigpipe_as_native() {
    use std::io::Read as _;
    use std::os::unix::process::ExitStatusExt as _;
    let dir = scratch("sigpipe");
    // Exits 3 once a write fails: what it did when the signal was ignored.
    let module = packed_source(
        &dir,
        "yes",
        "#include <stdio.h>\n\
         int main(void) {\n\
           for (long i = 0; i < 100000000; i++) if (puts(\"y\") < 0) return 3;\n\
           return 0;\n\
         }\n",
    );
    let mut child = std::process::Command::new(smf_tests::build_smf_package().join("smf"))
        .args(["run", &module])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 2];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"y\n");
    drop(stdout);
    let status = child.wait().unwrap();
    assert_eq!((status.signal(), status.code()), (Some(13), None), "{status:?}");
}

#[test]
fn run_failures_exit_1_with_one_line() {
    let dir = scratch("run-failures");
    let mut arm = samples::return_42(Dialect::R96);
    arm[7] = 1;
    let arm = write(&dir, "arm.smf", &arm);
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", &example("app.smf")],
            "4 unresolved imports: `gcd`, `scale`, `scaled`, `power` (looked in: ",
        ),
        (&["run", &example("recursion.smf"), "nope"], "no exported symbol `nope`"),
        (&["run", &example("globals.smf"), "counter"], "`counter` is not a function"),
        (&["run", &arm], "wrong architecture: the module is for aarch64"),
        (&["run", &example("rich.s128.smf")], "unresolved import `external_fn`"),
        (&["run", &example("mathlib.smf")], "no entry point"),
        (&["run", "/nonexistent.smf"], "/nonexistent.smf"),
    ];
    for (args, needle) in cases {
        let o = smf(args);
        assert_eq!(o.status, 1, "{args:?}");
        assert_eq!(o.err.lines().count(), 1, "{args:?}: {}", o.err);
        assert!(o.err.contains(needle), "{args:?}: {}", o.err);
    }
    // A symbol that cannot be called is refused before the module loads: its constructors do
    // not run for nothing. (x86-64: packs a C object.)
    #[cfg(target_arch = "x86_64")]
    {
        let module = packed_source(
            &dir,
            "greets",
            "#include <stdio.h>\n__attribute__((constructor)) static void greet(void) { puts(\"constructed\"); }\n\
             long value = 3;\nlong one(void) { return 1; }\n",
        );
        for (symbol, needle) in
            [("nope", "no exported symbol `nope`"), ("value", "`value` is not a function")]
        {
            let o = smf(&["run", &module, symbol]);
            assert_eq!((o.status, o.out.as_str()), (1, ""), "{symbol}: nothing constructed: {}", o.err);
            assert!(o.err.contains(needle), "{symbol}: {}", o.err);
        }
        assert_eq!(smf(&["run", &module, "one"]).out, "constructed\n1\n");
    }
    // Bad values are usage errors, each with its reason.
    let recursion = example("recursion.smf");
    for (args, needle) in [
        (&["run"][..], "required"),
        (&["run", "--lib"][..], "a value is required"),
        (&["run", &recursion, "fib", "ten"][..], "argument `ten`: not a number"),
        (&["run", &recursion, "fib", "99999999999999999999"][..], "out of the 64-bit range"),
        (&["run", &recursion, "fib", "f16:1"][..], "the types are f64, f32, i64 and u64"),
        (
            &["run", &recursion, "six", "1", "2", "3", "4", "5", "6", "7"][..],
            "7 integer arguments: at most 6",
        ),
        (
            &["run", &recursion, "f", "1.0", "2.0", "3.0", "4.0", "5.0", "6.0", "7.0", "8.0", "9.0"][..],
            "9 floating-point",
        ),
        (&["run", &recursion, "--ret", "i128"][..], "invalid value 'i128'"),
    ] {
        let o = smf(args);
        assert_eq!(o.status, 2, "{args:?}");
        assert!(o.err.contains(needle), "{args:?}: {}", o.err);
    }
}

#[test]
fn run_reads_a_module_from_a_pipe_and_refuses_an_endless_stream() {
    // A FIFO has no size for fstat to report: the module is read to the end of the stream.
    let dir = scratch("pipe");
    let fifo = dir.join("module.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let bytes = std::fs::read(example("recursion.smf")).unwrap();
    let writer = {
        let fifo = fifo.clone();
        // Written in pieces, as a producer on the other end of a pipe would.
        std::thread::spawn(move || {
            use std::io::Write;
            let mut pipe = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            for piece in bytes.chunks(1000) {
                pipe.write_all(piece).unwrap();
            }
        })
    };
    let o = smf(&["run", &fifo.to_string_lossy(), "fib", "10"]);
    writer.join().unwrap();
    assert_eq!((o.status, o.out.as_str(), o.err.as_str()), (0, "55\n", ""));

    // A stream without end stops at the limit with a one-line reason.
    let o = smf(&["run", "/dev/zero"]);
    assert_eq!(o.status, 1);
    assert_eq!(o.err.lines().count(), 1, "{}", o.err);
    assert!(o.err.contains("stream of more than 268435456 bytes"), "{}", o.err);
}

/// `run` passes integer and floating-point arguments in C's order and prints the result as
/// `--ret` types it (a narrower integer as that type, a pointer in hex, nothing for void); what
/// the module printed through the C library comes first, even into a pipe.
#[test]
#[cfg(target_arch = "x86_64")] // packs x86-64 objects
fn run_passes_floats_and_prints_each_result_type() {
    let dir = scratch("typed");
    let module = packed_c(&dir, "typed_calls");
    let cases: &[(&[&str], &[&str], &str)] = &[
        (&[], &["minus_one"], "4294967295\n"), // i64 by default: an int's register as it is
        (&["--ret", "i32"], &["minus_one"], "-1\n"),
        (&["--ret", "u8"], &["byte_200"], "200\n"),
        (&["--ret", "i8"], &["byte_200"], "-56\n"),
        (&["--ret", "i16"], &["minus_two"], "-2\n"),
        (&["--ret", "u16"], &["minus_two"], "65534\n"),
        (&["--ret", "f64"], &["scale", "3", "1.5"], "4.5\n"),
        (&["--ret", "f64"], &["scale", "-3", "f64:2"], "-6\n"),
        (&["--ret", "f32"], &["halve", "f32:3"], "1.5\n"),
        (&["--ret", "f64"], &["mix", "1", "0.5", "2", "f32:0.25"], "3.75\n"),
        (&["--ret", "void"], &["count_call"], "counted 1\n"),
        (&[], &["say_then_return"], "printed by the module\n7\n"),
    ];
    for (options, call, expected) in cases {
        let args: Vec<&str> =
            ["run"].iter().chain(*options).chain([&module.as_str()]).chain(*call).copied().collect();
        let o = smf(&args);
        assert_eq!((o.status, o.out.as_str(), o.err.as_str()), (0, *expected, ""), "{args:?}");
    }
    let pointer = smf(&["run", "--ret", "ptr", &module, "greeting"]);
    assert!(pointer.status == 0 && pointer.out.starts_with("0x"), "{}{}", pointer.out, pointer.err);
    // Data is not called, whatever --ret says.
    let globals = smf(&["run", "--ret", "f64", &example("globals.smf"), "counter"]);
    assert_eq!(globals.status, 1);
    assert!(globals.err.contains("`counter` is not a function"), "{}", globals.err);
}

/// A program's exit, as natively: its `atexit` handlers, then its destructors (`.fini_array`),
/// whether `main` returns or calls `exit`; `smf run` ends the process with the module still
/// loaded, whose destructors the C library's exit runs. (x86-64: packs a C object.)
#[cfg(target_arch = "x86_64")]
#[test]
fn run_exits_as_a_program_does_handlers_then_destructors() {
    let dir = scratch("exit-order");
    let source = "#include <stdio.h>\n#include <stdlib.h>\n\
                  static void handler(void) { puts(\"atexit\"); }\n\
                  __attribute__((destructor)) static void destructor(void) { puts(\"destructor\"); }\n\
                  int main(int argc, char **argv) { atexit(handler); if (argc > 1) exit(atoi(argv[1])); return 0; }\n";
    let module = packed_source(&dir, "exits", source);
    let native = dir.join("exits-native");
    let built = std::process::Command::new("gcc").arg(dir.join("exits.c")).arg("-o").arg(&native).status();
    assert!(built.unwrap().success());
    for args in [&[][..], &["3"][..]] {
        let expected = std::process::Command::new(&native).args(args).output().unwrap();
        let got = std::process::Command::new(smf_tests::build_smf_package().join("smf"))
            .args(["run", "--ret", "status", &module, "--"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&expected.stdout), "atexit\ndestructor\n", "{args:?}");
        assert_eq!((got.status.code(), got.stdout), (expected.status.code(), expected.stdout), "{args:?}");
    }
}

/// A crash in a module names, below its line, the module functions that called the one that
/// crashed (innermost first, at their return addresses), as a debugger's backtrace would, and
/// the process then dies of the signal.
#[cfg(target_arch = "x86_64")]
#[test]
fn a_crash_report_names_the_module_frames_that_called_it() {
    let dir = scratch("call-chain");
    let module = packed_source(
        &dir,
        "chain",
        "__attribute__((noinline)) long leaf(long *p) { return *p + 1; }\n\
         __attribute__((noinline)) long middle(long *p) { return leaf(p) * 2; }\n\
         long outer(long x) { return middle((long *)x) + 3; }\n",
    );
    let crashed = smf(&["run", &module, "outer", "0"]);
    // Killed by the signal: no exit code.
    assert_eq!(crashed.status, -1, "{}", crashed.err);
    let lines: Vec<&str> = crashed.err.lines().collect();
    assert!(
        lines[0].contains("`outer` crashed: SIGSEGV") && lines[0].ends_with(" in leaf+0x0 (chain.smf)"),
        "{}",
        crashed.err
    );
    let callers: Vec<&str> = lines[1..].iter().map(|l| l.split('+').next().unwrap_or("")).collect();
    assert_eq!(callers, ["  called from middle", "  called from outer"], "{}", crashed.err);
    assert!(lines[1..].iter().all(|l| l.ends_with(" (chain.smf)")), "{}", crashed.err);
}

/// A crash in the C library that a module called (`strlen` of a null pointer), and an `abort()`
/// a module called: the report says where, outside the modules, and names the module frames
/// that led there; the process dies of the signal.
#[cfg(target_arch = "x86_64")]
#[test]
fn a_crash_or_abort_in_a_library_a_module_called_names_the_module_frames_that_led_there() {
    let dir = scratch("call-chain-outside");
    let module = packed_source(
        &dir,
        "outside",
        "#include <stdlib.h>\n#include <string.h>\n\
         __attribute__((noinline)) long measure(const char *s) { return (long)strlen(s) + 1; }\n\
         long through(long x) { return measure((const char *)x) * 2; }\n\
         __attribute__((noinline)) void give_up(long why) { if (why) abort(); }\n\
         long quits(long why) { give_up(why); return why + 1; }\n",
    );
    let crashed = smf(&["run", &module, "through", "0"]);
    assert_eq!(crashed.status, -1, "killed by the signal: {}", crashed.err);
    let lines: Vec<&str> = crashed.err.lines().collect();
    assert!(
        lines[0].contains("`through` crashed: SIGSEGV") && !lines[0].contains(".smf)"),
        "{}",
        crashed.err
    );
    assert!(lines[1].starts_with("  in ") && lines[1].contains("libc.so"), "{}", crashed.err);
    let callers: Vec<&str> = lines[2..].iter().map(|l| l.split('+').next().unwrap_or("")).collect();
    assert_eq!(callers, ["  called from measure", "  called from through"], "{}", crashed.err);
    let aborted = smf(&["run", &module, "quits", "1"]);
    assert_eq!(aborted.status, -1, "killed by the signal: {}", aborted.err);
    let lines: Vec<&str> = aborted.err.lines().collect();
    assert!(lines[0].contains("`quits` aborted (SIGABRT"), "{}", aborted.err);
    assert!(lines[1].starts_with("  raised in ") && lines[1].contains("libc.so"), "{}", aborted.err);
    // (gcc moves the path to `abort` into a part of its own: `give_up.cold`.)
    let callers: Vec<&str> = lines[2..].iter().map(|l| l.split(['+', '.']).next().unwrap_or("")).collect();
    assert_eq!(callers, ["  called from give_up", "  called from quits"], "{}", aborted.err);
}

/// Under `perf record` (a parent named `perf`: here a shell copied to that name), `smf run`
/// writes the perf map perf names module functions by, and says where; `SMF_PERF_MAP=0` keeps
/// it off.
#[test]
fn run_under_perf_writes_the_map_perf_names_module_functions_by() {
    let dir = scratch("under-perf");
    let perf = dir.join("perf");
    std::fs::copy("/bin/sh", &perf).unwrap();
    let module = example("recursion.smf");
    let smf_path = crate::smf_binary().display().to_string();
    // `; true`: the shell stays, as perf does, the parent of smf (no exec of a last command).
    // The shell's `$0` after the script makes the fake perf's command line `perf -c ... record`.
    let under = |environment: &str, subcommand: &str| {
        let script = format!("{environment} {smf_path} run {module} fib 10; true");
        let out = std::process::Command::new(&perf).args(["-c", &script, subcommand]).output().unwrap();
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let under_perf = |environment: &str| under(environment, "record");
    let (out, err) = under_perf("");
    assert_eq!(out, "55\n", "{err}");
    let map = err
        .strip_prefix("smf: perf is recording: module functions are named in ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no note of the map: {err}"));
    let lines = std::fs::read_to_string(map).unwrap();
    assert!(lines.lines().any(|line| line.contains(" fib [recursion.smf]")), "{lines}");
    let _ = std::fs::remove_file(map);
    let (out, err) = under_perf("SMF_PERF_MAP=0");
    assert_eq!((out.as_str(), err.as_str()), ("55\n", ""), "no map, no note");
    // `perf stat` counts: no map.
    let (out, err) = under("", "stat");
    assert_eq!((out.as_str(), err.as_str()), ("55\n", ""), "no map under perf stat");
}
