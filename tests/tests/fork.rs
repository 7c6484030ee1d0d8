//! `fork` while other threads use the library: the child, which has only the forking thread,
//! must find every lock free and what it guards whole (`shell/src/fork.rs` takes them around
//! the fork). Threads load and release modules through the Rust door and the C ABI (the
//! registry, the handle table, the index of code, the debugger's list, the executable memory
//! allocator, the C library's names) and use one cache and one instantiator over it (their own
//! locks) while the main thread forks again and again; each child loads, calls and releases a
//! module the same ways, gets a file it replaced through the shared cache, and instantiates a
//! name through the shared instantiator, and must be done within seconds.

#![allow(unsafe_code)] // fork, waitpid, kill and the C ABI

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smf::cache::ModuleCache;
use smf::instantiate::{Generics, Request};
use smf_runtime::instantiate::InstantiatorConfig;

extern "C" {
    fn fork() -> i32;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
    fn kill(pid: i32, signal: i32) -> i32;
    fn _exit(status: i32) -> !;
}
const SIGKILL: i32 = 9;

/// Forks made: the stress asks for 1,000.
const FORKS: usize = 1_000;
/// How long a child may take before it counts as hung.
const CHILD_DEADLINE: Duration = Duration::from_secs(10);

fn module() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/recursion.smf")
}

/// One use of the module through each door: loaded by path (Rust), `fib(10)` called, released;
/// loaded and released through the C ABI. False if anything went wrong.
fn use_module(path: &Path, c_path: &CString) -> bool {
    let Ok(module) = smf::loader::load(&smf::loader::LoadRequest::path(path)) else { return false };
    // SAFETY: recursion.smf's `fib` is C's `long fib(long)`.
    let fib = unsafe { module.function::<extern "C" fn(i64) -> i64>(b"fib") };
    if fib.map(|f| f.get()(10)) != Some(55) {
        return false;
    }
    drop(module);
    // SAFETY: a NUL-terminated path; the handle is released once.
    let handle = unsafe { smf::ffi::smf_module::smf_module_load(c_path.as_ptr()) };
    if handle.is_null() {
        return false;
    }
    smf::ffi::smf_module::smf_module_release(handle);
    true
}

/// What the threads and the children share: a cache, an instantiator over it, the file the
/// children replace and the module the instantiator reads its templates from.
struct Shared {
    cache: Arc<ModuleCache>,
    generics: Generics,
    hot: PathBuf,
    generic: PathBuf,
}

/// x86-64: `mov rax, rdi; ret`.
const IDENTITY: [u8; 4] = [0x48, 0x89, 0xF8, 0xC3];
/// x86-64: `mov rax, rdi; imul rax, rdi; ret`.
const SQUARE: [u8; 8] = [0x48, 0x89, 0xF8, 0x48, 0x0F, 0xAF, 0xC7, 0xC3];

impl Shared {
    fn new(dir: &Path) -> Self {
        let hot = dir.join("hot.smf");
        std::fs::write(&hot, smf_tests::linking::returning("version", 1, 0)).unwrap();
        let cache = Arc::new(ModuleCache::new(0, 0));
        // The compiler knows two templates at i64; anything else (square$f64) it refuses.
        let compile = |_: &Generics, request: &Request<'_>| match request.name {
            "identity$i64" => Ok(IDENTITY.to_vec()),
            "square$i64" => Ok(SQUARE.to_vec()),
            other => Err(format!("{other} is not compiled here")),
        };
        let generics = Generics::new(Arc::clone(&cache), InstantiatorConfig::default(), compile);
        Self { cache, generics, hot, generic: smf_tests::workspace().join("examples/generics.smf") }
    }

    /// `name` instantiated (or found) and called with 7.
    fn instantiated(&self, name: &str) -> Option<i64> {
        // SAFETY: the compiler above emits `fn(i64) -> i64` for every name it compiles.
        let function = unsafe { self.generics.function::<extern "C" fn(i64) -> i64>(&self.generic, name) };
        function.ok().map(|f| f.get()(7))
    }

    /// What the threads do beside the forks, taking each of the cache's and the instantiator's
    /// locks: a get of the file, a found instantiation, a compile refused (claimed and failed
    /// again each time), a name nobody offers. False if anything went wrong.
    fn busy(&self) -> bool {
        self.cache.get(&self.hot).is_ok()
            && self.instantiated("identity$i64") == Some(7)
            && self.instantiated("square$f64").is_none()
            && self.generics.resolve("offered_by_nobody").is_err()
    }

    /// What a child does: replaces the file with `version` and gets it through the shared
    /// cache until that version comes (or five seconds passed), and instantiates a name the
    /// parent never asked for. False if anything went wrong.
    fn in_child(&self, version: u8) -> bool {
        let temporary = self.hot.with_extension("tmp");
        if std::fs::write(&temporary, smf_tests::linking::returning("version", version, 0)).is_err()
            || std::fs::rename(&temporary, &self.hot).is_err()
        {
            return false;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let version_now = || {
            let module = self.cache.get(&self.hot).ok()?;
            // SAFETY: `version` is `fn() -> i64`.
            unsafe { module.call_integers(Some(b"version"), &[]) }.ok()
        };
        while version_now() != Some(i64::from(version)) {
            if Instant::now() > deadline {
                return false;
            }
        }
        self.instantiated("square$i64") == Some(49)
    }
}

/// Whether process `child` ends within `deadline` (waited for on its pidfd, which becomes
/// readable when it ends).
fn exits_within(child: i32, deadline: Duration) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    use rustix::process::{pidfd_open, Pid, PidfdFlags};
    let pid = Pid::from_raw(child).expect("a child's pid");
    let pidfd = pidfd_open(pid, PidfdFlags::empty()).expect("pidfd_open (Linux 5.3)");
    let timeout = Timespec { tv_sec: deadline.as_secs() as i64, tv_nsec: 0 };
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    poll(&mut fds, Some(&timeout)).is_ok_and(|ready| ready == 1)
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "qemu-user, which runs the aarch64 tests, itself deadlocks when a process forks beside threads"
)]
fn a_thousand_forks_beside_threads_loading_instantiating_and_caching_give_children_that_work() {
    let name = "a_thousand_forks_beside_threads_loading_instantiating_and_caching_give_children_that_work";
    // It forks: alone, so that the child has no other test's threads to inherit.
    if !smf_tests::alone(name) {
        return;
    }
    let path = module();
    let c_path = CString::new(path.to_str().unwrap()).unwrap();
    let shared = Shared::new(&smf_tests::scratch("fork", "stress"));
    assert!(use_module(&path, &c_path), "the module works before any fork");
    assert!(shared.busy(), "the cache and the instantiator work before any fork");
    let stop = AtomicBool::new(false);
    let uses = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for thread in 0..3 {
            let (path, c_path, shared, stop, uses) = (&path, &c_path, &shared, &stop, &uses);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // Two threads load and release modules, one uses the cache and instantiator.
                    let used = if thread < 2 { use_module(path, c_path) } else { shared.busy() };
                    assert!(used, "a use beside the forks failed (thread {thread})");
                    uses.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let mut hung = Vec::new();
        let mut failed = Vec::new();
        for i in 0..FORKS {
            // SAFETY: the child uses the library, then leaves through _exit without running
            // anything of the parent's (no destructor, no test harness).
            let child = unsafe { fork() };
            if child == 0 {
                let version = u8::try_from(2 + i % 200).expect("at most 201");
                let ok = use_module(&path, &c_path) && shared.in_child(version);
                // SAFETY: ends the child at once.
                unsafe { _exit(if ok { 0 } else { 1 }) };
            }
            assert!(child > 0, "fork failed");
            if !exits_within(child, CHILD_DEADLINE) {
                // SAFETY: our child, hung; reaped right below.
                unsafe { kill(child, SIGKILL) };
                hung.push(i);
            }
            let mut status = 0;
            // SAFETY: our child, and a status to write.
            assert_eq!(unsafe { waitpid(child, &mut status, 0) }, child);
            if status != 0 && !hung.contains(&i) {
                failed.push((i, status));
            }
        }
        stop.store(true, Ordering::Relaxed);
        assert!(hung.is_empty(), "children hung (a lock held at the fork): {hung:?}");
        assert!(failed.is_empty(), "children failed (index, status): {failed:?}");
    });
    assert!(uses.load(Ordering::Relaxed) > 0, "the threads used the library meanwhile");
    // The children's instantiations never reached the parent's code: square$i64 was never
    // asked for here, and identity$i64 still answers.
    assert_eq!(shared.generics.instantiated(b"square$i64").unwrap(), None);
    assert_eq!(shared.instantiated("identity$i64"), Some(7));
}

/// The compile of `identity$i64` in the parent, which [`blocking_compile`] holds until told.
mod held_compile {
    use std::sync::atomic::{AtomicBool, AtomicU32};
    /// The process whose compile waits (the child's does not).
    pub(crate) static PARENT: AtomicU32 = AtomicU32::new(0);
    /// Set once the parent's compile has begun.
    pub(crate) static ENTERED: AtomicBool = AtomicBool::new(false);
    /// Set to let the parent's compile finish.
    pub(crate) static RELEASED: AtomicBool = AtomicBool::new(false);
}

/// A compiler of `identity$i64` whose compile, in the parent, says it began and waits until
/// released.
fn blocking_compile(_: &Generics, request: &Request<'_>) -> Result<Vec<u8>, String> {
    use held_compile::{ENTERED, PARENT, RELEASED};
    if request.name != "identity$i64" {
        return Err(format!("{} is not compiled here", request.name));
    }
    if std::process::id() == PARENT.load(Ordering::SeqCst) {
        ENTERED.store(true, Ordering::SeqCst);
        while !RELEASED.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(IDENTITY.to_vec())
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "qemu-user, which runs the aarch64 tests, itself deadlocks when a process forks beside threads"
)]
fn a_child_compiles_again_a_name_another_thread_was_compiling_at_the_fork() {
    let name = "a_child_compiles_again_a_name_another_thread_was_compiling_at_the_fork";
    if !smf_tests::alone(name) {
        return;
    }
    use held_compile::{ENTERED, PARENT, RELEASED};
    PARENT.store(std::process::id(), Ordering::SeqCst);
    let cache = Arc::new(ModuleCache::new(0, 0));
    let generics = Generics::new(cache, InstantiatorConfig::default(), blocking_compile);
    let generic = smf_tests::workspace().join("examples/generics.smf");
    let identity_of_7 = || {
        // SAFETY: the compiler emits `fn(i64) -> i64` for identity$i64.
        let function = unsafe { generics.function::<extern "C" fn(i64) -> i64>(&generic, "identity$i64") };
        function.ok().map(|f| f.get()(7))
    };
    std::thread::scope(|scope| {
        let compiling = scope.spawn(identity_of_7);
        while !ENTERED.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        // SAFETY: the child instantiates, then leaves through _exit.
        let child = unsafe { fork() };
        if child == 0 {
            let ok = identity_of_7() == Some(7);
            // SAFETY: ends the child at once.
            unsafe { _exit(if ok { 0 } else { 1 }) };
        }
        assert!(child > 0, "fork failed");
        let ended = exits_within(child, CHILD_DEADLINE);
        if !ended {
            // SAFETY: our child, hung; reaped right below.
            unsafe { kill(child, SIGKILL) };
        }
        let mut status = 0;
        // SAFETY: our child, and a status to write.
        assert_eq!(unsafe { waitpid(child, &mut status, 0) }, child);
        RELEASED.store(true, Ordering::SeqCst);
        assert!(ended, "the child waited for a compile of a thread it does not have");
        assert_eq!(status, 0, "the child's own compile of the name failed");
        assert_eq!(compiling.join().unwrap(), Some(7), "the parent's compile finished too");
    });
    assert_eq!(generics.stats().instantiations, 1, "the parent compiled the name once");
}

/// Who ran the modules' destructors while a fork was in the library's handlers.
mod dropped_in_fork {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    /// Destructors run (values below 0 recorded).
    pub(crate) static DESTRUCTORS: AtomicUsize = AtomicUsize::new(0);
    /// Destructors run by the forking thread inside the fork's handlers.
    pub(crate) static IN_HANDLERS: AtomicUsize = AtomicUsize::new(0);
    /// Set by the handler that runs after the library's prepare: the cache may go now.
    pub(crate) static DROP_NOW: AtomicBool = AtomicBool::new(false);
    /// Set by the thread dropping the cache once its drop returned.
    pub(crate) static DROPPED: AtomicBool = AtomicBool::new(false);
    thread_local! {
        /// Set on the forking thread from before the library's prepare handler to after its
        /// parent handler.
        pub static FORKING: Cell<bool> = const { Cell::new(false) };
    }
}

/// The modules' `record`.
extern "C" fn record_in_fork(value: i64) {
    use dropped_in_fork::{DESTRUCTORS, FORKING, IN_HANDLERS};
    if value < 0 {
        DESTRUCTORS.fetch_add(1, Ordering::SeqCst);
        if FORKING.with(|f| f.get()) {
            IN_HANDLERS.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Registered before the library's handlers, so run after its prepare and before its parent
/// handler: lets the cache go, and waits a moment for its drop to return.
extern "C" fn let_the_cache_go() {
    use dropped_in_fork::{DROPPED, DROP_NOW};
    DROP_NOW.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_millis(300);
    while !DROPPED.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Registered after the library's handlers, so around them: marks the forking thread.
extern "C" fn forking_begins() {
    dropped_in_fork::FORKING.with(|f| f.set(true));
}
extern "C" fn forking_ends() {
    dropped_in_fork::FORKING.with(|f| f.set(false));
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "qemu-user, which runs the aarch64 tests, itself deadlocks when a process forks beside threads"
)]
fn a_cache_dropped_during_a_fork_releases_its_modules_outside_the_fork_handlers() {
    let name = "a_cache_dropped_during_a_fork_releases_its_modules_outside_the_fork_handlers";
    if !smf_tests::alone(name) {
        return;
    }
    use dropped_in_fork::{DESTRUCTORS, DROPPED, DROP_NOW, IN_HANDLERS};
    extern "C" {
        fn pthread_atfork(
            prepare: Option<extern "C" fn()>,
            parent: Option<extern "C" fn()>,
            child: Option<extern "C" fn()>,
        ) -> i32;
    }
    // SAFETY: the handlers touch only atomics and a thread-local of this test.
    assert_eq!(unsafe { pthread_atfork(Some(let_the_cache_go), None, None) }, 0);
    smf::imports::define_host(b"record", record_in_fork as extern "C" fn(i64) as usize).unwrap();
    let path = smf_tests::scratch("fork", "dropped").join("destructors.smf");
    std::fs::write(&path, smf_format::write::samples::call_arrays(smf_format::Dialect::S128)).unwrap();
    let cache = ModuleCache::new(0, 0);
    drop(cache.get(&path).expect("the module loads through the cache"));
    // (A file this fresh is read twice, the first version let go: `cache/cached.rs`.)
    let before = DESTRUCTORS.load(Ordering::SeqCst);
    // SAFETY: as above; registered after the library's (the cache registered them).
    assert_eq!(unsafe { pthread_atfork(Some(forking_begins), Some(forking_ends), None) }, 0);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            while !DROP_NOW.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(cache);
            DROPPED.store(true, Ordering::SeqCst);
        });
        // SAFETY: the child leaves through _exit at once.
        let child = unsafe { fork() };
        if child == 0 {
            // SAFETY: ends the child at once.
            unsafe { _exit(0) };
        }
        assert!(child > 0, "fork failed");
        let mut status = 0;
        // SAFETY: our child, and a status to write.
        assert_eq!(unsafe { waitpid(child, &mut status, 0) }, child);
    });
    let ran = DESTRUCTORS.load(Ordering::SeqCst) - before;
    assert_eq!(ran, 2, "the module's destructors ran once the cache went");
    assert_eq!(IN_HANDLERS.load(Ordering::SeqCst), 0, "destructors ran inside the fork's handlers");
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "qemu-user, which runs the aarch64 tests, itself deadlocks when a process forks beside threads"
)]
fn children_forked_beside_rt_writes_and_reads_write_and_protect_the_same_memory() {
    let name = "children_forked_beside_rt_writes_and_reads_write_and_protect_the_same_memory";
    if !smf_tests::alone(name) {
        return;
    }
    use smf::ffi::rt_exec::{rt_alloc_rw_memory, rt_set_protection, rt_write_exec_memory};
    use smf::ffi::rt_mmap::{rt_mmap_file, rt_mmap_read_bytes};
    const SIZE: usize = 1 << 20;
    const PROT_READ: i32 = 1;
    const MAP_PRIVATE: i32 = 2;
    let file = smf_tests::scratch("fork", "rt").join("mapped");
    std::fs::write(&file, vec![7u8; SIZE]).unwrap();
    let c_file = CString::new(file.into_os_string().into_encoded_bytes()).unwrap();
    let alloc = rt_alloc_rw_memory(SIZE as i64);
    // SAFETY: a NUL-terminated path.
    let map = unsafe { rt_mmap_file(c_file.as_ptr(), PROT_READ, MAP_PRIVATE, 0, 0) };
    assert!(alloc != 0 && map.address != 0, "{}", smf::ffi::last_error());
    let bytes = vec![0x90u8; SIZE];
    // One write of the whole allocation (under its lock), one read of the whole mapping (under
    // its protection's lock): false if either failed.
    let write = || {
        // SAFETY: `SIZE` readable bytes into an allocation of `SIZE`.
        let written = unsafe { rt_write_exec_memory(alloc, bytes.as_ptr(), SIZE as i64, 0) };
        written == SIZE as i64
    };
    let read = || {
        let mut out = vec![0u8; SIZE];
        // SAFETY: `SIZE` writable bytes out of a mapping of `SIZE`.
        let copied = unsafe { rt_mmap_read_bytes(map.address, 0, SIZE as i64, out.as_mut_ptr()) };
        copied == SIZE as i64
    };
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                assert!(write(), "{}", smf::ffi::last_error());
            }
        });
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                assert!(read(), "{}", smf::ffi::last_error());
            }
        });
        let mut hung = Vec::new();
        for i in 0..200 {
            // SAFETY: the child writes, reads and protects, then leaves through _exit.
            let child = unsafe { fork() };
            if child == 0 {
                let ok = write() && read() && rt_set_protection(map.address, map.size, PROT_READ);
                // SAFETY: ends the child at once.
                unsafe { _exit(if ok { 0 } else { 1 }) };
            }
            assert!(child > 0, "fork failed");
            if !exits_within(child, CHILD_DEADLINE) {
                // SAFETY: our child, hung; reaped right below.
                unsafe { kill(child, SIGKILL) };
                hung.push(i);
            }
            let mut status = 0;
            // SAFETY: our child, and a status to write.
            assert_eq!(unsafe { waitpid(child, &mut status, 0) }, child);
            assert!(status == 0 || hung.contains(&i), "child {i} failed: status {status}");
            if hung.len() == 3 {
                break; // enough to tell
            }
        }
        stop.store(true, Ordering::Relaxed);
        assert!(hung.is_empty(), "children hung on an allocation's or a mapping's lock: {hung:?}");
    });
}
