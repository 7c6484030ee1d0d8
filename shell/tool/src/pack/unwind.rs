//! Unwind tables: every object's `.eh_frame` merged into the module's one unwind table
//! (`docs/format.md`, "Unwind tables"), each object's records where its part starts, in object
//! order, and the terminator an unwinder stops at appended (objects have none: the linker's
//! crtend adds it). A record's pointers stay relative to itself, so parts can sit side by side;
//! their relocations become data relocations of the merged table at the part's offset.

use std::collections::HashMap;

use object::{Object, ObjectSection, SectionIndex};
use smf_format::write::{ModuleBuilder, SectionSpec};
use smf_format::{SectionFlags, SectionType};

use super::PackError;

/// Whether a section named `name` holds unwind tables.
pub(super) fn is_unwind_table(name: &str) -> bool {
    name == ".eh_frame"
}

/// Where each object's `.eh_frame` went: the module's table and the part's offset in it.
pub(super) type Parts = HashMap<(usize, SectionIndex), (u32, u64)>;

/// Merges the `.eh_frame` sections of `files` into one unwind table of the module `builder`
/// writes (none when no object has one); a section that cannot be read is given to `problem`.
pub(super) fn merge(
    files: &[object::File<'_>],
    builder: &mut ModuleBuilder,
    problem: &mut dyn FnMut(usize, PackError),
) -> Parts {
    let mut table = Vec::new();
    let mut parts = Vec::new();
    for (f, file) in files.iter().enumerate() {
        for section in file.sections().filter(|s| s.name().is_ok_and(is_unwind_table)) {
            match section.data() {
                Ok([]) => {}
                Ok(bytes) => {
                    parts.push(((f, section.index()), table.len() as u64));
                    table.extend_from_slice(bytes);
                }
                Err(error) => problem(f, PackError::Elf(error)),
            }
        }
    }
    if parts.is_empty() {
        return Parts::new();
    }
    table.extend_from_slice(&[0; 4]);
    let flags = SectionFlags::READ | SectionFlags::UNWIND;
    let section = builder.add_section(SectionSpec::new(SectionType::RoData, b".eh_frame", flags, table, 8));
    parts.into_iter().map(|(key, base)| (key, (section, base))).collect()
}
