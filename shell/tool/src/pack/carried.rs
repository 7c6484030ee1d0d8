//! How an ELF section is carried into the module: in the code image or as a data section
//! ([`Carried`]), what its relocations patch ([`Patched`]), and the SMF section a data section
//! becomes ([`data_spec`]).

use object::ObjectSection;
use smf_format::write::SymbolSpec;
use smf_format::{SectionFlags, SectionType};

use super::elf::{is_read_only_data, is_relro_name};

/// Whether `section` holds data that is read-only once relocated: read-only data, and
/// `.data.rel.ro*`, which ELF objects mark writable only so that the dynamic linker can
/// relocate it.
pub(super) fn is_read_only(section: &object::Section<'_, '_>) -> bool {
    is_read_only_data(section.kind()) || section.name().is_ok_and(is_relro_name)
}

/// The SMF section an ELF data section of `kind` becomes: its bytes (or, for bss, `bss` zero
/// bytes), read-only or writable as its kind says, its alignment capped at 64 KiB.
pub(super) fn data_spec(
    kind: smf_format::SectionType,
    name: &str,
    data: &[u8],
    align: u64,
    bss: u64,
) -> smf_format::write::SectionSpec {
    let flags = match kind {
        SectionType::RoData => SectionFlags::READ,
        _ => SectionFlags::READ | SectionFlags::WRITE,
    };
    let mut spec =
        smf_format::write::SectionSpec::new(kind, name.as_bytes(), flags, data.to_vec(), align.min(1 << 16));
    if bss > 0 {
        spec.virtual_size = bss;
    }
    spec
}

/// What an ELF section's relocations patch.
#[derive(Clone, Copy)]
pub(super) enum Patched {
    /// The code image, where the section starts at `base`, `within` bytes into this SMF
    /// section.
    Code { base: u64, section: u32, within: u64 },
    /// This SMF data section, from this offset in it (a part of a merged section).
    Data { section: u32, base: u64 },
}

/// How an ELF section is carried over.
pub(super) enum Carried {
    /// In the code image at this offset, `within` bytes into this SMF section (which may hold
    /// other sections of the run, as `ld` merges `.text.*`): code, or (R72) read-only data
    /// (`data` set).
    Code { offset: u64, section: u32, within: u64, data: bool },
    /// In the SMF data section `section`, from `base` on (a part of a merged section).
    Data { section: u32, base: u64 },
}

impl Carried {
    /// A global symbol `name` of `size` bytes at `value` in the section placed so: a function
    /// in code, a data symbol of its data section, or a data symbol without a defining section
    /// (whose value is then a code offset) in read-only data packed into the code image.
    pub(super) fn symbol(&self, name: &[u8], value: u64, size: u64) -> SymbolSpec {
        match *self {
            Carried::Code { offset, data: false, .. } => {
                SymbolSpec::function(name, offset.saturating_add(value), size)
            }
            Carried::Code { offset, data: true, .. } => {
                SymbolSpec::new(name, smf_format::SymbolKind::Data, offset.saturating_add(value), size)
            }
            Carried::Data { section, base } => {
                SymbolSpec::data(name, section, base.saturating_add(value), size)
            }
        }
    }
}
