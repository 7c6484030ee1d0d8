//! Benchmark "lua": the speed of third-party C packed into a module against the same objects
//! linked natively. Lua 5.4 (the lua-src crate's sources and build, as `tests/tests/third_party.rs`
//! packs it) with `tests/c/lua_driver.c`'s `lua_work` (calls, tables, strings, sorting,
//! closures, coroutines): one process per run, `smf run lua.smf lua_work` against a program
//! linked with the same objects, alternated; each run times the work itself with the
//! monotonic clock (load and start-up are the `load` benchmark's business), and the two must
//! print the same checksum. Target: the module within 3% of native (ratio at least 0.97).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{median, median_ratio, ms};
use crate::workspace_root;

/// Builds Lua and the driver, packs them (release `smf`), links the native program: (module,
/// native program).
fn build(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    build_with_objects(dir).map(|(module, native, _)| (module, native))
}

/// What [`build_with_objects`] built: (module, native program, objects).
type Built = (PathBuf, PathBuf, Vec<PathBuf>);

/// [`build`], with the objects packed into the module. Built once per directory in a run of
/// the benchmarks (the `lua`, `real` and `compression` benchmarks share one build).
pub(super) fn build_with_objects(dir: &Path) -> Result<Built, String> {
    static BUILT: std::sync::Mutex<Vec<(PathBuf, Built)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().map_err(|_| "a Lua build panicked".to_owned())?;
    if let Some((_, done)) = built.iter().find(|(at, _)| at == dir) {
        return Ok(done.clone());
    }
    let done = build_afresh(dir)?;
    built.push((dir.to_path_buf(), done.clone()));
    Ok(done)
}

/// Builds Lua, the driver and the module in `dir`, and links the native program.
fn build_afresh(dir: &Path) -> Result<Built, String> {
    let target = "x86_64-unknown-linux-gnu";
    let lua = lua_src::Build::new()
        .out_dir(dir.join("build"))
        .target(target)
        .host(target)
        .opt_level("2")
        .debug(false)
        .try_build(lua_src::Lua54)
        .map_err(|e| format!("building Lua: {e}"))?;
    let gcc = |args: &mut Command| -> Result<(), String> {
        let status = args.status().map_err(|e| format!("gcc: {e}"))?;
        status.success().then_some(()).ok_or_else(|| format!("{args:?} failed"))
    };
    let driver = dir.join("lua_driver.o");
    gcc(Command::new("gcc")
        .args(["-c", "-O2", "-fPIC", "-I"])
        .arg(lua.include_dir())
        .arg(workspace_root().join("tests/c/lua_driver.c"))
        .arg("-o")
        .arg(&driver))?;
    let mut objects = vec![driver.clone()];
    for entry in std::fs::read_dir(lua.lib_dir()).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|e| e == "o") {
            objects.push(path);
        }
    }
    let module = dir.join("lua.smf");
    super::load::pack(&objects, &module)?;
    let main = dir.join("main.c");
    std::fs::write(
        &main,
        "#include <stdio.h>\nlong lua_work(void);\nint main(void) { printf(\"%ld\\n\", lua_work()); }\n",
    )
    .map_err(|e| e.to_string())?;
    let native = dir.join("lua_work");
    let library = lua.lib_dir().join(format!("lib{}.a", lua.libs()[0]));
    gcc(Command::new("gcc")
        .arg("-O2")
        .arg(&main)
        .arg(&driver)
        .arg(&library)
        .args(["-lm", "-o"])
        .arg(&native))?;
    Ok((module, native, objects))
}

/// One run of `command`: its checksum line, the work's time as it measured it, and the whole
/// process's time.
fn one_run(command: &mut Command) -> Result<(String, Duration, Duration), String> {
    let start = Instant::now();
    let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    let process = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    match (out.status.success(), &lines[..]) {
        (true, &[checksum, nanos]) => {
            let nanos: u64 = nanos.parse().map_err(|_| format!("{command:?}: no time in {stdout:?}"))?;
            Ok((checksum.to_owned(), Duration::from_nanos(nanos), process))
        }
        _ => Err(format!("{command:?} failed: {stdout}{}", String::from_utf8_lossy(&out.stderr))),
    }
}

pub(super) fn run(rounds: usize) -> Result<(), String> {
    let Some(dir) = super::packing_dir("lua")? else { return Ok(()) };
    let (module, native) = build(&dir)?;
    let smf = super::smf_tool();
    let (mut ours, mut theirs, mut our_process, mut their_process) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds + 1 {
        let (checksum, work, process) = one_run(Command::new(&smf).arg("run").arg(&module).arg("lua_work"))?;
        let (expected, native_work, native_process) = one_run(&mut Command::new(&native))?;
        if checksum != expected {
            return Err(format!("lua: the module's checksum {checksum} is not native's {expected}"));
        }
        if round > 0 {
            // The first round warms the page cache and the CPU's frequency.
            ours.push(work);
            theirs.push(native_work);
            our_process.push(process);
            their_process.push(native_process);
        }
    }
    let ratio = median_ratio(&theirs, &ours);
    println!(
        "lua work (Lua 5.4, {rounds} runs each): packed module {:.1} ms, native program {:.1} ms (medians)",
        ms(median(ours.clone())),
        ms(median(theirs.clone()))
    );
    // Native time / module time: Lua's interpreter, real C, packed and loaded against linked.
    super::report::ratio("loaded_code_vs_native", ratio, super::report::Goal::AtLeast(0.97));
    println!(
        "  whole processes, for reference: smf run {:.1} ms, native {:.1} ms",
        ms(median(our_process)),
        ms(median(their_process))
    );
    Ok(())
}
