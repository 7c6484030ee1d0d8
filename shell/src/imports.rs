//! What a module links against in the std shell, in the order the C ABI specifies: the host
//! program's own symbols ([`define_host`]), the sources of symbols a part of the library
//! registers (`add_symbol_source`: the execution manager's compiled functions), exports of
//! modules loaded earlier (the process's
//! [`Registry`](crate::loader::Registry)), the load's own resolver, when asked for, the
//! process's global symbols as `dlsym(RTLD_DEFAULT)` sees them ([`ProcessSymbols`]: everything
//! the program linked), and unless turned off, the C library and libm ([`CLibrary`]: what every
//! C file compiled by gcc calls, `memcpy` and `strlen` among them, as `dlopen` gives a library).
//! The core's resolvers never touch libc; these do.
//!
//! Locks guard the host table only while it is read or changed: no resolver runs under a lock
//! another load needs, so a load's resolver may itself load a module.

use std::ffi::{c_char, c_void, CString};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{OnceLock, RwLock};

use hashbrown::HashTable;
use smf_runtime::keyed_hash::spread;
use smf_runtime::load::{HashedName, Resolved, Resolver};

/// The host program's symbols, by name (process-wide).
static HOST: RwLock<Names> = RwLock::new(Names::new());

/// Whether [`HOST`] holds any name: set under its write lock as it changes, read without it, so
/// that the loads of a program that defines no host symbol (a C program's, `smf run`'s) take no
/// lock for them. A load racing a definition sees the table before or after it, as with the
/// lock.
static HOST_DEFINED: AtomicBool = AtomicBool::new(false);

/// A process-wide table of names and addresses, keyed by the hash a load computes once for
/// each import ([`HashedName::hash32`]: the loader's keyed 32-bit hash, strongly universal under
/// the process's key, so that no set of names a module imports makes the table probe long).
/// A load asks these tables once for each import without hashing the name again.
struct Names(HashTable<Named>);

/// One entry of [`Names`].
struct Named {
    hash: u32,
    name: Box<[u8]>,
    addr: usize,
}

/// No memory for one more entry of [`Names`].
struct NoRoom;

impl Names {
    const fn new() -> Self {
        Self(HashTable::new())
    }

    /// The address of `name`, if the table has it.
    #[inline]
    fn get(&self, name: HashedName<'_>) -> Option<usize> {
        let (hash, bytes) = (name.hash32(), name.bytes());
        self.0.find(spread(hash), |n| n.hash == hash && *n.name == *bytes).map(|n| n.addr)
    }

    /// Adds `name` (not in the table) at `addr`, copying the name fallibly (it is the caller's,
    /// of any length).
    fn insert(&mut self, name: HashedName<'_>, addr: usize) -> Result<(), NoRoom> {
        let bytes = name.bytes();
        let mut owned = Vec::new();
        owned.try_reserve_exact(bytes.len()).map_err(|_| NoRoom)?;
        owned.extend_from_slice(bytes);
        self.0.try_reserve(1, |n| spread(n.hash)).map_err(|_| NoRoom)?;
        let named = Named { hash: name.hash32(), name: owned.into_boxed_slice(), addr };
        self.0.insert_unique(spread(named.hash), named, |n| spread(n.hash));
        Ok(())
    }

    /// Removes `name`; false if the table does not have it.
    fn remove(&mut self, name: HashedName<'_>) -> bool {
        let (hash, bytes) = (name.hash32(), name.bytes());
        match self.0.find_entry(spread(hash), |n| n.hash == hash && *n.name == *bytes) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// How many names it has.
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// A table of names for reading, `lock` taken around every fork (as `rank`) from its first use.
fn read_names(
    rank: crate::fork::Lock,
    lock: &'static RwLock<Names>,
) -> std::sync::RwLockReadGuard<'static, Names> {
    crate::fork::hold_at_fork(rank, lock);
    crate::sync::read(lock)
}

/// [`read_names`] for changing.
fn write_names(
    rank: crate::fork::Lock,
    lock: &'static RwLock<Names>,
) -> std::sync::RwLockWriteGuard<'static, Names> {
    crate::fork::hold_at_fork(rank, lock);
    crate::sync::write(lock)
}

/// [`HOST`] for reading.
fn host_table() -> std::sync::RwLockReadGuard<'static, Names> {
    read_names(crate::fork::Lock::Host, &HOST)
}

/// [`HOST`] for changing.
fn host_table_mut() -> std::sync::RwLockWriteGuard<'static, Names> {
    write_names(crate::fork::Lock::Host, &HOST)
}

/// Why [`define_host`] refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostError {
    /// An empty name, or one with a NUL byte.
    BadName,
    /// A null address.
    NullAddress,
    /// The name is defined already, with another address.
    AlreadyDefined {
        /// The address it has.
        address: usize,
    },
    /// No memory for the table's entry.
    OutOfMemory,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::BadName => f.write_str("a host symbol needs a non-empty name without NUL bytes"),
            HostError::NullAddress => f.write_str("a host symbol needs a non-null address"),
            HostError::AlreadyDefined { address } => {
                write!(f, "already defined with another address ({address:#x})")
            }
            HostError::OutOfMemory => f.write_str("out of memory for the host symbol's entry"),
        }
    }
}

impl std::error::Error for HostError {}

/// Defines host symbol `name` at `address` for every later load in the process. Defining a
/// name again with the same address is not an error; with another address it is.
pub fn define_host(name: &[u8], address: usize) -> Result<(), HostError> {
    if name.is_empty() || name.contains(&0) {
        return Err(HostError::BadName);
    }
    if address == 0 {
        return Err(HostError::NullAddress);
    }
    let name = HashedName::new(name);
    let mut host = host_table_mut();
    match host.get(name) {
        Some(existing) if existing != address => Err(HostError::AlreadyDefined { address: existing }),
        Some(_) => Ok(()),
        None => {
            host.insert(name, address).map_err(|NoRoom| HostError::OutOfMemory)?;
            HOST_DEFINED.store(true, Ordering::Release);
            Ok(())
        }
    }
}

/// Removes host symbol `name`; false if it was not defined. Modules linked already keep the
/// address they got.
pub fn undefine_host(name: &[u8]) -> bool {
    let mut host = host_table_mut();
    let removed = host.remove(HashedName::new(name));
    HOST_DEFINED.store(host.len() != 0, Ordering::Release);
    removed
}

/// How many host symbols are defined.
fn host_count() -> usize {
    host_table().len()
}

/// Resolves the host symbols ([`define_host`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct HostSymbols;

impl Resolver for HostSymbols {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        self.resolve_hashed(HashedName::new(name))
    }

    fn resolve_hashed(&self, name: HashedName<'_>) -> Option<Resolved> {
        if !HOST_DEFINED.load(Ordering::Acquire) {
            return None;
        }
        let addr = host_table().get(name)?;
        Some(Resolved { addr, keepalive: None })
    }

    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        write!(out, "host symbols ({})", host_count())
    }
}

/// How many sources of symbols [`add_symbol_source`] takes.
const MOST_SOURCES: usize = 4;

/// The registered sources, in the order they were added; read without a lock.
static SOURCES: [OnceLock<&'static (dyn Resolver + Send + Sync)>; MOST_SOURCES] =
    [const { OnceLock::new() }; MOST_SOURCES];

/// Adds `source` to every later load's lookup order, right after the host symbols (the
/// execution manager adds its compiled functions when its first manager is made, so that the
/// lookup order names no part of the library). False if [`MOST_SOURCES`] are registered
/// already (the library adds one). A source added twice is asked twice: add each once.
#[cfg_attr(not(feature = "cranelift"), allow(dead_code))] // the one source is the manager's
pub(crate) fn add_symbol_source(source: &'static (dyn Resolver + Send + Sync)) -> bool {
    SOURCES.iter().any(|slot| slot.set(source).is_ok())
}

/// The registered sources, in order.
fn symbol_sources() -> impl Iterator<Item = &'static (dyn Resolver + Send + Sync)> {
    SOURCES.iter().map_while(|slot| slot.get().copied())
}

// The dynamic linker's lookup. Rust's std links the C library on Linux; `dlsym` and `dlopen`
// are in it (glibc 2.34 and later, and musl; older glibc has them in libdl, which std links too).
extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dlopen(filename: *const c_char, flags: i32) -> *mut c_void;
}

/// `RTLD_NOW` (glibc and musl).
const RTLD_NOW: i32 = 2;
/// `RTLD_NOLOAD` (glibc and musl): only a library the process has loaded already.
const RTLD_NOLOAD: i32 = 4;

/// `dlsym(handle, name)` as an address.
fn symbol_in(handle: *mut c_void, name: &[u8]) -> Option<usize> {
    let name = CString::new(name).ok()?;
    #[allow(unsafe_code)]
    // SAFETY: `name` is a NUL-terminated string that outlives the call; dlsym only reads it.
    // `handle` is RTLD_DEFAULT or a handle dlopen returned and that is never closed.
    let addr = unsafe { dlsym(handle, name.as_ptr()) };
    (!addr.is_null()).then_some(addr as usize)
}

/// `RTLD_DEFAULT`: the global scope, in load order (a null handle on glibc and musl).
const RTLD_DEFAULT: *mut c_void = std::ptr::null_mut();

/// Resolves the process's global symbols, as `dlsym(RTLD_DEFAULT)` sees them: the C library,
/// the program's exported symbols, libraries it loaded with `RTLD_GLOBAL`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessSymbols;

impl Resolver for ProcessSymbols {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        symbol_in(RTLD_DEFAULT, name).map(|addr| Resolved { addr, keepalive: None })
    }

    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        out.write_str("the process's symbols (dlsym)")
    }
}

/// The C library and the math library: what a C program built with `cc ... -lm` links
/// against, and nothing else of the process (the program's own exports and other libraries
/// are [`ProcessSymbols`]'). The last resort of every load unless turned off
/// ([`LinkOptions::c_library`]), so that a packed C file's `memcpy`, `strlen` or `sqrt`
/// resolves as `dlopen` would resolve it.
#[derive(Clone, Copy, Debug, Default)]
pub struct CLibrary;

/// A handle of the library first of `names` that dlopen gives (`flags` added to `RTLD_NOW`),
/// opened once per `cell` (never closed: its functions may be linked into modules for the rest
/// of the process); null if none could be opened.
fn library(cell: &'static std::sync::OnceLock<usize>, names: &[&std::ffi::CStr], flags: i32) -> *mut c_void {
    *cell.get_or_init(|| {
        let mut opened = names.iter().map(|name| {
            #[allow(unsafe_code)]
            // SAFETY: a NUL-terminated constant name; dlopen has no other precondition.
            let handle = unsafe { dlopen(name.as_ptr(), RTLD_NOW | flags) };
            handle as usize
        });
        opened.find(|&handle| handle != 0).unwrap_or(0)
    }) as *mut c_void
}

/// The C library's handle: the one the process runs with (glibc's `libc.so.6`, musl's
/// `libc.so`). Null where it is not a shared library (a static program): [`CLibrary`] then
/// asks the process's global scope.
fn libc() -> *mut c_void {
    static LIBC: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    library(&LIBC, &[c"libc.so.6", c"libc.so"], RTLD_NOLOAD)
}

/// The math library's handle (glibc's `libm.so.6`, loaded if the program did not link it;
/// musl has it in the C library); null if it could not be opened.
fn libm() -> *mut c_void {
    static LIBM: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    library(&LIBM, &[c"libm.so.6"], 0)
}

/// What [`CLibrary`] found in the C library and libm, by name. Their handles are never closed,
/// so a name they define keeps its address for the rest of the process: each name a process's
/// modules import is asked of `dlsym` once, not once per import of every load. Only names they
/// define are kept (a few thousand at most, whatever modules ask for); none when the C library
/// is not a shared library (the process's scope, which `dlclose` can change, is asked then).
static C_LIBRARY_FOUND: RwLock<Names> = RwLock::new(Names::new());

/// [`C_LIBRARY_FOUND`] for reading.
fn c_library_found() -> std::sync::RwLockReadGuard<'static, Names> {
    read_names(crate::fork::Lock::CLibrary, &C_LIBRARY_FOUND)
}

/// [`C_LIBRARY_FOUND`] for adding to.
fn c_library_found_mut() -> std::sync::RwLockWriteGuard<'static, Names> {
    write_names(crate::fork::Lock::CLibrary, &C_LIBRARY_FOUND)
}

#[cfg(test)]
thread_local! {
    /// How many names [`CLibrary`] asked `dlsym` for on this thread (tests check that a name
    /// is asked once; other tests' threads do not count).
    static C_LIBRARY_ASKED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl Resolver for CLibrary {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        self.resolve_hashed(HashedName::new(name))
    }

    fn resolve_hashed(&self, hashed: HashedName<'_>) -> Option<Resolved> {
        if let Some(addr) = c_library_found().get(hashed) {
            return Some(Resolved { addr, keepalive: None });
        }
        let name = hashed.bytes();
        #[cfg(test)]
        C_LIBRARY_ASKED.set(C_LIBRARY_ASKED.get() + 1);
        let libc = libc();
        let stays = !libc.is_null();
        let libc = if stays { libc } else { RTLD_DEFAULT };
        let addr = symbol_in(libc, name).or_else(|| {
            let libm = libm();
            (!libm.is_null()).then(|| symbol_in(libm, name)).flatten()
        })?;
        if stays {
            let mut found = c_library_found_mut();
            // Another thread may have added it meanwhile; without memory it is asked again.
            if found.get(hashed).is_none() {
                let _ = found.insert(hashed, addr);
            }
        }
        Some(Resolved { addr, keepalive: None })
    }

    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        out.write_str("the C library and libm")
    }
}

/// How a load links, besides the host symbols and the modules loaded before it (which every
/// load linked as the process links, [`crate::loader::Linking::Process`], consults). The default: no resolver of its
/// own, the C library and libm as the last resort, exports offered to later loads.
#[derive(Clone, Copy)]
pub struct LinkOptions<'r> {
    /// Asked after the host symbols and the registry; `None` for none.
    pub resolver: Option<&'r dyn Resolver>,
    /// After the resolver: the process's global symbols ([`ProcessSymbols`]).
    pub process_symbols: bool,
    /// Last resort: the C library and libm ([`CLibrary`]). On by default.
    pub c_library: bool,
    /// The module's exports are not offered to later loads (as `RTLD_LOCAL`).
    pub local: bool,
    /// The module is described to debuggers and profilers as the process asks
    /// ([`crate::debug`]: GDB's JIT interface once a debugger listens, unless `SMF_GDB_JIT=0`; the perf map with
    /// `SMF_PERF_MAP=1`). On by default.
    pub debug_info: bool,
    /// The shared libraries the module names as needed are opened and resolved in, after the
    /// resolver ([`crate::needed`]). On by default.
    pub open_needed: bool,
}

impl Default for LinkOptions<'_> {
    fn default() -> Self {
        LinkOptions {
            resolver: None,
            process_symbols: false,
            c_library: true,
            local: false,
            debug_info: true,
            open_needed: true,
        }
    }
}

impl fmt::Debug for LinkOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkOptions")
            .field("resolver", &self.resolver.is_some())
            .field("process_symbols", &self.process_symbols)
            .field("c_library", &self.c_library)
            .field("local", &self.local)
            .field("debug_info", &self.debug_info)
            .field("open_needed", &self.open_needed)
            .finish()
    }
}

/// The whole lookup order of one load: host symbols, then the registered sources
/// ([`add_symbol_source`]), then `modules` (exports of modules loaded before), then the options' resolver, then
/// the libraries the module needs (unless turned off), then the process's symbols if asked for, then
/// the C library and libm unless turned off.
pub(crate) struct Imports<'r> {
    pub(crate) modules: &'r dyn Resolver,
    pub(crate) options: LinkOptions<'r>,
    pub(crate) needed: crate::needed::NeededLibraries,
}

impl<'r> Imports<'r> {
    /// The lookup order of a load linked against `modules` as `options` say.
    pub(crate) fn new(modules: &'r dyn Resolver, options: LinkOptions<'r>) -> Self {
        // Without the C library, a needed library must not hand out the C library's symbols.
        let needed = if options.c_library {
            crate::needed::NeededLibraries::new()
        } else {
            crate::needed::NeededLibraries::own_symbols_only()
        };
        Self { modules, options, needed }
    }
}

impl Resolver for Imports<'_> {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        self.resolve_hashed(HashedName::new(name))
    }

    fn resolve_hashed(&self, name: HashedName<'_>) -> Option<Resolved> {
        HostSymbols
            .resolve_hashed(name)
            .or_else(|| symbol_sources().find_map(|source| source.resolve_hashed(name)))
            .or_else(|| self.modules.resolve_hashed(name))
            .or_else(|| self.options.resolver.and_then(|r| r.resolve_hashed(name)))
            .or_else(|| self.needed.resolve_hashed(name))
            .or_else(|| self.options.process_symbols.then(|| ProcessSymbols.resolve(name.bytes())).flatten())
            .or_else(|| self.options.c_library.then(|| CLibrary.resolve_hashed(name)).flatten())
    }

    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        HostSymbols.describe(out)?;
        for source in symbol_sources() {
            out.write_str(", ")?;
            source.describe(out)?;
        }
        out.write_str(", ")?;
        self.modules.describe(out)?;
        if let Some(resolver) = self.options.resolver {
            out.write_str(", ")?;
            resolver.describe(out)?;
        }
        if !self.needed.is_empty() {
            out.write_str(", ")?;
            self.needed.describe(out)?;
        }
        if self.options.process_symbols {
            out.write_str(", ")?;
            ProcessSymbols.describe(out)?;
        }
        if self.options.c_library {
            out.write_str(", ")?;
            CLibrary.describe(out)?;
        }
        Ok(())
    }

    fn needs(&self, libraries: &[&[u8]]) {
        if let Some(resolver) = self.options.resolver {
            resolver.needs(libraries);
        }
        if self.options.open_needed {
            self.needed.needs(libraries);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_c_library_is_asked_once_per_name_it_defines_and_every_time_for_others() {
        // A name no other test asks for, so that the count is this test's.
        let name = b"strtoull";
        let first = CLibrary.resolve(name).map(|r| r.addr);
        let asked = C_LIBRARY_ASKED.get();
        let again = CLibrary.resolve(name).map(|r| r.addr);
        assert!(first.is_some(), "the C library defines strtoull");
        assert_eq!(again, first, "the same address the second time");
        assert_eq!(C_LIBRARY_ASKED.get(), asked, "answered without dlsym");
        assert_eq!(again, symbol_in(libc(), name), "what dlsym gives");
        // A name it does not define is asked again (nothing kept for it).
        assert!(CLibrary.resolve(b"smf_no_such_function").is_none());
        let asked = C_LIBRARY_ASKED.get();
        assert!(CLibrary.resolve(b"smf_no_such_function").is_none());
        assert_eq!(C_LIBRARY_ASKED.get(), asked + 1);
    }

    #[test]
    fn the_name_tables_find_names_by_their_hash_and_bytes_and_spread_them() {
        let mut table = Names::new();
        let names: Vec<Vec<u8>> = (0..1000u32).map(|i| format!("f{i}").into_bytes()).collect();
        for (addr, name) in names.iter().enumerate() {
            assert!(table.insert(HashedName::new(name), addr + 1).is_ok());
        }
        for (addr, name) in names.iter().enumerate() {
            assert_eq!(table.get(HashedName::new(name)), Some(addr + 1), "{name:?}");
        }
        // A name differing only in length is another name.
        assert_eq!(table.get(HashedName::new(b"f1\0")), None);
        assert!(table.remove(HashedName::new(b"f1")) && !table.remove(HashedName::new(b"f1")));
        assert_eq!((table.get(HashedName::new(b"f1")), table.len()), (None, 999));
        // The buckets' low bits and the tags' high bits vary over the names.
        let spread_of = |n: &Vec<u8>| spread(HashedName::new(n).hash32());
        let low: std::collections::HashSet<u64> = names.iter().map(|n| spread_of(n) & 0xff).collect();
        let high: std::collections::HashSet<u64> = names.iter().map(|n| spread_of(n) >> 57).collect();
        assert!(low.len() > 200 && high.len() > 100, "{} low, {} high", low.len(), high.len());
    }

    #[test]
    fn host_symbols_answer_the_same_with_the_hash_at_hand_or_without() {
        let name = b"smf_imports_test_hashed_host_symbol";
        assert!(define_host(name, 0x1234).is_ok());
        let plain = HostSymbols.resolve(name).map(|r| r.addr);
        let hashed = HostSymbols.resolve_hashed(HashedName::new(name)).map(|r| r.addr);
        assert_eq!((plain, hashed), (Some(0x1234), Some(0x1234)));
        assert!(undefine_host(name));
        assert!(HostSymbols.resolve_hashed(HashedName::new(name)).is_none());
    }
}
