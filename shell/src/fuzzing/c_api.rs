//! The `c_api` target: the C ABI's `smf_module_*`, `smf_cache_*` and `smf_jit_*` functions in
//! sequences decoded from the input, each given a handle that is live, released (stale), of
//! another type, made up, or NULL. No call may crash; a call given anything but a live handle
//! of its type fails and leaves a message (`smf_last_error`); live objects are unaffected by
//! calls on others. At the end every reference the sequence holds is given back and the
//! process's allocator holds no block more than before.

use std::ffi::{c_char, c_void, CStr, CString};

use arbitrary::{Arbitrary, Unstructured};

use super::module_files::{self, OFFERED, SLOTS};
use crate::ffi::cache::*;
use crate::ffi::error::{smf_clear_error, smf_last_error};
use crate::ffi::instantiate::*;
use crate::ffi::smf_module::*;

/// Most calls one input makes.
const MAX_CALLS: usize = 48;

/// The three handle types.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Module,
    Cache,
    Generics,
}

/// A handle to give a call.
#[derive(Arbitrary, Clone, Copy, Debug)]
enum Handle {
    /// One the sequence holds (by index among those of `kind`).
    Live { kind: Kind, index: u8 },
    /// One it gave back.
    Released { index: u8 },
    /// Any value.
    Raw(u64),
    /// NULL.
    Null,
}

/// One call.
#[derive(Arbitrary, Debug)]
enum Call {
    ModuleLoad { slot: u8 },
    ModuleLoadBytes { bytes: Vec<u8> },
    ModuleRelease { h: Handle },
    ModuleRetain { h: Handle },
    ModuleSymbol { h: Handle, slot: u8 },
    ModuleDialect { h: Handle },
    ModuleSymbolCount { h: Handle },
    ModuleSymbolName { h: Handle, index: u8 },
    ModuleEntry { h: Handle },
    CacheNew { pages: u8, modules: u8 },
    CacheFree { h: Handle },
    CacheGet { h: Handle, slot: u8 },
    CacheEvict { h: Handle, slot: u8 },
    CacheClear { h: Handle },
    CacheStats { h: Handle },
    CacheResolve { h: Handle, slot: u8 },
    JitNew { cache: Handle, compiles: bool },
    JitFree { h: Handle },
    JitInstantiate { h: Handle, name: u8 },
    InstantiatorStats { h: Handle },
}

/// What the sequence holds: live handles with the references it has, and those given back.
#[derive(Default)]
struct Held {
    live: Vec<(Kind, usize, u32)>,
    released: Vec<usize>,
}

impl Held {
    /// The value `h` stands for, and whether it is a live handle of `kind`.
    fn value(&self, h: Handle, kind: Kind) -> (usize, bool) {
        match h {
            Handle::Live { kind: k, index } => {
                let of: Vec<_> = self.live.iter().filter(|(lk, _, _)| *lk == k).collect();
                match of.get(usize::from(index) % of.len().max(1)) {
                    Some(&&(lk, value, _)) => (value, lk == kind),
                    None => (0, false),
                }
            }
            Handle::Released { index } => {
                let value = self.released.get(usize::from(index) % self.released.len().max(1));
                (value.copied().unwrap_or(0), false)
            }
            // A made-up value is never one the library handed out (those are multiples of 16
            // with a type tag) unless it happens to be: then it is not "made up".
            Handle::Raw(raw) => {
                let value = usize::try_from(raw).unwrap_or(usize::MAX);
                (value, self.live.iter().any(|&(k, v, _)| v == value && k == kind))
            }
            Handle::Null => (0, false),
        }
    }

    /// A new handle (one reference); NULL is nothing.
    fn add(&mut self, kind: Kind, value: usize) {
        if value != 0 {
            match self.live.iter_mut().find(|(_, v, _)| *v == value) {
                Some(entry) => entry.2 += 1,
                None => self.live.push((kind, value, 1)),
            }
        }
    }

    /// One reference to `value` given back.
    fn give_back(&mut self, value: usize) {
        if let Some(at) = self.live.iter().position(|(_, v, _)| *v == value) {
            self.live[at].2 -= 1;
            if self.live[at].2 == 0 {
                self.live.swap_remove(at);
                self.released.push(value);
            }
        }
    }
}

/// A compile callback that makes `return 7` for every name.
///
/// # Safety
/// `code` and `code_len` are writable (the library's contract with its callbacks).
#[allow(unsafe_code)]
unsafe extern "C" fn compile_seven(
    _user: *mut c_void,
    _name: *const c_char,
    _type_args: *const c_char,
    _template: *const u8,
    _template_len: usize,
    code: *mut *const u8,
    code_len: *mut usize,
) -> i32 {
    static CODE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let bytes = CODE.get_or_init(|| module_files::return_constant(7));
    // SAFETY: the library hands writable out-parameters.
    #[allow(unsafe_code)]
    unsafe {
        *code = bytes.as_ptr();
        *code_len = bytes.len();
    }
    0
}

/// A compile callback that refuses every name.
///
/// # Safety
/// None: it reads nothing.
#[allow(unsafe_code)]
unsafe extern "C" fn compile_nothing(
    _user: *mut c_void,
    _name: *const c_char,
    _type_args: *const c_char,
    _template: *const u8,
    _template_len: usize,
    _code: *mut *const u8,
    _code_len: *mut usize,
) -> i32 {
    1
}

/// A path as C takes it.
fn c_path(path: &std::path::Path) -> CString {
    CString::new(path.as_os_str().as_encoded_bytes()).unwrap_or_default()
}

/// Whether the thread's last error has a message.
fn has_message() -> bool {
    let message = smf_last_error();
    // SAFETY: the library's error text is NUL-terminated and lives on this thread.
    #[allow(unsafe_code)]
    let text = unsafe { (!message.is_null()).then(|| CStr::from_ptr(message)) };
    text.is_some_and(|t| !t.is_empty())
}

/// Runs the calls `data` decodes to; returns how many ran.
pub fn fuzz_c_api(data: &[u8]) -> usize {
    let mut input = Unstructured::new(data);
    let before = crate::process::exec().stats();
    let mut replaced = Vec::new();
    for slot in 0..SLOTS {
        module_files::write(slot, module_files::Version::Module(0), &mut replaced);
    }
    let generics = c_path(module_files::generics());
    let mut held = Held::default();
    let mut calls = 0;
    while calls < MAX_CALLS {
        let Ok(call) = Call::arbitrary(&mut input) else { break };
        smf_clear_error();
        // (whether the call failed, whether its handle was live and of the right type)
        let (failed, valid) = one_call(call, &mut held, &generics);
        if failed == Some(true) && !valid {
            assert!(has_message(), "a call on a handle that is not live failed without a message");
        }
        assert!(valid || failed != Some(false), "a call succeeded on a handle that is not live");
        calls += 1;
    }
    for (kind, value, refs) in std::mem::take(&mut held.live) {
        for _ in 0..refs {
            match kind {
                Kind::Module => smf_module_release(value as *mut SmfModule),
                Kind::Cache => smf_cache_free(value as *mut SmfCache),
                Kind::Generics => smf_jit_free(value as *mut SmfJit),
            }
        }
    }
    drop(replaced);
    let after = crate::process::exec().stats();
    assert_eq!(after.blocks_live, before.blocks_live, "blocks left behind once every handle was given back");
    calls
}

/// Makes `call`: whether it failed (`None`: the call cannot say) and whether its handle was a
/// live one of its type (calls that take none count as given a valid one).
#[allow(unsafe_code)]
fn one_call(call: Call, held: &mut Held, generics: &CString) -> (Option<bool>, bool) {
    let slot_path = |slot: u8| c_path(&module_files::path(slot % SLOTS));
    let name = |slot: u8| CString::new(module_files::function_name(slot % SLOTS)).unwrap_or_default();
    match call {
        Call::ModuleLoad { slot } => {
            // SAFETY: a NUL-terminated path.
            let m = unsafe { smf_module_load(slot_path(slot).as_ptr()) };
            held.add(Kind::Module, m as usize);
            (Some(m.is_null()), true)
        }
        Call::ModuleLoadBytes { bytes } => {
            // SAFETY: `bytes` is readable for its length.
            let m = unsafe { smf_module_load_bytes(bytes.as_ptr(), bytes.len()) };
            held.add(Kind::Module, m as usize);
            (None, true)
        }
        Call::ModuleRelease { h } => {
            let (value, valid) = held.value(h, Kind::Module);
            smf_module_release(value as *mut SmfModule);
            if valid {
                held.give_back(value);
            }
            (None, valid)
        }
        Call::ModuleRetain { h } => {
            let (value, valid) = held.value(h, Kind::Module);
            let m = smf_module_retain(value as *mut SmfModule);
            if valid {
                held.add(Kind::Module, m as usize);
            }
            (Some(m.is_null()), valid)
        }
        Call::ModuleSymbol { h, slot } => {
            let (value, valid) = held.value(h, Kind::Module);
            // SAFETY: a NUL-terminated name.
            let found = unsafe { smf_module_symbol(value as *const SmfModule, name(slot).as_ptr()) };
            (if valid { None } else { Some(found.is_null()) }, valid)
        }
        Call::ModuleDialect { h } => {
            let (value, valid) = held.value(h, Kind::Module);
            (Some(smf_module_dialect(value as *const SmfModule) < 0), valid)
        }
        Call::ModuleSymbolCount { h } => {
            let (value, valid) = held.value(h, Kind::Module);
            let count = smf_module_symbol_count(value as *const SmfModule);
            (if valid { None } else { Some(count == 0) }, valid)
        }
        Call::ModuleSymbolName { h, index } => {
            let (value, valid) = held.value(h, Kind::Module);
            let name = smf_module_symbol_name(value as *const SmfModule, usize::from(index));
            (if valid { None } else { Some(name.is_null()) }, valid)
        }
        Call::ModuleEntry { h } => {
            let (value, valid) = held.value(h, Kind::Module);
            let entry = smf_module_entry(value as *const SmfModule);
            (if valid { None } else { Some(entry.is_null()) }, valid)
        }
        Call::CacheNew { pages, modules } => {
            let c = smf_cache_new(u64::from(pages % 16) * 4096, u64::from(modules % 5));
            held.add(Kind::Cache, c as usize);
            (Some(c.is_null()), true)
        }
        Call::CacheFree { h } => {
            let (value, valid) = held.value(h, Kind::Cache);
            smf_cache_free(value as *mut SmfCache);
            if valid {
                held.give_back(value);
            }
            (None, valid)
        }
        Call::CacheGet { h, slot } => {
            let (value, valid) = held.value(h, Kind::Cache);
            // SAFETY: a NUL-terminated path.
            let m = unsafe { smf_cache_get(value as *mut SmfCache, slot_path(slot).as_ptr()) };
            held.add(Kind::Module, m as usize);
            (Some(m.is_null()), valid)
        }
        Call::CacheEvict { h, slot } => {
            let (value, valid) = held.value(h, Kind::Cache);
            // SAFETY: a NUL-terminated path.
            let evicted = unsafe { smf_cache_evict(value as *mut SmfCache, slot_path(slot).as_ptr()) };
            (if valid { None } else { Some(!evicted) }, valid)
        }
        Call::CacheClear { h } => {
            let (value, valid) = held.value(h, Kind::Cache);
            smf_cache_clear(value as *mut SmfCache);
            (None, valid)
        }
        Call::CacheStats { h } => {
            let (value, valid) = held.value(h, Kind::Cache);
            let mut stats = SmfCacheStats::default();
            // SAFETY: `stats` is writable.
            unsafe { smf_cache_stats(value as *const SmfCache, &mut stats) };
            (None, valid)
        }
        Call::CacheResolve { h, slot } => {
            let (value, valid) = held.value(h, Kind::Cache);
            // SAFETY: a NUL-terminated name.
            let found = unsafe { smf_cache_resolve(value as *mut SmfCache, name(slot).as_ptr()) };
            (if valid { None } else { Some(found.is_null()) }, valid)
        }
        Call::JitNew { cache, compiles } => {
            let (value, valid) = held.value(cache, Kind::Cache);
            let config = SmfJitConfig { max_depth: 0, enabled: true, update_metadata: false };
            let compile: SmfCompileFn = if compiles { compile_seven } else { compile_nothing };
            // SAFETY: the callback has the contract's signature; no user data.
            let j =
                unsafe { smf_jit_new(value as *mut SmfCache, config, Some(compile), std::ptr::null_mut()) };
            held.add(Kind::Generics, j as usize);
            (Some(j.is_null()), valid)
        }
        Call::JitFree { h } => {
            let (value, valid) = held.value(h, Kind::Generics);
            smf_jit_free(value as *mut SmfJit);
            if valid {
                held.give_back(value);
            }
            (None, valid)
        }
        Call::JitInstantiate { h, name: n } => {
            let (value, valid) = held.value(h, Kind::Generics);
            let mangled = CString::new(OFFERED[usize::from(n) % OFFERED.len()]).unwrap_or_default();
            let mut address = std::ptr::null();
            // SAFETY: NUL-terminated strings, a writable out-parameter.
            let code = unsafe {
                smf_jit_instantiate(value as *mut SmfJit, generics.as_ptr(), mangled.as_ptr(), &mut address)
            };
            (if valid { None } else { Some(code != SMF_JIT_OK) }, valid)
        }
        Call::InstantiatorStats { h } => {
            let (value, valid) = held.value(h, Kind::Generics);
            let mut stats = SmfJitStats::default();
            // SAFETY: `stats` is writable.
            unsafe { smf_jit_stats(value as *const SmfJit, &mut stats) };
            (None, valid)
        }
    }
}
