//! The relocation sections a [`ModuleBuilder`] writes: `.rela.data` (data relocations, with
//! their offsets in the data image, sorted, after the marker older loaders refuse) and `.rela`
//! (code relocations).

use alloc::vec;
use alloc::vec::Vec;

use super::specs::{DataSite, RelocSpec};
use super::{BuildError, ModuleBuilder, SectionSpec};
use crate::kinds::{ModuleFlags, RelocKind, SectionFlags, SectionType};
use crate::module::{DataLayout, DataRegion};
use crate::wire::relocation::{self, RELOCATION_ENTRY_SIZE};

impl ModuleBuilder {
    /// The relocation sections, data relocations first (so that the marker leads the first).
    pub(super) fn relocation_sections(&self) -> Result<Vec<SectionSpec>, BuildError> {
        let mut sections = Vec::new();
        // The marker also keeps loaders that do not know the linked layout away from a module
        // linked for it (`docs/format.md`).
        let linked = self.header.flags.contains(ModuleFlags::LINKED_READ_ONLY);
        if !self.data_relocations.is_empty() || linked {
            let mut entries = self.data_relocation_entries()?;
            if self.data_relocations_marker {
                use crate::wire::relocation::marker;
                let marker = RelocSpec {
                    offset: marker::OFFSET,
                    symbol: marker::SYMBOL,
                    wire: Ok(marker::WIRE),
                    addend: marker::DATA_RELOCATIONS,
                };
                entries.insert(0, marker);
            }
            let data = self.relocation_bytes(&entries)?;
            let flags = SectionFlags::READ | SectionFlags::RELOCATES_DATA;
            sections.push(SectionSpec::new(SectionType::Relocations, b".rela.data", flags, data, 8));
        }
        if !self.relocations.is_empty() {
            let data = self.relocation_bytes(&self.relocations)?;
            sections.push(SectionSpec::new(
                SectionType::Relocations,
                b".rela",
                SectionFlags::empty(),
                data,
                8,
            ));
        }
        Ok(sections)
    }

    /// The entries of a relocation section.
    fn relocation_bytes(&self, relocations: &[RelocSpec]) -> Result<Vec<u8>, BuildError> {
        let mut data = vec![0u8; relocations.len() * RELOCATION_ENTRY_SIZE];
        for (r, out) in relocations.iter().zip(data.chunks_exact_mut(RELOCATION_ENTRY_SIZE)) {
            let wire =
                r.wire.map_err(|kind| BuildError::RelocationNotInDialect { kind, dialect: self.dialect })?;
            relocation::encode(out, r.offset, r.symbol, wire, r.addend);
        }
        Ok(data)
    }

    /// The data relocations with offsets in the data image (each data section placed as the
    /// reader places it), sorted by offset.
    fn data_relocation_entries(&self) -> Result<Vec<RelocSpec>, BuildError> {
        // Where each section lies in the data image (None: not a data section).
        let mut layout = DataLayout::default();
        let mut placed: Vec<Option<(DataRegion, u64, u64)>> = Vec::with_capacity(self.sections.len());
        for s in &self.sections {
            // The size the section table gets (`section_entries`).
            let size = s.virtual_size.max(s.data.len() as u64);
            let place = s.section_type.is_data().then(|| layout.place_raw(s.section_type, s.alignment, size));
            placed.push(place.flatten().map(|(region, at)| (region, at, size)));
        }
        let writable_start = layout.writable_start().ok_or(BuildError::TooLarge)?;
        let mut entries = Vec::with_capacity(self.data_relocations.len());
        for spec in &self.data_relocations {
            let offset = match spec.at {
                DataSite::InImage(offset) => offset,
                DataSite::InSection(section, offset) => {
                    let outside = || BuildError::DataRelocationOutsideSection { section, offset };
                    let (region, at, size) =
                        placed.get(section as usize).copied().flatten().ok_or_else(outside)?;
                    // The patched bytes lie in the section (a kind the dialect lacks has no
                    // width here: `relocation_bytes` refuses it).
                    let width = spec.relocation.wire.ok().and_then(|w| RelocKind::from_wire(self.dialect, w));
                    let end = offset.checked_add(width.map_or(0, RelocKind::width));
                    if offset >= size || end.is_none_or(|end| end > size) {
                        return Err(outside());
                    }
                    let start = match region {
                        DataRegion::ReadOnly => Some(at),
                        DataRegion::ReadWrite => writable_start.checked_add(at),
                    };
                    start.and_then(|start| start.checked_add(offset)).ok_or(BuildError::TooLarge)?
                }
            };
            entries.push(RelocSpec { offset, ..spec.relocation.clone() });
        }
        entries.sort_by_key(|r| r.offset);
        // Readers take data relocations sorted and apart (each patches bytes no other does);
        // raw ones (tests writing what readers must refuse) are written as they are.
        let raw = self.data_relocations.iter().any(|r| matches!(r.at, DataSite::InImage(_)));
        let width = |r: &RelocSpec| {
            r.wire.ok().and_then(|w| RelocKind::from_wire(self.dialect, w)).map_or(0, RelocKind::width)
        };
        let overlapping =
            entries.windows(2).find(|pair| pair[0].offset.saturating_add(width(&pair[0])) > pair[1].offset);
        if let Some(pair) = overlapping.filter(|_| !raw) {
            return Err(BuildError::DataRelocationsOverlap { offset: pair[1].offset });
        }
        Ok(entries)
    }
}
