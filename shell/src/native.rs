//! Native shared libraries a module links against: [`SharedLibrary`] opens one with `dlopen`
//! (as `-lstdc++` would link a program against `libstdc++.so.6`) and resolves names in it
//! alone. Every module linked to one of its symbols keeps it open (the library is the
//! resolution's keepalive); it is closed once the last of them and the resolver are gone.

use std::ffi::{c_char, c_void, CStr, CString};
use std::fmt;
use std::sync::Arc;

use smf_runtime::load::{Keepalive, Resolved, Resolver};

// dlopen, dlsym, dlclose and dlerror are in the C library std links.
extern "C" {
    fn dlopen(filename: *const c_char, flags: i32) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dlclose(handle: *mut c_void) -> i32;
    fn dlerror() -> *const c_char;
    fn dladdr(addr: *const c_void, info: *mut DlInfo) -> i32;
    fn dlinfo(handle: *mut c_void, request: i32, info: *mut c_void) -> i32;
}

/// `Dl_info` (glibc and musl).
#[repr(C)]
struct DlInfo {
    dli_fname: *const c_char,
    dli_fbase: *mut c_void,
    dli_sname: *const c_char,
    dli_saddr: *mut c_void,
}

/// The public start of `struct link_map` (glibc and musl).
#[repr(C)]
struct LinkMap {
    l_addr: usize,
    l_name: *const c_char,
    l_ld: *const c_void,
}

/// `dlinfo`'s request for the handle's `struct link_map *`.
const RTLD_DI_LINKMAP: i32 = 2;

/// The base address of the shared object holding `addr`, as `dladdr` gives it.
fn object_base(addr: *const c_void) -> Option<usize> {
    let mut info = DlInfo {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    #[allow(unsafe_code)]
    // SAFETY: dladdr reads the dynamic linker's tables for any address and fills `info`.
    let found = unsafe { dladdr(addr, &mut info) };
    (found != 0 && !info.dli_fbase.is_null()).then_some(info.dli_fbase as usize)
}

/// `RTLD_NOW | RTLD_LOCAL` (glibc and musl): bound at once, its symbols not added to the
/// process's global scope.
const RTLD_NOW_LOCAL: i32 = 2;

/// `RTLD_LAZY | RTLD_NOLOAD` (glibc and musl): a handle to an object already loaded, loading
/// nothing.
const RTLD_LAZY_NOLOAD: i32 = 0x0001 | 0x0004;

/// The addresses of `names` in the shared object `file` (a name or path as `dlopen` takes it)
/// if the process has loaded it already (nothing is loaded: `None` otherwise), 0 for a name it
/// does not define. The handle is closed at once; the object stays, as it was loaded before.
pub(crate) fn symbols_of_loaded<const N: usize>(file: &CStr, names: [&CStr; N]) -> Option<[usize; N]> {
    #[allow(unsafe_code)]
    // SAFETY: a NUL-terminated name; NOLOAD loads nothing (a handle of an object already
    // loaded, or null). A handle is asked for NUL-terminated names and closed once.
    unsafe {
        let handle = dlopen(file.as_ptr(), RTLD_LAZY_NOLOAD);
        if handle.is_null() {
            return None;
        }
        let found = names.map(|name| dlsym(handle, name.as_ptr()) as usize);
        dlclose(handle);
        Some(found)
    }
}

/// An open handle, closed when dropped. Kept as an address: dlsym and dlclose may be called
/// from any thread, so the handle may be shared and sent.
struct Handle {
    handle: usize,
    name: String,
    /// Where the library itself is mapped (`dladdr`'s base), if the dynamic linker says.
    base: Option<usize>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        #[allow(unsafe_code)]
        // SAFETY: a handle dlopen returned, closed once (this is its only owner, dropped once).
        unsafe {
            dlclose(self.handle as *mut c_void);
        }
    }
}

/// A native shared library, open, resolving names in it alone.
#[derive(Clone)]
pub struct SharedLibrary {
    handle: Arc<Handle>,
}

impl fmt::Debug for SharedLibrary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedLibrary").field("name", &self.handle.name).finish_non_exhaustive()
    }
}

impl SharedLibrary {
    /// Opens `name` as `dlopen` finds it (a path, or a name searched as the dynamic linker
    /// searches); the error is `dlerror`'s text.
    pub fn open(name: &str) -> Result<SharedLibrary, String> {
        let c_name = CString::new(name).map_err(|_| format!("{name:?}: a library name with a NUL byte"))?;
        #[allow(unsafe_code)]
        // SAFETY: a NUL-terminated name that outlives the call.
        let handle = unsafe { dlopen(c_name.as_ptr(), RTLD_NOW_LOCAL) };
        if handle.is_null() {
            #[allow(unsafe_code)]
            // SAFETY: dlerror returns null or a NUL-terminated string valid until the next dl
            // call on this thread; it is copied at once.
            let reason = unsafe {
                let text = dlerror();
                if text.is_null() {
                    String::from("not found")
                } else {
                    CStr::from_ptr(text).to_string_lossy().into_owned()
                }
            };
            return Err(reason);
        }
        let mut map: *const LinkMap = std::ptr::null();
        #[allow(unsafe_code)]
        // SAFETY: an open handle; RTLD_DI_LINKMAP writes one pointer, to the handle's link map,
        // which lives while the handle is open (its `l_ld` is only passed to `dladdr`).
        let base = unsafe {
            let known = dlinfo(handle, RTLD_DI_LINKMAP, (&raw mut map).cast()) == 0 && !map.is_null();
            if known {
                object_base((*map).l_ld)
            } else {
                None
            }
        };
        let name = name.to_owned();
        Ok(SharedLibrary { handle: Arc::new(Handle { handle: handle as usize, name, base }) })
    }

    /// `name` if the library itself defines it, not one of the libraries it links (the C
    /// library among them, which `dlsym` on its handle reaches too).
    pub fn resolve_own(&self, name: &[u8]) -> Option<Resolved> {
        let resolved = self.resolve(name)?;
        let own =
            self.handle.base.is_some() && object_base(resolved.addr as *const c_void) == self.handle.base;
        own.then_some(resolved)
    }

    /// The name it was opened by.
    pub fn name(&self) -> &str {
        &self.handle.name
    }
}

impl Resolver for SharedLibrary {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        let name = CString::new(name).ok()?;
        #[allow(unsafe_code)]
        // SAFETY: an open handle (kept by `self`) and a NUL-terminated name outliving the call.
        let addr = unsafe { dlsym(self.handle.handle as *mut c_void, name.as_ptr()) };
        let keepalive: Keepalive = self.handle.clone();
        (!addr.is_null()).then(|| Resolved { addr: addr as usize, keepalive: Some(keepalive) })
    }

    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        write!(out, "{}", self.handle.name)
    }
}

/// Several libraries, asked in order.
#[derive(Clone, Debug, Default)]
pub struct SharedLibraries(pub Vec<SharedLibrary>);

impl Resolver for SharedLibraries {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        self.0.iter().find_map(|library| library.resolve(name))
    }

    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        for (i, library) in self.0.iter().enumerate() {
            if i > 0 {
                out.write_str(", ")?;
            }
            library.describe(out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_library_resolves_its_own_symbols_and_keeps_itself_open_while_linked() {
        let libm = SharedLibrary::open("libm.so.6").unwrap();
        let cos = libm.resolve(b"cos").expect("libm has cos");
        assert_ne!(cos.addr, 0);
        assert!(libm.resolve(b"no_such_symbol_anywhere").is_none());
        assert_eq!(Arc::strong_count(&libm.handle), 2, "the resolution holds the library");
        drop(cos);
        assert_eq!(Arc::strong_count(&libm.handle), 1);
        let mut described = String::new();
        libm.describe(&mut described).unwrap();
        assert_eq!(described, "libm.so.6");
    }

    #[test]
    fn a_library_that_cannot_be_opened_says_why() {
        let error = SharedLibrary::open("libdoes-not-exist.so.9").unwrap_err();
        assert!(error.contains("libdoes-not-exist.so.9"), "{error}");
        assert!(SharedLibrary::open("a\0b").unwrap_err().contains("NUL"));
    }
}
