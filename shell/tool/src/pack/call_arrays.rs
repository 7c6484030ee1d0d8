//! Constructors and destructors: every object's `.init_array*` and `.ctors*` (and
//! `.fini_array*`, `.dtors*`) merged into one constructor array and one destructor array of the
//! module (`docs/format.md`, "Constructors and destructors"), in the order `ld` gives them in a
//! shared library: sections with a priority first, by ascending priority (`.init_array.N` has
//! priority N, `.ctors.N` 65535 - N), then the others in object order. A `.ctors`/`.dtors`
//! section runs from its last entry to its first (crtstuff's order), so its entries are
//! reversed as they are merged, as `ld` does when it puts them in `.init_array`.

use std::collections::HashMap;

use object::{Object, ObjectSection, SectionIndex};
use smf_core::kinds::SECTION_READ;
use smf_core::write::{ModuleBuilder, SectionSpec};
use smf_core::{CallArray, SectionType};

use super::PackError;

/// Bytes of an entry (a 64-bit address).
const ENTRY: u64 = 8;

/// Where an input section's entries went in the module's array.
#[derive(Clone, Copy, Debug)]
pub(super) struct ArraySlot {
    /// The module's array section.
    pub(super) section: u32,
    /// Offset of the input section's entries in it.
    base: u64,
    /// Number of entries of the input section.
    entries: u64,
    /// Whether they run last to first (`.ctors`/`.dtors`), and are reversed.
    reversed: bool,
}

impl ArraySlot {
    /// Where the entry at `offset` in the input section goes in the module's array; `None`
    /// unless `offset` starts an entry.
    pub(super) fn place(&self, offset: u64) -> Option<u64> {
        if offset % ENTRY != 0 || offset / ENTRY >= self.entries {
            return None;
        }
        let entry = if self.reversed { self.entries - 1 - offset / ENTRY } else { offset / ENTRY };
        Some(self.base + entry * ENTRY)
    }
}

/// What a section named `name` is as a call array: which array, its priority, whether its
/// entries run last to first; `None` for other sections. `.preinit_array` is refused: it runs
/// before a program's libraries are initialized, which only an executable can ask for (`ld`
/// refuses it in a shared library too).
pub(super) fn call_array_of(name: &str) -> Result<Option<(CallArray, Option<u32>, bool)>, PackError> {
    let table = [
        (".init_array", CallArray::Constructors, false),
        (".fini_array", CallArray::Destructors, false),
        (".ctors", CallArray::Constructors, true),
        (".dtors", CallArray::Destructors, true),
    ];
    if name.starts_with(".preinit_array") {
        return Err(PackError::PreinitArray { section: name.to_owned() });
    }
    for (prefix, array, reversed) in table {
        let Some(rest) = name.strip_prefix(prefix) else { continue };
        if rest.is_empty() {
            return Ok(Some((array, None, reversed)));
        }
        if let Some(priority) = rest.strip_prefix('.').and_then(|p| p.parse::<u32>().ok()) {
            let priority = if reversed { 65535u32.saturating_sub(priority) } else { priority };
            return Ok(Some((array, Some(priority), reversed)));
        }
    }
    Ok(None)
}

/// Merges the call array sections of `files` into the module `builder` writes (one section per
/// array that has entries); returns where each input section's entries went.
pub(super) fn merge(
    files: &[object::File<'_>],
    builder: &mut ModuleBuilder,
) -> Result<HashMap<(usize, SectionIndex), ArraySlot>, PackError> {
    let mut slots = HashMap::new();
    for array in [CallArray::Constructors, CallArray::Destructors] {
        // (priority, object, section, entries, reversed), in object and section order.
        let mut inputs = Vec::new();
        for (f, file) in files.iter().enumerate() {
            for section in file.sections() {
                let Some((kind, priority, reversed)) = call_array_of(section.name().unwrap_or(""))? else {
                    continue;
                };
                if kind == array && section.size() > 0 {
                    inputs.push((priority, f, section.index(), section.size().div_ceil(ENTRY), reversed));
                }
            }
        }
        if inputs.is_empty() {
            continue;
        }
        // Stable: equal priorities (and every section without one) keep object order.
        inputs.sort_by_key(|&(priority, ..)| priority.map_or((1, 0), |p| (0, p)));
        let total: u64 = inputs.iter().map(|&(.., entries, _)| entries).sum();
        let name: &[u8] = match array {
            CallArray::Constructors => b".init_array",
            CallArray::Destructors => b".fini_array",
        };
        let flags = SECTION_READ | array.flag();
        let zeros = vec![0; usize::try_from(total * ENTRY).unwrap_or(0)];
        let section = builder.add_section(SectionSpec::new(SectionType::RoData, name, flags, zeros, ENTRY));
        let mut base = 0;
        for (_, f, index, entries, reversed) in inputs {
            slots.insert((f, index), ArraySlot { section, base, entries, reversed });
            base += entries * ENTRY;
        }
    }
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_the_array_the_priority_and_the_order() {
        let cases = [
            (".init_array", Some((CallArray::Constructors, None, false))),
            (".init_array.00101", Some((CallArray::Constructors, Some(101), false))),
            (".fini_array.65535", Some((CallArray::Destructors, Some(65535), false))),
            (".ctors", Some((CallArray::Constructors, None, true))),
            (".ctors.65434", Some((CallArray::Constructors, Some(101), true))),
            (".dtors", Some((CallArray::Destructors, None, true))),
            (".init_arrayx", None),
            (".text", None),
        ];
        for (name, expected) in cases {
            assert_eq!(call_array_of(name).unwrap(), expected, "{name}");
        }
        assert!(matches!(call_array_of(".preinit_array"), Err(PackError::PreinitArray { .. })));
    }

    #[test]
    fn reversed_sections_place_their_entries_last_to_first() {
        let slot = ArraySlot { section: 0, base: 16, entries: 3, reversed: true };
        assert_eq!([0, 8, 16].map(|o| slot.place(o)), [Some(32), Some(24), Some(16)]);
        let slot = ArraySlot { reversed: false, ..slot };
        assert_eq!([0, 8, 16].map(|o| slot.place(o)), [Some(16), Some(24), Some(32)]);
        assert_eq!([4, 24].map(|o| slot.place(o)), [None, None], "mid-entry, past the end");
    }
}
