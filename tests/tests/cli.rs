//! The `smf` tool: `inspect` (text and JSON) and `verify`, run in-process on real files.

// Casts here are of test and tool values known to be small.
#![allow(clippy::cast_possible_truncation)]

use std::path::PathBuf;

use serde_json::Value;
use smf_core::write::{samples, ModuleBuilder, SectionSpec, SymbolSpec};
use smf_core::{Binding, Dialect, ModuleFlags, SectionFlags, SectionType, SymbolFlags};

struct Outcome {
    status: i32,
    out: String,
    err: String,
}

/// Runs the `smf` binary (built once per test run) with `args`.
fn smf(args: &[&str]) -> Outcome {
    smf_with_stdin(args, None)
}

/// Runs the `smf` binary with `args`, `stdin` on its standard input.
fn smf_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> Outcome {
    use std::io::Write;
    use std::process::{Command, Stdio};
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let bin = BIN.get_or_init(|| smf_tests::build_smf_package().join("smf"));
    let mut child = Command::new(bin)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run smf");
    if let Some(bytes) = stdin {
        child.stdin.take().expect("stdin").write_all(bytes).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait for smf");
    Outcome {
        status: out.status.code().unwrap_or(-1),
        out: String::from_utf8(out.stdout).unwrap(),
        err: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A fresh directory for this test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("smf-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

fn json_of(path: &str) -> Value {
    let o = smf(&["inspect", "--json", path]);
    assert_eq!(o.status, 0, "{}", o.err);
    serde_json::from_str(&o.out).unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", o.out))
}

#[test]
fn inspect_json_has_every_documented_key() {
    let dir = scratch("json");
    for dialect in Dialect::ALL {
        let path = write(&dir, &format!("rich.{dialect}"), &samples::rich(dialect));
        let v = json_of(&path);
        assert_eq!(v["dialect"], dialect.name());
        assert_eq!(v["version"], if dialect == Dialect::R72 { "0.1" } else { "1.1" });
        assert_eq!(v["platform"], 1);
        assert_eq!(v["arch"], 0);
        assert_eq!(v["flags"].as_u64().unwrap() & 1, 1);
        assert_eq!(v["entry_point"], 0);
        assert_eq!(v["stub_size"], 0);

        let sections = v["sections"].as_array().unwrap();
        let text = &sections[0];
        for key in ["index", "name", "type", "flags", "offset", "size", "virtual_size", "alignment"] {
            assert!(text.get(key).is_some(), "section key {key}");
        }
        assert_eq!(
            (&text["name"], &text["type"], &text["flags"]),
            (&Value::from(".text"), &Value::from(1), &Value::from(5))
        );

        let symbols = v["symbols"].as_array().unwrap();
        for (i, s) in symbols.iter().enumerate() {
            assert_eq!(s["index"], i);
            for key in ["name", "kind", "binding", "value", "size", "flags", "template_param_count"] {
                assert!(s.get(key).is_some(), "symbol key {key}");
            }
        }
        let find = |name: &str| symbols.iter().find(|s| s["name"] == name).unwrap();
        assert_eq!(
            (&find("answer")["kind"], &find("answer")["binding"]),
            (&Value::from("function"), &Value::from("global"))
        );
        assert_eq!(find("helper")["binding"], "local");
        assert_eq!(find("maybe")["binding"], "weak");
        assert_eq!(find("external_fn")["kind"], "import");
        assert_eq!(find("counter")["kind"], "data");
        assert_eq!(find("naïve \"quoted\"\n")["kind"], "function");

        let relocations = v["relocations"].as_array().unwrap();
        assert_eq!(relocations[0]["kind"], "pc32");
        assert_eq!(relocations[0]["addend"], -4);
        assert_eq!(relocations[0]["offset"], 19);
        assert_eq!(symbols[relocations[0]["symbol"].as_u64().unwrap() as usize]["name"], "greeting");

        let note = &v["note_sdn"];
        assert_eq!(note["possible"][0]["mangled_name"], "List$Float");
        assert_eq!(note["possible"][0]["can_defer"], "true");
        assert_eq!(note["instantiations"][0]["status"], "compiled");
        assert_eq!(note["dependencies"][0]["dep_kind"], "type_param");
        assert_eq!(note["circular_errors"], Value::Array(vec![]));

        let templates = v["templates"].as_array().unwrap();
        if dialect == Dialect::R72 {
            assert!(templates.is_empty(), "R72 symbols cannot point at templates");
        } else {
            assert_eq!(templates[0]["kind"], "struct");
            assert_eq!(templates[0]["name"], "List");
            assert_eq!(templates[0]["generic_params"], serde_json::json!(["T"]));
            assert_eq!(templates[1]["generic_params"], serde_json::json!(["T", "U"]));
        }
    }
}

#[test]
fn inspect_json_is_valid_for_any_names() {
    let dir = scratch("names");
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &samples::RETURN_42);
    let names: [&[u8]; 5] =
        [b"\xff\xfe bad utf8", b"ctl\x01\x1f\x7f", b"quote\"back\\slash", "\u{2028}sep".as_bytes(), b""];
    for name in names {
        // The unnamed one is local: a global or weak symbol must have a name.
        let binding = if name.is_empty() { Binding::Local } else { Binding::Global };
        b.add_symbol(SymbolSpec::function(name, 0, 1).with_binding(binding));
    }
    let path = write(&dir, "names.smf", &b.build().unwrap());
    let v = json_of(&path);
    let got: Vec<&str> =
        v["symbols"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        got,
        ["\u{fffd}\u{fffd} bad utf8", "ctl\x01\x1f\x7f", "quote\"back\\slash", "\u{2028}sep", ""]
    );
    assert_eq!(v["note_sdn"], Value::Null);
}

#[test]
fn inspect_text_reports_every_part() {
    let dir = scratch("text");
    let path = write(&dir, "rich.smf", &samples::rich(Dialect::S128));
    let o = smf(&["inspect", &path]);
    assert_eq!(o.status, 0);
    for needle in [
        "Dialect:        S128 (header trailer at offset",
        "Flags:          0x0021 [executable, has-note-sdn]",
        "Sections (9):",
        ".rodata",
        "Symbols (11):",
        "\"external_fn\"",
        "Relocations (5):",
        "abs32",
        "possible (1 row)",
        "mangled_name=\"List$Float\"",
        "struct   List<T>",
        "Template meta (version 1):",
    ] {
        assert!(o.out.contains(needle), "missing {needle:?} in:\n{}", o.out);
    }
}

#[test]
fn inspect_prints_flags_as_stored_unknown_bits_included() {
    let dir = scratch("unknown-flags");
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.header(|h| h.flags = ModuleFlags::RELOADABLE | ModuleFlags::from_bits_retain(0x8000_0000));
    let code = SectionFlags::READ | SectionFlags::EXEC | SectionFlags::from_bits_retain(0x8000);
    b.add_section(SectionSpec::new(SectionType::Code, b".text", code, samples::RETURN_42.to_vec(), 16));
    b.add_symbol(SymbolSpec {
        flags: SymbolFlags::from_bits_retain(0x81),
        ..SymbolSpec::function(b"main", 0, 6)
    });
    b.entry_point(0);
    let path = write(&dir, "flags.smf", &b.build().unwrap());
    let v = json_of(&path);
    assert_eq!(v["flags"], 0x8000_0003u64);
    assert_eq!(v["sections"][0]["flags"], 0x8005);
    assert_eq!(v["symbols"][0]["flags"], 0x81);
    let o = smf(&["inspect", &path]);
    assert_eq!(o.status, 0);
    for needle in ["Flags:          0x80000003 [executable, reloadable]", " r-x ", " 0x81 "] {
        assert!(o.out.contains(needle), "missing {needle:?} in:\n{}", o.out);
    }
}

#[test]
fn inspect_tells_data_relocations_from_code_ones() {
    let dir = scratch("data-relocations");
    let path = write(&dir, "pointers.smf", &samples::data_pointers(Dialect::R96));
    let o = smf(&["inspect", &path]);
    assert_eq!(o.status, 0);
    assert!(o.out.contains("Relocations (5, the first the marker of data relocations):"), "{}", o.out);
    let data_rows = o.out.lines().filter(|l| l.trim_start().starts_with("data ")).count();
    assert_eq!(data_rows, 4, "{}", o.out);
    let json = smf(&["inspect", "--json", &path]);
    let v: Value = serde_json::from_str(&json.out).unwrap();
    let relocations = v["relocations"].as_array().unwrap();
    assert_eq!(relocations.len(), 4);
    assert!(relocations.iter().all(|r| r["image"] == "data"));
    assert_eq!(relocations[0]["index"], 1, "the marker is relocation 0");
}

#[test]
fn inspect_shows_only_the_tables_asked_for_with_names_whole() {
    let dir = scratch("tables");
    // Section names have 16 bytes on disk (no NUL needed); symbol names any length.
    let long_section = ".text.sixteen_by";
    let long_symbol = "a_symbol_name_well_past_sixteen_characters_too";
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(long_section.as_bytes(), &samples::RETURN_42);
    b.add_symbol(SymbolSpec::function(long_symbol.as_bytes(), 0, 6));
    let long = write(&dir, "long.smf", &b.build().unwrap());
    let rich = write(&dir, "rich.smf", &samples::rich(Dialect::S128));

    let o = smf(&["inspect", "--symbols", &rich]);
    assert_eq!(o.status, 0, "{}", o.err);
    assert!(o.out.starts_with("Symbols (11):"), "{}", o.out);
    for absent in ["Dialect:", "Sections (", "Relocations (", "possible (", "Template"] {
        assert!(!o.out.contains(absent), "{absent} in:\n{}", o.out);
    }
    let o = smf(&["inspect", "--relocations", "--sections", &rich]);
    let (sections, relocations) =
        (o.out.find("Sections (9):").unwrap(), o.out.find("Relocations (5):").unwrap());
    assert!(sections == 0 && relocations > sections && !o.out.contains("Symbols ("), "{}", o.out);

    let o = smf(&["inspect", "--sections", "--symbols", &long]);
    assert!(o.out.contains(long_section) && o.out.contains(long_symbol), "{}", o.out);

    let o = smf(&["inspect", "--json", "--symbols", &long]);
    let json: Value = serde_json::from_str(&o.out).unwrap();
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["file", "symbols"]);
    assert_eq!(json["symbols"][0]["name"], long_symbol);
    // Not options of other commands.
    assert_eq!(smf(&["verify", "--symbols", &rich]).status, 2);
}

#[test]
fn dialect_override_is_honoured() {
    let dir = scratch("override");
    let path = write(&dir, "r96.smf", &samples::return_42(Dialect::R96));
    assert_eq!(smf(&["inspect", "--dialect", "r96", "--json", &path]).status, 0);
    let o = smf(&["inspect", "--dialect", "s128", &path]);
    assert_eq!(o.status, 1);
    assert!(o.err.contains("no SMF magic"), "{}", o.err);
    assert_eq!(smf(&["verify", "--dialect", "R72", &path]).status, 1);
    assert_eq!(smf(&["verify", "--dialect", "elf", &path]).status, 2);
}

#[test]
fn verify_reports_each_bad_file_with_its_offset() {
    let dir = scratch("verify");
    let good: Vec<String> =
        Dialect::ALL.iter().map(|&d| write(&dir, &format!("good.{d}"), &samples::rich(d))).collect();
    let ok = smf(&["verify", &good[0], &good[1], &good[2]]);
    assert_eq!((ok.status, ok.err.as_str()), (0, ""));

    let mut bad = samples::return_42(Dialect::R96);
    bad[166] = 9;
    let bad = write(&dir, "bad.smf", &bad);
    let truncated = write(&dir, "short.smf", &samples::return_42(Dialect::R72)[..100]);
    let missing = dir.join("missing.smf").to_string_lossy().into_owned();
    let o = smf(&["verify", &good[0], &bad, &truncated, &missing]);
    assert_eq!(o.status, 1);
    let lines: Vec<&str> = o.err.lines().collect();
    assert_eq!(lines.len(), 3, "{}", o.err);
    assert_eq!(lines[0], format!("{bad}: symbol 0: unknown symbol type 9 (at byte offset 166)"));
    assert!(lines[1].starts_with(&truncated) && lines[1].contains("byte offset"), "{}", lines[1]);
    assert!(lines[2].starts_with(&format!("{missing}: cannot read")), "{}", lines[2]);
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["verify"][..],
        &["frobnicate"][..],
        &["inspect"][..],
        &["inspect", "--bogus", "x"][..],
        &["symbols", "--defined", "--undefined", "x"][..],
        &["pack", "a.o"][..],
        &["pack", "a.o", "-o", "b.smf", "--quiet", "--verbose"][..],
        &["prefetch", "--threads", "0", "x"][..],
        &["run", "x", "--ret", "i128"][..],
    ] {
        let o = smf(args);
        assert_eq!(o.status, 2, "{args:?}");
        // Clap's errors: what was wrong, then the usage (or, for a bad value, what it takes).
        assert!(o.err.contains("Usage: smf") || o.err.contains("invalid value"), "{args:?}: {}", o.err);
    }
    let help = smf(&["help"]);
    assert_eq!(help.status, 0);
    assert!(help.out.contains("inspect") && help.out.contains("prefetch"), "{}", help.out);
}

#[test]
fn the_tool_has_a_version_help_per_command_and_the_usual_option_forms() {
    let version = smf(&["--version"]);
    assert_eq!(
        (version.status, version.out.as_str()),
        (0, format!("smf {}\n", env!("CARGO_PKG_VERSION")).as_str())
    );
    // Help for one command, not the whole usage.
    let help = smf(&["run", "--help"]);
    assert_eq!(help.status, 0);
    assert!(help.out.contains("Usage: smf run") && help.out.contains("--no-libc"), "{}", help.out);
    assert!(!help.out.contains("prefetch"), "{}", help.out);

    let dir = scratch("forms");
    let r96 = write(&dir, "r96.smf", &samples::return_42(Dialect::R96));
    // --opt=value, and options after FILE.
    let inline = smf(&["inspect", "--dialect=r96", &r96, "--json"]);
    assert_eq!(inline.status, 0, "{}", inline.err);
    assert_eq!(serde_json::from_str::<Value>(&inline.out).unwrap()["dialect"], "R96");
    let after = smf(&["run", &example("recursion.smf"), "fib", "10", "--ret", "i64"]);
    assert_eq!((after.status, after.out.as_str()), (0, "55\n"), "{}", after.err);
    // `-` is standard input.
    let bytes = std::fs::read(&r96).unwrap();
    let piped = smf_with_stdin(&["symbols", "-"], Some(&bytes));
    assert_eq!(piped.status, 0, "{}", piped.err);
    assert!(piped.out.contains(" main\n"), "{}", piped.out);
    let run = smf_with_stdin(&["run", "-"], Some(&bytes));
    assert_eq!((run.status, run.out.as_str()), (0, "42\n"), "{}", run.err);
    let bad = smf_with_stdin(&["verify", "-"], Some(b"not a module"));
    assert_eq!(bad.status, 1);
    assert!(bad.err.starts_with("-: "), "{}", bad.err);
}

#[test]
fn verify_never_panics_on_arbitrary_bytes() {
    let dir = scratch("random");
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut paths = Vec::new();
    for i in 0..300 {
        let mut bytes = samples::rich(Dialect::ALL[i % 3]);
        for _ in 0..1 + i % 8 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let at = (state as usize) % bytes.len();
            bytes[at] = (state >> 32) as u8;
        }
        paths.push(write(&dir, &format!("m{i}.smf"), &bytes));
    }
    let args: Vec<&str> = std::iter::once("verify").chain(paths.iter().map(String::as_str)).collect();
    let o = smf(&args);
    assert!(o.status == 0 || o.status == 1);
    for line in o.err.lines() {
        assert!(line.contains("byte offset"), "{line}");
    }
    for path in &paths {
        let o = smf(&["inspect", "--json", path]);
        if o.status == 0 {
            serde_json::from_str::<Value>(&o.out).unwrap();
        }
    }
}

fn example(name: &str) -> String {
    smf_tests::workspace().join("examples").join(name).to_string_lossy().into_owned()
}

/// `tests/c/NAME.c` compiled (gcc -O2 -fPIC) and packed into a module in `dir`; its path.
#[cfg(target_arch = "x86_64")] // packs x86-64 objects
fn packed_c(dir: &std::path::Path, name: &str) -> String {
    let object = smf_tests::compile_c(dir, &format!("{name}.c"));
    let module = dir.join(format!("{name}.smf")).to_string_lossy().into_owned();
    let packed = smf(&["pack", &object.to_string_lossy(), "-o", &module]);
    assert_eq!(packed.status, 0, "{}", packed.err);
    module
}

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
        (&["run", &example("recursion.smf")], "6765\n"),
        (&["run", &example("recursion.smf"), "fib", "10"], "55\n"),
        (&["run", &example("recursion.smf"), "ackermann", "2", "0x3"], "9\n"),
        (&["run", &example("strings.smf"), "text_length"], "51\n"),
        (&["run", &example("globals.smf"), "bump", "-101"], "-1\n"),
        (&["run", "--lib", &example("mathlib.smf"), &example("app.smf")], "1075\n"),
        (&["run", "--lib", &example("mathlib.smf"), &example("app.smf"), "set_scale", "10"], "70\n"),
        (&["run", &example("return42.r72.smf")], "42\n"),
    ];
    for (args, expected) in cases {
        let o = smf(args);
        assert_eq!((o.status, o.out.as_str(), o.err.as_str()), (0, *expected, ""), "{args:?}");
    }
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

/// The child side of the test below: loads a module with exported read-only data through the
/// shell and checks its protection against what `SMF_RODATA_NOEXEC` in this process asks for.
/// Run alone (no variable set), it checks the default.
#[test]
fn rodata_protection_follows_this_process_environment() {
    use smf_core::sys::Protection;
    let noexec = std::env::var_os(smf::runtime::RODATA_NOEXEC_ENV).is_some_and(|v| v == "1");
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b".text", &samples::RETURN_42);
    let rodata = b.add_rodata(b".rodata", b"constant");
    b.add_symbol(SymbolSpec::function(b"main", 0, 6));
    b.add_symbol(SymbolSpec::data(b"r", rodata, 0, 8));
    let module = smf::loader::load_bytes(&b.build().unwrap(), &(), None).unwrap();
    let exec = smf::runtime::exec();
    let expected = if noexec { Protection::Read } else { Protection::ReadExec };
    assert_eq!(
        exec.protection_at(module.symbol(b"r").unwrap()),
        Some(expected),
        "SMF_RODATA_NOEXEC={noexec}"
    );
    assert_eq!(exec.protection_at(module.symbol(b"main").unwrap()), Some(Protection::ReadExec));
}

/// `SMF_RODATA_NOEXEC=1` seals read-only data read-only and not executable; without it, it is
/// sealed with the code. The variable is read once per process, so each case runs this test
/// binary again, filtered to the test above.
#[test]
fn the_rodata_switch_is_read_from_the_environment() {
    for value in [None, Some("1")] {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child.args(["--exact", "rodata_protection_follows_this_process_environment", "--test-threads=1"]);
        match value {
            Some(v) => child.env(smf::runtime::RODATA_NOEXEC_ENV, v),
            None => child.env_remove(smf::runtime::RODATA_NOEXEC_ENV),
        };
        let out = child.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{value:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("1 passed"), "the child ran the check: {stdout}");
    }
}

/// `smf prefetch` loads every file on worker threads (a module whose imports another file of
/// the set provides loads whatever the order), reports the count and the time, and names each
/// file that failed.
#[test]
fn prefetch_loads_a_set_of_modules_and_names_the_failures() {
    // app.smf imports gcd from mathlib.smf, listed after it.
    let ok = smf(&[
        "prefetch",
        "--threads",
        "2",
        &example("app.smf"),
        &example("mathlib.smf"),
        &example("recursion.smf"),
    ]);
    assert_eq!(ok.status, 0, "{}", ok.err);
    assert!(ok.out.starts_with("3 modules loaded, 0 failed, in "), "{}", ok.out);
    assert!(ok.out.ends_with(" ms on 2 threads\n"), "{}", ok.out);
    let missing = example("missing.smf");
    let bad = smf(&["prefetch", &example("recursion.smf"), &missing]);
    assert_eq!(bad.status, 1);
    assert!(bad.out.starts_with("1 module loaded, 1 failed"), "{}", bad.out);
    assert!(bad.out.ends_with(" threads\n") || bad.out.ends_with(" on 1 thread\n"), "{}", bad.out);
    assert!(bad.err.starts_with(&format!("smf: {missing}: ")), "{}", bad.err);
    assert_eq!(smf(&["prefetch"]).status, 2);
    assert_eq!(smf(&["prefetch", "--threads", "0", &missing]).status, 2);
}

/// `smf symbols` lists symbols like nm: value (blank for an import), size, kind, binding and
/// the whole name, filtered to the defined, undefined or exported ones on request.
#[test]
fn symbols_lists_like_nm_with_whole_names_and_filters() {
    let all = smf(&["symbols", &example("app.smf")]);
    assert_eq!(all.status, 0, "{}", all.err);
    assert!(all.out.contains("0000000000000000       39 function  global .text    lcm\n"), "{}", all.out);
    assert!(
        all.out.contains(&format!("{}        0 import    global *UND*    gcd\n", " ".repeat(16))),
        "{}",
        all.out
    );
    let defined = smf(&["symbols", "--defined", &example("app.smf")]);
    assert!(!defined.out.contains(" import ") && defined.out.contains(" lcm\n"), "{}", defined.out);
    let undefined = smf(&["symbols", "--undefined", &example("app.smf")]);
    assert!(undefined.out.lines().all(|l| l.contains(" import ")), "{}", undefined.out);
    assert!(undefined.out.contains(" gcd\n"));

    let dir = scratch("symbols");
    let long = "a_symbol_name_well_past_sixteen_characters_long";
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &samples::RETURN_42);
    b.add_symbol(SymbolSpec::function(long.as_bytes(), 0, 6));
    b.add_symbol(SymbolSpec::function(b"hidden", 0, 6).with_binding(Binding::Local));
    let path = write(&dir, "long.smf", &b.build().unwrap());
    let exported = smf(&["symbols", "--exported", &path]);
    assert_eq!(exported.out, format!("0000000000000000        6 function  global .text    {long}\n"));
    assert_eq!(smf(&["symbols"]).status, 2);
    assert_eq!(smf(&["symbols", &dir.join("missing.smf").to_string_lossy()]).status, 1);
}

/// `smf verify` checks the format; `--load` also loads each module here, linked as `run` links
/// it, and says why one that is valid would not load.
#[test]
fn verify_load_says_whether_a_valid_module_loads_here() {
    let app = example("app.smf");
    assert_eq!(smf(&["verify", &app]).status, 0, "valid");
    let alone = smf(&["verify", "--load", &app]);
    assert_eq!(alone.status, 1);
    assert!(
        alone.err.contains("valid, but does not load here: 4 unresolved imports: `gcd`, "),
        "{}",
        alone.err
    );
    let linked =
        smf(&["verify", "--load", "--lib", &example("mathlib.smf"), &app, &example("recursion.smf")]);
    assert_eq!(linked.status, 0, "{}", linked.err);

    // Another architecture: valid, and refused by --load with the reason.
    let dir = scratch("verify-load");
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &samples::RETURN_42);
    b.add_symbol(SymbolSpec::function(b"main", 0, 6));
    b.header(|h| h.arch = 4); // riscv64
    let path = write(&dir, "riscv.smf", &b.build().unwrap());
    assert_eq!(smf(&["verify", &path]).status, 0);
    let foreign = smf(&["verify", "--load", &path]);
    assert_eq!(foreign.status, 1);
    assert!(foreign.err.contains("does not load here") && foreign.err.contains("riscv64"), "{}", foreign.err);
    assert_eq!(smf(&["verify", "--lib", &app, &app]).status, 2, "--lib without --load");
    assert_eq!(smf(&["verify", "--no-libc", &app]).status, 2, "--no-libc without --load");
}

/// `verify --load` runs no code of the module: its constructors (here one that exits the
/// process with status 7) run when `smf run` loads it, not when `verify` does; `inspect` shows
/// which section is the constructor array.
#[test]
fn verify_load_runs_no_constructor_and_run_does() {
    let dir = scratch("constructors");
    let mut b = ModuleBuilder::new(Dialect::S128);
    // exits(): mov edi, 7; jmp exit. main: mov eax, 42; ret.
    let mut code = vec![0xBF, 7, 0, 0, 0, 0xE9, 0, 0, 0, 0];
    code.resize(16, 0xCC);
    code.extend_from_slice(&samples::RETURN_42);
    b.add_code(b".text", &code);
    let exit = b.add_symbol(SymbolSpec::import(b"exit"));
    let exits = b.add_symbol(SymbolSpec::function(b"exits", 0, 10));
    b.add_symbol(SymbolSpec::function(b"main", 16, 6));
    b.entry_point(16);
    b.add_relocation(6, exit, smf_core::RelocKind::Plt32, -4);
    b.add_call_array(smf_core::CallArray::Constructors, &[(exits, 0)]);
    let path = write(&dir, "exits.smf", &b.build().unwrap());
    let verified = smf(&["verify", "--load", &path]);
    assert_eq!(verified.status, 0, "{}", verified.err);
    let lib = smf(&["verify", "--load", "--lib", &path, &example("recursion.smf")]);
    assert_eq!(lib.status, 0, "a --lib's constructors do not run either: {}", lib.err);
    assert_eq!(smf(&["run", &path]).status, 7, "run runs the constructor, which exits");
    // inspect marks the array, in text and JSON.
    let text = smf(&["inspect", "--sections", &path]);
    assert!(text.out.contains(".init_array      rodata:ctors    r--"), "{}", text.out);
    let json: Value = serde_json::from_str(&smf(&["inspect", "--json", &path]).out).unwrap();
    let arrays: Vec<_> =
        json["sections"].as_array().unwrap().iter().map(|s| s["call_array"].clone()).collect();
    assert_eq!(
        arrays,
        [Value::Null, "constructors".into(), Value::Null, Value::Null],
        "code, array, two relocation sections"
    );
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

/// `symbols` sorts by name by default (by value, size or table order on request, reversed with
/// -r), shows each symbol's section, escapes control characters as `inspect` does, and takes
/// several files as nm does (a header per file, or the file on every line with -A).
#[test]
fn symbols_sorts_shows_sections_and_takes_several_files() {
    let dir = scratch("symbols-order");
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &[0xC3; 32]);
    let data = b.add_data(b".data", &[0; 16]);
    b.add_symbol(SymbolSpec::function(b"zeta", 0, 8));
    b.add_symbol(SymbolSpec::function(b"alpha", 16, 2));
    b.add_symbol(SymbolSpec::data(b"beta", data, 4, 4));
    b.add_symbol(SymbolSpec::import(b"gamma"));
    b.add_symbol(SymbolSpec::function(b"ctl\x1b[31m\n", 8, 1));
    let path = write(&dir, "order.smf", &b.build().unwrap());
    let names = |args: &[&str]| -> Vec<String> {
        let o = smf(args);
        assert_eq!(o.status, 0, "{args:?}: {}", o.err);
        o.out.lines().map(|l| l.rsplit(' ').next().unwrap().to_owned()).collect()
    };
    assert_eq!(names(&["symbols", &path]), ["alpha", "beta", "ctl\\u{1b}[31m\\n", "gamma", "zeta"]);
    assert_eq!(names(&["symbols", "-n", &path]), ["zeta", "ctl\\u{1b}[31m\\n", "alpha", "beta", "gamma"]);
    assert_eq!(names(&["symbols", "--size-sort", &path])[..2], ["gamma", "ctl\\u{1b}[31m\\n"]);
    assert_eq!(names(&["symbols", "-p", &path]), ["zeta", "alpha", "beta", "gamma", "ctl\\u{1b}[31m\\n"]);
    assert_eq!(names(&["symbols", "-r", &path]), ["zeta", "gamma", "ctl\\u{1b}[31m\\n", "beta", "alpha"]);
    let listing = smf(&["symbols", &path]).out;
    assert!(listing.contains("0000000000000004        4 data      global .data    beta\n"), "{listing}");
    assert!(listing.contains("0000000000000010        2 function  global .text    alpha\n"), "{listing}");
    assert!(!listing.contains('\x1b'), "no raw escape reaches the terminal: {listing:?}");

    let app = example("app.smf");
    let several = smf(&["symbols", "--defined", &path, &app]);
    assert_eq!(several.status, 0, "{}", several.err);
    assert!(several.out.starts_with(&format!("\n{path}:\n")), "{}", several.out);
    assert!(several.out.contains(&format!("\n{app}:\n")), "{}", several.out);
    let prefixed = smf(&["symbols", "-A", &path, &app]);
    assert!(prefixed
        .out
        .lines()
        .all(|l| l.starts_with(&format!("{path}: ")) || l.starts_with(&format!("{app}: "))));
    assert_eq!(prefixed.out.lines().count(), 5 + smf(&["symbols", &app]).out.lines().count());
    // A bad file among good ones: reported, the others listed, exit 1.
    let missing = dir.join("missing.smf").to_string_lossy().into_owned();
    let mixed = smf(&["symbols", &path, &missing]);
    assert_eq!(mixed.status, 1);
    assert!(mixed.out.contains(" alpha\n") && mixed.err.contains(&missing), "{}{}", mixed.out, mixed.err);
}

/// `symbols --json` and `verify --json` print one object per file, with the keys `inspect
/// --json` uses for the same things.
#[test]
fn symbols_and_verify_speak_json_with_the_keys_of_inspect() {
    let app = example("app.smf");
    let inspected = json_of(&app);
    let o = smf(&["symbols", "--json", "-p", &app]);
    assert_eq!(o.status, 0, "{}", o.err);
    let symbols: Value = serde_json::from_str(&o.out).unwrap();
    assert_eq!(symbols["file"], app.as_str());
    assert_eq!(symbols["symbols"], inspected["symbols"], "the same objects, in table order");
    assert_eq!(inspected["symbols"][0]["section_name"], ".text");

    let dir = scratch("verify-json");
    let bad = write(&dir, "bad.smf", b"not a module at all, just text");
    let o = smf(&["verify", "--json", "--load", &app, &bad, &example("recursion.smf")]);
    assert_eq!(o.status, 1);
    let lines: Vec<Value> = o.out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!((&lines[0]["valid"], &lines[0]["loads"]), (&Value::Bool(true), &Value::Bool(false)));
    assert!(lines[0]["load_error"]["message"].as_str().unwrap().contains("unresolved imports"));
    for key in ["dialect", "version", "platform", "arch", "flags", "entry_point", "code_size"] {
        assert_eq!(lines[0][key], inspected[key], "{key}");
    }
    assert_eq!((&lines[1]["valid"], &lines[1]["error"]["offset"]), (&Value::Bool(false), &Value::from(0)));
    assert_eq!((&lines[2]["valid"], &lines[2]["loads"]), (&Value::Bool(true), &Value::Bool(true)));
    assert!(o.err.is_empty(), "JSON carries the problems: {}", o.err);
}

/// `ldd` lists every import and what resolves it: a --lib module, the C library's file, or
/// "not found" (exit 1; a weak import that nothing provides is null, not an error).
#[test]
fn ldd_names_what_resolves_each_import() {
    let (app, mathlib) = (example("app.smf"), example("mathlib.smf"));
    let alone = smf(&["ldd", &app]);
    assert_eq!(alone.status, 1);
    assert_eq!(
        alone.out,
        "\tgcd => not found\n\tscale => not found\n\tscaled => not found\n\tpower => not found\n"
    );
    let linked = smf(&["ldd", "--lib", &mathlib, &app]);
    assert_eq!(linked.status, 0, "{}", linked.err);
    assert!(linked.out.contains(&format!("\tgcd => {mathlib}\n")), "{}", linked.out);

    let dir = scratch("ldd");
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &samples::RETURN_42);
    b.add_symbol(SymbolSpec::import(b"strlen"));
    b.add_symbol(SymbolSpec::import(b"smf_ldd_test_maybe").with_binding(Binding::Weak));
    let path = write(&dir, "libc.smf", &b.build().unwrap());
    let o = smf(&["ldd", &path]);
    assert_eq!(o.status, 0, "{}", o.err);
    let strlen = o.out.lines().find(|l| l.starts_with("\tstrlen => ")).unwrap();
    assert!(strlen.contains("libc"), "the C library's file: {strlen}");
    assert!(o.out.contains("\tsmf_ldd_test_maybe => not found (weak: null)\n"), "{}", o.out);
    let without = smf(&["ldd", "--no-libc", &path, &app]);
    assert_eq!(without.status, 1);
    assert!(without.out.starts_with(&format!("{path}:\n\tstrlen => not found\n")), "{}", without.out);
    assert!(without.out.contains(&format!("{app}:\n\tgcd => not found\n")), "{}", without.out);
}

/// `dump -x` shows a section's bytes (by name or index) as readelf -x does; `--disassemble`
/// decodes x86-64 code with function names and the relocations each instruction carries.
#[test]
fn dump_shows_a_sections_bytes_and_its_instructions() {
    let recursion = example("recursion.smf");
    let by_name = smf(&["dump", "-x", ".text", &recursion]);
    assert_eq!(by_name.status, 0, "{}", by_name.err);
    assert!(by_name.out.starts_with("\nHex dump of section '.text':\n  0x00000000 "), "{}", by_name.out);
    let bytes = std::fs::read(&recursion).unwrap();
    let first: String = bytes[..4].iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        by_name.out.contains(&format!("0x00000000 {first} ")),
        "the section starts the file: {}",
        by_name.out
    );
    assert_eq!(smf(&["dump", "-x", "0", &recursion]).out, by_name.out);
    let missing = smf(&["dump", "-x", ".nope", &recursion]);
    assert_eq!(missing.status, 1);
    assert!(missing.err.contains("no section `.nope`"), "{}", missing.err);
    assert_eq!(smf(&["dump", &recursion]).status, 2, "dump what?");

    let code = smf(&["dump", "--disassemble", &example("app.smf")]);
    assert_eq!(code.status, 0, "{}", code.err);
    assert!(code.out.contains("\n0000000000000000 <lcm>:\n"), "{}", code.out);
    assert!(code.out.lines().any(|l| l.contains("call ") && l.ends_with("; plt32 gcd-0x4")), "{}", code.out);
    let dir = scratch("dump");
    let mut arm = samples::return_42(Dialect::R96);
    arm[7] = 1;
    let arm = write(&dir, "arm.smf", &arm);
    let refused = smf(&["dump", "-d", &arm]);
    assert_eq!(refused.status, 1);
    assert!(refused.err.contains("cannot disassemble aarch64 code (x86-64 only)"), "{}", refused.err);
}

/// `inspect` takes several files, prints an application's fields only for an application (its
/// window only for a graphical one), and counts in the singular for one.
#[test]
fn inspect_takes_several_files_and_prints_app_fields_where_they_apply() {
    let (recursion, mathlib) = (example("recursion.smf"), example("mathlib.smf"));
    let both = smf(&["inspect", &recursion, &mathlib]);
    assert_eq!(both.status, 0, "{}", both.err);
    assert!(both.out.starts_with(&format!("SMF module {recursion}\n")), "{}", both.out);
    assert!(both.out.contains(&format!("\n\nSMF module {mathlib}\n")), "{}", both.out);
    let executable = smf(&["inspect", &recursion]).out;
    assert!(executable.contains("  App type:       cli\n"), "{executable}");
    assert!(!executable.contains("window"), "{executable}");
    let library = smf(&["inspect", &mathlib]).out;
    assert!(!library.contains("App type") && !library.contains("window"), "{library}");

    let dir = scratch("gui");
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b".text", &samples::RETURN_42);
    b.add_symbol(SymbolSpec::function(b"main", 0, 6));
    b.entry_point(0);
    b.header(|h| {
        h.app_type = 2;
        h.window_width = 800;
        h.window_height = 600;
    });
    let gui = write(&dir, "gui.smf", &b.build().unwrap());
    let o = smf(&["inspect", &gui]);
    assert!(o.out.contains("  App type:       gui, window 800x600\n"), "{}", o.out);
    let tables = smf(&["inspect", "--sections", &recursion, &mathlib]);
    assert!(tables.out.starts_with(&format!("\nFile: {recursion}\nSections (")), "{}", tables.out);
    let json = smf(&["inspect", "--json", &recursion, &mathlib]);
    let files: Vec<Value> = json.out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!((&files[0]["file"], &files[1]["file"]), (&Value::from(recursion), &Value::from(mathlib)));
}

/// `pack` reads an object from standard input and writes the module to standard output;
/// `prefetch -` reads the files' names from standard input and links like `run` (`--lib`).
#[test]
#[cfg(target_arch = "x86_64")] // packs x86-64 objects
fn pack_and_prefetch_read_standard_input() {
    let dir = scratch("stdin");
    let module = packed_c(&dir, "typed_calls");
    let object = std::fs::read(dir.join("typed_calls.o")).unwrap();
    let piped = {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let bin = smf_tests::build_smf_package().join("smf");
        let mut child = Command::new(bin)
            .args(["pack", "-", "-o", "-", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&object).unwrap();
        child.wait_with_output().unwrap()
    };
    assert!(piped.status.success(), "{}", String::from_utf8_lossy(&piped.stderr));
    assert_eq!(piped.stdout, std::fs::read(&module).unwrap(), "the same module as from the file");

    let garbage = write(&dir, "garbage.bin", b"garbage");
    let o = smf(&["pack", &garbage, "-o", &dir.join("g.smf").to_string_lossy()]);
    assert_eq!(o.status, 1);
    assert_eq!(o.err.matches(garbage.as_str()).count(), 1, "the path once: {}", o.err);

    let names = format!("{}\n{}\n", example("app.smf"), example("recursion.smf"));
    let o = smf_with_stdin(
        &["prefetch", "--threads", "1", "--lib", &example("mathlib.smf"), "-"],
        Some(names.as_bytes()),
    );
    assert_eq!(o.status, 0, "{}", o.err);
    assert!(
        o.out.starts_with("2 modules loaded, 0 failed, in ") && o.out.ends_with(" on 1 thread\n"),
        "{}",
        o.out
    );
    let o = smf_with_stdin(&["prefetch", "--no-libc", "-"], Some(module.as_bytes()));
    assert_eq!(o.status, 1, "printf is the C library's: {}", o.out);
    assert!(o.err.contains("printf"), "{}", o.err);
}

#[test]
fn pack_compresses_inspect_shows_it_and_verify_decompresses_it() {
    let dir = scratch("compress");
    let object = smf_tests::compile_c(&dir, "tables.c");
    let module = dir.join("tables.smf").to_string_lossy().into_owned();
    let packed = smf(&["pack", &object.to_string_lossy(), "--compress", "lz4", "-o", &module]);
    assert_eq!(packed.status, 0, "{}", packed.err);
    let inspected = smf(&["inspect", &module]);
    assert!(inspected.out.contains("  Compression:    lz4 (level 0): "), "{}", inspected.out);
    assert!(inspected.out.contains("code:packed"), "{}", inspected.out);
    assert_eq!(json_of(&module)["compression"], "lz4");
    assert_eq!(
        (smf(&["verify", &module]).status, smf(&["run", &module, "operate", "2", "6", "7"]).out),
        (0, "42\n".into())
    );

    // A frame whose length is one short of what its data makes: verify finds it.
    let bytes = std::fs::read(&module).unwrap();
    let parsed = smf_core::Module::parse(&bytes).unwrap();
    let code = parsed.sections().find(|s| s.flags.contains(SectionFlags::COMPRESSED)).unwrap();
    let (index, at) = (code.index, usize::try_from(code.file_offset).unwrap());
    let mut lying = bytes.clone();
    let stated = u64::from_le_bytes(lying[at..at + 8].try_into().unwrap());
    lying[at..at + 8].copy_from_slice(&(stated - 1).to_le_bytes());
    let lying = write(&dir, "lying.smf", &lying);
    let o = smf(&["verify", &lying]);
    assert_eq!(o.status, 1);
    assert_eq!(
        o.err.trim_end(),
        format!(
            "{lying}: section {index} decompresses to more bytes than its frame states (at byte offset {at})"
        )
    );
    let disassembled = smf(&["dump", "--disassemble", &lying]).out;
    let problem =
        format!("section {index} decompresses to more bytes than its frame states (at byte offset {at})");
    assert!(disassembled.contains(&format!("  (not disassembled: {problem})")), "{disassembled}");

    let r72 =
        smf(&["pack", &object.to_string_lossy(), "--compress", "lz4", "--dialect", "r72", "-o", &module]);
    assert_eq!(r72.status, 1);
    assert!(r72.err.contains("R72 has no compression byte"), "{}", r72.err);
    // Zstandard through libzstd: its default level 3, or the level asked for.
    for (asked, level) in [("zstd", 3), ("zstd:19", 19)] {
        let zstd = smf(&["pack", &object.to_string_lossy(), "--compress", asked, "-o", &module]);
        assert_eq!(zstd.status, 0, "{}", zstd.err);
        let inspected = smf(&["inspect", &module]).out;
        assert!(inspected.contains(&format!("  Compression:    zstd (level {level}): ")), "{inspected}");
        assert_eq!(smf(&["verify", &module]).status, 0);
        assert_eq!(smf(&["run", &module, "operate", "2", "6", "7"]).out, "42\n");
    }
    for unknown in ["brotli", "zstd:23", "lz4:9"] {
        let refused = smf(&["pack", &object.to_string_lossy(), "--compress", unknown, "-o", &module]);
        assert_eq!(refused.status, 2, "{unknown}");
        let expected =
            format!("unknown compression `{unknown}` (lz4, zstd or zstd:LEVEL, 1 to 22; zstd is zstd:3)");
        assert!(refused.err.contains(&expected), "{}", refused.err);
    }
}
