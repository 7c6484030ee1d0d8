//! `smf ldd`: what resolves each import of a module (a `--lib` module, the C library, or
//! nothing).

use smf_format::write::{samples, ModuleBuilder, SymbolSpec};
use smf_format::{Binding, Dialect};

use crate::{example, scratch, smf, write};

/// `ldd` lists every import and what resolves it: a --lib module, the C library's file, or
/// "not found" (exit 1; a weak import that nothing provides is null, not an error).
#[test]
fn ldd_names_what_resolves_each_import() {
    let (app, mathlib) = (example("app.smf"), example("mathlib.smf"));
    let alone = smf(&["ldd", &app]);
    assert_eq!(alone.status, 1);
    assert_eq!(
        alone.out,
        "\tgcd => not found\n\tscale => not found\n\tscaled => not found\n\tpower => not found\n"
    );
    let linked = smf(&["ldd", "--lib", &mathlib, &app]);
    assert_eq!(linked.status, 0, "{}", linked.err);
    assert!(linked.out.contains(&format!("\tgcd => {mathlib}\n")), "{}", linked.out);

    let dir = scratch("ldd");
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &samples::RETURN_42);
    b.add_symbol(SymbolSpec::import(b"strlen"));
    b.add_symbol(SymbolSpec::import(b"smf_ldd_test_maybe").with_binding(Binding::Weak));
    let path = write(&dir, "libc.smf", &b.build().unwrap());
    let o = smf(&["ldd", &path]);
    assert_eq!(o.status, 0, "{}", o.err);
    let strlen = o.out.lines().find(|l| l.starts_with("\tstrlen => ")).unwrap();
    assert!(strlen.contains("libc"), "the C library's file: {strlen}");
    assert!(o.out.contains("\tsmf_ldd_test_maybe => not found (weak: null)\n"), "{}", o.out);
    // Through a --native library: its own symbol under its name, a symbol of the C library it
    // links under the C library's file (found through it).
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &samples::RETURN_42);
    b.add_symbol(SymbolSpec::import(b"zlibVersion"));
    b.add_symbol(SymbolSpec::import(b"strlen"));
    let zlib_user = write(&dir, "zlib_user.smf", &b.build().unwrap());
    let through = smf(&["ldd", "--no-libc", "--native", "libz.so.1", &zlib_user]);
    assert_eq!(through.status, 0, "{}", through.err);
    let line = |name: &str| {
        through.out.lines().find(|l| l.starts_with(&format!("\t{name} => "))).unwrap().to_owned()
    };
    assert!(line("zlibVersion").starts_with("\tzlibVersion => libz.so.1 ("), "{}", through.out);
    assert!(
        line("strlen").contains("libc") && line("strlen").ends_with("(through libz.so.1, which links it)"),
        "{}",
        through.out
    );
    let without = smf(&["ldd", "--no-libc", &path, &app]);
    assert_eq!(without.status, 1);
    assert!(without.out.starts_with(&format!("{path}:\n\tstrlen => not found\n")), "{}", without.out);
    assert!(without.out.contains(&format!("{app}:\n\tgcd => not found\n")), "{}", without.out);
}
