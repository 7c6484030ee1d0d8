//! Linking from Rust: data symbols checked against their sections, GOT room, symbols of every
//! kind interleaved, registries of few or many modules, and the process-wide name hash.

#![cfg(target_arch = "x86_64")]
// Test values are small; calling loaded code goes through the (unsafe) typed lookup.
#![allow(clippy::cast_possible_truncation, unsafe_code)]

use std::sync::Arc;

use smf_format::write::{samples, ModuleBuilder, SymbolSpec};
use smf_format::{Binding, Dialect, RelocKind};
use smf_runtime::exec::ExecAllocator;
use smf_runtime::load::{LoadError, Resolver, TableResolver};
use smf_tests::loading::{call0, load};

/// The symbol pass decodes data symbols on its fast path; one that names a section that is not
/// a data section, or reaches past its section's end, still fails the load with validation's
/// error, and an in-bounds one gets its section's address.
#[test]
fn data_symbols_are_checked_against_their_section() {
    use smf_format::ErrorKind;
    let exec = ExecAllocator::default();
    let module = |section: u32, offset: u64, size: u64| {
        let mut b = ModuleBuilder::new(Dialect::R96);
        b.add_code(b".text", &samples::RETURN_42);
        let data = b.add_data(b".data", &[7; 16]);
        let bss = b.add_bss(b".bss", 64);
        assert_eq!((data, bss), (1, 2));
        b.add_symbol(SymbolSpec::function(b"main", 0, 6));
        b.add_symbol(SymbolSpec::data(b"d", section, offset, size));
        b.build().unwrap()
    };
    let loaded = load(&exec, &module(2, 56, 8), &()).unwrap();
    let bss_at = loaded.symbol(b"d").unwrap() - 56;
    // SAFETY: the symbol lies in the module's live bss.
    assert_eq!(unsafe { *(bss_at as *const [u8; 64]) }, [0; 64]);
    let loaded = load(&exec, &module(1, 8, 8), &()).unwrap();
    // SAFETY: the symbol lies in the module's live data.
    assert_eq!(unsafe { *(loaded.symbol(b"d").unwrap() as *const u8) }, 7);

    // Symbol 1's entry: the value field is at 16, the defining-section index at 41.
    let good = module(1, 8, 8);
    let parsed = smf_format::Module::parse(&good).unwrap();
    let entry =
        parsed.data_start() + parsed.header().symbol_table_offset + Dialect::R96.symbol_entry_size() as u64;
    for (section, offset, size, expected, field) in [
        (1, 8, 9, ErrorKind::SymbolOutsideSection { symbol: 1, section: 1 }, 16),
        (1, u64::MAX, 2, ErrorKind::SymbolOutsideSection { symbol: 1, section: 1 }, 16),
        (2, 60, 8, ErrorKind::SymbolOutsideSection { symbol: 1, section: 2 }, 16),
        (0, 0, 4, ErrorKind::BadSymbolSection { symbol: 1, section: 1 }, 41),
        (40, 0, 4, ErrorKind::BadSymbolSection { symbol: 1, section: 41 }, 41),
    ] {
        let file = module(section, offset, size);
        let expected_error = smf_format::Module::parse(&file).unwrap_err();
        assert_eq!(expected_error, smf_format::Error::new(expected, entry + field));
        assert_eq!(load(&exec, &file, &()).unwrap_err(), LoadError::Format(expected_error), "{expected:?}");
    }
}

/// GOT room: a slot per symbol when that fits in the pages the image needs anyway (no pass
/// over the relocations to count them); otherwise a slot per GOT-relative relocation. Either
/// way the GOT load works.
#[test]
fn got_room_is_taken_per_symbol_only_where_it_costs_no_page() {
    static COUNTER: u64 = 77;
    let page = smf_runtime::sys::page_size();
    // `mov rax, [rip+GOT(counter)]; mov rax, [rax]; ret`, padded to `code_len` bytes, plus
    // `extra` symbols naming it.
    let module = |code_len: usize, extra: usize| {
        let mut code = vec![0x48, 0x8B, 0x05, 0, 0, 0, 0, 0x48, 0x8B, 0x00, 0xC3];
        code.resize(code_len, 0xCC);
        let mut b = ModuleBuilder::new(Dialect::R96);
        b.add_code(b".text", &code);
        b.add_symbol(SymbolSpec::function(b"get", 0, 11));
        for i in 0..extra {
            b.add_symbol(SymbolSpec::function(format!("alias{i}").as_bytes(), 0, 11));
        }
        let counter = b.add_symbol(SymbolSpec::import(b"counter"));
        b.add_relocation(3, counter, RelocKind::GotPc32, -4);
        b.build().unwrap()
    };
    let table: &[(&[u8], usize)] = &[(b"counter", &COUNTER as *const u64 as usize)];
    // (code bytes, extra symbols, pages the image takes)
    for (code_len, extra, pages) in [(64, 10, 1), (page, 1000, 2)] {
        let exec = ExecAllocator::default();
        let loaded = load(&exec, &module(code_len, extra), &TableResolver(table)).unwrap();
        assert_eq!(call0(&loaded, b"get"), 77, "{code_len} bytes of code, {extra} more symbols");
        // The second: a slot per symbol would need two more pages; one slot fits in one.
        assert_eq!(exec.stats().bytes_live, pages * page, "{code_len} bytes of code, {extra} more symbols");
    }
}

/// The symbol pass links runs of plain symbols the module defines on a fast path and everything
/// else (imports, types, templates, locals among them) one by one: in any order, every symbol
/// keeps its own address, kind and visibility, and every import its own resolution.
#[test]
fn symbols_of_every_kind_interleaved_link_to_their_own_addresses() {
    use smf_format::template::TemplateKind;
    use smf_format::write::TemplateSpec;
    use smf_format::SymbolKind;
    let exec = ExecAllocator::default();
    let table: &[(&[u8], usize)] = &[(b"ext_a", 0x1111_2222), (b"ext_b", 0x3333_4444)];
    for dialect in Dialect::ALL {
        let mut b = ModuleBuilder::new(dialect);
        b.add_code(b".text", &[0xC3; 64]);
        // R72 symbols cannot address data sections, nor can R72 locate templates.
        let rich = dialect != Dialect::R72;
        let data = if rich { b.add_data(b".data", &[9; 32]) } else { 0 };
        b.add_symbol(SymbolSpec::function(b"f0", 0, 8));
        let ext_a = b.add_symbol(SymbolSpec::import(b"ext_a"));
        b.add_symbol(SymbolSpec::function(b"f1", 16, 8));
        b.add_symbol(SymbolSpec::function(b"helper", 24, 8).with_binding(Binding::Local));
        // (In S128 a non-local symbol with value and size 0 is an import: T has a size.)
        b.add_symbol(SymbolSpec::new(b"T", SymbolKind::Type, 0, 4));
        if rich {
            b.add_symbol(SymbolSpec::data(b"d", data, 16, 8));
            b.add_template_symbol(TemplateSpec {
                kind: TemplateKind::Function,
                name: b"generic".to_vec(),
                params: vec![b"T".to_vec()],
                body: b"body".to_vec(),
            });
        }
        let ext_b = b.add_symbol(SymbolSpec::import(b"ext_b"));
        b.add_symbol(SymbolSpec::function(b"f2", 48, 8));
        b.add_relocation(8, ext_a, RelocKind::Abs64, 0);
        b.add_relocation(56, ext_b, RelocKind::Abs64, 2);
        let loaded = load(&exec, &b.build().unwrap(), &TableResolver(table))
            .unwrap_or_else(|e| panic!("{dialect}: {e}"));
        let (code, _) = loaded.code();
        assert_eq!(loaded.symbol(b"f0"), Some(code), "{dialect}");
        assert_eq!(loaded.symbol(b"f1"), Some(code + 16), "{dialect}");
        assert_eq!(loaded.symbol(b"f2"), Some(code + 48), "{dialect}");
        for hidden in [&b"helper"[..], b"T", b"ext_a", b"ext_b", b"generic"] {
            assert_eq!(
                loaded.symbol(hidden),
                None,
                "{dialect}: {:?} is not exported",
                String::from_utf8_lossy(hidden)
            );
        }
        // SAFETY: both relocated words lie in the module's live, readable code.
        let patched = unsafe { [*((code + 8) as *const u64), *((code + 56) as *const u64)] };
        assert_eq!(patched, [0x1111_2222, 0x3333_4446], "{dialect}: each import resolved to its own address");
        let kinds: Vec<(String, SymbolKind)> = loaded
            .symbols()
            .iter()
            .enumerate()
            .map(|(i, s)| (String::from_utf8_lossy(loaded.symbols().name(i).unwrap()).into_owned(), s.kind))
            .collect();
        let mut expected = vec![
            ("f0", SymbolKind::Function),
            ("ext_a", SymbolKind::Import),
            ("f1", SymbolKind::Function),
            ("helper", SymbolKind::Function),
            ("T", SymbolKind::Type),
        ];
        if rich {
            let d = loaded.symbol(b"d").expect("data symbol exported");
            // SAFETY: the symbol lies in the module's live data.
            assert_eq!(unsafe { *(d as *const u8) }, 9, "{dialect}");
            assert!(loaded.symbols().iter().any(|s| s.template), "{dialect}: the template is kept");
            assert_eq!(loaded.template(b"generic").map(<[u8]>::len).map(|l| l > 0), Some(true));
            expected.extend([("d", SymbolKind::Data), ("generic", kinds[6].1)]);
        }
        expected.extend([("ext_b", SymbolKind::Import), ("f2", SymbolKind::Function)]);
        let expected: Vec<(String, SymbolKind)> =
            expected.into_iter().map(|(n, k)| (n.to_string(), k)).collect();
        assert_eq!(kinds, expected, "{dialect}: symbols in table order");
    }
}

/// A module exporting `name`, a function returning `value`, and a local function `hidden`.
fn constant_module(name: &[u8], value: u8) -> Vec<u8> {
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b"code", &[0xB8, value, 0, 0, 0, 0xC3]);
    b.add_symbol(SymbolSpec::function(name, 0, 6));
    b.add_symbol(SymbolSpec::function(b"hidden", 0, 6).with_binding(Binding::Local));
    b.build().unwrap()
}

#[test]
fn a_registry_of_few_or_many_modules_resolves_each_name_from_the_first_that_exports_it() {
    use smf::loader::{load, LoadRequest, Registry, SharedModule};
    // A few modules are asked in turn; many go through the registry's index.
    for count in [3, 300] {
        let registry = Registry::new();
        let load_added = |name: &[u8], value: u8| {
            let module = load(&LoadRequest::bytes(&constant_module(name, value)).resolver_only(&())).unwrap();
            registry.add(&module);
            module
        };
        let mut modules: Vec<Option<Arc<SharedModule>>> =
            (0..count).map(|i| Some(load_added(format!("f{i}").as_bytes(), 1))).collect();
        let addr = |modules: &[Option<Arc<SharedModule>>], i: usize| {
            modules[i].as_ref().unwrap().symbol(format!("f{i}").as_bytes()).unwrap()
        };
        for i in [0, 1, count / 2, count - 1] {
            let resolved = registry.resolve(format!("f{i}").as_bytes()).unwrap();
            assert_eq!(resolved.addr, addr(&modules, i), "{count}: f{i}");
        }
        assert!(registry.resolve(format!("f{count}").as_bytes()).is_none());
        assert!(registry.resolve(b"hidden").is_none(), "local symbols are not exported");

        // Added later, exporting a name taken already: the first module added still wins,
        // and the later one takes over once the first is released.
        let later = load_added(b"f1", 2);
        let resolved = registry.resolve(b"f1").unwrap();
        assert_eq!(resolved.addr, addr(&modules, 1), "{count}");
        drop(resolved);
        modules[1] = None;
        let resolved = registry.resolve(b"f1").unwrap();
        assert_eq!(
            (resolved.addr, call0(later.loaded(), b"f1")),
            (later.symbol(b"f1").unwrap(), 2),
            "{count}"
        );
        assert_eq!(registry.modules().len(), count);
    }
}

#[test]
fn a_registry_forgets_released_modules_under_load_release_churn() {
    use smf::loader::{load, LoadRequest, Registry};
    let registry = Registry::new();
    let kept = load(&LoadRequest::bytes(&constant_module(b"kept", 3)).resolver_only(&())).unwrap();
    registry.add(&kept);
    for _ in 0..1000 {
        let module = load(&LoadRequest::bytes(&constant_module(b"churn", 4)).resolver_only(&())).unwrap();
        registry.add(&module);
        let resolved = registry.resolve(b"churn").unwrap();
        assert_eq!(resolved.addr, module.symbol(b"churn").unwrap(), "the live one, not a released one");
    }
    assert!(registry.tracked() <= 32, "{} modules tracked, 1 live", registry.tracked());
    assert!(registry.resolve(b"churn").is_none(), "a released module resolves nothing");
    assert_eq!(registry.resolve(b"kept").unwrap().addr, kept.symbol(b"kept").unwrap());
    assert_eq!(registry.modules().len(), 1);
}

/// The export index finds, by name, the modules that export it (not those that only have a
/// local symbol of that name), short names and long ones alike, and forgets a module removed.
#[test]
fn the_export_index_finds_the_modules_exporting_a_name() {
    use smf_runtime::load::ExportIndex;
    let exec = ExecAllocator::default();
    let long = b"a_rather_long_name_past_one_word";
    let first = load(&exec, &constant_module(long, 1), &()).unwrap();
    let second = load(&exec, &constant_module(b"short", 2), &()).unwrap();
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &samples::RETURN_42);
    b.add_symbol(SymbolSpec::function(b"short", 0, 6).with_binding(Binding::Local));
    let local = load(&exec, &b.build().unwrap(), &()).unwrap();
    let mut index = ExportIndex::new();
    assert!(index.is_empty());
    for (key, module) in [(1, &first), (2, &second), (3, &local)] {
        index.insert(key, module).unwrap();
    }
    assert!(!index.is_empty());
    let keys = |index: &ExportIndex<i32>, name: &[u8]| {
        let mut keys: Vec<i32> = index.candidates(name).collect();
        keys.sort_unstable();
        keys
    };
    assert_eq!(keys(&index, long), [1]);
    assert_eq!(keys(&index, b"short"), [2], "a local symbol is not an export");
    assert!(keys(&index, b"missing").is_empty());
    index.retain(|&key| key != 2);
    assert!(keys(&index, b"short").is_empty());
    assert_eq!(keys(&index, long), [1]);
    index.retain(|_| false);
    assert!(index.is_empty());
}

/// The format's rules for names: a global or weak symbol needs one (the load fails with
/// validation's error), a local may go without; of two exports of one name, the first in table
/// order is the export, for the parsed module and the loaded one alike.
#[test]
fn unnamed_globals_are_refused_and_the_first_of_duplicate_exports_wins() {
    let exec = ExecAllocator::default();
    let module = |names: &[(&[u8], u64, Binding)]| {
        let mut b = ModuleBuilder::new(Dialect::R96);
        b.add_code(b".text", &[0xB8, 1, 0, 0, 0, 0xC3, 0xB8, 2, 0, 0, 0, 0xC3]);
        for &(name, at, binding) in names {
            b.add_symbol(SymbolSpec::function(name, at, 6).with_binding(binding));
        }
        b.build().unwrap()
    };
    for binding in [Binding::Global, Binding::Weak] {
        let file = module(&[(b"f", 0, Binding::Global), (b"", 6, binding)]);
        let error = smf_format::Module::parse(&file).unwrap_err();
        assert_eq!(error.kind, smf_format::ErrorKind::UnnamedSymbol { symbol: 1 });
        assert_eq!(load(&exec, &file, &()).unwrap_err(), LoadError::Format(error));
    }
    let loaded = load(&exec, &module(&[(b"", 6, Binding::Local), (b"f", 0, Binding::Global)]), &()).unwrap();
    assert_eq!(call0(&loaded, b"f"), 1);

    let file = module(&[(b"f", 6, Binding::Global), (b"f", 0, Binding::Global)]);
    let parsed = smf_format::Module::parse(&file).unwrap();
    assert_eq!(parsed.find_export(b"f").map(|s| s.index), Some(0));
    let loaded = load(&exec, &file, &()).unwrap();
    assert_eq!(call0(&loaded, b"f"), 2, "the first export of `f` (at 6) wins");
}

/// The Rust face of the C ABI's lookup order: host symbols first, then modules loaded before
/// (not local ones), then the load's resolver, then (only when asked for) the process's symbols,
/// then (unless turned off) the C library and libm; an unresolved import's error names every
/// place looked.
#[test]
fn loads_with_link_options_look_in_the_documented_order() {
    use smf::imports::{define_host, undefine_host, HostError, LinkOptions};
    use smf::loader::{load, LoadRequest};
    use smf_tests::linking::importer;
    // Names no other test of this binary uses: the host table and registry are process-wide.
    let importer_of = |name: &str| importer(&[name]);
    let addr_of = |m: &smf::loader::SharedModule, name: &str| {
        // SAFETY: `addr_NAME` returns the address its import resolved to.
        unsafe { m.call_integers(Some(format!("addr_{name}").as_bytes()), &[]) }.unwrap() as usize
    };
    static HOST_VALUE: u64 = 1;
    static TABLE_VALUE: u64 = 2;
    let host_addr = &HOST_VALUE as *const u64 as usize;
    let table_addr = &TABLE_VALUE as *const u64 as usize;
    define_host(b"lo_both", host_addr).unwrap();
    assert_eq!(define_host(b"lo_both", table_addr), Err(HostError::AlreadyDefined { address: host_addr }));
    let table = [(&b"lo_both"[..], table_addr), (&b"lo_table"[..], table_addr)];
    let resolver = TableResolver(&table);
    let options = LinkOptions { resolver: Some(&resolver), ..LinkOptions::default() };
    let m = load(&LoadRequest::bytes(&importer_of("lo_both")).linked(options)).unwrap();
    assert_eq!(addr_of(&m, "lo_both"), host_addr, "host symbols come before the resolver");
    let m = load(&LoadRequest::bytes(&importer_of("lo_table")).linked(options)).unwrap();
    assert_eq!(addr_of(&m, "lo_table"), table_addr);
    assert!(undefine_host(b"lo_both"));
    assert!(!undefine_host(b"lo_both"));

    // A local module's exports are not offered to later loads; a shared one's are.
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &samples::RETURN_42);
    b.add_symbol(SymbolSpec::function(b"lo_exported", 0, 6));
    let provider = b.build().unwrap();
    let local = LinkOptions { local: true, ..LinkOptions::default() };
    let kept = load(&LoadRequest::bytes(&provider).linked(local)).unwrap();
    let error = load(&LoadRequest::bytes(&importer_of("lo_exported"))).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("unresolved import `lo_exported` (looked in: host symbols ("), "{message}");
    assert!(message.contains(" loaded module"), "{message}");
    assert!(message.contains(", the C library and libm)"), "{message}");
    let shared = load(&LoadRequest::bytes(&provider)).unwrap();
    let m = load(&LoadRequest::bytes(&importer_of("lo_exported"))).unwrap();
    assert_eq!(addr_of(&m, "lo_exported"), shared.symbol(b"lo_exported").unwrap());
    assert_ne!(addr_of(&m, "lo_exported"), kept.symbol(b"lo_exported").unwrap());

    // The C library and libm unless turned off, as dlopen resolves them.
    let strlen_of = |m: &smf::loader::SharedModule| {
        let text = c"twelve bytes";
        // SAFETY: `call_strlen` jumps to strlen with the caller's first argument, a C string.
        unsafe { m.call_integers(Some(b"call_strlen"), &[text.as_ptr() as i64]) }.unwrap()
    };
    let m = load(&LoadRequest::bytes(&importer_of("strlen"))).unwrap();
    assert_eq!(strlen_of(&m), 12);
    let m = load(&LoadRequest::bytes(&importer_of("sqrt"))).unwrap();
    assert_ne!(addr_of(&m, "sqrt"), 0, "libm's sqrt");
    let no_c = LinkOptions { c_library: false, ..LinkOptions::default() };
    let message = load(&LoadRequest::bytes(&importer_of("strlen")).linked(no_c)).unwrap_err().to_string();
    assert!(message.contains("unresolved import `strlen`"), "{message}");
    assert!(!message.contains("C library"), "{message}");
    assert!(message.contains("provide it as a host symbol"), "{message}");
    assert!(!message.contains("libstdc++"), "no C++ name, no C++ advice: {message}");
    // The C++ runtime's names are not in the C library: where to get them, said.
    let message =
        load(&LoadRequest::bytes(&importer_of("__cxa_begin_catch")).linked(no_c)).unwrap_err().to_string();
    assert!(
        message.contains("C++: give the process libstdc++: `smf run --native libstdc++.so.6`"),
        "{message}"
    );

    // The process's other symbols only when asked for: libgcc_s's unwinder (which Rust's std
    // links) is not the C library's.
    let outside = "_Unwind_RaiseException";
    let message = load(&LoadRequest::bytes(&importer_of(outside))).unwrap_err().to_string();
    assert!(message.contains("the C library and libm"), "{message}");
    let process = LinkOptions { process_symbols: true, c_library: false, ..LinkOptions::default() };
    let m = load(&LoadRequest::bytes(&importer_of(outside)).linked(process)).unwrap();
    assert_ne!(addr_of(&m, outside), 0);
    let m = load(&LoadRequest::bytes(&importer_of("strlen")).linked(process)).unwrap();
    assert_eq!(strlen_of(&m), 12, "the process's symbols hold the C library's");
}

/// `SharedModule::call` passes integer and floating-point arguments each in registers of
/// their own kind, in order, as C expects, and returns a `double` or a `float`; more than six
/// integer or eight floating-point arguments are refused before any call.
#[test]
fn a_call_passes_each_kind_of_argument_in_its_own_registers() {
    use smf::loader::{load, CallArg, CallError, LoadRequest};
    let mut code = Vec::new();
    // double add3(long a, double b, long c): b + a + c.
    code.extend_from_slice(&[0xF2, 0x48, 0x0F, 0x2A, 0xCF]); // cvtsi2sd xmm1, rdi
    code.extend_from_slice(&[0xF2, 0x0F, 0x58, 0xC1]); // addsd xmm0, xmm1
    code.extend_from_slice(&[0xF2, 0x48, 0x0F, 0x2A, 0xCE]); // cvtsi2sd xmm1, rsi
    code.extend_from_slice(&[0xF2, 0x0F, 0x58, 0xC1, 0xC3]); // addsd xmm0, xmm1; ret
    let twice = code.len() as u64;
    // float twice(float x): x + x.
    code.extend_from_slice(&[0xF3, 0x0F, 0x58, 0xC0, 0xC3]);
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &code);
    b.add_symbol(SymbolSpec::function(b"add3", 0, twice));
    b.add_symbol(SymbolSpec::function(b"twice", twice, 5));
    let options = smf::imports::LinkOptions { local: true, ..Default::default() };
    let module = load(&LoadRequest::bytes(&b.build().unwrap()).linked(options)).unwrap();
    let (int, f64_, f32_) = (CallArg::Int, CallArg::F64, CallArg::F32);
    // SAFETY: add3 is `double(long, double, long)`, twice `float(float)`.
    unsafe {
        assert_eq!(module.call::<f64>(Some(b"add3"), &[int(1), f64_(0.5), int(2)]), Ok(3.5));
        assert_eq!(module.call::<f32>(Some(b"twice"), &[f32_(1.25)]), Ok(2.5));
        assert_eq!(module.call::<f64>(Some(b"add3"), &[int(0); 7]), Err(CallError::TooManyArguments(7)));
        assert_eq!(
            module.call::<f64>(Some(b"add3"), &[f64_(0.0); 9]),
            Err(CallError::TooManyFloatArguments(9))
        );
    }
}
