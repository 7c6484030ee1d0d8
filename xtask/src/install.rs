//! `cargo xtask install --prefix P`: the `smf` tool and the C library, installed as a Linux
//! library is: `P/bin/smf`, `P/lib/libsmf.a`, `P/lib/libsmf.so.X.Y.Z` with the `libsmf.so.X`
//! (its SONAME) and `libsmf.so` links, `P/include/smf.h`, and `P/lib/pkgconfig/smf.pc`, so that
//! `pkg-config --cflags --libs smf` (or `--static`) builds a C program against it. Everything
//! installed is stripped of debug info (the build profile keeps it for profiling). The static
//! link flags come from the build (`rustc --print native-static-libs`), not from memory.
//! `--features cranelift` builds the library with the execution manager, and the `.pc` files'
//! `Cflags` then define `SMF_EXEC_MANAGER`, which declares its functions in `smf.h`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::workspace_root;

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// The directory cargo builds into here (`CARGO_TARGET_DIR`, `build.target-dir` or
/// `target/`), as `cargo metadata` reports it: where the build just made lands.
fn target_dir() -> Result<PathBuf, String> {
    let out = checked(cargo().current_dir(workspace_root()).args([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
    ]))?;
    let json = String::from_utf8_lossy(&out.stdout);
    let key = "\"target_directory\":\"";
    let start = json.find(key).ok_or("cargo metadata printed no target_directory")? + key.len();
    // A JSON string: ends at the first quote not escaped; `\\` and `\"` are the escapes a path
    // may need.
    let (mut dir, mut chars) = (String::new(), json[start..].chars());
    while let Some(c) = chars.next() {
        match c {
            '"' => return Ok(PathBuf::from(dir)),
            '\\' => dir.extend(chars.next()),
            c => dir.push(c),
        }
    }
    Err("cargo metadata's target_directory does not end".into())
}

fn checked(command: &mut Command) -> Result<std::process::Output, String> {
    let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!("{command:?} failed:\n{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// Builds the release library (with `features` of `smf-loader`) and tool; returns the static
/// library's native link flags.
fn build(features: &[String]) -> Result<String, String> {
    let root = workspace_root();
    let features: Vec<String> = features.iter().map(|f| format!("smf-loader/{f}")).collect();
    let features = ["--features".to_owned(), features.join(",")];
    let features = if features[1].is_empty() { &features[..0] } else { &features[..] };
    eprintln!("xtask install: building the C library and the smf tool in release (minutes the first time)");
    // Cargo's own progress shows: the build is most of the wait.
    let mut build = cargo();
    build.current_dir(&root).args(["build", "--release", "--locked", "-p", "smf-loader", "-p", "smf-tool"]);
    let status = build.args(features).status().map_err(|e| format!("{build:?}: {e}"))?;
    if !status.success() {
        return Err(format!("{build:?} failed ({status})"));
    }
    // The static library's system libraries, as rustc reports them for this toolchain.
    eprintln!("xtask install: asking rustc which system libraries the static library needs");
    let out = checked(
        cargo()
            .current_dir(&root)
            .args(["rustc", "--release", "--locked", "-p", "smf-loader"])
            .args(features)
            .args(["--lib", "--crate-type", "staticlib", "--", "--print", "native-static-libs"]),
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .find_map(|l| l.split_once("native-static-libs:").map(|(_, libs)| libs.trim().to_owned()))
        .ok_or_else(|| "rustc printed no native-static-libs".into())
}

/// The system libraries a program linking libsmf.a names, from rustc's list: without the C
/// library and libgcc_s, which the compiler driver links itself (libgcc_s for a dynamic
/// program, libgcc_eh for `cc -static`, where `-lgcc_s` would fail).
fn system_libs(native: &str) -> String {
    let libs: Vec<&str> = native.split_whitespace().filter(|l| !matches!(*l, "-lc" | "-lgcc_s")).collect();
    libs.join(" ")
}

fn copy_stripped(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to).map_err(|e| format!("{}: {e}", to.display()))?;
    checked(Command::new("strip").arg("--strip-debug").arg(to))?;
    Ok(())
}

pub(crate) fn run_command(args: &[String]) -> Result<(), String> {
    let usage = || "usage: cargo xtask install --prefix DIR [--features cranelift]".to_owned();
    let (prefix, features) = match args {
        [flag, prefix] if flag == "--prefix" => (PathBuf::from(prefix), Vec::new()),
        [flag, prefix, features, list] if flag == "--prefix" && features == "--features" => {
            let list: Vec<String> = list.split(',').map(str::to_owned).collect();
            if list.iter().any(|f| f != "cranelift") {
                return Err(usage());
            }
            (PathBuf::from(prefix), list)
        }
        _ => return Err(usage()),
    };
    let static_libs = build(&features)?;
    let cflags = cflags_for(&features);
    let release = target_dir()?.join("release");
    let version = env!("CARGO_PKG_VERSION");
    let major = version.split('.').next().unwrap_or("0");
    let (bin, lib, include, pkgconfig) = (
        prefix.join("bin"),
        prefix.join("lib"),
        prefix.join("include"),
        prefix.join("lib").join("pkgconfig"),
    );
    eprintln!(
        "xtask install: copying the tool, the libraries, smf.h and the pkg-config files into {}",
        prefix.display()
    );
    for dir in [&bin, &lib, &include, &pkgconfig] {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    copy_stripped(&release.join("smf"), &bin.join("smf"))?;
    copy_stripped(&release.join("libsmf.a"), &lib.join("libsmf.a"))?;
    let versioned = format!("libsmf.so.{version}");
    copy_stripped(&release.join("libsmf.so"), &lib.join(&versioned))?;
    for (link, target) in [
        (format!("libsmf.so.{major}"), versioned.clone()),
        ("libsmf.so".into(), format!("libsmf.so.{major}")),
    ] {
        let link = lib.join(link);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(target, &link).map_err(|e| format!("{}: {e}", link.display()))?;
    }
    std::fs::copy(workspace_root().join("shell/include/smf.h"), include.join("smf.h"))
        .map_err(|e| format!("smf.h: {e}"))?;
    let static_libs = system_libs(&static_libs);
    let (pc, static_pc) = pc_files(&prefix, version, cflags, &static_libs);
    std::fs::write(pkgconfig.join("smf.pc"), pc).map_err(|e| format!("smf.pc: {e}"))?;
    std::fs::write(pkgconfig.join("smf-static.pc"), static_pc).map_err(|e| format!("smf-static.pc: {e}"))?;
    println!("installed smf {version} into {}", prefix.display());
    println!("  static link flags (smf-static.pc; smf.pc's Libs.private): {static_libs}");
    Ok(())
}

/// What the `.pc` files' `Cflags` add to the include path for a library built with `features`:
/// the execution manager's declarations in `smf.h` are behind `SMF_EXEC_MANAGER`.
fn cflags_for(features: &[String]) -> &'static str {
    if features.iter().any(|f| f == "cranelift") {
        " -DSMF_EXEC_MANAGER"
    } else {
        ""
    }
}

/// `smf.pc` (the shared library; `Libs.private` for a static link) and `smf-static.pc` (the
/// archive and what it needs). `-lsmf` picks the shared library wherever both are installed,
/// so static linking names the archive: `pkg-config --libs smf-static` links libsmf.a into a
/// program (dynamic, or fully static with `cc -static`).
fn pc_files(prefix: &Path, version: &str, cflags: &str, static_libs: &str) -> (String, String) {
    let head = format!(
        "prefix={prefix}\nlibdir=${{prefix}}/lib\nincludedir=${{prefix}}/include\n\n",
        prefix = prefix.display()
    );
    let pc = format!(
        "{head}Name: smf\nDescription: Loader for SMF (Simple Module Format) modules\nVersion: {version}\n\
         Cflags: -I${{includedir}}{cflags}\nLibs: -L${{libdir}} -lsmf\nLibs.private: {static_libs}\n"
    );
    let static_pc = format!(
        "{head}Name: smf-static\nDescription: Loader for SMF (Simple Module Format) modules, linked \
         statically\nVersion: {version}\nCflags: -I${{includedir}}{cflags}\nLibs: ${{libdir}}/libsmf.a {static_libs}\n"
    );
    (pc, static_pc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pc_files_define_the_execution_manager_only_for_a_library_built_with_it() {
        let prefix = Path::new("/opt/smf");
        for (features, defined) in [(vec![], false), (vec!["cranelift".to_string()], true)] {
            let (pc, static_pc) = pc_files(prefix, "0.1.0", cflags_for(&features), "-lpthread -lm");
            for file in [&pc, &static_pc] {
                let cflags = file.lines().find(|l| l.starts_with("Cflags:")).unwrap();
                assert_eq!(cflags.contains("-DSMF_EXEC_MANAGER"), defined, "{file}");
                assert!(cflags.contains("-I${includedir}"));
                assert!(file.starts_with("prefix=/opt/smf\n"));
            }
            assert!(pc.contains("Libs: -L${libdir} -lsmf\nLibs.private: -lpthread -lm\n"), "{pc}");
            assert!(static_pc.contains("Libs: ${libdir}/libsmf.a -lpthread -lm\n"), "{static_pc}");
        }
    }
}
