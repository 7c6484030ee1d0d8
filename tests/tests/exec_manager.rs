//! The execution manager (`smf::exec_manager`, feature `cranelift`): CLIF compiled for the host
//! and executed by name; recursive and mutually recursive functions; calls into a loaded module
//! and from a module loaded afterwards; redefinition (new callers get the new code, held
//! addresses keep the old); errors that name what failed, never a call; W^X while several
//! threads compile and execute; the C ABI; the `clif` fuzz corpus and past findings replayed.

#![allow(unsafe_code)] // calling a compiled function through its address

use smf::exec_manager::{ExecManager, ExecManagerError, OptLevel};
use smf_tests::clif::{all_live, live_across_blocks};

/// The example front end (`shell/examples/expr_lang`): a tiny expression language to CLIF.
#[path = "../../shell/examples/expr_lang/front_end.rs"]
mod front_end;

const FACTORIAL_AND_PARITY: &str = "
function %factorial(i64) -> i64 {
    fn0 = %factorial(i64) -> i64
block0(v0: i64):
    v1 = iconst.i64 1
    v2 = icmp sle v0, v1
    brif v2, block1, block2
block1:
    return v1
block2:
    v3 = isub v0, v1
    v4 = call fn0(v3)
    v5 = imul v0, v4
    return v5
}

function %is_even(i64) -> i64 {
    fn0 = %is_odd(i64) -> i64
block0(v0: i64):
    brif v0, block2, block1
block1:
    v1 = iconst.i64 1
    return v1
block2:
    v2 = iconst.i64 1
    v3 = isub v0, v2
    v4 = call fn0(v3)
    return v4
}

function %is_odd(i64) -> i64 {
    fn0 = %is_even(i64) -> i64
block0(v0: i64):
    brif v0, block2, block1
block1:
    v1 = iconst.i64 0
    return v1
block2:
    v2 = iconst.i64 1
    v3 = isub v0, v2
    v4 = call fn0(v3)
    return v4
}
";

/// A function `NAME` of no arguments returning `value`.
fn constant(name: &str, value: i64) -> String {
    format!("function %{name}() -> i64 {{\nblock0:\n    v0 = iconst.i64 {value}\n    return v0\n}}\n")
}

#[test]
fn recursive_and_mutually_recursive_functions_run_at_every_opt_level() {
    for opt in [OptLevel::None, OptLevel::Speed, OptLevel::SpeedAndSize] {
        let manager = ExecManager::new(opt).unwrap();
        let defined = manager.compile_clif(FACTORIAL_AND_PARITY).unwrap();
        assert_eq!(defined, ["factorial", "is_even", "is_odd"]);
        assert_eq!(manager.execute("factorial", &[10]).unwrap(), 3_628_800, "{opt:?}");
        assert_eq!(manager.execute("factorial", &[20]).unwrap(), 2_432_902_008_176_640_000);
        assert_eq!(manager.execute("is_even", &[10]).unwrap(), 1);
        assert_eq!(manager.execute("is_odd", &[7]).unwrap(), 1);
        assert_eq!(manager.execute("is_even", &[7]).unwrap(), 0);
        assert!(manager.has_function("is_odd") && !manager.has_function("is_three"));
        assert_eq!(manager.function_names(), ["factorial", "is_even", "is_odd"]);
    }
}

#[test]
fn a_later_batch_calls_an_earlier_one_and_the_c_library() {
    let manager = ExecManager::new(OptLevel::Speed).unwrap();
    manager.compile_clif(&constant("ten", 10)).unwrap();
    // `ten` from the batch before; `labs` from the C library.
    manager
        .compile_clif(
            "function %ten_minus_abs(i64) -> i64 {
                fn0 = %ten() -> i64
                fn1 = %labs(i64) -> i64
            block0(v0: i64):
                v1 = call fn0()
                v2 = call fn1(v0)
                v3 = isub v1, v2
                return v3
            }",
        )
        .unwrap();
    assert_eq!(manager.execute("ten_minus_abs", &[-4]).unwrap(), 6);
}

#[test]
fn user_names_come_from_the_name_table_and_host_symbols_link() {
    use smf::exec_manager::codegen::ir::UserExternalName;
    extern "C" fn host_offset() -> i64 {
        1000
    }
    smf::imports::define_host(b"exec_manager_host_offset", host_offset as extern "C" fn() -> i64 as usize)
        .unwrap();
    let manager = ExecManager::new(OptLevel::None).unwrap();
    // As a translator builds them: functions and callees named by user names (namespace,
    // index), which the table turns into names.
    let functions = ExecManager::parse_clif(
        "function u0:1(i64) -> i64 {
            fn0 = u0:2() -> i64
        block0(v0: i64):
            v1 = call fn0()
            v2 = iadd v0, v1
            return v2
        }",
    )
    .unwrap();
    let names = [
        (UserExternalName::new(0, 1), "plus_offset"),
        (UserExternalName::new(0, 2), "exec_manager_host_offset"),
    ]
    .into_iter()
    .map(|(user, name)| (user, name.to_owned()))
    .collect();
    assert_eq!(manager.compile_functions(functions, &names).unwrap(), ["plus_offset"]);
    assert_eq!(manager.execute("plus_offset", &[24]).unwrap(), 1024);
    // A user name the table does not have: refused, naming it.
    let functions = ExecManager::parse_clif(
        "function u0:7() -> i64 {\nblock0:\n    v0 = iconst.i64 0\n    return v0\n}\n",
    )
    .unwrap();
    let unnamed = manager.compile_functions(functions, &names).unwrap_err();
    assert!(matches!(unnamed, ExecManagerError::Unnamed(ref name) if name == "u0:7"), "{unnamed:?}");
    assert!(smf::imports::undefine_host(b"exec_manager_host_offset"));

    // A translator's function calling a user name it never declared: refused, never a panic.
    let mut functions = ExecManager::parse_clif(
        "function u0:3() -> i64 {\n    fn0 = u0:2() -> i64\nblock0:\n    v0 = call fn0()\n    return v0\n}\n",
    )
    .unwrap();
    let callee = functions[0].dfg.ext_funcs.keys().next().unwrap();
    let undeclared = smf::exec_manager::codegen::ir::UserExternalNameRef::from_u32(9);
    functions[0].dfg.ext_funcs[callee].name = smf::exec_manager::codegen::ir::ExternalName::User(undeclared);
    let names: smf::exec_manager::NameTable =
        [(UserExternalName::new(0, 3), "calls_undeclared".to_owned())].into();
    let refused = manager.compile_functions(functions, &names).unwrap_err();
    assert!(refused.to_string().contains("not declared by the function"), "{refused}");
}

/// A module exporting `five` (returns 5), for this host.
fn library_exporting_five() -> Vec<u8> {
    #[cfg(target_arch = "x86_64")]
    return smf_tests::linking::library(smf_format::Dialect::R96);
    #[cfg(target_arch = "aarch64")]
    return smf_format::write::samples::aarch64_library();
}

/// A module whose `calls_compiled` jumps to the import `NAME` (its arguments passed on).
fn module_calling(name: &str) -> Vec<u8> {
    use smf_format::write::{ModuleBuilder, SymbolSpec};
    use smf_format::{Dialect, RelocKind};
    let mut b = ModuleBuilder::new(Dialect::R96);
    let import = b.add_symbol(SymbolSpec::import(name.as_bytes()));
    let size = if cfg!(target_arch = "aarch64") {
        b.header(|h| h.arch = 1);
        b.add_code(b".text", &0x1400_0000u32.to_le_bytes()); // b NAME
        b.add_relocation(0, import, RelocKind::Aarch64Branch26, 0);
        4
    } else {
        b.add_code(b".text", &[0xE9, 0, 0, 0, 0]); // jmp NAME
        b.add_relocation(1, import, RelocKind::Plt32, -4);
        5
    };
    b.add_symbol(SymbolSpec::function(b"calls_compiled", 0, size));
    b.build().unwrap()
}

#[test]
fn compiled_code_calls_loaded_modules_and_modules_loaded_afterwards_call_it() {
    let library = smf::loader::load(&smf::loader::LoadRequest::bytes(&library_exporting_five())).unwrap();
    let manager = ExecManager::new(OptLevel::None).unwrap();
    manager
        .compile_clif(
            "function %five_times(i64) -> i64 {
                fn0 = %five() -> i64
            block0(v0: i64):
                v1 = call fn0()
                v2 = imul v0, v1
                return v2
            }",
        )
        .unwrap();
    assert_eq!(manager.execute("five_times", &[9]).unwrap(), 45);

    let later = smf::loader::load(&smf::loader::LoadRequest::bytes(&module_calling("five_times"))).unwrap();
    // SAFETY: `calls_compiled` jumps to `five_times(i64) -> i64`.
    assert_eq!(unsafe { later.call_integers(Some(b"calls_compiled"), &[3]) }.unwrap(), 15);
    // The module keeps the compiled code alive after the manager is gone.
    drop(manager);
    // SAFETY: as above.
    assert_eq!(unsafe { later.call_integers(Some(b"calls_compiled"), &[4]) }.unwrap(), 20);
    // ...but a module loaded now finds no `five_times` to link.
    let error = smf::loader::load(&smf::loader::LoadRequest::bytes(&module_calling("five_times")))
        .expect_err("five_times was withdrawn with its manager");
    assert!(error.to_string().contains("five_times"), "{error}");
    drop(library);
}

#[test]
fn compiling_a_name_again_gives_new_callers_the_new_code_and_keeps_the_old() {
    let manager = ExecManager::new(OptLevel::None).unwrap();
    manager.compile_clif(&constant("version", 1)).unwrap();
    let first = manager.address("version").unwrap();
    let before = smf::loader::load(&smf::loader::LoadRequest::bytes(&module_calling("version"))).unwrap();
    manager.compile_clif(&constant("version", 2)).unwrap();
    assert_eq!(manager.execute("version", &[]).unwrap(), 2);
    assert_ne!(manager.address("version"), Some(first));
    let after = smf::loader::load(&smf::loader::LoadRequest::bytes(&module_calling("version"))).unwrap();
    // SAFETY: `calls_compiled` jumps to `version() -> i64`.
    let (old, new) = unsafe {
        (
            before.call_integers(Some(b"calls_compiled"), &[]).unwrap(),
            after.call_integers(Some(b"calls_compiled"), &[]).unwrap(),
        )
    };
    assert_eq!((old, new), (1, 2), "linked before: the old code; after: the new");
    // The address handed out first still runs the old code.
    // SAFETY: `first` is `version() -> i64`, kept while the manager lives.
    let old_code = unsafe { smf_runtime::exec::function_pointer::<extern "C" fn() -> i64>(first) }.unwrap();
    assert_eq!(old_code(), 1);
}

#[test]
fn batches_compile_through_one_kept_context_and_a_dropped_manager_frees_them_all() {
    let manager = ExecManager::new(OptLevel::Speed).unwrap();
    // A batch of several functions goes through one reused Cranelift context: each comes out as
    // compiled alone would.
    manager.compile_clif(FACTORIAL_AND_PARITY).unwrap();
    manager.compile_clif(&(constant("one", 1) + &constant("two", 2))).unwrap();
    assert_eq!(manager.execute("factorial", &[10]).unwrap(), 3_628_800);
    assert_eq!((manager.execute("is_even", &[7]).unwrap(), manager.execute("is_odd", &[7]).unwrap()), (0, 1));
    assert_eq!((manager.execute("one", &[]).unwrap(), manager.execute("two", &[]).unwrap()), (1, 2));
    // The context is kept from batch to batch, not kept after a batch refused midway.
    let kept = |manager: &ExecManager| format!("{manager:?}").contains("kept_contexts: 1");
    assert!(kept(&manager), "{manager:?}");
    assert!(manager.compile_clif("function %broken() -> i64 {\nblock0:\n    return\n}").is_err());
    assert!(!kept(&manager) && format!("{manager:?}").contains("kept_contexts: 0"), "{manager:?}");
    manager.compile_clif(&constant("three", 3)).unwrap();
    assert!(kept(&manager), "{manager:?}");
    assert_eq!(manager.execute("three", &[]).unwrap(), 3);
    // Nor after a function larger than a kept context is meant to grow for.
    let mut big = String::from("function %big(i64) -> i64 {\nblock0(v0: i64):\n");
    for i in 1..=5000 {
        big += &format!("    v{i} = iadd v{}, v0\n", i - 1);
    }
    big += "    return v5000\n}\n";
    manager.compile_clif(&big).unwrap();
    assert_eq!(manager.execute("big", &[2]).unwrap(), 2 * 5001);
    assert!(format!("{manager:?}").contains("kept_contexts: 0"), "{manager:?}");
    // The batches' modules: the first only the manager holds, the second someone else too.
    let module_of = |name| smf::loader::code_containing(manager.address(name).unwrap()).unwrap();
    let (first, second) = (std::sync::Arc::downgrade(&module_of("factorial")), module_of("one"));
    assert!(first.upgrade().is_some_and(|m| m.symbol(b"is_odd").is_some()));
    drop(manager);
    assert!(first.upgrade().is_none(), "freed with the manager");
    // Held elsewhere: still there, and its code still runs, until its holder lets go.
    // SAFETY: `one` is `() -> i64`.
    assert_eq!(unsafe { second.call_integers(Some(b"one"), &[]) }.unwrap(), 1);
    let second_weak = std::sync::Arc::downgrade(&second);
    drop(second);
    assert!(second_weak.upgrade().is_none(), "freed by its last holder");
}

#[test]
fn compiling_times_no_pass_and_gives_the_thread_its_profiler_back() {
    use smf::exec_manager::codegen::timing::{self, Pass, Profiler};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts the passes Cranelift starts on this thread.
    struct Counting(Arc<AtomicUsize>);
    impl Profiler for Counting {
        fn start_pass(&self, _pass: Pass) -> Box<dyn std::any::Any> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Box::new(())
        }
    }
    let manager = ExecManager::new(OptLevel::Speed).unwrap();
    let names = smf::exec_manager::NameTable::new();
    let (functions, broken) = (
        ExecManager::parse_clif(FACTORIAL_AND_PARITY).unwrap(),
        ExecManager::parse_clif("function %broken() -> i64 {\nblock0:\n    return\n}").unwrap(),
    );
    let passes = Arc::new(AtomicUsize::new(0));
    let previous = timing::set_thread_profiler(Box::new(Counting(passes.clone())));
    manager.compile_functions(functions, &names).unwrap();
    assert_eq!(manager.execute("factorial", &[5]).unwrap(), 120);
    assert_eq!(
        passes.load(Ordering::Relaxed),
        0,
        "Cranelift's passes went untimed while the manager compiled"
    );
    // The thread's own profiler is back: the next pass Cranelift starts here is counted.
    drop(timing::verifier());
    assert_eq!(passes.load(Ordering::Relaxed), 1);
    // A batch refused gives it back too.
    assert!(manager.compile_functions(broken, &names).is_err());
    drop(timing::verifier());
    assert_eq!(passes.load(Ordering::Relaxed), 2);
    timing::set_thread_profiler(previous);
}

#[test]
fn failures_name_what_failed_and_never_call() {
    let manager = ExecManager::new(OptLevel::None).unwrap();
    let parse =
        manager.compile_clif("function %broken(i64) -> i64 {\nblock0(v0: i64):\n    v1 = bogus v0\n}\n");
    match parse {
        Err(ExecManagerError::Parse { line: 3, message }) => {
            assert!(message.ends_with("(in function broken)"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // A value number the reader would size its tables by: refused before it allocates.
    let huge =
        manager.compile_clif("function %f(i64) -> i64 {\nblock0(v0: i64):\n    return v1111111111\n}\n");
    match huge {
        Err(ExecManagerError::Parse { line: 3, message }) => {
            assert!(message.contains("v1111111111"), "{message}")
        }
        other => panic!("{other:?}"),
    }

    // Comments are not read for entity numbers, and sparse numbering within the floor compiles.
    let sparse = "; see r2000000 in the notes\nfunction %sparse() -> i64 {\nblock0:\n    v2000 = iconst.i64 7 ; v9999999\n    return v2000\n}\n";
    assert_eq!(manager.compile_clif(sparse).unwrap(), ["sparse"]);
    assert_eq!(manager.execute("sparse", &[]).unwrap(), 7);
    // A `;` inside a string starts no comment: what follows is still counted, and the
    // functions' largest numbers add up (each function's tables are sized by its own).
    let in_string = "feature \"a;\" function %f() -> i64 {\n    gv20000000 = symbol %foo\nblock0:\n    v0 = iconst.i64 1\n    return v0\n}\n";
    match manager.compile_clif(in_string) {
        Err(ExecManagerError::Parse { message, .. }) => assert!(message.contains("gv20000000"), "{message}"),
        other => panic!("{other:?}"),
    }
    let sparse_function = |i: usize| {
        format!(
            "function %sparse_{i}() -> i64 {{\nblock0:\n    v60000 = iconst.i64 {i}\n    return v60000\n}}\n"
        )
    };
    let many: String = (0..3).map(sparse_function).collect();
    match manager.compile_clif(&many) {
        Err(ExecManagerError::Parse { line, message }) => {
            assert_eq!(line, 8, "the second function's number passes the sum: {message}");
            assert!(message.starts_with("`v60000`: entity numbers past"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // What Cranelift refuses by panicking (here a function with no block) names the function
    // and says Cranelift's reason.
    match manager.compile_clif("function %no_blocks() {\n}\n") {
        Err(ExecManagerError::Compile { function, message }) => {
            assert_eq!(function, "no_blocks");
            assert!(message.starts_with("Cranelift panicked compiling it: "), "{message}");
            assert!(!message.ends_with("(no message)"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    // A call declared with another signature than its callee's: refused, naming both, whether
    // the callee is in the batch or compiled before; the batch defines nothing.
    let two = "function %two(i64, i64) -> i64 {\nblock0(v0: i64, v1: i64):\n    v2 = iadd v0, v1\n    return v2\n}\n";
    let calls_two = |declared: &str, args: &str| {
        format!("function %calls_two() -> i64 {{\n    fn0 = %two({declared}) -> i64\nblock0:\n    v0 = iconst.i64 3\n    v1 = call fn0({args})\n    return v1\n}}\n")
    };
    for clif in [format!("{two}{}", calls_two("i64", "v0")), calls_two("", "")] {
        if !clif.contains("function %two") {
            manager.compile_clif(two).unwrap();
        }
        match manager.compile_clif(&clif) {
            Err(ExecManagerError::Link { function, what }) => {
                assert_eq!(function, "calls_two");
                assert!(
                    what.starts_with("a call to two as (i64) -> i64")
                        || what.starts_with("a call to two as () -> i64"),
                    "{what}"
                );
                assert!(what.contains("which is (i64, i64) -> i64"), "{what}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!manager.has_function("calls_two"));
    }
    assert_eq!(manager.compile_clif(&calls_two("i64, i64", "v0, v0")).unwrap(), ["calls_two"]);
    assert_eq!(manager.execute("calls_two", &[]).unwrap(), 6);
    // Only calls are checked, and a call may leave the callee's result unread: a declaration
    // no call uses and an address taken under a placeholder signature compile.
    let lenient = "function %lenient() -> i64 {\n    fn0 = %two(i64, i64)\n    fn1 = %two() -> i64\n    fn2 = %two(i64) -> i64\nblock0:\n    v0 = iconst.i64 4\n    call fn0(v0, v0)\n    v1 = func_addr.i64 fn1\n    return v0\n}\n";
    assert_eq!(manager.compile_clif(lenient).unwrap(), ["lenient"]);
    assert_eq!(manager.execute("lenient", &[]).unwrap(), 4);

    // Returns an i32 where the signature says i64: the verifier refuses it, naming the function.
    let verify = manager
        .compile_clif("function %mistyped() -> i64 {\nblock0:\n    v0 = iconst.i32 1\n    return v0\n}\n");
    match verify {
        Err(ExecManagerError::Compile { function, message }) => {
            assert_eq!(function, "mistyped");
            assert!(message.contains("verifier"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let twice = manager.compile_clif(&(constant("same", 1) + &constant("same", 2)));
    assert!(matches!(twice, Err(ExecManagerError::DefinedTwice(ref name)) if name == "same"), "{twice:?}");
    // Names are checked before anything compiles: a repeat wins over an earlier function
    // the verifier would refuse.
    let mistyped = "function %mistyped() -> i64 {\nblock0:\n    v0 = iconst.i32 1\n    return v0\n}\n";
    let both = manager.compile_clif(&(mistyped.to_owned() + &constant("again", 1) + &constant("again", 2)));
    assert!(matches!(both, Err(ExecManagerError::DefinedTwice(ref name)) if name == "again"), "{both:?}");
    // A call nothing resolves: the load fails, naming it; nothing of the batch is defined.
    let unresolved = manager.compile_clif(
        "function %calls_nothing() -> i64 {\n    fn0 = %nowhere_to_be_found() -> i64\nblock0:\n    v0 = call fn0()\n    return v0\n}\n",
    );
    match unresolved {
        Err(e @ ExecManagerError::Load(_)) => assert!(e.to_string().contains("nowhere_to_be_found"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(!manager.has_function("calls_nothing"));

    manager.compile_clif(FACTORIAL_AND_PARITY).unwrap();
    manager
        .compile_clif("function %half(f64) -> f64 {\nblock0(v0: f64):\n    v1 = f64const 0x1.0p-1\n    v2 = fmul v0, v1\n    return v2\n}\n")
        .unwrap();
    assert!(matches!(manager.execute("missing", &[]), Err(ExecManagerError::UnknownFunction(_))));
    assert!(matches!(
        manager.execute("factorial", &[1, 2]),
        Err(ExecManagerError::Arity { expected: 1, given: 2, .. })
    ));
    let signature = manager.execute("half", &[1]);
    assert!(matches!(signature, Err(ExecManagerError::Signature { .. })), "{signature:?}");
    assert_eq!(
        manager.compile_source("1 + 2").unwrap_err().to_string(),
        "no front end is registered to compile source (the runtime registers one: smf::exec_manager::set_default_front_end, or ExecManager::set_front_end for one manager)"
    );
    assert!(matches!(
        manager.compile_file(std::path::Path::new("/nonexistent")),
        Err(ExecManagerError::NoFrontEnd)
    ));
}

#[test]
fn a_call_is_checked_against_the_definition_it_links_to_whichever_manager_made_it() {
    let (a, b) = (ExecManager::new(OptLevel::None).unwrap(), ExecManager::new(OptLevel::None).unwrap());
    let helper = |params: &str, body: &str| {
        format!("function %cross_helper({params}) -> i64 {{\nblock0({body}):\n    return v0\n}}\n")
    };
    a.compile_clif(&helper("i64", "v0: i64")).unwrap();
    // B's definition comes later: it is the one a load links `cross_helper` to now.
    b.compile_clif(&helper("i64, i64", "v0: i64, v1: i64")).unwrap();
    let caller = |declared: &str, args: &str| {
        format!("function %cross_caller() -> i64 {{\n    fn0 = %cross_helper({declared}) -> i64\nblock0:\n    v0 = iconst.i64 5\n    v1 = call fn0({args})\n    return v1\n}}\n")
    };
    match a.compile_clif(&caller("i64", "v0")) {
        Err(ExecManagerError::Link { function, what }) => {
            assert_eq!(function, "cross_caller");
            assert!(what.contains("which is (i64, i64) -> i64"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(a.compile_clif(&caller("i64, i64", "v0, v0")).unwrap(), ["cross_caller"]);
    assert_eq!(a.execute("cross_caller", &[]).unwrap(), 5);
}

#[test]
fn a_front_end_turns_source_into_clif() {
    let manager = ExecManager::new(OptLevel::None).unwrap();
    // A front end of one rule: `NAME = NUMBER` defines a constant function.
    manager.set_front_end(std::sync::Arc::new(|source: &str| {
        let (name, value) = source.split_once('=').ok_or("expected NAME = NUMBER")?;
        let value: i64 = value.trim().parse().map_err(|e| format!("{e}"))?;
        Ok(constant(name.trim(), value))
    }));
    assert_eq!(manager.compile_source("answer = 42").unwrap(), ["answer"]);
    assert_eq!(manager.execute("answer", &[]).unwrap(), 42);
    let refused = manager.compile_source("no equals sign").unwrap_err();
    assert_eq!(refused.to_string(), "the front end refused the source: expected NAME = NUMBER");
    let dir = smf_tests::scratch("exec-manager", "source");
    let file = dir.join("seven.src");
    std::fs::write(&file, "seven = 7").unwrap();
    manager.compile_file(&file).unwrap();
    assert_eq!(manager.execute("seven", &[]).unwrap(), 7);
    // Only regular files: a FIFO with no writer would block the read, a device never end it.
    let fifo = dir.join("fifo.src");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    for special in [fifo.as_path(), std::path::Path::new("/dev/zero")] {
        let started = std::time::Instant::now();
        let refused = manager.compile_file(special).unwrap_err();
        assert!(refused.to_string().ends_with(": not a regular file"), "{refused}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_example_front_end_compiles_recursion_and_calls_into_the_c_library() {
    let manager = ExecManager::new(OptLevel::Speed).unwrap();
    manager.set_front_end(std::sync::Arc::new(front_end::to_clif));
    let source = "def expr_fact(n) = if n < 2 then 1 else n * expr_fact(n - 1)
                  def expr_even(n) = if n == 0 then 1 else expr_odd(n - 1)
                  def expr_odd(n) = if n == 0 then 0 else expr_even(n - 1)
                  def expr_mix(a, b) = (a + b) * labs(a - b) / 2";
    assert_eq!(manager.compile_source(source).unwrap(), ["expr_fact", "expr_even", "expr_odd", "expr_mix"]);
    assert_eq!(manager.execute("expr_fact", &[12]).unwrap(), 479_001_600);
    assert_eq!(
        (manager.execute("expr_even", &[9]).unwrap(), manager.execute("expr_odd", &[9]).unwrap()),
        (0, 1)
    );
    assert_eq!(manager.execute("expr_mix", &[3, 10]).unwrap(), 45);
    let refused = manager.compile_source("def broken(x) = x +").unwrap_err();
    assert_eq!(refused.to_string(), "the front end refused the source: line 1: unexpected ``");
}

#[test]
fn no_page_is_writable_and_executable_while_threads_compile_and_execute() {
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let manager = ExecManager::new(OptLevel::None).unwrap();
                for round in 0..20i64 {
                    let name = format!("t{t}_r{round}");
                    manager.compile_clif(&constant(&name, round * 10 + t)).unwrap();
                    assert_eq!(manager.execute(&name, &[]).unwrap(), round * 10 + t);
                }
            })
        })
        .collect();
    let mut scans = 0;
    while threads.iter().any(|t| !t.is_finished()) || scans == 0 {
        smf_tests::assert_no_rwx("while compiling");
        assert_eq!(smf_tests::writable_aliases(), Vec::<(String, String)>::new());
        scans += 1;
    }
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn the_c_abi_compiles_executes_lists_and_says_what_failed() {
    use smf::ffi::exec_manager::*;
    use std::ffi::CStr;
    // SAFETY: called on strings the library returned, NUL-terminated and alive until the next
    // call of their kind on the manager.
    let text = |p: *const std::ffi::c_char| unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_owned();
    // SAFETY: the strings passed are NUL-terminated literals; every `args` holds `n` integers.
    unsafe {
        assert!(rt_set_jit_backend(c"auto".as_ptr()));
        assert!(!rt_set_jit_backend(c"llvm".as_ptr()));
        assert_eq!(
            text(smf::ffi::error::smf_last_error()),
            "the llvm backend is not built into this library (cranelift is)"
        );
        assert!(!rt_set_jit_backend(c"cranelift:fastest".as_ptr()));
        assert!(rt_set_jit_backend(c"cranelift:speed".as_ptr()));
        let chosen = rt_exec_manager_create(std::ptr::null());
        assert_ne!(chosen, 0);
        rt_exec_manager_cleanup(chosen);
        assert!(rt_set_jit_backend(c"cranelift".as_ptr()));
        assert_eq!(text(rt_get_jit_backend()), "cranelift");
        assert_eq!(rt_exec_manager_create(c"cobol".as_ptr()), 0);

        let m = rt_exec_manager_create(c"cranelift:speed".as_ptr());
        assert_ne!(m, 0);
        let clif = std::ffi::CString::new(FACTORIAL_AND_PARITY).unwrap();
        assert_eq!(text(rt_exec_manager_compile_mir(m, clif.as_ptr())), "");
        assert_eq!(rt_exec_manager_execute(m, c"factorial".as_ptr(), [5i64].as_ptr(), 1), 120);
        assert!(rt_exec_manager_has_function(m, c"is_odd".as_ptr()));
        assert!(!rt_exec_manager_has_function(m, c"is_prime".as_ptr()));
        assert_eq!(text(rt_exec_manager_list_functions(m)), "factorial\nis_even\nis_odd");
        assert_eq!(text(rt_exec_manager_last_error(m)), "");

        // Failures: the outcome string, the manager's last error and the thread's agree.
        let outcome = text(rt_exec_manager_compile_mir(m, c"function %f() {".as_ptr()));
        assert!(outcome.starts_with("CLIF line"), "{outcome}");
        assert_eq!(text(rt_exec_manager_last_error(m)), outcome);
        assert_eq!(rt_exec_manager_execute(m, c"factorial".as_ptr(), [1i64, 2].as_ptr(), 2), 0);
        assert_eq!(text(rt_exec_manager_last_error(m)), "function factorial takes 1 argument, 2 given");
        assert_eq!(rt_exec_manager_execute(m, c"factorial".as_ptr(), std::ptr::null(), 1), 0);
        assert_eq!(text(rt_exec_manager_last_error(m)), "args is NULL");
        assert_eq!(rt_exec_manager_execute(m, c"nothing".as_ptr(), std::ptr::null(), 0), 0);
        let error = rt_exec_manager_last_error(m);
        // The string stays until the next last_error call, whatever fails meanwhile.
        assert_eq!(rt_exec_manager_execute(m, c"nothing_either".as_ptr(), std::ptr::null(), 0), 0);
        assert_eq!(text(error), "no function nothing was compiled");
        assert_eq!(text(rt_exec_manager_last_error(m)), "no function nothing_either was compiled");
        let source = text(rt_exec_manager_compile_source(m, c"x = 1".as_ptr()));
        assert!(source.starts_with("no front end is registered"), "{source}");

        rt_exec_manager_cleanup(m);
        // A stale handle: refused, never used.
        assert_eq!(rt_exec_manager_execute(m, c"factorial".as_ptr(), [5i64].as_ptr(), 1), 0);
        assert!(text(rt_exec_manager_last_error(m)).contains("not a live ExecManager handle"));
        assert!(rt_exec_manager_list_functions(m).is_null());
        assert!(text(rt_exec_manager_compile_mir(m, clif.as_ptr())).contains("not a live ExecManager handle"));
        rt_exec_manager_cleanup(0);
    }
}

#[test]
fn threads_sharing_a_manager_through_the_c_abi_keep_their_own_strings_and_failures() {
    use smf::ffi::exec_manager::*;
    use std::ffi::{CStr, CString};
    // SAFETY: a NUL-terminated literal.
    let m = unsafe { rt_exec_manager_create(c"cranelift".as_ptr()) };
    assert_ne!(m, 0);
    std::thread::scope(|scope| {
        for t in 0..2 {
            scope.spawn(move || {
                let mistyped = format!("function %mistyped_{t}() -> i64 {{\nblock0:\n    v0 = iconst.i32 {t}\n    return v0\n}}\n");
                let (mistyped, unknown) = (CString::new(mistyped).unwrap(), CString::new(format!("missing_{t}")).unwrap());
                for _ in 0..200 {
                    // SAFETY: NUL-terminated strings in; the strings out are read before this
                    // thread's next call of their kind (the other thread's calls never free them).
                    unsafe {
                        let outcome = rt_exec_manager_compile_mir(m, mistyped.as_ptr());
                        assert_eq!(rt_exec_manager_execute(m, unknown.as_ptr(), std::ptr::null(), 0), 0);
                        let outcome = CStr::from_ptr(outcome).to_str().unwrap();
                        assert!(outcome.starts_with(&format!("function mistyped_{t}: verifier")), "{outcome}");
                        let (first, second) = (rt_exec_manager_last_error(m), rt_exec_manager_last_error(m));
                        assert_eq!(first, second, "no failure between: the same text");
                        let error = CStr::from_ptr(first).to_str().unwrap();
                        assert_eq!(error, format!("no function missing_{t} was compiled"), "this thread's failure");
                    }
                }
            });
        }
    });
    rt_exec_manager_cleanup(m);
}

#[test]
fn the_clif_corpus_replays_and_compiles() {
    // In this binary, not with the other corpora: the C ABI's replay counts the process
    // allocator's blocks, which the manager's modules are.
    let corpus = smf_tests::workspace().join("fuzz/corpus/clif");
    let seeds = std::fs::read_dir(&corpus).unwrap().count();
    let regressions = smf_tests::workspace().join("fuzz/regressions/clif");
    let past = std::fs::read_dir(regressions).into_iter().flatten();
    for entry in std::fs::read_dir(&corpus).unwrap().chain(past).flatten() {
        smf::fuzzing::fuzz_clif(&std::fs::read(entry.path()).unwrap());
    }
    assert!(seeds >= 18, "the seed corpus is missing ({seeds} files)");
    // Every seed but the mistyped one compiles.
    let compiled = std::fs::read_dir(&corpus)
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with("mistyped"))
        .filter(|e| smf::fuzzing::fuzz_clif(&std::fs::read(e.path()).unwrap()) == 0)
        .map(|e| e.file_name())
        .collect::<Vec<_>>();
    assert_eq!(compiled, Vec::<std::ffi::OsString>::new(), "seeds that did not compile");
}

#[test]
fn a_function_of_many_values_compiles_in_one_pass_and_runs_right() {
    // 12,000 values (over the backtracking allocator's 4,096): the single-pass allocator
    // compiles it, spilling most of them; the result is what the arithmetic says.
    let values = 6000;
    for opt in [OptLevel::None, OptLevel::Speed] {
        let manager = ExecManager::new(opt).unwrap();
        assert_eq!(manager.compile_clif(&all_live("wide", values)).unwrap(), ["wide"]);
        let x = 3i64;
        let expected = x * ((values as i64 + 1) * (values as i64 + 2) / 2);
        assert_eq!(manager.execute("wide", &[x]).unwrap(), expected, "{opt:?}");
        assert_eq!(manager.compile_clif(&live_across_blocks("chained", 1000)).unwrap(), ["chained"]);
        assert_eq!(manager.execute("chained", &[2]).unwrap(), 2 * (1001 * 1002 / 2), "{opt:?}");
    }
}

#[test]
fn a_function_past_the_size_bound_is_refused_with_its_size_and_the_batch_with_it() {
    let manager = ExecManager::new(OptLevel::None).unwrap();
    // 4,098 blocks and their 4,097 jumps (each edge counts as a block: lowering may give it
    // one) of 8,193 values: 8,195 x 8,193, just past 2^26 blocks x values.
    let blocks = 4096;
    let text = format!("{}{}", live_across_blocks("huge", blocks), all_live("small", 3));
    match manager.compile_clif(&text) {
        Err(ExecManagerError::TooLarge { function, blocks: b, values }) => {
            assert_eq!(function, "huge");
            assert_eq!((b, values), (2 * blocks as u64 + 3, 2 * blocks as u64 + 1));
            assert!(b * values > ExecManager::MOST_BLOCKS_TIMES_VALUES);
            let message = manager.compile_clif(&text).unwrap_err().to_string();
            assert!(
                message.contains("function huge is too large")
                    && message.contains("8195 blocks x 8193 values"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!manager.has_function("small"), "the batch is refused whole");
    // One block fewer (8,193 x 8,191: 2^26 - 1) fits.
    assert_eq!(manager.compile_clif(&live_across_blocks("fits", blocks - 1)).unwrap(), ["fits"]);
    assert_eq!(manager.execute("fits", &[1]).unwrap(), 4096 * 4097 / 2);
    // A `br_table`'s entries count as blocks: 70,000 of them with 2,001 values live across.
    let table = smf_tests::clif::live_across_table("table", 1000, 70_000);
    match manager.compile_clif(&table) {
        Err(ExecManagerError::TooLarge { function, blocks, values }) => {
            assert_eq!((function.as_str(), blocks, values), ("table", 3 + 70_001, 2 * 1000 + 2));
        }
        other => panic!("{other:?}"),
    }
    let table = smf_tests::clif::live_across_table("small_table", 1000, 1000);
    assert_eq!(manager.compile_clif(&table).unwrap(), ["small_table"]);
    assert_eq!(manager.execute("small_table", &[1]).unwrap(), 1001 * 1002 / 2);
}
