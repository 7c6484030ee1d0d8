//! [`LoadError`]: why a load failed, each variant naming what and where; [`Invariant`]: which
//! of the loader's own invariants a load found broken (a loader bug); [`Overflow`]: which size
//! or address did not fit.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::reloc::RelocError;
use super::Resolver;
use crate::exec::ExecError;
use smf_format::kinds::arch_name;
use smf_format::module::DecodeError;
use smf_format::{Error, RelocKind};

/// Why a load failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadError {
    /// The file is not a valid module.
    Format(Error),
    /// The module is for another architecture.
    WrongArch {
        /// The module's architecture byte.
        module: u8,
        /// The host's.
        host: u8,
    },
    /// Imports no resolver knows (weak imports resolve to 0 instead): every one of the module's
    /// is looked up before the load fails.
    Unresolved {
        /// The first names (at most 16, in symbol table order, each once).
        names: Vec<String>,
        /// How many distinct names were not resolved (`names` lists the first of them).
        count: usize,
        /// Where the resolver looked ([`super::Resolver::describe`]).
        searched: String,
    },
    /// A relocation refers to a symbol without an address (a type, trait or template).
    NoAddress {
        /// Relocation index.
        relocation: u64,
        /// The symbol's name.
        name: String,
    },
    /// A relocation's result does not fit, or its instruction does not match.
    Relocation {
        /// Relocation index.
        relocation: u64,
        /// Its kind.
        kind: RelocKind,
        /// The symbol's name.
        name: String,
        /// What went wrong.
        error: RelocError,
    },
    /// An entry of a constructor or destructor array does not point into the module's code
    /// once relocated (no relocation, or one to elsewhere): refused before any constructor runs.
    CallOutsideCode {
        /// Which array.
        array: smf_format::CallArray,
        /// The array section's index.
        section: u32,
        /// The entry's position in the section.
        entry: u64,
        /// The address the entry holds.
        address: u64,
    },
    /// An exception escaped one of the module's constructors (caught by the load's
    /// [`super::Catcher`]): the constructors after it did not run, and the module was released.
    ConstructorThrew {
        /// The constructor's position in the order they run.
        entry: u64,
        /// How many constructors the module has.
        of: u64,
    },
    /// An FDE of an unwind table, once relocated, cannot be read as the unwinder reads it or
    /// describes code that is not the module's: refused before the table is registered.
    UnwindTable {
        /// The table section's index.
        section: u32,
        /// The record's offset in the table.
        record: u64,
        /// What is wrong with it.
        fault: super::UnwindFault,
    },
    /// The module needs more memory than a process can address: what did not fit.
    TooLarge(Overflow),
    /// The loader found the module (or its own plan) in a state its validation rules out: a
    /// bug in this library (please report it with the module). Which invariant broke, and at
    /// which stage.
    Internal(Invariant),
    /// Memory for the module's tables could not be allocated (the process is at its limit).
    OutOfMemory {
        /// The size of the allocation that failed.
        bytes: usize,
    },
    /// The executable allocator refused.
    Memory(ExecError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Format(e) => write!(f, "invalid module: {e}"),
            LoadError::CallOutsideCode { array, section, entry, address } => write!(
                f,
                "section {section}: {} entry {entry} holds {address:#x}, which is not in the module's code",
                array.name()
            ),
            LoadError::WrongArch { module, host } => write!(
                f,
                "wrong architecture: the module is for {} ({module}), this machine is {} ({host})",
                arch_name(*module),
                arch_name(*host)
            ),
            LoadError::Unresolved { names, count, searched } => {
                if let [name] = names.as_slice() {
                    return write!(
                        f,
                        "unresolved import `{name}` (looked in: {searched}); provide it as a host symbol or \
                         through a resolver, or load a module exporting it first"
                    );
                }
                write!(f, "{count} unresolved imports: ")?;
                for (i, name) in names.iter().enumerate() {
                    let separator = if i == 0 { "" } else { ", " };
                    write!(f, "{separator}`{name}`")?;
                }
                if let Some(unlisted) = count.checked_sub(names.len()).filter(|&n| n > 0) {
                    write!(f, " and {unlisted} more")?;
                }
                write!(
                    f,
                    " (looked in: {searched}); provide them as host symbols or through a resolver, or \
                     load modules exporting them first"
                )
            }
            LoadError::NoAddress { relocation, name } => {
                write!(f, "relocation {relocation} refers to `{name}`, which has no address")
            }
            LoadError::Relocation { relocation, kind, name, error } => {
                write!(f, "relocation {relocation} ({} against `{name}`): {error}", kind.name())
            }
            LoadError::ConstructorThrew { entry, of } => write!(
                f,
                "an exception escaped constructor {entry} of {of} (caught; the module was released)"
            ),
            LoadError::UnwindTable { section, record, fault } => {
                write!(f, "section {section}: the unwind table's record at {record:#x} {fault}")
            }
            LoadError::TooLarge(overflow) => write!(f, "module is too large to load: {overflow}"),
            LoadError::Internal(invariant) => write!(
                f,
                "internal error at the {} stage: {invariant}, which the module's validation rules out \
                 (a bug in the loader: please report it, with the module)",
                invariant.stage()
            ),
            LoadError::OutOfMemory { bytes } => {
                write!(f, "out of memory: {bytes} bytes could not be allocated")
            }
            LoadError::Memory(e) => write!(f, "executable memory: {e}"),
        }
    }
}

impl core::error::Error for LoadError {}

impl From<Error> for LoadError {
    fn from(e: Error) -> Self {
        LoadError::Format(e)
    }
}

impl From<ExecError> for LoadError {
    fn from(e: ExecError) -> Self {
        LoadError::Memory(e)
    }
}

impl LoadError {
    /// [`LoadError::Internal`], built only on the error path (called from `ok_or_else`: a
    /// `LoadError` made in a hot loop and dropped unused costs its destructor every time), and
    /// cold, so that the loops keep the error paths out of their way. Not `#[inline(never)]`:
    /// inlined, it is two stores; a call returning the error in memory made the link loop
    /// slower (`cargo xtask callgrind`).
    #[cold]
    pub(super) fn internal(invariant: Invariant) -> Self {
        LoadError::Internal(invariant)
    }

    /// [`LoadError::TooLarge`], built as [`LoadError::internal`] is.
    #[cold]
    pub(super) fn too_large(overflow: Overflow) -> Self {
        LoadError::TooLarge(overflow)
    }

    /// `count` imports, the first of which are `names`, resolve nowhere `resolver` looks.
    #[cold]
    pub(super) fn unresolved(names: Vec<String>, count: usize, resolver: &dyn Resolver) -> Self {
        let mut searched = String::new();
        if resolver.describe(&mut searched).is_err() {
            searched.clear();
        }
        LoadError::Unresolved { names, count, searched }
    }
}

/// An invariant the loader relies on, found broken: a validated module (or the loader's own
/// plan for it) in a state validation rules out. Each names what broke; [`Invariant::stage`]
/// says at which stage of the load. Any of them is a bug in the loader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Invariant {
    /// Link: a symbol found no room in the symbol table, which has room for every symbol (or
    /// its name was not where validation located it).
    SymbolTableFull,
    /// Link: a data symbol points into a section that is not a data section.
    DataSymbolOutsideData,
    /// Place: the symbol table and the symbols' targets differ in length.
    TargetsMismatch,
    /// Place: an address a data section is copied to lies in none of the image's blocks.
    DataOutsideImage,
    /// Place: a code section does not lie inside the code block, or its bytes pass its
    /// virtual size.
    CodeSectionOutsideCode,
    /// Place: the code block is shorter than the plan's code and stubs.
    CodeBlockShort,
    /// Place: the read-only block is shorter than the module's read-only data.
    ReadOnlyBlockShort,
    /// Place: the writable block is shorter than the module's writable data and bss.
    WritableBlockShort,
    /// Relocate: a relocation's symbol lies outside the symbols' targets.
    SymbolOutsideTargets,
    /// Relocate: a code relocation's site lies outside the placed code.
    SiteOutsideCode,
    /// Relocate: a data relocation's site lies outside the data image.
    SiteOutsideData,
    /// Relocate: a relocation needed a GOT slot and the GOT was full (the plan has a slot per
    /// GOT-relative relocation).
    GotFull,
    /// Relocate: a branch to an import needed a stub and none could be written (the plan has
    /// room for a stub per import).
    StubAreaFull,
    /// GOT: the GOT lies in none of the image's blocks.
    GotOutsideImage,
    /// GOT: a symbol's GOT slot lies outside the GOT.
    GotSlotOutsideGot,
    /// Templates: a template symbol lies outside the symbol table.
    TemplateSymbolOutsideTable,
    /// Templates: a template entry lies outside the kept template-code section.
    TemplateEntryOutsideSection,
    /// Constructors: a constructor or destructor array is not in the read-only data.
    CallArrayNotReadOnly,
    /// Constructors: a constructor or destructor array lies outside the placed read-only data.
    CallArrayOutsideReadOnly,
    /// Unwind: an unwind table is not in the read-only data.
    UnwindTableNotReadOnly,
    /// Unwind: an unwind table lies outside the placed read-only data.
    UnwindTableOutsideReadOnly,
}

impl Invariant {
    /// The stage of the load that found it broken: `link`, `place`, `relocate`, `GOT`,
    /// `templates` or `constructors` (the stages of [`super::LoadedModule::load`]).
    pub const fn stage(self) -> &'static str {
        match self {
            Invariant::SymbolTableFull | Invariant::DataSymbolOutsideData => "link",
            Invariant::TargetsMismatch
            | Invariant::DataOutsideImage
            | Invariant::CodeSectionOutsideCode
            | Invariant::CodeBlockShort
            | Invariant::ReadOnlyBlockShort
            | Invariant::WritableBlockShort => "place",
            Invariant::SymbolOutsideTargets
            | Invariant::SiteOutsideCode
            | Invariant::SiteOutsideData
            | Invariant::GotFull
            | Invariant::StubAreaFull => "relocate",
            Invariant::GotOutsideImage | Invariant::GotSlotOutsideGot => "GOT",
            Invariant::TemplateSymbolOutsideTable | Invariant::TemplateEntryOutsideSection => "templates",
            Invariant::CallArrayNotReadOnly | Invariant::CallArrayOutsideReadOnly => "constructors",
            Invariant::UnwindTableNotReadOnly | Invariant::UnwindTableOutsideReadOnly => "unwind",
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invariant::SymbolTableFull => "the symbol table has no room for a symbol",
            Invariant::DataSymbolOutsideData => "a data symbol points into a section that is not data",
            Invariant::TargetsMismatch => "the symbol table and the symbols' targets differ in length",
            Invariant::DataOutsideImage => "a data section's place lies in none of the image's blocks",
            Invariant::CodeSectionOutsideCode => "a code section lies outside the code block",
            Invariant::CodeBlockShort => "the code block is shorter than planned",
            Invariant::ReadOnlyBlockShort => "the read-only block is shorter than the read-only data",
            Invariant::WritableBlockShort => "the writable block is shorter than the writable data",
            Invariant::SymbolOutsideTargets => "a relocation's symbol lies outside the targets",
            Invariant::SiteOutsideCode => "a relocation's site lies outside the placed code",
            Invariant::SiteOutsideData => "a data relocation's site lies outside the data image",
            Invariant::GotFull => "a relocation needed a GOT slot and the GOT was full",
            Invariant::StubAreaFull => "a branch needed a stub and the stub area was full",
            Invariant::GotOutsideImage => "the GOT lies in none of the image's blocks",
            Invariant::GotSlotOutsideGot => "a GOT slot lies outside the GOT",
            Invariant::TemplateSymbolOutsideTable => "a template symbol lies outside the symbol table",
            Invariant::TemplateEntryOutsideSection => {
                "a template entry lies outside the template-code section"
            }
            Invariant::CallArrayNotReadOnly => "a constructor or destructor array is not read-only data",
            Invariant::CallArrayOutsideReadOnly => {
                "a constructor or destructor array lies outside the read-only data"
            }
            Invariant::UnwindTableNotReadOnly => "an unwind table is not read-only data",
            Invariant::UnwindTableOutsideReadOnly => "an unwind table lies outside the read-only data",
        })
    }
}

/// A size or address of a module's image that does not fit in the address space (or an offset
/// from the file that does not fit a memory offset): what it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Overflow {
    /// The size of the code with its branch stubs.
    CodeSize,
    /// The size of the read-only data with its GOT.
    ReadOnlySize,
    /// The size of the writable data and bss.
    WritableSize,
    /// The largest alignment a data section asks for.
    DataAlignment,
    /// The largest alignment a code section asks for.
    CodeAlignment,
    /// The size of the code segment holding the read-only data after the code and stubs.
    CodeSegment,
    /// The size of the GOT (its slots).
    GotSize,
    /// A code section's offset or size, as a memory offset.
    CodeSection,
    /// A symbol's offset in the code, as a memory offset.
    CodeOffset,
    /// An offset in the data image (a data symbol's, a call array's), as a memory offset.
    DataOffset,
    /// An address in the code (a symbol's, the stubs', the entry point): past the address
    /// space.
    CodeAddress,
    /// An address in the read-only data (a symbol's, a data section's, the GOT's).
    ReadOnlyAddress,
    /// An address in the writable data (a symbol's, a data section's).
    WritableAddress,
}

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Overflow::CodeSize => "the size of its code and stubs does not fit in memory",
            Overflow::ReadOnlySize => "the size of its read-only data and GOT does not fit in memory",
            Overflow::WritableSize => "the size of its writable data and bss does not fit in memory",
            Overflow::DataAlignment => "its data alignment does not fit in memory",
            Overflow::CodeAlignment => "its code alignment does not fit in memory",
            Overflow::CodeSegment => {
                "the size of its code segment with read-only data does not fit in memory"
            }
            Overflow::GotSize => "the size of its GOT does not fit in memory",
            Overflow::CodeSection => "a code section's offset or size does not fit in memory",
            Overflow::CodeOffset => "an offset in its code does not fit in memory",
            Overflow::DataOffset => "an offset in its data does not fit in memory",
            Overflow::CodeAddress => "an address in its code lies past the end of the address space",
            Overflow::ReadOnlyAddress => {
                "an address in its read-only data lies past the end of the address space"
            }
            Overflow::WritableAddress => {
                "an address in its writable data lies past the end of the address space"
            }
        })
    }
}

/// A name from the file, for messages.
pub(super) fn lossy(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// A table decoded for the loader stops at a malformed entry or at the loader's own error.
impl From<DecodeError<LoadError>> for LoadError {
    fn from(e: DecodeError<LoadError>) -> Self {
        match e {
            DecodeError::Format(e) => LoadError::Format(e),
            DecodeError::Stopped(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn an_internal_error_and_an_overflow_say_which_in_one_line() {
        let internal = LoadError::Internal(Invariant::SiteOutsideCode).to_string();
        assert_eq!(
            internal,
            "internal error at the relocate stage: a relocation's site lies outside the placed code, which \
             the module's validation rules out (a bug in the loader: please report it, with the module)"
        );
        let too_large = LoadError::TooLarge(Overflow::GotSize).to_string();
        assert_eq!(too_large, "module is too large to load: the size of its GOT does not fit in memory");
        for invariant in
            [Invariant::SymbolTableFull, Invariant::GotSlotOutsideGot, Invariant::CallArrayNotReadOnly]
        {
            let message = LoadError::Internal(invariant).to_string();
            assert!(message.contains(&invariant.to_string()) && !message.contains('\n'), "{message}");
        }
        assert_eq!(Invariant::GotSlotOutsideGot.stage(), "GOT");
        assert_eq!(Invariant::TemplateEntryOutsideSection.stage(), "templates");
    }
}
