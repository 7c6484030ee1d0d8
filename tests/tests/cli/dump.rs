//! `smf dump`: a section's bytes (`-x`) and its x86-64 instructions (`--disassemble`).

use smf_format::write::samples;
use smf_format::Dialect;

use crate::{example, scratch, smf, write};

/// `dump -x` shows a section's bytes (by name or index) as readelf -x does; `--disassemble`
/// decodes x86-64 code with function names and the relocations each instruction carries.
#[test]
fn dump_shows_a_sections_bytes_and_its_instructions() {
    let recursion = example("recursion.smf");
    let by_name = smf(&["dump", "-x", ".text", &recursion]);
    assert_eq!(by_name.status, 0, "{}", by_name.err);
    assert!(by_name.out.starts_with("\nHex dump of section '.text':\n  0x00000000 "), "{}", by_name.out);
    let bytes = std::fs::read(&recursion).unwrap();
    let first: String = bytes[..4].iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        by_name.out.contains(&format!("0x00000000 {first} ")),
        "the section starts the file: {}",
        by_name.out
    );
    assert_eq!(smf(&["dump", "-x", "0", &recursion]).out, by_name.out);
    let missing = smf(&["dump", "-x", ".nope", &recursion]);
    assert_eq!(missing.status, 1);
    assert!(missing.err.contains("no section `.nope`"), "{}", missing.err);
    assert_eq!(smf(&["dump", &recursion]).status, 2, "dump what?");

    let code = smf(&["dump", "--disassemble", &example("app.smf")]);
    assert_eq!(code.status, 0, "{}", code.err);
    assert!(code.out.contains("\n0000000000000000 <lcm>:\n"), "{}", code.out);
    // app.c's call to mathlib's gcd goes through the stub the linked layout pins to it.
    assert!(code.out.lines().any(|l| l.contains("call ") && l.ends_with("; gcd@stub")), "{}", code.out);
    let dir = scratch("dump");
    let mut arm = samples::return_42(Dialect::R96);
    arm[7] = 1;
    let arm = write(&dir, "arm.smf", &arm);
    let refused = smf(&["dump", "-d", &arm]);
    assert_eq!(refused.status, 1);
    assert!(refused.err.contains("cannot disassemble aarch64 code (x86-64 only)"), "{}", refused.err);
}
