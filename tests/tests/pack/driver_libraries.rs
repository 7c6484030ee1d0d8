//! What the compiler driver links that the objects do not name: libgcc's archive, whose
//! helpers gcc's code calls for what the processor lacks (128-bit division: `__udivti3`; a
//! population count without `popcnt`: `__popcountdi2`). `smf pack` packs in the members a
//! module needs, as `gcc -shared` links them; `-nostdlib` leaves them imports.

use std::process::Command;

use crate::{run, scratch, smf_binary};

const SOURCE: &str = "\
long quotient_high(long high, long divisor) {
    unsigned __int128 a = ((unsigned __int128)high << 64) | 12345;
    return (long)(a / (unsigned __int128)divisor);
}
long bits(long x) { return __builtin_popcountl((unsigned long)x); }
";

#[test]
fn libgcc_helpers_are_packed_in_as_the_compiler_driver_links_them() {
    let dir = scratch("libgcc");
    let source = dir.join("helpers.c");
    std::fs::write(&source, SOURCE).unwrap();
    let object = dir.join("helpers.o");
    // -mno-popcnt: the population count is libgcc's whatever the machine.
    run(Command::new("gcc").args(["-c", "-O2", "-fPIC", "-mno-popcnt"]).arg(&source).arg("-o").arg(&object));
    let smf = |args: &[&std::ffi::OsStr]| Command::new(smf_binary()).args(args).output().unwrap();
    let module = dir.join("helpers.smf");
    let packed = smf(&["pack".as_ref(), object.as_os_str(), "-o".as_ref(), module.as_os_str()]);
    assert!(packed.status.success(), "{}", String::from_utf8_lossy(&packed.stderr));
    let bytes = std::fs::read(&module).unwrap();
    let parsed = smf_format::Module::parse(&bytes).unwrap();
    let imports: Vec<String> = parsed
        .symbols()
        .filter(|s| s.kind == smf_format::SymbolKind::Import)
        .map(|s| String::from_utf8_lossy(s.name).into_owned())
        .collect();
    assert!(
        !imports.iter().any(|name| name.starts_with("__udivti3") || name == "__popcountdi2"),
        "{imports:?}"
    );
    let call = |module: &std::path::Path, args: &[&str]| {
        let mut all: Vec<&std::ffi::OsStr> = vec!["run".as_ref(), module.as_os_str()];
        all.extend(args.iter().map(std::ffi::OsStr::new));
        smf(&all)
    };
    let expected = ((3u128 << 64) | 12345) / 7;
    let out = call(&module, &["quotient_high", "3", "7"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), (expected as u64 as i64).to_string());
    let out = call(&module, &["bits", &0xFF00FF.to_string()]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "16", "{}", String::from_utf8_lossy(&out.stderr));
    // Without the driver's libraries the helpers stay imports, which nothing at run provides.
    let bare = dir.join("bare.smf");
    let packed =
        smf(&["pack".as_ref(), object.as_os_str(), "-nostdlib".as_ref(), "-o".as_ref(), bare.as_os_str()]);
    assert!(packed.status.success(), "{}", String::from_utf8_lossy(&packed.stderr));
    let bytes = std::fs::read(&bare).unwrap();
    let parsed = smf_format::Module::parse(&bytes).unwrap();
    assert!(parsed.symbols().any(|s| s.kind == smf_format::SymbolKind::Import && s.name == b"__udivti3"));
    let _ = std::fs::remove_dir_all(&dir);
}
