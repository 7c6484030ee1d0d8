//! The loader without libc (`cargo xtask nolibc`): a static executable with no interpreter and
//! no shared libraries that loads modules of every dialect with `smf-runtime` alone, exits with
//! the entry point's result, and refuses a bad module with one line naming what and where.
//! It reads files under the core's rules, as the shell does: a FIFO nobody writes, a directory,
//! a huge sparse file and an endless stream are each refused with their reason, never a hang.

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use smf_tests::workspace;

/// Builds the loader once per test binary; its path.
fn build() -> PathBuf {
    static LOADER: OnceLock<PathBuf> = OnceLock::new();
    LOADER.get_or_init(build_once).clone()
}

/// Builds the loader as `cargo xtask nolibc` builds it (`xtask/src/nolibc.rs`: its own
/// workspace, release, its own link flags, with the environment's flags removed since they
/// would replace those); its path. Not through the task itself: running it would first build
/// xtask's binary with every benchmark's dependencies (half a minute of a fresh test run).
fn build_once() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let dir = workspace().join("nolibc");
    let out = Command::new(cargo)
        .current_dir(&dir)
        .args(["build", "--release", "--locked", "--quiet", "--target-dir"])
        .arg(dir.join("target"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run cargo build in nolibc/");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir.join("target/release/smf-nolibc")
}

fn run(loader: &Path, args: &[&Path]) -> Output {
    Command::new(loader).args(args).output().expect("run smf-nolibc")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_loader_without_libc_runs_modules_and_refuses_bad_ones() {
    let loader = build();

    // Static, with no interpreter and no shared libraries.
    let readelf = |flag: &str| {
        let out = Command::new("readelf").arg(flag).arg(&loader).output().expect("run readelf");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let headers = readelf("-lW");
    assert!(headers.contains("LOAD") && !headers.contains("INTERP"), "{headers}");
    let dynamic = readelf("-dW");
    assert!(dynamic.contains("There is no dynamic section"), "{dynamic}");
    assert!(!dynamic.contains("NEEDED"));

    // Every dialect: the entry point's result is the exit status.
    for dialect in ["s128", "r96", "r72"] {
        let module = workspace().join(format!("examples/return42.{dialect}.smf"));
        let out = run(&loader, &[&module]);
        assert_eq!(out.status.code(), Some(42), "{dialect}: {}", stderr(&out));
        assert!(out.stderr.is_empty());
    }
    // C packed into a module: fib(20) = 6765, whose low byte is the status.
    let out = run(&loader, &[&workspace().join("examples/recursion.smf")]);
    assert_eq!(out.status.code(), Some(6765 & 0xFF), "{}", stderr(&out));

    // Refusals: one line each, naming the file, what and where; status 1.
    let scratch = smf_tests::scratch("nolibc", "bad");
    let garbage = scratch.join("garbage.smf");
    std::fs::write(&garbage, [b"definitely not a module ".as_slice(); 20].concat()).unwrap();
    let mut truncated = std::fs::read(workspace().join("examples/return42.r96.smf")).unwrap();
    truncated.truncate(120);
    let cut = scratch.join("truncated.smf");
    std::fs::write(&cut, truncated).unwrap();
    let cases: [(&Path, &str); 4] = [
        (&garbage, "no SMF magic"),
        (&cut, "truncated.smf: "),
        (&scratch.join("missing.smf"), "missing.smf: "),
        (&workspace().join("examples/app.smf"), "4 unresolved imports: `gcd`, "),
    ];
    for (module, expected) in cases {
        let out = run(&loader, &[module]);
        let message = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{}: {message}", module.display());
        assert!(message.starts_with("smf-nolibc: ") && message.contains(expected), "{message}");
        assert_eq!(message.lines().count(), 1, "{message}");
    }
    let usage = run(&loader, &[]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(stderr(&usage).contains("usage: smf-nolibc"));
}

/// Runs the loader on `path` with `env` set, killing it if it has not finished after a minute
/// (a hang guard, far above the sub-second runs expected, not a performance bound): its output.
fn run_bounded(loader: &Path, path: &Path, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(loader)
        .arg(path)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run smf-nolibc");
    let start = Instant::now();
    while child.try_wait().expect("wait for smf-nolibc").is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("smf-nolibc {} still running after 60 s: it hangs", path.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("smf-nolibc's output")
}

/// Asserts that `out` is a refusal: status 1, one line naming `path` and containing `reason`.
fn assert_refused(out: &Output, path: &Path, reason: &str) {
    let message = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{}: {message}", path.display());
    let named = format!("smf-nolibc: {}: ", path.display());
    assert!(message.starts_with(&named) && message.contains(reason), "wanted {reason:?}: {message}");
    assert_eq!(message.lines().count(), 1, "{message}");
}

#[test]
fn the_loader_without_libc_reads_files_as_the_shell_does() {
    let loader = build();
    let scratch = smf_tests::scratch("nolibc", "files");

    // A FIFO nobody writes: the open used to block forever; now the wait is bounded.
    let fifo = scratch.join("nobody.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    let quick = [("SMF_STREAM_IDLE_MS", "200")];
    let out = run_bounded(&loader, &fifo, &quick);
    assert_refused(&out, &fifo, "the stream sent nothing for 200 ms");
    // A writer that comes late and writes in pieces: the module is read whole and runs.
    let module = std::fs::read(workspace().join("examples/return42.r96.smf")).unwrap();
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            std::thread::sleep(Duration::from_millis(50));
            let mut pipe = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            for piece in module.chunks(7) {
                pipe.write_all(piece).unwrap();
            }
        })
    };
    let out = run_bounded(&loader, &fifo, &[("SMF_STREAM_IDLE_MS", "10000")]);
    writer.join().unwrap();
    assert_eq!(out.status.code(), Some(42), "{}", stderr(&out));

    // A writer that trickles bytes, each well within the idle limit: cut off at the total.
    let trickle = std::thread::spawn({
        let fifo = fifo.clone();
        move || {
            use std::io::Write;
            let mut pipe = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            // Stops when the loader is gone (EPIPE: Rust ignores SIGPIPE), or after 5 s.
            for _ in 0..500 {
                if pipe.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    });
    let slow = [("SMF_STREAM_IDLE_MS", "10000"), ("SMF_STREAM_TOTAL_MS", "200")];
    let out = run_bounded(&loader, &fifo, &slow);
    trickle.join().unwrap();
    assert_refused(&out, &fifo, "the stream had not ended 200 ms after it was opened");

    // A directory: said so, not an I/O error number.
    assert_refused(&run_bounded(&loader, &scratch, &[]), &scratch, "is a directory");

    // A 2 GiB sparse file: refused from its size under the default limit, unread.
    let sparse = scratch.join("sparse.smf");
    std::fs::File::create(&sparse).unwrap().set_len(2 << 30).unwrap();
    let out = run_bounded(&loader, &sparse, &[]);
    assert_refused(&out, &sparse, "2147483648 bytes is over the module size limit of 268435456 bytes");
    // Under a limit above its size: refused from its two ends, still unread (it used to be read
    // whole, 2 GiB of memory and seconds, before "no SMF magic").
    let out = run_bounded(&loader, &sparse, &[("SMF_MAX_MODULE_BYTES", "4294967296")]);
    assert_refused(&out, &sparse, "not a module (from its ends, unread): no SMF magic");

    // An endless stream stops at the limit.
    let zero = Path::new("/dev/zero");
    let out = run_bounded(&loader, zero, &[("SMF_MAX_MODULE_BYTES", "1048576")]);
    assert_refused(&out, zero, "a stream of more than 1048576 bytes is not a module");
}
