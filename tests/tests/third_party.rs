//! Third-party C through `smf pack`: Lua 5.4 (the lua-src crate's sources, built as that
//! crate's users build them) packed with a driver (`tests/c/lua_driver.c`) into one module and
//! run through Lua's C API by `smf run`, against the same objects linked natively into a
//! program. Lua's globals hold pointers (every library's function table), its errors and
//! coroutines longjmp across module frames, and it calls the C library throughout: the two
//! must print the same, line for line. (Its speed against native: `cargo xtask bench lua`.)

#![cfg(target_arch = "x86_64")]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use smf_format::module::RelocatedImage;
use smf_format::{Dialect, Module};
use smf_tests::{build_smf_package, profile_dir, workspace};

/// Lua built once for the binary's tests: the module and the native program, each able to run
/// any of the driver's functions.
struct Lua {
    module: PathBuf,
    objects: usize,
    dir: PathBuf,
    driver: PathBuf,
    library: PathBuf,
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn lua() -> &'static Lua {
    static LUA: OnceLock<Lua> = OnceLock::new();
    LUA.get_or_init(|| {
        let dir = profile_dir().join("third-party").join("lua");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let target = "x86_64-unknown-linux-gnu";
        let lua = lua_src::Build::new()
            .out_dir(dir.join("build"))
            .target(target)
            .host(target)
            .opt_level("2")
            .debug(false)
            .build(lua_src::Lua54);
        let driver = dir.join("lua_driver.o");
        run(Command::new("gcc")
            .args(["-c", "-O2", "-fPIC", "-I"])
            .arg(lua.include_dir())
            .arg(workspace().join("tests/c/lua_driver.c"))
            .arg("-o")
            .arg(&driver));
        let mut objects = vec![driver.clone()];
        let mut lua_objects: Vec<PathBuf> = std::fs::read_dir(lua.lib_dir())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "o"))
            .collect();
        lua_objects.sort();
        objects.extend(lua_objects);
        let inputs: Vec<_> =
            objects.iter().map(|path| (path.display().to_string(), std::fs::read(path).unwrap())).collect();
        let (bytes, _) = smf_tool::pack::pack(&inputs, Dialect::S128).unwrap_or_else(|e| panic!("{e}"));
        let module = dir.join("lua.smf");
        std::fs::write(&module, bytes).unwrap();
        let library = lua.lib_dir().join(format!("lib{}.a", lua.libs()[0]));
        Lua { module, objects: objects.len(), dir, driver, library }
    })
}

/// Standard output of the driver's `function` run natively: a program linked with the same
/// objects, printing the function's result last as `smf run` does.
fn native(lua: &Lua, function: &str) -> String {
    let main = lua.dir.join(format!("{function}_main.c"));
    std::fs::write(
        &main,
        format!("#include <stdio.h>\nlong {function}(void);\nint main(void) {{ printf(\"%ld\\n\", {function}()); }}\n"),
    )
    .unwrap();
    let exe = lua.dir.join(function);
    run(Command::new("gcc")
        .arg("-O2")
        .arg(&main)
        .arg(&lua.driver)
        .arg(&lua.library)
        .args(["-lm", "-o"])
        .arg(&exe));
    String::from_utf8(run(&mut Command::new(&exe)).stdout).unwrap()
}

/// Standard output of `smf run` calling the module's `function`.
fn packed(lua: &Lua, function: &str) -> String {
    static SMF: OnceLock<PathBuf> = OnceLock::new();
    let smf = SMF.get_or_init(|| build_smf_package().join("smf"));
    let out = run(Command::new(smf).arg("run").arg(&lua.module).arg(function));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn lua_packed_with_its_driver_is_one_module_with_relocated_data() {
    let lua = lua();
    assert!(lua.objects > 30, "Lua's objects and the driver");
    let bytes = std::fs::read(&lua.module).unwrap();
    let module = Module::parse(&bytes).unwrap();
    let in_data = module.relocations().filter(|r| r.image != RelocatedImage::Code).count();
    // Every library's luaL_Reg table, the opcode and type names, ...: hundreds of pointers.
    assert!(in_data > 300, "{in_data} data relocations");
    assert!(module.find_export(b"lua_newstate").is_some() && module.find_export(b"lua_tour").is_some());
}

#[test]
fn lua_runs_its_tour_through_the_module_as_it_does_natively() {
    let lua = lua();
    let expected = native(lua, "lua_tour");
    assert!(expected.ends_with("\n0\n"), "the tour ran to the end natively:\n{expected}");
    assert!(expected.lines().count() > 30, "{expected}");
    assert_eq!(packed(lua, "lua_tour"), expected);
}

#[test]
fn lua_work_gives_the_native_checksum() {
    let lua = lua();
    // The checksum line, then the nanoseconds it took (which differ from run to run).
    let checksum = |out: String| out.lines().next().map(str::to_owned);
    let expected = checksum(native(lua, "lua_work"));
    assert!(expected.as_deref().is_some_and(|c| c.parse::<i64>().is_ok()), "{expected:?}");
    assert_eq!(checksum(packed(lua, "lua_work")), expected);
}
