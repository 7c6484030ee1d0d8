//! `smf verify`: each bad file reported with its byte offset, no panic on arbitrary bytes, and
//! `--load`, which says whether a valid module loads here without running any of its code.

use serde_json::Value;
use smf_format::write::{samples, ModuleBuilder, SectionSpec, SymbolSpec};
use smf_format::{Dialect, SectionFlags, SectionType};

use crate::{example, scratch, smf, write};

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
    b.add_relocation(6, exit, smf_format::RelocKind::Plt32, -4);
    b.add_call_array(smf_format::CallArray::Constructors, &[(exits, 0)]);
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

/// A zstd frame of `total` bytes of `0x90` as RLE blocks (a few bytes per 128 KiB), preceded
/// by the stated length the format puts before a compressed section's frame.
fn zstd_nops(total: u64) -> Vec<u8> {
    let mut frame = total.to_le_bytes().to_vec();
    // Magic, then a frame header descriptor with an 8-byte content size and a single segment.
    frame.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd, 0xe0]);
    frame.extend_from_slice(&total.to_le_bytes());
    let mut left = total;
    while left > 0 {
        let n = left.min(128 << 10);
        left -= n;
        let header = u32::try_from(n).unwrap() << 3 | 1 << 1 | u32::from(left == 0);
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.push(0x90);
    }
    frame
}

/// A compressed section whose memory cannot be had is reported as not checked, never an abort.
#[cfg(target_arch = "x86_64")]
#[test]
fn verify_reports_a_section_it_has_no_memory_to_decompress_instead_of_aborting() {
    let total: u64 = 480 << 20;
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.header(|h| h.compression = 1);
    let flags = SectionFlags::READ | SectionFlags::EXEC | SectionFlags::COMPRESSED;
    let mut code = SectionSpec::new(SectionType::Code, b".text", flags, zstd_nops(total), 16);
    code.virtual_size = total;
    b.add_section(code);
    b.add_symbol(SymbolSpec::function(b"main", 0, 1));
    let dir = scratch("verify-oom");
    let path = write(&dir, "nops.smf", &b.build().unwrap());
    let bin = smf_tests::build_smf_package().join("smf");
    // 350 MB of address space: the tool runs, the section's 480 MiB cannot be had.
    let run = std::process::Command::new("sh")
        .args(["-c", "ulimit -v 350000 && exec \"$0\" verify \"$1\""])
        .arg(&bin)
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not checked: out of memory for a section of 503316480 bytes decompressed"),
        "{stderr}"
    );
}
