//! Relocation kinds: what each computes, which wire byte means which kind in each dialect
//! (wire 5 is an aarch64 branch in R96/R72 but an absolute 32-bit value in S128), widths,
//! branches and GOT use.

use crate::Dialect;

/// What a relocation computes (S = symbol address, A = addend, P = patched address, G = the
/// module-owned GOT slot holding S).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelocKind {
    /// R96/R72 wire 0: nothing to do.
    None,
    /// S + A, 8 bytes.
    Abs64,
    /// S + A - P, 4 bytes signed (R96 "pc32", S128 "rel32").
    Pc32,
    /// S + A - P, 4 bytes signed, through a PLT in ELF terms.
    Plt32,
    /// G + A - P, 4 bytes signed.
    GotPc32,
    /// S + A as an unsigned 32-bit value (S128 only).
    Abs32,
    /// aarch64: (S + A - P) >> 2 into imm26 of B/BL (R96/R72 only).
    Aarch64Branch26,
    /// aarch64: page(S + A) - page(P) into ADRP (R96/R72 only).
    Aarch64Page21,
    /// aarch64: low 12 bits of S + A, scaled by the access size (R96/R72 only).
    Aarch64PageOffset12,
    /// aarch64: page(G) - page(P) into ADRP (R96/R72 only).
    Aarch64GotPage21,
    /// aarch64: low 12 bits of G, scaled by 8 (R96/R72 only).
    Aarch64GotPageOffset12,
}

/// A branch a relocation patches ([`RelocKind::branch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Branch {
    /// x86-64 `call`/`jmp` rel32 (`plt32`): reaches +-2 GiB.
    X86Rel32,
    /// aarch64 `b`/`bl` imm26 (`branch26`): reaches +-128 MiB.
    Aarch64Imm26,
}

/// [`RelocKind::from_wire`] for every wire byte of each dialect (in [`Dialect::ALL`] order).
static WIRE_KINDS: [[Option<RelocKind>; 256]; 3] =
    [wire_kinds(Dialect::S128), wire_kinds(Dialect::R96), wire_kinds(Dialect::R72)];

/// Per dialect and wire byte: 1 if the byte is a kind that needs a GOT slot, else 0.
static GOT_WIRE_KINDS: [[u8; 256]; 3] =
    [got_wire_kinds(Dialect::S128), got_wire_kinds(Dialect::R96), got_wire_kinds(Dialect::R72)];

const fn got_wire_kinds(dialect: Dialect) -> [u8; 256] {
    let kinds = wire_kinds(dialect);
    let mut table = [0; 256];
    let mut wire = 0;
    while wire < 256 {
        if let Some(kind) = kinds[wire] {
            table[wire] = kind.uses_got() as u8;
        }
        wire += 1;
    }
    table
}

const fn wire_kinds(dialect: Dialect) -> [Option<RelocKind>; 256] {
    let mut table = [None; 256];
    let mut wire: u8 = 0;
    loop {
        table[wire as usize] = RelocKind::decode_wire(dialect, wire);
        if wire == u8::MAX {
            return table;
        }
        wire += 1;
    }
}

impl RelocKind {
    /// Meaning of a wire byte in `dialect` (`None`: not defined there). One table lookup: the
    /// loader decodes every relocation's kind with it.
    #[inline]
    pub const fn from_wire(dialect: Dialect, wire: u8) -> Option<Self> {
        Self::wire_table(dialect)[wire as usize]
    }

    /// [`RelocKind::from_wire`] of every wire byte of `dialect`, for loops that decode many.
    #[inline]
    pub const fn wire_table(dialect: Dialect) -> &'static [Option<Self>; 256] {
        match dialect {
            Dialect::S128 => &WIRE_KINDS[0],
            Dialect::R96 => &WIRE_KINDS[1],
            Dialect::R72 => &WIRE_KINDS[2],
        }
    }

    /// Per wire byte of `dialect`: 1 if it is a kind that needs a GOT slot
    /// ([`RelocKind::uses_got`]), else 0, for loops that count them.
    #[inline]
    pub const fn got_wire_table(dialect: Dialect) -> &'static [u8; 256] {
        match dialect {
            Dialect::S128 => &GOT_WIRE_KINDS[0],
            Dialect::R96 => &GOT_WIRE_KINDS[1],
            Dialect::R72 => &GOT_WIRE_KINDS[2],
        }
    }

    /// The definition [`RelocKind::from_wire`] tabulates.
    const fn decode_wire(dialect: Dialect, wire: u8) -> Option<Self> {
        use RelocKind::*;
        match (dialect, wire) {
            (Dialect::R96 | Dialect::R72, 0) => Some(None),
            (_, 1) => Some(Abs64),
            (_, 2) => Some(Pc32),
            (_, 3) => Some(Plt32),
            (_, 4) => Some(GotPc32),
            (Dialect::S128, 5) => Some(Abs32),
            (Dialect::R96 | Dialect::R72, 5) => Some(Aarch64Branch26),
            (Dialect::R96 | Dialect::R72, 6) => Some(Aarch64Page21),
            (Dialect::R96 | Dialect::R72, 7) => Some(Aarch64PageOffset12),
            (Dialect::R96 | Dialect::R72, 8) => Some(Aarch64GotPage21),
            (Dialect::R96 | Dialect::R72, 9) => Some(Aarch64GotPageOffset12),
            _ => Option::None,
        }
    }

    /// The branch this kind patches, if it is one (a branch to an import out of its reach goes
    /// through a stub).
    #[inline(always)]
    pub const fn branch(self) -> Option<Branch> {
        match self {
            RelocKind::Plt32 => Some(Branch::X86Rel32),
            RelocKind::Aarch64Branch26 => Some(Branch::Aarch64Imm26),
            RelocKind::None
            | RelocKind::Abs64
            | RelocKind::Pc32
            | RelocKind::GotPc32
            | RelocKind::Abs32
            | RelocKind::Aarch64Page21
            | RelocKind::Aarch64PageOffset12
            | RelocKind::Aarch64GotPage21
            | RelocKind::Aarch64GotPageOffset12 => None,
        }
    }

    /// Every kind.
    pub const ALL: [RelocKind; 11] = [
        RelocKind::None,
        RelocKind::Abs64,
        RelocKind::Pc32,
        RelocKind::Plt32,
        RelocKind::GotPc32,
        RelocKind::Abs32,
        RelocKind::Aarch64Branch26,
        RelocKind::Aarch64Page21,
        RelocKind::Aarch64PageOffset12,
        RelocKind::Aarch64GotPage21,
        RelocKind::Aarch64GotPageOffset12,
    ];

    /// The wire byte for this kind in `dialect` (`None`: the dialect cannot express it).
    pub const fn to_wire(self, dialect: Dialect) -> Option<u8> {
        use RelocKind::*;
        let is_s128 = matches!(dialect, Dialect::S128);
        match self {
            None if !is_s128 => Some(0),
            Abs64 => Some(1),
            Pc32 => Some(2),
            Plt32 => Some(3),
            GotPc32 => Some(4),
            Abs32 if is_s128 => Some(5),
            Aarch64Branch26 if !is_s128 => Some(5),
            Aarch64Page21 if !is_s128 => Some(6),
            Aarch64PageOffset12 if !is_s128 => Some(7),
            Aarch64GotPage21 if !is_s128 => Some(8),
            Aarch64GotPageOffset12 if !is_s128 => Some(9),
            _ => Option::None,
        }
    }

    /// Bytes of code the relocation patches.
    pub const fn width(self) -> u64 {
        self.site_len() as u64
    }

    /// [`RelocKind::width`] as a length in memory.
    pub const fn site_len(self) -> usize {
        match self {
            RelocKind::None => 0,
            RelocKind::Abs64 => 8,
            RelocKind::Pc32
            | RelocKind::Plt32
            | RelocKind::GotPc32
            | RelocKind::Abs32
            | RelocKind::Aarch64Branch26
            | RelocKind::Aarch64Page21
            | RelocKind::Aarch64PageOffset12
            | RelocKind::Aarch64GotPage21
            | RelocKind::Aarch64GotPageOffset12 => 4,
        }
    }

    /// Whether the kind may patch the data image (a data relocation section's entries): kinds
    /// that compute an address or a distance into plain bytes, not those that patch
    /// instructions or need a GOT slot or a stub.
    pub const fn applies_to_data(self) -> bool {
        matches!(self, RelocKind::None | RelocKind::Abs64 | RelocKind::Pc32 | RelocKind::Abs32)
    }

    /// Whether the relocation refers to its symbol's GOT slot (which the loader provides).
    pub const fn uses_got(self) -> bool {
        matches!(self, RelocKind::GotPc32 | RelocKind::Aarch64GotPage21 | RelocKind::Aarch64GotPageOffset12)
    }

    /// The name used in reports and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            RelocKind::None => "none",
            RelocKind::Abs64 => "abs64",
            RelocKind::Pc32 => "pc32",
            RelocKind::Plt32 => "plt32",
            RelocKind::GotPc32 => "got_pc32",
            RelocKind::Abs32 => "abs32",
            RelocKind::Aarch64Branch26 => "aarch64_branch26",
            RelocKind::Aarch64Page21 => "aarch64_page21",
            RelocKind::Aarch64PageOffset12 => "aarch64_page_offset12",
            RelocKind::Aarch64GotPage21 => "aarch64_got_page21",
            RelocKind::Aarch64GotPageOffset12 => "aarch64_got_page_offset12",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_five_depends_on_the_dialect() {
        assert_eq!(RelocKind::from_wire(Dialect::S128, 5), Some(RelocKind::Abs32));
        assert_eq!(RelocKind::from_wire(Dialect::R96, 5), Some(RelocKind::Aarch64Branch26));
        assert_eq!(RelocKind::from_wire(Dialect::S128, 0), None);
        assert_eq!(RelocKind::from_wire(Dialect::R72, 0), Some(RelocKind::None));
        assert_eq!(RelocKind::from_wire(Dialect::S128, 6), None);
        assert_eq!(RelocKind::from_wire(Dialect::R96, 10), None);
    }

    #[test]
    fn relocation_kinds_round_trip_through_the_wire() {
        for d in Dialect::ALL {
            for wire in 0..=255u8 {
                if let Some(kind) = RelocKind::from_wire(d, wire) {
                    assert_eq!(kind.to_wire(d), Some(wire), "{d} {wire}");
                }
            }
        }
    }
}
