//! Compressed modules (`docs/format.md`, "Compression"): a module whose code, data and rodata
//! are LZ4 or Zstandard frames loads and runs exactly as its uncompressed twin, in each dialect with a
//! compression byte; frames that lie about their length, are cut or corrupt, sections that may
//! not be compressed and methods this loader does not know are refused with the section named.

#![cfg(target_arch = "x86_64")]
#![allow(unsafe_code)]

use smf_format::compress::Method;
use smf_format::write::{BuildError, ModuleBuilder, SectionSpec, SymbolSpec};
use smf_format::{CompressionProblem, Dialect, ErrorKind, Module, RelocKind, SectionFlags, SectionType};
use smf_runtime::exec::ExecAllocator;
use smf_runtime::load::{LoadError, LoadOptions, LoadedModule};
use smf_tests::loading::call0;
use smf_tool::pack::Compression;

/// Two functions a page apart (`mov eax, 42; ret` at 0 and `mov eax, 7; ret` at 4096, int3
/// between), a page of rodata text, writable data with a pattern and a pointer to the text
/// (a data relocation); compressed with `method` if given.
fn module(dialect: Dialect, method: Option<Method>) -> Vec<u8> {
    let mut b = ModuleBuilder::new(dialect);
    let mut code = vec![0xCC; 4096 + 6];
    code[..6].copy_from_slice(&[0xB8, 42, 0, 0, 0, 0xC3]);
    code[4096..].copy_from_slice(&[0xB8, 7, 0, 0, 0, 0xC3]);
    b.add_code(b".text", &code);
    let text: Vec<u8> =
        b"the quick brown fox jumps over the lazy dog. ".iter().copied().cycle().take(4000).collect();
    let ro = b.add_section(SectionSpec::new(SectionType::RoData, b".rodata", SectionFlags::READ, text, 16));
    let mut data: Vec<u8> = (0..2048u32).map(|i| (i % 5) as u8).collect();
    data[..8].fill(0);
    let rw = b.add_section(SectionSpec::new(
        SectionType::Data,
        b".data",
        SectionFlags::READ | SectionFlags::WRITE,
        data,
        8,
    ));
    b.add_symbol(SymbolSpec::function(b"answer", 0, 6));
    b.add_symbol(SymbolSpec::function(b"seven", 4096, 6));
    let text = b.add_symbol(SymbolSpec::data(b"text", ro, 0, 4000));
    b.add_symbol(SymbolSpec::data(b"data", rw, 0, 2048));
    b.add_data_relocation(rw, 0, text, RelocKind::Abs64, 4);
    if let Some(method) = method {
        b.compress(method);
    }
    b.build().unwrap()
}

/// `len` bytes at `addr`, in a live module's image.
fn bytes_at(addr: usize, len: usize) -> Vec<u8> {
    // SAFETY: callers pass a loaded module's data symbols, mapped readable, and their sizes.
    unsafe { std::slice::from_raw_parts(addr as *const u8, len) }.to_vec()
}

fn load<'a>(exec: &'a ExecAllocator, file: &[u8]) -> Result<LoadedModule<'a>, LoadError> {
    LoadedModule::load(exec, file, &(), &LoadOptions::default())
}

#[test]
fn a_compressed_module_loads_and_runs_as_its_uncompressed_twin() {
    let exec = ExecAllocator::default();
    for (dialect, method) in
        [Dialect::S128, Dialect::R96].into_iter().flat_map(|d| [(d, Method::Lz4), (d, Method::Zstd)])
    {
        let (plain, packed) = (module(dialect, None), module(dialect, Some(method)));
        assert!(packed.len() * 4 < plain.len(), "{dialect}: {} against {} bytes", packed.len(), plain.len());
        let parsed = Module::parse(&packed).unwrap();
        assert_eq!(parsed.compression(), Some(method));
        let compressed: Vec<_> = parsed
            .sections()
            .filter(|s| s.flags.contains(SectionFlags::COMPRESSED))
            .map(|s| s.section_type)
            .collect();
        assert_eq!(compressed, [SectionType::Code, SectionType::RoData, SectionType::Data], "{dialect}");

        let (a, b) = (load(&exec, &plain).unwrap(), load(&exec, &packed).unwrap());
        assert_eq!((call0(&b, b"answer"), call0(&b, b"seven")), (42, 7), "{dialect}");
        for (name, len) in [("text", 4000), ("data", 2048)] {
            let (x, y) = (a.symbol(name.as_bytes()).unwrap(), b.symbol(name.as_bytes()).unwrap());
            let (plain_bytes, packed_bytes) = (bytes_at(x, len), bytes_at(y, len));
            // The pointer at the start of `data` differs by the images' places: compare past it,
            // and it against its own image's text.
            let skip = if name == "data" { 8 } else { 0 };
            assert_eq!(plain_bytes[skip..], packed_bytes[skip..], "{dialect}: {name}");
        }
        let data = b.symbol(b"data").unwrap();
        let pointer = u64::from_le_bytes(bytes_at(data, 8).try_into().unwrap());
        assert_eq!(
            pointer,
            b.symbol(b"text").unwrap() as u64 + 4,
            "{dialect}: relocated after decompression"
        );
    }
}

#[test]
fn r72_has_no_compression_byte_so_nothing_in_it_is_compressed() {
    let mut b = ModuleBuilder::new(Dialect::R72);
    b.add_code(b".text", &[0xC3; 64]);
    b.compress(Method::Lz4);
    assert_eq!(b.build(), Err(BuildError::NoCompressionByte { dialect: Dialect::R72 }));
}

/// The first compressed section of `file` and where its frame starts in the file.
fn first_compressed(file: &[u8]) -> (u32, usize) {
    let module = Module::parse(file).unwrap();
    let section = module.sections().find(|s| s.flags.contains(SectionFlags::COMPRESSED)).unwrap();
    (section.index, usize::try_from(section.file_offset).unwrap())
}

fn problem_of(result: Result<LoadedModule<'_>, LoadError>) -> (u32, CompressionProblem) {
    match result.expect_err("refused") {
        LoadError::Format(error) => match error.kind {
            ErrorKind::BadCompressedSection { index, problem } => (index, problem),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn frames_that_lie_about_their_length_are_refused_with_the_section() {
    let exec = ExecAllocator::default();
    let file = module(Dialect::R96, Some(Method::Lz4));
    let (index, at) = first_compressed(&file);
    let stated = u64::from_le_bytes(file[at..at + 8].try_into().unwrap());
    // Stating more than the section's virtual size: refused when the module is validated.
    let mut longer = file.clone();
    longer[at..at + 8].copy_from_slice(&(stated + 10_000).to_le_bytes());
    assert_eq!(
        problem_of(load(&exec, &longer)),
        (index, CompressionProblem::LongerThanVirtualSize { stated: stated + 10_000 })
    );
    // One byte less than the data makes (the virtual size allows it): refused while loading.
    let mut shorter = file.clone();
    shorter[at..at + 8].copy_from_slice(&(stated - 1).to_le_bytes());
    assert_eq!(problem_of(load(&exec, &shorter)), (index, CompressionProblem::LongerThanStated));
    let error = load(&exec, &shorter).err().unwrap();
    let LoadError::Format(format) = &error else { panic!("{error:?}") };
    assert_eq!(format.offset, at as u64, "the frame's place in the file");
    assert!(error.to_string().contains(&format!("section {index} decompresses to more bytes")), "{error}");
    // Corrupt data (an offset pointing before the output's start) is refused, never run.
    let mut corrupt = file.clone();
    for byte in &mut corrupt[at + 8..at + 24] {
        *byte = 0xFF;
    }
    assert!(load(&exec, &corrupt).is_err());
    assert_eq!(exec.stats().blocks_live, 0, "nothing left of the refused loads");
}

#[test]
fn compression_the_module_does_not_declare_or_may_not_use_is_refused() {
    // Flagged compressed with no method in the header.
    let mut b = ModuleBuilder::new(Dialect::S128);
    let mut code = SectionSpec::new(
        SectionType::Code,
        b".text",
        SectionFlags::READ | SectionFlags::EXEC,
        vec![0; 16],
        16,
    );
    code.flags |= SectionFlags::COMPRESSED;
    b.add_section(code);
    let file = b.build().unwrap();
    let error = Module::parse(&file).unwrap_err();
    assert_eq!(
        error.kind,
        ErrorKind::BadCompressedSection { index: 0, problem: CompressionProblem::NoMethod }
    );

    // A bss section and a constructor array may not be compressed, whatever the header says.
    for (section_type, flags) in [
        (SectionType::Bss, SectionFlags::READ | SectionFlags::WRITE),
        (SectionType::RoData, SectionFlags::READ | SectionFlags::CONSTRUCTORS),
    ] {
        let mut b = ModuleBuilder::new(Dialect::R96);
        b.add_code(b".text", &[0xC3; 16]);
        let frame = smf_format::compress::frame(Method::Lz4, &[0; 8]);
        let mut spec = SectionSpec::new(section_type, b".x", flags | SectionFlags::COMPRESSED, frame, 8);
        spec.virtual_size = 8;
        b.add_section(spec);
        b.header(|h| h.compression = Method::Lz4.wire());
        let file = b.build().unwrap();
        let error = Module::parse(&file).unwrap_err();
        assert_eq!(
            error.kind,
            ErrorKind::BadCompressedSection { index: 1, problem: CompressionProblem::NotCompressible },
            "{section_type:?}"
        );
    }

    // A method no loader knows.
    for method in [3, 0xFF] {
        let mut file = module(Dialect::R96, None);
        file[12] = method;
        let error = Module::parse(&file).unwrap_err();
        assert_eq!(error.kind, ErrorKind::UnsupportedCompression { method });
        assert_eq!(error.offset, 12);
    }
}

/// `tests/c/NAME` compiled in a scratch directory: (name, bytes).
fn compiled(name: &str) -> (String, Vec<u8>) {
    let dir = smf_tests::scratch("compressed", name);
    let object = smf_tests::compile_c(&dir, name);
    (object.display().to_string(), std::fs::read(&object).unwrap())
}

#[test]
fn real_c_packed_compressed_runs_as_packed_plain() {
    type Integers = extern "C" fn(i64, i64, i64) -> i64;
    let exec = ExecAllocator::default();
    let object = [compiled("tables.c")];
    let calls: [(&[u8], [i64; 3]); 5] = [
        (b"word_score", [3, 0, 0]),
        (b"word_initial", [12, 0, 0]),
        (b"operate", [2, 6, 7]),
        (b"operate", [3, -4, 9]),
        (b"shape_score", [1, 10, 0]),
    ];
    for dialect in [Dialect::S128, Dialect::R96] {
        let (plain, _) = smf_tool::pack::pack_with(&object, dialect, None).unwrap();
        let (packed, _) = smf_tool::pack::pack_with(&object, dialect, Some(Method::Lz4.into())).unwrap();
        let (zstd, _) = smf_tool::pack::pack_with(&object, dialect, Some(Method::Zstd.into())).unwrap();
        // libzstd at its highest level, as `smf pack --compress zstd:22` packs.
        let level_22 = Compression::from_name("zstd:22");
        let (libzstd, _) = smf_tool::pack::pack_with(&object, dialect, level_22).unwrap();
        assert_eq!(Module::parse(&packed).unwrap().compression(), Some(Method::Lz4));
        assert_eq!(Module::parse(&zstd).unwrap().compression(), Some(Method::Zstd));
        let header = *Module::parse(&libzstd).unwrap().header();
        assert_eq!((header.compression, header.compression_level), (1, 22), "{dialect}");
        assert!(
            libzstd.len() < zstd.len(),
            "{dialect}: level 22 {} bytes, ruzstd's fastest {}",
            libzstd.len(),
            zstd.len()
        );
        let results = |file: &[u8]| -> Vec<i64> {
            let module = load(&exec, file).unwrap();
            calls
                .iter()
                .map(|(name, [a, b, c])| {
                    // SAFETY: each function takes up to three integers and returns one.
                    let f = unsafe { module.function::<Integers>(name) }.unwrap();
                    f.get()(*a, *b, *c)
                })
                .collect()
        };
        assert_eq!(results(&packed), results(&plain), "{dialect}");
        assert_eq!(results(&zstd), results(&plain), "{dialect} zstd");
        assert_eq!(results(&libzstd), results(&plain), "{dialect} zstd:22");
        assert_eq!(results(&plain)[2], 42, "{dialect}: operate(2, 6, 7) multiplies");
    }
    let refused = smf_tool::pack::pack_with(&object, Dialect::R72, Some(Method::Lz4.into())).unwrap_err();
    assert!(refused.to_string().contains("R72 has no compression byte"), "{refused}");
}

#[test]
fn the_compressed_sample_runs_with_its_data_relocated() {
    let exec = ExecAllocator::default();
    for dialect in [Dialect::S128, Dialect::R96] {
        let file = smf_format::write::samples::compressed(dialect);
        let module = load(&exec, &file).unwrap();
        assert_eq!((call0(&module, b"main"), call0(&module, b"seven")), (42, 7), "{dialect}");
        let (greeting, text) = (module.symbol(b"greeting").unwrap(), module.symbol(b"text").unwrap());
        assert_eq!(bytes_at(greeting, 8), (text as u64).to_le_bytes(), "{dialect}");
        assert_eq!(bytes_at(text, 6), b"hello\0", "{dialect}");
    }
    assert!(smf_format::write::samples::compressed(Dialect::R72).is_empty());
}

#[test]
fn a_writers_own_encoder_writes_its_level_and_its_frames_read_back() {
    fn lz4(bytes: &[u8], _level: u8) -> Vec<u8> {
        smf_format::compress::frame(Method::Lz4, bytes)[smf_format::compress::FRAME_HEADER..].to_vec()
    }
    fn expanding(bytes: &[u8], _level: u8) -> Vec<u8> {
        vec![0; bytes.len() * 2]
    }
    let code = [0x90u8; 4096];
    let build = |configure: &dyn Fn(&mut ModuleBuilder)| {
        let mut builder = ModuleBuilder::new(Dialect::S128);
        builder.add_code(b".text", &code);
        configure(&mut builder);
        builder.build().unwrap()
    };
    let file = build(&|b| {
        b.compress_with(Method::Lz4, 7, lz4);
    });
    let module = Module::parse(&file).unwrap();
    assert_eq!((module.header().compression, module.header().compression_level), (2, 7));
    let text = module.sections().next().unwrap();
    let smf_format::compress::Payload::Compressed(frame) = module.payload(&text) else {
        panic!("the code is not compressed");
    };
    let mut place = vec![0; code.len()];
    frame.decompress_into(&mut place).unwrap();
    assert_eq!(place, code);
    // An encoder making more than it was given: the section stays as it is.
    let file = build(&|b| {
        b.compress_with(Method::Lz4, 7, expanding);
    });
    let module = Module::parse(&file).unwrap();
    let text = module.sections().next().unwrap();
    assert!(!text.flags.contains(SectionFlags::COMPRESSED));
    assert_eq!(module.payload(&text), smf_format::compress::Payload::Raw(&code[..]));
    // The core's own encoder keeps the level the header was given.
    let file = build(&|b| {
        b.header(|h| h.compression_level = 9).compress(Method::Lz4);
    });
    assert_eq!(Module::parse(&file).unwrap().header().compression_level, 9);
}
