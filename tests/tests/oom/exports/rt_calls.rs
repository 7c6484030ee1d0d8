//! The cases of the `rt_*` functions: file mappings, executable memory and its budget
//! (`smf_exec_budget`, `smf_set_exec_budget`, declared among them), and the execution manager.

use std::ffi::CString;
use std::path::Path;

use smf::ffi::exec_manager as manager_ffi;
use smf::ffi::rt_exec;
use smf::ffi::rt_mmap::{self, RtMapping};

use super::{loaded, no_files, nothing_recorded, reads, Case, Taken};
use crate::{c_path, sweep, write_functions, Manager};

/// The cases, in the header's order.
pub(super) const CASES: &[Case] = &[
    case!(rt_munmap, false, write_small),
    case!(rt_get_page_size, false, no_files),
    case!(rt_msync, false, write_small),
    case!(rt_mlock, false, write_small),
    case!(rt_munlock, false, write_small),
    case!(rt_madvise, false, write_small),
    case!(rt_alloc_rw_memory, true, no_files),
    case!(rt_free_exec_memory, false, no_files),
    case!(rt_make_executable, false, no_files),
    case!(rt_flush_icache, false, no_files),
    case!(rt_get_function_pointer, false, no_files),
    case!(rt_call_function_0, false, no_files),
    case!(rt_call_function_1, false, no_files),
    case!(rt_call_function_2, false, no_files),
    case!(rt_is_executable, false, no_files),
    case!(rt_get_protection, false, no_files),
    case!(rt_set_protection, false, no_files),
    case!(rt_exec_memory_total, false, no_files),
    case!(rt_exec_memory_count, false, no_files),
    case!(smf_exec_budget, false, no_files),
    case!(smf_set_exec_budget, false, no_files),
    case!(rt_exec_memory_dump_stats, false, no_files),
    case!(rt_set_jit_backend, false, no_files),
    case!(rt_get_jit_backend, false, no_files),
    case!(rt_exec_manager_create, false, no_files),
    case!(rt_exec_manager_cleanup, false, no_files),
    case!(rt_exec_manager_compile_source, true, write_functions),
    case!(rt_exec_manager_compile_file, true, write_functions),
    case!(rt_exec_manager_execute, false, no_files),
    case!(rt_exec_manager_has_function, false, no_files),
    case!(rt_exec_manager_list_functions, false, no_files),
    case!(rt_exec_manager_last_error, false, no_files),
];

// ---- File mappings --------------------------------------------------------------------------

/// Bytes of `small.bin`.
const SMALL_FILE_LEN: i64 = 64 << 10;

fn write_small(dir: &Path) {
    std::fs::write(dir.join("small.bin"), vec![b'a'; 64 << 10]).unwrap();
}

/// `small.bin` mapped whole (no limit set), read-only and private or read-write and shared;
/// unmapped when dropped unless taken.
fn mapped(dir: &Path, shared: bool) -> Taken<RtMapping> {
    let (prot, flags) = if shared { (3, 1) } else { (1, 2) };
    // SAFETY: a NUL-terminated path.
    let map = unsafe { rt_mmap::rt_mmap_file(c_path(dir, "small.bin").as_ptr(), prot, flags, 0, 0) };
    assert_eq!(map.size, SMALL_FILE_LEN, "{}", smf::ffi::last_error());
    Taken::new(map, |m| {
        rt_mmap::rt_munmap(m.address, m.size);
    })
}

fn rt_munmap(dir: &Path) {
    sweep(
        || mapped(dir, false),
        |m| {
            let map = m.take();
            let unmapped = rt_mmap::rt_munmap(map.address, map.size);
            if !unmapped {
                m.put(map);
            }
            unmapped
        },
    );
}

fn rt_get_page_size(_: &Path) {
    sweep(
        || (),
        |()| {
            let page = rt_mmap::rt_get_page_size();
            page >= 4096 && page & (page - 1) == 0
        },
    );
}

fn rt_msync(dir: &Path) {
    sweep(|| mapped(dir, true), |m| rt_mmap::rt_msync(m.get().address, m.get().size, false));
}

fn rt_mlock(dir: &Path) {
    // One page: within any RLIMIT_MEMLOCK.
    sweep(|| mapped(dir, false), |m| rt_mmap::rt_mlock(m.get().address, 4096));
}

fn rt_munlock(dir: &Path) {
    let prepare = || {
        let map = mapped(dir, false);
        assert!(rt_mmap::rt_mlock(map.get().address, 4096), "{}", smf::ffi::last_error());
        map
    };
    sweep(prepare, |m| rt_mmap::rt_munlock(m.get().address, 4096));
}

fn rt_madvise(dir: &Path) {
    // RT_ADVICE_WILLNEED.
    sweep(|| mapped(dir, false), |m| rt_mmap::rt_madvise(m.get().address, m.get().size, 3));
}

// ---- Executable memory ----------------------------------------------------------------------

/// Bytes of the allocations the cases make.
const ALLOCATION_LEN: i64 = 64 << 10;

/// Two functions of this machine's code: `identity(a)` at 0 and `add(a, b)` at 16.
fn two_functions() -> Vec<u8> {
    let (mut code, add): (Vec<u8>, Vec<u8>) = if cfg!(target_arch = "aarch64") {
        // ret (x0 is the argument); add x0, x0, x1; ret
        let ret = 0xD65F_03C0u32.to_le_bytes();
        (ret.to_vec(), [0x8B01_0000u32.to_le_bytes(), ret].concat())
    } else {
        // mov rax, rdi; ret / lea rax, [rdi + rsi]; ret
        (vec![0x48, 0x89, 0xF8, 0xC3], vec![0x48, 0x8D, 0x04, 0x37, 0xC3])
    };
    code.resize(16, 0);
    code.extend_from_slice(&add);
    code
}

/// [`ALLOCATION_LEN`] bytes of executable memory holding [`two_functions`] (no limit set),
/// sealed if `sealed`; freed when dropped unless taken.
fn allocation(sealed: bool) -> Taken<i64> {
    let address = rt_exec::rt_alloc_exec_memory(ALLOCATION_LEN);
    assert_ne!(address, 0, "{}", smf::ffi::last_error());
    let allocation = Taken::new(address, |a| {
        rt_exec::rt_free_exec_memory(a, 0);
    });
    let code = two_functions();
    let len = i64::try_from(code.len()).unwrap();
    // SAFETY: `code` holds the `len` bytes said.
    assert_eq!(unsafe { rt_exec::rt_write_exec_memory(address, code.as_ptr(), len, 0) }, len);
    assert!(!sealed || rt_exec::rt_make_executable(address, ALLOCATION_LEN), "{}", smf::ffi::last_error());
    allocation
}

/// An allocation ready to call.
fn sealed() -> Taken<i64> {
    allocation(true)
}

/// An allocation still writable.
fn open() -> Taken<i64> {
    allocation(false)
}

fn rt_alloc_rw_memory(_: &Path) {
    sweep(
        || {
            Taken::empty(|a| {
                rt_exec::rt_free_exec_memory(a, 0);
            })
        },
        |a| {
            let address = rt_exec::rt_alloc_rw_memory(256 << 20);
            if address != 0 {
                a.put(address);
            }
            address != 0
        },
    );
}

fn rt_free_exec_memory(_: &Path) {
    sweep(sealed, |a| {
        let address = a.take();
        let freed = rt_exec::rt_free_exec_memory(address, 0);
        if !freed {
            a.put(address);
        }
        freed && !rt_exec::rt_is_executable(address)
    });
}

fn rt_make_executable(_: &Path) {
    sweep(open, |a| {
        rt_exec::rt_make_executable(a.get(), ALLOCATION_LEN) && rt_exec::rt_is_executable(a.get())
    });
}

fn rt_flush_icache(_: &Path) {
    sweep(open, |a| {
        rt_exec::rt_flush_icache(a.get(), ALLOCATION_LEN);
        nothing_recorded()
    });
}

fn rt_get_function_pointer(_: &Path) {
    sweep(open, |a| rt_exec::rt_get_function_pointer(a.get()) == a.get());
}

fn rt_call_function_0(_: &Path) {
    // A module's function: `answer`.
    let prepare = || {
        let module = loaded();
        // SAFETY: a live module, a NUL-terminated name.
        let answer = unsafe { smf::ffi::smf_module::smf_module_symbol(module.get(), c"answer".as_ptr()) };
        (module, answer as i64)
    };
    // SAFETY: `answer` takes no argument and returns an integer.
    sweep(prepare, |(_, answer)| unsafe { rt_exec::rt_call_function_0(*answer) } == 42);
}

fn rt_call_function_1(_: &Path) {
    // SAFETY: `identity` takes an integer and returns one.
    sweep(sealed, |a| unsafe { rt_exec::rt_call_function_1(a.get(), 42) } == 42);
}

fn rt_call_function_2(_: &Path) {
    // SAFETY: `add` takes two integers and returns one.
    sweep(sealed, |a| unsafe { rt_exec::rt_call_function_2(a.get() + 16, 40, 2) } == 42);
}

fn rt_is_executable(_: &Path) {
    sweep(sealed, |a| rt_exec::rt_is_executable(a.get() + 16));
}

fn rt_get_protection(_: &Path) {
    // RT_PROT_READ | RT_PROT_EXEC.
    sweep(sealed, |a| rt_exec::rt_get_protection(a.get()) == 5);
}

fn rt_set_protection(_: &Path) {
    // RT_PROT_READ | RT_PROT_EXEC: sealed.
    sweep(open, |a| {
        rt_exec::rt_set_protection(a.get(), ALLOCATION_LEN, 5) && rt_exec::rt_is_executable(a.get())
    });
}

fn rt_exec_memory_total(_: &Path) {
    sweep(sealed, |_| rt_exec::rt_exec_memory_total() >= ALLOCATION_LEN);
}

fn rt_exec_memory_count(_: &Path) {
    sweep(sealed, |_| rt_exec::rt_exec_memory_count() >= 1);
}

fn smf_exec_budget(_: &Path) {
    let budget = 3 << 30;
    sweep(
        || {
            rt_exec::smf_set_exec_budget(budget);
        },
        |()| rt_exec::smf_exec_budget() == budget,
    );
}

fn smf_set_exec_budget(_: &Path) {
    let budget = 5 << 30;
    sweep(
        || rt_exec::smf_exec_budget(),
        |&before| rt_exec::smf_set_exec_budget(budget) == before && rt_exec::smf_exec_budget() == budget,
    );
}

fn rt_exec_memory_dump_stats(_: &Path) {
    sweep(sealed, |_| {
        rt_exec::rt_exec_memory_dump_stats();
        nothing_recorded()
    });
}

// ---- The execution manager ------------------------------------------------------------------

/// `oom_add(a, b) -> a + b` in CLIF.
const ADD: &std::ffi::CStr =
    c"function %oom_add(i64, i64) -> i64 {\nblock0(v0: i64, v1: i64):\n    v2 = iadd v0, v1\n    return v2\n}\n";

/// A manager that compiled [`ADD`] (no limit set).
fn adding() -> Manager {
    let manager = Manager::new();
    // SAFETY: a live manager, a NUL-terminated text.
    let outcome = unsafe { manager_ffi::rt_exec_manager_compile_mir(manager.0, ADD.as_ptr()) };
    // SAFETY: the outcome, NUL-terminated.
    assert!(unsafe { reads(outcome, b"") }, "{}", smf::ffi::last_error());
    manager
}

fn rt_set_jit_backend(_: &Path) {
    // SAFETY: a NUL-terminated name.
    sweep(|| (), |()| unsafe { manager_ffi::rt_set_jit_backend(c"cranelift:speed".as_ptr()) });
}

fn rt_get_jit_backend(_: &Path) {
    // SAFETY: a static string.
    sweep(|| (), |()| unsafe { reads(manager_ffi::rt_get_jit_backend(), b"cranelift") });
}

fn rt_exec_manager_create(_: &Path) {
    sweep(
        || Taken::empty(|m| manager_ffi::rt_exec_manager_cleanup(m)),
        |m| {
            // SAFETY: a NUL-terminated name.
            let manager = unsafe { manager_ffi::rt_exec_manager_create(c"cranelift".as_ptr()) };
            if manager > 0 {
                m.put(manager);
            }
            manager > 0
        },
    );
}

fn rt_exec_manager_cleanup(_: &Path) {
    let prepare = || {
        let manager = adding();
        let handle = manager.0;
        // The `Taken` cleans it up instead (unless the call does).
        std::mem::forget(manager);
        Taken::new(handle, |m| manager_ffi::rt_exec_manager_cleanup(m))
    };
    sweep(prepare, |m| {
        let manager = m.take();
        manager_ffi::rt_exec_manager_cleanup(manager);
        // Ended: the handle is stale now.
        nothing_recorded() && manager_ffi::rt_exec_manager_list_functions(manager).is_null()
    });
}

/// The front end of the compile cases: the source is CLIF already, copied as a front end must
/// at an address-space limit (fallibly: an error naming memory).
fn pass_through(source: &str) -> Result<String, String> {
    let mut clif = String::new();
    clif.try_reserve_exact(source.len()).map_err(|_| "out of memory".to_owned())?;
    clif.push_str(source);
    Ok(clif)
}

fn rt_exec_manager_compile_source(dir: &Path) {
    smf::exec_manager::set_default_front_end(Some(std::sync::Arc::new(pass_through)));
    let source = CString::new(std::fs::read(dir.join("functions.clif")).unwrap()).unwrap();
    sweep(Manager::new, |m| {
        // SAFETY: a live manager, a NUL-terminated text; the outcome, NUL-terminated.
        unsafe { reads(manager_ffi::rt_exec_manager_compile_source(m.0, source.as_ptr()), b"") }
    });
}

fn rt_exec_manager_compile_file(dir: &Path) {
    smf::exec_manager::set_default_front_end(Some(std::sync::Arc::new(pass_through)));
    let path = c_path(dir, "functions.clif");
    sweep(Manager::new, |m| {
        // SAFETY: a live manager, a NUL-terminated path; the outcome, NUL-terminated.
        unsafe { reads(manager_ffi::rt_exec_manager_compile_file(m.0, path.as_ptr()), b"") }
    });
}

fn rt_exec_manager_execute(_: &Path) {
    sweep(adding, |m| {
        // SAFETY: a live manager, a NUL-terminated name, 2 arguments.
        unsafe { manager_ffi::rt_exec_manager_execute(m.0, c"oom_add".as_ptr(), [40, 2].as_ptr(), 2) == 42 }
    });
}

fn rt_exec_manager_has_function(_: &Path) {
    // SAFETY: a live manager, a NUL-terminated name.
    sweep(adding, |m| unsafe { manager_ffi::rt_exec_manager_has_function(m.0, c"oom_add".as_ptr()) });
}

fn rt_exec_manager_list_functions(_: &Path) {
    // SAFETY: NULL or the thread's NUL-terminated list.
    sweep(adding, |m| unsafe { reads(manager_ffi::rt_exec_manager_list_functions(m.0), b"oom_add") });
}

fn rt_exec_manager_last_error(_: &Path) {
    let prepare = || {
        let manager = adding();
        // SAFETY: a live manager, a NUL-terminated name, no argument.
        let result = unsafe {
            manager_ffi::rt_exec_manager_execute(manager.0, c"nothing".as_ptr(), std::ptr::null(), 0)
        };
        assert_eq!(result, 0);
        manager
    };
    sweep(prepare, |m| {
        // SAFETY: the thread's NUL-terminated text of the manager.
        unsafe { reads(manager_ffi::rt_exec_manager_last_error(m.0), b"no function nothing was compiled") }
    });
}
