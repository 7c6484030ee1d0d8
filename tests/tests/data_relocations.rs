//! Data relocations (`docs/format.md`, "Data relocations"): pointers in read-only and writable
//! data are relocated before the image is sealed, in every dialect, under either read-only data
//! protection; writable data stays writable and never executable, read-only data is sealed; and
//! every rule of the extension (the marker, the kinds, the bounds, the order) is refused with
//! its own error.

#![cfg(target_arch = "x86_64")]
#![allow(unsafe_code)]

use smf_format::module::RelocatedImage;
use smf_format::write::{samples, ModuleBuilder, SectionSpec, SymbolSpec};
use smf_format::{Dialect, ErrorKind, Module, RelocKind, SectionFlags, SectionType};
use smf_runtime::exec::ExecAllocator;
use smf_runtime::load::reloc::RelocError;
use smf_runtime::load::{LoadError, LoadOptions, LoadedModule, ReadOnlyData, TableResolver};
use smf_tests::loading::call0;
use smf_tests::{assert_no_rwx, mapping_at};

/// The 8 bytes at `addr`, inside a loaded module's image.
fn read_u64(addr: usize) -> u64 {
    // SAFETY: the callers pass addresses of a live module's data symbols, mapped readable.
    unsafe { (addr as *const u64).read_unaligned() }
}

fn load_with<'a>(
    exec: &'a ExecAllocator,
    file: &[u8],
    read_only_data: ReadOnlyData,
) -> Result<LoadedModule<'a>, LoadError> {
    LoadedModule::load(exec, file, &(), &LoadOptions { read_only_data, ..LoadOptions::default() })
}

#[test]
fn pointers_in_data_point_at_their_symbols_once_loaded() {
    let exec = ExecAllocator::default();
    for dialect in [Dialect::S128, Dialect::R96] {
        for read_only_data in [ReadOnlyData::WithCode, ReadOnlyData::NotExecutable] {
            let label = format!("{dialect} {read_only_data:?}");
            let module = load_with(&exec, &samples::data_pointers(dialect), read_only_data).unwrap();
            let symbol = |name: &str| module.symbol(name.as_bytes()).unwrap();
            let (main, text, table, greeting) =
                (symbol("main"), symbol("text"), symbol("table"), symbol("greeting"));
            assert_eq!(read_u64(greeting), text as u64, "{label}: abs64 in writable data");
            assert_eq!(read_u64(greeting + 8), text as u64 + 1, "{label}: with an addend");
            assert_eq!(read_u64(table), main as u64, "{label}: abs64 in read-only data");
            let distance = i32::from_le_bytes(read_u64(table + 8).to_le_bytes()[..4].try_into().unwrap());
            assert_eq!(
                i64::from(distance),
                main as i64 - (table + 8) as i64,
                "{label}: pc32 from the data's place"
            );
            // SAFETY: `text` is a NUL-terminated string in the module's read-only data.
            let hello = unsafe { std::ffi::CStr::from_ptr(text as *const std::ffi::c_char) };
            assert_eq!(hello.to_bytes(), b"hello");
            assert_eq!(call0(&module, b"main"), 42);

            let (_, writable) = mapping_at(greeting).unwrap();
            assert!(writable.starts_with("rw-"), "{label}: writable data stays rw, not x: {writable}");
            let (_, read_only) = mapping_at(table).unwrap();
            let sealed = match read_only_data {
                ReadOnlyData::WithCode => "r-x",
                ReadOnlyData::NotExecutable => "r--",
            };
            assert!(read_only.starts_with(sealed), "{label}: read-only data sealed {sealed}: {read_only}");
            assert_no_rwx(&label);
        }
    }
}

#[test]
fn r72_carries_data_relocations_against_code() {
    let exec = ExecAllocator::default();
    let file = samples::data_pointers(Dialect::R72);
    let module = Module::parse(&file).unwrap();
    assert!(module.has_data_relocations_marker());
    let relocations: Vec<_> = module.relocations().collect();
    assert_eq!(relocations.len(), 4);
    assert!(relocations.iter().all(|r| r.image == RelocatedImage::Data));
    assert_eq!(relocations[0].index, 1, "the marker is relocation 0");
    let loaded = load_with(&exec, &file, ReadOnlyData::WithCode).unwrap();
    assert_eq!(call0(&loaded, b"main"), 42);
}

#[test]
fn the_marker_leads_the_first_relocation_section_and_is_never_listed() {
    for dialect in Dialect::ALL {
        let file = samples::data_pointers(dialect);
        let module = Module::parse(&file).unwrap();
        let first = module.sections().find(|s| s.section_type == SectionType::Relocations).unwrap();
        assert!(
            first.flags.contains(SectionFlags::RELOCATES_DATA),
            "{dialect}: the data relocations come first"
        );
        assert_eq!(&first.data[..8], &u64::MAX.to_le_bytes(), "{dialect}: the marker's offset");
        assert_eq!(&first.data[8..12], &u32::MAX.to_le_bytes(), "{dialect}: the marker's symbol");
        assert_eq!(&first.data[16..24], b"SMFDREL1", "{dialect}: the marker's addend");
        assert!(module.relocations().all(|r| r.offset != u64::MAX));
    }
}

/// A module with `.rodata` (section 1, 16 bytes, alignment 8) and `.data` (section 2, 16
/// bytes): the writable region starts at 16 in the data image.
fn two_regions(dialect: Dialect) -> ModuleBuilder {
    let mut b = ModuleBuilder::new(dialect);
    b.add_code(b".text", &samples::RETURN_42);
    b.add_section(SectionSpec::new(SectionType::RoData, b".rodata", SectionFlags::READ, vec![0; 12], 8));
    b.add_section(SectionSpec::new(
        SectionType::Data,
        b".data",
        SectionFlags::READ | SectionFlags::WRITE,
        vec![0; 16],
        8,
    ));
    b.add_symbol(SymbolSpec::function(b"main", 0, 6));
    b
}

fn format_error(file: &[u8]) -> ErrorKind {
    let error = Module::parse(file).unwrap_err();
    let exec = ExecAllocator::default();
    assert_eq!(load_with(&exec, file, ReadOnlyData::WithCode).unwrap_err(), LoadError::Format(error));
    assert_eq!(exec.stats().blocks_live, 0, "a failed load freed what it mapped");
    error.kind
}

#[test]
fn the_writable_region_starts_at_the_read_only_size_rounded_to_the_data_alignment() {
    let mut b = two_regions(Dialect::R96);
    b.add_data_relocation(2, 0, 0, RelocKind::Abs64, 0);
    let file = b.build().unwrap();
    let module = Module::parse(&file).unwrap();
    assert_eq!((module.read_only_size(), module.writable_data_start()), (12, 16));
    assert_eq!(module.relocations().next().map(|r| r.offset), Some(16));
}

#[test]
fn the_writer_sorts_data_relocations_and_refuses_two_on_the_same_bytes() {
    let mut b = two_regions(Dialect::R96);
    b.add_data_relocation(2, 8, 0, RelocKind::Abs64, 0);
    b.add_data_relocation(2, 0, 0, RelocKind::Abs64, 0);
    let file = b.build().unwrap();
    let offsets: Vec<u64> = Module::parse(&file).unwrap().relocations().map(|r| r.offset).collect();
    assert_eq!(offsets, [16, 24], "written in order, whatever order they were added in");
    b.add_data_relocation(2, 4, 0, RelocKind::Abs64, 0);
    assert_eq!(b.build(), Err(smf_format::write::BuildError::DataRelocationsOverlap { offset: 20 }));
}

#[test]
fn every_rule_of_the_extension_has_its_error() {
    let with = |f: &dyn Fn(&mut ModuleBuilder)| {
        let mut b = two_regions(Dialect::R96);
        f(&mut b);
        format_error(&b.build().unwrap())
    };
    // Outside both regions: in the gap between them, past the end, across the end, across the
    // read-only region's end.
    for offset in [12, 32, 28, 8] {
        let kind = with(&|b| {
            b.add_raw_data_relocation(offset, 0, 1, 0);
        });
        assert_eq!(kind, ErrorKind::RelocationOutsideData { relocation: 1 }, "at {offset}");
    }
    let kind = with(&|b| {
        b.add_raw_data_relocation(8, 0, 3, 0); // plt32
    });
    assert_eq!(kind, ErrorKind::DataRelocationKind { relocation: 1, kind: RelocKind::Plt32 });
    let kind = with(&|b| {
        b.add_raw_data_relocation(16, 0, 1, 0).add_raw_data_relocation(20, 0, 1, 0);
    });
    assert_eq!(kind, ErrorKind::DataRelocationsOverlap { relocation: 2 });
    let kind = with(&|b| {
        b.add_raw_data_relocation(16, 0, 1, 0).data_relocations_marker(false);
    });
    assert!(matches!(kind, ErrorKind::DataRelocationsWithoutMarker { .. }), "{kind:?}");
    // A marker where it may not be: a later entry.
    let kind = with(&|b| {
        let marker = i64::from_le_bytes(*b"SMFDREL1");
        b.add_raw_data_relocation(16, 0, 1, 0).add_raw_data_relocation(u64::MAX, u32::MAX, 1, marker);
    });
    assert_eq!(kind, ErrorKind::BadExtensionMarker { relocation: 2 });
    // A code relocation section first: the marker does not lead the first one.
    let kind = with(&|b| {
        let mut entry = Vec::new();
        entry.extend_from_slice(&0u64.to_le_bytes());
        entry.extend_from_slice(&0u32.to_le_bytes());
        entry.extend_from_slice(&[1, 0, 0, 0]);
        entry.extend_from_slice(&0i64.to_le_bytes());
        b.add_section(SectionSpec::new(
            SectionType::Relocations,
            b".rela.first",
            SectionFlags::empty(),
            entry,
            8,
        ));
        b.add_raw_data_relocation(16, 0, 1, 0);
    });
    assert!(matches!(kind, ErrorKind::DataRelocationsWithoutMarker { .. }), "{kind:?}");
}

#[test]
fn a_marker_naming_another_extension_is_refused() {
    let mut b = two_regions(Dialect::S128);
    b.add_raw_data_relocation(16, 0, 1, 0);
    let mut file = b.build().unwrap();
    let at = file.windows(8).position(|w| w == b"SMFDREL1").unwrap();
    file[at + 7] = b'2';
    assert_eq!(format_error(&file), ErrorKind::BadExtensionMarker { relocation: 0 });
}

/// Read-only data after branch stubs and the GOT's slots in the code's pages (the default), or
/// in pages of its own: data relocations land in the data, never in the stubs or the GOT, and
/// pointers to imports, pc32 in writable data too.
#[test]
fn data_relocations_land_beside_stubs_and_the_got() {
    let exec = ExecAllocator::default();
    // call ext (plt32, forced through its stub); mov rax, [rip + ext@GOT] (got_pc32); ret.
    let code = [0xE8, 0, 0, 0, 0, 0x48, 0x8B, 0x05, 0, 0, 0, 0, 0xC3];
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &code);
    let ro =
        b.add_section(SectionSpec::new(SectionType::RoData, b".rodata", SectionFlags::READ, vec![0; 16], 8));
    let rw = b.add_section(SectionSpec::new(
        SectionType::Data,
        b".data",
        SectionFlags::READ | SectionFlags::WRITE,
        vec![0; 16],
        8,
    ));
    let main = b.add_symbol(SymbolSpec::function(b"main", 0, code.len() as u64));
    let ext = b.add_symbol(SymbolSpec::import(b"ext"));
    b.add_symbol(SymbolSpec::data(b"constants", ro, 0, 16));
    b.add_symbol(SymbolSpec::data(b"table", rw, 0, 16));
    b.add_relocation(1, ext, RelocKind::Plt32, -4);
    b.add_relocation(8, ext, RelocKind::GotPc32, -4);
    b.add_data_relocation(ro, 0, ext, RelocKind::Abs64, 0);
    b.add_data_relocation(ro, 8, main, RelocKind::Abs64, 2);
    b.add_data_relocation(rw, 0, main, RelocKind::Pc32, 0);
    b.add_data_relocation(rw, 8, ext, RelocKind::Abs64, -1);
    let file = b.build().unwrap();
    let resolver = TableResolver(&[(b"ext", 0x7000_1234_5678)]);
    for read_only_data in [ReadOnlyData::WithCode, ReadOnlyData::NotExecutable] {
        let options = LoadOptions { read_only_data, force_stubs: true, ..LoadOptions::default() };
        let module = LoadedModule::load(&exec, &file, &resolver, &options).unwrap();
        let at = |name: &[u8]| module.symbol(name).unwrap();
        let (constants, table, main) = (at(b"constants"), at(b"table"), at(b"main"));
        assert_eq!(read_u64(constants), 0x7000_1234_5678, "{read_only_data:?}: an import's address");
        assert_eq!(read_u64(constants + 8), main as u64 + 2, "{read_only_data:?}");
        let distance = i32::from_le_bytes(read_u64(table).to_le_bytes()[..4].try_into().unwrap());
        assert_eq!(
            i64::from(distance),
            main as i64 - table as i64,
            "{read_only_data:?}: pc32 in writable data"
        );
        assert_eq!(read_u64(table + 8), 0x7000_1234_5677, "{read_only_data:?}");
        // The stub and the GOT slot still hold the import: the data did not land on them.
        let call = i32::from_le_bytes(code_bytes(main + 1));
        let stub = main.wrapping_add_signed(5 + call as isize);
        assert_eq!(read_u64(stub + 6), 0x7000_1234_5678, "{read_only_data:?}: the stub's target");
        let load = i32::from_le_bytes(code_bytes(main + 8));
        let slot = main.wrapping_add_signed(12 + load as isize);
        assert_eq!(read_u64(slot), 0x7000_1234_5678, "{read_only_data:?}: the GOT slot");
        assert_no_rwx("stubs, GOT and relocated data");
    }
}

/// The 4 bytes at `addr`, inside a loaded module's code.
fn code_bytes(addr: usize) -> [u8; 4] {
    // SAFETY: the callers pass addresses inside a live module's code.
    unsafe { (addr as *const [u8; 4]).read_unaligned() }
}

#[test]
fn an_absolute_32_bit_pointer_that_cannot_hold_the_address_names_its_relocation() {
    let exec = ExecAllocator::default();
    let mut b = two_regions(Dialect::S128);
    b.add_data_relocation(2, 0, 0, RelocKind::Abs32, 0);
    let error = load_with(&exec, &b.build().unwrap(), ReadOnlyData::WithCode).unwrap_err();
    assert!(
        matches!(
            error,
            LoadError::Relocation {
                relocation: 1,
                kind: RelocKind::Abs32,
                error: RelocError::OutOfRange { .. },
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(exec.stats().blocks_live, 0);
}

#[test]
fn the_builder_keeps_a_data_relocation_inside_its_section() {
    let mut b = two_regions(Dialect::R96);
    b.add_data_relocation(1, 8, 0, RelocKind::Abs64, 0); // 8 bytes at 8 of a 12-byte section
    assert_eq!(
        b.build().unwrap_err(),
        smf_format::write::BuildError::DataRelocationOutsideSection { section: 1, offset: 8 }
    );
    let mut b = two_regions(Dialect::R96);
    b.add_data_relocation(0, 0, 0, RelocKind::Abs64, 0); // the code section
    assert!(b.build().is_err());
}
