//! Objects the `pack` fuzz target found (in `fuzz/regressions/pack`): each packs into a module
//! that loads, with a note, or is refused with a problem naming the cause.

use smf_format::Dialect;
use smf_tool::pack::{Note, PackError, PackFailure};

use crate::{says, workspace};

/// Packs the `pack` fuzz target's regression input `name` (an object, in S128).
fn pack_regression(name: &str) -> Result<(Vec<u8>, Vec<Note>), PackFailure> {
    let object = std::fs::read(workspace().join("fuzz/regressions/pack").join(name)).unwrap();
    smf_tool::pack::pack(&[("bad.o".into(), object)], Dialect::S128)
}

/// An object whose unwind record describes code outside the module (found by the `pack` fuzz
/// target: the module pack wrote parsed but no loader would load it) packs without its unwind
/// tables, with a note saying why, into a module that loads.
#[test]
fn unwind_tables_that_would_not_load_are_dropped_with_a_note() {
    let keeping = pack_regression("unwind-record-outside-code");
    let (bytes, notes) = keeping.unwrap_or_else(|f| panic!("{}", f.report(true).join("\n")));
    assert!(says(&notes, "unwind tables dropped"), "{notes:?}");
    assert!(says(&notes, "outside the module's code"), "the note says why: {notes:?}");
    let module = smf_format::Module::parse(&bytes).unwrap();
    let unwind = module.sections().filter(|s| s.flags.contains(smf_format::SectionFlags::UNWIND)).count();
    assert_eq!(unwind, 0, "no unwind table is kept");
    assert_eq!(smf_tool::pack::trial_load(&bytes), Ok(()));
}

/// A symbol whose size runs past the end of its section (found by the `pack` fuzz target: pack
/// wrote a module that did not validate) has its size cut at the section's end, with a note.
#[test]
fn a_symbol_size_past_its_section_is_cut_there_with_a_note() {
    let packed = pack_regression("symbol-size-past-its-section");
    let (bytes, notes) = packed.unwrap_or_else(|f| panic!("{}", f.report(true).join("\n")));
    assert!(
        says(&notes, "symbol op_mul: size 12947848928690184 runs past the end of its section, cut to"),
        "{notes:?}"
    );
    let module = smf_format::Module::parse(&bytes).unwrap();
    // A static function: among the module's function names, apart from its symbols.
    let op_mul = module.function_names().iter().find(|f| f.name() == b"op_mul").unwrap();
    assert!(op_mul.offset + op_mul.size <= module.code_size(), "{op_mul:?}");
}

/// A loaded section whose alignment is no power of two (found by the `pack` fuzz target: pack
/// wrote a module that did not validate) is a problem naming the alignment.
#[test]
fn a_section_alignment_that_is_no_power_of_two_is_refused() {
    let failure = pack_regression("section-alignment-not-a-power-of-two").err().unwrap();
    let bad = failure
        .problems
        .iter()
        .any(|p| matches!(p.error, PackError::BadAlignment { align, .. } if !align.is_power_of_two()));
    assert!(bad, "{}", failure.report(true).join("\n"));
    assert!(!failure
        .problems
        .iter()
        .any(|p| matches!(p.error, PackError::Invalid(_) | PackError::DoesNotLoad(_))));
}

/// A loaded section named `note.sdn` (found by the `pack` fuzz target: pack made a module whose
/// note.sdn was a data section, which no reader takes) is refused, naming the reserved name.
#[test]
fn a_section_named_as_smf_names_its_metadata_is_refused() {
    let failure = pack_regression("section-named-note-sdn").err().unwrap();
    let reserved = failure
        .problems
        .iter()
        .any(|p| matches!(&p.error, PackError::ReservedSectionName { section } if section == "note.sdn"));
    assert!(reserved, "{}", failure.report(true).join("\n"));
}
