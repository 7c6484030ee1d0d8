//! The C exports' failures, each matched by its [`FfiError`] variant (taken with
//! [`take_last`] after the export handed C its sentinel or code), so that a failure flattened
//! back to text fails here: arguments, handles, lookups in modules and caches, host symbols,
//! loads, the instantiator, and (with `rt`) every reachable `rt_*` refusal.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_void, CString};
use std::path::{Path, PathBuf};
use std::ptr::{null, null_mut};

use smf_format::write::{ModuleBuilder, SymbolSpec};
use smf_format::Dialect;
use smf_runtime::instantiate::{CompileFailure, InstantiateError};

use super::cache::{smf_cache_free, smf_cache_new, smf_cache_resolve};
use super::failure::{take_last, About, LookupError};
use super::handles::{HandleError, HandleProblem};
use super::imports::{smf_host_define, smf_host_undefine, smf_module_load_bytes_ex, SmfLoadOptions};
use super::instantiate::{
    smf_jit_free, smf_jit_instantiate, smf_jit_instantiate_batch, smf_jit_new, smf_jit_resolve, SmfJit,
    SmfJitConfig, SMF_JIT_INVALID_ARGUMENT, SMF_JIT_MODULE_ERROR, SMF_JIT_NOT_FOUND,
};
use super::instantiate_callback::CallbackError;
use super::smf_module::*;
use super::{ArgError, FfiError};
use crate::loader::{CallError, ModuleError};

/// A temporary file named for `test`, holding `bytes`.
fn temp_file(test: &str, bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("smf-ffi-{}-{test}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_encoded_bytes()).unwrap()
}

/// A module of this machine exporting the function `f` (returns 42) and the data `d`, with no
/// entry point.
fn module_bytes() -> Vec<u8> {
    let mut b = ModuleBuilder::new(Dialect::R96);
    if cfg!(target_arch = "aarch64") {
        b.header(|h| h.arch = 1);
    }
    let code: &[u8] = if cfg!(target_arch = "aarch64") {
        &[0x40, 0x05, 0x80, 0xD2, 0xC0, 0x03, 0x5F, 0xD6]
    } else {
        &[0xB8, 42, 0, 0, 0, 0xC3]
    };
    b.add_code(b".text", code);
    let data = b.add_data(b".data", &7u64.to_le_bytes());
    b.add_symbol(SymbolSpec::function(b"f", 0, code.len() as u64));
    b.add_symbol(SymbolSpec::data(b"d", data, 0, 8));
    b.build().unwrap()
}

/// The failure the last export recorded.
fn last() -> FfiError {
    take_last().expect("a failure was recorded")
}

#[test]
fn a_lookup_that_fails_names_the_module_by_its_path() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/recursion.smf\0");
    // SAFETY: a NUL-terminated path and name; the handle is released once.
    unsafe {
        let m = smf_module_load(path.as_ptr().cast());
        assert!(!m.is_null(), "{}", super::last_error());
        assert!(smf_module_function(m, c"nothing_such".as_ptr()).is_none());
        let message = last().to_string();
        assert!(
            message.starts_with("no exported symbol `nothing_such` in module ")
                && message.ends_with("examples/recursion.smf"),
            "{message}"
        );
        smf_module_release(m);
    }
}

#[test]
fn c_plus_plus_names_in_messages_are_demangled_by_the_runtime_the_process_has() {
    unsafe extern "C" {
        fn dlopen(file: *const c_char, flags: i32) -> *mut c_void;
    }
    // A C++ runtime in the process, as a C++ host has one (or a module that needs it brings
    // one); never closed.
    // SAFETY: dlopen of an installed system library by name.
    let runtime = unsafe { dlopen(c"libstdc++.so.6".as_ptr(), 2) };
    assert!(!runtime.is_null(), "g++'s runtime, libstdc++.so.6, is installed");
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b".text", &[0xC3; 16]);
    b.add_symbol(SymbolSpec::import(b"_ZN3foo3barEv"));
    b.add_symbol(SymbolSpec::import(b"_ZNSt6vectorIiSaIiEE9push_backERKi"));
    b.add_symbol(SymbolSpec::import(b"smf_plain_c_name_nowhere"));
    let bytes = b.build().unwrap();
    // SAFETY: a live buffer of the length given.
    let m = unsafe { smf_module_load_bytes(bytes.as_ptr(), bytes.len()) };
    assert!(m.is_null());
    let message = super::last_error();
    let named = ["`foo::bar()`", "`std::vector<int, std::allocator<int> >::push_back(int const&)`"];
    assert!(named.iter().all(|name| message.contains(name)), "{message}");
    assert!(message.contains("`smf_plain_c_name_nowhere`") && !message.contains("_ZN"), "{message}");
    // The typed error keeps the names as the module spells them.
    assert!(last().to_string().contains("`_ZN3foo3barEv`"));
}

#[test]
fn module_exports_fail_with_typed_arguments_handles_and_lookups() {
    let bytes = module_bytes();
    // SAFETY: every pointer is NULL, a NUL-terminated literal, or a live buffer of the length
    // given; handles are the library's or deliberately bad.
    unsafe {
        assert!(smf_module_load_bytes(null(), 0).is_null());
        assert!(matches!(last(), FfiError::Arg(ArgError::Null("bytes"))));
        assert!(smf_module_load(null()).is_null());
        assert!(matches!(last(), FfiError::Arg(ArgError::Null("path"))));
        assert!(smf_module_load(c"".as_ptr()).is_null());
        assert!(matches!(last(), FfiError::Arg(ArgError::EmptyPath)));
        let missing = c"/nonexistent/smf-ffi-missing.smf";
        assert!(smf_module_load(missing.as_ptr()).is_null());
        assert!(
            matches!(last(), FfiError::Module(ModuleError::Io(_, e)) if e.kind() == std::io::ErrorKind::NotFound)
        );
        assert!(smf_module_load_bytes(b"not a module".as_ptr(), 12).is_null());
        assert!(matches!(last(), FfiError::Module(ModuleError::Load(None, _))));
        let options = SmfLoadOptions { resolve: None, user: null_mut(), flags: 32 };
        assert!(smf_module_load_bytes_ex(bytes.as_ptr(), bytes.len(), &options).is_null());
        assert!(matches!(last(), FfiError::Arg(ArgError::UnknownFlags(32))));

        let m = smf_module_load_bytes(bytes.as_ptr(), bytes.len());
        assert!(!m.is_null(), "{}", super::last_error());
        assert!(smf_module_symbol(m, c"g".as_ptr()).is_null());
        assert!(matches!(last(), FfiError::Lookup(LookupError::NoExport(name, None)) if &*name == b"g"));
        assert!(smf_module_function(m, c"d".as_ptr()).is_none());
        assert!(matches!(last(), FfiError::Lookup(LookupError::NotAFunction(name, None)) if &*name == b"d"));
        assert!(smf_module_entry(m).is_null());
        assert!(matches!(last(), FfiError::Lookup(LookupError::NoEntryPoint)));
        assert!(smf_module_symbol_name(m, 9).is_null());
        assert!(matches!(last(), FfiError::Lookup(LookupError::NoSymbol { index: 9, count: 2 })));
        assert_eq!(smf_module_symbol_info(m, 0, null_mut()), -1);
        assert!(matches!(last(), FfiError::Arg(ArgError::Null("out"))));
        let mut result = 0;
        assert_eq!(smf_module_call(m, c"f".as_ptr(), null(), 7, &mut result), -1);
        assert!(matches!(last(), FfiError::Call(CallError::TooManyArguments(7))));
        assert_eq!(smf_module_call(m, c"f".as_ptr(), null(), 1, &mut result), -1);
        assert!(matches!(last(), FfiError::Arg(ArgError::Null("args"))));
        assert_eq!(smf_module_call(m, c"g".as_ptr(), null(), 0, &mut result), -1);
        assert!(matches!(last(), FfiError::Lookup(LookupError::NoExport(..))));
        assert_eq!(smf_module_call(m, c"d".as_ptr(), null(), 0, &mut result), -1);
        assert!(matches!(last(), FfiError::Call(CallError::NotAFunction(_))));
        assert_eq!(smf_module_note_sdn(m, null_mut(), null_mut()), -1);
        assert!(matches!(last(), FfiError::Arg(ArgError::Null("output pointer"))));
        assert_eq!(smf_module_symbol(m, null()), null());
        assert!(matches!(last(), FfiError::Arg(ArgError::Null("name"))));

        let cache = smf_cache_new(0, 0);
        assert_eq!(smf_module_dialect(cache.cast()), -1);
        let found = HandleProblem::OtherType("SmfCache");
        assert!(
            matches!(last(), FfiError::Handle(HandleError { wanted: "SmfModule", found: f, .. }) if f == found)
        );
        assert!(smf_cache_resolve(cache, c"nowhere".as_ptr()).is_null());
        assert!(matches!(last(), FfiError::Lookup(LookupError::NotCached(_))));
        smf_cache_free(cache);
        smf_module_release(m);
        assert_eq!(smf_module_dialect(m), -1);
        assert!(matches!(last(), FfiError::Handle(HandleError { found: HandleProblem::Freed, .. })));
    }
}

#[test]
fn host_symbols_refused_say_which_and_why() {
    let name = c"smf_ffi_test_host";
    // SAFETY: NUL-terminated literals; the addresses are only stored.
    unsafe {
        assert_eq!(smf_host_define(name.as_ptr(), null()), -1);
        assert!(matches!(
            last(),
            FfiError::HostDefine { name, error: crate::imports::HostError::NullAddress } if &*name == b"smf_ffi_test_host"
        ));
        assert_eq!(smf_host_undefine(name.as_ptr()), -1);
        assert!(matches!(last(), FfiError::HostUndefined(_)));
    }
}

/// An `SmfCompileFn` that fails (status 1) without a message; first, if [`COMPILING`] is set,
/// it frees that instantiator (its own, which is refused) and keeps the failure in
/// [`FREED_INSIDE`].
unsafe extern "C" fn failing_compiler(
    _user: *mut c_void,
    _name: *const c_char,
    _type_args: *const c_char,
    _template: *const u8,
    _template_len: usize,
    _code: *mut *const u8,
    _code_len: *mut usize,
) -> i32 {
    let own = COMPILING.get();
    if !own.is_null() {
        smf_jit_free(own);
        FREED_INSIDE.set(take_last());
    }
    1
}

thread_local! {
    /// The instantiator [`failing_compiler`] frees from inside its compile.
    static COMPILING: std::cell::Cell<*mut SmfJit> = const { std::cell::Cell::new(null_mut()) };
    /// What its `smf_jit_free` recorded.
    static FREED_INSIDE: std::cell::Cell<Option<FfiError>> = const { std::cell::Cell::new(None) };
}

#[test]
fn instantiator_exports_give_codes_and_typed_failures_about_their_names() {
    let config = SmfJitConfig { max_depth: 0, enabled: true, update_metadata: false };
    let generics = temp_file("generics.smf", &smf_format::write::samples::generics());
    let path = c_path(&generics);
    // SAFETY: handles from the library, NUL-terminated strings, writable out-parameters.
    unsafe {
        let cache = smf_cache_new(0, 0);
        assert!(smf_jit_new(cache, config, None, null_mut()).is_null());
        assert!(matches!(last(), FfiError::Arg(ArgError::Null("the compiler callback"))));
        let j = smf_jit_new(cache, config, Some(failing_compiler), null_mut());
        let mut address = null();
        assert_eq!(smf_jit_resolve(j, c"nothing$here".as_ptr(), &mut address), SMF_JIT_NOT_FOUND);
        assert!(
            matches!(last(), FfiError::Generics { about: About::Name(name), error: InstantiateError::NotFound } if name == "nothing$here")
        );
        let missing = c"/nonexistent/smf-ffi-missing.smf";
        let code = smf_jit_instantiate(j, missing.as_ptr(), c"square$i64".as_ptr(), &mut address);
        assert_eq!(code, SMF_JIT_MODULE_ERROR);
        let FfiError::Generics { about: About::NameFrom(name, _), error: InstantiateError::Module(module) } =
            last()
        else {
            panic!("{}", super::last_error())
        };
        assert_eq!(name, "square$i64");
        assert!(matches!(module.downcast_ref(), Some(ModuleError::Io(..))));
        assert_eq!(smf_jit_instantiate(j, missing.as_ptr(), null(), &mut address), SMF_JIT_INVALID_ARGUMENT);
        assert!(matches!(last(), FfiError::Arg(ArgError::Null("mangled name"))));
        let names = [c"square$i64".as_ptr(), null()];
        let code = smf_jit_instantiate_batch(j, path.as_ptr(), names.as_ptr(), 2, null_mut(), null_mut());
        assert_eq!(code, SMF_JIT_INVALID_ARGUMENT);
        assert!(matches!(last(), FfiError::Arg(ArgError::NullItem("name", 1))));
        let names = [c"identity$i64".as_ptr(), c"square$i64".as_ptr()];
        let code = smf_jit_instantiate_batch(j, path.as_ptr(), names.as_ptr(), 2, null_mut(), null_mut());
        assert_eq!(code, super::instantiate::SMF_JIT_COMPILE_ERROR);
        let FfiError::Generics { about: About::Batch { failed: 2, of: 2, first: 0, .. }, error } = last()
        else {
            panic!("{}", super::last_error())
        };
        // The callback's own failure, typed: it returned 1 and gave no message.
        let InstantiateError::Compile(CompileFailure::Compiler(compiler)) = &error else {
            panic!("{error:?}")
        };
        let failed = CallbackError::Failed { status: 1, message: None };
        assert_eq!(compiler.downcast_ref::<CallbackError>(), Some(&failed));
        assert_eq!(error.to_string(), "compile failed: the compiler returned 1 without a message");
        smf_jit_free(j);

        let own = smf_jit_new(cache, config, Some(failing_compiler), null_mut());
        COMPILING.set(own);
        let code = smf_jit_instantiate(own, path.as_ptr(), c"identity$i64".as_ptr(), &mut address);
        assert_eq!(code, super::instantiate::SMF_JIT_COMPILE_ERROR);
        let FfiError::Generics {
            error: InstantiateError::Compile(CompileFailure::Compiler(compiler)), ..
        } = last()
        else {
            panic!("{}", super::last_error())
        };
        assert!(matches!(compiler.downcast_ref(), Some(CallbackError::Failed { status: 1, .. })));
        assert!(matches!(FREED_INSIDE.take(), Some(FfiError::FreeInCallback)));
        COMPILING.set(null_mut());
        smf_jit_free(own);
        assert!(take_last().is_none(), "freed after the request: {}", super::last_error());
        smf_cache_free(cache);
    }
    let _ = std::fs::remove_file(generics);
}

/// Every `rt_*` refusal reachable without failing the kernel, in one test: the budget it
/// lowers for a moment is the process's.
#[cfg(feature = "rt")]
#[test]
fn rt_refusals_are_typed_with_the_address_size_or_path_at_fault() {
    use super::rt_error::{Inside, Owned, RtError};
    use super::rt_exec::*;
    use super::rt_mmap::*;
    use super::rt_owned::{PROT_EXEC, PROT_READ, PROT_WRITE};

    let page = smf_runtime::sys::page_size() as i64;
    let rt = |e: FfiError| match e {
        FfiError::Rt(e) => e,
        other => panic!("not an rt refusal: {other}"),
    };
    let nowhere = 0x10_i64;
    assert!(!rt_free_exec_memory(0, 0));
    assert!(matches!(rt(last()), RtError::ZeroAddress));
    assert_eq!(rt_alloc_exec_memory(-1), 0);
    assert!(matches!(last(), FfiError::Arg(ArgError::Negative("size", -1))));
    assert_eq!(rt_alloc_exec_memory(0), 0);
    assert!(matches!(rt(last()), RtError::ZeroSize));
    assert_eq!(rt_alloc_exec_memory(2 << 30), 0);
    assert!(matches!(rt(last()), RtError::TooLarge(size) if size == 2 << 30));
    let before = smf_set_exec_budget(page as u64);
    assert_eq!(rt_alloc_exec_memory(2 * page), 0);
    smf_set_exec_budget(before);
    assert!(
        matches!(rt(last()), RtError::BudgetSpent { bytes, budget, .. } if bytes == 2 * page as u64 && budget == page as u64)
    );

    // Allocations.
    let alloc = rt_alloc_rw_memory(100);
    assert_ne!(alloc, 0, "{}", super::last_error());
    assert!(!rt_make_executable(nowhere, 1));
    assert!(matches!(rt(last()), RtError::NotInside { start: 0x10, len: Some(1), what: Inside::Allocation }));
    assert!(!rt_free_exec_memory(alloc + 1, 0));
    assert!(matches!(rt(last()), RtError::NotAStart(start, Owned::Allocation) if start as i64 == alloc + 1));
    assert!(!rt_free_exec_memory(alloc, 3));
    assert!(matches!(rt(last()), RtError::SizeMismatch { size: 3, actual: 100, of: Owned::Allocation }));
    let code = [0xC3u8; 8];
    // SAFETY: `code` is readable for its length (the first call refuses before reading).
    unsafe {
        assert_eq!(rt_write_exec_memory(alloc, code.as_ptr(), page + 1, 0), -1);
        assert!(matches!(rt(last()), RtError::LeavesAllocation));
        assert_eq!(rt_write_exec_memory(alloc, null(), 8, 0), -1);
        assert!(matches!(last(), FfiError::Arg(ArgError::Null("code"))));
        assert_eq!(rt_call_function_0(alloc), 0);
        assert!(matches!(rt(last()), RtError::NotSealed(at) if at as i64 == alloc));
        assert_eq!(rt_call_function_0(nowhere), 0);
        assert!(matches!(rt(last()), RtError::NotInside { len: None, what: Inside::ExecutableCode, .. }));
    }
    rt_flush_icache(nowhere, 1);
    assert!(matches!(rt(last()), RtError::NotInside { what: Inside::Code, .. }));
    assert_eq!(rt_get_protection(nowhere), -1);
    assert!(matches!(rt(last()), RtError::NotInside { len: None, what: Inside::MappingOrAllocation, .. }));
    assert!(!rt_set_protection(alloc, page, 0));
    assert!(matches!(rt(last()), RtError::AllocationProtection));
    assert!(!rt_set_protection(alloc, page, PROT_WRITE | PROT_EXEC));
    assert!(matches!(rt(last()), RtError::WriteAndExec));
    assert!(!rt_set_protection(alloc, page, 8));
    assert!(matches!(rt(last()), RtError::Protection(8)));
    assert!(!rt_msync(alloc, page, false));
    assert!(matches!(rt(last()), RtError::NotAFileMapping));
    assert!(!rt_madvise(alloc, page, 9));
    assert!(matches!(rt(last()), RtError::Advice(9)));
    assert!(!rt_madvise(alloc, 0, 0));
    assert!(matches!(rt(last()), RtError::ZeroSize));
    assert!(rt_make_executable(alloc, 100), "{}", super::last_error());
    assert!(!rt_set_protection(alloc, page, PROT_READ | PROT_WRITE));
    assert!(matches!(rt(last()), RtError::SealedStaysSealed));
    assert!(!rt_madvise(alloc, page, 4));
    assert!(matches!(rt(last()), RtError::DontNeedOnCode));
    // SAFETY: NULL destination with length 0 is allowed; `i64::MAX` offsets overflow first.
    unsafe {
        assert_eq!(rt_mmap_read_bytes(i64::MAX, i64::MAX, i64::MAX, null_mut()), -1);
        assert!(matches!(rt(last()), RtError::Overflows));
        assert_eq!(rt_mmap_read_bytes(nowhere, 0, 1, [0u8; 1].as_mut_ptr()), -1);
        assert!(matches!(
            rt(last()),
            RtError::NotInside { len: Some(1), what: Inside::MappingOrAllocation, .. }
        ));
    }
    assert!(rt_free_exec_memory(alloc, 0));

    // File mappings.
    let file = temp_file("rt-map", &[7u8; 100]);
    let empty = temp_file("rt-empty", &[]);
    let (path, empty_path) = (c_path(&file), c_path(&empty));
    let dir = c_path(&std::env::temp_dir());
    // SAFETY: NUL-terminated paths; the buffers are the test's own, of the lengths given.
    unsafe {
        let map = |path: &CString, prot, flags, offset, length| {
            rt_mmap_file(path.as_ptr(), prot, flags, offset, length)
        };
        assert_eq!(map(&path, PROT_READ | PROT_EXEC, 1, 0, 0).address, 0);
        assert!(matches!(rt(last()), RtError::ExecutableFile));
        assert_eq!(map(&path, PROT_READ, 3, 0, 0).address, 0);
        assert!(matches!(rt(last()), RtError::MapFlags(3)));
        assert_eq!(map(&path, PROT_READ, 1, 1, 0).address, 0);
        assert!(matches!(rt(last()), RtError::UnalignedOffset { offset: 1, .. }));
        let missing = CString::new("/nonexistent/smf-ffi-missing").unwrap();
        assert_eq!(map(&missing, PROT_READ, 1, 0, 0).address, 0);
        assert!(matches!(rt(last()), RtError::File(_, e) if e.kind() == std::io::ErrorKind::NotFound));
        assert_eq!(map(&dir, PROT_READ, 1, 0, 0).address, 0);
        assert!(matches!(rt(last()), RtError::NotRegularFile(_)));
        assert_eq!(map(&empty_path, PROT_READ, 1, 0, 0).address, 0);
        assert!(matches!(rt(last()), RtError::NothingToMap { offset: 0, file_len: 0, .. }));
        assert_eq!(map(&path, PROT_READ, 1, 0, 101).address, 0);
        assert!(matches!(rt(last()), RtError::PastEnd { len: 101, file_len: 100, .. }));
        let mapping = map(&path, PROT_READ, 1, 0, 0);
        assert_ne!(mapping.address, 0, "{}", super::last_error());
        let at = mapping.address;
        assert!(!rt_munmap(at + 1, 100));
        assert!(matches!(rt(last()), RtError::NotAStart(_, Owned::Mapping)));
        assert!(!rt_munmap(at, 3));
        assert!(matches!(rt(last()), RtError::SizeMismatch { size: 3, actual: 100, of: Owned::Mapping }));
        assert!(!rt_set_protection(at, 50, PROT_READ));
        assert!(matches!(rt(last()), RtError::NotWholeMapping));
        assert!(!rt_set_protection(at, 100, PROT_READ | PROT_EXEC));
        assert!(matches!(rt(last()), RtError::ExecutableFile));
        assert!(rt_set_protection(at, 100, 0), "{}", super::last_error());
        let mut buffer = [0u8; 10];
        assert_eq!(rt_mmap_read_bytes(at, 0, 10, buffer.as_mut_ptr()), -1);
        assert!(matches!(rt(last()), RtError::NotReadable(start) if start as i64 == at));
        assert!(rt_set_protection(at, 100, PROT_READ));
        // The file shrinks under the mapping: its bytes are gone, reading them is an error.
        std::fs::File::options().write(true).open(&file).unwrap().set_len(0).unwrap();
        assert_eq!(rt_mmap_read_bytes(at, 0, 10, buffer.as_mut_ptr()), -1);
        assert!(matches!(rt(last()), RtError::FileShrank { len: 10, .. }));
        assert!(rt_munmap(at, 100));
    }
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(empty);
}
