//! W^X through every mapping: after each kind of install the library offers (a module from
//! bytes, from a path, through the cache, a prefetch, the C ABI; an instantiation alone, in a
//! batch, and where shared memory is refused; `rt_alloc_exec_memory` written before and after
//! `rt_make_executable`, `rt_alloc_rw_memory` then `rt_make_executable`, `rt_mmap_file` asked for
//! an executable mapping beside a writable one of the same file; a patch), `/proc/self/maps` holds no writable and executable mapping and no writable mapping of
//! a file (memfd included) whose range overlaps an executable mapping of it. A control checks
//! that the scan sees such an alias when one exists.

// The control maps a memfd twice; the `rt_*` and `smf_*` calls are the C ABI; installed code is
// called to check it.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::path::Path;
use std::sync::Arc;

use smf::cache::ModuleCache;
use smf::ffi::{rt_exec, rt_mmap, smf_module};
use smf::instantiate::{Generics, Request};
use smf_runtime::exec::{ExecAllocator, FaultInjector, LINUX};
use smf_runtime::instantiate::{Caller, Instantiator, InstantiatorConfig};
use smf_runtime::sys::{Protection, SharedMemory};
use smf_tests::{assert_no_rwx, generics, return_const, writable_aliases};

/// The tests scan the whole process: the control's alias must not be seen by the other.
static SCANS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn call0(address: usize) -> i64 {
    // SAFETY: every function installed here is `return_const` or the fixture's `answer`.
    let f = unsafe { smf_runtime::exec::function_pointer::<extern "C" fn() -> i64>(address) }
        .expect("an address");
    f()
}

/// `rt_write_exec_memory` of all of `code` at the start of the allocation at `address`.
fn write_code(address: i64, code: &[u8]) -> i64 {
    let len = i64::try_from(code.len()).unwrap();
    // SAFETY: `code` is readable for its length.
    unsafe { rt_exec::rt_write_exec_memory(address, code.as_ptr(), len, 0) }
}

/// [`call0`] of an `rt_*` address.
fn call_rt(address: i64) -> i64 {
    call0(usize::try_from(address).unwrap())
}

fn c_string(path: &Path) -> CString {
    CString::new(path.to_str().unwrap()).unwrap()
}

#[test]
fn the_scan_finds_a_writable_mapping_that_aliases_an_executable_one() {
    let _alone = SCANS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let file = SharedMemory::create(c"smf-wx-control").unwrap();
    file.resize(4096).unwrap();
    let exec = file.map(4096, Protection::ReadExec).unwrap();
    assert!(writable_aliases().is_empty(), "one read-execute mapping aliases nothing");
    let write = file.map(4096, Protection::ReadWrite).unwrap();
    let aliases = writable_aliases();
    assert_eq!(aliases.len(), 1, "{aliases:#?}");
    assert!(aliases[0].0.contains("smf-wx-control") && aliases[0].1.contains("r-xs"));
    // SAFETY: both mapped above, nothing else uses them.
    unsafe {
        smf_runtime::sys::unmap(write, 4096).unwrap();
        smf_runtime::sys::unmap(exec, 4096).unwrap();
    }
    assert!(writable_aliases().is_empty());
}

#[test]
fn no_install_path_leaves_a_writable_alias_of_code() {
    let _alone = SCANS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = smf_tests::scratch("wx", "every-install");
    let path = dir.join("generics.smf");
    std::fs::write(&path, generics::module()).unwrap();
    let second = dir.join("second.smf");
    std::fs::write(&second, generics::module()).unwrap();

    // Modules: from bytes, from a path, through the cache, a prefetch, the C ABI.
    let from_bytes =
        smf::loader::load(&smf::loader::LoadRequest::bytes(&generics::module()).resolver_only(&())).unwrap();
    assert_eq!(call0(from_bytes.symbol(b"answer").unwrap()), 42);
    assert_no_rwx("a module loaded from bytes");
    let from_path = smf::loader::load(&smf::loader::LoadRequest::path(&path).resolver_only(&())).unwrap();
    assert_eq!(call0(from_path.symbol(b"answer").unwrap()), 42);
    assert_no_rwx("a module loaded from a path");
    let cache = Arc::new(ModuleCache::new(0, 0));
    assert_eq!(call0(cache.get(&path).unwrap().symbol(b"answer").unwrap()), 42);
    assert_no_rwx("a cache get");
    assert_eq!(cache.prefetch(&[path.clone(), second.clone()], 2), 2);
    assert_no_rwx("a prefetch");
    // SAFETY: a NUL-terminated path.
    let module = unsafe { smf_module::smf_module_load(c_string(&path).as_ptr()) };
    assert!(!module.is_null());
    assert_no_rwx("smf_module_load");

    // Instantiations: one request, a batch, and the fallback where memfd is refused.
    let compiler = |_: &Generics, request: &Request<'_>| -> Result<Vec<u8>, String> {
        Ok(return_const(if request.name == "Pair$Int_text" { 2 } else { 3 }))
    };
    let generics = Generics::new(Arc::clone(&cache), InstantiatorConfig::default(), compiler);
    assert_eq!(call0(generics.instantiate(&path, "Pair$Int_text").unwrap()), 2);
    assert_no_rwx("an instantiation");
    let batch = generics.instantiate_many(&path, &["chain$a", "chain$b", "deep$1"]).unwrap();
    assert!(batch.iter().all(|r| r.as_ref().is_ok_and(|&a| call0(a) == 3)), "{batch:?}");
    assert_no_rwx("a batch of instantiations");
    static REFUSING: FaultInjector = FaultInjector::new(&LINUX);
    let exec = ExecAllocator::with_kernel(smf_runtime::exec::ExecConfig::default(), &REFUSING);
    let fallback = Instantiator::new(&exec, InstantiatorConfig::default());
    REFUSING.fail_call(0); // memfd_create, the first call of the first install
    let caller = Caller { thread: 1, stack: &[] };
    let made = fallback.instantiate("f", caller, || Ok(Some(())), |()| Ok(return_const(4))).unwrap();
    REFUSING.disarm();
    assert!(!fallback.uses_arena());
    assert_eq!(call0(made.address), 4);
    assert_no_rwx("an instantiation where memfd is refused");

    // rt_*: executable memory written by the library, and memory writable now, executable later.
    let code = return_const(5);
    let exec_memory = rt_exec::rt_alloc_exec_memory(4096);
    assert_eq!(write_code(exec_memory, &code), i64::try_from(code.len()).unwrap());
    assert_no_rwx("rt_alloc_exec_memory + rt_write_exec_memory");
    assert!(rt_exec::rt_make_executable(exec_memory, 4096));
    assert_eq!(call_rt(exec_memory), 5);
    assert_no_rwx("rt_make_executable");
    // Written again once executable: a patch through a sealed copy.
    assert_eq!(write_code(exec_memory, &code), i64::try_from(code.len()).unwrap());
    assert_no_rwx("rt_write_exec_memory of executable memory");
    let rw = rt_exec::rt_alloc_rw_memory(4096);
    // SAFETY: `rw` is 4096 writable bytes the library just allocated.
    unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), rw as *mut u8, code.len()) };
    assert!(rt_exec::rt_make_executable(rw, 4096));
    assert_eq!(call_rt(rw), 5);
    assert_no_rwx("rt_alloc_rw_memory then rt_make_executable");

    // rt_mmap_file: a file mapped writable and shared, then executable.
    let file = dir.join("code.bin");
    let mut bytes = return_const(6);
    bytes.resize(4096, 0);
    std::fs::write(&file, &bytes).unwrap();
    let name = c_string(&file);
    // SAFETY: a NUL-terminated path; prot read|write, shared.
    let writable = unsafe { rt_mmap::rt_mmap_file(name.as_ptr(), 3, 1, 0, 0) };
    assert_ne!(writable.address, 0);
    // Executable file mappings are refused: another writable mapping of the file could change
    // the code while it runs.
    // SAFETY: as above; prot read|exec, shared.
    let executable = unsafe { rt_mmap::rt_mmap_file(name.as_ptr(), 5, 1, 0, 0) };
    assert_eq!(executable.address, 0);
    assert!(!rt_exec::rt_set_protection(writable.address, 4096, 5));
    assert_no_rwx("rt_mmap_file writable, then asked for executable");

    // A patch of sealed code.
    let exec = ExecAllocator::default();
    let mut open = exec.batch();
    let block = open.install(&return_const(7), 16).unwrap();
    open.seal().unwrap();
    let (offset, patch) = smf_tests::return_const_patch(8);
    exec.patch(&block, offset, &patch).unwrap();
    assert_eq!(smf_tests::call(&block), 8);
    assert_no_rwx("a patch");

    assert!(rt_mmap::rt_munmap(writable.address, writable.size));
    assert!(rt_exec::rt_free_exec_memory(rw, 4096));
    assert!(rt_exec::rt_free_exec_memory(exec_memory, 4096));
    smf_module::smf_module_release(module);
    exec.free_all(vec![block]).unwrap();
    assert_no_rwx("the end");
}
