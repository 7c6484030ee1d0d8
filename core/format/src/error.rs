//! The one error type of the format layer.
//!
//! An [`Error`] is small and `Copy`: an [`ErrorKind`] saying what was wrong (with the index of the
//! table entry involved, where there is one) and the byte offset in the file where the problem
//! is. It never allocates, so it can be returned from `no_std` code and across the C ABI.

pub use crate::module::function_names::FunctionNamesProblem;
use core::fmt;

use crate::kinds::CallArrayProblem;

/// What went wrong, and where in the file (`offset`, in bytes from the start of the file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    /// What was wrong.
    pub kind: ErrorKind,
    /// Byte offset in the file of the offending structure or field.
    pub offset: u64,
}

impl Error {
    /// An error of `kind` at file offset `offset`.
    pub const fn new(kind: ErrorKind, offset: u64) -> Self {
        Self { kind, offset }
    }

    /// How far validation got before failing: detection uses it to report the error of the most
    /// plausible layout when none validates.
    pub(crate) const fn stage(&self) -> u8 {
        use ErrorKind::*;
        match self.kind {
            FileTooSmall { .. } | BadMagic | ElfFile { .. } => 0,
            UnsupportedCompression { .. } | StubOutOfBounds { .. } => 1,
            SectionTableOutOfBounds { .. } | SymbolTableOutOfBounds { .. } => 2,
            _ => 3,
        }
    }
}

/// Which rule a compressed section breaks ([`ErrorKind::BadCompressedSection`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompressionProblem {
    /// Flagged compressed, in a module whose header names no compression method (R72 has no
    /// compression byte: its sections are never compressed).
    NoMethod,
    /// Not a code, data or rodata section, or a constructor, destructor or unwind table
    /// (which the loader reads itself): never compressed.
    NotCompressible,
    /// Shorter than the frame's 8-byte length.
    FrameTooShort,
    /// The frame states more bytes than the section's virtual size.
    LongerThanVirtualSize {
        /// The stated decompressed length.
        stated: u64,
    },
    /// The frame states more bytes than its data could make with the method.
    BeyondMethod {
        /// The stated decompressed length.
        stated: u64,
    },
    /// The data is not valid for the method.
    Corrupt,
    /// The data makes fewer bytes than stated.
    ShorterThanStated {
        /// Bytes it made.
        produced: u64,
    },
    /// The data makes more bytes than stated.
    LongerThanStated,
}

impl CompressionProblem {
    fn describe(self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompressionProblem::NoMethod => {
                f.write_str("is flagged compressed but the header names no method")
            }
            CompressionProblem::NotCompressible => f.write_str(
                "may not be compressed (only code, data and rodata that the loader does not read itself)",
            ),
            CompressionProblem::FrameTooShort => f.write_str("is shorter than its frame's 8-byte length"),
            CompressionProblem::LongerThanVirtualSize { stated } => {
                write!(f, "states {stated} decompressed bytes, more than its virtual size")
            }
            CompressionProblem::BeyondMethod { stated } => {
                write!(f, "states {stated} decompressed bytes, more than its data can make")
            }
            CompressionProblem::Corrupt => f.write_str("holds corrupt compressed data"),
            CompressionProblem::ShorterThanStated { produced } => {
                write!(f, "decompresses to {produced} bytes, fewer than its frame states")
            }
            CompressionProblem::LongerThanStated => {
                f.write_str("decompresses to more bytes than its frame states")
            }
        }
    }
}

/// Which rule an unwind table section breaks ([`ErrorKind::BadUnwindTable`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnwindProblem {
    /// Not a rodata section (the table is read-only once relocated).
    NotReadOnlyData,
    /// A record whose length runs past the section (at this offset in the section).
    RecordOutside {
        /// The record's offset in the section.
        at: u64,
    },
    /// A record in DWARF's 64-bit form (a length of `0xffffffff`, then 8 bytes of length):
    /// `.eh_frame` readers such as libgcc's, to which the loader hands the table, take 32-bit
    /// lengths only (libgcc misreads such a table, then aborts the process when the module's
    /// table is withdrawn after an unwind has read it).
    LongRecord {
        /// The record's offset in the section.
        at: u64,
    },
    /// The records do not end with a zero length in the section's last four bytes (the
    /// terminator an unwinder stops at), or its virtual size differs from its size.
    NoTerminator,
    /// The module lacks the extension marker (its pointers need data relocations).
    NoMarker,
}

impl UnwindProblem {
    pub(crate) const fn describe(self) -> &'static str {
        match self {
            UnwindProblem::NotReadOnlyData => "must be a rodata section",
            UnwindProblem::RecordOutside { .. } => "has a record running past its end",
            UnwindProblem::LongRecord { .. } => {
                "has a record with a 64-bit length, which the process's unwinder does not read"
            }
            UnwindProblem::NoTerminator => {
                "must end with a zero-length record in its last four bytes (virtual size = size)"
            }
            UnwindProblem::NoMarker => {
                "needs the data relocations marker (its pointers are data relocations)"
            }
        }
    }
}

/// Which rule a needed-libraries section breaks ([`ErrorKind::BadNeeded`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NeededProblem {
    /// A name (on this line, from 0) that is empty or longer than 255 bytes.
    NameLength {
        /// Its line.
        line: u32,
    },
    /// A name (on this line) with a byte other than a letter, a digit or `._+-`, or starting
    /// with `.`: not a file name of the library search path.
    NameCharacters {
        /// Its line.
        line: u32,
    },
    /// More than 64 names.
    TooMany,
}

/// Every way a module can be malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file is smaller than the smallest header.
    FileTooSmall {
        /// File length in bytes.
        len: u64,
    },
    /// No `SMF\0` magic at any place a header can be.
    BadMagic,
    /// No module but an ELF file (`e_type`: 1 an object, 2 an executable, 3 a shared library):
    /// what `smf pack` takes to make one.
    ElfFile {
        /// Its `e_type`.
        object_type: u16,
    },
    /// The header names a compression method this loader does not know (it knows lz4).
    UnsupportedCompression {
        /// The `compression` byte.
        method: u8,
    },
    /// `smf_data_offset`/`stub_size` point past the SMF data.
    StubOutOfBounds {
        /// The `stub_size` field.
        stub_size: u32,
        /// The `smf_data_offset` field.
        data_offset: u32,
    },
    /// The section table does not fit in the file.
    SectionTableOutOfBounds {
        /// Number of entries the header claims.
        count: u32,
    },
    /// The symbol table does not fit in the file.
    SymbolTableOutOfBounds {
        /// Number of entries the header claims.
        count: u32,
    },
    /// A section's payload does not fit in the file.
    SectionOutOfBounds {
        /// Section index.
        index: u32,
    },
    /// A compressed section breaks the rule ([`crate::compress`]).
    BadCompressedSection {
        /// Section index.
        index: u32,
        /// Which rule.
        problem: CompressionProblem,
    },
    /// The payloads of the sections up to this one are larger together than the file: some
    /// share bytes (which would have every whole-section walk read them again).
    PayloadsLargerThanFile {
        /// Section index.
        index: u32,
    },
    /// A loadable section says it occupies fewer bytes in memory than in the file.
    VirtualSizeTooSmall {
        /// Section index.
        index: u32,
    },
    /// A code or data section's alignment is not zero or a power of two up to 64 KiB.
    BadAlignment {
        /// Section index.
        index: u32,
        /// The alignment field.
        alignment: u64,
    },
    /// Code plus data would need more memory than the configured limit.
    ImageTooLarge {
        /// Bytes the image would need (saturated).
        bytes: u64,
        /// The limit in force.
        limit: u64,
    },
    /// A relocation section's size is not a multiple of the 24-byte entry.
    RelocationSectionSize {
        /// Section index.
        index: u32,
    },
    /// A symbol's name offset lies outside the string table.
    NameOutOfBounds {
        /// Symbol index.
        symbol: u32,
    },
    /// A symbol's name runs to the end of the string table without a NUL.
    NameUnterminated {
        /// Symbol index.
        symbol: u32,
    },
    /// The names of the symbols up to this one, each counted once, are longer together than
    /// the string table, 1 MiB and `sharing` bytes a symbol (names sharing bytes so much that
    /// reading each would cost the square of the file).
    NamesShareTooMuch {
        /// Symbol index.
        symbol: u32,
        /// The bytes a symbol's name may share with others' on average.
        sharing: u64,
    },
    /// A symbol other modules see or supply (global or weak: an export or an import) has an
    /// empty name, which nothing could look up or provide.
    UnnamedSymbol {
        /// Symbol index.
        symbol: u32,
    },
    /// A symbol type byte unknown for the dialect.
    BadSymbolType {
        /// Symbol index.
        symbol: u32,
        /// The raw byte.
        value: u8,
    },
    /// A binding byte other than local, global, weak.
    BadBinding {
        /// Symbol index.
        symbol: u32,
        /// The raw byte.
        value: u8,
    },
    /// A function (or code-addressed data) symbol's `value..value+size` leaves the code.
    SymbolOutsideCode {
        /// Symbol index.
        symbol: u32,
    },
    /// A data symbol's `value..value+size` leaves the data section it names.
    SymbolOutsideSection {
        /// Symbol index.
        symbol: u32,
        /// Section index (0-based).
        section: u32,
    },
    /// A symbol names a defining section that does not exist or holds no data.
    BadSymbolSection {
        /// Symbol index.
        symbol: u32,
        /// The section field as stored (1-based).
        section: u32,
    },
    /// The header's entry point is not inside the code.
    EntryOutsideCode {
        /// The entry point.
        entry: u64,
        /// Code size.
        code_size: u64,
    },
    /// A relocation patches bytes outside the code.
    RelocationOutsideCode {
        /// Relocation index (in table order across all relocation sections).
        relocation: u64,
    },
    /// A data relocation patches bytes outside the data image's regions (or across both).
    RelocationOutsideData {
        /// Relocation index.
        relocation: u64,
    },
    /// A data relocation's kind patches instructions or needs a GOT slot or a stub.
    DataRelocationKind {
        /// Relocation index.
        relocation: u64,
        /// The kind.
        kind: crate::RelocKind,
    },
    /// A data relocation starts before the previous one of its section ends (entries must be
    /// sorted by offset and must not overlap).
    DataRelocationsOverlap {
        /// Relocation index.
        relocation: u64,
    },
    /// The module has a data relocation section but its first relocation section does not
    /// start with the marker entry older loaders refuse.
    DataRelocationsWithoutMarker {
        /// The data relocation section's index.
        index: u32,
    },
    /// The needed-libraries section (`note.needed`) breaking a rule of the extension
    /// (`docs/format.md`, "Needed libraries").
    BadNeeded {
        /// The section's index.
        index: u32,
        /// Which rule.
        problem: NeededProblem,
    },
    /// The function-names section (`note.names`) breaking a rule of the extension
    /// (`docs/format.md`, "Function names").
    BadFunctionNames {
        /// The section's index.
        index: u32,
        /// Which rule.
        problem: FunctionNamesProblem,
    },
    /// An unwind table section (flagged `SectionFlags::UNWIND`) breaking a rule of the
    /// extension (`docs/format.md`, "Unwind tables").
    BadUnwindTable {
        /// The section's index.
        index: u32,
        /// Which rule.
        problem: UnwindProblem,
    },
    /// A constructor or destructor array section (flagged `SectionFlags::CONSTRUCTORS` or
    /// `SectionFlags::DESTRUCTORS`) that breaks a rule of the extension.
    BadCallArray {
        /// The section's index.
        index: u32,
        /// Which rule.
        problem: CallArrayProblem,
    },
    /// An entry with the marker's offset and symbol that is not the marker: elsewhere than the
    /// first entry of the first relocation section (and not of kind none), or with another kind
    /// or addend.
    BadExtensionMarker {
        /// Relocation index.
        relocation: u64,
    },
    /// A relocation names a symbol index past the symbol table.
    RelocationBadSymbol {
        /// Relocation index.
        relocation: u64,
        /// The symbol index.
        symbol: u32,
    },
    /// A relocation kind that the dialect does not define.
    RelocationBadKind {
        /// Relocation index.
        relocation: u64,
        /// The wire value.
        wire: u8,
    },
    /// The note.sdn section's entry is not what the format says (type 13 or 7, size 0,
    /// virtual size 0, alignment 0 or a power of two up to 64 KiB).
    NoteSectionEntry {
        /// Section index.
        index: u32,
        /// The field that is wrong (`type`, `size`, `virtual_size`, `alignment`).
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// The note.sdn text lies outside the file.
    NoteOutOfBounds,
    /// No `# END_NOTE` terminator within the file and the 1 MiB scan limit.
    NoteUnterminated,
    /// The note.sdn text is not UTF-8.
    NoteNotUtf8,
    /// A template section does not start with its magic.
    TemplateBadMagic,
    /// A template section or entry ends in the middle of a field.
    TemplateTruncated,
    /// A template entry's kind byte is not function, struct, class, enum or trait.
    TemplateBadKind {
        /// The raw byte.
        value: u8,
    },
    /// A template symbol's `template_offset` points outside the template-code entries, or there is
    /// no template-code section for it.
    TemplateOffsetOutOfBounds {
        /// Symbol index.
        symbol: u32,
    },
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ErrorKind::*;
        match *self {
            FileTooSmall { len } => write!(f, "file of {len} bytes is smaller than any SMF header"),
            BadMagic => f.write_str(
                "no SMF magic at offset 0 or in a trailer (not a module, or one cut short: S128 keeps its header at its end)",
            ),
            ElfFile { object_type } => {
                let what = match object_type {
                    1 => "an ELF object",
                    2 => "an ELF executable",
                    3 => "an ELF shared library",
                    _ => "an ELF file",
                };
                write!(
                    f,
                    "{what}, not an SMF module: `smf pack` makes a module of ELF objects \
                     (smf pack a.o b.o -o out.smf)"
                )
            }
            UnsupportedCompression { method } => write!(f, "compression method {method} is not supported"),
            StubOutOfBounds { stub_size, data_offset } => {
                write!(f, "stub_size {stub_size} / smf_data_offset {data_offset} point past the SMF data")
            }
            SectionTableOutOfBounds { count } => {
                write!(f, "section table of {count} entries does not fit in the file")
            }
            SymbolTableOutOfBounds { count } => {
                write!(f, "symbol table of {count} entries does not fit in the file")
            }
            SectionOutOfBounds { index } => write!(f, "section {index}: payload does not fit in the file"),
            BadCompressedSection { index, problem } => {
                write!(f, "section {index} ")?;
                problem.describe(f)
            }
            PayloadsLargerThanFile { index } => write!(
                f,
                "section {index}: the sections' payloads up to it are larger together than the file (some share bytes)"
            ),
            VirtualSizeTooSmall { index } => {
                write!(f, "section {index}: virtual_size is smaller than size")
            }
            BadAlignment { index, alignment } => {
                write!(f, "section {index}: alignment {alignment} is not a power of two up to 65536")
            }
            ImageTooLarge { bytes, limit } => {
                write!(f, "code and data need {bytes} bytes, over the limit of {limit}")
            }
            RelocationSectionSize { index } => {
                write!(f, "section {index}: relocation section size is not a multiple of 24")
            }
            NameOutOfBounds { symbol } => write!(f, "symbol {symbol}: name offset outside the string table"),
            NameUnterminated { symbol } => write!(f, "symbol {symbol}: name is not NUL-terminated"),
            NamesShareTooMuch { symbol, sharing } => write!(
                f,
                "symbol {symbol}: the names of the symbols up to it, each counted once, are longer than the string table by more than 1 MiB and {sharing} bytes a symbol (names sharing bytes)"
            ),
            UnnamedSymbol { symbol } => {
                write!(f, "symbol {symbol}: a global or weak symbol has an empty name")
            }
            BadSymbolType { symbol, value } => write!(f, "symbol {symbol}: unknown symbol type {value}"),
            BadBinding { symbol, value } => write!(f, "symbol {symbol}: unknown binding {value}"),
            SymbolOutsideCode { symbol } => write!(f, "symbol {symbol}: value and size lie outside the code"),
            SymbolOutsideSection { symbol, section } => {
                write!(f, "symbol {symbol}: value and size lie outside its section {section}")
            }
            BadSymbolSection { symbol, section } => {
                write!(f, "symbol {symbol}: defining section {section} does not exist or holds no data")
            }
            EntryOutsideCode { entry, code_size } => {
                write!(f, "entry point {entry:#x} is outside the code ({code_size} bytes)")
            }
            RelocationOutsideCode { relocation } => {
                write!(f, "relocation {relocation}: patched bytes lie outside the code")
            }
            RelocationBadSymbol { relocation, symbol } => {
                write!(f, "relocation {relocation}: symbol index {symbol} is past the symbol table")
            }
            RelocationOutsideData { relocation } => write!(
                f,
                "relocation {relocation}: patches bytes outside the data image's read-only and writable regions"
            ),
            DataRelocationKind { relocation, kind } => write!(
                f,
                "relocation {relocation}: {} patches instructions and cannot relocate data (abs64, pc32 and abs32 can)",
                kind.name()
            ),
            DataRelocationsOverlap { relocation } => write!(
                f,
                "relocation {relocation}: starts before the previous data relocation of its section ends (they must be sorted and not overlap)"
            ),
            DataRelocationsWithoutMarker { index } => write!(
                f,
                "section {index}: data relocations without the marker entry that makes older loaders refuse the module"
            ),
            BadNeeded { index, problem: NeededProblem::NameLength { line } } => write!(
                f,
                "section {index}: the needed libraries' name on line {line} is empty or longer than 255 bytes"
            ),
            BadNeeded { index, problem: NeededProblem::NameCharacters { line } } => write!(
                f,
                "section {index}: the needed libraries' name on line {line} is not a library's file name (letters, digits and ._+-, not starting with .)"
            ),
            BadNeeded { index, problem: NeededProblem::TooMany } => {
                write!(f, "section {index}: names more than 64 needed libraries")
            }
            BadFunctionNames { index, problem: FunctionNamesProblem::Truncated } => {
                write!(f, "section {index}: the function names are shorter than their count of records says")
            }
            BadFunctionNames { index, problem: FunctionNamesProblem::NameOutOfBounds { record } } => write!(
                f,
                "section {index}: function name record {record}'s name lies outside the section's names"
            ),
            BadFunctionNames { index, problem: FunctionNamesProblem::NameUnterminated { record } } => {
                write!(f, "section {index}: function name record {record}'s name is not followed by a NUL")
            }
            BadFunctionNames { index, problem: FunctionNamesProblem::OutsideCode { record } } => {
                write!(f, "section {index}: function name record {record} names a function outside the code")
            }
            BadUnwindTable {
                index,
                problem: problem @ (UnwindProblem::RecordOutside { at } | UnwindProblem::LongRecord { at }),
            } => write!(f, "section {index}: an unwind table {} (record at {at:#x})", problem.describe()),
            BadUnwindTable { index, problem } => {
                write!(f, "section {index}: an unwind table {}", problem.describe())
            }
            BadCallArray { index, problem } => {
                write!(f, "section {index}: a constructor or destructor array {}", problem.describe())
            }
            BadExtensionMarker { relocation } => write!(
                f,
                "relocation {relocation}: an extension marker out of place, or naming an unknown extension"
            ),
            RelocationBadKind { relocation, wire } => {
                write!(f, "relocation {relocation}: kind {wire} is not defined for this dialect")
            }
            NoteSectionEntry { index, field, value } => {
                let expected = match field {
                    "type" => "13 or 7, as the writers emit notes",
                    "alignment" => "0 or a power of two up to 65536",
                    _ => "0 (the text's end is its `# END_NOTE` terminator)",
                };
                write!(f, "section {index} (note.sdn): {field} is {value}, must be {expected}")
            }
            NoteOutOfBounds => f.write_str("note.sdn text lies outside the file"),
            NoteUnterminated => f.write_str("note.sdn text has no `# END_NOTE` terminator"),
            NoteNotUtf8 => f.write_str("note.sdn text is not UTF-8"),
            TemplateBadMagic => f.write_str("template section has a bad magic"),
            TemplateTruncated => f.write_str("template data ends in the middle of a field"),
            TemplateBadKind { value } => write!(f, "template kind {value} is unknown"),
            TemplateOffsetOutOfBounds { symbol } => {
                write!(f, "symbol {symbol}: template_offset does not point at a template entry")
            }
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte offset {})", self.kind, self.offset)
    }
}

impl core::error::Error for Error {}

/// Result with the format layer's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;
