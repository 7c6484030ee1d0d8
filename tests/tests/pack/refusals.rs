//! What SMF cannot represent (data in R72, TLS, absolute addresses, and more):
//! a clear error from `smf pack` and a typed `PackError` from the library, every problem of
//! every object reported at once, with nothing written.

use std::path::{Path, PathBuf};
use std::process::Command;

use smf_format::{Dialect, RelocKind};
use smf_tool::pack::PackError;

use crate::{compile, run, scratch, smf_binary};

#[test]
fn what_smf_cannot_represent_is_a_clear_error() {
    let dir = scratch("errors");
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let compile = |src: &Path, extra: &[&str]| {
        let obj = src.with_extension("o");
        run(Command::new("gcc").args(["-c", "-O2"]).args(extra).arg(src).arg("-o").arg(&obj));
        obj
    };
    let pack_obj = |obj: &Path, dialect: &str| {
        let out = Command::new(smf_binary())
            .arg("pack")
            .arg(obj)
            .arg("-o")
            .arg(obj.with_extension("smf"))
            .args(["--dialect", dialect])
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // The library's refusal, typed, for the same object: its first problem.
    let refusal = |obj: &Path, dialect: Dialect| {
        let object = (obj.display().to_string(), std::fs::read(obj).unwrap());
        let failure = smf_tool::pack::pack(&[object], dialect).unwrap_err();
        assert!(failure.problems.iter().all(|p| p.object == obj.display().to_string()), "{failure}");
        failure.problems.into_iter().next().unwrap().error
    };

    // A pointer in writable data packs (a data relocation) where symbols can address data;
    // R72's cannot.
    let pointer = compile(
        &write("pointer.c", "const char *message = \"hi\";\nlong f(void) { return message[0]; }\n"),
        &["-fPIC"],
    );
    let (code, err) = pack_obj(&pointer, "r72");
    assert_eq!(code, Some(1));
    assert!(err.contains("R72 symbols cannot address data sections"), "{err}");
    assert!(matches!(refusal(&pointer, Dialect::R72), PackError::R72Data { .. }));
    for dialect in ["r96", "s128"] {
        let (code, err) = pack_obj(&pointer, dialect);
        assert_eq!(code, Some(0), "{err}");
        let out = Command::new(smf_binary())
            .arg("run")
            .arg(pointer.with_extension("smf"))
            .arg("f")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "104\n",
            "{dialect}: 'h' read through the relocated pointer"
        );
    }

    // A relocation in data of a kind that patches instructions: named, with its kind.
    let plt = compile(&write("plt.s", ".data\n.globl table\ntable:\n.long ext@PLT\n"), &[]);
    let (code, err) = pack_obj(&plt, "r96");
    assert_eq!(code, Some(1));
    assert!(err.contains(".data+0x0: a plt32 relocation in data"), "{err}");
    assert!(
        matches!(refusal(&plt, Dialect::R96), PackError::DataRelocationKind { at, kind: RelocKind::Plt32 } if at.section == ".data"),
    );

    let tls = compile(&write("tls.c", "__thread long t;\nlong g(void) { return ++t; }\n"), &["-fPIC"]);
    let (code, err) = pack_obj(&tls, "s128");
    assert_eq!(code, Some(1));
    assert!(err.contains("thread-local storage"), "{err}");
    assert!(matches!(refusal(&tls, Dialect::S128), PackError::ThreadLocal { .. }));

    // Without -fPIC: absolute 32-bit addresses, which no module loaded above 4 GiB can hold.
    // Refused in every dialect, with the fix, rather than packed into a module that verifies
    // and never loads.
    let absolute = compile(&write("abs.c", "long v = 3;\nlong *where(void) { return &v; }\n"), &["-fno-pic"]);
    for dialect in ["r96", "s128"] {
        let (code, err) = pack_obj(&absolute, dialect);
        assert_eq!(code, Some(1), "{dialect}");
        assert!(err.contains("R_X86_64_32") && err.contains("compile it with -fPIC"), "{err}");
    }
    let typed = refusal(&absolute, Dialect::S128);
    assert!(
        matches!(&typed, PackError::Absolute32 { r_type: 10 | 11, target, .. } if target == "v"),
        "{typed}"
    );

    let data =
        compile(&write("data.c", "long counter = 1;\nlong get(void) { return counter; }\n"), &["-fPIC"]);
    let (code, err) = pack_obj(&data, "r72");
    assert_eq!(code, Some(1));
    assert!(err.contains("R72"), "{err}");
    assert!(matches!(refusal(&data, Dialect::R72), PackError::R72Data { .. }));
    // Each section refused once: the relocations into it are not problems of their own.
    let statics = compile(
        &write(
            "statics.c",
            "static long a = 1, b = 2;\nstatic long c, d;\n\
             long sum(void) { return a + b + c + d; }\nlong bump(void) { return ++a + ++c; }\n",
        ),
        &["-fPIC"],
    );
    let object = (statics.display().to_string(), std::fs::read(&statics).unwrap());
    let failure = smf_tool::pack::pack(&[object], Dialect::R72).unwrap_err();
    let sections: Vec<&str> = failure
        .problems
        .iter()
        .map(|p| match &p.error {
            PackError::R72Data { section } => section.as_str(),
            other => panic!("only the sections: {other}"),
        })
        .collect();
    assert_eq!(sections, [".data", ".bss"], "{failure}");

    // GCC's link-time optimization objects (no machine code) and another architecture's: each
    // refused with what to do, not with the symptoms they would give later.
    let lto = compile(&write("lto.c", "long lto(void) { return 1; }\n"), &["-fPIC", "-flto"]);
    assert!(matches!(refusal(&lto, Dialect::S128), PackError::LtoObject));
    assert!(pack_obj(&lto, "s128").1.contains("compile it with -fno-lto"));
    // A fat one (-ffat-lto-objects) packs its machine code, its intermediate code dropped
    // without a note by default (one per section was printed: dozens an object).
    let fat =
        compile(&write("fat.c", "long fat(void) { return 1; }\n"), &["-fPIC", "-flto", "-ffat-lto-objects"]);
    let (code, notes) = pack_obj(&fat, "s128");
    assert_eq!(code, Some(0), "{notes}");
    assert!(!notes.contains(".gnu.lto_"), "{notes}");
    let arm = dir.join("arm.o");
    let cross = Command::new("aarch64-linux-gnu-gcc")
        .args(["-c", "-fPIC"])
        .arg(write("arm.c", "long a(void) { return 1; }\n"))
        .arg("-o")
        .arg(&arm)
        .status();
    if cross.is_ok_and(|s| s.success()) {
        assert!(matches!(refusal(&arm, Dialect::S128), PackError::OtherArchitecture(m) if m == "Aarch64"));
    } else {
        // Without the cross compiler (.ci/run installs it), the machine field edited by hand.
        let mut bytes = std::fs::read(&lto).unwrap();
        bytes[18..20].copy_from_slice(&183u16.to_le_bytes());
        std::fs::write(&arm, bytes).unwrap();
        assert!(matches!(refusal(&arm, Dialect::S128), PackError::OtherArchitecture(m) if m == "Aarch64"));
    }

    // An object whose symbol lies past its section (as a corrupted or hand-written one can):
    // refused with the reason, before anything is written.
    let beyond = compile(
        &write(
            "beyond.s",
            ".text\n.globl f\n.type f,@function\nf: ret\n.size f,1\n\
             .globl beyond\n.type beyond,@function\n.set beyond, f+100\n.size beyond, 4\n",
        ),
        &[],
    );
    let (code, err) = pack_obj(&beyond, "s128");
    assert_eq!(code, Some(1));
    assert!(err.contains("symbol beyond is defined at 0x64, past the end of its section"), "{err}");
    assert!(matches!(refusal(&beyond, Dialect::S128), PackError::SymbolOutsideSection { value: 100, .. }));
    assert!(!beyond.with_extension("smf").exists(), "nothing written");

    let not_elf = write("not.o", "definitely not ELF");
    let (code, err) = pack_obj(&not_elf, "s128");
    assert_eq!(code, Some(1));
    assert!(err.contains("not an ELF object"), "{err}");
    assert!(matches!(refusal(&not_elf, Dialect::S128), PackError::NotElf(_)));
    // More refusals, typed: a common symbol in R72 (its bss cannot be addressed), pre-initialization functions, constructor entries
    // that are not whole addresses, a TLS access to another object's
    // variable, an executable.
    let common = compile(
        &write("common.c", "int shared;\nint get(void) { return shared; }\n"),
        &["-fPIC", "-fcommon"],
    );
    assert!(matches!(refusal(&common, Dialect::R72), PackError::Common { symbol } if symbol == "shared"));
    let preinit = compile(
        &write("preinit.c", "static void f(void) {}\n__attribute__((section(\".preinit_array\"), used)) static void (*p)(void) = f;\n"),
        &["-fPIC"],
    );
    let typed = refusal(&preinit, Dialect::S128);
    assert!(matches!(&typed, PackError::PreinitArray { section } if section == ".preinit_array"), "{typed}");
    let absolute = compile(&write("absolute.s", ".section .init_array,\"aw\"\n.quad 0x1234\n"), &[]);
    let typed = refusal(&absolute, Dialect::S128);
    assert!(matches!(&typed, PackError::CallArrayEntry { r_type: None, .. }), "{typed}");
    assert!(
        typed.to_string().contains(".init_array+0x0: a constructor or destructor entry without a relocation"),
        "{typed}"
    );
    let narrow =
        compile(&write("narrow.s", ".text\nf: ret\n.section .init_array,\"aw\"\n.long f\n.long 0\n"), &[]);
    let typed = refusal(&narrow, Dialect::S128);
    assert!(matches!(&typed, PackError::CallArrayEntry { r_type: Some(10), .. }), "{typed}");
    let tls_use =
        compile(&write("tls_use.c", "extern __thread long t;\nlong h(void) { return t; }\n"), &["-fPIC"]);
    let typed = refusal(&tls_use, Dialect::S128);
    assert!(
        matches!(&typed, PackError::ThreadLocalAccess { variable, at, .. } if variable == "t" && at.symbol.as_deref() == Some("h")),
        "{typed}"
    );
    let exe = dir.join("exe");
    run(Command::new("gcc").arg(write("main.c", "int main(void) { return 0; }\n")).arg("-o").arg(&exe));
    assert!(matches!(refusal(&exe, Dialect::S128), PackError::NotX86Relocatable));
    let (code, _) = pack_obj(&not_elf, "elf64");
    assert_eq!(code, Some(2), "an unknown dialect is a usage error");
}

#[test]
fn every_problem_is_reported_at_once_with_its_object_and_where_it_is() {
    let dir = scratch("problems");
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let object = |name: &str, text: &str, flags: &[&str]| {
        let (path, _) = compile(&dir, &write(name, text), flags);
        PathBuf::from(path)
    };
    let bad = write("bad.o", "not an object");
    // Five absolute addresses of `v` (no -fPIC), one per function.
    let absolute = object(
        "absolute.c",
        "long v[8];\nlong *p0(void) { return &v[0]; }\nlong *p1(void) { return &v[1]; }\n\
         long *p2(void) { return &v[2]; }\nlong *p3(void) { return &v[3]; }\nlong *p4(void) { return &v[4]; }\n",
        &["-fno-pic"],
    );
    // A thread-local variable (its section, and the access in `bump`), and a common symbol,
    // which packs.
    let local = object(
        "local.c",
        "__thread long counter;\nint shared;\nlong bump(void) { return ++counter + shared; }\n",
        &["-fPIC", "-fcommon"],
    );
    let twice = object("twice.c", "long *p0(void) { return 0; }\n", &["-fPIC"]);
    let paths = [&bad, &absolute, &local, &twice];
    let inputs: Vec<_> = paths.iter().map(|p| (p.display().to_string(), std::fs::read(p).unwrap())).collect();
    let failure = smf_tool::pack::pack(&inputs, Dialect::S128).unwrap_err();
    let name = |p: &Path| p.display().to_string();
    let of = |p: &Path| {
        let object = name(p);
        failure.problems.iter().filter(move |problem| problem.object == object)
    };

    assert!(
        matches!(of(&bad).map(|p| &p.error).collect::<Vec<_>>()[..], [PackError::NotElf(_)]),
        "{failure}"
    );
    let sites: Vec<_> = of(&absolute)
        .map(|p| match &p.error {
            PackError::Absolute32 { at, target, .. } if target == "v" => {
                at.symbol.clone().unwrap_or_default()
            }
            other => panic!("{other}"),
        })
        .collect();
    assert_eq!(sites, ["p0", "p1", "p2", "p3", "p4"], "each address, in the function that takes it");
    let local_errors: Vec<_> = of(&local).map(|p| &p.error).collect();
    assert!(
        local_errors
            .iter()
            .any(|e| matches!(e, PackError::ThreadLocal { variables, .. } if variables == &["counter"])),
        "{failure}"
    );
    assert!(!local_errors.iter().any(|e| matches!(e, PackError::Common { .. })), "{failure}");
    assert!(
        local_errors.iter().any(|e| matches!(e, PackError::ThreadLocalAccess { at, variable, .. }
            if variable == "counter" && at.symbol.as_deref() == Some("bump"))),
        "{failure}"
    );
    assert!(
        matches!(&of(&twice).map(|p| &p.error).collect::<Vec<_>>()[..], [PackError::DefinedTwice { name, .. }] if name == "p0"),
        "{failure}"
    );
    let order: Vec<_> = failure.problems.iter().map(|p| p.object.clone()).collect();
    let mut sorted = order.clone();
    sorted.sort_by_key(|o| paths.iter().position(|p| name(p) == *o));
    assert_eq!(order, sorted, "object by object, in the order given");

    // The tool prints them all (repeats of one kind past three counted), then exits 1 having
    // written nothing.
    let out = dir.join("out.smf");
    let pack_all = |extra: &[&str]| {
        let output = Command::new(smf_binary())
            .arg("pack")
            .args(paths)
            .arg("-o")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (code, stderr) = pack_all(&[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!out.exists(), "nothing written");
    let total = failure.problems.len();
    assert!(stderr.ends_with(&format!("smf pack: {total} problems; no module written\n")), "{stderr}");
    for needle in [
        format!("smf pack: {}: not an ELF object", name(&bad)),
        format!("smf pack: {}: .text+0x", name(&absolute)),
        format!("smf pack: {}: 2 more absolute 32-bit addresses like the ones above", name(&absolute)),
        format!("smf pack: {}: section .tbss (counter): thread-local storage", name(&local)),
        "(in bump): R_X86_64_TLSGD reaches thread-local variable counter".to_owned(),
        format!("smf pack: {}: p0 is defined in both", name(&twice)),
    ] {
        assert!(stderr.contains(&needle), "{needle:?} in\n{stderr}");
    }
    assert_eq!(stderr.matches("puts the address of v in 32 bits").count(), 3, "{stderr}");
    assert!(!stderr.contains("neither defined"), "the use of a common symbol is no problem\n{stderr}");
    let (_, verbose) = pack_all(&["--verbose"]);
    assert_eq!(
        verbose.matches("puts the address of v in 32 bits").count(),
        5,
        "--verbose: all of them\n{verbose}"
    );
}

/// A constructor entry whose relocation patches bytes past the end of its array (a 12-byte
/// `.init_array` relocated at 8: an assembler's `.reloc` makes one) is refused as the same in
/// data is, once, not packed as a whole entry.
#[test]
fn a_call_array_entry_past_the_array_is_refused() {
    let dir = crate::scratch("call-array-past-end");
    let source = dir.join("odd.s");
    std::fs::write(
        &source,
        ".text\n.globl f\n.type f,@function\nf: ret\n\
         .section .init_array,\"aw\"\n.quad f\n.long 0\n.reloc 8, R_X86_64_64, f\n",
    )
    .unwrap();
    let object = crate::compile(&dir, &source, &[]);
    let failure = smf_tool::pack::pack(&[object], Dialect::S128).unwrap_err();
    let past: Vec<_> = failure
        .problems
        .iter()
        .filter(|p| matches!(&p.error, PackError::RelocationOutsideSection(at) if at.section == ".init_array" && at.offset == 8))
        .collect();
    assert_eq!(past.len(), 1, "{failure}");
    assert_eq!(failure.problems.len(), 1, "the partial entry is not also refused as unrelocated: {failure}");
}

/// An ELF section header: name, type, flags, offset, size, link, info, alignment, entry size.
type SectionHeader = (u32, u32, u64, u64, u64, u32, u32, u64, u64);

/// An x86-64 relocatable of one function named by `name_bytes` bytes of `A` in `.text`, and
/// `relocations` relocations of type `r_type` at `.text+0` against it.
fn relocated_against_a_long_name(relocations: usize, name_bytes: usize, r_type: u32) -> Vec<u8> {
    let text = [0x90u8; 16];
    let rela: Vec<u8> = (0..relocations)
        .flat_map(|_| {
            [0u64.to_le_bytes(), ((1u64 << 32) | u64::from(r_type)).to_le_bytes(), 0u64.to_le_bytes()]
        })
        .flatten()
        .collect();
    let strtab = [&b"\0"[..], &vec![b'A'; name_bytes], b"\0"].concat();
    let mut symtab = vec![0u8; 24];
    // Global function (STB_GLOBAL, STT_FUNC) named at 1, in section 1, value 0, size 16.
    symtab.extend_from_slice(&1u32.to_le_bytes());
    symtab.extend_from_slice(&[0x12, 0]);
    symtab.extend_from_slice(&1u16.to_le_bytes());
    symtab.extend_from_slice(&0u64.to_le_bytes());
    symtab.extend_from_slice(&16u64.to_le_bytes());
    let shstrtab = b"\0.text\0.rela.text\0.symtab\0.strtab\0.shstrtab\0";
    let at = |name: &[u8]| shstrtab.windows(name.len()).position(|w| w == name).unwrap() as u32;
    let mut body = vec![0u8; 64];
    let mut add = |bytes: &[u8]| {
        body.resize(body.len().div_ceil(8) * 8, 0);
        let offset = body.len() as u64;
        body.extend_from_slice(bytes);
        offset
    };
    let offsets = [add(&text), add(&rela), add(&symtab), add(&strtab), add(shstrtab)];
    body.resize(body.len().div_ceil(8) * 8, 0);
    let headers_at = body.len() as u64;
    let headers: [SectionHeader; 6] = [
        (0, 0, 0, 0, 0, 0, 0, 0, 0),
        (at(b".text\0"), 1, 6, offsets[0], text.len() as u64, 0, 0, 16, 0),
        (at(b".rela.text"), 4, 0x40, offsets[1], rela.len() as u64, 3, 1, 8, 24),
        (at(b".symtab"), 2, 0, offsets[2], symtab.len() as u64, 4, 1, 8, 24),
        (at(b".strtab"), 3, 0, offsets[3], strtab.len() as u64, 0, 0, 1, 0),
        (at(b".shstrtab"), 3, 0, offsets[4], shstrtab.len() as u64, 0, 0, 1, 0),
    ];
    for (name, kind, flags, offset, size, link, info, align, entry) in headers {
        body.extend_from_slice(&name.to_le_bytes());
        body.extend_from_slice(&kind.to_le_bytes());
        for field in [flags, 0, offset, size] {
            body.extend_from_slice(&field.to_le_bytes());
        }
        body.extend_from_slice(&link.to_le_bytes());
        body.extend_from_slice(&info.to_le_bytes());
        body.extend_from_slice(&align.to_le_bytes());
        body.extend_from_slice(&entry.to_le_bytes());
    }
    body[..4].copy_from_slice(b"\x7fELF");
    body[4..7].copy_from_slice(&[2, 1, 1]);
    body[16..18].copy_from_slice(&1u16.to_le_bytes());
    body[18..20].copy_from_slice(&62u16.to_le_bytes());
    body[20..24].copy_from_slice(&1u32.to_le_bytes());
    body[40..48].copy_from_slice(&headers_at.to_le_bytes());
    body[52..54].copy_from_slice(&64u16.to_le_bytes());
    body[58..60].copy_from_slice(&64u16.to_le_bytes());
    body[60..62].copy_from_slice(&6u16.to_le_bytes());
    body[62..64].copy_from_slice(&5u16.to_le_bytes());
    body
}

/// Every relocation refused against one long name (an unknown type, 4,000 of them against a
/// 200 KB name: a 300 KB object) is a problem that names it shortened: each problem a few
/// hundred bytes, where each once copied the name whole (800 MB here; 3 GB and an abort at
/// 20,000).
#[test]
fn problems_keep_names_short_however_many_there_are() {
    let object = relocated_against_a_long_name(4000, 200_000, 240);
    let failure = smf_tool::pack::pack(&[("long.o".into(), object.clone())], Dialect::S128).unwrap_err();
    assert_eq!(failure.problems.len(), 4000, "{}", failure.problems[0]);
    // Each problem a few hundred bytes (the names shortened), not the 200 KB name again.
    let longest = failure.problems.iter().map(|p| p.to_string().len()).max().unwrap();
    assert!(longest < 1024, "a problem of {longest} bytes");
    let first = failure.problems[0].to_string();
    assert!(
        first.contains(&format!("{}...", "A".repeat(256))) && !first.contains(&"A".repeat(257)),
        "{first}"
    );
}

/// `object` with the name of its symbol `name` taken away (its `st_name` made 0, the string
/// table's empty name), as a broken or hostile object has it.
fn unnamed(object: &[u8], name: &str) -> Vec<u8> {
    let u16_at = |at: usize| u16::from_le_bytes(object[at..at + 2].try_into().unwrap()) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(object[at..at + 4].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(object[at..at + 8].try_into().unwrap()) as usize;
    let (shoff, shentsize, shnum) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c));
    let header = |i: usize| shoff + i * shentsize;
    let symtab = (0..shnum).map(header).find(|&h| u32_at(h + 4) == 2).expect("a symbol table");
    let strtab = header(u32_at(symtab + 0x28));
    let (symbols, size, strings) = (u64_at(symtab + 0x18), u64_at(symtab + 0x20), u64_at(strtab + 0x18));
    let mut out = object.to_vec();
    for entry in (symbols..symbols + size).step_by(24) {
        let at = strings + u32_at(entry);
        if object[at..].starts_with(name.as_bytes()) && object[at + name.len()] == 0 {
            out[entry..entry + 4].fill(0);
            return out;
        }
    }
    panic!("no symbol {name}");
}

#[test]
fn a_global_symbol_without_a_name_is_refused_by_its_index() {
    let dir = scratch("unnamed-global");
    let source = dir.join("globals.c");
    std::fs::write(
        &source,
        "int shared_count;\n\
         long answer(void) { return 42; }\n\
         static long pick_plain(void) { return 1; }\n\
         long choose(void) __attribute__((ifunc(\"resolve_choose\")));\n\
         static void *resolve_choose(void) { return (void *)pick_plain; }\n",
    )
    .unwrap();
    let object = dir.join("globals.o");
    run(Command::new("gcc").args(["-c", "-O2", "-fPIC", "-fcommon"]).arg(&source).arg("-o").arg(&object));
    let bytes = std::fs::read(&object).unwrap();
    // A defined function, a common symbol and an indirect function, each without its name.
    for name in ["answer", "shared_count", "choose"] {
        let failure = smf_tool::pack::pack(&[("globals.o".into(), unnamed(&bytes, name))], Dialect::S128)
            .expect_err(name);
        let refused = failure.problems.iter().find(|p| matches!(p.error, PackError::UnnamedGlobal { .. }));
        let refused = refused.unwrap_or_else(|| panic!("{name}: {failure}"));
        assert!(refused.error.to_string().contains("is global without a name"), "{}", refused.error);
        assert!(
            failure.problems.iter().all(|p| !matches!(p.error, PackError::Invalid(_))),
            "{name}: {failure}"
        );
    }
    // The object as it was packs.
    assert!(smf_tool::pack::pack(&[("globals.o".into(), bytes)], Dialect::S128).is_ok());
}
