//! `smf inspect`: every part of a module in text and in JSON (valid JSON whatever the names),
//! flags as stored, data relocations told from code ones, only the tables asked for, a dialect
//! override, several files at once.

use serde_json::Value;
use smf_format::template::TemplateKind;
use smf_format::write::TemplateSpec;
use smf_format::write::{samples, ModuleBuilder, SectionSpec, SymbolSpec};
use smf_format::{Binding, Dialect, ModuleFlags, SectionFlags, SectionType, SymbolFlags, SymbolKind};

use crate::{example, json_of, scratch, smf, write};

#[test]
fn inspect_json_has_every_documented_key() {
    let dir = scratch("json");
    for dialect in Dialect::ALL {
        let path = write(&dir, &format!("rich.{dialect}"), &samples::rich(dialect));
        let v = json_of(&path);
        assert_eq!(v["dialect"], dialect.name());
        assert_eq!(v["version"], if dialect == Dialect::R72 { "0.1" } else { "1.1" });
        assert_eq!(v["platform"], 1);
        assert_eq!(v["arch"], 0);
        assert_eq!(v["flags"].as_u64().unwrap() & 1, 1);
        assert_eq!(v["entry_point"], 0);
        assert_eq!(v["stub_size"], 0);

        let sections = v["sections"].as_array().unwrap();
        let text = &sections[0];
        for key in ["index", "name", "type", "flags", "offset", "size", "virtual_size", "alignment"] {
            assert!(text.get(key).is_some(), "section key {key}");
        }
        assert_eq!(
            (&text["name"], &text["type"], &text["flags"]),
            (&Value::from(".text"), &Value::from(1), &Value::from(5))
        );

        let symbols = v["symbols"].as_array().unwrap();
        for (i, s) in symbols.iter().enumerate() {
            assert_eq!(s["index"], i);
            for key in ["name", "kind", "binding", "value", "size", "flags", "template_param_count"] {
                assert!(s.get(key).is_some(), "symbol key {key}");
            }
        }
        let find = |name: &str| symbols.iter().find(|s| s["name"] == name).unwrap();
        assert_eq!(
            (&find("answer")["kind"], &find("answer")["binding"]),
            (&Value::from("function"), &Value::from("global"))
        );
        assert_eq!(find("helper")["binding"], "local");
        assert_eq!(find("maybe")["binding"], "weak");
        assert_eq!(find("external_fn")["kind"], "import");
        assert_eq!(find("counter")["kind"], "data");
        assert_eq!(find("naïve \"quoted\"\n")["kind"], "function");

        let relocations = v["relocations"].as_array().unwrap();
        assert_eq!(relocations[0]["kind"], "pc32");
        assert_eq!(relocations[0]["addend"], -4);
        assert_eq!(relocations[0]["offset"], 19);
        assert_eq!(symbols[relocations[0]["symbol"].as_u64().unwrap() as usize]["name"], "greeting");

        let note = &v["note_sdn"];
        assert_eq!(note["possible"][0]["mangled_name"], "List$Float");
        assert_eq!(note["possible"][0]["can_defer"], "true");
        assert_eq!(note["instantiations"][0]["status"], "compiled");
        assert_eq!(note["dependencies"][0]["dep_kind"], "type_param");
        assert_eq!(note["circular_errors"], Value::Array(vec![]));
        assert_eq!(
            v["note_sdn_columns"]["dependencies"][0][2], "dep_kind",
            "short names are keys as they are"
        );

        let templates = v["templates"].as_array().unwrap();
        if dialect == Dialect::R72 {
            assert!(templates.is_empty(), "R72 symbols cannot point at templates");
        } else {
            assert_eq!(templates[0]["kind"], "struct");
            assert_eq!(templates[0]["name"], "List");
            assert_eq!(templates[0]["generic_params"], serde_json::json!(["T"]));
            assert_eq!(templates[1]["generic_params"], serde_json::json!(["T", "U"]));
        }
    }
}

#[test]
fn inspect_json_is_valid_for_any_names() {
    let dir = scratch("names");
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &samples::RETURN_42);
    let names: [&[u8]; 5] =
        [b"\xff\xfe bad utf8", b"ctl\x01\x1f\x7f", b"quote\"back\\slash", "\u{2028}sep".as_bytes(), b""];
    for name in names {
        // The unnamed one is local: a global or weak symbol must have a name.
        let binding = if name.is_empty() { Binding::Local } else { Binding::Global };
        b.add_symbol(SymbolSpec::function(name, 0, 1).with_binding(binding));
    }
    let path = write(&dir, "names.smf", &b.build().unwrap());
    let v = json_of(&path);
    let got: Vec<&str> =
        v["symbols"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        got,
        ["\u{fffd}\u{fffd} bad utf8", "ctl\x01\x1f\x7f", "quote\"back\\slash", "\u{2028}sep", ""]
    );
    assert_eq!(v["note_sdn"], Value::Null);
    assert_eq!(v["note_sdn_columns"], Value::Null);
}

#[test]
fn inspect_text_reports_every_part() {
    let dir = scratch("text");
    let path = write(&dir, "rich.smf", &samples::rich(Dialect::S128));
    let o = smf(&["inspect", &path]);
    assert_eq!(o.status, 0);
    for needle in [
        "Dialect:        S128 (header trailer at offset",
        "Flags:          0x0021 [executable, has-note-sdn]",
        "Sections (9):",
        ".rodata",
        "Symbols (11):",
        "\"external_fn\"",
        "Relocations (5):",
        "abs32",
        "possible (1 row)",
        "mangled_name=\"List$Float\"",
        "struct   List<T>",
        "Template meta (version 1):",
    ] {
        assert!(o.out.contains(needle), "missing {needle:?} in:\n{}", o.out);
    }
}

#[test]
fn inspect_prints_flags_as_stored_unknown_bits_included() {
    let dir = scratch("unknown-flags");
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.header(|h| h.flags = ModuleFlags::RELOADABLE | ModuleFlags::from_bits_retain(0x8000_0000));
    let code = SectionFlags::READ | SectionFlags::EXEC | SectionFlags::from_bits_retain(0x8000);
    b.add_section(SectionSpec::new(SectionType::Code, b".text", code, samples::RETURN_42.to_vec(), 16));
    b.add_symbol(SymbolSpec {
        flags: SymbolFlags::from_bits_retain(0x81),
        ..SymbolSpec::function(b"main", 0, 6)
    });
    b.entry_point(0);
    let path = write(&dir, "flags.smf", &b.build().unwrap());
    let v = json_of(&path);
    assert_eq!(v["flags"], 0x8000_0003u64);
    assert_eq!(v["sections"][0]["flags"], 0x8005);
    assert_eq!(v["symbols"][0]["flags"], 0x81);
    let o = smf(&["inspect", &path]);
    assert_eq!(o.status, 0);
    for needle in ["Flags:          0x80000003 [executable, reloadable]", " r-x ", " 0x81 "] {
        assert!(o.out.contains(needle), "missing {needle:?} in:\n{}", o.out);
    }
}

#[test]
fn inspect_tells_data_relocations_from_code_ones() {
    let dir = scratch("data-relocations");
    let path = write(&dir, "pointers.smf", &samples::data_pointers(Dialect::R96));
    let o = smf(&["inspect", &path]);
    assert_eq!(o.status, 0);
    assert!(o.out.contains("Relocations (5, the first the marker of data relocations):"), "{}", o.out);
    let data_rows = o.out.lines().filter(|l| l.trim_start().starts_with("data ")).count();
    assert_eq!(data_rows, 4, "{}", o.out);
    let json = smf(&["inspect", "--json", &path]);
    let v: Value = serde_json::from_str(&json.out).unwrap();
    let relocations = v["relocations"].as_array().unwrap();
    assert_eq!(relocations.len(), 4);
    assert!(relocations.iter().all(|r| r["image"] == "data"));
    assert_eq!(relocations[0]["index"], 1, "the marker is relocation 0");
}

#[test]
fn inspect_shows_only_the_tables_asked_for_with_names_whole() {
    let dir = scratch("tables");
    // Section names have 16 bytes on disk (no NUL needed); symbol names any length.
    let long_section = ".text.sixteen_by";
    let long_symbol = "a_symbol_name_well_past_sixteen_characters_too";
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(long_section.as_bytes(), &samples::RETURN_42);
    b.add_symbol(SymbolSpec::function(long_symbol.as_bytes(), 0, 6));
    let long = write(&dir, "long.smf", &b.build().unwrap());
    let rich = write(&dir, "rich.smf", &samples::rich(Dialect::S128));

    let o = smf(&["inspect", "--symbols", &rich]);
    assert_eq!(o.status, 0, "{}", o.err);
    assert!(o.out.starts_with("Symbols (11):"), "{}", o.out);
    for absent in ["Dialect:", "Sections (", "Relocations (", "possible (", "Template"] {
        assert!(!o.out.contains(absent), "{absent} in:\n{}", o.out);
    }
    let o = smf(&["inspect", "--relocations", "--sections", &rich]);
    let (sections, relocations) =
        (o.out.find("Sections (9):").unwrap(), o.out.find("Relocations (5):").unwrap());
    assert!(sections == 0 && relocations > sections && !o.out.contains("Symbols ("), "{}", o.out);

    let o = smf(&["inspect", "--sections", "--symbols", &long]);
    assert!(o.out.contains(long_section) && o.out.contains(long_symbol), "{}", o.out);

    let o = smf(&["inspect", "--json", "--symbols", &long]);
    let json: Value = serde_json::from_str(&o.out).unwrap();
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["file", "symbols"]);
    assert_eq!(json["symbols"][0]["name"], long_symbol);
    // Not options of other commands.
    assert_eq!(smf(&["verify", "--symbols", &rich]).status, 2);
}

#[test]
fn dialect_override_is_honoured() {
    let dir = scratch("override");
    let path = write(&dir, "r96.smf", &samples::return_42(Dialect::R96));
    assert_eq!(smf(&["inspect", "--dialect", "r96", "--json", &path]).status, 0);
    let o = smf(&["inspect", "--dialect", "s128", &path]);
    assert_eq!(o.status, 1);
    assert!(o.err.contains("no SMF magic"), "{}", o.err);
    assert_eq!(smf(&["verify", "--dialect", "R72", &path]).status, 1);
    assert_eq!(smf(&["verify", "--dialect", "elf", &path]).status, 2);
}

/// `inspect` takes several files, prints an application's fields only for an application (its
/// window only for a graphical one), and counts in the singular for one.
#[test]
fn inspect_takes_several_files_and_prints_app_fields_where_they_apply() {
    let (recursion, mathlib) = (example("recursion.smf"), example("mathlib.smf"));
    let both = smf(&["inspect", &recursion, &mathlib]);
    assert_eq!(both.status, 0, "{}", both.err);
    assert!(both.out.starts_with(&format!("SMF module {recursion}\n")), "{}", both.out);
    assert!(both.out.contains(&format!("\n\nSMF module {mathlib}\n")), "{}", both.out);
    let executable = smf(&["inspect", &recursion]).out;
    assert!(executable.contains("  App type:       cli\n"), "{executable}");
    assert!(!executable.contains("window"), "{executable}");
    let library = smf(&["inspect", &mathlib]).out;
    assert!(!library.contains("App type") && !library.contains("window"), "{library}");

    let dir = scratch("gui");
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b".text", &samples::RETURN_42);
    b.add_symbol(SymbolSpec::function(b"main", 0, 6));
    b.entry_point(0);
    b.header(|h| {
        h.app_type = 2;
        h.window_width = 800;
        h.window_height = 600;
    });
    let gui = write(&dir, "gui.smf", &b.build().unwrap());
    let o = smf(&["inspect", &gui]);
    assert!(o.out.contains("  App type:       gui, window 800x600\n"), "{}", o.out);
    let tables = smf(&["inspect", "--sections", &recursion, &mathlib]);
    assert!(tables.out.starts_with(&format!("\nFile: {recursion}\nSections (")), "{}", tables.out);
    let json = smf(&["inspect", "--json", &recursion, &mathlib]);
    let files: Vec<Value> = json.out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!((&files[0]["file"], &files[1]["file"]), (&Value::from(recursion), &Value::from(mathlib)));
}

#[test]
fn a_report_grows_with_its_file_not_with_rows_times_names_or_symbols_times_entries() {
    let dir = scratch("amplify");
    let column = "c".repeat(10_000);
    let rows = 200;
    let mut note = format!("big |{column}|\n");
    for i in 0..rows {
        note.push_str(&format!("{i}\n"));
    }
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b".text", &[0xC3; 16]);
    b.note_sdn(&note);
    // One template entry with a long name, named by 100 template symbols.
    let name = vec![b'T'; 5_000];
    let spec =
        TemplateSpec { kind: TemplateKind::Function, name: name.clone(), params: vec![], body: vec![] };
    let offset = b.add_template(spec);
    for i in 0..100 {
        let mut symbol = SymbolSpec::new(format!("alias{i}").as_bytes(), SymbolKind::Function, 0, 0);
        symbol.flags = SymbolFlags::TEMPLATE;
        symbol.template_offset = offset;
        b.add_symbol(symbol);
    }
    let file = b.build().unwrap();
    let path = write(&dir, "amplify.smf", &file);
    let o = smf(&["inspect", &path]);
    assert_eq!(o.status, 0, "{}", o.err);
    assert!(o.out.len() < 2 * file.len(), "{} bytes of report for {} of file", o.out.len(), file.len());
    // The column's name whole once, shortened in each row.
    assert_eq!(o.out.matches(&column).count(), 1);
    assert!(o.out.contains(&format!("    {}...=\"199\"", "c".repeat(40))), "{}", &o.out[..2000]);
    assert!(o.out.contains("Templates (1):"), "one entry, listed once");
    // So does the JSON report (its keys in every symbol and row cost a constant each: 2.0x the
    // file here; every row keyed by the whole name would be 2 MB): the long name shortened in
    // each row (its index making it unique), whole once among the table's columns; the entry
    // listed once.
    let o = smf(&["inspect", "--json", &path]);
    assert_eq!(o.status, 0, "{}", o.err);
    assert!(o.out.len() < 3 * file.len(), "{} bytes of JSON for {} of file", o.out.len(), file.len());
    assert_eq!(o.out.matches(&column).count(), 1);
    let v = json_of(&path);
    assert_eq!(v["templates"].as_array().unwrap().len(), 1);
    assert_eq!(v["note_sdn"]["big"][199][format!("{}...#0", "c".repeat(40))], "199");
    assert_eq!(v["note_sdn_columns"]["big"], serde_json::json!([[column]]));
}

#[test]
fn relocation_listings_grow_with_the_file_not_with_relocations_times_names() {
    let dir = scratch("amplify-relocations");
    // 400 calls of one import whose name is 10,000 bytes.
    let name = "n".repeat(10_000);
    let calls = 400;
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &[0xE8, 0, 0, 0, 0, 0x90, 0x90, 0x90].repeat(calls));
    let import = b.add_symbol(SymbolSpec::import(name.as_bytes()));
    b.add_symbol(SymbolSpec::function(b"caller", 0, (8 * calls) as u64));
    for i in 0..calls {
        b.add_relocation((8 * i + 1) as u64, import, smf_format::RelocKind::Plt32, -4);
    }
    let file = b.build().unwrap();
    let path = write(&dir, "calls.smf", &file);
    let start = "n".repeat(40);
    // The text report names the import whole once (its symbol), shortened in each relocation
    // (quoted, the dots after the quote); the disassembly, a line per instruction, shortens it
    // in each instruction it patches. Each whole would be 4 MB.
    let code_bytes = 8 * calls;
    let listings = [
        (&["inspect", path.as_str()][..], format!("\"{start}\"..."), 3 * file.len()),
        (
            &["dump", "--disassemble", path.as_str()][..],
            format!(" {start}..."),
            3 * file.len() + 64 * code_bytes,
        ),
    ];
    for (args, shortened, most) in listings {
        let o = smf(args);
        assert_eq!(o.status, 0, "{args:?}: {}", o.err);
        assert!(o.out.len() < most, "{args:?}: {} bytes for {} of file", o.out.len(), file.len());
        assert!(o.out.matches(&shortened).count() >= calls, "{args:?}: {}", &o.out[..2000.min(o.out.len())]);
    }
    assert_eq!(smf(&["inspect", &path]).out.matches(&name).count(), 1, "whole once, in the symbols");
}

/// The JSON reports of a module of many symbols and relocations are written as they are made:
/// `inspect --json` and `symbols --json` run in an address space that holds the module a few
/// times over, where a whole JSON tree took some 2 KB a symbol (20-35x the file: 400 MB here).
#[test]
fn json_reports_of_a_large_module_fit_in_a_few_times_its_size() {
    let dir = scratch("json-large");
    let symbols = 150_000;
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &[0xC3; 8]);
    for i in 0..symbols {
        let import = b.add_symbol(SymbolSpec::import(format!("f{i}").as_bytes()));
        if i % 2 == 0 {
            b.add_relocation(0, import, smf_format::RelocKind::Abs64, 0);
        }
    }
    let file = b.build().unwrap();
    let path = write(&dir, "many.smf", &file);
    // The process's own start (the binary, the C library, stacks) plus the module read, its
    // symbols sorted and a buffer: well under 16 MiB beyond the file's 8 times.
    let limit = 8 * file.len() as u64 + (64 << 20);
    for args in [&["inspect", "--json", path.as_str()][..], &["symbols", "--json", path.as_str()]] {
        let o = crate::smf_within_address_space(args, limit);
        assert_eq!(o.status, 0, "{args:?} in {limit} bytes of address space: {}", o.err);
        let report: Value = serde_json::from_str(&o.out).unwrap();
        assert_eq!(report["symbols"].as_array().unwrap().len(), symbols, "{args:?}");
    }
    let report: Value = serde_json::from_str(&smf(&["inspect", "--json", &path]).out).unwrap();
    assert_eq!(report["relocations"].as_array().unwrap().len(), symbols / 2);
    assert_eq!(report["symbols"][symbols - 1]["name"], format!("f{}", symbols - 1));
}
