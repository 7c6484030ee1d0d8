//! `cargo xtask fuzz-seeds` writes each target's seed corpus (`fuzz/corpus/TARGET/`);
//! `cargo xtask fuzz [--seconds N] [--jobs J] [TARGET]` runs every target (or one) for N seconds
//! each (default 60), J at a time (default: one per core), installing cargo-fuzz first if it is
//! missing: on nightly with sanitizers when a nightly toolchain exists, else on stable without
//! (`-s none`).

use std::fs;
use std::path::Path;
use std::process::Command;

use smf_format::write::{samples, ModuleBuilder, SymbolSpec};
use smf_format::{Dialect, HeaderPlacement, Module, RelocKind, SectionType};
use smf_runtime::fuzzing::MODULE_SEPARATOR;

use crate::workspace_root;

/// The fuzz targets, each with the largest input it is given: module files and objects get
/// room for large tables (a megabyte holds tens of thousands of symbols); texts and template
/// sections less.
pub(crate) const TARGETS: [(&str, usize); 14] = [
    ("parse", 1 << 20),
    ("compressed", 1 << 17),
    ("load", 1 << 20),
    ("note_sdn", 1 << 17),
    ("templates", 1 << 17),
    ("pack", 1 << 20),
    ("cache_ops", 1 << 12),
    ("ffi_ranges", 1 << 12),
    ("instantiate_ops", 1 << 12),
    ("c_api", 1 << 12),
    ("exec_ops", 1 << 12),
    ("read_file", 1 << 12),
    ("write", 1 << 13),
    ("clif", 1 << 14),
];

/// Seeds of `parse`: the reference modules, the rich modules, modules with data relocations,
/// with constructors and destructors, with compressed sections, stubbed modules, a short-form
/// template one.
fn module_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for d in Dialect::ALL {
        out.push((format!("return42-{d}"), samples::return_42(d)));
        out.push((format!("rich-{d}"), samples::rich(d)));
        out.push((format!("data-pointers-{d}"), samples::data_pointers(d)));
        out.push((format!("call-arrays-{d}"), samples::call_arrays(d)));
        if d != Dialect::R72 {
            out.push((format!("unwind-table-{d}"), samples::unwind_table(d)));
            out.push((format!("compressed-{d}"), samples::compressed(d)));
        }
    }
    for d in [Dialect::S128, Dialect::R96] {
        let mut b = ModuleBuilder::new(d);
        b.stub(b"#!/usr/bin/env simple\n");
        b.placement(HeaderPlacement::Trailer);
        b.add_code(b".text", &samples::RETURN_42);
        let main = b.add_symbol(SymbolSpec::function(b"main", 0, 6));
        let kind = if d == Dialect::S128 { RelocKind::Abs32 } else { RelocKind::Pc32 };
        b.add_relocation(1, main, kind, 0);
        b.entry_point(0);
        if let Ok(bytes) = b.build() {
            out.push((format!("stubbed-{d}"), bytes));
        }
    }
    out.push(("large-R96".into(), samples::large(Dialect::R96, 40, 120)));
    let mut needing = ModuleBuilder::new(Dialect::R96);
    needing.add_code(b".text", &samples::RETURN_42);
    needing.add_symbol(SymbolSpec::function(b"main", 0, 6));
    needing.add_section(smf_format::write::SectionSpec::needed_libraries(&[b"libm.so.6", b"libz.so.1"]));
    if let Ok(bytes) = needing.build() {
        out.push(("needed-R96".into(), bytes));
    }
    // A static function named apart from the symbols (`note.names`), and a GOT load of a
    // variable through the module's own GOT.
    let mut named = ModuleBuilder::new(Dialect::S128);
    named.add_code(b".text", &[0x48, 0x8b, 0x05, 0, 0, 0, 0, 0xc3, 0x90, 0xc3]);
    let data = named.add_data(b".data", &[7, 0, 0, 0, 0, 0, 0, 0]);
    named.add_symbol(SymbolSpec::function(b"get", 0, 8));
    named.add_symbol(SymbolSpec::function(b"helper", 8, 2).with_binding(smf_format::Binding::Local));
    let variable = named.add_symbol(SymbolSpec::data(b"variable", data, 0, 8));
    named.add_relocation(3, variable, RelocKind::GotPc32, -4);
    let _ = named.link();
    named.move_local_functions_to_names();
    if let Ok(bytes) = named.build() {
        out.push(("function-names-S128".into(), bytes));
    }
    out.push(("aarch64-library".into(), samples::aarch64_library()));
    out.push(("aarch64-application".into(), samples::aarch64_application()));
    out
}

/// Seeds of `load`: every module seed alone, and modules linked to each other and the host
/// (a provider, a consumer of it and of the host, a third using both), as one input each.
fn load_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = module_seeds();
    let provider = {
        let mut b = ModuleBuilder::new(Dialect::S128);
        b.add_code(b".text", &samples::RETURN_42);
        b.add_symbol(SymbolSpec::function(b"shared_fn", 0, 6));
        b.build().unwrap_or_default()
    };
    let consumer = |name: &[u8], imports: &[&[u8]], linked: bool| {
        let mut b = ModuleBuilder::new(Dialect::S128);
        // One `call rel32` per import, then `ret`.
        let mut code = Vec::new();
        for _ in imports {
            code.extend_from_slice(&[0xE8, 0, 0, 0, 0]);
        }
        code.push(0xC3);
        b.add_code(b".text", &code);
        b.add_symbol(SymbolSpec::function(name, 0, code.len() as u64));
        for (i, import) in imports.iter().enumerate() {
            let symbol = b.add_symbol(SymbolSpec::import(import));
            b.add_relocation(5 * i as u64 + 1, symbol, RelocKind::Plt32, -4);
        }
        // Linked for the linked layout: calls through the stubs it pins (`docs/format.md`).
        if linked {
            let _ = b.link();
        }
        b.build().unwrap_or_default()
    };
    let joined = |modules: &[Vec<u8>]| modules.join(MODULE_SEPARATOR);
    let second = consumer(b"second", &[b"shared_fn", b"host_function"], false);
    let third = consumer(b"third", &[b"second", b"shared_fn", b"host_data", b"nowhere"], false);
    let pinned = consumer(b"pinned", &[b"second", b"shared_fn", b"host_function"], true);
    out.push(("linked-two".into(), joined(&[provider.clone(), second.clone()])));
    out.push(("linked-three".into(), joined(&[provider.clone(), second.clone(), third])));
    out.push(("linked-imports".into(), joined(&[provider, second, pinned])));
    // aarch64: every relocation kind linked to a library. The first byte of an input chooses
    // the options (`fuzz_load`): a module's magic forces branch stubs; a leading stub of a
    // zero byte (the header then at the end) does not.
    let (library, application) = (samples::aarch64_library(), samples::aarch64_application());
    out.push(("aarch64-linked".into(), joined(&[library.clone(), application.clone()])));
    let mut unforced = ModuleBuilder::new(Dialect::R96);
    unforced.header(|h| h.arch = 1).stub(b"\0 no forced stubs\n").placement(HeaderPlacement::Trailer);
    unforced.add_code(b".text", &[0x00, 0x00, 0x00, 0x94, 0xC0, 0x03, 0x5F, 0xD6]); // bl five; ret
    unforced.add_symbol(SymbolSpec::function(b"start", 0, 8));
    let five = unforced.add_symbol(SymbolSpec::import(b"five"));
    unforced.add_relocation(0, five, RelocKind::Aarch64Branch26, 0);
    out.push(("aarch64-unforced".into(), joined(&[unforced.build().unwrap_or_default(), library])));
    out.push(("aarch64-application-alone".into(), application));
    out
}

/// Seeds of `note_sdn`: the spec's example, the generics example, and a note with escapes,
/// comments, a terminator and a table the spec does not name.
fn note_seeds() -> Vec<(String, Vec<u8>)> {
    let tricky = "# note\n\ninstantiations |id, template, type_args, mangled_name, from_file, from_loc, to_obj, status|\n\
        \x20   7, \"Map\", \"Str, \\\"Int\\\"\", \"Map$Str$Int\", \"a\\\\b.spl\", \"x:1:1\", \"m.o\", \"compiled\"\n\
        custom |a, b|\n    \"tab\\there\", bare\n\
        possible |id, template, type_args, mangled_name, required_by, can_defer|\n\
        \x20   0, \"Map\", \"Int, Int\", \"Map$Int$Int\", \"main\", false\n# END_NOTE\ntrailing |x|\n";
    vec![
        ("spec-example".into(), samples::NOTE_SDN_EXAMPLE.as_bytes().to_vec()),
        ("generics".into(), samples::GENERICS_NOTE.as_bytes().to_vec()),
        ("escapes-and-terminator".into(), tricky.as_bytes().to_vec()),
    ]
}

/// Seeds of `templates`: the template-code and template-meta sections of the sample modules.
fn template_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let modules = Dialect::ALL.iter().map(|d| (format!("rich-{d}"), samples::rich(*d)));
    for (name, bytes) in modules.chain([("generics".to_string(), samples::generics())]) {
        let Ok(module) = Module::parse(&bytes) else { continue };
        for section in module.sections() {
            let kind = match section.section_type {
                SectionType::TemplateCode => "code",
                SectionType::TemplateMeta => "meta",
                _ => continue,
            };
            // note.sdn is typed template-meta too, and carries no bytes here.
            if !section.data.is_empty() {
                out.push((format!("{name}-{kind}"), section.data.to_vec()));
            }
        }
    }
    out
}

/// Seeds of `pack`: gcc objects of the C and C++ test programs (data relocations, jump tables,
/// constructors, C++ with its unwind tables), as `smf pack` is given them, and two of them as
/// an archive.
fn pack_seeds() -> Result<Vec<(String, Vec<u8>)>, String> {
    let dir = workspace_root().join("target").join("fuzz-seeds");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for source in ["tables.c", "jump_tables.c", "ctor_lib.c", "cleanup.cpp"] {
        let object = dir.join(format!("{source}.o"));
        let compiler = if source.ends_with(".cpp") { "g++" } else { "gcc" };
        let status = Command::new(compiler)
            .args(["-c", "-O2", "-fPIC"])
            .arg(workspace_root().join("tests/c").join(source))
            .arg("-o")
            .arg(&object)
            .status()
            .map_err(|e| format!("{compiler}: {e}"))?;
        if !status.success() {
            return Err(format!("{compiler} failed on tests/c/{source}"));
        }
        out.push((
            format!("{}-object", source.replace('.', "-")),
            fs::read(&object).map_err(|e| e.to_string())?,
        ));
    }
    // The same objects as one archive (given alone, pack takes every member).
    let archive = dir.join("seeds.a");
    let _ = fs::remove_file(&archive);
    let objects = ["tables.c", "ctor_lib.c"].map(|source| dir.join(format!("{source}.o")));
    let status = Command::new("ar")
        .arg("rcs")
        .arg(&archive)
        .args(&objects)
        .status()
        .map_err(|e| format!("ar: {e}"))?;
    if !status.success() {
        return Err("ar failed on the seed objects".into());
    }
    out.push(("archive".to_owned(), fs::read(&archive).map_err(|e| e.to_string())?));
    Ok(out)
}

/// Seeds of `cache_ops`, `ffi_ranges`, `instantiate_ops`, `c_api`, `exec_ops` and `write`: operation sequences as
/// `arbitrary` decodes them from bytes, from
/// patterns that reach every operation (the fuzzer takes it from there).
fn operation_seeds() -> Vec<(String, Vec<u8>)> {
    (0..6u32)
        .map(|k| {
            let bytes = (0..256u32).map(|i| ((i * (37 + 2 * k) + k * 11) % 256) as u8).collect();
            (format!("pattern-{k}"), bytes)
        })
        .collect()
}

/// Seeds of `compressed`: every compressed section of the compressed samples (a virtual-size
/// byte first, as large as the section asks), and a frame of each kind of bytes in each method.
fn compressed_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for d in [Dialect::S128, Dialect::R96] {
        let file = samples::compressed(d);
        let Ok(module) = smf_format::Module::parse(&file) else { continue };
        for section in module.sections().filter(|s| s.flags.contains(smf_format::SectionFlags::COMPRESSED)) {
            // The smallest power of two holding the section (the target's first byte).
            let size = section.virtual_size.max(1).next_power_of_two().trailing_zeros() as u8;
            let mut seed = vec![size];
            seed.extend_from_slice(section.data);
            out.push((
                format!("{}-{d}", String::from_utf8_lossy(section.name).trim_start_matches('.')),
                seed,
            ));
        }
    }
    let methods =
        [(smf_format::compress::Method::Lz4, "", 0), (smf_format::compress::Method::Zstd, "zstd-", 0x80)];
    for (method, prefix, bit) in methods {
        for (name, bytes) in
            [("zeros", vec![0u8; 4096]), ("text", b"abcabcabd".repeat(50)), ("empty", Vec::new())]
        {
            let mut seed = vec![13 | bit];
            seed.extend_from_slice(&smf_format::compress::frame(method, &bytes));
            out.push((format!("frame-{prefix}{name}"), seed));
        }
    }
    // libzstd's frames (our writer's, ruzstd's fastest, use few of the format's features):
    // Huffman trees, FSE-described tables, treeless literals and repeated tables in a second
    // block, a checksum.
    for (name, len, level, checksum) in [
        ("words-l3", 6_000, 3, false),
        ("words-l19-sum", 6_000, 19, true),
        ("words-two-blocks", 140_000, 19, false),
    ] {
        let bytes = words(len);
        let mut encoder = zstd::bulk::Compressor::new(level).expect("a zstd compressor");
        encoder.include_checksum(checksum).expect("checksum option");
        let data = encoder.compress(&bytes).expect("libzstd compresses");
        let shift = bytes.len().next_power_of_two().trailing_zeros() as u8;
        let mut seed = vec![shift | 0x80];
        seed.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        seed.extend_from_slice(&data);
        out.push((format!("libzstd-{name}"), seed));
    }
    out
}

/// `len` bytes of words from a small vocabulary, picked by a fixed generator: text that
/// compresses with every table kind.
fn words(len: usize) -> Vec<u8> {
    const VOCABULARY: [&str; 16] = [
        "module ",
        "section ",
        "symbol ",
        "load ",
        "relocation ",
        "the ",
        "of ",
        "into ",
        "page ",
        "0x7f3a ",
        "W^X ",
        "cache\n",
        "prefetch ",
        "template ",
        "{ ",
        "} ",
    ];
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut text = Vec::with_capacity(len + 16);
    while text.len() < len {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        text.extend_from_slice(VOCABULARY[(state >> 60) as usize].as_bytes());
    }
    text.truncate(len);
    text
}

/// Writes `seeds` into `fuzz/corpus/TARGET/`.
/// Seeds of `clif`: an opt-level byte, then CLIF text: recursion, mutual recursion, a call to
/// the C library, branches and loads, floats, and a function the verifier refuses.
fn clif_seeds() -> Vec<(String, Vec<u8>)> {
    let texts = [
        ("factorial", "function %factorial(i64) -> i64 {\n    fn0 = %factorial(i64) -> i64\nblock0(v0: i64):\n    v1 = iconst.i64 1\n    v2 = icmp sle v0, v1\n    brif v2, block1, block2\nblock1:\n    return v1\nblock2:\n    v3 = isub v0, v1\n    v4 = call fn0(v3)\n    v5 = imul v0, v4\n    return v5\n}\n"),
        ("parity", "function %even(i64) -> i64 {\n    fn0 = %odd(i64) -> i64\nblock0(v0: i64):\n    brif v0, block2, block1\nblock1:\n    v1 = iconst.i64 1\n    return v1\nblock2:\n    v2 = iconst.i64 1\n    v3 = isub v0, v2\n    v4 = call fn0(v3)\n    return v4\n}\nfunction %odd(i64) -> i64 {\n    fn0 = %even(i64) -> i64\nblock0(v0: i64):\n    brif v0, block2, block1\nblock1:\n    v1 = iconst.i64 0\n    return v1\nblock2:\n    v2 = iconst.i64 1\n    v3 = isub v0, v2\n    v4 = call fn0(v3)\n    return v4\n}\n"),
        ("libc", "function %abs_of(i64) -> i64 {\n    fn0 = %labs(i64) -> i64\nblock0(v0: i64):\n    v1 = call fn0(v0)\n    return v1\n}\n"),
        ("memory", "function %sum3(i64) -> i64 {\nblock0(v0: i64):\n    v1 = load.i64 v0\n    v2 = load.i64 v0+8\n    v3 = load.i64 v0+16\n    v4 = iadd v1, v2\n    v5 = iadd v4, v3\n    return v5\n}\n"),
        ("float", "function %half(f64) -> f64 {\nblock0(v0: f64):\n    v1 = f64const 0x1.0p-1\n    v2 = fmul v0, v1\n    v3 = floor v2\n    return v3\n}\n"),
        ("mistyped", "function %mistyped() -> i64 {\nblock0:\n    v0 = iconst.i32 1\n    return v0\n}\n"),
    ];
    let mut seeds = Vec::new();
    for (name, text) in texts {
        for opt in 0..3u8 {
            seeds.push((format!("{name}-opt{opt}"), [&[opt][..], text.as_bytes()].concat()));
        }
    }
    seeds
}

fn write_seeds(target: &str, seeds: Vec<(String, Vec<u8>)>) -> Result<(), String> {
    let dir = workspace_root().join("fuzz").join("corpus").join(target);
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, bytes) in seeds {
        let path = dir.join(name);
        fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    println!("wrote seeds to {}", dir.display());
    Ok(())
}

pub(crate) fn seeds_command() -> Result<(), String> {
    write_seeds("parse", module_seeds())?;
    write_seeds("compressed", compressed_seeds())?;
    write_seeds("load", load_seeds())?;
    write_seeds("note_sdn", note_seeds())?;
    write_seeds("clif", clif_seeds())?;
    write_seeds("templates", template_seeds())?;
    write_seeds("pack", pack_seeds()?)?;
    write_seeds("cache_ops", operation_seeds())?;
    write_seeds("ffi_ranges", operation_seeds())?;
    write_seeds("instantiate_ops", operation_seeds())?;
    write_seeds("c_api", operation_seeds())?;
    write_seeds("exec_ops", operation_seeds())?;
    write_seeds("read_file", smf::fuzzing::read_file_seeds())?;
    write_seeds("write", operation_seeds())
}

fn has(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).output().is_ok_and(|o| o.status.success())
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut seconds = 60;
    let mut jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut only = None;
    let mut dev = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let n = args.next().ok_or("--seconds needs a number")?;
                seconds = n.parse::<u64>().map_err(|e| format!("--seconds: {e}"))?;
            }
            "--dev" => dev = true,
            "--jobs" => {
                let n = args.next().ok_or("--jobs needs a number")?;
                jobs = n.parse::<usize>().map_err(|e| format!("--jobs: {e}"))?.max(1);
            }
            name if TARGETS.iter().any(|(t, _)| *t == name) => only = Some(name.to_string()),
            other => {
                let names: Vec<&str> = TARGETS.iter().map(|(t, _)| *t).collect();
                return Err(format!("unknown fuzz target {other} (targets: {})", names.join(", ")));
            }
        }
    }
    crate::install_cargo_tool("fuzz", "cargo-fuzz")?;
    let nightly = has("cargo", &["+nightly", "--version"]);
    let fuzz_dir = workspace_root().join("fuzz");
    let targets: Vec<(&str, usize)> =
        TARGETS.into_iter().filter(|(t, _)| only.as_deref().is_none_or(|name| name == *t)).collect();
    // Built once, all targets together, before any runs: the runs then only start binaries.
    let mut build = fuzz_command(nightly, "build", dev);
    if let Some(name) = &only {
        build.arg(name);
    }
    let status = build.current_dir(&fuzz_dir).status().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("cargo fuzz build failed".into());
    }
    // Each target is its own process on one core for `seconds`: `jobs` of them at a time take
    // the same fuzzing per target in a fraction of the wall time.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(targets.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(target, max_len)) = targets.get(i) else { break };
                if let Err(e) = fuzz_one(&fuzz_dir, nightly, dev, target, max_len, seconds) {
                    failures.lock().unwrap_or_else(|p| p.into_inner()).push(e);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

/// `cargo [+nightly] fuzz SUBCOMMAND [-s none] [--dev]`: with sanitizers on nightly, without
/// on stable; unoptimized with `dev` (a build in a fraction of the time, runs several times
/// slower: CI's smoke).
fn fuzz_command(nightly: bool, subcommand: &str, dev: bool) -> Command {
    let mut cmd = Command::new("cargo");
    if nightly {
        cmd.arg("+nightly");
    }
    cmd.args(["fuzz", subcommand]);
    if !nightly {
        cmd.args(["-s", "none"]);
    }
    if dev {
        cmd.arg("--dev");
    }
    cmd
}

/// Runs one target for `seconds` over a scratch copy of its seeds. Its output goes to
/// `fuzz/target/logs/TARGET.log`, printed whole when the fuzzer fails (runs in parallel would
/// interleave their lines), else summed up in one line.
fn fuzz_one(
    fuzz_dir: &Path,
    nightly: bool,
    dev: bool,
    target: &str,
    max_len: usize,
    seconds: u64,
) -> Result<(), String> {
    let scratch = scratch_corpus(fuzz_dir, target)?;
    let logs = fuzz_dir.join("target").join("logs");
    fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    let log_path = logs.join(format!("{target}.log"));
    let log = fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut cmd = fuzz_command(nightly, "run", dev);
    cmd.arg(target).arg(&scratch);
    cmd.args(["--", &format!("-max_total_time={}", seconds.max(1)), &format!("-max_len={max_len}")]);
    cmd.arg("-rss_limit_mb=2048");
    println!("fuzzing {target} for {seconds} s (log: {})", log_path.display());
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let status = cmd.current_dir(fuzz_dir).stdout(log).stderr(err).status().map_err(|e| e.to_string())?;
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    if !status.success() {
        eprintln!("---- {target} ----\n{text}");
        return Err(format!(
            "the fuzzer failed on {target}: see fuzz/artifacts/{target}, copy the input to fuzz/regressions/{target}/"
        ));
    }
    let done = text.lines().rev().find(|l| l.contains("DONE")).unwrap_or("(no summary line)");
    println!("{target}: no failure; {}", done.trim());
    Ok(())
}

/// A scratch copy of `target`'s committed seeds (the fuzzer adds inputs to its corpus
/// directory; the committed seeds stay as they are).
fn scratch_corpus(fuzz_dir: &Path, target: &str) -> Result<std::path::PathBuf, String> {
    let scratch = fuzz_dir.join("target").join("corpus-run").join(target);
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let seeds = fuzz_dir.join("corpus").join(target);
    for entry in fs::read_dir(&seeds).map_err(|e| format!("{}: {e}", seeds.display()))?.flatten() {
        fs::copy(entry.path(), scratch.join(entry.file_name())).map_err(|e| e.to_string())?;
    }
    Ok(scratch)
}
