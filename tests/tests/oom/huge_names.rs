//! Names of any length: the exports that take a name a caller made up (a symbol, a host
//! symbol, a backend, a function, an instantiation) answer a 16 MiB one with an error or a result under an
//! address-space limit that leaves no room to copy it, never with an abort: an error keeps a few
//! hundred bytes of a name, and a table copies one fallibly.

use std::ffi::CString;

use smf::ffi::cache as cache_ffi;
use smf::ffi::exec_manager as exec_manager_ffi;
use smf::ffi::imports as imports_ffi;
use smf::ffi::instantiate as jit_ffi;
use smf::ffi::smf_module as module_ffi;
use smf_format::write::samples;
use smf_format::Dialect;

/// The length of the name: far more than the margin the limit leaves.
const HUGE: usize = 16 << 20;

/// The child's side: each call with the huge name under the limit; prints what each returned
/// and the message it left, then a last line (it does nothing unless run as that child).
#[test]
fn huge_names_child() {
    if std::env::var_os("SMF_HUGE_NAMES").is_none() {
        return;
    }
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let name = CString::new(vec![b'x'; HUGE]).unwrap();
    let bytes = samples::return_42(Dialect::R96);
    // SAFETY: `bytes.len()` readable bytes.
    let module = unsafe { module_ffi::smf_module_load_bytes(bytes.as_ptr(), bytes.len()) };
    assert!(!module.is_null());
    let cache = cache_ffi::smf_cache_new(0, 0);
    // SAFETY: a NUL-terminated backend name.
    let manager = unsafe { exec_manager_ffi::rt_exec_manager_create(c"cranelift".as_ptr()) };
    assert!(manager > 0);
    let config = jit_ffi::SmfJitConfig { max_depth: 0, enabled: true, update_metadata: true };
    // SAFETY: a live cache and a callback of the right type.
    let jit = unsafe { jit_ffi::smf_jit_new(cache, config, Some(never_compiles), std::ptr::null_mut()) };
    assert!(!jit.is_null());
    let generics = smf_tests::workspace().join("examples/generics.smf");
    let generics = CString::new(generics.into_os_string().into_encoded_bytes()).unwrap();
    let names = [name.as_ptr()];
    let i64_ = [c"i64".as_ptr()];
    // Each call once with a short unknown name first: what the error path needs per thread
    // exists before the limit.
    // SAFETY: (all calls below) live handles and NUL-terminated names.
    unsafe {
        module_ffi::smf_module_symbol(module, c"nothing".as_ptr());
        imports_ffi::smf_host_undefine(c"nothing".as_ptr());
    }
    // Room for what the calls need, not for a copy of the name.
    let vm = super::harness::vm_size();
    let hard = getrlimit(Resource::As).maximum;
    setrlimit(Resource::As, Rlimit { current: Some(vm + (1 << 20)), maximum: hard }).unwrap();
    let mut outcomes = Vec::new();
    let mut record =
        |what: &str, value: String| outcomes.push((what.to_owned(), value, smf::ffi::last_error()));
    // SAFETY: as above.
    unsafe {
        let address = huge_names_child as *const std::ffi::c_void;
        record("smf_host_define", imports_ffi::smf_host_define(name.as_ptr(), address).to_string());
        record("smf_host_undefine", imports_ffi::smf_host_undefine(name.as_ptr()).to_string());
        record("smf_module_symbol", format!("{:?}", module_ffi::smf_module_symbol(module, name.as_ptr())));
        record(
            "smf_module_function",
            module_ffi::smf_module_function(module, name.as_ptr()).is_some().to_string(),
        );
        record("smf_cache_resolve", format!("{:?}", cache_ffi::smf_cache_resolve(cache, name.as_ptr())));
        record("rt_set_jit_backend", exec_manager_ffi::rt_set_jit_backend(name.as_ptr()).to_string());
        let executed = exec_manager_ffi::rt_exec_manager_execute(manager, name.as_ptr(), std::ptr::null(), 0);
        record("rt_exec_manager_execute", executed.to_string());
        let mut address = std::ptr::null();
        let code = jit_ffi::smf_jit_instantiate(jit, generics.as_ptr(), name.as_ptr(), &mut address);
        record("smf_jit_instantiate", code.to_string());
        let code = jit_ffi::smf_jit_instantiate_batch(
            jit,
            generics.as_ptr(),
            names.as_ptr(),
            1,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        record("smf_jit_instantiate_batch", code.to_string());
        record("smf_jit_resolve", jit_ffi::smf_jit_resolve(jit, name.as_ptr(), &mut address).to_string());
        let code = jit_ffi::smf_jit_resolve_generic(jit, name.as_ptr(), i64_.as_ptr(), 1, &mut address);
        record("smf_jit_resolve_generic", code.to_string());
    }
    setrlimit(Resource::As, Rlimit { current: hard, maximum: hard }).unwrap();
    for (what, value, error) in &outcomes {
        println!("{what} -> {value} | {error}");
    }
    println!("every call returned");
}

/// The instantiator's compiler: never reached (no module offers the name).
unsafe extern "C" fn never_compiles(
    _user: *mut std::ffi::c_void,
    _name: *const std::ffi::c_char,
    _type_args: *const std::ffi::c_char,
    _template: *const u8,
    _template_len: usize,
    _code: *mut *const u8,
    _code_len: *mut usize,
) -> i32 {
    1
}

#[test]
fn exports_given_a_huge_name_answer_with_an_error_not_an_abort() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "huge_names::huge_names_child", "--nocapture", "--test-threads", "1"])
        .env("SMF_HUGE_NAMES", "1")
        .env("MALLOC_ARENA_MAX", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the child died: {:?}\n{stdout}\n{stderr}", output.status);
    assert!(stdout.contains("every call returned"), "{stdout}\n{stderr}");
    // (The first outcome follows the test's name on its line.)
    let line = |what: &str| {
        let line = stdout.lines().find(|l| l.contains(&format!("{what} ->"))).unwrap_or_default();
        &line[line.find(what).unwrap_or(0)..]
    };
    // The table's copy of the name could not be had: an error naming memory.
    assert!(
        line("smf_host_define").starts_with("smf_host_define -> -1 |")
            && line("smf_host_define").contains("memory"),
        "{stdout}"
    );
    // The others are names nothing defines: their errors keep the name's start.
    let not_defined = [
        "smf_host_undefine",
        "smf_module_symbol",
        "smf_cache_resolve",
        "rt_exec_manager_execute",
        "smf_jit_resolve",
    ];
    for what in not_defined {
        assert!(line(what).contains("xxxxxxxx"), "{what}: {stdout}");
    }
    // An instantiator's claim on the name keeps a copy of it, as does its mangling: an error
    // naming memory (with the name's start where the name was whole).
    for what in ["smf_jit_instantiate", "smf_jit_instantiate_batch"] {
        assert!(line(what).contains("xxxxxxxx") && line(what).contains("out of memory"), "{what}: {stdout}");
    }
    assert!(line("smf_jit_resolve_generic").contains("out of memory"), "{stdout}");
    assert!(line("smf_module_function").starts_with("smf_module_function -> false"), "{stdout}");
    assert!(line("rt_set_jit_backend").starts_with("rt_set_jit_backend -> false"), "{stdout}");
}
