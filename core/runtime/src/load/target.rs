//! Where a load's relocations point: the image's regions ([`Region`]), whose addresses are
//! known once the image is placed ([`RegionBases`]), and each symbol's [`Target`], which the
//! link stage locates in a region and the relocate stage reads. Shared by the two stages, and
//! owned by neither.

use core::num::NonZeroUsize;

use super::Overflow;

/// A region of the image, whose address is known once the image is placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Region {
    /// The code.
    Code,
    /// The read-only data region.
    ReadOnly,
    /// The writable data region.
    Writable,
}

/// Where each region of a placed image starts.
#[derive(Clone, Copy, Debug)]
pub(super) struct RegionBases {
    /// The code's address.
    pub(super) code: usize,
    /// The read-only data region's address.
    pub(super) read_only: usize,
    /// The writable data region's address.
    pub(super) writable: usize,
}

impl Region {
    /// What did not fit when an address in this region overflows.
    pub(super) const fn address_overflow(self) -> Overflow {
        match self {
            Region::Code => Overflow::CodeAddress,
            Region::ReadOnly => Overflow::ReadOnlyAddress,
            Region::Writable => Overflow::WritableAddress,
        }
    }
}

impl RegionBases {
    /// The address `offset` bytes into `region`; `None` if it overflows (which a validated
    /// module, placed in memory it occupies, rules out).
    #[inline(always)]
    pub(super) fn address(&self, region: Region, offset: usize) -> Option<usize> {
        let base = match region {
            Region::Code => self.code,
            Region::ReadOnly => self.read_only,
            Region::Writable => self.writable,
        };
        base.checked_add(offset)
    }
}

/// Where relocations against one symbol point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Target {
    /// The symbol's address (0 for an unresolved weak import and for symbols without one); an
    /// own symbol's offset in its region while it is [`Whose::Unplaced`].
    pub(super) address: usize,
    /// Its GOT slot's address, once a relocation asked for one.
    pub(super) got: Option<NonZeroUsize>,
    /// Its branch stub's address, once one was written (imports only).
    pub(super) stub: Option<NonZeroUsize>,
    /// Whose symbol it is, which says how relocations may reach it.
    pub(super) whose: Whose,
}

/// Whose symbol a [`Target`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Whose {
    /// The module's own, before the image is placed: the address is an offset in this region.
    Unplaced(Region),
    /// The module's own, placed: branches reach it directly (the image is within reach).
    Own,
    /// An import: a branch to it goes through a stub when it is out of the branch's reach.
    Import,
    /// Nobody's: the symbol has no address (a type, a trait, a template).
    Nothing,
}

impl Target {
    /// One of the module's own symbols, `offset` bytes into `region`.
    pub(super) const fn unplaced(region: Region, offset: usize) -> Self {
        Target { address: offset, got: None, stub: None, whose: Whose::Unplaced(region) }
    }

    /// An import, resolved to `address`.
    pub(super) const fn import(address: usize) -> Self {
        Target { address, got: None, stub: None, whose: Whose::Import }
    }

    /// A symbol without an address.
    pub(super) const NOTHING: Target = Target { address: 0, got: None, stub: None, whose: Whose::Nothing };

    /// The address relocations against it use; `None` for a symbol without one, and for an own
    /// symbol not yet placed (which the stages' order rules out).
    #[inline(always)]
    pub(super) fn address(&self) -> Option<usize> {
        match self.whose {
            Whose::Own | Whose::Import => Some(self.address),
            Whose::Unplaced(_) | Whose::Nothing => None,
        }
    }
}
