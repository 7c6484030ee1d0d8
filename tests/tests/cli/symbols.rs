//! `smf symbols`: an nm-like listing (whole names, filters, sort orders, sections, several
//! files), and its `--json` with `verify --json`, both keyed as `inspect --json` is.

use serde_json::Value;
use smf_format::write::{samples, ModuleBuilder, SymbolSpec};
use smf_format::{Binding, Dialect};

use crate::{example, json_of, scratch, smf, write};

/// `smf symbols` lists symbols like nm: value (blank for an import), size, kind, binding and
/// the whole name, filtered to the defined, undefined or exported ones on request.
#[test]
fn symbols_lists_like_nm_with_whole_names_and_filters() {
    let all = smf(&["symbols", &example("app.smf")]);
    assert_eq!(all.status, 0, "{}", all.err);
    assert!(all.out.contains("0000000000000000       39 function  global .text    lcm\n"), "{}", all.out);
    assert!(
        all.out.contains(&format!("{}        0 import    global *UND*    gcd\n", " ".repeat(16))),
        "{}",
        all.out
    );
    let defined = smf(&["symbols", "--defined", &example("app.smf")]);
    assert!(!defined.out.contains(" import ") && defined.out.contains(" lcm\n"), "{}", defined.out);
    let undefined = smf(&["symbols", "--undefined", &example("app.smf")]);
    assert!(undefined.out.lines().all(|l| l.contains(" import ")), "{}", undefined.out);
    assert!(undefined.out.contains(" gcd\n"));

    let dir = scratch("symbols");
    let long = "a_symbol_name_well_past_sixteen_characters_long";
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &samples::RETURN_42);
    b.add_symbol(SymbolSpec::function(long.as_bytes(), 0, 6));
    b.add_symbol(SymbolSpec::function(b"hidden", 0, 6).with_binding(Binding::Local));
    let path = write(&dir, "long.smf", &b.build().unwrap());
    let exported = smf(&["symbols", "--exported", &path]);
    assert_eq!(exported.out, format!("0000000000000000        6 function  global .text    {long}\n"));
    assert_eq!(smf(&["symbols"]).status, 2);
    assert_eq!(smf(&["symbols", &dir.join("missing.smf").to_string_lossy()]).status, 1);
}

/// `symbols` sorts by name by default (by value, size or table order on request, reversed with
/// -r), shows each symbol's section, escapes control characters as `inspect` does, and takes
/// several files as nm does (a header per file, or the file on every line with -A).
#[test]
fn symbols_sorts_shows_sections_and_takes_several_files() {
    let dir = scratch("symbols-order");
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &[0xC3; 32]);
    let data = b.add_data(b".data", &[0; 16]);
    b.add_symbol(SymbolSpec::function(b"zeta", 0, 8));
    b.add_symbol(SymbolSpec::function(b"alpha", 16, 2));
    b.add_symbol(SymbolSpec::data(b"beta", data, 4, 4));
    b.add_symbol(SymbolSpec::import(b"gamma"));
    b.add_symbol(SymbolSpec::function(b"ctl\x1b[31m\n", 8, 1));
    let path = write(&dir, "order.smf", &b.build().unwrap());
    let names = |args: &[&str]| -> Vec<String> {
        let o = smf(args);
        assert_eq!(o.status, 0, "{args:?}: {}", o.err);
        o.out.lines().map(|l| l.rsplit(' ').next().unwrap().to_owned()).collect()
    };
    assert_eq!(names(&["symbols", &path]), ["alpha", "beta", "ctl\\u{1b}[31m\\n", "gamma", "zeta"]);
    assert_eq!(names(&["symbols", "-n", &path]), ["zeta", "ctl\\u{1b}[31m\\n", "alpha", "beta", "gamma"]);
    assert_eq!(names(&["symbols", "--size-sort", &path])[..2], ["gamma", "ctl\\u{1b}[31m\\n"]);
    assert_eq!(names(&["symbols", "-p", &path]), ["zeta", "alpha", "beta", "gamma", "ctl\\u{1b}[31m\\n"]);
    assert_eq!(names(&["symbols", "-r", &path]), ["zeta", "gamma", "ctl\\u{1b}[31m\\n", "beta", "alpha"]);
    let listing = smf(&["symbols", &path]).out;
    assert!(listing.contains("0000000000000004        4 data      global .data    beta\n"), "{listing}");
    assert!(listing.contains("0000000000000010        2 function  global .text    alpha\n"), "{listing}");
    assert!(!listing.contains('\x1b'), "no raw escape reaches the terminal: {listing:?}");

    let app = example("app.smf");
    let several = smf(&["symbols", "--defined", &path, &app]);
    assert_eq!(several.status, 0, "{}", several.err);
    assert!(several.out.starts_with(&format!("\n{path}:\n")), "{}", several.out);
    assert!(several.out.contains(&format!("\n{app}:\n")), "{}", several.out);
    let prefixed = smf(&["symbols", "-A", &path, &app]);
    assert!(prefixed
        .out
        .lines()
        .all(|l| l.starts_with(&format!("{path}: ")) || l.starts_with(&format!("{app}: "))));
    assert_eq!(prefixed.out.lines().count(), 5 + smf(&["symbols", &app]).out.lines().count());
    // A bad file among good ones: reported, the others listed, exit 1.
    let missing = dir.join("missing.smf").to_string_lossy().into_owned();
    let mixed = smf(&["symbols", &path, &missing]);
    assert_eq!(mixed.status, 1);
    assert!(mixed.out.contains(" alpha\n") && mixed.err.contains(&missing), "{}{}", mixed.out, mixed.err);
}

/// `symbols --json` and `verify --json` print one object per file, with the keys `inspect
/// --json` uses for the same things.
#[test]
fn symbols_and_verify_speak_json_with_the_keys_of_inspect() {
    let app = example("app.smf");
    let inspected = json_of(&app);
    let o = smf(&["symbols", "--json", "-p", &app]);
    assert_eq!(o.status, 0, "{}", o.err);
    let symbols: Value = serde_json::from_str(&o.out).unwrap();
    assert_eq!(symbols["file"], app.as_str());
    assert_eq!(symbols["symbols"], inspected["symbols"], "the same objects, in table order");
    assert_eq!(inspected["symbols"][0]["section_name"], ".text");

    let dir = scratch("verify-json");
    let bad = write(&dir, "bad.smf", b"not a module at all, just text");
    let o = smf(&["verify", "--json", "--load", &app, &bad, &example("recursion.smf")]);
    assert_eq!(o.status, 1);
    let lines: Vec<Value> = o.out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!((&lines[0]["valid"], &lines[0]["loads"]), (&Value::Bool(true), &Value::Bool(false)));
    assert!(lines[0]["load_error"]["message"].as_str().unwrap().contains("unresolved imports"));
    for key in ["dialect", "version", "platform", "arch", "flags", "entry_point", "code_size"] {
        assert_eq!(lines[0][key], inspected[key], "{key}");
    }
    assert_eq!((&lines[1]["valid"], &lines[1]["error"]["offset"]), (&Value::Bool(false), &Value::from(0)));
    assert_eq!((&lines[2]["valid"], &lines[2]["loads"]), (&Value::Bool(true), &Value::Bool(true)));
    assert!(o.err.is_empty(), "JSON carries the problems: {}", o.err);
}

/// `-C` shows C++ names demangled, as `nm -C` does, in `symbols` and `ldd`; other names, and
/// names that only look mangled, stay as stored (escaped as every command escapes names).
#[test]
fn symbols_and_ldd_demangle_cpp_names_when_asked() {
    let dir = scratch("demangle");
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b"code", &[0xC3]);
    b.add_symbol(SymbolSpec::function(b"main", 0, 1));
    for name in [&b"_ZdlPvm"[..], b"_ZNSt8ios_base4InitC1Ev", b"plain_c", b"_Znotmangled"] {
        b.add_symbol(SymbolSpec::import(name).with_binding(Binding::Weak));
    }
    let module = write(&dir, "cxx.smf", &b.build().unwrap());
    let plain = smf(&["symbols", &module]);
    assert!(plain.out.contains(" _ZdlPvm\n") && !plain.out.contains("operator delete"), "{}", plain.out);
    for args in [&["symbols", "-C", &module][..], &["ldd", "--demangle", "--no-libc", &module]] {
        let o = smf(args);
        assert_eq!(o.status, 0, "{args:?}: {}", o.err);
        for shown in [
            "operator delete(void*, unsigned long)",
            "std::ios_base::Init::Init()",
            "plain_c",
            "_Znotmangled",
        ] {
            assert!(o.out.contains(shown), "{args:?}: {shown} in {}", o.out);
        }
        assert!(!o.out.contains("_ZdlPvm"), "{args:?}: {}", o.out);
    }
}
