//! What `smf pack` knows of ELF relocatable objects: a symbol's binding and whether it is an
//! indirect function, which sections it drops (and which of
//! those every object has), which hold read-only data, the SMF kind of each x86-64 relocation
//! type it takes, why it refuses the others ([`Refused`]), the names of the types for its
//! errors, and what makes an object's sections unfit before any is placed
//! ([`section_problems`]: alignments, reserved names).

use object::{elf, Object, ObjectSection, ObjectSymbol, SectionKind};
use smf_format::{Binding, RelocKind};

use super::{PackError, Site};

/// The binding of ELF symbol `symbol`: weak, global, or local.
pub(crate) fn binding_of(symbol: &object::Symbol<'_, '_>) -> Binding {
    if symbol.is_weak() {
        Binding::Weak
    } else if symbol.is_global() {
        Binding::Global
    } else {
        Binding::Local
    }
}

/// Whether `symbol` is an indirect function (`STT_GNU_IFUNC`).
pub(crate) fn is_indirect(symbol: &object::Symbol<'_, '_>) -> bool {
    matches!(symbol.flags(), object::SymbolFlags::Elf { st_info, .. }
        if st_info.st_type() == object::elf::STT_GNU_IFUNC)
}

/// Why a section named `name` is dropped, if it is: nothing of it is needed to run the code.
pub(crate) fn is_dropped(name: &str) -> Option<&'static str> {
    match name {
        n if n.starts_with(".eh_frame") => Some("unwind tables"),
        n if n.starts_with(".note") => Some("notes"),
        n if n.starts_with(".comment") => Some("compiler identification"),
        n if n.starts_with(".debug") => Some("debug info"),
        n if n.starts_with(".llvm_addrsig") || n.starts_with(".llvm.") => Some("linker hints"),
        // -ffat-lto-objects: the machine code beside it is what is packed.
        n if n.starts_with(".gnu.lto_") || n.starts_with(".gnu.debuglto_") => {
            Some("link-time optimization's intermediate code")
        }
        ".group" => Some("section groups"),
        _ => None,
    }
}

/// Whether dropping section `name` is routine: every compiled object has one (unwind tables,
/// notes, compiler identification, linker hints, section groups, a fat LTO object's
/// intermediate code); debug info is not.
pub(crate) fn is_routine(name: &str) -> bool {
    is_dropped(name).is_some() && !name.starts_with(".debug")
}

/// Whether a section named `name` is read-only once relocated: `.data.rel.ro*`, which ELF
/// objects mark writable only so that the dynamic linker can relocate it.
pub(crate) fn is_relro_name(name: &str) -> bool {
    name == ".data.rel.ro" || name.starts_with(".data.rel.ro.")
}

/// Whether sections of `kind` hold read-only data.
pub(crate) fn is_read_only_data(kind: SectionKind) -> bool {
    matches!(kind, SectionKind::ReadOnlyData | SectionKind::ReadOnlyString | SectionKind::ReadOnlyDataWithRel)
}

/// The name of x86-64 ELF relocation type `r_type` (the psABI's numbering, 0 to 42).
pub(crate) fn relocation_name(r_type: elf::RelocationType) -> &'static str {
    const NAMES: [&str; 43] = [
        "R_X86_64_NONE",
        "R_X86_64_64",
        "R_X86_64_PC32",
        "R_X86_64_GOT32",
        "R_X86_64_PLT32",
        "R_X86_64_COPY",
        "R_X86_64_GLOB_DAT",
        "R_X86_64_JUMP_SLOT",
        "R_X86_64_RELATIVE",
        "R_X86_64_GOTPCREL",
        "R_X86_64_32",
        "R_X86_64_32S",
        "R_X86_64_16",
        "R_X86_64_PC16",
        "R_X86_64_8",
        "R_X86_64_PC8",
        "R_X86_64_DTPMOD64",
        "R_X86_64_DTPOFF64",
        "R_X86_64_TPOFF64",
        "R_X86_64_TLSGD",
        "R_X86_64_TLSLD",
        "R_X86_64_DTPOFF32",
        "R_X86_64_GOTTPOFF",
        "R_X86_64_TPOFF32",
        "R_X86_64_PC64",
        "R_X86_64_GOTOFF64",
        "R_X86_64_GOTPC32",
        "R_X86_64_GOT64",
        "R_X86_64_GOTPCREL64",
        "R_X86_64_GOTPC64",
        "R_X86_64_GOTPLT64",
        "R_X86_64_PLTOFF64",
        "R_X86_64_SIZE32",
        "R_X86_64_SIZE64",
        "R_X86_64_GOTPC32_TLSDESC",
        "R_X86_64_TLSDESC_CALL",
        "R_X86_64_TLSDESC",
        "R_X86_64_IRELATIVE",
        "R_X86_64_RELATIVE64",
        "reserved",
        "reserved",
        "R_X86_64_GOTPCRELX",
        "R_X86_64_REX_GOTPCRELX",
    ];
    usize::try_from(r_type.0).ok().and_then(|i| NAMES.get(i)).copied().unwrap_or("unknown")
}

/// The SMF kind of ELF relocation type `r_type`, if SMF has one.
pub(crate) fn relocation_kind(r_type: elf::RelocationType) -> Option<RelocKind> {
    Some(match r_type {
        elf::R_X86_64_64 => RelocKind::Abs64,
        elf::R_X86_64_PC32 => RelocKind::Pc32,
        elf::R_X86_64_PLT32 => RelocKind::Plt32,
        elf::R_X86_64_GOTPCREL | elf::R_X86_64_GOTPCRELX | elf::R_X86_64_REX_GOTPCRELX => RelocKind::GotPc32,
        _ => return None,
    })
}

/// Whether relocation type `r_type` reaches thread-local storage.
fn is_thread_local(r_type: elf::RelocationType) -> bool {
    matches!(
        r_type,
        elf::R_X86_64_DTPMOD64
            | elf::R_X86_64_DTPOFF64
            | elf::R_X86_64_TPOFF64
            | elf::R_X86_64_TLSGD
            | elf::R_X86_64_TLSLD
            | elf::R_X86_64_DTPOFF32
            | elf::R_X86_64_GOTTPOFF
            | elf::R_X86_64_TPOFF32
            | elf::R_X86_64_GOTPC32_TLSDESC
            | elf::R_X86_64_TLSDESC_CALL
            | elf::R_X86_64_TLSDESC
    )
}

/// Why a relocation cannot be carried, found before its site is named ([`Refused::at`] makes
/// the [`PackError`]).
#[derive(Debug)]
pub(crate) enum Refused {
    /// Not an ELF relocation.
    NotElf,
    /// A type SMF has no kind for, referring to `target`.
    Type { r_type: elf::RelocationType, target: String },
    /// A kind that patches instructions, in data.
    DataKind(RelocKind),
    /// Against a symbol neither carried nor a section's.
    Symbol,
    /// Against an absolute value.
    AbsoluteTarget,
    /// Patching bytes past the end of its section.
    OutsideSection,
    /// Anything else (an unloaded section, an unreadable symbol).
    Other(PackError),
    /// Against a symbol already reported as a problem (a common symbol): nothing more to say.
    Reported,
}

impl Refused {
    /// The problem, at `at` (`None` for [`Refused::Reported`]). An absolute 32-bit address cannot reach a module mapped above
    /// 4 GiB, which is where modules load: refused rather than packed into a module that
    /// verifies and then never loads.
    pub(crate) fn at(self, at: Site) -> Option<PackError> {
        Some(match self {
            Refused::NotElf => PackError::NotElfRelocation(at),
            Refused::OutsideSection => PackError::RelocationOutsideSection(at),
            Refused::Type { r_type: r @ (elf::R_X86_64_32 | elf::R_X86_64_32S), target } => {
                PackError::Absolute32 { at, target, r_type: r.0 }
            }
            Refused::Type { r_type, target } if is_thread_local(r_type) => {
                PackError::ThreadLocalAccess { at, variable: target, r_type: r_type.0 }
            }
            Refused::Type { r_type, .. } => PackError::UnsupportedRelocation { at, r_type: r_type.0 },
            Refused::DataKind(kind) => PackError::DataRelocationKind { at, kind },
            Refused::Symbol => PackError::UnsupportedSymbol(at),
            Refused::AbsoluteTarget => PackError::AbsoluteTarget(at),
            Refused::Other(error) => error,
            Refused::Reported => return None,
        })
    }
}

impl From<PackError> for Refused {
    fn from(error: PackError) -> Self {
        Refused::Other(error)
    }
}

impl From<object::Error> for Refused {
    fn from(error: object::Error) -> Self {
        Refused::Other(PackError::Elf(error))
    }
}

/// What is wrong with `file`'s loaded sections before any is placed: an alignment that is no
/// power of two or more than a module can ask for ([`smf_format::module::MAX_ALIGNMENT`]; the
/// phases after use [`align`]), or a name SMF reserves (`note.sdn`, which readers take for
/// instantiation metadata).
pub(crate) fn section_problems(file: &object::File<'_>) -> Vec<PackError> {
    let loaded = |s: &object::Section<'_, '_>| matches!(s.flags(), object::SectionFlags::Elf { sh_flags, .. } if sh_flags.0 & elf::SHF_ALLOC.0 != 0);
    let mut problems = Vec::new();
    for section in file.sections().filter(loaded) {
        let name = || section.name().unwrap_or("?").to_owned();
        if !smf_format::module::alignment_ok(section.align()) {
            problems.push(PackError::BadAlignment { section: name(), align: section.align() });
        }
        if section.name_bytes().is_ok_and(|n| n == smf_format::module::NOTE_SDN_SECTION) {
            problems.push(PackError::ReservedSectionName { section: name() });
        }
    }
    problems
}

/// `section`'s alignment, at least 1; 1 for one [`section_problems`] reports (packing fails then,
/// but the phases still run to find every problem, without overflowing).
pub(crate) fn align(section: &object::Section<'_, '_>) -> u64 {
    match section.align() {
        align if smf_format::module::alignment_ok(align) => align.max(1),
        _ => 1,
    }
}

/// The first `GROUP` or `INPUT` statement of `bytes` when they are a linker script, as a
/// `libNAME.a` or `libNAME.so` found by `-l` may be (glibc's `libm.a`: `GROUP ( libm-2.36.a
/// libmvec.a )`), its whitespace collapsed (at most 200 characters); `None` for other bytes.
pub(super) fn linker_script(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes.get(..bytes.len().min(4096))?).ok()?;
    let start = ["GROUP", "INPUT"].iter().filter_map(|word| text.find(word)).min()?;
    let statement = &text[start..];
    // Up to the parenthesis that closes the statement's.
    let mut depth = 0usize;
    let mut end = statement.len();
    for (i, c) in statement.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth <= 1 => {
                end = i + 1;
                break;
            }
            ')' => depth -= 1,
            _ => {}
        }
    }
    let collapsed = statement[..end].split_whitespace().collect::<Vec<_>>().join(" ");
    Some(collapsed.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linker_script_is_told_by_its_first_statement() {
        let libm = b"/* GNU ld script\n*/\nOUTPUT_FORMAT(elf64-x86-64)\nGROUP ( /usr/lib/libm-2.36.a\n  /usr/lib/libmvec.a )\n";
        assert_eq!(linker_script(libm).as_deref(), Some("GROUP ( /usr/lib/libm-2.36.a /usr/lib/libmvec.a )"));
        let libc = b"GROUP ( /lib/libc.so.6 /usr/lib/libc_nonshared.a  AS_NEEDED ( /lib/ld.so.2 ) )";
        assert_eq!(
            linker_script(libc).as_deref(),
            Some("GROUP ( /lib/libc.so.6 /usr/lib/libc_nonshared.a AS_NEEDED ( /lib/ld.so.2 ) )")
        );
        assert_eq!(linker_script(b"\x7fELF\x02\x01"), None);
        assert_eq!(linker_script(b"definitely not ELF"), None);
    }

    #[test]
    fn relocation_types_are_named_as_the_psabi_numbers_them() {
        let known = [
            (elf::R_X86_64_NONE, "R_X86_64_NONE"),
            (elf::R_X86_64_PLT32, "R_X86_64_PLT32"),
            (elf::R_X86_64_GOTPCREL, "R_X86_64_GOTPCREL"),
            (elf::R_X86_64_TPOFF32, "R_X86_64_TPOFF32"),
            (elf::R_X86_64_GOTPC64, "R_X86_64_GOTPC64"),
            (elf::R_X86_64_SIZE64, "R_X86_64_SIZE64"),
            (elf::R_X86_64_TLSDESC, "R_X86_64_TLSDESC"),
            (elf::R_X86_64_RELATIVE64, "R_X86_64_RELATIVE64"),
            (elf::R_X86_64_REX_GOTPCRELX, "R_X86_64_REX_GOTPCRELX"),
        ];
        for (r_type, name) in known {
            assert_eq!(relocation_name(r_type), name);
        }
        assert_eq!(relocation_name(elf::RelocationType(43)), "unknown");
    }
}
