//! The templates a loaded module keeps for load-time instantiation: a copy of its template-code
//! section and each template symbol's entry in it, indexed by name. Entries are located by the
//! rules the module's own reader applies ([`smf_format::Module::template_entries`]): an entry runs
//! to the next entry another template symbol points at, or to the end of the section, and one
//! that does not parse is left out.
//!
//! A template no template symbol names is found by the name its record carries (each `GTPL`
//! entry starts with its name), where the records can be told apart without symbols: a section
//! of short-form entries one after another, or a single entry running to the section's end.
//!
//! A load sorts the entries' offsets once and the indexes by name hash once (`n log n` for `n`
//! template symbols or records); finding a template is then a binary search, so asking for
//! every template of a module costs `n log n` too, never `n²`.

use alloc::vec::Vec;

use super::symtab::SymbolTable;
use super::{fallible, Invariant, LoadError};
use crate::lru::KeyedHasher;
use smf_format::template::{TemplateCode, TemplateEntry, TEMPLATE_CODE_HEADER};
use smf_format::Module;

/// A loaded module's templates.
#[derive(Debug, Default)]
pub(super) struct Templates {
    /// The template-code section's bytes (empty without templates).
    code: Vec<u8>,
    /// Every template symbol whose entry parses, sorted by (name hash, symbol index).
    index: Vec<Entry>,
    /// The section's records by their own names, sorted by (name hash, offset), where they can
    /// be delimited without symbols (see the module documentation).
    records: Vec<Record>,
}

/// One record of the section, found by the name it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Record {
    /// Its name's [`KeyedHasher::hash32`] under the process's key.
    hash: u32,
    /// Where it starts and ends in the section.
    start: usize,
    end: usize,
}

/// One template symbol's entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    /// Its name's [`KeyedHasher::hash32`] under the process's key.
    hash: u32,
    /// Its index in the symbol table (of duplicate names, the first one's entry is found).
    symbol: u32,
    /// Where its entry starts and ends in the section.
    start: usize,
    end: usize,
}

impl Templates {
    /// The templates of `module`, whose symbols, loaded, are `symbols`, and whose template
    /// symbols are `starts` (each one's index and template-code offset, in table order).
    pub(super) fn copy(
        module: &Module<'_>,
        symbols: &SymbolTable,
        starts: &[(u32, u64)],
    ) -> Result<Self, LoadError> {
        let Some(section) = module.template_code().filter(|_| module.dialect().has_symbol_extension()) else {
            return Ok(Self::default());
        };
        let oom = |bytes| LoadError::OutOfMemory { bytes };
        let records = records(&section)?;
        let count = starts.len();
        if count == 0 && records.is_empty() {
            return Ok(Self::default());
        }
        let mut offsets: Vec<u64> =
            fallible::with_capacity(count).ok_or(oom(fallible::bytes_of::<u64>(count)))?;
        offsets.extend(starts.iter().map(|&(_, offset)| offset));
        smf_format::sort::heapsort(&mut offsets);
        offsets.dedup();

        let hasher = KeyedHasher::per_process();
        let mut index: Vec<Entry> =
            fallible::with_capacity(count).ok_or(oom(fallible::bytes_of::<Entry>(count)))?;
        for &(symbol, offset) in starts {
            let next = offsets.partition_point(|&o| o <= offset);
            let end = offsets.get(next).copied().unwrap_or(section.len());
            // Parsing an entry reads its prefix and at most 255 parameter names, whatever its
            // extent: bounded per symbol.
            let Ok(entry) = section.entry_at(offset, end) else { continue };
            let name = symbols
                .name(symbol as usize)
                .ok_or_else(|| LoadError::internal(Invariant::TemplateSymbolOutsideTable))?;
            let (start, end) = entry_range(&entry)?;
            index.push(Entry { hash: hasher.hash32(name), symbol, start, end });
        }
        smf_format::sort::heapsort(&mut index);
        let code = fallible::copied(section.bytes()).ok_or(oom(section.bytes().len()))?;
        Ok(Self { code, index, records })
    }

    /// The template-code entry of the template symbol `name` (the first such symbol whose
    /// entry parses), else the first record of the section named `name`.
    pub(super) fn entry(&self, symbols: &SymbolTable, name: &[u8]) -> Option<&[u8]> {
        let hash = KeyedHasher::per_process().hash32(name);
        let first = self.index.partition_point(|e| e.hash < hash);
        let mut found = self.index.iter().skip(first).take_while(|e| e.hash == hash);
        if let Some(entry) = found.find(|e| symbols.name(e.symbol as usize) == Some(name)) {
            return self.code.get(entry.start..entry.end);
        }
        let section = TemplateCode::parse(&self.code).ok()?;
        let first = self.records.partition_point(|r| r.hash < hash);
        let mut records = self.records.iter().skip(first).take_while(|r| r.hash == hash);
        let record =
            records.find(|r| section.entry_at(r.start as u64, r.end as u64).is_ok_and(|e| e.name == name))?;
        self.code.get(record.start..record.end)
    }
}

/// Where `entry` (parsed from the section in memory) starts and ends in the section.
fn entry_range(entry: &TemplateEntry<'_>) -> Result<(usize, usize), LoadError> {
    let outside = || LoadError::internal(Invariant::TemplateEntryOutsideSection);
    let start = usize::try_from(entry.offset).map_err(|_| outside())?;
    let end = start.checked_add(entry.bytes.len()).ok_or_else(outside)?;
    Ok((start, end))
}

/// The records of `section` that can be delimited without symbols, by name: every entry of a
/// short-form section, or the one entry of a section that has one.
fn records(section: &TemplateCode<'_>) -> Result<Vec<Record>, LoadError> {
    let oom = |bytes| LoadError::OutOfMemory { bytes };
    let hasher = KeyedHasher::per_process();
    let mut records = Vec::new();
    let record = |entry: TemplateEntry<'_>| -> Result<Record, LoadError> {
        let (start, end) = entry_range(&entry)?;
        Ok(Record { hash: hasher.hash32(entry.name), start, end })
    };
    // One walk of the entries one after another: the records of a short-form section, kept
    // only if they cover it exactly. At most one entry per byte of section: bounded by the
    // file, whatever `count` claims.
    let mut end = TEMPLATE_CODE_HEADER as u64;
    for entry in section.short_entries() {
        let Ok(entry) = entry else {
            end = 0; // not short form
            break;
        };
        end = entry.offset.saturating_add(entry.bytes.len() as u64);
        records.try_reserve(1).map_err(|_| oom(fallible::grown_bytes::<Record>(records.len())))?;
        records.push(record(entry)?);
    }
    if end != section.len() {
        records.clear();
        if section.count() == 1 {
            if let Ok(entry) = section.entry_at(TEMPLATE_CODE_HEADER as u64, section.len()) {
                records.try_reserve(1).map_err(|_| oom(fallible::bytes_of::<Record>(1)))?;
                records.push(record(entry)?);
            }
        }
    }
    smf_format::sort::heapsort(&mut records);
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Invariant;
    use smf_format::template::TEMPLATE_CODE_MAGIC;

    #[test]
    fn an_entry_outside_the_section_is_an_internal_error() {
        let mut bytes = TEMPLATE_CODE_MAGIC.to_vec();
        bytes.extend_from_slice(&1u16.to_le_bytes());
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&[0, 2, 0, 0, 0, b'i', b'd', 0]); // a function `id`, no parameters
        let section = TemplateCode::parse(&bytes).unwrap();
        let mut entry = section.entry_at(TEMPLATE_CODE_HEADER as u64, section.len()).unwrap();
        assert_eq!(entry_range(&entry), Ok((TEMPLATE_CODE_HEADER, bytes.len())));
        entry.offset = u64::MAX;
        assert_eq!(entry_range(&entry), Err(LoadError::Internal(Invariant::TemplateEntryOutsideSection)));
    }
}
