//! Loading and linking from Rust: every dialect runs, relocations of every x86-64 kind run,
//! imports resolve across modules and dialects, symbols of every kind interleaved keep their own
//! addresses, failures name the problem, 2,000 load/release cycles end where they started, no
//! mapping is ever rwx. (Malformed inputs are loaded by the hostile-input sweep in
//! `malformed.rs`.)

#![cfg(target_arch = "x86_64")]
// Test values are small; calling loaded code goes through the (unsafe) typed lookup.
#![allow(clippy::cast_possible_truncation, unsafe_code)]

use std::sync::Arc;

use smf_format::write::{samples, ModuleBuilder, SectionSpec, SymbolSpec};
use smf_format::{
    Binding, Dialect, ErrorKind, RelocKind, SectionFlags, SectionType, SymbolFlags, SymbolKind,
};
use smf_runtime::exec::ExecAllocator;
use smf_runtime::load::reloc::RelocError;
use smf_runtime::load::{
    Chain, LoadError, LoadOptions, LoadedModule, ReadOnlyData, Resolved, Resolver, TableResolver,
};
use smf_tests::linking::{application, library, linked_application};
use smf_tests::{assert_no_rwx, mappings_within};

use smf_tests::loading::{call0, leak_allocator, load, Modules};

#[test]
fn the_reference_modules_of_every_dialect_return_42() {
    let exec = ExecAllocator::default();
    for dialect in Dialect::ALL {
        let module = load(&exec, &samples::return_42(dialect), &()).unwrap();
        assert_eq!(module.dialect(), dialect);
        let entry = module.entry().expect("executable");
        assert_eq!(call0(&module, b"main"), 42, "{dialect}");
        assert_eq!(module.symbol(b"main"), Some(entry));
        assert_no_rwx("return 42 loaded");
    }
}

#[test]
fn a_loaded_module_tells_its_header_s_bytes_and_its_size_and_describes_itself() {
    let exec = ExecAllocator::default();
    for dialect in [Dialect::S128, Dialect::R96, Dialect::R72] {
        // Of either architecture (loaded, never run: no architecture required).
        let options = LoadOptions { require_arch: None, run_constructors: false, ..LoadOptions::default() };
        for arch in [0, 1] {
            let mut b = smf_tests::samples_builder(dialect);
            b.header(|h| h.arch = arch);
            let module = LoadedModule::load(&exec, &b.build().unwrap(), &(), &options).unwrap();
            assert_eq!(module.arch(), arch, "{dialect}");
        }
        let mut b = smf_tests::samples_builder(dialect);
        b.header(|h| {
            h.arch = smf_runtime::load::HOST_ARCH;
            h.platform = 7;
        });
        let module = LoadedModule::load(&exec, &b.build().unwrap(), &(), &options).unwrap();
        assert_eq!(module.platform(), 7, "{dialect}");
        // The only module of its allocator: what it occupies is all the allocator has handed out.
        assert_eq!(module.image_bytes(), exec.stats().bytes_live, "{dialect}");
        assert!(module.image_bytes() >= exec.page_size(), "{dialect}: its code takes a page at least");
        let described = format!("{module:?}");
        assert!(
            described.starts_with(&format!("LoadedModule {{ dialect: {dialect:?}, code: 0x"))
                && described.contains(", symbols: 1, deps: 0"),
            "{described}"
        );
    }
}

#[test]
fn every_relocation_kind_runs_across_modules_and_dialects() {
    let exec = leak_allocator();
    for lib_dialect in Dialect::ALL {
        for app_dialect in Dialect::ALL {
            let lib = Arc::new(load(exec, &library(lib_dialect), &()).unwrap());
            let table: &[(&[u8], usize)] = &[(b"small_constant", 0x1234_5678)];
            let resolver = Chain(Modules(vec![lib.clone()]), TableResolver(table));
            let app = load(exec, &application(app_dialect), &resolver)
                .unwrap_or_else(|e| panic!("{lib_dialect} -> {app_dialect}: {e}"));
            let f = |name: &str| app.symbol(name.as_bytes()).unwrap();
            let label = format!("{lib_dialect} -> {app_dialect}");
            assert_eq!(call0(&app, b"local_counter"), 11, "{label}: pc32");
            assert_eq!(call0(&app, b"call_five"), 5, "{label}: plt32 across modules");
            assert_eq!(call0(&app, b"got_counter"), 7, "{label}: got_pc32 across modules");
            assert_eq!(call0(&app, b"addr_of_local") as usize, f("local_data"), "{label}: abs64");
            if app_dialect == Dialect::S128 {
                assert_eq!(call0(&app, b"small"), 0x1234_5678, "{label}: abs32");
            }
            assert_eq!(app.entry(), Some(f("call_five")));
            assert_eq!(app.dependencies().len(), 1);
            // The library stays alive while the application links to it.
            drop(lib);
            assert_eq!(call0(&app, b"call_five"), 5, "{label}: after the library handle is gone");
            assert_no_rwx(&label);
        }
    }
}

/// A module with code, data, rodata and bss.
fn module_with_every_kind_of_data() -> Vec<u8> {
    module_with_every_kind_of_data_and_bss(100_000)
}

/// [`module_with_every_kind_of_data`] with `bss` bytes of bss (at least 8), `z` its last 8.
fn module_with_every_kind_of_data_and_bss(bss: u64) -> Vec<u8> {
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &samples::RETURN_42);
    let data = b.add_data(b".data", &[1; 16]);
    let rodata = b.add_rodata(b".rodata", b"constant");
    let bss_section = b.add_bss(b".bss", bss);
    b.add_symbol(SymbolSpec::function(b"main", 0, 6));
    b.add_symbol(SymbolSpec::data(b"d", data, 0, 16));
    b.add_symbol(SymbolSpec::data(b"r", rodata, 0, 8));
    b.add_symbol(SymbolSpec::data(b"z", bss_section, bss - 8, 8));
    b.build().unwrap()
}

#[test]
fn data_is_writable_rodata_read_only_and_code_executable() {
    use smf_runtime::sys::Protection;
    let file = module_with_every_kind_of_data();
    let mut bytes_live = Vec::new();
    for (read_only_data, rodata_protection, seal_changes) in [
        (ReadOnlyData::WithCode, Protection::ReadExec, 1),
        (ReadOnlyData::NotExecutable, Protection::Read, 2),
    ] {
        let exec = ExecAllocator::default();
        let options = LoadOptions { read_only_data, ..LoadOptions::default() };
        // The first load reserves the allocator's region; the second shows what a load costs.
        drop(LoadedModule::load(&exec, &file, &(), &options).unwrap());
        let changes_before = exec.stats().protection_changes;
        let module = LoadedModule::load(&exec, &file, &(), &options).unwrap();
        assert_eq!(
            exec.stats().protection_changes - changes_before,
            seal_changes,
            "{read_only_data:?}: protection changes to seal the module"
        );
        let addr = |n: &[u8]| module.symbol(n).unwrap();
        assert_eq!(exec.protection_at(addr(b"main")), Some(Protection::ReadExec));
        assert_eq!(exec.protection_at(addr(b"d")), Some(Protection::ReadWrite));
        assert_eq!(exec.protection_at(addr(b"r")), Some(rodata_protection), "{read_only_data:?}");
        assert_eq!(exec.protection_at(addr(b"z")), Some(Protection::ReadWrite));
        // SAFETY: the symbols are live data of the loaded module, of the sizes declared.
        unsafe {
            assert_eq!(std::slice::from_raw_parts(addr(b"r") as *const u8, 8), b"constant");
            assert_eq!(*(addr(b"z") as *const u64), 0, "bss is zeroed");
            *(addr(b"d") as *mut u8) = 9;
            assert_eq!(*(addr(b"d") as *const u8), 9);
        }
        let (code, _) = module.code();
        let gap = addr(b"d").abs_diff(code);
        assert!(gap < 1 << 31, "data within reach of 32-bit PC-relative code");
        if read_only_data == ReadOnlyData::WithCode {
            assert_eq!(addr(b"r"), code + 8, "rodata follows the 6 bytes of code at its alignment");
        }
        bytes_live.push(exec.stats().bytes_live);
    }
    let page = smf_runtime::sys::page_size();
    assert_eq!(bytes_live[1] - bytes_live[0], page, "rodata with the code takes no page of its own");
}

#[test]
fn failures_name_the_problem() {
    let exec = ExecAllocator::default();
    let app = application(Dialect::R96);
    let error = load(&exec, &app, &()).unwrap_err();
    assert_eq!(
        error,
        LoadError::Unresolved {
            names: vec!["five".into(), "counter".into()],
            count: 2,
            searched: "nowhere (no resolver)".into()
        }
    );
    assert_eq!(
        error.to_string(),
        "2 unresolved imports: `five`, `counter` (looked in: nowhere (no resolver)); provide them as host \
         symbols or through a resolver, or load modules exporting them first"
    );
    // One name alone reads as one.
    let one = LoadError::Unresolved { names: vec!["five".into()], count: 1, searched: "a resolver".into() };
    assert_eq!(
        one.to_string(),
        "unresolved import `five` (looked in: a resolver); provide it as a host symbol or through a \
         resolver, or load a module exporting it first"
    );

    // A weak import may stay unresolved: it resolves to 0.
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &samples::RETURN_42);
    b.add_symbol(SymbolSpec::function(b"main", 0, 6));
    b.add_symbol(SymbolSpec::import(b"optional").with_binding(Binding::Weak));
    let module = load(&exec, &b.build().unwrap(), &()).unwrap();
    assert_eq!(module.symbols().iter().nth(1).map(|s| s.addr), Some(0));

    // abs32 against a symbol above 4 GiB is refused, not truncated.
    let table: &[(&[u8], usize)] =
        &[(b"small_constant", 0x1_0000_0000), (b"five", 0x1000), (b"counter", 0x2000)];
    let err = load(&exec, &application(Dialect::S128), &TableResolver(table)).unwrap_err();
    assert!(
        matches!(
            err,
            LoadError::Relocation { kind: RelocKind::Abs32, error: RelocError::OutOfRange { .. }, .. }
        ),
        "{err}"
    );

    // A module for another architecture.
    let mut arm = samples::return_42(Dialect::R96);
    arm[7] = 1;
    assert_eq!(load(&exec, &arm, &()).unwrap_err(), LoadError::WrongArch { module: 1, host: 0 });
    assert_eq!(exec.stats().blocks_live, 1, "only the weak-import module is live");
}

/// One S128 relocation entry as the file holds it (offset, symbol, wire kind, addend).
fn relocation_entry(offset: u64, symbol: u32, kind: RelocKind, addend: i64) -> Vec<u8> {
    let mut entry = vec![0u8; 24];
    entry[..8].copy_from_slice(&offset.to_le_bytes());
    entry[8..12].copy_from_slice(&symbol.to_le_bytes());
    entry[12] = kind.to_wire(Dialect::S128).unwrap();
    entry[16..].copy_from_slice(&addend.to_le_bytes());
    entry
}

#[test]
fn relocation_failures_name_the_relocation_its_symbol_and_the_value() {
    // Two relocation sections: the failing relocation is counted across both (index 3 is the
    // second section's second entry).
    let exec = ExecAllocator::default();
    let module = |(offset, symbol, kind, addend): (u64, u32, RelocKind, i64)| {
        let mut b = ModuleBuilder::new(Dialect::S128);
        let mut code = samples::RETURN_42.to_vec();
        code.resize(64, 0xCC);
        b.add_code(b".text", &code);
        b.add_symbol(SymbolSpec::function(b"main", 0, 6)); // 0
        b.add_symbol(SymbolSpec::import(b"far_away")); // 1
                                                       // (Local: in S128 a global entry with value and size 0 is an import.)
        b.add_symbol(SymbolSpec::new(b"SomeType", SymbolKind::Type, 0, 0).with_binding(Binding::Local)); // 2
        let mut first = relocation_entry(16, 0, RelocKind::Abs64, 0);
        first.extend(relocation_entry(24, 0, RelocKind::Pc32, 0));
        b.add_section(SectionSpec::new(
            SectionType::Relocations,
            b".rela.first",
            SectionFlags::empty(),
            first,
            8,
        ));
        b.add_relocation(32, 0, RelocKind::Abs64, 0);
        b.add_relocation(offset, symbol, kind, addend);
        b.build().unwrap()
    };
    let table: &[(&[u8], usize)] = &[(b"far_away", 0x1_2345_6789)];
    let resolver = TableResolver(table);

    let abs32 = module((48, 1, RelocKind::Abs32, 7));
    let err = load(&exec, &abs32, &resolver).unwrap_err();
    let value = 0x1_2345_6789i128 + 7;
    assert_eq!(
        err,
        LoadError::Relocation {
            relocation: 3,
            kind: RelocKind::Abs32,
            name: "far_away".into(),
            error: RelocError::OutOfRange { value },
        }
    );
    assert_eq!(
        err.to_string(),
        format!("relocation 3 (abs32 against `far_away`): value {value} does not fit the field")
    );

    // A pc32 too far: the value is the exact distance, not a wrapped one.
    let far = module((40, 1, RelocKind::Pc32, -4));
    match load(&exec, &far, &resolver).unwrap_err() {
        LoadError::Relocation {
            relocation: 3,
            kind: RelocKind::Pc32,
            name,
            error: RelocError::OutOfRange { value },
        } => {
            assert_eq!(name, "far_away");
            assert!(i32::try_from(value).is_err(), "{value}");
            // S + A - P, with P the patched bytes' address (in the code, past the first 40 bytes).
            let place = 0x1_2345_6789 - 4 - value;
            assert!(place > 0x1_0000 && place % 8 == 40 % 8, "{place:#x}");
        }
        other => panic!("{other}"),
    }

    // A relocation against a symbol without an address.
    let no_address = module((48, 2, RelocKind::Abs64, 0));
    let err = load(&exec, &no_address, &resolver).unwrap_err();
    assert_eq!(err, LoadError::NoAddress { relocation: 3, name: "SomeType".into() });
    assert_eq!(err.to_string(), "relocation 3 refers to `SomeType`, which has no address");

    // A relocation that breaks a format rule: the position the format error gives is the
    // entry's in the file.
    let outside = module((62, 0, RelocKind::Abs64, 0));
    match load(&exec, &outside, &resolver).unwrap_err() {
        LoadError::Format(e) => {
            assert_eq!(e.kind, ErrorKind::RelocationOutsideCode { relocation: 3 });
            let at = usize::try_from(e.offset).unwrap();
            assert_eq!(outside[at..at + 8], 62u64.to_le_bytes(), "the offset points at the entry");
        }
        other => panic!("{other}"),
    }
    assert_eq!(exec.stats().blocks_live, 0, "every failed load freed what it mapped");

    // And with that entry fixed, the same module loads and runs.
    let fine = module((48, 0, RelocKind::Abs64, 0));
    let loaded = load(&exec, &fine, &resolver).unwrap();
    assert_eq!(call0(&loaded, b"main"), 42);
}

#[test]
fn a_loaded_module_hands_out_the_template_entries_its_file_holds() {
    use smf_format::template::TemplateKind;
    use smf_format::write::TemplateSpec;
    let spec = |name: &[u8], params: &[&[u8]], body: &[u8]| TemplateSpec {
        kind: TemplateKind::Function,
        name: name.to_vec(),
        params: params.iter().map(|p| p.to_vec()).collect(),
        body: body.to_vec(),
    };
    let exec = ExecAllocator::default();
    for dialect in [Dialect::S128, Dialect::R96] {
        let mut b = ModuleBuilder::new(dialect);
        b.add_code(b".text", &samples::RETURN_42);
        b.add_symbol(SymbolSpec::function(b"main", 0, 6));
        // Entries a, (one no symbol points at), b, c; their symbols in the order c, a, b, so that
        // each entry's end (the next entry a template symbol points at) is not the next symbol's.
        let a = b.add_template(spec(b"first", &[b"T"], b"body of first"));
        b.add_template(spec(b"unnamed", &[], b"part of first's extent"));
        let second = b.add_template(spec(b"second", &[b"K", b"V"], b"body of second"));
        let third = b.add_template(spec(b"third", &[b"T"], b"body of third"));
        for (name, offset) in [(&b"third"[..], third), (b"first", a), (b"second", second)] {
            b.add_symbol(SymbolSpec {
                flags: SymbolFlags::TEMPLATE,
                template_param_count: 1,
                template_offset: offset,
                ..SymbolSpec::new(name, SymbolKind::Function, 0, 0)
            });
        }
        let file = b.build().unwrap();
        let module = smf_format::Module::parse(&file).unwrap();
        let entries = module.template_entries().unwrap();
        assert_eq!(entries.len(), 3, "{dialect}");
        let loaded = load(&exec, &file, &()).unwrap();
        for (symbol, entry) in &entries {
            assert_eq!(loaded.template(symbol.name), Some(entry.bytes), "{dialect}");
        }
        let first = loaded.template(b"first").unwrap();
        assert!(first.ends_with(b"part of first's extent"), "{dialect}: runs to the next symbol's entry");
        assert!(
            loaded.template(b"third").unwrap().ends_with(b"body of third"),
            "{dialect}: the last runs to the end"
        );
        assert_eq!(loaded.template(b"main"), None, "{dialect}: not a template");
        assert_eq!(loaded.template(b"unnamed"), None, "{dialect}: no symbol points at it");
        assert_eq!(loaded.template(b"fourth"), None, "{dialect}");
    }
}

#[test]
fn template_entries_without_symbols_are_looked_up_by_their_names() {
    // No template symbols: the section is exactly `count` short-form entries (kind, name, no
    // parameters), each found by its name whatever its place among the others' hashes.
    // A module of `main` and the template-code section of `count` entries `entries` (their
    // bytes back to back).
    let module = |count: u32, entries: &[u8]| {
        let mut section = b"GTPL".to_vec();
        section.extend_from_slice(&1u16.to_le_bytes());
        section.extend_from_slice(&count.to_le_bytes());
        section.extend_from_slice(entries);
        let mut b = ModuleBuilder::new(Dialect::R96);
        b.add_code(b".text", &samples::RETURN_42);
        b.add_symbol(SymbolSpec::function(b"main", 0, 6));
        let flags = SectionFlags::READ;
        b.add_section(SectionSpec::new(SectionType::TemplateCode, b"template_code", flags, section, 1));
        b.build().unwrap()
    };
    let names: Vec<String> = (0..40).map(|i| format!("generic_{i}")).collect();
    let entries: Vec<Vec<u8>> = names
        .iter()
        .map(|name| {
            let mut entry = vec![0]; // a function
            entry.extend_from_slice(&(name.len() as u32).to_le_bytes());
            entry.extend_from_slice(name.as_bytes());
            entry.push(0); // no parameters
            entry
        })
        .collect();
    let exec = ExecAllocator::default();
    let loaded = load(&exec, &module(names.len() as u32, &entries.concat()), &()).unwrap();
    for (name, entry) in names.iter().zip(&entries) {
        assert_eq!(loaded.template(name.as_bytes()), Some(&entry[..]), "{name}");
    }
    assert_eq!(loaded.template(b"generic_40"), None);

    // One entry in full form (a parameter, a body): the section's one record, found by name.
    let mut entry = vec![0, 6, 0, 0, 0];
    entry.extend_from_slice(b"single");
    entry.extend_from_slice(&[1, 1, 0, 0, 0, b'T']);
    entry.extend_from_slice(b"a body");
    let loaded = load(&exec, &module(1, &entry), &()).unwrap();
    assert_eq!(loaded.template(b"single"), Some(&entry[..]));
    assert_eq!(loaded.template(b"T"), None);
}

#[test]
fn branches_to_imports_run_through_stubs() {
    let exec = ExecAllocator::default();
    let lib = leak_allocator();
    let five = Arc::new(load(lib, &library(Dialect::R96), &()).unwrap());
    let options = LoadOptions { force_stubs: true, ..LoadOptions::default() };
    for dialect in [Dialect::R96, Dialect::R72] {
        let app =
            LoadedModule::load(&exec, &application(dialect), &Modules(vec![five.clone()]), &options).unwrap();
        let call_five = app.symbol(b"call_five").unwrap();
        // The call's rel32 now lands on the stub, past the module's code, not on `five`.
        // SAFETY: reading the 4-byte displacement of the call instruction in sealed code.
        let rel = unsafe { std::ptr::read_unaligned((call_five + 5) as *const i32) };
        let target = (call_five + 9) as isize + rel as isize;
        let (code, code_size) = app.code();
        assert!(target as usize >= code + code_size, "call goes to a stub after the code");
        assert_ne!(target as usize, five.symbol(b"five").unwrap());
        assert_eq!(call0(&app, b"call_five"), 5, "{dialect}: through the stub");

        // Without forcing, the import is within reach: the call goes straight to it and no
        // stub is written (the room reserved for one stays zero).
        let direct = LoadedModule::load(
            &exec,
            &application(dialect),
            &Modules(vec![five.clone()]),
            &LoadOptions::default(),
        );
        let direct = direct.unwrap();
        let call_five = direct.symbol(b"call_five").unwrap();
        // SAFETY: as above.
        let rel = unsafe { std::ptr::read_unaligned((call_five + 5) as *const i32) };
        let (code, code_size) = direct.code();
        let distance = five.symbol(b"five").unwrap() as i64 - (call_five + 9) as i64;
        // Both allocators' regions come from the same mmap area, well within 2 GiB.
        let within_reach = i32::try_from(distance).expect("the library is within a call's reach");
        assert_eq!(rel, within_reach, "{dialect}: a direct call");
        let stub_room = code_size.next_multiple_of(16);
        // SAFETY: the 16 bytes after the code are the module's own stub room, in its sealed,
        // readable code block.
        let room = unsafe { std::slice::from_raw_parts((code + stub_room) as *const u8, 16) };
        assert_eq!(room, &[0u8; 16], "{dialect}: no stub written");
        assert_eq!(call0(&direct, b"call_five"), 5, "{dialect}: direct");
    }
}

#[test]
fn a_linked_module_reaches_its_imports_through_the_stubs_and_slots_the_layout_pins() {
    let exec = ExecAllocator::default();
    let lib = leak_allocator();
    let five = Arc::new(load(lib, &library(Dialect::R96), &()).unwrap());
    let bytes = linked_application(Dialect::R96);
    let module = smf_format::Module::parse(&bytes).unwrap();
    assert!(module.header().flags.contains(smf_format::ModuleFlags::LINKED_IMPORTS));
    let kinds: Vec<RelocKind> = module.relocations().map(|r| r.kind).collect();
    assert!(!kinds.iter().any(|k| matches!(k, RelocKind::Plt32 | RelocKind::GotPc32)), "{kinds:?}");
    // Whatever is asked of the read-only data, the GOT lies where the code reaches it.
    for read_only_data in [ReadOnlyData::WithCode, ReadOnlyData::NotExecutable] {
        let options = LoadOptions { read_only_data, ..LoadOptions::default() };
        let app = LoadedModule::load(&exec, &bytes, &Modules(vec![five.clone()]), &options).unwrap();
        let call_five = app.symbol(b"call_five").unwrap();
        // SAFETY: reading the 4-byte displacement of the call instruction in sealed code.
        let rel = unsafe { std::ptr::read_unaligned((call_five + 5) as *const i32) };
        let target = (call_five + 9) as isize + rel as isize;
        let (code, code_size) = app.code();
        assert_eq!(target as usize, code + code_size.next_multiple_of(16), "the first import's stub");
        assert_eq!(call0(&app, b"call_five"), 5, "through the stub");
        assert_eq!(call0(&app, b"got_counter"), 7, "through the GOT slot");
        assert_eq!(call0(&app, b"local_counter"), 11);
    }
}

#[test]
fn a_loaded_module_keeps_its_function_names_apart_from_its_symbols() {
    // `main` and the static `helper`, moved to the function names; `main` returns 42.
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b".text", &[&samples::RETURN_42[..], &[0xCC; 10]].concat());
    b.add_symbol(SymbolSpec::function(b"main", 0, 6));
    b.add_symbol(SymbolSpec::function(b"helper", 8, 4).with_binding(Binding::Local));
    assert_eq!(b.move_local_functions_to_names(), 1);
    let bytes = b.build().unwrap();
    let module = load(leak_allocator(), &bytes, &()).unwrap();
    assert_eq!(module.symbols().len(), 1, "main alone is linked");
    assert_eq!(module.symbol(b"helper"), None);
    let named: Vec<_> = module.function_names().iter().map(|f| (f.offset, f.size, f.name_with_nul)).collect();
    assert_eq!(named, [(8, 4, &b"helper\0"[..])]);
    assert_eq!(call0(&module, b"main"), 42);
    // A module without them has none.
    let plain = load(leak_allocator(), &samples::return_42(Dialect::S128), &()).unwrap();
    assert!(plain.function_names().is_empty());
    // Broken records refuse the load, naming the section and the record.
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b".text", &samples::RETURN_42);
    b.add_symbol(SymbolSpec::function(b"main", 0, 6));
    let functions: [(u64, u64, &[u8]); 1] = [(4, 8, b"past")];
    let at = b.add_section(SectionSpec::function_names(functions.into_iter()).unwrap());
    match load(leak_allocator(), &b.build().unwrap(), &()) {
        Err(LoadError::Format(e)) => assert_eq!(
            e.kind,
            ErrorKind::BadFunctionNames {
                index: at,
                problem: smf_format::FunctionNamesProblem::OutsideCode { record: 0 }
            }
        ),
        other => panic!("{other:?}"),
    }
}

// x86-64 only: qemu-user shows its host's pagemap.
#[cfg(target_arch = "x86_64")]
#[test]
fn a_huge_virtual_size_commits_only_the_bytes_the_module_has() {
    use smf_format::write::SectionSpec;
    use smf_format::SectionType;
    // 227 bytes of file whose code is 500 MiB in memory: the zero tail is left to zero pages,
    // neither written nor faulted in (it used to commit ~517 MB per load).
    let exec = ExecAllocator::default();
    let page = exec.page_size();
    // Dirty the recycled pages first: a recycled page in the tail must still read as zero.
    let dirty = {
        let mut b = ModuleBuilder::new(Dialect::R96);
        b.add_code(b"code", &vec![0xCC; 64 * page]);
        b.build().unwrap()
    };
    drop(load(&exec, &dirty, &()).unwrap());
    let huge = 500u64 << 20;
    let mut b = ModuleBuilder::new(Dialect::S128);
    let flags = SectionFlags::READ | SectionFlags::EXEC;
    let mut code = SectionSpec::new(SectionType::Code, b"code", flags, samples::RETURN_42.to_vec(), 16);
    code.virtual_size = huge;
    b.add_section(code);
    b.add_symbol(SymbolSpec::function(b"main", 0, samples::RETURN_42.len() as u64));
    let file = b.build().unwrap();
    let module = load(&exec, &file, &()).unwrap();
    assert_eq!(call0(&module, b"main"), 42);
    let (start, len) = module.code();
    assert_eq!(len as u64, huge);
    // SAFETY: the module's code is sealed read-execute (readable) and lives while `module` does.
    let code = unsafe { std::slice::from_raw_parts(start as *const u8, len) };
    let sampled: Vec<usize> = (samples::RETURN_42.len()..len).step_by(len / 997).collect();
    assert!(sampled.iter().all(|&at| code[at] == 0), "the tail reads as zero");
    // Past the recycled pages (at most 2 MiB), only the pages just read are resident.
    let read: std::collections::HashSet<usize> = sampled.iter().map(|at| (start + at) / page).collect();
    let committed = (start + (4 << 20)..start + len)
        .step_by(61 * page)
        .filter(|&at| !read.contains(&(at / page)) && smf_tests::resident(at, page))
        .count();
    assert_eq!(committed, 0, "pages of the zero tail were committed");
}

/// A resolver that answers from a table and logs every question.
struct Logging<'t> {
    table: TableResolver<'t>,
    asked: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl Resolver for Logging<'_> {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        self.asked.lock().unwrap().push(name.to_vec());
        self.table.resolve(name)
    }
}

#[test]
fn the_resolver_is_asked_each_name_once_per_load() {
    let exec = ExecAllocator::default();
    for dialect in Dialect::ALL {
        // Imports `first`, `second` and `first` again (two symbols of one name), then `missing`.
        let mut b = ModuleBuilder::new(dialect);
        b.add_code(b".text", &samples::RETURN_42);
        b.add_symbol(SymbolSpec::function(b"main", 0, 6));
        for name in [&b"first"[..], b"second", b"first", b"missing"] {
            b.add_symbol(SymbolSpec::import(name));
        }
        let file = b.build().unwrap();
        let table = [(&b"first"[..], 0x1000), (&b"second"[..], 0x2000)];
        // Imported twice, `first` is asked once; `missing`, unresolved, too.
        let logging = Logging { table: TableResolver(&table), asked: Default::default() };
        let error = load(&exec, &file, &logging).unwrap_err();
        // The logging resolver says nothing of where it looks: the trait's default.
        assert_eq!(
            error,
            LoadError::Unresolved { names: vec!["missing".into()], count: 1, searched: "a resolver".into() }
        );
        let asked = logging.asked.into_inner().unwrap();
        assert_eq!(asked, [&b"first"[..], b"second", b"missing"], "{dialect:?}");
        // And a load that succeeds asks each once too.
        let table = [(&b"first"[..], 0x1000), (&b"second"[..], 0x2000), (&b"missing"[..], 0x3000)];
        let logging = Logging { table: TableResolver(&table), asked: Default::default() };
        let module = load(&exec, &file, &logging).unwrap();
        assert_eq!(call0(&module, b"main"), 42);
        assert_eq!(logging.asked.into_inner().unwrap().len(), 3, "{dialect:?}");
    }
}

#[test]
fn two_thousand_load_release_cycles_end_where_they_started() {
    // It counts the process's mappings: alone, so no other test maps beside it.
    if !smf_tests::alone("two_thousand_load_release_cycles_end_where_they_started") {
        return;
    }
    let exec = ExecAllocator::default();
    let lib = leak_allocator();
    let five = Arc::new(load(lib, &library(Dialect::S128), &()).unwrap());
    let app = application(Dialect::S128);
    let table: &[(&[u8], usize)] = &[(b"small_constant", 77)];
    let resolver = Chain(Modules(vec![five]), TableResolver(table));
    // Warm up: the first load reserves the region.
    drop(load(&exec, &app, &resolver).unwrap());
    let start = (mappings_within(&exec.regions()), exec.stats().regions);
    for i in 0..2000 {
        let module = load(&exec, &app, &resolver).unwrap();
        assert_eq!(call0(&module, b"call_five"), 5);
        if i % 500 == 0 {
            assert_no_rwx("cycles");
        }
    }
    let stats = exec.stats();
    assert_eq!((stats.blocks_live, stats.pages_open, stats.pages_sealed), (0, 0, 0));
    assert_eq!((mappings_within(&exec.regions()), stats.regions), start);
}

#[test]
fn reloading_a_changed_file_gives_a_new_module_and_the_old_one_stays_valid() {
    use smf::loader::{load, LoadRequest, Registry};
    let dir = smf_tests::scratch("load", "reload");
    let path = dir.join("module.smf");
    let version = |value: u8| {
        let mut b = ModuleBuilder::new(Dialect::S128);
        b.add_code(b"code", &[0xB8, value, 0, 0, 0, 0xC3]);
        b.add_symbol(SymbolSpec::function(b"version", 0, 6));
        b.build().unwrap()
    };
    std::fs::write(&path, version(1)).unwrap();
    let registry = Registry::new();
    let old = load(&LoadRequest::path(&path).resolver_only(&registry)).unwrap();
    std::fs::write(&path, version(2)).unwrap();
    let new = load(&LoadRequest::path(&path).resolver_only(&registry)).unwrap();
    assert!(!Arc::ptr_eq(&old, &new));
    assert_ne!(old.symbol(b"version"), new.symbol(b"version"), "a new image");
    assert_eq!(call0(new.loaded(), b"version"), 2);
    assert_eq!(call0(old.loaded(), b"version"), 1, "the old module is untouched");
    assert_eq!(old.path(), Some(path.as_path()));
    drop(old);
    assert_eq!(call0(new.loaded(), b"version"), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn files_loaded_one_after_another_never_see_each_others_bytes() {
    use smf::loader::{load, LoadRequest, ModuleError, Registry};
    // load_path reads into a buffer it keeps per thread: a short file read after a long one must
    // be judged on its own bytes only.
    let dir = smf_tests::scratch("load", "buffer");
    let module = |value: u8, padding: usize| {
        let mut b = ModuleBuilder::new(Dialect::S128);
        let mut code = vec![0xB8, value, 0, 0, 0, 0xC3];
        code.resize(6 + padding, 0xCC);
        b.add_code(b"code", &code);
        b.add_symbol(SymbolSpec::function(b"value", 0, 6));
        b.build().unwrap()
    };
    let (long, short) = (module(1, 4096), module(2, 0));
    let (long_path, short_path, cut_path) =
        (dir.join("long.smf"), dir.join("short.smf"), dir.join("cut.smf"));
    std::fs::write(&long_path, &long).unwrap();
    std::fs::write(&short_path, &short).unwrap();
    // The long module cut to the short one's length: its own bytes are not a module.
    std::fs::write(&cut_path, &long[..short.len()]).unwrap();
    let registry = Registry::new();
    let first = load(&LoadRequest::path(&long_path).resolver_only(&registry)).unwrap();
    let second = load(&LoadRequest::path(&short_path).resolver_only(&registry)).unwrap();
    assert_eq!((call0(first.loaded(), b"value"), call0(second.loaded(), b"value")), (1, 2));
    drop(load(&LoadRequest::path(&long_path).resolver_only(&registry)).unwrap());
    match load(&LoadRequest::path(&cut_path).resolver_only(&registry)) {
        Err(ModuleError::Load(_, _)) => {}
        other => panic!("a cut module must fail to load, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn recycled_code_pages_never_show_an_earlier_modules_bytes() {
    let exec = ExecAllocator::default();
    // A module whose three pages of code are all `int3`, loaded and released: its pages go back
    // to the allocator holding those bytes.
    let page = smf_runtime::sys::page_size();
    let mut b = ModuleBuilder::new(Dialect::R96);
    let mut code = vec![0xCCu8; 3 * page];
    code[..6].copy_from_slice(&[0xB8, 1, 0, 0, 0, 0xC3]);
    b.add_code(b"code", &code);
    b.add_symbol(SymbolSpec::function(b"one", 0, 6));
    let first = load(&exec, &b.build().unwrap(), &()).unwrap();
    let first_code = first.code().0;
    assert_eq!(call0(&first, b"one"), 1);
    drop(first);
    // A module whose first code section is 6 bytes long but 2.5 pages large (the rest is zero
    // by definition), then a second section: loaded into the same, unzeroed pages, every byte
    // of its code is its own.
    let mut b = ModuleBuilder::new(Dialect::R96);
    let flags = SectionFlags::READ | SectionFlags::EXEC;
    let mut spec = SectionSpec::new(SectionType::Code, b"code", flags, vec![0xB8, 2, 0, 0, 0, 0xC3], 16);
    spec.virtual_size = (5 * page / 2) as u64;
    b.add_section(spec);
    b.add_code(b"more", &[0xB8, 3, 0, 0, 0, 0xC3]);
    b.add_symbol(SymbolSpec::function(b"two", 0, 6));
    let second = load(&exec, &b.build().unwrap(), &()).unwrap();
    let (code, code_size) = second.code();
    assert_eq!(code, first_code, "the same pages are reused");
    let more = code_size - 6;
    assert_eq!(more, 5 * page / 2, "the second section follows the first's virtual size");
    // SAFETY: the module's sealed, readable code, `code_size` bytes, and the rest of its last
    // page (the allocator's pages are whole).
    let bytes = unsafe { std::slice::from_raw_parts(code as *const u8, code_size.next_multiple_of(page)) };
    assert_eq!(&bytes[..6], &[0xB8, 2, 0, 0, 0, 0xC3]);
    assert!(bytes[6..more].iter().all(|&b| b == 0), "the first section's tail is zero");
    assert_eq!(&bytes[more..code_size], &[0xB8, 3, 0, 0, 0, 0xC3]);
    assert!(bytes[code_size..].iter().all(|&b| b == 0), "past the code the page is zero");
    assert_eq!(call0(&second, b"two"), 2);
}

#[test]
fn the_module_c_api_is_thread_safe() {
    use smf::ffi::smf_module::{
        smf_module_call, smf_module_load_bytes, smf_module_release, smf_module_retain,
    };
    std::thread::scope(|scope| {
        for t in 0..4u8 {
            scope.spawn(move || {
                for i in 0..200u8 {
                    let mut b = ModuleBuilder::new(Dialect::ALL[usize::from(i % 3)]);
                    b.add_code(b".text", &[0xB8, t.wrapping_mul(50).wrapping_add(i), 0, 0, 0, 0xC3]);
                    b.add_symbol(SymbolSpec::function(b"value", 0, 6));
                    let bytes = b.build().unwrap();
                    // SAFETY: valid bytes and a NUL-terminated name; the handle is used only while
                    // this thread holds a reference.
                    unsafe {
                        let m = smf_module_load_bytes(bytes.as_ptr(), bytes.len());
                        assert!(!m.is_null());
                        assert_eq!(smf_module_retain(m), m);
                        let mut result = 0i64;
                        assert_eq!(
                            smf_module_call(m, c"value".as_ptr(), std::ptr::null(), 0, &mut result),
                            0
                        );
                        assert_eq!(result, i64::from(t.wrapping_mul(50).wrapping_add(i)));
                        smf_module_release(m);
                        assert_eq!(
                            smf_module_call(m, c"value".as_ptr(), std::ptr::null(), 0, &mut result),
                            0
                        );
                        smf_module_release(m);
                        // Handles are never reused: a released one stays invalid.
                        assert_eq!(
                            smf_module_call(m, c"value".as_ptr(), std::ptr::null(), 0, &mut result),
                            -1
                        );
                    }
                }
            });
        }
    });
    assert_no_rwx("threads");
}
/// Data sections asking for more than a page of alignment get it, however the allocator's
/// pages are already used: each load of a module with 8 KiB and 64 KiB aligned sections (data,
/// rodata, bss) while earlier ones stay live.
#[test]
fn data_alignments_above_a_page_are_honoured() {
    use smf_format::write::SectionSpec;
    use smf_format::SectionType;
    let exec = ExecAllocator::default();
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &samples::RETURN_42);
    let small = b.add_data(b".data", &[1; 24]);
    let data = b.add_section(SectionSpec::new(
        SectionType::Data,
        b".data.big",
        SectionFlags::READ | SectionFlags::WRITE,
        vec![2; 16],
        1 << 16,
    ));
    let rodata = b.add_section(SectionSpec::new(
        SectionType::RoData,
        b".rodata.big",
        SectionFlags::READ,
        vec![3; 16],
        1 << 13,
    ));
    let mut bss = SectionSpec::new(
        SectionType::Bss,
        b".bss.big",
        SectionFlags::READ | SectionFlags::WRITE,
        Vec::new(),
        1 << 16,
    );
    bss.virtual_size = 64;
    let bss = b.add_section(bss);
    b.add_symbol(SymbolSpec::function(b"main", 0, 6));
    b.add_symbol(SymbolSpec::data(b"small", small, 0, 24));
    b.add_symbol(SymbolSpec::data(b"data", data, 0, 16));
    b.add_symbol(SymbolSpec::data(b"rodata", rodata, 0, 16));
    b.add_symbol(SymbolSpec::data(b"bss", bss, 0, 64));
    let file = b.build().unwrap();
    let mut live = Vec::new();
    for round in 0..6 {
        let module = load(&exec, &file, &()).unwrap();
        for (name, align, byte) in
            [(&b"data"[..], 1 << 16, 2u8), (b"rodata", 1 << 13, 3), (b"bss", 1 << 16, 0)]
        {
            let addr = module.symbol(name).unwrap();
            assert_eq!(addr % align, 0, "round {round}: {} at {addr:#x}", String::from_utf8_lossy(name));
            // SAFETY: a live data symbol of the loaded module, 16 bytes or more.
            assert_eq!(unsafe { *(addr as *const u8) }, byte);
        }
        assert_eq!(call0(&module, b"main"), 42);
        live.push(module);
    }
}

/// Code sections asking for more than a page of alignment get it too: a module whose second
/// code section (8 KiB aligned, starting at 8 KiB in the code image, as `smf pack` places one)
/// holds a function, loaded six times while earlier loads stay live; a code section whose
/// alignment is no power of two up to 64 KiB is refused with the section named.
#[test]
fn code_alignments_above_a_page_are_honoured() {
    use smf_format::{Error, Module};
    let exec = ExecAllocator::default();
    let module = |second_alignment: u64| {
        let mut b = ModuleBuilder::new(Dialect::R96);
        let first = b.add_code(b".text", &[0xC3]);
        b.set_virtual_size(first, 1 << 13);
        b.add_code_aligned(b".text.aligned", &samples::RETURN_42, second_alignment);
        b.add_symbol(SymbolSpec::function(b"aligned", 1 << 13, 6));
        b.build().unwrap()
    };
    let file = module(1 << 13);
    let mut live = Vec::new();
    for round in 0..6 {
        let loaded = load(&exec, &file, &()).unwrap();
        let addr = loaded.symbol(b"aligned").unwrap();
        assert_eq!(addr % (1 << 13), 0, "round {round}: at {addr:#x}");
        assert_eq!(call0(&loaded, b"aligned"), 42);
        live.push(loaded);
    }
    for bad in [3, 1 << 17] {
        let refused = Module::parse(&module(bad)).unwrap_err();
        assert!(
            matches!(refused, Error { kind: ErrorKind::BadAlignment { index: 1, alignment }, .. } if alignment == bad),
            "{refused:?}"
        );
    }
}

/// Modules loaded together (`LoadBatch`, a batch of many) pack their code into shared pages:
/// eight small modules take one code page between them, not eight. Each runs and sees its own
/// data; modules released leave the others on the shared page running; nothing is ever
/// writable and executable.
#[test]
fn modules_loaded_together_share_code_pages_and_data_pages() {
    use smf_runtime::load::LoadBatch;
    let exec = ExecAllocator::default();
    let file = module_with_every_kind_of_data_and_bss(100);
    let mut batch = LoadBatch::new(&exec);
    for _ in 0..8 {
        batch.add(&file, &(), &LoadOptions::default()).unwrap();
    }
    let mut modules = batch.seal().unwrap();
    assert_no_rwx("sealed");
    let page = exec.page_size();
    let code_pages: std::collections::BTreeSet<usize> =
        modules.iter().map(|m| m.symbol(b"main").unwrap() / page).collect();
    assert_eq!(code_pages.len(), 1, "eight modules' code in one page");
    let data: std::collections::BTreeSet<usize> = modules.iter().map(|m| m.symbol(b"d").unwrap()).collect();
    assert_eq!(data.len(), 8, "each module's own data");
    let data_pages: std::collections::BTreeSet<usize> = modules
        .iter()
        .flat_map(|m| [m.symbol(b"d").unwrap() / page, m.symbol(b"z").unwrap() / page])
        .collect();
    assert_eq!(data_pages.len(), 1, "eight modules' data and bss in one page");
    // Each module writes its own bss only (the bytes after it are the next module's).
    let z = modules[0].symbol(b"z").unwrap() as *mut u64;
    // SAFETY: `z` is the first module's 8 writable, aligned bytes of bss, alive with it.
    unsafe { z.write(u64::MAX) };
    assert!(modules[1..].iter().all(|m| {
        // SAFETY: as above, for each other module's `z`.
        unsafe { (m.symbol(b"z").unwrap() as *const u64).read() == 0 }
    }));
    for m in &modules {
        assert_eq!(call0(m, b"main"), 42);
    }
    let last = modules.pop().unwrap();
    drop(modules);
    assert_eq!(call0(&last, b"main"), 42, "the shared page stays while a module on it lives");
    assert_no_rwx("released");
    drop(last);
    assert_eq!(exec.stats().blocks_live, 0);
}

/// A module that fails to load in a batch leaves nothing of its own behind: its code, copied
/// but not relocated (a PC-relative reference to an import out of reach), is zeroed before its
/// blocks go back, so that the page it shared with the batch's next module seals holding that
/// module's code and zeros only.
#[test]
fn a_module_failing_in_a_batch_leaves_zeros_where_its_code_was() {
    use smf_runtime::load::LoadBatch;
    let exec = ExecAllocator::default();
    let mut b = ModuleBuilder::new(Dialect::R96);
    let mut code = vec![0x48, 0x8B, 0x05, 0, 0, 0, 0, 0xC3]; // mov rax, [rip + far]; ret
    code.extend([0x90; 200]);
    b.add_code(b".text", &code);
    b.add_symbol(SymbolSpec::function(b"start", 0, code.len() as u64));
    let far = b.add_symbol(SymbolSpec::import(b"far"));
    b.add_relocation(3, far, RelocKind::Pc32, -4);
    let failing = b.build().unwrap();
    let resolver = TableResolver(&[(b"far", 0x1000)]);

    let mut batch = LoadBatch::new(&exec);
    let error = batch.add(&failing, &resolver, &LoadOptions::default()).unwrap_err();
    assert!(matches!(error, LoadError::Relocation { .. }), "{error:?}");
    batch.add(&samples::return_42(Dialect::R96), &(), &LoadOptions::default()).unwrap();
    let modules = batch.seal().unwrap();
    let main = modules[0].symbol(b"main").unwrap();
    let page_start = main - main % exec.page_size();
    assert!(main - page_start >= code.len(), "the failed module's code came first in the page");
    // SAFETY: the bytes before `main` in its sealed, readable code page.
    let before = unsafe { std::slice::from_raw_parts(page_start as *const u8, main - page_start) };
    assert!(before.iter().all(|&b| b == 0), "{:02x?}", &before[..16]);
    assert_eq!(call0(&modules[0], b"main"), 42);
}

/// A module whose image holds only read-only data, only writable data, or nothing at all (a
/// note alone) loads: its data symbols point at their bytes, and an empty image takes no block.
/// (Found by mutation testing: no test loaded a module without code.)
#[test]
fn modules_without_code_load_with_only_the_blocks_they_need() {
    let exec = ExecAllocator::default();
    let blocks = |exec: &ExecAllocator| exec.stats().blocks_live;
    for (what, writable) in [("read-only data", false), ("writable data", true)] {
        let mut b = ModuleBuilder::new(Dialect::R96);
        let section = if writable {
            b.add_data(b".data", b"bytes!\0\0")
        } else {
            b.add_rodata(b".rodata", b"bytes!\0\0")
        };
        b.add_symbol(SymbolSpec::data(b"value", section, 0, 8));
        let module = load(&exec, &b.build().unwrap(), &()).unwrap();
        let value = module.symbol(b"value").expect(what);
        // SAFETY: `value` is the address of 8 loaded bytes, mapped while `module` lives.
        let bytes = unsafe { std::slice::from_raw_parts(value as *const u8, 8) };
        assert_eq!(bytes, b"bytes!\0\0", "{what}");
        assert_eq!(blocks(&exec), 1, "{what}: one block, for the data");
        drop(module);
        assert_eq!(blocks(&exec), 0, "{what}");
    }
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.note_sdn(samples::GENERICS_NOTE);
    let module = load(&exec, &b.build().unwrap(), &()).unwrap();
    assert_eq!(module.symbols().len(), 0);
    assert_eq!(blocks(&exec), 0, "an empty image takes no block");
}

/// Runs this binary's test `child` alone in a process of its own (the page size is
/// process-wide) and returns what it printed.
fn in_a_process_of_its_own(child: &str) -> String {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", child, "--nocapture", "--test-threads", "1"])
        .env("SMF_PAGE_SIZE_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// A process with a C library loading through the shell takes the page size from the C
/// library's auxiliary vector (no syscall); the core on its own, which has none, probes (three
/// syscalls: a reservation, a protection change, its removal). Both find the kernel's.
#[test]
fn the_shell_is_told_the_page_size_and_the_core_alone_probes_it() {
    let shell = in_a_process_of_its_own("page_size_through_the_shell");
    assert!(shell.contains("probed false, kernel's true"), "{shell}");
    let core = in_a_process_of_its_own("page_size_in_the_core_alone");
    assert!(core.contains("probed true, kernel's true"), "{core}");
}

/// A child of the test above (does nothing unless it is asked to).
#[test]
fn page_size_through_the_shell() {
    if std::env::var_os("SMF_PAGE_SIZE_CHILD").is_none() {
        return;
    }
    let registry = smf::loader::Registry::new();
    let module = smf::loader::load(
        &smf::loader::LoadRequest::bytes(&samples::return_42(Dialect::S128)).resolver_only(&registry),
    )
    .unwrap();
    assert_eq!(call0(module.loaded(), b"main"), 42);
    let kernel = smf_runtime::sys::page_size() == auxiliary_page_size();
    println!("probed {}, kernel's {kernel}", smf_runtime::sys::page_size_probed());
}

/// A child of the test above (does nothing unless it is asked to).
#[test]
fn page_size_in_the_core_alone() {
    if std::env::var_os("SMF_PAGE_SIZE_CHILD").is_none() {
        return;
    }
    let exec = ExecAllocator::default();
    let module = load(&exec, &samples::return_42(Dialect::S128), &()).unwrap();
    assert_eq!(call0(&module, b"main"), 42);
    let kernel = exec.page_size() == auxiliary_page_size();
    println!("probed {}, kernel's {kernel}", smf_runtime::sys::page_size_probed());
}

/// The kernel's page size as the auxiliary vector gives it.
fn auxiliary_page_size() -> usize {
    // SAFETY: reads the C library's copy of the auxiliary vector.
    let size = unsafe { getauxval(6) };
    usize::try_from(size).unwrap()
}

extern "C" {
    /// The C library's: an auxiliary vector entry (6: `AT_PAGESZ`).
    fn getauxval(kind: std::ffi::c_ulong) -> std::ffi::c_ulong;
}
