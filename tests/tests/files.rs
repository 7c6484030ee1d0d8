//! Reading module files from paths (`smf::file`): a FIFO nobody writes, endless streams, files
//! too large to be modules, and files rewritten while they are read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use smf::file::{with_module_version, ReadLimits, DEFAULT_STREAM_TOTAL};
use smf_format::write::{samples, ModuleBuilder, SymbolSpec};
use smf_format::Dialect;
use smf_runtime::file::ReadError;

/// A fresh directory for this test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("smf-files-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
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
