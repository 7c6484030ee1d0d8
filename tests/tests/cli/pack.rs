//! `smf pack`: compression (lz4, zstd at a level) that `inspect` shows and `verify` checks, and
//! reading an object from standard input, as `prefetch -` reads its list of files.

use smf_format::SectionFlags;

#[cfg(target_arch = "x86_64")]
use crate::{example, packed_c, smf_with_stdin};
use crate::{json_of, scratch, smf, write};

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
    let parsed = smf_format::Module::parse(&bytes).unwrap();
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
