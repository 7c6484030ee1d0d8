//! GOT relaxation, as a static linker does it (x86-64 psABI, `R_X86_64_GOTPCRELX` and
//! `R_X86_64_REX_GOTPCRELX`): a load of a symbol's address from its GOT slot becomes a direct
//! PC-relative reference when the symbol is defined in the module itself.
//!
//! Inside a loaded SMF module everything lies within one image, so a module's own symbols are
//! always within reach of a 32-bit displacement and need no GOT slot. Without relaxation every
//! such reference costs an 8-byte slot and, for the module, a read-only page and one more
//! protection change at load time.
//!
//! The assembler marks with the `X` kinds that the instruction around the displacement is one
//! of the relaxable forms; the bytes are still checked here, and anything else keeps its GOT
//! slot (always correct):
//!
//! | before                               | after                          |
//! |--------------------------------------|--------------------------------|
//! | `mov foo@GOTPCREL(%rip), %reg` (8b)  | `lea foo(%rip), %reg` (8d)     |
//! | `call *foo@GOTPCREL(%rip)` (ff 15)   | `addr32 call foo` (67 e8)      |
//! | `jmp *foo@GOTPCREL(%rip)` (ff 25)    | `nop; jmp foo` (90 e9)         |
//!
//! Each rewrite keeps the displacement where it was, so the relocation keeps its offset and
//! addend and only changes kind (to `pc32`).

use smf_format::RelocKind;

/// ModRM byte of a RIP-relative memory operand has mod 00 and r/m 101.
const fn is_rip_relative(modrm: u8) -> bool {
    modrm & 0xC7 == 0x05
}

/// Rewrites the instruction whose 32-bit displacement is at `code[at..at + 4]` so that it
/// addresses the symbol directly instead of its GOT slot. Returns the relocation kind to use
/// instead of the GOT one, or `None` (and leaves the code unchanged) when the instruction is not
/// one of the relaxable forms or the addend does not end the instruction at the displacement.
pub(crate) fn relax_got_load(code: &mut [u8], at: usize, addend: i64) -> Option<RelocKind> {
    // The displacement must be the instruction's last field (no immediate after it).
    if addend != -4 || at < 2 || at.checked_add(4)? > code.len() {
        return None;
    }
    let (opcode, modrm) = (code[at - 2], code[at - 1]);
    match (opcode, modrm) {
        (0x8B, m) if is_rip_relative(m) => code[at - 2] = 0x8D,
        (0xFF, 0x15) => code[at - 2..at].copy_from_slice(&[0x67, 0xE8]),
        (0xFF, 0x25) => code[at - 2..at].copy_from_slice(&[0x90, 0xE9]),
        _ => return None,
    }
    Some(RelocKind::Pc32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mov_from_the_got_becomes_lea() {
        // mov rax, [rip+0] ; mov r9, [rip+0]
        let mut code = vec![0x48, 0x8B, 0x05, 0, 0, 0, 0, 0x4C, 0x8B, 0x0D, 0, 0, 0, 0];
        assert_eq!(relax_got_load(&mut code, 3, -4), Some(RelocKind::Pc32));
        assert_eq!(relax_got_load(&mut code, 10, -4), Some(RelocKind::Pc32));
        assert_eq!(code, [0x48, 0x8D, 0x05, 0, 0, 0, 0, 0x4C, 0x8D, 0x0D, 0, 0, 0, 0]);
    }

    #[test]
    fn indirect_call_and_jump_become_direct() {
        let mut code = vec![0xFF, 0x15, 0, 0, 0, 0, 0xFF, 0x25, 0, 0, 0, 0];
        assert_eq!(relax_got_load(&mut code, 2, -4), Some(RelocKind::Pc32));
        assert_eq!(relax_got_load(&mut code, 8, -4), Some(RelocKind::Pc32));
        assert_eq!(code, [0x67, 0xE8, 0, 0, 0, 0, 0x90, 0xE9, 0, 0, 0, 0]);
    }

    #[test]
    fn other_forms_keep_their_got_slot() {
        // add rax, [rip+0] (03 05), mov with a SIB operand, an addend that is not -4, too close
        // to the start, a displacement past the end.
        let cases: [(&[u8], usize, i64); 5] = [
            (&[0x48, 0x03, 0x05, 0, 0, 0, 0], 3, -4),
            (&[0x48, 0x8B, 0x04, 0, 0, 0, 0], 3, -4),
            (&[0x48, 0x8B, 0x05, 0, 0, 0, 0], 3, 4),
            (&[0x05, 0, 0, 0, 0], 1, -4),
            (&[0x48, 0x8B, 0x05, 0, 0, 0], 3, -4),
        ];
        for (bytes, at, addend) in cases {
            let mut code = bytes.to_vec();
            assert_eq!(relax_got_load(&mut code, at, addend), None, "{bytes:02x?} at {at}");
            assert_eq!(code, bytes, "unchanged");
        }
    }
}
