//! Hostile input: every truncation of every fixture, every byte of the header and tables changed
//! to several values, and offsets and counts near the `u32`/`u64` limits. Each must give `Ok` or
//! a typed error, never a panic, never an allocation, and never take noticeable time; and each
//! is also loaded and unloaded, leaving nothing mapped. Targeted corruptions must give their
//! specific error, at the right offset.

// Casts here are of test and tool values known to be small.
#![allow(clippy::cast_possible_truncation)]

use std::time::Duration;

use smf_format::fuzzing::fuzz_one;
use smf_format::write::{samples, ModuleBuilder, SymbolSpec};
use smf_format::{Dialect, Error, ErrorKind, Module, SymbolFlags};
use smf_runtime::exec::ExecAllocator;
use smf_runtime::load::{LoadOptions, LoadedModule, Resolved, Resolver};
use smf_tests::{fixtures, CountingAllocator};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// A generous bound on CPU time (not wall time, which a loaded machine stretches) that only a
/// hang or a quadratic blow-up would exceed: a valid rich module takes about 1 ms unoptimized.
const SLOW: Duration = Duration::from_millis(250);

thread_local! {
    /// An allocator per test thread, so that parallel tests cannot disturb its counts.
    static EXEC: &'static ExecAllocator = Box::leak(Box::new(ExecAllocator::default()));
}

/// Resolves every import, so that loading reaches relocation.
struct Everything;

impl Resolver for Everything {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        Some(Resolved { addr: 0x40_0000 + name.len() * 16, keepalive: None })
    }
}

/// Parses `bytes` in every way a caller can (asserting no allocation), walks everything a valid
/// module exposes (asserting no slowness), then loads and unloads it (any architecture), asserting that nothing stays
/// mapped whether the load failed or not.
fn survive(label: &str, bytes: &[u8]) {
    // Parsing, in every way a caller can, allocates nothing.
    let before = smf_tests::allocations();
    let _ = Module::parse(bytes);
    for dialect in Dialect::ALL {
        let _ = Module::parse_with(
            bytes,
            &smf_format::ParseOptions { dialect: Some(dialect), ..Default::default() },
        );
    }
    assert_eq!(smf_tests::allocations(), before, "{label}: parsing allocated");
    // A slow path is deterministic; a virtual machine's steal time (charged to the thread's
    // CPU clock too) is not: the fastest of up to three runs must be under the bound.
    let mut fastest = Duration::MAX;
    for _ in 0..3 {
        let start = smf_tests::thread_cpu_time();
        let _ = fuzz_one(bytes);
        fastest = fastest.min(smf_tests::thread_cpu_time() - start);
        if fastest < SLOW {
            break;
        }
    }
    assert!(fastest < SLOW, "{label}: took {fastest:?}");

    EXEC.with(|exec| {
        // A mutated module's code is never run (its constructors included).
        let options = LoadOptions { require_arch: None, run_constructors: false, ..LoadOptions::default() };
        if let Ok(loaded) = LoadedModule::load(exec, bytes, &Everything, &options) {
            agrees_with_validation(label, bytes, &loaded, &options);
        }
        let stats = exec.stats();
        assert_eq!(
            (stats.blocks_live, stats.pages_open, stats.pages_sealed),
            (0, 0, 0),
            "{label}: load left memory"
        );
    });
}

/// The loader decodes symbols and relocations on fast paths of its own: a module it loads must
/// be one full validation accepts, with the symbols validation decodes (same names, kinds,
/// bindings, and an address for every addressable non-template symbol's own code or data).
fn agrees_with_validation(label: &str, bytes: &[u8], loaded: &LoadedModule<'_>, options: &LoadOptions) {
    let module = Module::parse_with(bytes, &options.parse)
        .unwrap_or_else(|e| panic!("{label}: loaded, but validation refuses it: {e}"));
    let table = loaded.symbols();
    assert_eq!(table.len(), module.symbol_count() as usize, "{label}: symbol count");
    for symbol in module.symbols() {
        let index = symbol.index as usize;
        let ours = table.get(index).unwrap_or_else(|| panic!("{label}: symbol {index} missing"));
        assert_eq!(table.name(index), Some(symbol.name), "{label}: name of symbol {index}");
        assert_eq!((ours.kind, ours.binding), (symbol.kind, symbol.binding), "{label}: symbol {index}");
        assert_eq!(ours.template, symbol.is_template(), "{label}: template flag of symbol {index}");
        if symbol.kind.is_addressable()
            && !symbol.is_template()
            && symbol.kind != smf_format::SymbolKind::Import
        {
            assert_ne!(ours.addr, 0, "{label}: symbol {index} has no address");
        }
    }
}

/// Kernel mappings left in this thread's allocator's regions, once it has given back the trap
/// pages that loads which succeeded kept: at most the reservation.
fn assert_nothing_left_mapped() {
    EXEC.with(|exec| {
        exec.trim().unwrap();
        assert_eq!(exec.stats().trap_pages, 0, "trim releases trap pages that guard nothing");
        assert!(smf_tests::mappings_within(&exec.regions()) <= 1, "mappings left behind");
    });
}

/// Byte ranges worth mutating: header, section table, symbol table, relocation payloads, the
/// template sections.
fn structural_ranges(file: &[u8]) -> Vec<std::ops::Range<usize>> {
    let module = Module::parse(file).unwrap();
    let d = module.dialect();
    let h = module.header();
    let base = module.data_start() as usize;
    let header_at = module.header_offset() as usize;
    let mut ranges = Vec::new();
    ranges.push(header_at..header_at + d.header_size());
    let st = base + h.section_table_offset as usize;
    ranges.push(st..st + h.section_count as usize * d.section_entry_size());
    let sy = base + h.symbol_table_offset as usize;
    ranges.push(sy..sy + h.symbol_count as usize * d.symbol_entry_size());
    for s in module.sections() {
        use smf_format::SectionType::*;
        if matches!(s.section_type, Relocations | TemplateCode | TemplateMeta) {
            let at = s.file_offset as usize;
            ranges.push(at..at + s.data.len());
        }
    }
    ranges
}

#[test]
fn every_truncation_of_every_fixture_is_survived() {
    for (name, file) in fixtures() {
        assert!(Module::parse(&file).is_ok(), "{name} must be valid to start with");
        let mut errors = 0;
        for len in 0..file.len() {
            survive(&format!("{name}[..{len}]"), &file[..len]);
            errors += usize::from(Module::parse(&file[..len]).is_err());
        }
        // Trailer layouts lose their header with the last byte; leading layouts lose tables.
        assert!(errors > file.len() / 2, "{name}: only {errors} truncations rejected");
        // Prefix-only truncations of leading-header files keep nothing of the code section.
        assert!(Module::parse(&file[..0]).is_err());
    }
    assert_nothing_left_mapped();
}

#[test]
fn every_structural_byte_changed_to_several_values_is_survived() {
    for (name, file) in fixtures() {
        for range in structural_ranges(&file) {
            for at in range {
                let original = file[at];
                for value in [0x00, 0x01, 0x7f, 0x80, 0xff, original ^ 0x01, original.wrapping_add(16)] {
                    if value == original {
                        continue;
                    }
                    let mut mutated = file.clone();
                    mutated[at] = value;
                    survive(&format!("{name}: byte {at} = {value:#x}"), &mutated);
                }
            }
        }
    }
    assert_nothing_left_mapped();
}

/// Header fields (offset in the header, width) of each dialect that hold counts or offsets.
fn header_number_fields(d: Dialect) -> &'static [(usize, usize)] {
    match d {
        Dialect::S128 => &[(16, 4), (20, 8), (28, 8), (36, 4), (44, 8), (52, 4), (56, 4)],
        Dialect::R96 => &[(16, 4), (24, 8), (32, 8), (40, 4), (48, 8), (56, 4), (60, 4)],
        Dialect::R72 => &[(12, 4), (16, 8), (24, 8), (32, 4), (40, 8)],
    }
}

/// Values near the limits for a field of `width` bytes, plus ones near the file length.
fn extreme_values(width: usize, file_len: u64) -> Vec<u64> {
    let max = if width == 4 { u64::from(u32::MAX) } else { u64::MAX };
    let mut values =
        vec![max, max - 1, max - 23, max / 2, max / 2 + 1, 1 << 31, file_len, file_len + 1, file_len - 1];
    if width == 8 {
        values.extend([1 << 32, (1 << 32) - 1, i64::MAX as u64, i64::MIN as u64, u64::MAX - 127]);
    }
    values
}

fn write_le(buf: &mut [u8], at: usize, width: usize, value: u64) {
    buf[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
}

#[test]
fn counts_and_offsets_near_integer_limits_are_survived() {
    for (name, file) in fixtures() {
        let module = Module::parse(&file).unwrap();
        let d = module.dialect();
        let header_at = module.header_offset() as usize;
        let base = module.data_start() as usize;
        let mut fields: Vec<(usize, usize)> =
            header_number_fields(d).iter().map(|&(at, w)| (header_at + at, w)).collect();
        // Section entries: offset, size, virtual_size, alignment.
        let st = base + module.header().section_table_offset as usize;
        for i in 0..module.section_count() as usize {
            let e = st + i * d.section_entry_size();
            fields.extend([
                (e + 8, 8),
                (e + 16, 8),
                (e + 24, 8),
                (e + 32, if d == Dialect::S128 { 4 } else { 8 }),
            ]);
        }
        // Symbol entries: name offset, value, size, template offset.
        let sy = base + module.header().symbol_table_offset as usize;
        for i in 0..module.symbol_count() as usize {
            let e = sy + i * d.symbol_entry_size();
            fields.extend([(e, 4), (e + 16, 8), (e + 24, 8)]);
            if d != Dialect::R72 {
                fields.push((e + 48, 8));
            }
        }
        // Relocation entries: offset, symbol index, addend.
        for s in module.sections().filter(|s| s.section_type == smf_format::SectionType::Relocations) {
            for n in 0..s.data.len() / 24 {
                let e = s.file_offset as usize + n * 24;
                fields.extend([(e, 8), (e + 8, 4), (e + 16, 8)]);
            }
        }
        for (at, width) in fields {
            for value in extreme_values(width, file.len() as u64) {
                let mut mutated = file.clone();
                write_le(&mut mutated, at, width, value);
                survive(&format!("{name}: field at {at} = {value:#x}"), &mutated);
            }
        }
    }
    assert_nothing_left_mapped();
}

#[test]
fn random_bytes_and_garbage_after_magic_are_survived() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..2000 {
        let len = (next() % 600) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 2 == 0 && len >= 4 {
            bytes[..4].copy_from_slice(b"SMF\0");
        }
        if round % 3 == 0 && len >= 128 {
            bytes[len - 128..len - 124].copy_from_slice(b"SMF\0");
        }
        survive(&format!("random round {round}"), &bytes);
    }
    assert_nothing_left_mapped();
}

fn parse_err(file: &[u8]) -> Error {
    Module::parse(file).expect_err("must be rejected")
}

fn r96_with_reloc() -> Vec<u8> {
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &samples::RETURN_42);
    let main = b.add_symbol(SymbolSpec::function(b"main", 0, 6));
    b.add_relocation(1, main, smf_format::RelocKind::Pc32, 0);
    b.build().unwrap()
}

#[test]
fn targeted_corruptions_give_their_specific_error_and_offset() {
    // R96 "return 42": section table at 96, code at 152, symbol at 158, strings at 214.
    let good = samples::return_42(Dialect::R96);

    let mut f = good.clone();
    write_le(&mut f, 16, 4, u64::from(u32::MAX));
    assert_eq!(parse_err(&f).kind, ErrorKind::SectionTableOutOfBounds { count: u32::MAX });

    let mut f = good.clone();
    write_le(&mut f, 32, 8, u64::MAX - 10);
    assert_eq!(parse_err(&f).kind, ErrorKind::SymbolTableOutOfBounds { count: 1 });

    let mut f = good.clone();
    write_le(&mut f, 104, 8, u64::MAX - 2); // section offset: overflows when the size is added
    assert_eq!(parse_err(&f), Error::new(ErrorKind::SectionOutOfBounds { index: 0 }, 96));

    let mut f = good.clone();
    write_le(&mut f, 120, 8, 2); // virtual_size below size
    assert_eq!(parse_err(&f).kind, ErrorKind::VirtualSizeTooSmall { index: 0 });

    let mut f = good.clone();
    write_le(&mut f, 120, 8, 1 << 40); // a terabyte of zero-filled code
    assert!(matches!(parse_err(&f).kind, ErrorKind::ImageTooLarge { .. }));

    let mut f = good.clone();
    write_le(&mut f, 158, 4, 5); // name offset at the end of the string table
    assert_eq!(parse_err(&f), Error::new(ErrorKind::NameOutOfBounds { symbol: 0 }, 158));

    let mut f = good.clone();
    write_le(&mut f, 158, 4, 4); // the name offset at the NUL: an empty name, on a global
    assert_eq!(parse_err(&f), Error::new(ErrorKind::UnnamedSymbol { symbol: 0 }, 158));
    f[167] = 0; // local: may be unnamed (and is then neither exported nor found)
    let module = Module::parse(&f).unwrap();
    assert_eq!(module.symbol(0).map(|s| s.name), Some(&b""[..]));
    assert!(module.find_export(b"").is_none());

    let mut f = good.clone();
    f[218] = b'!'; // the string table's only NUL
    assert_eq!(parse_err(&f).kind, ErrorKind::NameUnterminated { symbol: 0 });

    let mut f = good.clone();
    f[166] = 9;
    assert_eq!(parse_err(&f), Error::new(ErrorKind::BadSymbolType { symbol: 0, value: 9 }, 166));

    let mut f = good.clone();
    f[167] = 3;
    assert_eq!(parse_err(&f), Error::new(ErrorKind::BadBinding { symbol: 0, value: 3 }, 167));

    let mut f = good.clone();
    write_le(&mut f, 174, 8, 7); // value past the 6 bytes of code
    assert_eq!(parse_err(&f), Error::new(ErrorKind::SymbolOutsideCode { symbol: 0 }, 174));

    let mut f = good.clone();
    write_le(&mut f, 48, 8, 6); // entry point at the end of the code
    assert_eq!(parse_err(&f).kind, ErrorKind::EntryOutsideCode { entry: 6, code_size: 6 });

    let mut f = good.clone();
    f[12] = 3; // a compression method no one defined
    assert_eq!(parse_err(&f), Error::new(ErrorKind::UnsupportedCompression { method: 3 }, 12));

    let mut f = good;
    f[0] = b'X';
    assert_eq!(parse_err(&f).kind, ErrorKind::BadMagic);
    assert_eq!(parse_err(&[0; 10]).kind, ErrorKind::FileTooSmall { len: 10 });
}

#[test]
fn an_elf_file_is_told_apart_and_pointed_at_smf_pack() {
    // An ELF header's start: magic, 64-bit, little-endian, version 1, then e_type at 16.
    let elf = |object_type: u16, len: usize| {
        let mut f = vec![0u8; len];
        f[..7].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1]);
        if len >= 18 {
            f[16..18].copy_from_slice(&object_type.to_le_bytes());
        }
        f
    };
    let error = parse_err(&elf(1, 4096));
    assert_eq!(error, Error::new(ErrorKind::ElfFile { object_type: 1 }, 0));
    assert!(error.to_string().starts_with("an ELF object, not an SMF module: `smf pack`"), "{error}");
    assert_eq!(parse_err(&elf(3, 4096)).kind, ErrorKind::ElfFile { object_type: 3 });
    assert!(parse_err(&elf(3, 4096)).to_string().starts_with("an ELF shared library"));
    // Too short for any header, still an ELF file's start.
    assert_eq!(parse_err(&elf(0, 8)).kind, ErrorKind::ElfFile { object_type: 0 });
}

#[test]
fn relocation_corruptions_give_their_specific_error() {
    let good = r96_with_reloc();
    let module = Module::parse(&good).unwrap();
    let rela = module.sections().find(|s| s.name == b".rela").unwrap().file_offset as usize;

    let mut f = good.clone();
    write_le(&mut f, rela, 8, 3); // 4 bytes at 3 overrun the 6 bytes of code
    assert_eq!(parse_err(&f), Error::new(ErrorKind::RelocationOutsideCode { relocation: 0 }, rela as u64));

    let mut f = good.clone();
    write_le(&mut f, rela, 8, u64::MAX - 1); // offset + width overflows
    assert_eq!(parse_err(&f).kind, ErrorKind::RelocationOutsideCode { relocation: 0 });

    let mut f = good.clone();
    write_le(&mut f, rela + 8, 4, 1);
    let expected = ErrorKind::RelocationBadSymbol { relocation: 0, symbol: 1 };
    assert_eq!(parse_err(&f), Error::new(expected, rela as u64 + 8));

    let mut f = good.clone();
    f[rela + 12] = 10;
    let expected = ErrorKind::RelocationBadKind { relocation: 0, wire: 10 };
    assert_eq!(parse_err(&f), Error::new(expected, rela as u64 + 12));

    // The three bytes after the kind are padding that older loaders read as a u32: ignored.
    let mut f = good.clone();
    f[rela + 13] = 0xAA;
    assert!(Module::parse(&f).is_ok());

    // A relocation section whose size is not a multiple of 24.
    let d = Dialect::R96;
    let st = 96 + d.section_entry_size(); // second entry: .rela
    let mut f = good;
    write_le(&mut f, st + 16, 8, 23);
    assert_eq!(parse_err(&f).kind, ErrorKind::RelocationSectionSize { index: 1 });
}

/// Sections whose payloads share bytes: a relocation section aliasing the code would have the
/// relocation walk read the code's bytes as entries, and many such sections would each read
/// them again (a cost the file's size no longer bounds). Payloads larger together than the file
/// are refused at the first section that makes them so, before it is read.
#[test]
fn sections_aliasing_one_payload_are_refused_before_any_is_read() {
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &[0xC3; 4032]);
    let main = b.add_symbol(SymbolSpec::function(b"main", 0, 1));
    b.add_relocation(1, main, smf_format::RelocKind::Pc32, 0);
    let good = b.build().unwrap();
    let module = Module::parse(&good).unwrap();
    let code = module.sections().find(|s| s.name == b".text").unwrap().file_offset;
    let d = Dialect::R96;
    let st = 96 + d.section_entry_size(); // the second entry: .rela
    let mut f = good.clone();
    write_le(&mut f, st + 8, 8, code); // the relocations' payload: the code's 4032 bytes
    write_le(&mut f, st + 16, 8, 4032);
    assert!(f.len() < 2 * 4032, "the two payloads are larger than the file");
    assert_eq!(parse_err(&f), Error::new(ErrorKind::PayloadsLargerThanFile { index: 1 }, st as u64));
    assert!(parse_err(&f)
        .to_string()
        .contains("section 1: the sections' payloads up to it are larger together than the file"));
}

/// Symbols whose names all point into one long name: finding each name's end, hashing and
/// printing the names would read the long name once per symbol (the square of the file). The
/// names, counted once per symbol, may pass the string table by 1 MiB and `sharing` bytes a
/// symbol: a name shared by a few symbols (two static functions of one long C++ name) passes.
#[test]
fn names_aliasing_one_long_name_are_refused_once_they_pass_the_string_table() {
    let long = vec![b'a'; 64 * 1024];
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &[0xC3]);
    b.add_symbol(SymbolSpec::function(&long, 0, 1));
    for i in 0..64 {
        b.add_symbol(
            SymbolSpec::function(format!("s{i}").as_bytes(), 0, 1).with_binding(smf_format::Binding::Local),
        );
    }
    let good = b.build().unwrap();
    let module = Module::parse(&good).unwrap();
    let first = module.symbol(0).unwrap().name_offset;
    let table = module.header().symbol_table_offset as usize;
    let entry = Dialect::R96.symbol_entry_size();
    let aliased = |count: usize| {
        let mut f = good.clone();
        for i in 1..=count {
            write_le(&mut f, table + i * entry, 4, u64::from(first));
        }
        f
    };
    // A few symbols sharing it fit the allowance.
    assert!(Module::parse(&aliased(4)).is_ok());
    // Then they do not, at the first symbol past it.
    let strings = good.len() - table - 65 * entry;
    let allowance = strings + (1 << 20) + 65 * 256;
    let fits = allowance / (long.len() + 1); // the symbols whose names fit, the long one first
    let error = parse_err(&aliased(64));
    let symbol = u32::try_from(fits).unwrap();
    let at = (table + fits * entry) as u64;
    assert_eq!(error, Error::new(ErrorKind::NamesShareTooMuch { symbol, sharing: 256 }, at), "{error}");
}

#[test]
fn s128_wire_zero_and_aarch64_kinds_are_invalid() {
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b"code", &samples::RETURN_42);
    let main = b.add_symbol(SymbolSpec::function(b"main", 0, 6));
    b.add_raw_relocation(0, main, 0, 0);
    assert_eq!(parse_err(&b.build().unwrap()).kind, ErrorKind::RelocationBadKind { relocation: 0, wire: 0 });
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b"code", &samples::RETURN_42);
    let main = b.add_symbol(SymbolSpec::function(b"main", 0, 6));
    b.add_raw_relocation(0, main, 6, 0);
    assert_eq!(parse_err(&b.build().unwrap()).kind, ErrorKind::RelocationBadKind { relocation: 0, wire: 6 });
}

#[test]
fn note_and_template_corruptions_give_their_specific_error() {
    let file = samples::rich(Dialect::R96);
    let module = Module::parse(&file).unwrap();
    let note_text = module.note_sdn_text().unwrap();
    let note_at = note_text.as_ptr() as usize - file.as_ptr() as usize;
    let term = note_at + note_text.len() + 1; // "# END_NOTE"
    let mut f = file.clone();
    f[term + 2] = b'X';
    assert_eq!(parse_err(&f).kind, ErrorKind::NoteUnterminated);
    let mut f = file.clone();
    f[note_at + 3] = 0xFF;
    assert_eq!(parse_err(&f).kind, ErrorKind::NoteNotUtf8);

    // The note.sdn entry itself: size and virtual size 0, a usable alignment, a note's type.
    for dialect in Dialect::ALL {
        let file = samples::rich(dialect);
        let module = Module::parse(&file).unwrap();
        let note = module.sections().find(|s| s.name == b"note.sdn").unwrap();
        let entry = module.data_start() as usize
            + module.header().section_table_offset as usize
            + note.index as usize * dialect.section_entry_size();
        let index = note.index;
        // (field offset in the entry, width, value, field name); S128 keeps alignment in a u32.
        let align_width = if dialect == Dialect::S128 { 4 } else { 8 };
        for (at, width, value, field) in [
            (16, 8, u64::MAX, "size"),
            (16, 8, 12, "size"),
            (24, 8, 1 << 40, "virtual_size"),
            (32, align_width, 3, "alignment"),
            (32, align_width, 1 << 20, "alignment"),
            (0, 1, 1, "type"),
            (0, 1, 4, "type"),
        ] {
            let mut f = file.clone();
            write_le(&mut f, entry + at, width, value);
            let expected = ErrorKind::NoteSectionEntry { index, field, value };
            assert_eq!(parse_err(&f), Error::new(expected, entry as u64), "{dialect:?} {field} {value}");
        }
    }

    let tc = module.sections().find(|s| s.name == b"template_code").unwrap().file_offset as usize;
    let mut f = file.clone();
    f[tc] = b'X';
    assert_eq!(parse_err(&f), Error::new(ErrorKind::TemplateBadMagic, tc as u64));
    let mut f = file.clone();
    f[tc + 10] = 9; // first entry's kind
                    // Reported at the template_offset field of the first template symbol's entry.
    let template = module.symbols().find(|s| s.is_template()).unwrap();
    let entry = module.data_start()
        + module.header().symbol_table_offset
        + u64::from(template.index) * module.dialect().symbol_entry_size() as u64;
    let expected = ErrorKind::TemplateOffsetOutOfBounds { symbol: template.index };
    assert_eq!(parse_err(&f), Error::new(expected, entry + 48));

    let tm = module.sections().find(|s| s.name == b"template_meta").unwrap().file_offset as usize;
    let mut f = file;
    write_le(&mut f, tm + 6, 4, u64::from(u32::MAX)); // a huge function count
    assert_eq!(parse_err(&f).kind, ErrorKind::TemplateTruncated);
}

#[test]
fn errors_display_what_and_where() {
    let mut f = samples::return_42(Dialect::R96);
    f[166] = 9;
    let text = parse_err(&f).to_string();
    assert_eq!(text, "symbol 0: unknown symbol type 9 (at byte offset 166)");
}

#[test]
fn many_template_symbols_take_no_quadratic_time() {
    use smf_format::template::TemplateKind;
    use smf_format::write::TemplateSpec;
    // 20,000 template symbols (a 1.2 MB file): locating each entry's end by scanning every
    // symbol took ~2 s here; validation checks prefixes and extents are found by sorting.
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &[0xC3]);
    let spec = |n: u32| TemplateSpec {
        kind: TemplateKind::Function,
        name: format!("T{n}").into_bytes(),
        params: vec![b"X".to_vec()],
        body: vec![],
    };
    let offsets: Vec<u64> = (0..100).map(|n| b.add_template(spec(n))).collect();
    for i in 0..20_000u32 {
        let offset = offsets[i as usize % offsets.len()];
        b.add_symbol(SymbolSpec {
            flags: SymbolFlags::TEMPLATE,
            template_offset: offset,
            ..SymbolSpec::function(format!("t{i}").as_bytes(), 0, 0)
        });
    }
    let file = b.build().unwrap();
    let start = smf_tests::thread_cpu_time();
    let module = Module::parse(&file).unwrap();
    let entries = module.template_entries().unwrap();
    let elapsed = smf_tests::thread_cpu_time() - start;
    assert_eq!(entries.len(), 20_000);
    assert!(entries.iter().all(|(_, e)| e.params().count() == 1));
    assert_eq!(entries[5].1.name, b"T5");
    assert!(elapsed < SLOW, "parse + template_entries took {elapsed:?}");
}
