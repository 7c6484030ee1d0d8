//! [`PackError`]: why objects cannot be packed, naming the object, section, symbol or
//! relocation site at fault.

use std::fmt;

use object::elf;

use super::elf::relocation_name;

/// Where a relocation is: its section and offset, and its object when several are packed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// The object's name, when several are packed together.
    pub object: Option<String>,
    /// The section's name.
    pub section: String,
    /// The relocation's offset in the section.
    pub offset: u64,
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        write!(f, "{}+{:#x}", self.section, self.offset)
    }
}

/// Why objects cannot be packed.
#[derive(Debug)]
#[non_exhaustive]
pub enum PackError {
    /// The object is not ELF (or is malformed).
    NotElf {
        /// The object's name.
        object: String,
        /// What the ELF reader said.
        error: object::Error,
    },
    /// An ELF object that is not an x86-64 relocatable.
    NotX86Relocatable {
        /// The object's name.
        object: String,
    },
    /// Part of an object (section data, a name, a symbol) could not be read.
    Elf(object::Error),
    /// A data section in R72, whose symbols cannot address one.
    R72Data {
        /// The section's name.
        section: String,
    },
    /// A thread-local storage section.
    ThreadLocal {
        /// The section's name.
        section: String,
    },
    /// A `.preinit_array` section (only an executable can have one).
    PreinitArray {
        /// The section's name.
        section: String,
    },
    /// An entry of a constructor or destructor array that is not an `R_X86_64_64` address
    /// (no relocation: an absolute address; or another relocation type).
    CallArrayEntry {
        /// Where.
        at: Site,
        /// The entry's relocation type, if it has one.
        r_type: Option<u32>,
    },
    /// Two strong definitions of one name.
    DefinedTwice {
        /// The name.
        name: String,
        /// The object defining it first.
        first: String,
        /// The other.
        second: String,
    },
    /// A common symbol (`-fcommon`).
    Common {
        /// Its name.
        symbol: String,
    },
    /// A relocation against a section that is not carried.
    UnloadedSection {
        /// The section's name.
        section: String,
    },
    /// A relocation in data whose kind patches instructions (only abs64 and pc32 apply to data).
    DataRelocationKind {
        /// Where.
        at: Site,
        /// Its kind.
        kind: smf_core::RelocKind,
    },
    /// A relocation that is not an ELF one.
    NotElfRelocation(Site),
    /// An absolute 32-bit address (an object compiled without `-fPIC`).
    Absolute32 {
        /// Where.
        at: Site,
        /// Its ELF relocation type.
        r_type: u32,
    },
    /// A relocation type SMF has no kind for.
    UnsupportedRelocation {
        /// Where.
        at: Site,
        /// Its ELF relocation type.
        r_type: u32,
    },
    /// A relocation against a symbol that is neither carried nor a section's.
    UnsupportedSymbol(Site),
    /// A relocation against an absolute value.
    AbsoluteTarget(Site),
    /// The builder refused the module.
    Build(smf_core::write::BuildError),
    /// The module the objects make would not validate (as `smf verify` checks it).
    Invalid(smf_core::Error),
}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackError::NotElf { object, error } => write!(f, "{object}: not an ELF object: {error}"),
            PackError::NotX86Relocatable { object } => {
                write!(f, "{object}: only x86-64 ELF relocatable objects (.o) can be packed")
            }
            PackError::Elf(error) => error.fmt(f),
            PackError::R72Data { section } => {
                write!(f, "section {section}: R72 symbols cannot address data sections (use s128 or r96)")
            }
            PackError::ThreadLocal { section } => {
                write!(f, "section {section}: thread-local storage cannot be represented in SMF")
            }
            PackError::PreinitArray { section } => write!(
                f,
                "section {section}: pre-initialization functions run before a program's libraries \
                 are set up, which only an executable can ask for (use a constructor)"
            ),
            PackError::CallArrayEntry { at, r_type: None } => write!(
                f,
                "{at}: a constructor or destructor entry without a relocation (an absolute address, \
                 which a module loaded anywhere cannot hold)"
            ),
            PackError::CallArrayEntry { at, r_type: Some(r_type) } => write!(
                f,
                "{at}: a {} relocation in a constructor or destructor array, whose entries must be \
                 whole R_X86_64_64 addresses",
                relocation_name(elf::RelocationType(*r_type))
            ),
            PackError::DefinedTwice { name, first, second } => {
                write!(f, "{name} is defined in both {first} and {second}")
            }
            PackError::Common { symbol } => {
                write!(f, "symbol {symbol}: common symbols cannot be represented (compile with -fno-common)")
            }
            PackError::UnloadedSection { section } => {
                write!(f, "relocation against section {section} which is not loaded")
            }
            PackError::DataRelocationKind { at, kind } => write!(
                f,
                "{at}: a {} relocation in data, which SMF data relocations cannot apply (absolute \
                 64-bit and PC-relative 32-bit can)",
                kind.name()
            ),
            PackError::NotElfRelocation(at) => write!(f, "{at}: not an ELF relocation"),
            PackError::Absolute32 { at, r_type } => write!(
                f,
                "{at}: {} is an absolute 32-bit address, which a module loaded above 4 GiB cannot hold \
                 (the object was compiled without -fPIC: compile it with -fPIC)",
                relocation_name(elf::RelocationType(*r_type))
            ),
            PackError::UnsupportedRelocation { at, r_type } => write!(
                f,
                "{at}: relocation type {r_type} ({}) cannot be represented in SMF",
                relocation_name(elf::RelocationType(*r_type))
            ),
            PackError::UnsupportedSymbol(at) => write!(f, "{at}: relocation against an unsupported symbol"),
            PackError::AbsoluteTarget(at) => write!(f, "{at}: relocation against an absolute value"),
            PackError::Build(error) => error.fmt(f),
            PackError::Invalid(error) => write!(f, "the module it makes would not be valid: {error}"),
        }
    }
}

impl std::error::Error for PackError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PackError::NotElf { error, .. } | PackError::Elf(error) => Some(error),
            PackError::Invalid(error) => Some(error),
            _ => None,
        }
    }
}

impl From<object::Error> for PackError {
    fn from(error: object::Error) -> Self {
        PackError::Elf(error)
    }
}
