//! Linking packed code: calls across two packed modules, and several objects packed into one
//! module (imports resolved between them, weak against strong definitions, one defined twice, C++
//! definitions every object carries made one).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use smf_format::module::RelocatedImage;
use smf_format::Dialect;
use smf_runtime::load::{LoadOptions, LoadedModule};
use smf_tool::pack::{PackError, PackFailure};

use crate::{allocator, call, compile, native, pack, run, scratch, source, Call, Loaded, ALL, WITH_DATA};

#[test]
fn calls_across_two_packed_modules_match_native() {
    let dir = scratch("two-modules");
    let calls: &[Call] = &[("lcm", &[21, 6]), ("set_scale", &[10]), ("main", &[]), ("gcd", &[84, 36])];
    let expected = native(&dir, &["mathlib.c", "app.c"], calls);
    for lib_dialect in WITH_DATA {
        for app_dialect in ALL {
            let (lib, _) = pack(&dir, "mathlib.c", lib_dialect, &["-fPIC"]).unwrap();
            let (app, _) = pack(&dir, "app.c", app_dialect, &["-fPIC"]).unwrap();
            let lib = Arc::new(LoadedModule::load(allocator(), &lib, &(), &LoadOptions::default()).unwrap());
            let resolver = Loaded(vec![lib.clone()]);
            let app = LoadedModule::load(allocator(), &app, &resolver, &LoadOptions::default()).unwrap();
            let got: Vec<i64> = calls
                .iter()
                .map(|(f, args)| {
                    if app.symbol(f.as_bytes()).is_some() {
                        call(&app, f, args)
                    } else {
                        call(&lib, f, args)
                    }
                })
                .collect();
            assert_eq!(got, expected, "mathlib as {lib_dialect}, app as {app_dialect}");
        }
    }
}

/// `gcc -c -O2 -fPIC` of each source, then one call of the packer on all the objects; the
/// module's bytes, or the packer's error.
fn pack_together(dir: &Path, sources: &[&Path], dialect: Dialect) -> Result<Vec<u8>, PackFailure> {
    let objects: Vec<_> = sources.iter().map(|source| compile(dir, source, &["-fPIC"])).collect();
    smf_tool::pack::pack(&objects, dialect).map(|(bytes, _)| bytes)
}

#[test]
fn several_objects_pack_into_one_module_that_matches_native() {
    let dir = scratch("together");
    let calls: &[Call] = &[("lcm", &[21, 6]), ("set_scale", &[10]), ("main", &[]), ("gcd", &[84, 36])];
    let expected = native(&dir, &["mathlib.c", "app.c"], calls);
    for dialect in WITH_DATA {
        let bytes = pack_together(&dir, &[&source("app.c"), &source("mathlib.c")], dialect).unwrap();
        let parsed = smf_format::Module::parse(&bytes).unwrap();
        // app's reference to gcd links to mathlib's definition: no import is left.
        assert!(parsed.symbols().all(|s| s.kind != smf_format::SymbolKind::Import), "{dialect}");
        assert!(parsed.header().is_executable(), "main is the entry point");
        let module = LoadedModule::load(allocator(), &bytes, &(), &LoadOptions::default()).unwrap();
        let got: Vec<i64> = calls.iter().map(|(f, args)| call(&module, f, args)).collect();
        assert_eq!(got, expected, "{dialect}");
    }

    // A strong definition beats a weak one (in either order); an import both need is one import.
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let weak = write(
        "weak.c",
        "#include <string.h>\n__attribute__((weak)) long hook(void) { return 1; }\n\
         long first(const char *s) { return hook() + (long)strlen(s); }\n",
    );
    let strong = write("strong.c", "#include <string.h>\nlong hook(void) { return 40; }\nlong second(const char *s) { return hook() + (long)strlen(s); }\n");
    for order in [[&weak, &strong], [&strong, &weak]] {
        let order: Vec<&Path> = order.iter().map(|p| p.as_path()).collect();
        let bytes = pack_together(&dir, &order, Dialect::R96).unwrap();
        let parsed = smf_format::Module::parse(&bytes).unwrap();
        let imports: Vec<_> = parsed
            .symbols()
            .filter(|s| s.kind == smf_format::SymbolKind::Import)
            .map(|s| s.name.to_vec())
            .collect();
        assert_eq!(imports, [b"strlen".to_vec()]);
        let strlen: extern "C" fn(*const std::ffi::c_char) -> usize = libc_strlen;
        let libc = [(&b"strlen"[..], strlen as usize)];
        let module = LoadedModule::load(
            allocator(),
            &bytes,
            &smf_runtime::load::TableResolver(&libc),
            &LoadOptions::default(),
        )
        .unwrap();
        let (ab, abc) = (c"ab".as_ptr() as i64, c"abc".as_ptr() as i64);
        assert_eq!((call(&module, "first", &[ab]), call(&module, "second", &[abc])), (42, 43));
    }

    // Two strong definitions: refused, naming both objects.
    let again = write("again.c", "long hook(void) { return 7; }\n");
    let failure = pack_together(&dir, &[&strong, &again], Dialect::R96).unwrap_err();
    let problem = &failure.problems[0];
    assert!(
        matches!(&problem.error, PackError::DefinedTwice { name, first, second }
            if name == "hook" && first.ends_with("strong.o") && second.ends_with("again.o")),
        "{failure}"
    );
    assert!(problem.object.ends_with("again.o"), "{failure}");
    assert!(problem.error.to_string().starts_with("hook is defined in both"), "{failure}");
    // A C++ name is said as C++ spells it (C may define one by its mangled name).
    let first = write("scale1.c", "long _Z5scalei(int x) { return x; }\n");
    let second = write("scale2.c", "long _Z5scalei(int x) { return x + 1; }\n");
    let failure = pack_together(&dir, &[&first, &second], Dialect::R96).unwrap_err();
    let message = failure.problems[0].error.to_string();
    assert!(message.starts_with("scale(int) is defined in both"), "{message}");
}

/// C++ definitions every object that uses them carries (a template's static member, an inline
/// function's static local: `STB_GNU_UNIQUE` in GCC's objects) are one definition in the
/// module, as `ld` makes them: what one object's code changes, the other's sees.
#[test]
fn cpp_definitions_each_object_carries_are_one_in_the_module() {
    let dir = scratch("unique");
    std::fs::write(
        dir.join("shared.h"),
        "inline int shared_counter() { static int n; return ++n; }\n\
         template <class T> struct Holder { static int count; };\n\
         template <class T> int Holder<T>::count = 5;\n",
    )
    .unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, format!("#include \"shared.h\"\n{text}")).unwrap();
        path
    };
    let a =
        write("a.cpp", "extern \"C\" long from_a() { Holder<int>::count += 10; return shared_counter(); }\n");
    let b = write(
        "b.cpp",
        "extern \"C\" long from_b() { return shared_counter() * 100 + Holder<int>::count; }\n",
    );
    let object = compile(&dir, &a, &["-fPIC"]);
    use object::{Object, ObjectSymbol};
    let unique = object::File::parse(&*object.1).unwrap().symbols().any(|s| {
        matches!(s.flags(), object::SymbolFlags::Elf { st_info, .. }
            if st_info.st_bind() == object::elf::STB_GNU_UNIQUE)
    });
    assert!(unique, "this compiler makes unique globals (else the test shows nothing new)");
    for dialect in WITH_DATA {
        let bytes = pack_together(&dir, &[&a, &b], dialect).unwrap();
        let module = LoadedModule::load(allocator(), &bytes, &(), &LoadOptions::default()).unwrap();
        assert_eq!(call(&module, "from_a", &[]), 1, "{dialect}");
        assert_eq!(call(&module, "from_b", &[]), 2 * 100 + 15, "{dialect}: one counter, one count");
    }
}

extern "C" fn libc_strlen(s: *const std::ffi::c_char) -> usize {
    // SAFETY: the packed code passes NUL-terminated string constants.
    unsafe { std::ffi::CStr::from_ptr(s) }.to_bytes().len()
}

/// An archive among the inputs gives the module the members the objects need, wherever it is
/// among them, and those members' own needs; a weak reference takes no member (as in `ld`),
/// nor does a name an object defines already. Alone, it gives every member.
#[test]
fn archives_give_the_members_the_objects_need() {
    let dir = scratch("archive");
    let object = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        compile(&dir, &path, &["-fPIC"])
    };
    let app = object(
        "app.c",
        "long twice(long);\n__attribute__((weak)) long optional(long);\n\
         long helper(long x) { return x + 1; }\n\
         long f(long x) { return twice(x) + (optional ? optional(x) : 0); }\n",
    );
    let members = [
        object("twice.c", "long helper(long);\nlong twice(long x) { return 2 * helper(x); }\n"),
        object("helper.c", "long helper(long x) { return x - 1000; }\n"),
        object("optional.c", "long optional(long x) { return 1000 * x; }\n"),
    ];
    let archive = dir.join("libparts.a");
    let _ = std::fs::remove_file(&archive);
    let paths: Vec<std::path::PathBuf> = members.iter().map(|(name, _)| name.into()).collect();
    let made = std::process::Command::new("ar").arg("rcs").arg(&archive).args(&paths).status().unwrap();
    assert!(made.success());
    let archive = (archive.display().to_string(), std::fs::read(&archive).unwrap());
    for inputs in [[app.clone(), archive.clone()], [archive.clone(), app.clone()]] {
        let (bytes, notes) = smf_tool::pack::pack(&inputs, Dialect::R96).unwrap();
        assert!(notes.iter().any(|n| n.text.starts_with("took 1 of the 3 members of")), "{notes:?}");
        let module = LoadedModule::load(allocator(), &bytes, &(), &LoadOptions::default()).unwrap();
        // twice(5) = 2 * helper(5) with the object's helper; no optional: 12.
        assert_eq!(call(&module, "f", &[5]), 12);
    }
    // The archive alone (a static library made into a module): every member, linked together.
    let (bytes, notes) = smf_tool::pack::pack(&[archive], Dialect::R96).unwrap();
    assert!(notes.iter().any(|n| n.text.starts_with("took all 3 object members of")), "{notes:?}");
    let module = LoadedModule::load(allocator(), &bytes, &(), &LoadOptions::default()).unwrap();
    assert_eq!(call(&module, "twice", &[5]), 2 * (5 - 1000), "the member's own helper");
    assert_eq!(call(&module, "optional", &[2]), 2000);
}

/// Common symbols (`-fcommon`, an assembler's `.comm`) are allocated as `ld` allocates them:
/// one variable per name in the bss, as large and as aligned as the largest of them; a
/// definition overrides them, and they override a weak definition; an archive member whose
/// common symbol the objects need is taken, and one defining a name the objects hold only as
/// common. The results are a native link's. An alignment no module can give is refused by name.
#[test]
fn common_symbols_are_allocated_as_ld_allocates_them() {
    let dir = scratch("commons");
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let common = |name: &str, text: &str| compile(&dir, &write(name, text), &["-fPIC", "-fcommon"]);
    let counting = common(
        "counting.c",
        "int counter;\nextern char buffer[];\n\
         long bump(void) { counter++; buffer[63] = 7; return counter; }\n",
    );
    let wide = common(
        "wide.c",
        "long counter[2];\nextern char buffer[];\n\
         long wide(void) { counter[1] = 40; return counter[0] + counter[1] + buffer[63] + sizeof counter; }\n",
    );
    let weak = common(
        "weak.c",
        "__attribute__((weak)) long counter[2] = {100, 200};\nlong weak_first(void) { return 0; }\n",
    );
    // The buffer an archive member gives as a common symbol of the assembler's, aligned to 64.
    let asm = write("buffer.s", ".comm buffer,64,64\n.globl buffer_here\nbuffer_here: ret\n");
    let member = dir.join("buffer.o");
    run(Command::new("gcc").arg("-c").arg(&asm).arg("-o").arg(&member));
    let archive = dir.join("libbuffer.a");
    let _ = std::fs::remove_file(&archive);
    run(Command::new("ar").arg("rcs").arg(&archive).arg(&member));
    let archive = (archive.display().to_string(), std::fs::read(&archive).unwrap());

    // As a native link of the same objects runs them: bump twice, then wide: counter[0] is 2
    // (the int sharing its first bytes), the weak definition's {100, 200} dropped.
    let calls: [(&str, &[i64]); 3] = [("bump", &[]), ("bump", &[]), ("wide", &[])];
    let expected = [1, 2, 2 + 40 + 7 + 16];
    let (bytes, _) =
        smf_tool::pack::pack(&[counting.clone(), wide.clone(), weak, archive.clone()], Dialect::S128)
            .unwrap_or_else(|failure| panic!("{failure}"));
    let module = LoadedModule::load(allocator(), &bytes, &(), &LoadOptions::default()).unwrap();
    let got: Vec<i64> = calls.iter().map(|(f, args)| call(&module, f, args)).collect();
    assert_eq!(got, expected, "the common symbol over the weak definition");
    let parsed = smf_format::Module::parse(&bytes).unwrap();
    let counter = parsed.symbols().find(|s| s.name == b"counter").unwrap();
    assert_eq!(counter.size, 16, "the largest size");
    let buffer = module.symbol(b"buffer").unwrap();
    assert_eq!(buffer % 64, 0, "the largest alignment");

    // A definition overrides every common symbol of its name.
    let defined = common("defined.c", "long counter[2] = {1000, 0};\n");
    let (bytes, _) = smf_tool::pack::pack(&[counting, wide, defined, archive], Dialect::S128).unwrap();
    let module = LoadedModule::load(allocator(), &bytes, &(), &LoadOptions::default()).unwrap();
    assert_eq!(call(&module, "bump", &[]), 1001);
    assert_eq!(call(&module, "wide", &[]), 1001 + 40 + 7 + 16);

    // A name the objects hold only as a common symbol takes the archive member that defines it
    // (as ld takes it), whose definition then stands.
    let holder = common("holder.c", "int shared_value;\nlong read_shared(void) { return shared_value; }\n");
    let definer = common("definer.c", "int shared_value = 5;\n");
    let library = dir.join("libdefiner.a");
    let _ = std::fs::remove_file(&library);
    run(Command::new("ar").arg("rcs").arg(&library).arg(&definer.0));
    let library = (library.display().to_string(), std::fs::read(&library).unwrap());
    let (bytes, notes) = smf_tool::pack::pack(&[holder, library], Dialect::S128).unwrap();
    assert!(notes.iter().any(|n| n.text.starts_with("took 1 of the 1 members")), "{notes:?}");
    let module = LoadedModule::load(allocator(), &bytes, &(), &LoadOptions::default()).unwrap();
    assert_eq!(call(&module, "read_shared", &[]), 5);

    // A common symbol's alignment (its ELF value) that is no power of two, or more than a
    // module gives, is refused by name, as a section's is (an assembler writes neither: the
    // symbol's value patched).
    let (name, mut object) = compile(&dir, &write("odd.s", ".comm odd,8,8\n"), &[]);
    let at = {
        use object::{Object, ObjectSection, ObjectSymbol};
        let file = object::File::parse(&*object).unwrap();
        let symbol = file.symbols().find(|s| s.name() == Ok("odd")).unwrap();
        let symtab = file.section_by_name(".symtab").unwrap().file_range().unwrap().0;
        (symtab + 24 * symbol.index().0 as u64 + 8) as usize
    };
    for align in [3u64, 1 << 63] {
        object[at..at + 8].copy_from_slice(&align.to_le_bytes());
        let failure = smf_tool::pack::pack(&[(name.clone(), object.clone())], Dialect::S128).unwrap_err();
        let refused = failure.problems.iter().any(|p| {
            matches!(&p.error, smf_tool::pack::PackError::CommonAlignment { symbol, align: a } if symbol == "odd" && *a == align)
        });
        assert!(refused, "{failure}");
    }
}

#[test]
fn calls_between_a_modules_own_functions_are_linked_when_it_is_packed_and_data_named_by_section() {
    let dir = scratch("own-calls");
    let calls: &[Call] =
        &[("combine", &[3]), ("combine_again", &[5]), ("square", &[9]), ("farewell_char", &[4])];
    let expected = native(&dir, &["own_calls.c"], calls);
    for dialect in WITH_DATA {
        let (bytes, _) = pack(&dir, "own_calls.c", dialect, &["-fPIC"]).unwrap();
        let parsed = smf_format::Module::parse(&bytes).unwrap();
        let symbols: Vec<_> = parsed.symbols().collect();
        let relocations: Vec<_> = parsed.relocations().collect();
        // Every call lands at a fixed distance in the code: no relocation is left for one.
        let in_code = |index: u32| {
            symbols
                .iter()
                .any(|s| s.index == index && matches!(s.target, smf_format::module::SymbolTarget::Code(_)))
        };
        let linked_kinds = [smf_format::RelocKind::Pc32, smf_format::RelocKind::Plt32];
        assert!(
            !relocations.iter().any(|r| {
                r.image == RelocatedImage::Code && linked_kinds.contains(&r.kind) && in_code(r.symbol)
            }),
            "{dialect}: a call between the module's own functions is still a relocation: {relocations:?}"
        );
        // What needs the load address stays: the references to the data.
        assert!(relocations.iter().any(|r| r.image == RelocatedImage::Code), "{dialect}");
        // Nothing names a section or an assembler label unless a relocation needs it; the
        // static function keeps its name (for debuggers and profilers) among the module's
        // function names, apart from the symbols a load links.
        let named = |name: &[u8]| symbols.iter().any(|s| s.name == name);
        assert!(!named(b"twice") && named(b"combine"), "{dialect}");
        let twice = parsed.function_names().iter().find(|f| f.name() == b"twice");
        assert!(twice.is_some_and(|f| f.size > 0 && f.offset < parsed.code_size()), "{dialect}: {twice:?}");
        // References to static variables name their section's start, as `as` writes them:
        // one symbol per section, not one per variable or string.
        assert!(!named(b"greeting") && !named(b"counter") && !named(b".LC0"), "{dialect}: {symbols:?}");
        for symbol in &symbols {
            let needed = relocations.iter().any(|r| r.symbol == symbol.index);
            assert!(
                needed || !symbol.name.starts_with(b"."),
                "{dialect}: {:?} is kept with nothing referring to it",
                String::from_utf8_lossy(symbol.name)
            );
        }
        let module = LoadedModule::load(allocator(), &bytes, &(), &LoadOptions::default()).unwrap();
        let got: Vec<i64> = calls.iter().map(|(f, args)| call(&module, f, args)).collect();
        assert_eq!(got, expected, "own_calls.c packed as {dialect}");
    }
}
