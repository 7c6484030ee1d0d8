//! Functions named for debuggers and profilers only (our extension, `docs/format.md` "Function
//! names"): a note section named `note.names` (type 7, as `note.needed` is) listing functions
//! that nothing links to (a C file's `static` functions), by code offset, size and name, as
//! ELF keeps them in `.symtab` apart from the `.dynsym` a loader reads. A load copies the
//! section as it is and links none of them; a crash report, `smf_addr_info`, the perf map and
//! the description to debuggers read them when asked. A loader that does not know the
//! extension skips the note: the functions then have no names there.
//!
//! Layout (little-endian): the record count (u32) and 4 zero bytes, then per function a
//! 24-byte record (its code offset u64, its size u64, where its name starts in the names u32,
//! the name's length u32), then the names, each followed by a NUL (so that a name can be
//! handed to C as it lies).

/// Which rule a function-names section breaks ([`crate::ErrorKind::BadFunctionNames`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FunctionNamesProblem {
    /// Shorter than its count of records says.
    Truncated,
    /// A record (from 0) whose name does not lie in the section's names.
    NameOutOfBounds {
        /// The record.
        record: u32,
    },
    /// A record whose name is not followed by a NUL.
    NameUnterminated {
        /// The record.
        record: u32,
    },
    /// A record whose function does not lie in the code.
    OutsideCode {
        /// The record.
        record: u32,
    },
}

/// The name of the section.
pub const FUNCTION_NAMES_SECTION: &[u8] = b"note.names";

/// Bytes of the count before the records.
const HEADER: usize = 8;

/// Bytes of one record.
pub const RECORD: usize = 24;

/// One function of the section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamedFunction<'a> {
    /// Its offset in the code image.
    pub offset: u64,
    /// Its size in bytes (0: unknown).
    pub size: u64,
    /// Its name, followed by its NUL.
    pub name_with_nul: &'a [u8],
}

impl<'a> NamedFunction<'a> {
    /// Its name, without the NUL.
    pub fn name(&self) -> &'a [u8] {
        self.name_with_nul.split_last().map_or(&[], |(_, name)| name)
    }
}

/// The records and names of a `note.names` section.
#[derive(Clone, Copy, Debug, Default)]
pub struct FunctionNames<'a> {
    records: &'a [u8],
    names: &'a [u8],
}

impl<'a> FunctionNames<'a> {
    /// The section's bytes taken apart into records and names (`None` if they are shorter
    /// than the count says); each record is checked as it is read ([`FunctionNames::get`]).
    pub fn new(data: &'a [u8]) -> Option<Self> {
        let (header, rest) = data.split_first_chunk::<HEADER>()?;
        let count = u32::from_le_bytes(*header.first_chunk::<4>()?) as usize;
        let records = count.checked_mul(RECORD)?;
        let (records, names) = (rest.get(..records)?, rest.get(records..)?);
        Some(Self { records, names })
    }

    /// How many functions it lists.
    pub fn len(&self) -> usize {
        self.records.len() / RECORD
    }

    /// Whether it lists none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Function `index`; `None` past the end or where its name does not lie in the names
    /// followed by a NUL.
    pub fn get(&self, index: usize) -> Option<NamedFunction<'a>> {
        self.record(index).ok()
    }

    /// Every function, in the section's order (a record broken as [`FunctionNames::get`] says
    /// skipped).
    pub fn iter(self) -> impl Iterator<Item = NamedFunction<'a>> + 'a {
        (0..self.len()).filter_map(move |index| self.get(index))
    }

    /// Function `index`, or what is wrong with its record.
    fn record(&self, index: usize) -> Result<NamedFunction<'a>, FunctionNamesProblem> {
        let record = index.checked_mul(RECORD).and_then(|at| self.records.get(at..at.checked_add(RECORD)?));
        // At most `u32::MAX` records (the count is a u32).
        let number = u32::try_from(index).unwrap_or(u32::MAX);
        let bad_name = FunctionNamesProblem::NameOutOfBounds { record: number };
        let record = record.ok_or(bad_name)?;
        let u64_at =
            |at: usize| record.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
        let u32_at =
            |at: usize| record.get(at..at + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
        let (Some(offset), Some(size), Some(start), Some(len)) =
            (u64_at(0), u64_at(8), u32_at(16), u32_at(20))
        else {
            return Err(bad_name);
        };
        let start = start as usize;
        let nul = start.checked_add(len as usize).ok_or(bad_name)?;
        let name_with_nul = self.names.get(start..=nul).ok_or(bad_name)?;
        if name_with_nul.last() != Some(&0) {
            return Err(FunctionNamesProblem::NameUnterminated { record: number });
        }
        Ok(NamedFunction { offset, size, name_with_nul })
    }
}

/// Checks the section's bytes against a code image of `code_size` bytes: every record's name
/// in the names and followed by a NUL, every function inside the code. Constant work a record.
pub(crate) fn check(data: &[u8], code_size: u64) -> Result<(), FunctionNamesProblem> {
    let names = FunctionNames::new(data).ok_or(FunctionNamesProblem::Truncated)?;
    for (index, number) in (0..names.len()).zip(0u32..) {
        let function = names.record(index)?;
        if function.offset.checked_add(function.size).is_none_or(|end| end > code_size) {
            return Err(FunctionNamesProblem::OutsideCode { record: number });
        }
    }
    Ok(())
}

/// The section's bytes for `functions` (code offset, size, name without a NUL), in that order;
/// `None` if the count or the names do not fit the section's 32-bit fields.
#[cfg(feature = "alloc")]
pub fn write<'n>(
    functions: impl ExactSizeIterator<Item = (u64, u64, &'n [u8])> + Clone,
) -> Option<alloc::vec::Vec<u8>> {
    let count = u32::try_from(functions.len()).ok()?;
    let names: usize = functions.clone().map(|(_, _, name)| name.len() + 1).sum();
    let mut data = alloc::vec::Vec::with_capacity(HEADER + functions.len() * RECORD + names);
    data.extend_from_slice(&count.to_le_bytes());
    data.extend_from_slice(&[0; 4]);
    let mut at = 0u32;
    for (offset, size, name) in functions.clone() {
        let len = u32::try_from(name.len()).ok()?;
        data.extend_from_slice(&offset.to_le_bytes());
        data.extend_from_slice(&size.to_le_bytes());
        data.extend_from_slice(&at.to_le_bytes());
        data.extend_from_slice(&len.to_le_bytes());
        at = at.checked_add(len)?.checked_add(1)?;
    }
    for (_, _, name) in functions {
        data.extend_from_slice(name);
        data.push(0);
    }
    Some(data)
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;

    fn sample() -> alloc::vec::Vec<u8> {
        let functions: [(u64, u64, &[u8]); 2] = [(0, 16, b"first"), (16, 8, b"second")];
        write(functions.into_iter()).unwrap()
    }

    #[test]
    fn written_functions_read_back_with_their_nul() {
        let data = sample();
        assert_eq!(check(&data, 24), Ok(()));
        let names = FunctionNames::new(&data).unwrap();
        let read: alloc::vec::Vec<_> = names.iter().map(|f| (f.offset, f.size, f.name())).collect();
        assert_eq!(read, [(0, 16, &b"first"[..]), (16, 8, b"second")]);
        assert_eq!(names.get(1).unwrap().name_with_nul, b"second\0");
        assert_eq!(names.get(2), None);
    }

    #[test]
    fn every_broken_record_is_named() {
        let data = sample();
        // Records past the code.
        assert_eq!(check(&data, 23), Err(FunctionNamesProblem::OutsideCode { record: 1 }));
        // A count larger than the records there.
        let mut more = data.clone();
        more[0] = 9;
        assert_eq!(check(&more, 24), Err(FunctionNamesProblem::Truncated));
        assert_eq!(check(&data[..5], 24), Err(FunctionNamesProblem::Truncated));
        // A name running past the names, or not followed by a NUL.
        let mut long = data.clone();
        long[8 + RECORD + 20] = 7;
        assert_eq!(check(&long, 24), Err(FunctionNamesProblem::NameOutOfBounds { record: 1 }));
        let mut unterminated = data.clone();
        unterminated[8 + 20] = 4;
        assert_eq!(check(&unterminated, 24), Err(FunctionNamesProblem::NameUnterminated { record: 0 }));
        // A huge start or length never overflows.
        let mut huge = data;
        huge[8 + 16..8 + 24].copy_from_slice(&[0xff; 8]);
        assert_eq!(check(&huge, 24), Err(FunctionNamesProblem::NameOutOfBounds { record: 0 }));
        assert_eq!(FunctionNames::new(&huge).unwrap().iter().count(), 1, "the broken record skipped");
    }
}
