//! note.sdn: every table of the spec's example, quoted and escaped fields, short rows dropped,
//! and the note found by name inside modules of every dialect.

// Casts here are of test and tool values known to be small.
#![allow(clippy::cast_possible_truncation)]

use smf_format::note_sdn::{write_quoted, NoteSdn, Table};
use smf_format::write::{samples, ModuleBuilder};
use smf_format::{Dialect, Module};

fn values(table: &Table<'_>) -> Vec<Vec<String>> {
    table.rows().map(|r| r.fields().map(|f| f.to_text()).collect()).collect()
}

#[test]
fn every_table_of_the_spec_example_is_read() {
    let note = NoteSdn::new(samples::NOTE_SDN_EXAMPLE);
    let names: Vec<_> = note.tables().map(|t| t.name).collect();
    assert_eq!(
        names,
        [
            "instantiations",
            "possible",
            "type_inferences",
            "dependencies",
            "circular_warnings",
            "circular_errors"
        ]
    );

    let inst = note.table("instantiations").unwrap();
    assert_eq!(
        inst.columns().collect::<Vec<_>>(),
        ["id", "template", "type_args", "mangled_name", "from_file", "from_loc", "to_obj", "status"]
    );
    assert_eq!(
        values(&inst),
        [["0", "List", "Int", "List$Int", "app.spl", "app.spl:10:5", "app.o", "compiled"]]
    );

    let possible = note.table("possible").unwrap();
    assert_eq!(values(&possible), [["0", "List", "Float", "List$Float", "math_module", "true"]]);
    let row = possible.rows().next().unwrap();
    assert_eq!(row.field(5).unwrap().as_bool(), Some(true));
    assert_eq!(row.field(0).unwrap().as_u64(), Some(0));
    assert!(row.field(3).unwrap().is_quoted());
    assert!(row.field(3).unwrap().eq_str("List$Float"));

    assert_eq!(values(&note.table("dependencies").unwrap()), [["List$Int", "Int", "type_param"]]);
    for empty in ["type_inferences", "circular_warnings", "circular_errors"] {
        let table = note.table(empty).unwrap();
        assert_eq!(table.rows().count(), 0, "{empty}");
        assert_eq!(table.columns().count(), table.width(), "{empty}");
    }
}

#[test]
fn quoted_fields_keep_commas_quotes_and_escapes() {
    let text = r#"circular_errors |id, cycle_path, error_code|
    0, "A$B -> B$A, again", "E\"1\"\n"
    1, "tab\there\\", bare_word
"#;
    let note = NoteSdn::new(text);
    let rows = values(&note.table("circular_errors").unwrap());
    assert_eq!(rows, [["0", "A$B -> B$A, again", "E\"1\"\n"], ["1", "tab\there\\", "bare_word"]]);
}

#[test]
fn short_rows_are_dropped_and_wide_rows_kept() {
    let text = "possible |id, template, type_args, mangled_name, required_by, can_defer|
    0, \"List\", \"Float\"
    1, \"List\", \"Int\", \"List$Int\", \"m\", false
    2, \"Map\", \"K,V\", \"Map$K_V\", \"m\", true, \"extra\"
dependencies |from_inst, to_inst, dep_kind|
    \"only\", \"two\"
";
    let note = NoteSdn::new(text);
    let ids: Vec<_> = note.table("possible").unwrap().rows().map(|r| r.field(0).unwrap().to_text()).collect();
    assert_eq!(ids, ["1", "2"]);
    assert_eq!(note.table("dependencies").unwrap().rows().count(), 0);
}

#[test]
fn unknown_tables_use_their_column_count_and_comments_are_skipped() {
    let text = "# a comment without bars
orphan, row, before, any, table
custom |a, b|
    1, 2
    3
    # another comment
END_OF_TEXT_IS_ROW, 9
# END_NOTE
possible |never, read|
";
    let note = NoteSdn::new(text);
    let names: Vec<_> = note.tables().map(|t| t.name).collect();
    assert_eq!(names, ["custom"], "tables after the terminator are not read");
    let custom = note.table("custom").unwrap();
    assert_eq!(custom.width(), 2);
    assert_eq!(values(&custom), [["1", "2"], ["END_OF_TEXT_IS_ROW", "9"]]);
}

#[test]
fn quoting_round_trips_through_the_reader() {
    let tricky = "a \"quoted\", comma\\ and\nnew\tline\r";
    let mut field = String::new();
    write_quoted(&mut field, tricky).unwrap();
    let text = format!("dependencies |from_inst, to_inst, dep_kind|\n{field}, \"x\", \"y\"\n");
    let note = NoteSdn::new(&text);
    let row = note.table("dependencies").unwrap().rows().next().unwrap();
    assert_eq!(row.field(0).unwrap().to_text(), tricky);
    assert_eq!(row.fields().count(), 3);
}

#[test]
fn the_note_is_found_by_name_with_a_notes_section_type() {
    for dialect in Dialect::ALL {
        let mut b = ModuleBuilder::new(dialect);
        b.add_code(b".text", &samples::RETURN_42);
        b.note_sdn(samples::NOTE_SDN_EXAMPLE);
        let mut file = b.build().unwrap();
        let module = Module::parse(&file).unwrap();
        let note = module.sections().find(|s| s.name == b"note.sdn").unwrap();
        assert_eq!((note.size, note.virtual_size), (0, 0), "the spec's note.sdn entry has size 0");
        assert_eq!(module.note_sdn().unwrap().tables().count(), 6);

        // Retype the entry as a string table (type 7), as some S128 notes are: still found.
        let d = module.dialect();
        let entry = module.data_start() as usize
            + module.header().section_table_offset as usize
            + note.index as usize * d.section_entry_size();
        file[entry] = 7;
        let module = Module::parse(&file).unwrap();
        assert_eq!(module.note_sdn_text(), Some(samples::NOTE_SDN_EXAMPLE));
    }
}

#[test]
fn an_empty_note_is_present_and_has_no_tables() {
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b"code", &samples::RETURN_42);
    b.note_sdn("");
    let file = b.build().unwrap();
    let module = Module::parse(&file).unwrap();
    assert_eq!(module.note_sdn_text(), Some(""));
    assert_eq!(module.note_sdn().unwrap().tables().count(), 0);
}
