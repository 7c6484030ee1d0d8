//! [`PackError`]: one reason objects cannot be packed, naming the section, symbol or relocation
//! site at fault and what to do about it ([`super::Problem`] adds the object).

use std::fmt;

use object::elf;

use super::elf::relocation_name;

/// Bytes of a name a problem keeps: a longer one is cut (at a character's start) and marked
/// `...`. A problem is made per relocation, so a name each one copied whole (200 KB, 20,000
/// times) would make the report the square of the object.
pub(crate) const PROBLEM_NAME_BYTES: usize = 256;

/// `name` as a problem keeps it ([`PROBLEM_NAME_BYTES`]).
pub(crate) fn problem_name(name: &str) -> String {
    if name.len() <= PROBLEM_NAME_BYTES {
        return name.to_owned();
    }
    let mut end = PROBLEM_NAME_BYTES;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &name[..end])
}

/// Where a relocation is: its section and offset, and the function or variable there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// The section's name.
    pub section: String,
    /// The relocation's offset in the section.
    pub offset: u64,
    /// The function or variable (of the object's symbol table) covering the offset, if one does.
    pub symbol: Option<String>,
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{:#x}", self.section, self.offset)?;
        match &self.symbol {
            Some(symbol) => {
                write!(f, " (in {symbol_shown})", symbol_shown = crate::demangle::readable(symbol))
            }
            None => Ok(()),
        }
    }
}

/// Why objects cannot be packed.
#[derive(Debug)]
#[non_exhaustive]
pub enum PackError {
    /// The object is not ELF (or is malformed): what the ELF reader said.
    NotElf(object::Error),
    /// An ELF object that is not an x86-64 relocatable.
    NotX86Relocatable,
    /// An ELF relocatable object for another architecture (its machine, as `object` names it).
    OtherArchitecture(String),
    /// An object of GCC's link-time optimization without machine code (`-flto`).
    LtoObject,
    /// An archive that could not be read: what the reader said.
    Archive(object::Error),
    /// A linker script (its first `GROUP` or `INPUT` statement), not an object or an archive.
    LinkerScript(String),
    /// An archive whose members' names are longer together than the archive and 256 bytes a
    /// member: members sharing one long name (reading each would cost the square of the
    /// archive).
    ArchiveNamesShared {
        /// The members named so far when the names passed the bound.
        members: u64,
    },
    /// A thin archive (its members are files named by path, not in the archive).
    ThinArchive,
    /// An object whose sections' contents, each counted, add up to more than the object:
    /// section headers overlapping one another, which no compiler writes (each would be copied
    /// again; `bounds.rs`).
    SectionsOverlap {
        /// The contents' bytes, added up.
        contents: u64,
        /// The object's size.
        size: u64,
    },
    /// An object whose names (of sections and symbols) are longer together than the object by
    /// more than 1 MiB and 256 bytes a name: names pointing into one long name, which no
    /// compiler writes (each would be read and copied again; `bounds.rs`).
    NamesShared {
        /// The names read when they passed the bound.
        names: u64,
    },
    /// The entry point asked for (`-e NAME`) is not a function the objects define.
    NoEntryPoint(String),
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
        /// The variables the object defines in it.
        variables: Vec<String>,
    },
    /// Code or data that reaches a thread-local variable (the object's own or another's).
    ThreadLocalAccess {
        /// Where.
        at: Site,
        /// The variable.
        variable: String,
        /// Its ELF relocation type.
        r_type: u32,
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
    /// A global or weak symbol without a name: nothing could link to it, and a module cannot
    /// export it.
    UnnamedGlobal {
        /// Its index in the object's symbol table.
        index: usize,
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
    /// A GNU indirect function in R72, whose symbols cannot address the data slot its stub
    /// jumps through.
    IndirectFunctionInR72 {
        /// The function's name.
        symbol: String,
    },
    /// A GNU indirect function defined outside code: its resolver, which the module's first
    /// constructor calls, would be data.
    IndirectFunctionNotInCode {
        /// The function's name.
        symbol: String,
        /// The section it is defined in.
        section: String,
    },
    /// A common symbol (`-fcommon`, `.comm`) in R72, whose symbols cannot address the bss it
    /// is allocated in.
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
        kind: smf_format::RelocKind,
    },
    /// A relocation that is not an ELF one.
    NotElfRelocation(Site),
    /// An absolute 32-bit address (an object compiled without `-fPIC`).
    Absolute32 {
        /// Where.
        at: Site,
        /// What it is the address of.
        target: String,
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
    /// A relocation patching bytes past the end of its section.
    RelocationOutsideSection(Site),
    /// A loaded section whose alignment is no power of two or more than a module can ask for.
    BadAlignment {
        /// The section.
        section: String,
        /// Its alignment.
        align: u64,
    },
    /// A common symbol whose alignment (its ELF value) is not a power of two up to
    /// [`smf_format::module::MAX_ALIGNMENT`].
    CommonAlignment {
        /// The symbol.
        symbol: String,
        /// Its alignment.
        align: u64,
    },
    /// A loaded section named as SMF names its instantiation metadata (`note.sdn`).
    ReservedSectionName {
        /// The section.
        section: String,
    },
    /// A symbol whose value lies past the end of the section that defines it.
    SymbolOutsideSection {
        /// The symbol.
        symbol: String,
        /// Its value.
        value: u64,
        /// Its section's size.
        section_size: u64,
    },
    /// The builder refused the module.
    Build(smf_format::write::BuildError),
    /// The module the objects make would not validate (as `smf verify` checks it).
    Invalid(smf_format::Error),
    /// The module the objects make validates but would not load (a packer bug: pack writes
    /// only modules that load).
    DoesNotLoad(smf_runtime::load::LoadError),
}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackError::NotElf(error) => {
                write!(f, "not an ELF object ({error}): give pack the objects of `cc -c -fPIC`")
            }
            PackError::NotX86Relocatable => write!(
                f,
                "not an x86-64 relocatable object: only objects (.o, from `cc -c -fPIC`) can be \
                 packed, not programs, shared libraries or another architecture's objects"
            ),
            PackError::OtherArchitecture(machine) => write!(
                f,
                "an {machine} object: pack makes x86-64 modules, from x86-64 objects (compile \
                 for x86-64)"
            ),
            PackError::LtoObject => write!(
                f,
                "a link-time optimization object without machine code (-flto): compile it with \
                 -fno-lto, or with -ffat-lto-objects"
            ),
            PackError::Archive(error) => write!(f, "not a readable archive ({error})"),
            PackError::LinkerScript(statement) => write!(
                f,
                "a linker script ({statement}), which pack does not read: give it the archives or objects the script names"
            ),
            PackError::ArchiveNamesShared { members } => write!(
                f,
                "not a readable archive (the names of its first {members} members are longer together than the archive by more than 256 bytes a member: members sharing one long name)"
            ),
            PackError::SectionsOverlap { contents, size } => write!(
                f,
                "sections overlap: their contents add up to {contents} bytes in an object of {size} (a compiler writes each section's once)"
            ),
            PackError::NamesShared { names } => write!(
                f,
                "names share bytes: the first {names} names of sections and symbols are longer together than the object by more than 1 MiB and 256 bytes a name (a compiler shares only a name's end)"
            ),
            PackError::ThinArchive => write!(
                f,
                "a thin archive (members named by path): make a normal one with `ar rcs`, or give \
                 pack the member objects"
            ),
            PackError::NoEntryPoint(name) => {
                write!(f, "entry point `{name_shown}` (-e) is not a function these objects define", name_shown = crate::demangle::readable(name))
            }
            PackError::Elf(error) => error.fmt(f),
            PackError::R72Data { section } => {
                write!(f, "section {section}: R72 symbols cannot address data sections (use s128 or r96)")
            }
            PackError::ThreadLocal { section, variables } => {
                write!(f, "section {section}")?;
                if !variables.is_empty() {
                    write!(f, " (")?;
                    for (i, variable) in variables.iter().enumerate() {
                        write!(f, "{}{variable}", if i > 0 { ", " } else { "" })?;
                    }
                    write!(f, ")")?;
                }
                write!(
                    f,
                    ": thread-local storage cannot be represented in SMF (make the variable a plain \
                     global, or keep it in the host program and reach it through a function)"
                )
            }
            PackError::ThreadLocalAccess { at, variable, r_type } => {
                write!(
                    f,
                    "{at}: {} reaches thread-local variable {variable}, which SMF cannot represent \
                     (a module has no thread-local storage: keep its thread-local variables in the host \
                     program and reach them through a function",
                    relocation_name(elf::RelocationType(*r_type))
                )?;
                // The C++ library's own (mangled names: `_ZSt11__once_call`).
                if variable.starts_with("_ZSt") || variable.starts_with("_ZN9__gnu_cxx") {
                    write!(
                        f,
                        "; a shared library's, as the inline code of libstdc++'s std::call_once and \
                         std::async uses, cannot be reached from a module"
                    )?;
                }
                write!(f, ")")
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
            PackError::UnnamedGlobal { index } => write!(
                f,
                "symbol #{index} is global without a name (a broken object: no compiler or \
                 assembler writes one)"
            ),
            PackError::DefinedTwice { name, first, second } => write!(
                f,
                "{name_shown} is defined in both {first} and {second} (make one of them static, or \
                 drop one of the objects)", name_shown = crate::demangle::readable(name)),
            PackError::IndirectFunctionInR72 { symbol } => write!(
                f,
                "symbol {symbol_shown}: a GNU indirect function (ifunc, target_clones) needs a data slot, which R72 symbols cannot address (use s128 or r96)", symbol_shown = crate::demangle::readable(symbol)),
            PackError::IndirectFunctionNotInCode { symbol, section } => write!(
                f,
                "symbol {symbol_shown}: a GNU indirect function defined in {section}, which is not code: its resolver could not be called", symbol_shown = crate::demangle::readable(symbol)),
            PackError::Common { symbol } => {
                write!(f, "symbol {symbol_shown}: a common symbol is data, which R72 symbols cannot address (use s128 or r96)", symbol_shown = crate::demangle::readable(symbol))
            }
            PackError::UnloadedSection { section } => write!(
                f,
                "a relocation refers to section {section}, which is not loaded (pack drops it: \
                 nothing may point into it)"
            ),
            PackError::DataRelocationKind { at, kind } => write!(
                f,
                "{at}: a {} relocation in data, which SMF data relocations cannot apply (absolute \
                 64-bit and PC-relative 32-bit can)",
                kind.name()
            ),
            PackError::NotElfRelocation(at) => write!(f, "{at}: not an ELF relocation"),
            PackError::Absolute32 { at, target, r_type } => write!(
                f,
                "{at}: {} puts the address of {target_shown} in 32 bits, which a module loaded above 4 GiB \
                 cannot hold (the object was compiled without -fPIC: compile it with -fPIC)",
                relocation_name(elf::RelocationType(*r_type)), target_shown = crate::demangle::readable(target)),
            PackError::UnsupportedRelocation { at, r_type } => write!(
                f,
                "{at}: relocation type {r_type} ({}) cannot be represented in SMF (pack takes what \
                 `cc -c -O2 -fPIC` emits for a shared library)",
                relocation_name(elf::RelocationType(*r_type))
            ),
            PackError::UnsupportedSymbol(at) => write!(
                f,
                "{at}: a relocation against a symbol that is neither defined in a loaded section nor \
                 undefined (an absolute or special symbol)"
            ),
            PackError::AbsoluteTarget(at) => write!(f, "{at}: a relocation against an absolute value"),
            PackError::RelocationOutsideSection(at) => {
                write!(
                    f,
                    "{at}: a relocation patching bytes past the end of its section (the object is malformed)"
                )
            }
            PackError::CommonAlignment { symbol, align } => write!(
                f,
                "common symbol {symbol_shown}: alignment {align} is not a power of two up to {} (the object is \
                 malformed, or asks for more alignment than a module can give)",
                smf_format::module::MAX_ALIGNMENT, symbol_shown = crate::demangle::readable(symbol)),
            PackError::BadAlignment { section, align } => write!(
                f,
                "section {section}: alignment {align} is not a power of two up to {} (the object is \
                 malformed, or asks for more alignment than a module can give)",
                smf_format::module::MAX_ALIGNMENT
            ),
            PackError::ReservedSectionName { section } => write!(
                f,
                "section {section}: SMF reserves this name for instantiation metadata (rename the \
                 section, for example with __attribute__((section(...))) or objcopy --rename-section)"
            ),
            PackError::SymbolOutsideSection { symbol, value, section_size } => write!(
                f,
                "symbol {symbol_shown} is defined at {value:#x}, past the end of its section ({section_size:#x} \
                 bytes): the object is malformed", symbol_shown = crate::demangle::readable(symbol)),
            PackError::Build(error) => error.fmt(f),
            PackError::Invalid(error) => write!(f, "the module it makes would not be valid: {error}"),
            PackError::DoesNotLoad(error) => write!(f, "the module it makes would not load: {error}"),
        }
    }
}

impl std::error::Error for PackError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PackError::NotElf(error) | PackError::Elf(error) => Some(error),
            PackError::Invalid(error) => Some(error),
            PackError::DoesNotLoad(error) => Some(error),
            _ => None,
        }
    }
}

impl From<object::Error> for PackError {
    fn from(error: object::Error) -> Self {
        PackError::Elf(error)
    }
}
