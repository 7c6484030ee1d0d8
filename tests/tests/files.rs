//! Reading module files from paths (`smf::file`): a FIFO nobody writes, endless streams, files
//! too large to be modules, and files rewritten while they are read; code mapped from a module
//! file.

// Calling loaded code goes through the (unsafe) typed lookup.
#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use smf::file::{with_module_version, ReadLimits, DEFAULT_STREAM_TOTAL};
use smf_format::write::{samples, ModuleBuilder, SymbolSpec};
use smf_format::Dialect;
use smf_runtime::file::ReadError;

/// A fresh directory for this test's files.
fn scratch(name: &str) -> PathBuf {
    smf_tests::scratch("files", name)
}

fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(made.success());
}

fn read(path: &Path, limits: ReadLimits) -> std::io::Result<Vec<u8>> {
    with_module_version(path, limits, |bytes, _| bytes.to_vec())
}

const QUICK: ReadLimits = ReadLimits {
    max_bytes: 1 << 20,
    stream_idle: Duration::from_millis(200),
    stream_total: DEFAULT_STREAM_TOTAL,
    settle: Duration::ZERO,
};

#[test]
fn a_fifo_nobody_writes_is_an_error_not_a_hang() {
    let dir = scratch("fifo");
    let fifo = dir.join("nobody.fifo");
    mkfifo(&fifo);
    // Opening used to block forever in open(); now the wait for a writer is bounded.
    let error = read(&fifo, QUICK).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut, "{error}");
    assert!(error.to_string().contains("sent nothing for 200 ms"), "{error}");
    // The loader reports it with the path, as any other I/O error.
    let fifo_path = fifo.clone();
    let loaded = std::thread::spawn(move || {
        smf::file::with_module_version(&fifo_path, QUICK, |bytes, _| {
            smf::loader::load(&smf::loader::LoadRequest::bytes(bytes).resolver_only(&())).map(|_| ())
        })
    });
    assert!(loaded.join().unwrap().is_err());

    // A writer that comes late, writes in pieces and closes: read whole.
    let bytes = samples::return_42(Dialect::R96);
    let writer = {
        let (fifo, bytes) = (fifo.clone(), bytes.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            std::thread::sleep(Duration::from_millis(50));
            let mut pipe = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            for piece in bytes.chunks(7) {
                pipe.write_all(piece).unwrap();
            }
        })
    };
    assert_eq!(read(&fifo, QUICK).unwrap(), bytes);
    writer.join().unwrap();
}

#[test]
fn endless_and_oversized_inputs_stop_at_the_limit() {
    let error = read(Path::new("/dev/zero"), QUICK).unwrap_err();
    assert!(error.to_string().contains("stream of more than 1048576 bytes"), "{error}");

    // A 1 GiB file of zeros (sparse): refused from its size, or from its ends, unread.
    let dir = scratch("large");
    let large = dir.join("zeros.smf");
    std::fs::File::create(&large).unwrap().set_len(1 << 30).unwrap();
    let error = read(&large, QUICK).unwrap_err();
    assert!(
        error.to_string().contains("1073741824 bytes is over the module size limit of 1048576"),
        "{error}"
    );
    let roomy = ReadLimits { max_bytes: 2 << 30, ..QUICK };
    let error = read(&large, roomy).unwrap_err();
    assert!(error.to_string().contains("not a module (from its ends, unread)"), "{error}");

    // A large file whose ends do look like a module is read (and then judged whole).
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &vec![0xC3; 3 << 20]);
    b.add_symbol(SymbolSpec::function(b"main", 0, 1));
    let module = b.build().unwrap();
    std::fs::write(&large, &module).unwrap();
    assert_eq!(read(&large, ReadLimits { max_bytes: 8 << 20, ..QUICK }).unwrap(), module);
}

/// Two versions of one module, of the same size: `main` returns the version's number, and so
/// does the data word `version`. A load that mixes them would disagree with itself.
fn version(n: u8) -> Vec<u8> {
    let mut b = ModuleBuilder::new(Dialect::R96);
    let mut code = vec![0x90u8; 4096];
    code[..6].copy_from_slice(&[0xB8, n, 0, 0, 0, 0xC3]);
    code[4095] = n;
    b.add_code(b".text", &code);
    let data = b.add_data(b".data", &[n; 4096]);
    b.add_symbol(SymbolSpec::function(b"main", 0, 6));
    b.add_symbol(SymbolSpec::data(b"version", data, 0, 8));
    b.build().unwrap()
}

#[test]
fn a_file_rewritten_in_place_while_it_is_read_never_loads_torn() {
    use std::io::{Seek, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = scratch("torn");
    let path = dir.join("module.smf");
    let versions = [version(1), version(2)];
    assert_eq!(versions[0].len(), versions[1].len());
    std::fs::write(&path, &versions[0]).unwrap();
    /// Stops the writer when dropped, so a failing assertion cannot leave it running.
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stop = AtomicBool::new(false);
    let limits = ReadLimits { settle: Duration::from_millis(20), ..QUICK };
    let (mut loaded, mut refused) = (0, 0);
    std::thread::scope(|scope| {
        // The writer rewrites the file in place, alternating the two versions: 24 pieces a
        // few hundred microseconds apart (a rewrite takes milliseconds), then 0-59 ms alone.
        scope.spawn(|| {
            let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                file.rewind().unwrap();
                for piece in versions[n % 2].chunks(versions[0].len() / 24 + 1) {
                    file.write_all(piece).unwrap();
                    std::thread::sleep(Duration::from_micros(200));
                }
                n += 1;
                std::thread::sleep(Duration::from_millis((n * 7 % 60) as u64));
            }
        });
        let _stop = Stop(&stop);
        for _ in 0..100 {
            // Loads spread over the writer's cycles (a rewrite takes about a sixth of one).
            std::thread::sleep(Duration::from_millis(3));
            let result = with_module_version(&path, limits, |bytes, _| {
                // What was read is one version, whole; never a mix.
                assert!(versions.iter().any(|v| v == bytes), "a torn read was handed out");
            });
            match result {
                Ok(()) => loaded += 1,
                Err(e) => {
                    assert!(e.to_string().contains("chang"), "{e}");
                    // Not `Interrupted`, which std's readers retry on their own.
                    assert_eq!(e.kind(), std::io::ErrorKind::ResourceBusy, "{e}");
                    let typed = e.get_ref().and_then(|inner| inner.downcast_ref::<ReadError>());
                    assert!(
                        matches!(typed, Some(ReadError::StillChanging { .. } | ReadError::Torn)),
                        "{e:?}"
                    );
                    refused += 1;
                }
            }
        }
    });
    assert!(loaded > 0, "{refused} refused");
}

#[test]
fn a_refusal_keeps_its_type_inside_the_io_error() {
    let dir = scratch("typed");
    // Large enough that its two ends are checked before it is read (sparse: nothing written).
    let path = dir.join("not-a-module.smf");
    std::fs::File::create(&path).unwrap().set_len(smf_runtime::file::CHECK_ENDS_FROM * 2).unwrap();
    let e = read(&path, ReadLimits { max_bytes: 64 << 20, ..QUICK }).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
    let typed = e.get_ref().and_then(|inner| inner.downcast_ref::<ReadError>());
    assert!(matches!(typed, Some(ReadError::NotAModule(_))), "{e:?}");
    let e = read(&dir, QUICK).unwrap_err();
    assert!(
        matches!(e.get_ref().and_then(|i| i.downcast_ref::<ReadError>()), Some(ReadError::Directory)),
        "{e:?}"
    );
}

#[test]
fn a_file_refused_from_its_ends_is_a_format_refusal_not_an_io_error() {
    let dir = scratch("ends");
    let path = dir.join("not-a-module.smf");
    std::fs::File::create(&path).unwrap().set_len(smf_runtime::file::CHECK_ENDS_FROM * 2).unwrap();
    let resolver = smf_runtime::load::TableResolver(&[]);
    // The loader, the cache and the instantiator all see it so (the default size limit is
    // far above the file's 2 MiB).
    let e = smf::loader::load(&smf::loader::LoadRequest::path(&path).resolver_only(&resolver)).unwrap_err();
    assert!(
        matches!(&e, smf::loader::ModuleError::NotAModule(p, format) if p == &path && format.kind == smf_format::ErrorKind::BadMagic),
        "{e:?}"
    );
    assert!(e.to_string().contains("not a module (from its ends, unread)"), "{e}");
    let cache = smf::cache::ModuleCache::new(0, 0);
    assert!(matches!(cache.get(&path), Err(smf::loader::ModuleError::NotAModule(..))));
    assert!(matches!(cache.prefetch_announced(&path, &[]), Err(smf::loader::ModuleError::NotAModule(..))));
}

/// A handler that does nothing: its only effect is to interrupt the system call it lands in.
extern "C" fn interrupt(_signal: i32) {}

#[test]
#[allow(unsafe_code)]
fn a_periodic_signal_does_not_stretch_a_streams_limits() {
    // glibc's and musl's; std links the C library.
    extern "C" {
        fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
        fn pthread_self() -> usize;
        fn pthread_kill(thread: usize, signum: i32) -> i32;
    }
    const SIGUSR1: i32 = 10;
    let dir = scratch("signals");
    let fifo = dir.join("stalled.fifo");
    mkfifo(&fifo);
    // SAFETY: a handler that touches nothing; `poll` is never restarted after a handler, with
    // or without SA_RESTART, so each signal ends the reader's wait early.
    unsafe { signal(SIGUSR1, interrupt) };
    let limits = ReadLimits { stream_total: Duration::from_secs(1), ..QUICK };
    let (sent, received) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        // SAFETY: the calling thread's own handle.
        sent.send(unsafe { pthread_self() }).unwrap();
        let started = std::time::Instant::now();
        (read(&fifo, limits), started.elapsed())
    });
    let thread = received.recv().unwrap();
    // 100 Hz, as a sampling profiler's timer, until the read ends (restarted with its whole
    // timeout after each signal, it never would).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !reader.is_finished() {
        assert!(std::time::Instant::now() < deadline, "the read never ended under the signals");
        // SAFETY: a live thread of this process (joined only below), a handled signal.
        unsafe { pthread_kill(thread, SIGUSR1) };
        std::thread::sleep(Duration::from_millis(10));
    }
    let (result, elapsed) = reader.join().unwrap();
    let error = result.unwrap_err();
    assert!(error.to_string().contains("sent nothing for 200 ms"), "{error}");
    // The idle limit (200 ms) from the open, not from the last signal; at most the total.
    assert!(elapsed < Duration::from_millis(900), "{elapsed:?}");
}

/// A module of `pages` pages of code, none of it relocated: `first` at its start returns 42,
/// `last` at its last bytes returns 7 (in the partial page after the whole ones); `int3`
/// between.
#[cfg(target_arch = "x86_64")]
fn big_linked_module(pages: usize) -> Vec<u8> {
    let mut code = vec![0xCC; pages * 4096 + 64];
    code[..6].copy_from_slice(&samples::RETURN_42);
    let last = code.len() - 6;
    code[last..].copy_from_slice(&[0xB8, 7, 0, 0, 0, 0xC3]);
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b".text", &code);
    b.add_symbol(SymbolSpec::function(b"first", 0, 6));
    b.add_symbol(SymbolSpec::function(b"last", last as u64, 6));
    b.build().unwrap()
}

/// The lines of this process's mappings of `path`.
fn mappings_of(path: &Path) -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let name = path.to_string_lossy().into_owned();
    maps.lines().filter(|l| l.ends_with(name.as_str())).map(str::to_owned).collect()
}

/// Calls the module's `long name(void)`.
#[cfg(target_arch = "x86_64")]
fn call(module: &smf::loader::SharedModule, name: &[u8]) -> i64 {
    // SAFETY: the test modules' functions take nothing and return a long.
    let f = unsafe { module.function::<extern "C" fn() -> i64>(name) }.expect("a function");
    f.get()()
}

/// A module loaded from a path has the whole pages of its code that nothing relocates mapped
/// from the file (shared with the page cache, no private copy), read-execute, never writable;
/// the rest is copied. Released, nothing of the file stays mapped. A module whose file is
/// replaced by a rename keeps running the code it loaded, and the new file loads mapped too.
#[cfg(target_arch = "x86_64")]
#[test]
fn code_nothing_relocates_is_mapped_from_the_module_file_until_released() {
    let dir = scratch("mapped");
    let path = dir.join("big.smf");
    std::fs::write(&path, big_linked_module(6)).unwrap();
    let module = smf::loader::load(&smf::loader::LoadRequest::path(&path).resolver_only(&())).unwrap();
    let lines = mappings_of(&path);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].split_whitespace().nth(1), Some("r-xp"), "{lines:?}");
    assert_eq!(lines[0].split_whitespace().nth(2), Some("00000000"), "the code from the file's start");
    smf_tests::assert_no_rwx("code mapped from a module file");
    assert_eq!((call(&module, b"first"), call(&module, b"last")), (42, 7));
    // Replaced by a rename (as compilers and `smf pack` write): the loaded module runs on.
    let new = dir.join("big.smf.new");
    std::fs::write(&new, big_linked_module(8)).unwrap();
    std::fs::rename(&new, &path).unwrap();
    assert_eq!((call(&module, b"first"), call(&module, b"last")), (42, 7));
    let again = smf::loader::load(&smf::loader::LoadRequest::path(&path).resolver_only(&())).unwrap();
    assert_eq!((call(&again, b"first"), call(&again, b"last")), (42, 7));
    assert_eq!(mappings_of(&path).len(), 1, "the new file's code (the old one's is deleted)");
    drop((module, again));
    assert_eq!(mappings_of(&path), Vec::<String>::new(), "nothing of the file stays mapped");
    // Loaded from its bytes, or with too little code to be worth a mapping: copied.
    let bytes = std::fs::read(&path).unwrap();
    let from_bytes = smf::loader::load(&smf::loader::LoadRequest::bytes(&bytes).resolver_only(&())).unwrap();
    std::fs::write(dir.join("small.smf"), big_linked_module(2)).unwrap();
    let small = smf::loader::load(&smf::loader::LoadRequest::path(&dir.join("small.smf")).resolver_only(&()))
        .unwrap();
    assert_eq!((call(&from_bytes, b"last"), call(&small, b"last")), (7, 7));
    assert_eq!(mappings_of(&path).len() + mappings_of(&dir.join("small.smf")).len(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}
