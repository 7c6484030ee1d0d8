//! How the packer lays out code: GOT loads of the module's own symbols relaxed or kept in a GOT
//! of the module's own (imports keep their slot, linked to it), one section per function merged into one `.text` as ld merges them, and merging
//! that never reaches into another section's bytes nor past any size.

use smf_format::{Dialect, RelocKind};
use smf_runtime::load::{LoadOptions, LoadedModule};

use crate::{allocator, call, compile, native, pack, scratch};

/// `read_own()`, `read_table(2)`, `read_imported()` and `sum()` of got.c packed into `bytes`,
/// its import `imported` holding 35.
fn got_results(bytes: &[u8]) -> Vec<i64> {
    static IMPORTED: i64 = 35;
    let table: [(&[u8], usize); 1] = [(b"imported", &raw const IMPORTED as usize)];
    let resolver = smf_runtime::load::TableResolver(&table);
    let loaded = LoadedModule::load(allocator(), bytes, &resolver, &LoadOptions::default()).unwrap();
    [("read_own", &[][..]), ("read_table", &[2]), ("read_imported", &[]), ("sum", &[])]
        .iter()
        .map(|(f, args)| call(&loaded, f, args))
        .collect()
}

#[test]
fn got_loads_of_own_symbols_are_relaxed_or_kept_in_an_own_got_and_imports_keep_their_slot() {
    use smf_format::module::RelocatedImage;
    use smf_format::Module;
    use smf_tool::pack::{pack_inputs, Input, PackOptions};
    let dir = scratch("got");
    let object = compile(&dir, &crate::source("got.c"), &["-fPIC"]);
    for separate_code in [false, true] {
        let options = PackOptions { separate_code, ..PackOptions::new(Dialect::S128) };
        let (bytes, _) = pack_inputs(&[Input::new(&object.0, &object.1)], &options).unwrap();
        let module = Module::parse(&bytes).unwrap();
        let against = |name: &[u8]| -> Vec<(RelocatedImage, RelocKind)> {
            module
                .relocations()
                .filter(|r| module.symbol(r.symbol).is_some_and(|s| s.name == name))
                .map(|r| (r.image, r.kind))
                .collect()
        };
        let own = [against(b"own"), against(b"own_table")].concat();
        if separate_code {
            // Relaxed to direct references, as a static linker relaxes them.
            assert!(
                !own.is_empty()
                    && own.iter().all(|&(i, k)| (i, k) == (RelocatedImage::Code, RelocKind::Pc32))
            );
        } else {
            // Linked: one slot of the module's own GOT each, filled at load, read by the code.
            assert_eq!(own, [(RelocatedImage::Data, RelocKind::Abs64); 2], "own globals");
        }
        // The import's GOT loads are linked to the slot the linked layout pins to it.
        let imported = against(b"imported");
        assert_eq!(imported.is_empty(), !separate_code, "{imported:?}");
        let flags = module.header().flags;
        assert_eq!(flags.contains(smf_format::ModuleFlags::LINKED_IMPORTS), !separate_code);

        // Either way the code reads the right values (lea instead of a load from the GOT, or
        // the load from the module's own slot), and the import goes through its slot, which
        // the loader fills.
        assert_eq!(got_results(&bytes), [7, 3, 35, 7 + 4 + 35]);
    }
}

#[test]
fn one_section_per_function_merges_into_one_text_section_as_ld_merges_them() {
    use smf_format::Module;
    let dir = scratch("function-sections");
    let code_sections = |bytes: &[u8]| -> Vec<(Vec<u8>, u64)> {
        let module = Module::parse(bytes).unwrap();
        module.code_sections().map(|(s, at)| (s.name.to_vec(), at)).collect()
    };
    // got.c's four functions, each in a section of its own; the GOT loads relaxed inside the
    // merged section at each function's place in it.
    let (bytes, _) = pack(&dir, "got.c", Dialect::S128, &["-fPIC", "-ffunction-sections"]).unwrap();
    assert_eq!(code_sections(&bytes), [(b".text".to_vec(), 0)]);
    assert_eq!(got_results(&bytes), [7, 3, 35, 7 + 4 + 35]);

    // A function aligned past a page starts a section of its own (the padding before it is not
    // stored), at its alignment in the code image; what follows it merges again. One aligned
    // more than the section it merges into raises that section's alignment to its own.
    let source = dir.join("aligned.c");
    std::fs::write(
        &source,
        "long before(long x) { return x + 1; }\n\
         __attribute__((aligned(256))) long wide(long x) { return x - 2; }\n\
         __attribute__((aligned(8192))) long aligned(long x) { return x * 3; }\n\
         long after(long x) { return aligned(x) + before(x); }\n",
    )
    .unwrap();
    let object = compile(&dir, &source, &["-fPIC", "-ffunction-sections"]);
    let (bytes, _) = smf_tool::pack::pack(&[object], Dialect::R96).unwrap();
    let sections = code_sections(&bytes);
    assert_eq!(sections.len(), 2, "{sections:?}");
    assert_eq!(sections[1].1 % 8192, 0, "{sections:?}");
    let module = Module::parse(&bytes).unwrap();
    let (first, second) = {
        let mut code = module.code_sections().map(|(s, _)| s);
        (code.next().unwrap(), code.next().unwrap())
    };
    assert!(first.size < 512 && first.virtual_size == 8192, "the padding is stored: {first:?}");
    assert_eq!((first.alignment, second.alignment), (256, 8192), "the two sections' alignments");
    let loaded = LoadedModule::load(allocator(), &bytes, &(), &LoadOptions::default()).unwrap();
    assert_eq!(call(&loaded, "after", &[5]), 15 + 6);
    assert_eq!(call(&loaded, "wide", &[5]), 3);
    assert_eq!(loaded.symbol(b"wide").unwrap() % 256, 0, "at its alignment in memory");
    assert_eq!(loaded.symbol(b"aligned").unwrap() % 8192, 0, "past a page: the image at 8 KiB too");
    assert_eq!(call(&loaded, "aligned", &[5]), 15);

    // Every compiled shape, one section per function, against native.
    let expected = native(&dir, &["cases.c"], &[("sum_squares", &[100]), ("collatz", &[27])]);
    let (bytes, _) = pack(&dir, "cases.c", Dialect::R96, &["-fPIC", "-ffunction-sections"]).unwrap();
    assert_eq!(code_sections(&bytes).len(), 1);
    let loaded = LoadedModule::load(allocator(), &bytes, &(), &LoadOptions::default()).unwrap();
    assert_eq!([call(&loaded, "sum_squares", &[100]), call(&loaded, "collatz", &[27])][..], expected);
}

/// `bytes` (an ELF64 object) with section `name`'s size set to `size`.
fn with_section_size(mut bytes: Vec<u8>, name: &str, size: u64) -> Vec<u8> {
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes(b[at..at + 2].try_into().unwrap()) as usize;
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize;
    let (shoff, entsize, count, strndx) =
        (u64_at(&bytes, 0x28), u16_at(&bytes, 0x3a), u16_at(&bytes, 0x3c), u16_at(&bytes, 0x3e));
    let strings = u64_at(&bytes, shoff + strndx * entsize + 0x18);
    for i in 0..count {
        let header = shoff + i * entsize;
        let start = strings + u32::from_le_bytes(bytes[header..header + 4].try_into().unwrap()) as usize;
        let end = start + bytes[start..].iter().position(|&b| b == 0).unwrap();
        if &bytes[start..end] == name.as_bytes() {
            bytes[header + 0x20..header + 0x28].copy_from_slice(&size.to_le_bytes());
        }
    }
    bytes
}

#[test]
fn merging_sections_never_reaches_across_into_another_or_past_any_size() {
    let dir = scratch("merge-edges");
    // A GOT load at the very start of `.text.b`: the two bytes before it are `.text.a`'s, which
    // look like a `mov` opcode; relaxing must not rewrite them.
    let source = dir.join("edge.s");
    std::fs::write(
        &source,
        "    .section .text.a,\"ax\",@progbits\n    .globl fa\nfa: .byte 0x90, 0x8B, 0x05\n\
         .section .text.b,\"ax\",@progbits\n    .globl fb\nfb: .reloc ., R_X86_64_REX_GOTPCRELX, fa-4\n    .long 0\n    ret\n",
    )
    .unwrap();
    let (bytes, _) = smf_tool::pack::pack(&[compile(&dir, &source, &[])], Dialect::S128).unwrap();
    let module = smf_format::Module::parse(&bytes).unwrap();
    let (text, _) = module.code_sections().next().unwrap();
    assert_eq!(text.data[..3], [0x90, 0x8B, 0x05], "fa's bytes");
    // Not relaxed at a part's start: the load reads `fa`'s slot of the module's own GOT, whose
    // data relocation is all the module keeps (a relaxed reference within the code would leave
    // none).
    let kept: Vec<_> = module.relocations().map(|r| (r.image, r.kind)).collect();
    assert_eq!(
        kept,
        [(smf_format::module::RelocatedImage::Data, RelocKind::Abs64)],
        "not relaxed at a part's start"
    );

    // A bss section claiming nearly 2^64 bytes before another: refused as too large, never an
    // overflow (in a debug build, a panic).
    let source = dir.join("bss.c");
    std::fs::write(&source, "char a[16]; long b[4]; int f(void) { return a[0] + b[0]; }\n").unwrap();
    let (name, object) = compile(&dir, &source, &["-fdata-sections", "-fno-common"]);
    let object = with_section_size(object, ".bss.b", 0xFFFF_FFFF_FFFF_FFF9);
    let refused = smf_tool::pack::pack(&[(name, object)], Dialect::S128).unwrap_err().to_string();
    assert!(refused.contains("too large") || refused.contains("limit"), "{refused}");
}
