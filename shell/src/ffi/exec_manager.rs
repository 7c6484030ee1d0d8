//! `rt_set_jit_backend`, `rt_get_jit_backend` and `rt_exec_manager_*` (`ffi.md`, "The execution
//! manager"; feature `cranelift`), over [`crate::exec_manager::ExecManager`].
//!
//! A manager is an `int64_t` handle (`handles.rs`, type `ExecManager`; 0 is none). The strings
//! a manager hands to C (a compile's outcome, the function list, the last failure's message)
//! are the calling thread's, freed by the library: each stays valid until the same thread's
//! next call of the same kind on the same manager, or, once the manager is cleaned up (by any
//! thread), the thread's next call on any manager, or the thread's end. Per thread, as
//! `dlerror`'s: threads sharing a manager never free each other's strings or read each other's
//! failures. Every failure is also this thread's `smf_last_error`.

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::sync::atomic::{AtomicU8, Ordering};

use super::handles::Handles;
use super::{c_name, c_path, c_str, guard, ArgError, FfiError};
use crate::exec_manager::{ExecManager, OptLevel};

/// A manager as C holds it.
struct CManager {
    manager: ExecManager,
}

/// The strings a manager handed to one thread, by kind: each replaced by the thread's next
/// call of its kind on that manager.
#[derive(Default)]
struct Strings {
    /// A compile's error.
    compiled: CString,
    /// The function list.
    list: CString,
    /// The last failure's message.
    failure: CString,
    /// The last failure's message as `rt_exec_manager_last_error` last handed it out: replaced
    /// only by a later call of it that finds a newer failure.
    error: CString,
}

thread_local! {
    /// The strings each manager handed to this thread, by handle (a few managers per thread).
    static HANDED: RefCell<Vec<(i64, Strings)>> = const { RefCell::new(Vec::new()) };
}

/// `f` on the strings `manager` handed to this thread (made empty at the first call). The
/// thread's strings of managers that are no longer live go first: they end with their manager.
/// `None` while the thread is ending (its strings are gone).
fn with_strings<R>(manager: i64, f: impl FnOnce(&mut Strings) -> R) -> Option<R> {
    HANDED
        .try_with(|handed| {
            let mut handed = handed.borrow_mut();
            // A liveness check only (no reference taken: a manager another thread is cleaning
            // up is never dropped here, inside the borrow).
            handed.retain(|&(h, _)| h == manager || MANAGERS.with(handle(h), |_| ()).is_ok());
            let at = match handed.iter().position(|&(h, _)| h == manager) {
                Some(at) => at,
                None => {
                    handed.push((manager, Strings::default()));
                    handed.len() - 1
                }
            };
            f(&mut handed[at].1)
        })
        .ok()
}

/// Drops the strings `manager` handed to this thread.
fn forget_strings(manager: i64) {
    let _ = HANDED.try_with(|handed| handed.borrow_mut().retain(|&(h, _)| h != manager));
}

static MANAGERS: Handles<CManager> = Handles::new("ExecManager", crate::fork::Lock::Managers);

/// The opt level `rt_set_jit_backend` chose, for managers created with no backend named (0
/// none, 1 speed, 2 speed and size).
static CHOSEN_OPT: AtomicU8 = AtomicU8::new(0);

/// The opt level a backend name asks for: `cranelift` and `auto` (opt level none), or
/// `cranelift:none`, `cranelift:speed`, `cranelift:speed_and_size`.
fn backend(name: &str) -> Result<OptLevel, FfiError> {
    let (backend, opt) = name.split_once(':').unwrap_or((name, "none"));
    if !matches!(backend, "cranelift" | "auto") {
        return Err(FfiError::NoBackend(crate::kept::kept_str(backend)));
    }
    match opt {
        "none" => Ok(OptLevel::None),
        "speed" => Ok(OptLevel::Speed),
        "speed_and_size" => Ok(OptLevel::SpeedAndSize),
        _ => Err(FfiError::NoBackend(crate::kept::kept_str(name))),
    }
}

/// A C string of `text` (a NUL inside, which no name or message should hold, cut there).
fn c_string(text: String) -> CString {
    CString::new(text).unwrap_or_else(|e| {
        let end = e.nul_position();
        let mut bytes = e.into_vec();
        bytes.truncate(end);
        CString::new(bytes).unwrap_or_default()
    })
}

/// The opt level `rt_set_jit_backend` chose.
fn chosen_opt() -> OptLevel {
    match CHOSEN_OPT.load(Ordering::Relaxed) {
        1 => OptLevel::Speed,
        2 => OptLevel::SpeedAndSize,
        _ => OptLevel::None,
    }
}

/// The handle value `manager` (a negative one is no handle).
fn handle(manager: i64) -> *const CManager {
    usize::try_from(manager).unwrap_or(usize::MAX) as *const CManager
}

/// The manager behind `manager`.
fn manager_of(manager: i64) -> Result<std::sync::Arc<CManager>, FfiError> {
    Ok(MANAGERS.get(handle(manager))?)
}

/// Records `error` as `manager`'s last failure on this thread and hands it on.
fn failed(manager: i64, error: FfiError) -> FfiError {
    let message = c_string(error.to_string());
    with_strings(manager, |strings| strings.failure = message);
    error
}

/// Selects the backend managers created with no backend named use: "cranelift" or "auto" (the
/// same here), with an opt level as "cranelift:speed"; any other name is false, with the
/// reason in `smf_last_error` ("llvm" is not built in).
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rt_set_jit_backend(name: *const c_char) -> bool {
    guard(false, || {
        // SAFETY: forwarded to our caller's contract.
        let name = unsafe { c_str(name, "backend") }?;
        // Cranelift is the one backend built in ("auto" is it); an opt level may come with it.
        let opt = backend(name)?;
        CHOSEN_OPT.store(opt as u8, Ordering::Relaxed);
        Ok(true)
    })
}

/// The backend managers are created with: "cranelift" (a static string).
#[no_mangle]
pub extern "C" fn rt_get_jit_backend() -> *const c_char {
    c"cranelift".as_ptr()
}

/// A new manager for `backend` (NULL or "" for the one `rt_set_jit_backend` chose; "cranelift",
/// "auto", or "cranelift:speed" for an opt level); 0 on failure, the reason in
/// `smf_last_error`.
///
/// # Safety
/// `backend` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rt_exec_manager_create(backend: *const c_char) -> i64 {
    guard(0, || {
        let name = if backend.is_null() {
            ""
        } else {
            // SAFETY: forwarded to our caller's contract.
            unsafe { c_str(backend, "backend") }?
        };
        let opt = if name.is_empty() { chosen_opt() } else { self::backend(name)? };
        let manager = ExecManager::new(opt)?;
        let handle = MANAGERS.insert(CManager { manager });
        Ok(handle as i64)
    })
}

/// Ends `manager` (0: nothing): its functions are no longer found by later loads; code they
/// linked to stays until they are released. The strings it handed to this thread end with it
/// (another thread's, at that thread's next call on any manager or its end).
#[no_mangle]
pub extern "C" fn rt_exec_manager_cleanup(manager: i64) {
    guard((), || {
        if manager != 0 {
            MANAGERS.release(handle(manager))?;
            forget_strings(manager);
        }
        Ok(())
    })
}

/// Runs a compile on `manager`: "" on success, else the error (this thread's string of the
/// manager).
fn compile(manager: i64, work: impl FnOnce(&ExecManager) -> Result<Vec<String>, FfiError>) -> *const c_char {
    let mut outcome: *const c_char = c"".as_ptr();
    let failure = guard(Some(()), || {
        let m = manager_of(manager)?;
        match work(&m.manager) {
            Ok(_) => Ok(None),
            Err(error) => {
                // The outcome and the last failure, recorded together.
                let message = c_string(error.to_string());
                if let Some(text) = with_strings(manager, |strings| {
                    strings.failure = message.clone();
                    strings.compiled = message;
                    strings.compiled.as_ptr()
                }) {
                    outcome = text;
                }
                Err(error)
            }
        }
    });
    if failure.is_some() && outcome == c"".as_ptr() {
        // Not a live manager (or a panic, or the thread ending): the thread's message.
        return super::error::smf_last_error();
    }
    outcome
}

/// Compiles `source` through the registered front end (`smf::exec_manager::set_default_front_end`):
/// "" on success, else the error.
///
/// # Safety
/// `source` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rt_exec_manager_compile_source(
    manager: i64,
    source: *const c_char,
) -> *const c_char {
    compile(manager, |m| {
        // SAFETY: forwarded to our caller's contract.
        let source = unsafe { c_str(source, "source") }?;
        Ok(m.compile_source(source)?)
    })
}

/// Compiles the functions of the CLIF text `clif` together: "" on success, else the error.
///
/// # Safety
/// `clif` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rt_exec_manager_compile_mir(manager: i64, clif: *const c_char) -> *const c_char {
    compile(manager, |m| {
        // SAFETY: forwarded to our caller's contract.
        let clif = unsafe { c_str(clif, "CLIF text") }?;
        Ok(m.compile_clif(clif)?)
    })
}

/// Compiles the source file at `path` through the front end: "" on success, else the error.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rt_exec_manager_compile_file(manager: i64, path: *const c_char) -> *const c_char {
    compile(manager, |m| {
        // SAFETY: forwarded to our caller's contract.
        let path = unsafe { c_path(path) }?;
        Ok(m.compile_file(path)?)
    })
}

/// Calls function `name` with the `n` integers at `args` (at most six, as its signature
/// takes); its result, or 0 with the error in `rt_exec_manager_last_error` (an unknown name, a
/// wrong number of arguments, a signature that is not integers: never a call).
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `args` points to `n` integers (or `n` is 0).
#[no_mangle]
pub unsafe extern "C" fn rt_exec_manager_execute(
    manager: i64,
    name: *const c_char,
    args: *const i64,
    n: usize,
) -> i64 {
    guard(0, || {
        let m = manager_of(manager)?;
        let run = || -> Result<i64, FfiError> {
            // SAFETY: forwarded to our caller's contract.
            let name = unsafe { c_str(name, "name") }?;
            if n > crate::loader::MAX_INTEGER_ARGS {
                return Err(crate::loader::CallError::TooManyArguments(n).into());
            }
            let args: &[i64] = match n {
                0 => &[],
                _ if args.is_null() => return Err(ArgError::Null("args").into()),
                // SAFETY: `args` points to `n` integers (our caller's contract), `n` at most six.
                _ => unsafe { std::slice::from_raw_parts(args, n) },
            };
            Ok(m.manager.execute(name, args)?)
        };
        run().map_err(|error| failed(manager, error))
    })
}

/// Whether `manager` compiled a function `name` (false for a manager or name that is not one).
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rt_exec_manager_has_function(manager: i64, name: *const c_char) -> bool {
    guard(false, || {
        let m = manager_of(manager)?;
        // SAFETY: forwarded to our caller's contract.
        let name = unsafe { c_name(name) }?;
        Ok(std::str::from_utf8(name).is_ok_and(|name| m.manager.has_function(name)))
    })
}

/// The names of `manager`'s functions, sorted, one per line with no newline after the last
/// ("" for none; NULL for a manager that is not one), this thread's until its next list of the
/// manager.
#[no_mangle]
pub extern "C" fn rt_exec_manager_list_functions(manager: i64) -> *const c_char {
    guard(std::ptr::null(), || {
        let m = manager_of(manager)?;
        let list = c_string(m.manager.function_names().join("\n"));
        let text = with_strings(manager, |strings| {
            strings.list = list;
            strings.list.as_ptr()
        });
        Ok(text.unwrap_or(std::ptr::null()))
    })
}

/// What the last failed call on `manager` from this thread said ("" if none failed); for a
/// manager that is not one, this thread's last error. The text stays valid until a later call
/// of it on the manager finds a newer failure (calls with none between return the same text).
#[no_mangle]
pub extern "C" fn rt_exec_manager_last_error(manager: i64) -> *const c_char {
    match manager_of(manager) {
        Ok(_) => with_strings(manager, |strings| {
            if strings.error != strings.failure {
                strings.error = strings.failure.clone();
            }
            strings.error.as_ptr()
        })
        .unwrap_or(c"".as_ptr()),
        Err(error) => {
            super::error::set_error(&error.to_string());
            super::error::smf_last_error()
        }
    }
}
