//! Dialect-independent meanings of the numbered fields: section types, symbol kinds and
//! bindings, and relocation kinds, with the per-dialect mapping from wire values; the section,
//! module and symbol flags ([`SectionFlags`], [`ModuleFlags`], [`SymbolFlags`]).
//!
//! The dialects number symbol types differently (S128 is shifted by one and has no "none"), and
//! relocation wire 5 is an aarch64 branch in R96/R72 but an absolute 32-bit value in S128, so
//! every conversion takes the [`Dialect`].

mod reloc;

pub use reloc::{Branch, RelocKind};

use crate::Dialect;

bitflags::bitflags! {
    /// A section's flags (the section entry's `flags` field). Bits no flag names are kept
    /// ([`SectionFlags::from_bits_retain`]): reports print the field as stored.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct SectionFlags: u32 {
        /// Readable.
        const READ = 0x1;
        /// Writable.
        const WRITE = 0x2;
        /// Executable.
        const EXEC = 0x4;
        /// A relocation section (type 5) whose entries patch the data image, not the code
        /// (our extension: `docs/format.md`, "Data relocations").
        const RELOCATES_DATA = 0x100;
        /// A rodata section that is an array of constructors, run in order after the module is
        /// relocated and sealed (our extension: `docs/format.md`, "Constructors and
        /// destructors").
        const CONSTRUCTORS = 0x200;
        /// A rodata section that is an array of destructors, run in reverse order when the
        /// module is released (our extension, as [`SectionFlags::CONSTRUCTORS`]).
        const DESTRUCTORS = 0x400;
        /// A rodata section that holds unwind tables: call frame information in the `.eh_frame`
        /// format, registered with the process's unwinder while the module is loaded (our
        /// extension: `docs/format.md`, "Unwind tables").
        const UNWIND = 0x800;
        /// A code, data or rodata section whose payload is a compressed frame (our extension:
        /// `docs/format.md`, "Compression"; the header's `compression` byte names the method).
        const COMPRESSED = 0x1000;
    }
}

/// Which rule of constructor and destructor arrays a section breaks (`docs/format.md`,
/// "Constructors and destructors").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallArrayProblem {
    /// Flagged both constructors and destructors.
    BothKinds,
    /// Not a rodata section (the array is read-only once relocated).
    NotReadOnlyData,
    /// Its size is not a whole number of 8-byte entries, or its virtual size differs from it.
    Size,
    /// Its alignment is under 8.
    Alignment,
    /// The module lacks the extension marker, without which older loaders would load the module
    /// and never run its constructors.
    NoMarker,
}

impl CallArrayProblem {
    pub(crate) const fn describe(self) -> &'static str {
        match self {
            CallArrayProblem::BothKinds => "cannot be both",
            CallArrayProblem::NotReadOnlyData => "must be a rodata section",
            CallArrayProblem::Size => "must be a whole number of 8-byte entries (virtual size = size)",
            CallArrayProblem::Alignment => "must be aligned to 8 bytes at least",
            CallArrayProblem::NoMarker => {
                "needs the extension marker entry that makes older loaders refuse the module"
            }
        }
    }
}

/// What a call array section holds: the functions a module runs when it is loaded, or when it
/// is released (ELF's `.init_array` and `.fini_array`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallArray {
    /// Run in order, after relocation and sealing, before the load returns.
    Constructors,
    /// Run in reverse order when the module is released, before its memory is unmapped.
    Destructors,
}

impl CallArray {
    /// The call array a section with `flags` is, if any; an error if it claims to be both.
    pub const fn of_flags(flags: SectionFlags) -> Result<Option<CallArray>, CallArrayProblem> {
        match (flags.contains(SectionFlags::CONSTRUCTORS), flags.contains(SectionFlags::DESTRUCTORS)) {
            (false, false) => Ok(None),
            (true, false) => Ok(Some(CallArray::Constructors)),
            (false, true) => Ok(Some(CallArray::Destructors)),
            (true, true) => Err(CallArrayProblem::BothKinds),
        }
    }

    /// The section flag that marks it.
    pub const fn flag(self) -> SectionFlags {
        match self {
            CallArray::Constructors => SectionFlags::CONSTRUCTORS,
            CallArray::Destructors => SectionFlags::DESTRUCTORS,
        }
    }

    /// "constructors" or "destructors".
    pub const fn name(self) -> &'static str {
        match self {
            CallArray::Constructors => "constructors",
            CallArray::Destructors => "destructors",
        }
    }
}

/// Bytes of one entry of a call array: a 64-bit address (SMF modules are for 64-bit machines).
pub const CALL_ARRAY_ENTRY: usize = 8;

bitflags::bitflags! {
    /// A module's flags (the header's `flags` field). Bits no flag names are kept
    /// ([`ModuleFlags::from_bits_retain`]): reports print the field as stored.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct ModuleFlags: u32 {
        /// Has an entry point.
        const EXECUTABLE = 0x01;
        /// Reloadable.
        const RELOADABLE = 0x02;
        /// Carries debug info.
        const DEBUG_INFO = 0x04;
        /// Position-independent.
        const PIC = 0x08;
        /// Has a stub in front of the SMF data.
        const HAS_STUB = 0x10;
        /// Has note.sdn (Simple writers only).
        const HAS_NOTE_SDN = 0x20;
        /// Aspect pack (Simple writers only).
        const ASPECT_PACK = 0x40;
        /// Our extension: the writer resolved references between the code and the read-only
        /// data for the linked layout ([`crate::module::linked`]), which a loader must keep.
        const LINKED_READ_ONLY = 0x0100_0000;
        /// Our extension: the writer resolved the code's calls and GOT loads of imports to
        /// stubs and GOT slots the linked layout pins, one of each per import
        /// ([`crate::module::linked`]), which a loader must fill.
        const LINKED_IMPORTS = 0x0200_0000;
    }
}

impl ModuleFlags {
    /// Either flag of a module linked for the linked layout
    /// ([`crate::module::linked`]): a loader must place it as that layout says.
    pub const LINKED: ModuleFlags = ModuleFlags::LINKED_READ_ONLY.union(ModuleFlags::LINKED_IMPORTS);

    /// The name of one flag in reports and JSON ("executable", "debug-info", ...); `None` for
    /// anything but a single named flag.
    pub const fn name(self) -> Option<&'static str> {
        match self {
            ModuleFlags::EXECUTABLE => Some("executable"),
            ModuleFlags::RELOADABLE => Some("reloadable"),
            ModuleFlags::DEBUG_INFO => Some("debug-info"),
            ModuleFlags::PIC => Some("pic"),
            ModuleFlags::HAS_STUB => Some("has-stub"),
            ModuleFlags::HAS_NOTE_SDN => Some("has-note-sdn"),
            ModuleFlags::ASPECT_PACK => Some("aspect-pack"),
            ModuleFlags::LINKED_READ_ONLY => Some("linked-read-only"),
            ModuleFlags::LINKED_IMPORTS => Some("linked-imports"),
            _ => None,
        }
    }

    /// The names of the flags set, in bit order (unknown bits have none).
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        self.iter().filter_map(ModuleFlags::name)
    }
}

/// Architecture byte: x86-64.
pub const ARCH_X86_64: u8 = 0;
/// Architecture byte: aarch64.
pub const ARCH_AARCH64: u8 = 1;

/// The name of an architecture byte ("unknown" past the ones the format defines).
pub const fn arch_name(arch: u8) -> &'static str {
    match arch {
        ARCH_X86_64 => "x86_64",
        ARCH_AARCH64 => "aarch64",
        2 => "x86",
        3 => "arm",
        4 => "riscv64",
        5 => "riscv32",
        6 => "wasm32",
        7 => "wasm64",
        _ => "unknown",
    }
}

/// The name of a platform byte ("unknown" past the ones the format defines).
pub const fn platform_name(platform: u8) -> &'static str {
    match platform {
        0 => "any",
        1 => "Linux",
        2 => "Windows",
        3 => "macOS",
        4 => "FreeBSD",
        5 => "bare metal",
        _ => "unknown",
    }
}

bitflags::bitflags! {
    /// A symbol's flags (the symbol entry's `flags` byte). Bits no flag names (writers use
    /// others, e.g. for the layout phase) are kept ([`SymbolFlags::from_bits_retain`]).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct SymbolFlags: u8 {
        /// The symbol is a generic template (`template_offset` is meaningful).
        const TEMPLATE = 0x10;
        /// The symbol is a specialization of a template.
        const SPECIALIZATION = 0x20;
    }
}

/// What a section holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SectionType {
    /// 1: machine code.
    Code,
    /// 2: initialized writable data.
    Data,
    /// 3: read-only data.
    RoData,
    /// 4: zero-initialized data.
    Bss,
    /// 5: relocation entries.
    Relocations,
    /// 6: symbol table (writers do not emit it as a section).
    SymbolTable,
    /// 7: string table, or a "note" section in S128 files.
    StringTable,
    /// 8: debug info.
    Debug,
    /// 9: type info.
    TypeInfo,
    /// 10: version.
    Version,
    /// 11: source map.
    SourceMap,
    /// 12: template code.
    TemplateCode,
    /// 13: template meta (and the note.sdn section).
    TemplateMeta,
    /// 14: driver manifest.
    DriverManifest,
    /// 15: launch meta.
    LaunchMeta,
    /// 16: aspect-pack directory.
    AspectPackDirectory,
    /// Any other value: skipped by the loader.
    Unknown(u8),
}

impl SectionType {
    /// Meaning of the wire byte.
    pub const fn from_wire(value: u8) -> Self {
        use SectionType::*;
        match value {
            1 => Code,
            2 => Data,
            3 => RoData,
            4 => Bss,
            5 => Relocations,
            6 => SymbolTable,
            7 => StringTable,
            8 => Debug,
            9 => TypeInfo,
            10 => Version,
            11 => SourceMap,
            12 => TemplateCode,
            13 => TemplateMeta,
            14 => DriverManifest,
            15 => LaunchMeta,
            16 => AspectPackDirectory,
            other => Unknown(other),
        }
    }

    /// The wire byte.
    pub const fn to_wire(self) -> u8 {
        use SectionType::*;
        match self {
            Code => 1,
            Data => 2,
            RoData => 3,
            Bss => 4,
            Relocations => 5,
            SymbolTable => 6,
            StringTable => 7,
            Debug => 8,
            TypeInfo => 9,
            Version => 10,
            SourceMap => 11,
            TemplateCode => 12,
            TemplateMeta => 13,
            DriverManifest => 14,
            LaunchMeta => 15,
            AspectPackDirectory => 16,
            Unknown(other) => other,
        }
    }

    /// The name used in reports and JSON ("unknown" for [`SectionType::Unknown`]).
    pub const fn name(self) -> &'static str {
        use SectionType::*;
        match self {
            Code => "code",
            Data => "data",
            RoData => "rodata",
            Bss => "bss",
            Relocations => "relocations",
            SymbolTable => "symtab",
            StringTable => "strtab",
            Debug => "debug",
            TypeInfo => "type-info",
            Version => "version",
            SourceMap => "source-map",
            TemplateCode => "template-code",
            TemplateMeta => "template-meta",
            DriverManifest => "driver-manifest",
            LaunchMeta => "launch-meta",
            AspectPackDirectory => "aspect-dir",
            Unknown(_) => "unknown",
        }
    }

    /// Whether the section becomes part of the data image (data, rodata, bss).
    pub const fn is_data(self) -> bool {
        matches!(self, SectionType::Data | SectionType::RoData | SectionType::Bss)
    }
}

/// What a symbol names. Declared in the R96/R72 wire order, so that decoding a wire byte is a
/// range check and [`SymbolKind::is_addressable`] a bit test (both run for every symbol of
/// every load).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SymbolKind {
    /// An undefined symbol, resolved from another module.
    Import,
    /// A function in this module's code.
    Function,
    /// A data object.
    Data,
    /// A type.
    Type,
    /// A trait.
    Trait,
    /// An actor.
    Actor,
    /// A constant.
    Constant,
}

impl SymbolKind {
    /// The kind of a symbol entry: its declared kind, except that in a dialect that marks
    /// imports by value (S128) a non-local, non-template symbol with value 0 and size 0 is an
    /// import. The one home of that rule.
    #[inline(always)]
    pub const fn of_entry(
        dialect: Dialect,
        declared: SymbolKind,
        binding: Binding,
        value: u64,
        size: u64,
        is_template: bool,
    ) -> SymbolKind {
        if Self::import_by_value(dialect, matches!(binding, Binding::Local), value, size, is_template) {
            SymbolKind::Import
        } else {
            declared
        }
    }

    /// Whether the dialect's import-by-value rule (see [`SymbolKind::of_entry`]) makes a symbol
    /// with these fields an import, whatever its declared type.
    #[inline(always)]
    pub const fn import_by_value(
        dialect: Dialect,
        local: bool,
        value: u64,
        size: u64,
        is_template: bool,
    ) -> bool {
        dialect.marks_imports_by_value() && value == 0 && size == 0 && !local && !is_template
    }

    /// The name used in reports and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            SymbolKind::Function => "function",
            SymbolKind::Data => "data",
            SymbolKind::Type => "type",
            SymbolKind::Trait => "trait",
            SymbolKind::Actor => "actor",
            SymbolKind::Constant => "constant",
            SymbolKind::Import => "import",
        }
    }

    /// The declared kind for a wire byte, before the S128 import rule is applied
    /// (`None`: unknown). In R96/R72 type 0 is an import; S128 has no "none" type.
    pub const fn from_wire(dialect: Dialect, value: u8) -> Option<Self> {
        use SymbolKind::*;
        let shifted = match dialect {
            Dialect::S128 => value.checked_add(1),
            Dialect::R96 | Dialect::R72 => Some(value),
        };
        match shifted {
            Some(0) => Some(Import),
            Some(1) => Some(Function),
            Some(2) => Some(Data),
            Some(3) => Some(Type),
            Some(4) => Some(Trait),
            Some(5) => Some(Actor),
            Some(6) => Some(Constant),
            _ => None,
        }
    }

    /// The wire byte for this kind. S128 has no import type: imports are written as functions
    /// with value 0 and size 0, which is how S128 readers recognise them.
    pub const fn to_wire(self, dialect: Dialect) -> u8 {
        let r: u8 = match self {
            SymbolKind::Import => 0,
            SymbolKind::Function => 1,
            SymbolKind::Data => 2,
            SymbolKind::Type => 3,
            SymbolKind::Trait => 4,
            SymbolKind::Actor => 5,
            SymbolKind::Constant => 6,
        };
        match dialect {
            Dialect::S128 => r.saturating_sub(1),
            Dialect::R96 | Dialect::R72 => r,
        }
    }

    /// Whether the symbol has an address in this module (code or data).
    pub const fn is_addressable(self) -> bool {
        matches!(self, SymbolKind::Function | SymbolKind::Data | SymbolKind::Constant)
    }
}

/// Symbol binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binding {
    /// Visible only inside the module: never exported.
    Local,
    /// Exported.
    Global,
    /// Exported, may be overridden.
    Weak,
}

impl Binding {
    /// Meaning of the wire byte.
    pub const fn from_wire(value: u8) -> Option<Self> {
        match value {
            0 => Some(Binding::Local),
            1 => Some(Binding::Global),
            2 => Some(Binding::Weak),
            _ => None,
        }
    }

    /// The wire byte.
    pub const fn to_wire(self) -> u8 {
        match self {
            Binding::Local => 0,
            Binding::Global => 1,
            Binding::Weak => 2,
        }
    }

    /// The name used in reports and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Binding::Local => "local",
            Binding::Global => "global",
            Binding::Weak => "weak",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_types_are_shifted_in_s128() {
        assert_eq!(SymbolKind::from_wire(Dialect::S128, 0), Some(SymbolKind::Function));
        assert_eq!(SymbolKind::from_wire(Dialect::R96, 0), Some(SymbolKind::Import));
        assert_eq!(SymbolKind::from_wire(Dialect::R96, 1), Some(SymbolKind::Function));
        assert_eq!(SymbolKind::from_wire(Dialect::S128, 5), Some(SymbolKind::Constant));
        assert_eq!(SymbolKind::from_wire(Dialect::S128, 6), None);
        assert_eq!(SymbolKind::from_wire(Dialect::R72, 7), None);
        assert_eq!(SymbolKind::from_wire(Dialect::S128, 255), None);
        for d in Dialect::ALL {
            for k in [SymbolKind::Function, SymbolKind::Data, SymbolKind::Constant] {
                assert_eq!(SymbolKind::from_wire(d, k.to_wire(d)), Some(k));
            }
        }
    }

    #[test]
    fn module_flags_have_the_report_names() {
        let expected = [
            "executable",
            "reloadable",
            "debug-info",
            "pic",
            "has-stub",
            "has-note-sdn",
            "aspect-pack",
            "linked-read-only",
            "linked-imports",
        ];
        assert!(ModuleFlags::all().names().eq(expected));
        let some = ModuleFlags::from_bits_retain(0x8000_0021);
        assert!(some.names().eq(["executable", "has-note-sdn"]));
        assert_eq!(some.bits(), 0x8000_0021, "unknown bits are kept");
        assert_eq!((ModuleFlags::EXECUTABLE | ModuleFlags::PIC).name(), None);
        assert_eq!(ModuleFlags::empty().names().count(), 0);
    }

    #[test]
    fn flags_keep_their_wire_bits() {
        assert_eq!(SectionFlags::all().bits(), 0x1f07);
        assert_eq!(ModuleFlags::all().bits(), 0x0300_007f);
        assert_eq!(SymbolFlags::all().bits(), 0x30);
        assert_eq!(SymbolFlags::from_bits_retain(0x91).bits(), 0x91);
        assert_eq!(
            CallArray::of_flags(SectionFlags::READ | SectionFlags::CONSTRUCTORS),
            Ok(Some(CallArray::Constructors))
        );
    }

    #[test]
    fn section_types_round_trip() {
        for wire in 0..=255u8 {
            assert_eq!(SectionType::from_wire(wire).to_wire(), wire);
        }
    }
}
