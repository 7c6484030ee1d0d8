//! Relocation arithmetic: what each [`RelocKind`] writes at its place, with range checks.
//!
//! Pure functions over the patched bytes, so every kind (x86-64 and aarch64 alike) is tested on
//! any host. Results that do not fit their field are errors, never truncated; aarch64 kinds
//! check that the patched word is the instruction class they encode into.
//!
//! S is the symbol's address, A the addend, P the address of the patched bytes, G the address
//! of the module's 8-byte GOT slot holding S.

use core::fmt;

use smf_format::kinds::Branch;
use smf_format::RelocKind;

/// Why a relocation could not be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelocError {
    /// The computed value does not fit the field.
    OutOfRange {
        /// The value that did not fit.
        value: i128,
    },
    /// An aarch64 branch target or scaled offset is not aligned as the instruction needs.
    Misaligned {
        /// The value.
        value: i128,
    },
    /// The patched word is not an instruction this aarch64 kind applies to.
    WrongInstruction {
        /// The instruction word found.
        insn: u32,
    },
    /// The relocation needs a GOT slot and none was provided.
    NoGotSlot,
}

impl fmt::Display for RelocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelocError::OutOfRange { value } => write!(f, "value {value} does not fit the field"),
            RelocError::Misaligned { value } => {
                write!(f, "value {value} is not aligned for the instruction")
            }
            RelocError::WrongInstruction { insn } => {
                write!(f, "instruction {insn:#010x} is not of the relocated kind")
            }
            RelocError::NoGotSlot => f.write_str("no GOT slot for the symbol"),
        }
    }
}

/// The inputs of one relocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelocInput {
    /// S: the symbol's address.
    pub symbol: u64,
    /// A: the addend.
    pub addend: i64,
    /// P: the address of the patched bytes.
    pub place: u64,
    /// G: the address of the GOT slot holding S, when the module has one.
    pub got: Option<u64>,
}

fn page(x: i128) -> i128 {
    x & !0xFFF
}

/// aarch64 ADRP immediate: `delta` pages into immlo (bits 29-30) and immhi (bits 5-23).
fn encode_adrp(insn: u32, delta: i128) -> Result<u32, RelocError> {
    if insn & 0x9F00_0000 != 0x9000_0000 {
        return Err(RelocError::WrongInstruction { insn });
    }
    let pages = delta >> 12;
    if !(-(1 << 20)..(1 << 20)).contains(&pages) {
        return Err(RelocError::OutOfRange { value: delta });
    }
    // Masking a two's-complement value to 21 bits leaves a non-negative number that fits.
    let imm = u32::try_from(pages & 0x1F_FFFF).unwrap_or(0);
    let immlo = imm & 0x3;
    let immhi = imm >> 2;
    Ok((insn & !(0x3 << 29 | 0x7_FFFF << 5)) | immlo << 29 | immhi << 5)
}

/// aarch64 low-12-bit immediate: ADD (immediate) takes it as is; loads and stores (unsigned
/// immediate) take it scaled by their access size, which must divide it.
fn encode_lo12(insn: u32, value: i128) -> Result<u32, RelocError> {
    let lo12 = u32::try_from(value & 0xFFF).unwrap_or(0);
    let scale = if insn & 0x7F80_0000 == 0x1100_0000 {
        0 // ADD Wd/Xd, Wn/Xn, #imm (either width: bit 31 is sf)
    } else if insn & 0x3B00_0000 == 0x3900_0000 {
        let size = insn >> 30;
        let vector_128 = insn & (1 << 26) != 0 && size == 0 && insn & (1 << 23) != 0;
        if vector_128 {
            4
        } else {
            size
        }
    } else {
        return Err(RelocError::WrongInstruction { insn });
    };
    if lo12 & ((1 << scale) - 1) != 0 {
        return Err(RelocError::Misaligned { value });
    }
    Ok((insn & !(0xFFF << 10)) | (lo12 >> scale) << 10)
}

/// Writes the relocation of `kind` into `site` (the bytes at P: at least 8 for abs64, 4 for
/// the others).
#[inline(always)]
pub fn apply(kind: RelocKind, site: &mut [u8], input: RelocInput) -> Result<(), RelocError> {
    // The x86-64 kinds are most of every module's relocations: computed here, inline in the
    // loader's loop; the aarch64 instruction encodings out of line.
    match kind {
        RelocKind::None => Ok(()),
        RelocKind::Abs64 => abs64(site, input.symbol, input.addend),
        RelocKind::Pc32 | RelocKind::Plt32 => pc32(site, input.symbol, input.addend, input.place),
        RelocKind::GotPc32 => pc32(site, input.got.ok_or(RelocError::NoGotSlot)?, input.addend, input.place),
        RelocKind::Abs32 => {
            let v = i128::from(input.symbol) + i128::from(input.addend);
            let v = u32::try_from(v).map_err(|_| RelocError::OutOfRange { value: v })?;
            write(site, &v.to_le_bytes())
        }
        RelocKind::Aarch64Branch26 => apply_aarch64(Aarch64::Branch26, site, input),
        RelocKind::Aarch64Page21 => apply_aarch64(Aarch64::Page21, site, input),
        RelocKind::Aarch64PageOffset12 => apply_aarch64(Aarch64::PageOffset12, site, input),
        RelocKind::Aarch64GotPage21 => apply_aarch64(Aarch64::GotPage21, site, input),
        RelocKind::Aarch64GotPageOffset12 => apply_aarch64(Aarch64::GotPageOffset12, site, input),
    }
}

/// The aarch64 relocation kinds, which [`apply_aarch64`] encodes into instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Aarch64 {
    Branch26,
    Page21,
    PageOffset12,
    GotPage21,
    GotPageOffset12,
}

/// S + A, 8 bytes ([`RelocKind::Abs64`]).
#[inline(always)]
pub fn abs64(site: &mut [u8], symbol: u64, addend: i64) -> Result<(), RelocError> {
    write(site, &symbol.wrapping_add_signed(addend).to_le_bytes())
}

/// `to` + A - P, 4 bytes signed ([`RelocKind::Pc32`], [`RelocKind::Plt32`], and
/// [`RelocKind::GotPc32`] with `to` = G).
#[inline(always)]
pub fn pc32(site: &mut [u8], to: u64, addend: i64, place: u64) -> Result<(), RelocError> {
    write(site, &pc_relative_i32(to, addend, place)?.to_le_bytes())
}

/// `to` + A - P as a signed 32-bit value, exactly (never wrapped). Addresses below 2^63 (every
/// user-space address) take a path of plain 64-bit arithmetic that cannot overflow before the
/// addend is added; anything else is computed in 128 bits.
#[inline(always)]
pub(crate) fn pc_relative_i32(to: u64, addend: i64, place: u64) -> Result<i32, RelocError> {
    let v = if (to | place) >> 63 == 0 {
        // Both fit i64 and are non-negative, so their difference does too.
        (to as i64 - place as i64).checked_add(addend).and_then(|v| i32::try_from(v).ok())
    } else {
        None
    };
    match v {
        Some(v) => Ok(v),
        None => pc_relative_wide(to, addend, place),
    }
}

/// [`pc_relative_i32`] in 128 bits, for the rare inputs and for the error's value.
#[cold]
fn pc_relative_wide(to: u64, addend: i64, place: u64) -> Result<i32, RelocError> {
    let v = i128::from(to) + i128::from(addend) - i128::from(place);
    i32::try_from(v).map_err(|_| RelocError::OutOfRange { value: v })
}

/// Copies `bytes` to the start of `site`; an error (never a panic) if the site is too short,
/// which the loader's validation rules out.
#[inline(always)]
fn write(site: &mut [u8], bytes: &[u8]) -> Result<(), RelocError> {
    let field = site.get_mut(..bytes.len()).ok_or(RelocError::OutOfRange { value: 0 })?;
    field.copy_from_slice(bytes);
    Ok(())
}

/// The aarch64 kinds of [`apply`].
#[inline(never)]
fn apply_aarch64(kind: Aarch64, site: &mut [u8], input: RelocInput) -> Result<(), RelocError> {
    let s = i128::from(input.symbol);
    let a = i128::from(input.addend);
    let p = i128::from(input.place);
    let g = || input.got.map(i128::from).ok_or(RelocError::NoGotSlot);
    let Some(&insn) = site.first_chunk::<4>() else { return Err(RelocError::OutOfRange { value: 0 }) };
    let insn = u32::from_le_bytes(insn);
    let word = match kind {
        Aarch64::Branch26 => {
            if insn & 0x7C00_0000 != 0x1400_0000 {
                return Err(RelocError::WrongInstruction { insn });
            }
            let v = s + a - p;
            if v & 3 != 0 {
                return Err(RelocError::Misaligned { value: v });
            }
            if !(-(1 << 27)..(1 << 27)).contains(&v) {
                return Err(RelocError::OutOfRange { value: v });
            }
            let imm26 = u32::try_from((v >> 2) & 0x03FF_FFFF).unwrap_or(0);
            (insn & !0x03FF_FFFF) | imm26
        }
        Aarch64::Page21 => encode_adrp(insn, page(s + a) - page(p))?,
        Aarch64::PageOffset12 => encode_lo12(insn, s + a)?,
        Aarch64::GotPage21 => encode_adrp(insn, page(g()?) - page(p))?,
        Aarch64::GotPageOffset12 => encode_lo12(insn, g()?)?,
    };
    write(site, &word.to_le_bytes())
}

/// Whether a branch from `place` can reach `target` directly with this kind (x86-64 rel32 or
/// aarch64 branch26); if not, the loader routes it through a stub.
pub fn branch_reaches(kind: RelocKind, target: u64, addend: i64, place: u64) -> bool {
    let v = i128::from(target) + i128::from(addend) - i128::from(place);
    match kind.branch() {
        Some(Branch::X86Rel32) => i32::try_from(v).is_ok(),
        Some(Branch::Aarch64Imm26) => (-(1 << 27)..(1 << 27)).contains(&v),
        // Not a branch: nothing to route through a stub.
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use smf_format::Dialect;

    #[test]
    fn errors_print_values_as_signed_decimals() {
        let error = RelocError::OutOfRange { value: -0x8000_0005 };
        assert_eq!(error.to_string(), "value -2147483653 does not fit the field");
        let error = RelocError::Misaligned { value: 6 };
        assert_eq!(error.to_string(), "value 6 is not aligned for the instruction");
    }

    #[test]
    fn every_kind_encodes_and_applies_within_its_width() {
        // An instruction each kind accepts (x86-64 kinds patch raw fields).
        let insn = |kind| match kind {
            RelocKind::Aarch64Branch26 => 0x9400_0000u32, // bl
            RelocKind::Aarch64Page21 | RelocKind::Aarch64GotPage21 => 0x9000_0010, // adrp x16
            RelocKind::Aarch64PageOffset12 => 0x9100_0210, // add x16, x16, #0
            RelocKind::Aarch64GotPageOffset12 => 0xF940_0210, // ldr x16, [x16]
            _ => 0xAAAA_AAAA,
        };
        for kind in RelocKind::ALL {
            assert!(
                Dialect::ALL
                    .iter()
                    .any(|&d| kind.to_wire(d).and_then(|w| RelocKind::from_wire(d, w)) == Some(kind)),
                "{kind:?} has a wire byte"
            );
            let mut site = [0xAAu8; 16];
            site[..4].copy_from_slice(&insn(kind).to_le_bytes());
            let before = site;
            let input = RelocInput { symbol: 0x1_0000, addend: 8, place: 0x1_2000, got: Some(0x1_3008) };
            apply(kind, &mut site, input).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            let width = kind.site_len();
            assert_eq!(site[width..], before[width..], "{kind:?} writes only its {width} bytes");
            assert_eq!(
                site[..width] != before[..width],
                kind != RelocKind::None,
                "{kind:?} writes its field"
            );
        }
    }

    fn run(
        kind: RelocKind,
        insn: u32,
        symbol: u64,
        addend: i64,
        place: u64,
        got: Option<u64>,
    ) -> Result<u32, RelocError> {
        let mut site = insn.to_le_bytes();
        apply(kind, &mut site, RelocInput { symbol, addend, place, got })?;
        Ok(u32::from_le_bytes(site))
    }

    #[test]
    fn x86_64_kinds_compute_and_range_check() {
        let mut site = [0u8; 8];
        apply(
            RelocKind::Abs64,
            &mut site,
            RelocInput { symbol: 0x7f00_0000_1000, addend: 8, place: 0, got: None },
        )
        .unwrap();
        assert_eq!(u64::from_le_bytes(site), 0x7f00_0000_1008);
        assert_eq!(run(RelocKind::Pc32, 0, 0x1000, -4, 0x2000, None), Ok((-0x1004i32) as u32));
        assert_eq!(run(RelocKind::Plt32, 0, 0x7000_0000, -4, 0x1000, None), Ok(0x6FFF_EFFC));
        assert_eq!(
            run(RelocKind::Pc32, 0, 0x1_0000_0000, 0, 0, None),
            Err(RelocError::OutOfRange { value: 0x1_0000_0000 })
        );
        assert_eq!(run(RelocKind::GotPc32, 0, 0xdead, -4, 0x1000, Some(0x1100)), Ok(0xFC));
        assert_eq!(run(RelocKind::GotPc32, 0, 0xdead, -4, 0x1000, None), Err(RelocError::NoGotSlot));
        assert_eq!(run(RelocKind::Abs32, 0, 0x1234_5678, 8, 0, None), Ok(0x1234_5680));
        assert!(matches!(
            run(RelocKind::Abs32, 0, 0x1_0000_0000, 0, 0, None),
            Err(RelocError::OutOfRange { .. })
        ));
        assert!(matches!(run(RelocKind::Abs32, 0, 4, -8, 0, None), Err(RelocError::OutOfRange { .. })));
    }

    #[test]
    fn aarch64_branch26_encodes_and_checks() {
        // bl #0 at 0x1000 to 0x2000: imm26 = 0x1000 / 4 = 0x400.
        assert_eq!(run(RelocKind::Aarch64Branch26, 0x9400_0000, 0x2000, 0, 0x1000, None), Ok(0x9400_0400));
        // b backwards by 8: imm26 = -2 in 26 bits.
        assert_eq!(run(RelocKind::Aarch64Branch26, 0x1400_0000, 0x1000, 0, 0x1008, None), Ok(0x17FF_FFFE));
        assert!(matches!(
            run(RelocKind::Aarch64Branch26, 0x9400_0000, 0x1002, 0, 0x1000, None),
            Err(RelocError::Misaligned { .. })
        ));
        assert!(matches!(
            run(RelocKind::Aarch64Branch26, 0x9400_0000, 0x1000 + (128 << 20), 0, 0x1000, None),
            Err(RelocError::OutOfRange { .. })
        ));
        assert_eq!(
            run(RelocKind::Aarch64Branch26, 0xD65F_03C0, 0x2000, 0, 0x1000, None),
            Err(RelocError::WrongInstruction { insn: 0xD65F_03C0 })
        );
    }

    #[test]
    fn aarch64_adrp_and_lo12_encode_like_the_assembler() {
        // adrp x0, <one page ahead> = 0xb0000000; adrp x0, <16 pages back> = 0x90ffff00 | ...
        assert_eq!(run(RelocKind::Aarch64Page21, 0x9000_0000, 0x1234, 0, 0x0fff, None), Ok(0xB000_0000));
        let back = run(RelocKind::Aarch64Page21, 0x9000_0000, 0x1000, 0, 0x11000, None).unwrap();
        let imm = ((back >> 5) & 0x7_FFFF) << 2 | (back >> 29) & 3;
        assert_eq!(((imm << 11) as i32) >> 11, -16, "immhi:immlo is -16 pages");
        assert!(matches!(
            run(RelocKind::Aarch64Page21, 0x9000_0000, 0x2_0000_0000, 0, 0, None),
            Err(RelocError::OutOfRange { .. })
        ));
        // add x0, x0, #:lo12:sym -> add x0, x0, #0x678 = 0x9119e000
        assert_eq!(
            run(RelocKind::Aarch64PageOffset12, 0x9100_0000, 0x4567_8678, 0, 0, None),
            Ok(0x9119_E000)
        );
        // ldr x1, [x0, #:lo12:sym] with sym % 4096 == 8 -> ldr x1, [x0, #8] = 0xf9400401
        assert_eq!(run(RelocKind::Aarch64PageOffset12, 0xF940_0001, 0x9008, 0, 0, None), Ok(0xF940_0401));
        // ldrb w1, [x0, #:lo12:sym] takes the offset unscaled.
        assert_eq!(run(RelocKind::Aarch64PageOffset12, 0x3940_0001, 0x9003, 0, 0, None), Ok(0x3940_0C01));
        // A 64-bit load of a misaligned offset is refused.
        assert!(matches!(
            run(RelocKind::Aarch64PageOffset12, 0xF940_0001, 0x9004, 0, 0, None),
            Err(RelocError::Misaligned { .. })
        ));
        // ldr q0, [x0, #:lo12:sym] scales by 16.
        assert_eq!(run(RelocKind::Aarch64PageOffset12, 0x3DC0_0000, 0x9020, 0, 0, None), Ok(0x3DC0_0800));
        assert!(matches!(
            run(RelocKind::Aarch64PageOffset12, 0xD65F_03C0, 0, 0, 0, None),
            Err(RelocError::WrongInstruction { .. })
        ));
    }

    #[test]
    fn aarch64_fields_are_replaced_whatever_they_held_and_addends_count() {
        // The immediate fields hold ones before the relocation (what a REL-style assembler
        // or a reused instruction might leave): each is replaced, the other bits kept.
        let adrp_x3 = 0x9000_0003 | 0x3 << 29 | 0x7_FFFF << 5;
        assert_eq!(run(RelocKind::Aarch64Page21, adrp_x3, 0x1234, 0, 0x0fff, None), Ok(0xB000_0003));
        let add_x3 = 0x9100_0063 | 0xFFF << 10;
        assert_eq!(run(RelocKind::Aarch64PageOffset12, add_x3, 0x4567_8678, 0, 0, None), Ok(0x9119_E063));
        let bl = 0x9400_0000 | 0x03FF_FFFF;
        assert_eq!(run(RelocKind::Aarch64Branch26, bl, 0x2000, 0, 0x1000, None), Ok(0x9400_0400));
        // The addend counts: S + A - P, Page(S + A), (S + A) & 0xfff.
        assert_eq!(run(RelocKind::Aarch64Branch26, 0x9400_0000, 0x2000, 8, 0x1000, None), Ok(0x9400_0402));
        assert_eq!(run(RelocKind::Aarch64Page21, 0x9000_0000, 0x0ff8, 0x10, 0, None), Ok(0xB000_0000));
        assert_eq!(run(RelocKind::Aarch64PageOffset12, 0x9100_0000, 0x9000, 0x10, 0, None), Ok(0x9100_4000));
    }

    #[test]
    fn lo12_loads_and_stores_scale_by_their_access_size() {
        // (instruction, its access size in bytes): the offset is stored divided by it.
        let cases: [(u32, u32); 9] = [
            (0x3940_0001, 1),  // ldrb w1
            (0x3980_0001, 1),  // ldrsb x1 (opc bit 23 set, not a vector)
            (0x7940_0001, 2),  // ldrh w1
            (0xB940_0001, 4),  // ldr w1
            (0xF940_0001, 8),  // ldr x1
            (0x3D40_0001, 1),  // ldr b1 (a vector register, one byte)
            (0x7D40_0001, 2),  // ldr h1
            (0xFD40_0001, 8),  // ldr d1
            (0x3DC0_0001, 16), // ldr q1
        ];
        for (insn, size) in cases {
            let offset: u32 = 0x40;
            let encoded =
                run(RelocKind::Aarch64PageOffset12, insn, 0x9000 + u64::from(offset), 0, 0, None).unwrap();
            assert_eq!((encoded >> 10) & 0xFFF, offset / size, "{insn:#x}");
            let misaligned = run(RelocKind::Aarch64PageOffset12, insn, 0x9041, 0, 0, None);
            assert_eq!(misaligned.is_err(), size > 1, "{insn:#x}: an offset of 0x41");
        }
        // str q1 is a 16-byte access too.
        assert_eq!(run(RelocKind::Aarch64PageOffset12, 0x3D80_0001, 0x9020, 0, 0, None), Ok(0x3D80_0801));
    }

    #[test]
    fn aarch64_got_kinds_use_the_slot() {
        assert_eq!(
            run(RelocKind::Aarch64GotPage21, 0x9000_0010, 0xdead_0000, 0, 0x0, Some(0x1010)),
            Ok(0xB000_0010)
        );
        assert_eq!(
            run(RelocKind::Aarch64GotPageOffset12, 0xF940_0210, 0xdead_0000, 0, 0x0, Some(0x1010)),
            Ok(0xF940_0A10)
        );
        assert_eq!(run(RelocKind::Aarch64GotPage21, 0x9000_0010, 1, 0, 0, None), Err(RelocError::NoGotSlot));
    }

    #[test]
    fn branches_know_their_reach() {
        assert!(branch_reaches(RelocKind::Plt32, 0x7fff_0000, -4, 0x1000));
        assert!(!branch_reaches(RelocKind::Plt32, 0x1_0000_2000, -4, 0x1000));
        assert!(branch_reaches(RelocKind::Aarch64Branch26, 0x1000 + (127 << 20), 0, 0x1000));
        assert!(!branch_reaches(RelocKind::Aarch64Branch26, 0x1000 + (128 << 20), 0, 0x1000));
        // Backwards, and the addend counts.
        assert!(branch_reaches(RelocKind::Aarch64Branch26, 0x1000, 0, 0x1000 + (128 << 20)));
        assert!(!branch_reaches(RelocKind::Aarch64Branch26, 0x1000, -4, 0x1000 + (128 << 20)));
        assert!(!branch_reaches(RelocKind::Aarch64Branch26, 0x1000 + (127 << 20), 1 << 20, 0x1000));
        assert!(branch_reaches(RelocKind::Plt32, 0x1000 + 0x7fff_fff0, -0x10, 0x1000));
        assert!(!branch_reaches(RelocKind::Plt32, 0x1000 + 0x7fff_fff0, 0x10, 0x1000));
    }

    #[test]
    fn pc_relative_values_are_exact_on_both_paths() {
        let wide = |to: u64, addend: i64, place: u64| {
            let v = i128::from(to) + i128::from(addend) - i128::from(place);
            i32::try_from(v).map_err(|_| RelocError::OutOfRange { value: v })
        };
        let addresses = [
            0,
            1,
            0x1000,
            0x7fff_ffff,
            0x8000_0000,
            0x7fff_ffff_f000,
            1 << 62,
            (1 << 63) - 1,
            1 << 63,
            u64::MAX,
        ];
        let addends = [0, -4, 4, i64::MIN, i64::MAX, i64::from(i32::MIN), i64::from(i32::MAX) + 1];
        for &to in &addresses {
            for &place in &addresses {
                for &addend in &addends {
                    assert_eq!(
                        pc_relative_i32(to, addend, place),
                        wide(to, addend, place),
                        "{to:#x} {addend} {place:#x}"
                    );
                }
            }
        }
    }
}
