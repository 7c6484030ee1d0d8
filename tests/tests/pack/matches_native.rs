//! One C source at a time, packed into each dialect that can hold it, loaded and called: the
//! results equal gcc's native build (recursion, strings, globals, compiled code shapes, pointers
//! in writable data, jump tables, read-only pointer tables and where they are placed).

use smf_format::module::RelocatedImage;
use smf_format::{Dialect, ModuleFlags, RelocKind, SectionType};
use smf_runtime::load::{LoadOptions, LoadedModule, ReadOnlyData};
use smf_tool::pack::{pack_inputs, Input, PackOptions};

use crate::{allocator, call, check_source, compile, native, pack, says, scratch, Call, ALL, WITH_DATA};

#[test]
fn recursion_matches_native() {
    let calls: &[Call] = &[
        ("fib", &[20]),
        ("factorial", &[15]),
        ("ackermann", &[2, 3]),
        ("ackermann", &[3, 3]),
        ("main", &[]),
    ];
    check_source("recursion.c", &ALL, calls);
}

#[test]
fn string_constants_match_native() {
    let calls: &[Call] = &[
        ("text_length", &[]),
        ("count_char", &[101]),
        ("count_char", &[97]),
        ("checksum", &[]),
        ("main", &[]),
    ];
    check_source("strings.c", &WITH_DATA, calls);
}

#[test]
fn global_data_matches_native() {
    let calls: &[Call] = &[
        ("bump", &[5]),
        ("bump", &[-2]),
        ("fill_and_sum", &[10]),
        ("call_count", &[]),
        ("main", &[]),
        ("call_count", &[]),
    ];
    check_source("globals.c", &WITH_DATA, calls);
}

/// `-fPIC` code reads and writes a global variable through the GOT: linked, the module keeps
/// those loads, through a `.got` of its own with one slot per variable (one data relocation
/// each, however many instructions reach it), as a `gcc -shared` library does; with `-z
/// separate-code` each load is relaxed to a direct reference, a relocation of the code each.
#[test]
fn global_variables_are_reached_through_the_modules_own_got_when_linked() {
    let calls: &[Call] = &[("bump", &[5]), ("fill_and_sum", &[10]), ("bump", &[-2]), ("call_count", &[])];
    let dir = scratch("own-got");
    let expected = native(&dir, &["globals.c"], calls);
    let object = compile(&dir, &crate::source("globals.c"), &["-fPIC"]);
    for separate_code in [false, true] {
        let options = PackOptions { separate_code, ..PackOptions::new(Dialect::S128) };
        let (bytes, _) = pack_inputs(&[Input::new(&object.0, &object.1)], &options).unwrap();
        let parsed = smf_format::Module::parse(&bytes).unwrap();
        let named = |r: &smf_format::module::Relocation| parsed.symbol(r.symbol).unwrap().name.to_vec();
        let code: Vec<Vec<u8>> =
            parsed.relocations().filter(|r| r.image == RelocatedImage::Code).map(|r| named(&r)).collect();
        let got = parsed.sections().find(|s| s.name == b".got");
        if separate_code {
            assert!(got.is_none());
            // `counter` and `table` reached directly, each instruction a relocation.
            let sites = |name: &[u8]| code.iter().filter(|n| *n == name).count();
            assert!(sites(b"counter") >= 1 && sites(b"table") >= 1, "{code:?}");
        } else {
            let got = got.expect("a .got section");
            assert_eq!(got.section_type, SectionType::RoData);
            assert_eq!(got.virtual_size, 16, "a slot for counter and one for table");
            let mut slots: Vec<(Vec<u8>, RelocKind)> = parsed
                .relocations()
                .filter(|r| r.image == RelocatedImage::Data)
                .map(|r| (named(&r), r.kind))
                .collect();
            slots.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(
                slots,
                [(b"counter".to_vec(), RelocKind::Abs64), (b"table".to_vec(), RelocKind::Abs64)]
            );
            assert!(!code.iter().any(|n| n == b"counter" || n == b"table"), "{code:?}");
        }
        let module = LoadedModule::load(allocator(), &bytes, &(), &LoadOptions::default()).unwrap();
        let results: Vec<i64> = calls.iter().map(|(name, args)| call(&module, name, args)).collect();
        assert_eq!(results, expected, "separate code: {separate_code}");
        // The variable the code wrote through its GOT slot is the module's exported one.
        let counter = module.symbol(b"counter").unwrap() as *const i64;
        // SAFETY: `counter` is the module's `long counter`, alive while `module` is.
        assert_eq!(unsafe { counter.read() }, 100 + 5 - 2);
    }
}

#[test]
fn compiled_code_shapes_match_native() {
    let calls: &[Call] = &[
        ("sum_squares", &[100]),
        ("next_id", &[]),
        ("next_id", &[]),
        ("mulhi", &[0x7fff_ffff_ffff_ffff, 0x1234_5678]),
        ("apply", &[1, 30, 12]),
        ("apply", &[0, 30, 12]),
        ("collatz", &[27]),
        ("six", &[60, 5, 4, 3, 2, 1]),
    ];
    check_source("cases.c", &WITH_DATA, calls);
}

#[test]
fn pointers_in_writable_data_are_relocated_and_match_native() {
    // The calls run in order against one loaded module, as natively: the table and the
    // pointer changed by one call are what the next one reads.
    let calls: &[Call] = &[
        ("first", &[]),
        ("operate", &[0, 30, 12]),
        ("operate", &[1, 30, 12]),
        ("set_operation", &[0, 1]),
        ("operate", &[0, 30, 12]),
        ("name_sum", &[0]),
        ("name_sum", &[3]),
        ("list_sum", &[]),
        ("greeting_moves", &[1]),
        ("first", &[]),
    ];
    check_source("data_pointers.c", &WITH_DATA, calls);
}

#[test]
fn jump_tables_match_native_in_every_dialect() {
    let calls: &[Call] = &[
        ("dispatch", &[0, 40, 2]),
        ("dispatch", &[2, 40, 2]),
        ("dispatch", &[3, 40, 0]),
        ("dispatch", &[5, 3, 4]),
        ("dispatch", &[9, 12, 3]),
        ("dispatch", &[10, 1, 1]),
        ("dispatch", &[-1, 1, 1]),
        ("run_program", &[1, 100]),
        ("run_program", &[-77, 1000]),
    ];
    check_source("jump_tables.c", &ALL, calls);
}

#[test]
fn read_only_pointer_tables_become_relocated_rodata_and_match_native() {
    let calls: &[Call] = &[
        ("word_score", &[3]),
        ("word_score", &[7]),
        ("word_initial", &[12]),
        ("operate", &[0, 9, 4]),
        ("operate", &[1, 9, 4]),
        ("operate", &[2, 9, 4]),
        ("operate", &[3, 9, 4]),
        ("shape_score", &[0, 5]),
        ("shape_score", &[1, 5]),
        ("classify", &[97]),
        ("classify", &[99]),
        ("classify", &[101]),
        ("classify", &[122]),
    ];
    check_source("tables.c", &WITH_DATA, calls);

    let dir = scratch("tables-placement");
    let object = compile(&dir, &crate::source("tables.c"), &["-fPIC"]);
    let (mut data_relocations, mut results) = (Vec::new(), Vec::new());
    // Linked by default (`ld -z noseparate-code`): the jump table's and the code's references
    // to the read-only data are resolved for good and it stays with the code, executable,
    // whatever the loader is asked; with `-z separate-code` they stay relocations and the
    // loader may map it on pages of its own.
    for separate_code in [false, true] {
        let options = PackOptions { separate_code, ..PackOptions::new(Dialect::S128) };
        let (bytes, notes) = pack_inputs(&[Input::new(&object.0, &object.1)], &options).unwrap();
        assert!(!says(&notes, "into the code image"), "{notes:?}");
        // `shapes` (a const array of pointers, in `.data.rel.ro.local`) is a data symbol of the
        // module's rodata section, where its pointers are data relocations; the jump table in
        // `.rodata` likewise unless linked.
        let parsed = smf_format::Module::parse(&bytes).unwrap();
        assert_eq!(parsed.header().flags.contains(ModuleFlags::LINKED_READ_ONLY), !separate_code);
        let entry = parsed.symbols().find(|s| s.name == b"shapes").unwrap();
        assert_eq!(entry.kind, smf_format::SymbolKind::Data, "an object, not a function");
        let smf_format::SymbolTarget::Data { section, .. } = entry.target else {
            panic!("{:?}", entry.target)
        };
        let section = parsed.section(section).unwrap();
        assert_eq!(section.name, b".rodata");
        assert_eq!(section.section_type, SectionType::RoData);
        data_relocations.push(parsed.relocations().filter(|r| r.image == RelocatedImage::Data).count());
        let apart = if separate_code { "r--" } else { "r-x" };
        for (options, expected) in [
            (LoadOptions::default(), "r-x"),
            (LoadOptions { read_only_data: ReadOnlyData::NotExecutable, ..LoadOptions::default() }, apart),
        ] {
            let module = LoadedModule::load(allocator(), &bytes, &(), &options).unwrap();
            let shapes = module.symbol(b"shapes").unwrap();
            let (_, perms) = smf_tests::mapping_at(shapes).unwrap();
            assert!(perms.starts_with(expected), "shapes lies in a {perms} mapping");
            // SAFETY: `shapes` points at two {const char *, long (*)(long)} pairs the loader
            // relocated.
            let (name, area) = unsafe {
                let entry = shapes as *const usize;
                (std::ffi::CStr::from_ptr(*entry.add(2) as *const std::ffi::c_char), *entry.add(3))
            };
            assert_eq!(name.to_bytes(), b"triangle");
            // SAFETY: the second pointer is the module's `triangle_area(long)`.
            let area = unsafe { module.function_at::<extern "C" fn(i64) -> i64>(area) };
            assert_eq!(area.expect("a pointer into the module's code").get()(6), 18);
            // Jump tables and string tables reached from the code read as with relocations.
            let got: Vec<i64> = calls.iter().map(|(name, args)| call(&module, name, args)).collect();
            results.push(got);
        }
    }
    // The pointers stay relocations (4 of `shapes` and the others), the jump table's entries
    // do not once linked.
    let [linked, separate] = data_relocations[..] else { unreachable!() };
    assert!(linked >= 6 && separate > linked, "{linked} linked, {separate} apart");
    assert!(results.windows(2).all(|pair| pair[0] == pair[1]), "{results:?}");

    // R72 has no data sections: read-only data joins the code image there, with relocations
    // (pointer tables) or without (constants, string literals), and reads as natively.
    let (_, notes) = pack(&dir, "jump_tables.c", Dialect::R72, &["-fPIC"]).unwrap();
    assert!(says(&notes, "packed .rodata into the code image"), "{notes:?}");
    let source = dir.join("constants.c");
    std::fs::write(
        &source,
        "static const long table[] = {10, 20, 30};\n\
         const char *greeting(void) { return \"hello\"; }\n\
         long constant(long i) { return table[i] + greeting()[1]; }\n",
    )
    .unwrap();
    let object = compile(&dir, &source, &["-fPIC"]);
    let (bytes, notes) = smf_tool::pack::pack(&[object], Dialect::R72).unwrap();
    assert!(says(&notes, "packed .rodata.str1.1 into the code image"), "{notes:?}");
    let module = LoadedModule::load(allocator(), &bytes, &(), &LoadOptions::default()).unwrap();
    assert_eq!(call(&module, "constant", &[2]), 30 + i64::from(b'e'));
}

/// glibc's `pthread_atfork` and `at_quick_exit` (in `libc_nonshared.a`, linked into every
/// library, which the shared C library lacks) register under the module's own handle: its
/// fork and quick-exit handlers run as a native program's, and go when the module is released
/// (a second module of the same code counts its own fork handlers once and finds no quick-exit
/// handler, where the first's left behind would run from freed code).
#[test]
fn fork_and_quick_exit_handlers_register_under_the_module() {
    let calls: &[Call] =
        &[("fork_handlers", &[]), ("quick_exit_registered", &[]), ("quick_exit_status", &[])];
    let dir = scratch("registering");
    let expected = native(&dir, &["registering.c"], calls);
    assert_eq!(expected, [111, 0, 42], "native");
    let (bytes, notes) = pack(&dir, "registering.c", Dialect::S128, &["-fPIC"]).unwrap();
    let added = |text: &str| notes.iter().any(|note| note.routine && note.text.contains(text));
    assert!(added("added pthread_atfork: __register_atfork"), "{notes:?}");
    assert!(added("added at_quick_exit: __cxa_at_quick_exit"), "{notes:?}");
    for _ in 0..2 {
        let module =
            LoadedModule::load(allocator(), &bytes, &smf::imports::CLibrary, &LoadOptions::default())
                .unwrap();
        // The first module's quick-exit handler went with it: none runs before this one registers.
        assert_eq!(call(&module, "quick_exit_status", &[]), 0, "a released module's handler ran");
        let got: Vec<i64> = calls.iter().map(|(f, args)| call(&module, f, args)).collect();
        assert_eq!(got, expected);
    }
}

/// GNU indirect functions (`__attribute__((ifunc))`): calls, the address in a table of
/// pointers and a constructor's call all reach the function the resolver picked, the resolver
/// run once, before the constructors, as a native program runs it; R72, whose symbols cannot
/// address the slot, refuses it by name, and so does every dialect one defined in data.
#[test]
fn indirect_functions_are_resolved_once_before_the_constructors() {
    let calls: &[Call] =
        &[("ifunc_call", &[7]), ("ifunc_table", &[5]), ("ifunc_early", &[]), ("ifunc_same_address", &[])];
    check_source("ifunc.c", &WITH_DATA, calls);
    let dir = scratch("ifunc");
    let (bytes, _) = pack(&dir, "ifunc.c", Dialect::S128, &["-fPIC"]).unwrap();
    let module = LoadedModule::load(allocator(), &bytes, &(), &LoadOptions::default()).unwrap();
    assert_eq!(
        [
            call(&module, "ifunc_call", &[7]),
            call(&module, "ifunc_early", &[]),
            call(&module, "ifunc_resolved", &[])
        ],
        [21, 6, 1],
        "the resolver's pick, once (a native program may run it once per place the address is stored)"
    );
    // A weak indirect function (assembly's: GCC makes none) that another object's definition
    // overrides: the definition, from the module's own calls and from outside alike.
    let weak = dir.join("weak_ifunc.s");
    std::fs::write(
        &weak,
        ".text\n.type impl, @function\nimpl: lea (%rdi,%rdi,2), %rax\n ret\n\
         .type resolve, @function\nresolve: lea impl(%rip), %rax\n ret\n\
         .weak tc\n.type tc, @gnu_indirect_function\n.set tc, resolve\n\
         .globl via_weak\n.type via_weak, @function\nvia_weak: jmp tc@PLT\n",
    )
    .unwrap();
    let strong = dir.join("strong_tc.c");
    std::fs::write(&strong, "long tc(long x) { return x * 10; }\n").unwrap();
    let objects = [compile(&dir, &weak, &[]), compile(&dir, &strong, &["-fPIC"])];
    let (bytes, _) = smf_tool::pack::pack(&objects, Dialect::S128).unwrap();
    let module = LoadedModule::load(allocator(), &bytes, &(), &LoadOptions::default()).unwrap();
    assert_eq!([call(&module, "tc", &[2]), call(&module, "via_weak", &[2])], [20, 20]);
    let failure = pack(&dir, "ifunc.c", Dialect::R72, &["-fPIC"]).unwrap_err();
    let refused = failure.problems.iter().any(|p| {
        matches!(&p.error, smf_tool::pack::PackError::IndirectFunctionInR72 { symbol } if symbol == "triple")
    });
    assert!(refused, "{failure}");
    // One defined in data (assembly's: its "resolver" would be data the constructor calls).
    let in_data = dir.join("data_ifunc.s");
    std::fs::write(
        &in_data,
        ".data
.globl odd
.type odd, @gnu_indirect_function
odd: .quad 0
         .text
.globl call_odd
.type call_odd, @function
call_odd: jmp odd@PLT
",
    )
    .unwrap();
    let failure = smf_tool::pack::pack(&[compile(&dir, &in_data, &[])], Dialect::S128).unwrap_err();
    let refused = failure.problems.iter().any(|p| {
        matches!(&p.error, smf_tool::pack::PackError::IndirectFunctionNotInCode { symbol, section }
            if symbol == "odd" && section == ".data")
    });
    assert!(refused, "{failure}");
}
