//! Packed C through the `smf` binary: `smf run` linking the C library as a native build does,
//! `smf pack`'s notes by verbosity, and a crash in a module function reported in one line.

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use smf_format::Dialect;

use crate::{native, pack, run, scratch, smf_binary, source, Call};

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
        let parsed = smf_format::Module::parse(&bytes).unwrap();
        let imports: Vec<&[u8]> =
            parsed.symbols().filter(|s| s.kind == smf_format::SymbolKind::Import).map(|s| s.name).collect();
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
/// instruction), then die of the signal as the program would: an invalid access, an illegal
/// instruction, a division by zero, a stack overflow (said so); a signal a process sent is
/// told from a fault.
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
         .globl deep\n.type deep,@function\ndeep: sub $4096,%rsp\n movq $0,(%rsp)\n call deep\n add $4096,%rsp\n ret\n\
         .globl sent\n.type sent,@function\nsent: mov $11,%edi\n jmp raise@PLT\n\
         .globl aborts\n.type aborts,@function\naborts: jmp abort@PLT\n",
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
        (
            "deep",
            "SIGSEGV (invalid memory access)",
            Some(", at the stack pointer: a stack overflow in deep+0x"),
        ),
    ] {
        let out = Command::new(smf_binary()).arg("run").arg(&module).arg(function).arg("1").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // After the report, the process dies of the signal, as the program would have.
        assert_eq!(out.status.signal(), Some(number(signal)), "{function}: {stderr}");
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

    // A signal a process sent (raise, kill) is said so, with no faulting address.
    let out = Command::new(smf_binary()).arg("run").arg(&module).arg("sent").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(11), "{stderr}");
    let expected = format!("smf: {}: `sent` was sent SIGSEGV by process ", module.display());
    assert!(stderr.starts_with(&expected) && stderr.ends_with(" (raise or kill), not a fault\n"), "{stderr}");
    assert!(!stderr.contains("at address"), "{stderr}");
    // abort() is reported as what it is, and ends the process with SIGABRT.
    let out = Command::new(smf_binary()).arg("run").arg(&module).arg("aborts").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(6), "{stderr}");
    assert!(stderr.contains("`aborts` aborted (SIGABRT: abort() or a failed assertion)"), "{stderr}");

    // A local function at the start of the code, its address in data: the assembler refers to
    // it as `.text+0`, a section symbol pack rewrites away (the pointer then names the module's
    // exported function, the distance in its addend). The crash is named by the function, from
    // the module's function names, as gdb and `smf_addr_info` name it.
    let source = dir.join("local.s");
    std::fs::write(
        &source,
        ".text\n\
         .type helper,@function\nhelper: .cfi_startproc\n nop\n mov (0), %rax\n ret\n .cfi_endproc\n\
         .size helper, .-helper\n\
         .globl via_pointer\n.type via_pointer,@function\n\
         via_pointer: .cfi_startproc\n lea helper(%rip), %rax\n call *%rax\n ret\n .cfi_endproc\n\
         .size via_pointer, .-via_pointer\n\
         .section .data.rel.local,\"aw\"\n .quad helper\n",
    )
    .unwrap();
    let object = dir.join("local.o");
    run(Command::new("gcc").arg("-c").arg(&source).arg("-o").arg(&object));
    let module = dir.join("local.smf");
    run(Command::new(smf_binary()).arg("pack").arg(&object).arg("-o").arg(&module));
    let inspect = Command::new(smf_binary()).arg("inspect").arg(&module).output().unwrap();
    let inspect = String::from_utf8_lossy(&inspect.stdout);
    assert!(!inspect.contains("\".text\""), "no label left: {inspect}");
    assert!(inspect.contains("note.names"), "{inspect}");
    let out = Command::new(smf_binary()).arg("run").arg(&module).arg("via_pointer").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(11), "{stderr}");
    // Its caller (which has an unwind table) follows on a line of its own.
    assert!(
        stderr.contains(" in helper+0x1 (local.smf)\n")
            && stderr.ends_with("\n  called from via_pointer+0x9 (local.smf)\n"),
        "{stderr}"
    );
}

/// `smf pack` takes what a compiler driver hands `ld` for a shared library: an archive named
/// by `-L` and `-l` (only the members the objects need, those needs followed), the C library
/// and libm by `-l` (left to load time), `-Wl` lists whose options a module has no use for
/// (ignored with a note), `-shared`, `-s`, `--output=`. What it cannot follow is refused by
/// name: a library nowhere, a linker option it does not take.
#[test]
fn pack_takes_what_ld_takes_for_a_shared_library() {
    let dir = scratch("ld-options");
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let object = path.with_extension("o");
        run(Command::new("gcc").args(["-c", "-O2", "-fPIC"]).arg(&path).arg("-o").arg(&object));
        object
    };
    let app = write(
        "app.c",
        "#include <math.h>\nlong sq(long);\nlong cube(long);\n\
                              long f(long x) { return sq(x) + cube(x) + (long)sqrt((double)x * x); }\n",
    );
    let members = [
        write("sq.c", "long sq(long x) { return x * x; }\n"),
        write("cube.c", "long sq(long);\nlong cube(long x) { return sq(x) * x; }\n"),
        write("unused.c", "long unused(long x) { return -x; }\n"),
    ];
    let libs = dir.join("libs");
    std::fs::create_dir_all(&libs).unwrap();
    run(Command::new("ar").arg("rcs").arg(libs.join("libpowers.a")).args(&members));
    let module = dir.join("app.smf");
    let out = Command::new(smf_binary())
        .arg("pack")
        .arg(&app)
        .arg("-L")
        .arg(&libs)
        .args(["-lpowers", "-lm", "-shared", "-s", "-Wl,--as-needed,-soname,libapp.so.1,-z,now"])
        .arg(format!("--output={}", module.display()))
        .output()
        .unwrap();
    let notes = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{notes}");
    assert!(notes.contains("took 2 of the 3 members of"), "{notes}");
    assert!(notes.contains("-lm: ") && notes.contains("stay imports"), "{notes}");
    assert!(notes.contains("ignored linker option -soname libapp.so.1"), "{notes}");
    let out = Command::new(smf_binary()).arg("run").arg(&module).args(["f", "3"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "39\n",
        "9 + 27 + 3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let symbols = Command::new(smf_binary()).arg("symbols").arg(&module).output().unwrap();
    let symbols = String::from_utf8_lossy(&symbols.stdout);
    assert!(symbols.contains(" cube\n") && !symbols.contains(" unused\n"), "{symbols}");
    // The archive named inside a -Wl list, in a group (every archive is one group to pack).
    let grouped = format!("-Wl,--start-group,{},--end-group", libs.join("libpowers.a").display());
    let out = Command::new(smf_binary())
        .arg("pack")
        .arg(&app)
        .arg(&grouped)
        .arg("-o")
        .arg(&module)
        .output()
        .unwrap();
    let notes = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && notes.contains("took 2 of the 3 members of"), "{notes}");
    assert!(notes.contains("ignored linker option --start-group (pack searches every archive as one group)"));
    let out = Command::new(smf_binary()).arg("run").arg(&module).args(["f", "3"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "39\n");

    let refused = |args: &[&str]| {
        let out = Command::new(smf_binary())
            .arg("pack")
            .arg(&app)
            .args(args)
            .arg("-o")
            .arg(dir.join("x.smf"))
            .output();
        let out = out.unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(refused(&["-lnosuchlibrary"]).contains("cannot find -lnosuchlibrary (searched "));
    assert!(refused(&["-Wl,-T,script.ld"]).contains("-Wl,-T: a linker option pack does not take"));
}

/// The number of the signal a report names first (`SIGSEGV (...)`).
fn number(signal: &str) -> i32 {
    match signal.split_whitespace().next() {
        Some("SIGSEGV") => 11,
        Some("SIGILL") => 4,
        Some("SIGFPE") => 8,
        other => panic!("no number for {other:?}"),
    }
}

/// `text` written to `dir/name` and compiled (`gcc -c -O2 -fPIC`): the object's path.
fn compiled(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let object = path.with_extension("o");
    run(Command::new("gcc").args(["-c", "-O2", "-fPIC"]).arg(&path).arg("-o").arg(&object));
    object
}

/// `--whole-archive` to `--no-whole-archive` (in -Wl lists or alone, as ld reads them: in
/// command-line order) packs every member of the archives between them, named by path or found
/// by -l; archives after it only what the objects need. `-e` (`-Wl,-e`, `--entry=`) sets the
/// entry point, which must be a function the objects define.
#[test]
fn pack_takes_whole_archives_and_an_entry_point_as_ld_does() {
    let dir = scratch("whole-archive");
    let compile = |name: &str, text: &str| compiled(&dir, name, text);
    let app = compile("app.c", "long start(void) { return 5; }\nlong main(void) { return 1; }\n");
    let archive = |name: &str, members: &[(&str, &str)]| {
        let objects: Vec<_> = members.iter().map(|(file, text)| compile(file, text)).collect();
        let path = dir.join(name);
        run(Command::new("ar").arg("rcs").arg(&path).args(&objects));
        path
    };
    let plugins = archive(
        "libplugins.a",
        &[("alpha.c", "long alpha(void) { return 2; }\n"), ("beta.c", "long beta(void) { return 3; }\n")],
    );
    let extra = archive("libextra.a", &[("gamma.c", "long gamma(void) { return 4; }\n")]);
    let module = dir.join("app.smf");
    let pack = |args: &[&str]| {
        let out = Command::new(smf_binary()).arg("pack").args(args).arg("-o").arg(&module).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let exported = || {
        let out = Command::new(smf_binary()).args(["symbols", "--defined"]).arg(&module).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        ["alpha", "beta", "gamma"]
            .into_iter()
            .filter(|name| text.contains(&format!(" {name}\n")))
            .collect::<Vec<_>>()
    };
    let (app, plugins, extra) = (app.to_str().unwrap(), plugins.to_str().unwrap(), extra.to_str().unwrap());
    // Without the option, nothing of either archive is needed.
    let (status, notes) = pack(&[app, plugins, extra]);
    assert_eq!(status, Some(0), "{notes}");
    assert_eq!(exported(), Vec::<&str>::new());
    // The archive between the two options whole, the one after them as ld's rule says.
    let (status, notes) = pack(&[app, "-Wl,--whole-archive", plugins, "-Wl,--no-whole-archive", extra]);
    assert_eq!(status, Some(0), "{notes}");
    assert!(notes.contains("took all 2 object members of") && notes.contains("(--whole-archive)"), "{notes}");
    assert!(notes.contains("took 0 of the 1 members of"), "{notes}");
    assert_eq!(exported(), ["alpha", "beta"]);
    // The entry point's result is the program's exit status.
    let run_entry = || Command::new(smf_binary()).arg("run").arg(&module).output().unwrap().status.code();
    assert_eq!(run_entry(), Some(1), "main by default");
    // In one list, found by -l, ld's own spelling alone; the entry point named.
    let dir_arg = format!("-L{}", dir.display());
    let (status, notes) =
        pack(&[app, &dir_arg, "-Wl,--whole-archive,-lextra,--no-whole-archive", "-e", "start"]);
    assert_eq!(status, Some(0), "{notes}");
    assert_eq!(exported(), ["gamma"]);
    assert_eq!(run_entry(), Some(5));
    let (status, notes) = pack(&["--whole-archive", plugins, "--no-whole-archive", app, "-Wl,--entry=start"]);
    assert_eq!(status, Some(0), "{notes}");
    assert_eq!(exported(), ["alpha", "beta"]);
    assert_eq!(run_entry(), Some(5));
    // An archive given in a -Wl list alone (no positional input).
    let (status, notes) =
        pack(&[&format!("-Wl,--whole-archive,{extra}"), &format!("-Wl,{app}"), "-Wl,-e,start"]);
    assert_eq!(status, Some(0), "{notes}");
    assert_eq!((exported(), run_entry()), (vec!["gamma"], Some(5)));
    // An entry point the objects do not define is refused by name.
    let (status, notes) = pack(&[app, "-e", "nowhere"]);
    assert_eq!(status, Some(1));
    assert!(notes.contains("entry point `nowhere` (-e) is not a function these objects define"), "{notes}");
    // The entry point is a reference (as ld counts it): the member defining it is packed; the
    // last -e given is the one kept.
    let (status, notes) = pack(&[app, extra, "-e", "start", "-Wl,-e,gamma"]);
    assert_eq!(status, Some(0), "{notes}");
    assert_eq!((exported(), run_entry()), (vec!["gamma"], Some(4)));
    let (status, notes) = pack(&[app, extra, "-Wl,-e,gamma", "-e", "start"]);
    assert_eq!(status, Some(0), "{notes}");
    assert_eq!((exported(), run_entry()), (Vec::<&str>::new(), Some(5)));
    assert!(pack(&[app, "-Wl,--entry="]).1.contains("-Wl,--entry=: a value must follow"));
    // A member of a whole archive pulls in what it needs from the archives after it.
    let needs = archive(
        "libneeds.a",
        &[("delta.c", "long gamma(void);\nlong delta(void) { return gamma() + 1; }\n")],
    );
    let (status, notes) =
        pack(&[app, "--whole-archive", needs.to_str().unwrap(), "--no-whole-archive", extra]);
    assert_eq!(status, Some(0), "{notes}");
    assert!(notes.contains("took 1 of the 1 members of"), "{notes}");
    assert_eq!(exported(), ["gamma"]);
}

/// A link line as a makefile gives the compiler driver: `-u SYMBOL` (`-Wl,-u,`, `--undefined=`,
/// `--require-defined=`) packs the archive member defining it, as ld counts it a reference; the
/// driver's own link options (-pthread, -rdynamic, -no-pie, ...) and compile options (CFLAGS:
/// -O2 -g -Wall -fPIC -D...) are taken and ignored with a note; `-lgcc` is found where the
/// compiler keeps it, as its driver tells ld; a response file (`@FILE`) is read in place; the
/// driver's options that link a runtime library (`--coverage`: `-lgcov`) link it.
#[test]
fn pack_takes_a_compiler_driver_s_link_line() {
    let dir = scratch("driver-line");
    let compile = |name: &str, text: &str| compiled(&dir, name, text);
    let app = compile("app.c", "long main(void) { return 1; }\n");
    let member = compile("hook.c", "long hook(void) { return 7; }\n");
    let library = dir.join("libhooks.a");
    run(Command::new("ar").arg("rcs").arg(&library).arg(&member));
    let module = dir.join("app.smf");
    let pack = |args: &[&str]| {
        let out = Command::new(smf_binary()).arg("pack").args(args).arg("-o").arg(&module).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let has_hook = || {
        let out = Command::new(smf_binary()).args(["symbols", "--defined"]).arg(&module).output().unwrap();
        String::from_utf8_lossy(&out.stdout).contains(" hook\n")
    };
    let (app, library) = (app.to_str().unwrap(), library.to_str().unwrap());
    let (status, notes) = pack(&[app, library]);
    assert_eq!((status, has_hook()), (Some(0), false), "{notes}");
    for reference in
        [&["-u", "hook"][..], &["--undefined", "hook"], &["-Wl,-u,hook"], &["-Wl,--require-defined=hook"]]
    {
        let (status, notes) = pack(&[&[app, library][..], reference].concat());
        assert_eq!((status, has_hook()), (Some(0), true), "{reference:?}: {notes}");
    }
    // A response file (Ninja's and CMake's long link lines), quoted as a driver reads it.
    let response = dir.join("link.rsp");
    std::fs::write(&response, format!("'{app}'\n\"{library}\" -u hook\n")).unwrap();
    let (status, notes) = pack(&[&format!("@{}", response.display())]);
    assert_eq!((status, has_hook()), (Some(0), true), "@FILE: {notes}");
    let (status, notes) =
        pack(&[app, "-O2", "-g", "-Wall", "-fPIC", "-DNDEBUG", "-pthread", "-rdynamic", "-no-pie", "-lgcc"]);
    assert_eq!(status, Some(0), "{notes}");
    assert!(
        notes.contains("ignored compile options -g -Wall -fPIC -DNDEBUG (pack links: nothing to compile)"),
        "{notes}"
    );
    assert!(notes.contains("ignored -pthread (the C library's threads need no library)"), "{notes}");
    assert!(notes.contains("ignored -rdynamic") && notes.contains("ignored -no-pie"), "{notes}");
    assert!(notes.contains("members of") && notes.contains("libgcc.a"), "the compiler's libgcc.a: {notes}");
    // The driver's options that link a runtime library link it; -Xlinker is -Wl's one option;
    // target options (-m...) are compile options.
    let (status, notes) = pack(&[
        app,
        "--coverage",
        "-mcmodel=large",
        "-v",
        "-Xlinker",
        "--gc-sections",
        "-Wl,--enable-new-dtags",
    ]);
    assert_eq!(status, Some(0), "{notes}");
    assert!(notes.contains("--coverage: links -lgcov, as the compiler driver does"), "{notes}");
    assert!(notes.contains("members of") && notes.contains("libgcov.a"), "the compiler's libgcov.a: {notes}");
    assert!(notes.contains("ignored compile options -mcmodel=large"), "{notes}");
    assert!(notes.contains("ignored linker option --gc-sections"), "{notes}");
    // --push-state and --pop-state save and restore --whole-archive (and -Bstatic).
    let (status, notes) = pack(&[app, "-Wl,--push-state,--whole-archive", library, "-Wl,--pop-state"]);
    assert_eq!((status, has_hook()), (Some(0), true), "whole between them: {notes}");
    let (status, notes) = pack(&[app, "-Wl,--push-state,--whole-archive,--pop-state", library]);
    assert_eq!((status, has_hook()), (Some(0), false), "restored after them: {notes}");
}

/// -Bstatic and -Bdynamic apply to the -l options after them, as in ld: a library found as
/// both `.a` and `.so` is packed from its archive only under -Bstatic (or the driver's -static,
/// for every -l). A shared library named by its path is one as -l finds it; the C library's
/// archive is refused as one; -z defs and --no-undefined check the imports against the shared
/// libraries.
#[test]
fn pack_reads_bstatic_and_bdynamic_in_order() {
    let dir = scratch("bstatic");
    let source = dir.join("twice.c");
    std::fs::write(&source, "long twice(long x) { return 2 * x; }\n").unwrap();
    let object = dir.join("twice.o");
    run(Command::new("gcc").args(["-c", "-O2", "-fPIC"]).arg(&source).arg("-o").arg(&object));
    run(Command::new("ar").arg("rcs").arg(dir.join("libtwice.a")).arg(&object));
    run(Command::new("gcc").arg("-shared").arg(&object).arg("-o").arg(dir.join("libtwice.so")));
    let app_source = dir.join("app.c");
    std::fs::write(&app_source, "long twice(long);\nlong four(long x) { return twice(twice(x)); }\n")
        .unwrap();
    let app = dir.join("app.o");
    run(Command::new("gcc").args(["-c", "-O2", "-fPIC"]).arg(&app_source).arg("-o").arg(&app));
    let module = dir.join("app.smf");
    let pack = |args: &[&str]| {
        let out = Command::new(smf_binary())
            .arg("pack")
            .arg(&app)
            .arg(format!("-L{}", dir.display()))
            .args(args)
            .arg("-o")
            .arg(&module)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let symbols =
            Command::new(smf_binary()).args(["symbols", "--defined"]).arg(&module).output().unwrap();
        String::from_utf8_lossy(&symbols.stdout).contains(" twice\n")
    };
    assert!(!pack(&["-ltwice"]), "the shared library first: an import");
    assert!(pack(&["-Wl,-Bstatic", "-ltwice"]), "after -Bstatic: the archive");
    assert!(pack(&["-Bstatic", "-ltwice", "-Bdynamic"]), "ld's own spelling");
    assert!(!pack(&["-Wl,-Bstatic,-Bdynamic", "-ltwice"]), "-Bdynamic after -Bstatic: shared again");
    assert!(pack(&["-static", "-ltwice"]), "the driver's -static: every -l");
    let shared = dir.join("libtwice.so");
    assert!(!pack(&[shared.to_str().unwrap()]), "named by its path, as CMake names it: an import");
    // -z defs and --no-undefined: every import defined by a shared library of the link line
    // (or the C library's), as ld checks it.
    assert!(!pack(&["-ltwice", "-Wl,-z,defs", "-lc"]), "defined by libtwice.so: an import");
    std::fs::write(dir.join("libviascript.so"), "/* GNU ld script */\nINPUT ( libtwice.so )\n").unwrap();
    assert!(!pack(&["-lviascript", "-Xlinker", "-z", "-Xlinker", "defs"]), "through a linker script's INPUT");
    for check in ["-Wl,--no-undefined", "-Wl,-z,defs"] {
        let out = Command::new(smf_binary()).arg("pack").arg(&app).args([check, "-o"]).arg(&module).output();
        let stderr = String::from_utf8_lossy(&out.as_ref().unwrap().stderr).into_owned();
        assert!(!out.unwrap().status.success(), "{check}: {stderr}");
        assert!(
            stderr.contains("undefined references (-z defs, --no-undefined): `twice`;"),
            "{check}: {stderr}"
        );
    }
    // The C library's archive is named as what cannot be packed, not object by object.
    let out =
        Command::new(smf_binary()).arg("pack").arg(&app).args(["-static", "-lc", "-o"]).arg(&module).output();
    let stderr = String::from_utf8_lossy(&out.as_ref().unwrap().stderr).into_owned();
    assert!(!out.unwrap().status.success(), "{stderr}");
    assert!(
        stderr.contains("is the C library's archive, which cannot be packed") && stderr.lines().count() == 1,
        "{stderr}"
    );
}
