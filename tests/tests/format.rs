//! Reading and writing real SMF files: the spec's reference modules, round trips through the
//! writer for every dialect, stubs, detection and dialect overrides.

// Casts here are of test and tool values known to be small.
#![allow(clippy::cast_possible_truncation)]

use smf_format::module::{DataRegion, RelocatedImage, SymbolTarget};
use smf_format::template::{MetaCategory, TemplateKind};
use smf_format::write::{samples, ModuleBuilder, SymbolSpec};
use smf_format::{
    Binding, Dialect, ErrorKind, HeaderPlacement, Module, ModuleFlags, ParseOptions, RelocKind, SectionFlags,
    SectionType, SymbolKind,
};
use smf_tests::{stubbed, CountingAllocator, SHEBANG};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Writes little-endian `value` (its low `width` bytes) at `at`.
fn put(buf: &mut [u8], at: usize, value: u64, width: usize) {
    buf[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
}

/// The R96 "return 42" module assembled by hand from the spec's field table.
fn hand_r96() -> Vec<u8> {
    let mut f = vec![0u8; 219];
    f[..4].copy_from_slice(b"SMF\0");
    f[4..8].copy_from_slice(&[1, 1, 1, 0]); // version 1.1, Linux, x86_64
    put(&mut f, 8, 1, 4); // flags: executable
    put(&mut f, 16, 1, 4); // section_count
    put(&mut f, 24, 96, 8); // section_table_offset
    put(&mut f, 32, 158, 8); // symbol_table_offset
    put(&mut f, 40, 1, 4); // symbol_count
    put(&mut f, 44, 1, 4); // exported_count
                           // section entry at 96: code, flags r-x, at 152, 6 bytes, alignment 8, ".text"
    f[96] = 1;
    put(&mut f, 100, 5, 4);
    put(&mut f, 104, 152, 8);
    put(&mut f, 112, 6, 8);
    put(&mut f, 120, 6, 8);
    put(&mut f, 128, 8, 8);
    f[136..141].copy_from_slice(b".text");
    f[152..158].copy_from_slice(&samples::RETURN_42);
    // symbol at 158: "main", function, global, value 0, size 0
    put(&mut f, 162, 0xEA90_E208, 4);
    f[166] = 1;
    f[167] = 1;
    f[214..219].copy_from_slice(b"main\0");
    f
}

/// The R72 "return 42" module assembled by hand.
fn hand_r72() -> Vec<u8> {
    let mut f = vec![0u8; 179];
    f[..4].copy_from_slice(b"SMF\0");
    f[4..8].copy_from_slice(&[0, 1, 1, 0]); // version 0.1
    put(&mut f, 8, 1, 4);
    put(&mut f, 12, 1, 4); // section_count
    put(&mut f, 16, 72, 8); // section_table_offset
    put(&mut f, 24, 134, 8); // symbol_table_offset
    put(&mut f, 32, 1, 4); // symbol_count
    put(&mut f, 36, 1, 4); // exported_count
    f[72] = 1;
    put(&mut f, 76, 5, 4);
    put(&mut f, 80, 128, 8);
    put(&mut f, 88, 6, 8);
    put(&mut f, 96, 6, 8);
    put(&mut f, 104, 8, 8);
    f[112..117].copy_from_slice(b".text");
    f[128..134].copy_from_slice(&samples::RETURN_42);
    put(&mut f, 138, 0xEA90_E208, 4);
    f[142] = 1;
    f[143] = 1;
    f[174..179].copy_from_slice(b"main\0");
    f
}

/// The S128 "return 42" module assembled by hand: code at 0, section table at 6, symbols at
/// 70, "main\0" at 126, header at 131.
fn hand_s128() -> Vec<u8> {
    let mut f = vec![0u8; 259];
    f[..6].copy_from_slice(&samples::RETURN_42);
    f[6] = 1;
    put(&mut f, 10, 5, 4);
    put(&mut f, 14, 0, 8);
    put(&mut f, 22, 6, 8);
    put(&mut f, 30, 6, 8);
    put(&mut f, 38, 16, 4); // alignment is a u32 in S128
    f[42..46].copy_from_slice(b"code");
    put(&mut f, 74, 0xEA90_E208, 4);
    f[78] = 0; // function is 0 in S128
    f[79] = 1;
    put(&mut f, 94, 6, 8); // size 6
    f[126..131].copy_from_slice(b"main\0");
    let h = 131;
    f[h..h + 4].copy_from_slice(b"SMF\0");
    f[h + 4..h + 8].copy_from_slice(&[1, 1, 1, 0]);
    put(&mut f, h + 8, 1, 4);
    put(&mut f, h + 16, 1, 4);
    put(&mut f, h + 20, 6, 8);
    put(&mut f, h + 28, 70, 8);
    put(&mut f, h + 36, 1, 4);
    put(&mut f, h + 40, 1, 4);
    put(&mut f, h + 77, 1280, 2);
    put(&mut f, h + 79, 720, 2);
    f
}

#[test]
fn reference_modules_are_byte_exact_and_parse_with_their_dialect() {
    for (dialect, hand, len, code_at) in [
        (Dialect::R96, hand_r96(), 219, 152),
        (Dialect::R72, hand_r72(), 179, 128),
        (Dialect::S128, hand_s128(), 259, 0),
    ] {
        let built = samples::return_42(dialect);
        assert_eq!(built.len(), len, "{dialect}");
        assert_eq!(built, hand, "{dialect}: builder output differs from the hand-made file");

        let module = Module::parse(&hand).unwrap();
        assert_eq!(module.dialect(), dialect);
        assert!(module.header().flags.contains(ModuleFlags::EXECUTABLE));
        assert_eq!(module.header().entry_point, 0);
        assert_eq!(module.code_size(), 6);
        let (code, code_offset) = module.code_sections().next().unwrap();
        assert_eq!(code_offset, 0);
        assert_eq!(code.data, &samples::RETURN_42);
        assert_eq!(code.file_offset, code_at);
        let symbols: Vec<_> = module.symbols().collect();
        assert_eq!(symbols.len(), 1);
        assert_eq!(symbols[0].name, b"main");
        assert_eq!(symbols[0].kind, SymbolKind::Function);
        assert_eq!(symbols[0].binding, Binding::Global);
        assert_eq!(symbols[0].target, SymbolTarget::Code(0));
        assert_eq!(symbols[0].stored_hash, 0xEA90_E208);
        assert_eq!(module.find_export(b"main").map(|s| s.index), Some(0));
        assert_eq!(module.relocations().count(), 0);
    }
}

#[test]
fn s128_reference_layout_matches_the_spec() {
    let file = hand_s128();
    let module = Module::parse(&file).unwrap();
    assert_eq!(module.placement(), HeaderPlacement::Trailer);
    assert_eq!(module.header_offset(), 131);
    assert_eq!(module.header().section_table_offset, 6);
    assert_eq!(module.header().symbol_table_offset, 70);
    assert_eq!(module.strings(), b"main\0");
    assert_eq!(module.header().window_width, 1280);
}

#[test]
fn parsing_allocates_nothing() {
    let files: Vec<Vec<u8>> = Dialect::ALL.iter().map(|&d| samples::rich(d)).collect();
    let before = smf_tests::allocations();
    for file in &files {
        let module = Module::parse(file).unwrap();
        assert!(module.symbols().count() > 5);
        assert!(module.relocations().count() >= 5);
        let note = module.note_sdn().unwrap();
        assert_eq!(note.tables().count(), 6);
    }
    assert_eq!(smf_tests::allocations(), before, "parsing and iterating allocated");
}

#[test]
fn every_dialect_round_trips_through_the_writer() {
    for dialect in Dialect::ALL {
        let file = samples::rich(dialect);
        let module = Module::parse(&file).unwrap_or_else(|e| panic!("{dialect}: {e}"));
        assert_eq!(module.dialect(), dialect);

        // Code: two sections concatenated at their virtual sizes.
        let code: Vec<_> = module.code_sections().map(|(s, at)| (s.name, at, s.data.len())).collect();
        assert_eq!(code, [(&b".text"[..], 0, 64), (&b".text.cold"[..], 64, 4)]);
        assert_eq!(module.code_size(), 68);

        // Data image: data and bss writable, rodata read-only.
        let data: Vec<_> = module.data_sections().map(|p| (p.section.name, p.region, p.offset)).collect();
        assert_eq!(
            data,
            [
                (&b".data"[..], DataRegion::ReadWrite, 0),
                (&b".rodata"[..], DataRegion::ReadOnly, 0),
                (&b".bss"[..], DataRegion::ReadWrite, 8),
            ]
        );
        assert_eq!(module.read_write_size(), 72);
        assert_eq!(module.read_only_size(), 6);

        // Symbols: kinds, bindings, targets and exports survive the dialect's numbering.
        let by_name = |n: &[u8]| module.symbols().find(|s| s.name == n).unwrap();
        assert_eq!(by_name(b"answer").target, SymbolTarget::Code(0));
        assert_eq!(by_name(b"helper").binding, Binding::Local);
        assert!(!by_name(b"helper").is_exported());
        assert!(module.find_export(b"helper").is_none());
        assert_eq!(by_name(b"maybe").binding, Binding::Weak);
        assert_eq!(by_name(b"external_fn").kind, SymbolKind::Import);
        assert!(!by_name(b"external_fn").is_exported());
        assert_eq!(by_name("naïve \"quoted\"\n".as_bytes()).kind, SymbolKind::Function);
        if dialect == Dialect::R72 {
            // R72 symbols have no defining-section field: data symbols address the code.
            assert_eq!(by_name(b"counter").target, SymbolTarget::Code(0));
        } else {
            assert_eq!(by_name(b"counter").target, SymbolTarget::Data { section: 2, offset: 0 });
            assert_eq!(by_name(b"greeting").target, SymbolTarget::Data { section: 3, offset: 0 });
            assert_eq!(by_name(b"scratch").target, SymbolTarget::Data { section: 4, offset: 0 });
        }
        for s in module.symbols() {
            assert_eq!(s.stored_hash, s.hash(), "{dialect}: stored hash of {:?}", s.name);
        }
        // The walk (entries in turn) gives what finding each by its index gives, every one.
        let by_index: Vec<_> = (0..module.symbol_count()).map(|i| module.symbol(i).unwrap()).collect();
        assert_eq!(module.symbols().collect::<Vec<_>>(), by_index, "{dialect}");

        // Relocations: every kind of the dialect, in order, with the dialect's wire values.
        let kinds: Vec<_> = module.relocations().map(|r| (r.kind, r.offset)).collect();
        let mut expected = vec![
            (RelocKind::Pc32, 19),
            (RelocKind::Abs64, 24),
            (RelocKind::Plt32, 32),
            (RelocKind::GotPc32, 36),
        ];
        match dialect {
            Dialect::S128 => expected.push((RelocKind::Abs32, 40)),
            _ => expected.extend([
                (RelocKind::Aarch64Branch26, 40),
                (RelocKind::Aarch64Page21, 44),
                (RelocKind::Aarch64PageOffset12, 48),
                (RelocKind::Aarch64GotPage21, 52),
                (RelocKind::Aarch64GotPageOffset12, 56),
                (RelocKind::None, 60),
            ]),
        }
        assert_eq!(kinds, expected, "{dialect}");
        let first = module.relocations().next().unwrap();
        assert_eq!((first.addend, module.symbol(first.symbol).unwrap().name), (-4, &b"greeting"[..]));

        // note.sdn: the text comes back without its terminator.
        assert_eq!(module.note_sdn_text(), Some(samples::NOTE_SDN_EXAMPLE));

        // Templates: full form found through the template symbols.
        if dialect != Dialect::R72 {
            let list = module.template_by_name(b"List").unwrap();
            assert_eq!(list.kind, TemplateKind::Struct);
            assert_eq!(list.params().collect::<Vec<_>>(), [b"T"]);
            assert_eq!(list.body, b"\x01\x00\x00\x00\x05\x00\x00\x00items");
            let map = module.template_by_name(b"map").unwrap();
            assert_eq!(map.kind, TemplateKind::Function);
            assert_eq!(map.params().collect::<Vec<_>>(), [b"T", b"U"]);
            let sym = module.symbols().find(|s| s.name == b"map").unwrap();
            assert_eq!((sym.template_param_count, sym.target), (2, SymbolTarget::None));
        }
        let meta: Vec<_> = module
            .template_meta()
            .unwrap()
            .entries()
            .map(|e| (e.category, e.name, e.specializations))
            .collect();
        assert_eq!(
            meta,
            [(MetaCategory::Functions, &b"map"[..], 0), (MetaCategory::Structs, &b"List"[..], 2)]
        );
    }
}

#[test]
fn short_form_templates_are_read_in_sequence() {
    use smf_format::write::TemplateSpec;
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &samples::RETURN_42);
    b.short_form_templates(true);
    for (kind, name) in [(TemplateKind::Enum, "Option"), (TemplateKind::Trait, "Show")] {
        b.add_template(TemplateSpec { kind, name: name.into(), params: vec![b"T".to_vec()], body: vec![] });
    }
    let file = b.build().unwrap();
    let module = Module::parse(&file).unwrap();
    let code = module.template_code().unwrap();
    assert!(code.is_short_form());
    let entries: Vec<_> =
        code.short_entries().map(|e| e.unwrap()).map(|e| (e.kind, e.name, e.param_count)).collect();
    assert_eq!(entries, [(TemplateKind::Enum, &b"Option"[..], 1), (TemplateKind::Trait, &b"Show"[..], 1)]);
}

#[test]
fn shebang_stubbed_modules_parse_with_offsets_relative_to_the_data_start() {
    for dialect in [Dialect::S128, Dialect::R96] {
        let file = stubbed(dialect);
        assert!(file.starts_with(SHEBANG));
        let module = Module::parse(&file).unwrap_or_else(|e| panic!("{dialect}: {e}"));
        assert_eq!(module.dialect(), dialect);
        assert_eq!(module.placement(), HeaderPlacement::Trailer);
        assert_eq!(module.data_start(), SHEBANG.len() as u64);
        assert_eq!(module.header().stub_size as usize, SHEBANG.len());
        assert!(module.header().flags.contains(ModuleFlags::HAS_STUB));
        let (code, _) = module.code_sections().next().unwrap();
        assert_eq!(code.data, &samples::RETURN_42);
        assert_eq!(module.find_export(b"main").unwrap().target, SymbolTarget::Code(0));
        assert!(module.note_sdn().unwrap().table("possible").is_some());
    }
}

#[test]
fn an_elf_stub_with_an_s128_trailer_is_valid() {
    let mut b = smf_tests::samples_builder(Dialect::S128);
    let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    elf.resize(4096, 0);
    b.stub(&elf);
    let file = b.build().unwrap();
    let module = Module::parse(&file).unwrap();
    assert_eq!(module.header().stub_size, 4096);
    assert_eq!(module.find_export(b"main").unwrap().name, b"main");
}

#[test]
fn explicit_dialect_override_reads_only_that_layout() {
    let file = samples::return_42(Dialect::R96);
    let force = |d| Module::parse_with(&file, &ParseOptions { dialect: Some(d), ..Default::default() });
    assert_eq!(force(Dialect::R96).unwrap().dialect(), Dialect::R96);
    assert!(force(Dialect::S128).is_err());
    assert_eq!(force(Dialect::S128).unwrap_err().kind, ErrorKind::BadMagic);
}

#[test]
fn the_layout_whose_table_follows_its_header_wins() {
    // An R72 module read as R96 sees 0 sections at offset 72's bytes: the R72 reading, whose
    // section table directly follows its header, is the one detection reports.
    let file = samples::rich(Dialect::R72);
    assert_eq!(Module::parse(&file).unwrap().dialect(), Dialect::R72);
    let file = samples::rich(Dialect::R96);
    assert_eq!(Module::parse(&file).unwrap().dialect(), Dialect::R96);
}

#[test]
fn stored_hashes_are_not_trusted() {
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &samples::RETURN_42);
    b.add_symbol(SymbolSpec { stored_hash: Some(0xDEAD_BEEF), ..SymbolSpec::function(b"main", 0, 6) });
    let file = b.build().unwrap();
    let module = Module::parse(&file).unwrap();
    let main = module.find_export(b"main").unwrap();
    assert_eq!(main.stored_hash, 0xDEAD_BEEF);
    assert_eq!(main.hash(), 0xEA90_E208);
}

#[test]
fn the_string_table_holds_each_distinct_name_once() {
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &samples::RETURN_42);
    for symbol in [
        SymbolSpec::import(b"puts"),
        SymbolSpec::function(b"main", 0, 6),
        SymbolSpec::import(b"puts"),
        SymbolSpec::import(b"put"),
    ] {
        b.add_symbol(symbol);
    }
    let file = b.build().unwrap();
    let module = Module::parse(&file).unwrap();
    assert_eq!(module.strings(), b"puts\0main\0put\0");
    let names: Vec<Vec<u8>> = module.symbols().map(|s| s.name.to_vec()).collect();
    assert_eq!(names, [&b"puts"[..], b"main", b"puts", b"put"]);
}

#[test]
fn unknown_section_types_are_skipped() {
    use smf_format::write::SectionSpec;
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &samples::RETURN_42);
    b.add_section(SectionSpec::new(
        SectionType::Unknown(200),
        b".mystery",
        SectionFlags::empty(),
        vec![1, 2, 3],
        1,
    ));
    b.add_symbol(SymbolSpec::function(b"main", 0, 6));
    let file = b.build().unwrap();
    let module = Module::parse(&file).unwrap();
    let mystery = module.section(1).unwrap();
    assert_eq!((mystery.section_type, mystery.data), (SectionType::Unknown(200), &[1u8, 2, 3][..]));
    assert_eq!(module.code_size(), 6);
}

#[test]
fn flag_bits_no_flag_names_are_written_and_read_back() {
    use smf_format::write::SectionSpec;
    use smf_format::SymbolFlags;
    for dialect in Dialect::ALL {
        let mut b = ModuleBuilder::new(dialect);
        b.header(|h| h.flags = ModuleFlags::PIC | ModuleFlags::from_bits_retain(0x4000_0000));
        let flags = SectionFlags::READ | SectionFlags::EXEC | SectionFlags::from_bits_retain(0x1_0000);
        b.add_section(SectionSpec::new(SectionType::Code, b".text", flags, samples::RETURN_42.to_vec(), 16));
        let symbol_flags = SymbolFlags::SPECIALIZATION | SymbolFlags::from_bits_retain(0x01);
        b.add_symbol(SymbolSpec { flags: symbol_flags, ..SymbolSpec::function(b"main", 0, 6) });
        let file = b.build().unwrap();
        let module = Module::parse(&file).unwrap();
        assert_eq!(module.header().flags.bits(), 0x4000_0008, "{dialect}");
        assert_eq!(module.section(0).unwrap().flags.bits(), 0x1_0005, "{dialect}");
        assert_eq!(module.symbols().next().unwrap().flags.bits(), 0x21, "{dialect}");
    }
}

#[test]
fn the_builder_refuses_what_the_format_cannot_hold() {
    use smf_format::write::BuildError;
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_relocation(0, 0, RelocKind::Abs32, 0);
    assert_eq!(
        b.build().unwrap_err(),
        BuildError::RelocationNotInDialect { kind: RelocKind::Abs32, dialect: Dialect::R96 }
    );
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_symbol(SymbolSpec::function(b"a\0b", 0, 0));
    assert_eq!(b.build().unwrap_err(), BuildError::NameHasNul { symbol: 0 });
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.stub(b"#!");
    assert_eq!(b.build().unwrap_err(), BuildError::StubNeedsTrailer);
}

#[test]
fn the_builder_refuses_content_that_would_read_as_another_layout() {
    use smf_format::write::BuildError;
    use smf_format::HeaderPlacement;
    // An S128 module (header at the end) whose first bytes are a whole, valid R72 module: the
    // format's tie rule prefers the header at offset 0, so every reader would read the R72 one
    // (found by the `write` fuzz target).
    let r72 = ModuleBuilder::new(Dialect::R72).build().unwrap();
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b".text", &r72);
    let refused = b.build().unwrap_err();
    assert_eq!(
        refused,
        BuildError::ReadAsAnotherLayout { dialect: Dialect::R72, placement: HeaderPlacement::Start }
    );
    assert!(refused.to_string().contains("valid R72 header at the start"), "{refused}");
    // The same bytes one byte in are no header: written, and read as written.
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b".text", &[&[0x90][..], &r72].concat());
    assert_eq!(Module::parse(&b.build().unwrap()).unwrap().dialect(), Dialect::S128);
}

#[test]
fn the_builder_refuses_a_note_a_reader_would_cut_short() {
    use smf_format::write::BuildError;
    // A line of the note that is the terminator ends the note for every reader (found by the
    // `write` fuzz target: the note read back empty).
    for (text, at) in [("# END_NOTE", 0), ("a |x|\n# END_NOTE\n0", 6), ("t\n# END_NOTE\r\nmore", 2)] {
        let mut b = ModuleBuilder::new(Dialect::S128);
        b.note_sdn(text);
        assert_eq!(b.build().unwrap_err(), BuildError::NoteHasTerminator { at }, "{text:?}");
    }
    // Not a line of its own: written and read back whole.
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.note_sdn("t |a|\n  # END_NOTE\n0, \"# END_NOTE\"");
    let file = b.build().unwrap();
    let module = Module::parse(&file).unwrap();
    assert_eq!(module.note_sdn().unwrap().text(), "t |a|\n  # END_NOTE\n0, \"# END_NOTE\"");
}

#[test]
#[cfg_attr(miri, ignore = "two notes of 1 MiB, interpreted byte by byte: minutes under Miri (run natively)")]
fn the_builder_refuses_a_note_longer_than_readers_look() {
    use smf_format::write::BuildError;
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.note_sdn(&"x".repeat(1 << 20));
    assert_eq!(b.build().unwrap_err(), BuildError::NoteTooLong { len: 1 << 20 });
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.note_sdn(&"x".repeat((1 << 20) - 1));
    let file = b.build().unwrap();
    assert_eq!(Module::parse(&file).unwrap().note_sdn().unwrap().text().len(), (1 << 20) - 1);
}

#[test]
fn dropping_unreferenced_symbols_keeps_the_named_ones_and_renumbers_references() {
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b".text", &[0x90; 32]);
    let data = b.add_data(b".data", &[0; 16]);
    let label = b.add_symbol(SymbolSpec::function(b".L1", 0, 0).with_binding(Binding::Local));
    let unused = b.add_symbol(SymbolSpec::data(b"local", data, 0, 8).with_binding(Binding::Local));
    let target = b.add_symbol(SymbolSpec::data(b"target", data, 8, 8).with_binding(Binding::Local));
    let global = b.add_symbol(SymbolSpec::function(b"f", 0, 16));
    b.add_relocation(2, target, RelocKind::Pc32, -4);
    b.add_data_relocation(data, 0, global, RelocKind::Abs64, 0);
    assert_eq!((label, unused, target, global), (0, 1, 2, 3));
    let dropped = b.drop_unreferenced_symbols(|s| s.binding != Binding::Local);
    assert_eq!(dropped, 2, "the label and the local nothing refers to");
    let bytes = b.build().unwrap();
    let module = Module::parse(&bytes).unwrap();
    let names: Vec<&[u8]> = module.symbols().map(|s| s.name).collect();
    assert_eq!(names, [&b"target"[..], b"f"], "the symbols left keep their order");
    let mut references: Vec<(bool, u32)> =
        module.relocations().map(|r| (r.image == RelocatedImage::Code, r.symbol)).collect();
    references.sort_unstable();
    assert_eq!(references, [(false, 1), (true, 0)], "each reference follows its symbol to its new index");
}

/// The libraries a module needs (`note.needed`) read back in order, in every dialect; a name
/// that is not a library's file name (a path, `..`, a control byte), an empty line or too many
/// names are refused by the section, naming the rule.
#[test]
fn local_functions_move_to_the_function_names_and_broken_records_are_refused() {
    use smf_format::FunctionNamesProblem;
    // `main` calls the static `helper` (linked: no relocation names it), a table in the rodata
    // points at the static `pointed` (a data relocation: rewritten against `main`, the
    // distance added), and a GOT load reaches the static `loaded` (its slot holds its own
    // address: it keeps its symbol).
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b".text", &[0xC3; 48]);
    let rodata = b.add_rodata(b".rodata", &[0; 16]);
    b.add_symbol(SymbolSpec::function(b"main", 8, 8));
    b.add_symbol(SymbolSpec::function(b"helper", 16, 4).with_binding(Binding::Local));
    let pointed = b.add_symbol(SymbolSpec::function(b"pointed", 24, 8).with_binding(Binding::Local));
    let label = b.add_symbol(SymbolSpec::function(b".Llabel", 20, 0).with_binding(Binding::Local));
    let loaded = b.add_symbol(SymbolSpec::function(b"loaded", 32, 8).with_binding(Binding::Local));
    b.add_data_relocation(rodata, 0, pointed, RelocKind::Abs64, 2);
    b.add_data_relocation(rodata, 8, label, RelocKind::Abs64, 0);
    b.add_relocation(11, loaded, RelocKind::GotPc32, -4);
    assert_eq!(b.move_local_functions_to_names(), 2);
    assert_eq!(b.move_local_functions_to_names(), 0, "once");
    let bytes = b.build().unwrap();
    let module = Module::parse(&bytes).unwrap();
    let symbols: Vec<&[u8]> = module.symbols().map(|s| s.name).collect();
    assert_eq!(symbols, [&b"main"[..], b".Llabel", b"loaded"]);
    let named: Vec<(u64, u64, &[u8])> =
        module.function_names().iter().map(|f| (f.offset, f.size, f.name())).collect();
    assert_eq!(named, [(16, 4, &b"helper"[..]), (24, 8, b"pointed")]);
    // `pointed + 2` is `main + 18`, the label (a function section's, say) `main + 12`; the GOT
    // load still names `loaded`, renumbered.
    let relocated: Vec<(&[u8], i64)> =
        module.relocations().map(|r| (module.symbol(r.symbol).unwrap().name, r.addend)).collect();
    assert_eq!(relocated, [(&b"main"[..], 18), (b"main", 12), (b"loaded", -4)]);

    // With no symbol kept in the code, a label at its start is the anchor.
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b".text", &[0xC3; 16]);
    let rodata = b.add_rodata(b".rodata", &[0; 8]);
    let only = b.add_symbol(SymbolSpec::function(b"only", 8, 8).with_binding(Binding::Local));
    b.add_data_relocation(rodata, 0, only, RelocKind::Abs64, 0);
    assert_eq!(b.move_local_functions_to_names(), 1);
    let bytes = b.build().unwrap();
    let module = Module::parse(&bytes).unwrap();
    let relocated: Vec<(&[u8], u64, i64)> = module
        .relocations()
        .map(|r| {
            let symbol = module.symbol(r.symbol).unwrap();
            (symbol.name, symbol.value, r.addend)
        })
        .collect();
    assert_eq!(relocated, [(&b".text"[..], 0, 8)]);

    // A record naming a function past the code: refused with the section and the record.
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b".text", &[0xC3; 8]);
    b.add_symbol(SymbolSpec::function(b"main", 0, 8));
    let functions: [(u64, u64, &[u8]); 2] = [(0, 8, b"inside"), (4, 8, b"past")];
    let at = b.add_section(smf_format::write::SectionSpec::function_names(functions.into_iter()).unwrap());
    let refused = Module::parse(&b.build().unwrap()).map(|_| ()).unwrap_err().kind;
    let expected = FunctionNamesProblem::OutsideCode { record: 1 };
    assert_eq!(refused, ErrorKind::BadFunctionNames { index: at, problem: expected });
}

#[test]
fn needed_libraries_read_back_and_bad_names_are_refused() {
    use smf_format::write::SectionSpec;
    use smf_format::NeededProblem;
    let with = |names: &[&[u8]], dialect: Dialect| {
        let mut b = ModuleBuilder::new(dialect);
        b.add_code(b".text", &samples::RETURN_42);
        b.add_symbol(SymbolSpec::function(b"main", 0, 6));
        let section = b.add_section(SectionSpec::needed_libraries(names));
        (b.build().unwrap(), section)
    };
    for dialect in Dialect::ALL {
        let (bytes, _) = with(&[b"libstdc++.so.6", b"libz.so.1"], dialect);
        let module = Module::parse(&bytes).unwrap();
        let names: Vec<&[u8]> = module.needed_libraries().collect();
        assert_eq!(names, [&b"libstdc++.so.6"[..], b"libz.so.1"], "{dialect}");
        let plain = samples::return_42(dialect);
        assert_eq!(Module::parse(&plain).unwrap().needed_libraries().count(), 0, "{dialect}");
    }
    let refused = |names: &[&[u8]]| {
        let (bytes, section) = with(names, Dialect::R96);
        match Module::parse(&bytes).map(|_| ()).unwrap_err().kind {
            ErrorKind::BadNeeded { index, problem } => {
                assert_eq!(index, section);
                problem
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(refused(&[b"/tmp/evil.so"]), NeededProblem::NameCharacters { line: 0 });
    assert_eq!(refused(&[b"libok.so", b"../up.so"]), NeededProblem::NameCharacters { line: 1 });
    assert_eq!(refused(&[b"lib\x1b.so"]), NeededProblem::NameCharacters { line: 0 });
    assert_eq!(refused(&[b"libok.so", b""]), NeededProblem::NameLength { line: 1 });
    let many: Vec<&[u8]> = vec![b"liba.so"; 65];
    assert_eq!(refused(&many), NeededProblem::TooMany);
}
