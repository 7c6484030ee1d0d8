//! Decoding section and relocation entries from the file, shared by validation and the
//! accessors (symbols have a file of their own: `symbols.rs`).

use super::*;

impl<'a> Module<'a> {
    pub(super) fn section_entry_offset(&self, index: u32) -> u64 {
        self.section_table_at + u64::from(index) * self.dialect.section_entry_size() as u64
    }

    pub(super) fn symbol_entry_offset(&self, index: u32) -> u64 {
        self.symbol_table_at + u64::from(index) * self.dialect.symbol_entry_size() as u64
    }

    pub(super) fn section_view(&self, index: u32) -> Option<SectionView<'a>> {
        let size = self.dialect.section_entry_size();
        let start = (index as usize).checked_mul(size)?;
        SectionView::new_checked(self.section_table.get(start..start.checked_add(size)?)?, self.dialect)
    }

    pub(super) fn symbol_view(&self, index: u32) -> Option<SymbolView<'a>> {
        let size = self.dialect.symbol_entry_size();
        let start = (index as usize).checked_mul(size)?;
        SymbolView::new_checked(self.symbol_table.get(start..start.checked_add(size)?)?, self.dialect)
    }

    pub(super) fn decode_section(&self, index: u32) -> Result<Section<'a>> {
        let entry_offset = self.section_entry_offset(index);
        let view = self
            .section_view(index)
            .ok_or(Error::new(ErrorKind::SectionTableOutOfBounds { count: index }, entry_offset))?;
        let name = view.name();
        let section_type = SectionType::from_wire(view.section_type());
        let out_of_bounds = Error::new(ErrorKind::SectionOutOfBounds { index }, entry_offset);
        let (data, file_offset) = if Section::is_note_sdn(name) {
            (&[][..], self.base.saturating_add(view.offset()))
        } else {
            let start = self.base.checked_add(view.offset()).ok_or(out_of_bounds)?;
            let range = range_within(start, view.size(), self.region_end).ok_or(out_of_bounds)?;
            (&self.file[range], start)
        };
        Ok(Section {
            index,
            section_type,
            flags: SectionFlags::from_bits_retain(view.flags()),
            offset: view.offset(),
            size: view.size(),
            virtual_size: view.virtual_size(),
            alignment: view.alignment(),
            name,
            data,
            file_offset,
        })
    }

    /// Relocation `index`, whose entry is `entry` at file offset `at`, decoded and checked:
    /// its kind known to the dialect and, unless it is `None`, its symbol in the table and the
    /// bytes it patches inside the code ([`relocation_site`]).
    /// (The data relocations marker, checked with the sections, is never decoded: an entry with
    /// its offset and symbol here is out of place.)
    #[inline(always)]
    pub(super) fn decode_relocation(
        &self,
        index: u64,
        entry: &[u8; RELOCATION_ENTRY_SIZE],
        at: u64,
        image: RelocatedImage,
    ) -> Result<Relocation> {
        let fields = RelocationFields::of(entry);
        let wire = fields.kind;
        let Some(kind) = RelocKind::wire_table(self.dialect)[usize::from(wire)] else {
            return Err(relocation_error(
                ErrorKind::RelocationBadKind { relocation: index, wire },
                at + RelocationView::KIND_AT,
            ));
        };
        let relocation = Relocation {
            index,
            image,
            offset: fields.offset,
            symbol: fields.symbol_index,
            kind,
            wire,
            addend: fields.addend,
        };
        if kind == RelocKind::None {
            return Ok(relocation);
        }
        if relocation.symbol >= self.header.symbol_count {
            if fields.is_marker() {
                return Err(relocation_error(ErrorKind::BadExtensionMarker { relocation: index }, at));
            }
            let kind = ErrorKind::RelocationBadSymbol { relocation: index, symbol: relocation.symbol };
            return Err(relocation_error(kind, at + RelocationView::SYMBOL_AT));
        }
        match image {
            RelocatedImage::Code => {
                if relocation_site(relocation.offset, kind, self.code_size).is_none() {
                    return Err(relocation_error(ErrorKind::RelocationOutsideCode { relocation: index }, at));
                }
            }
            RelocatedImage::Data => self.check_data_relocation(&relocation, at)?,
        }
        Ok(relocation)
    }

    /// A data relocation's rules: a kind that patches plain bytes, inside one region of the
    /// data image.
    #[inline]
    fn check_data_relocation(&self, relocation: &Relocation, at: u64) -> Result<()> {
        let index = relocation.index;
        if !relocation.kind.applies_to_data() {
            let kind = ErrorKind::DataRelocationKind { relocation: index, kind: relocation.kind };
            return Err(Error::new(kind, at + RelocationView::KIND_AT));
        }
        let writable =
            self.writable_data_start..self.writable_data_start.saturating_add(self.read_write_size);
        if data_relocation_site(relocation.offset, relocation.kind, self.read_only_size, writable).is_none() {
            return Err(Error::new(ErrorKind::RelocationOutsideData { relocation: index }, at));
        }
        Ok(())
    }
}

/// A module's relocations ([`Module::relocations`]): the entries of each relocation section in
/// table order, without the data relocations marker. A plain loop over the sections rather
/// than a chain of iterator adapters, so that a walk compiles to the same code wherever it is
/// instantiated (the chain's closures were left out of line in some builds, 1.4x slower).
#[derive(Clone, Debug)]
pub struct Relocations<'m, 'a> {
    module: &'m Module<'a>,
    kinds: &'static [Option<RelocKind>; 256],
    /// The next section to look at.
    next_section: u32,
    /// The current section's entries not yet handed out.
    entries: &'a [u8],
    /// The image the current section patches.
    image: RelocatedImage,
    /// The next entry's position across all relocation sections.
    index: u64,
}

impl<'m, 'a> Relocations<'m, 'a> {
    pub(super) fn new(module: &'m Module<'a>) -> Self {
        let kinds = RelocKind::wire_table(module.dialect);
        Self { module, kinds, next_section: 0, entries: &[], image: RelocatedImage::Code, index: 0 }
    }

    /// Moves to the next relocation section; false after the last.
    fn next_section(&mut self) -> bool {
        while self.next_section < self.module.header.section_count {
            let index = self.next_section;
            self.next_section += 1;
            if !self.module.is_section_of(index, |t| t == SectionType::Relocations) {
                continue;
            }
            if let Some(section) = self.module.section(index) {
                self.entries = section.data;
                self.image = relocated_image(&section);
                return true;
            }
        }
        false
    }
}

impl Iterator for Relocations<'_, '_> {
    type Item = Relocation;

    #[inline]
    fn next(&mut self) -> Option<Relocation> {
        loop {
            let Some((entry, rest)) = self.entries.split_first_chunk::<RELOCATION_ENTRY_SIZE>() else {
                // (A partial entry at a section's end is refused by validation.)
                if self.next_section() {
                    continue;
                }
                return None;
            };
            self.entries = rest;
            let index = self.index;
            self.index += 1;
            if index == 0 && self.module.data_relocations_marker {
                continue;
            }
            let fields = RelocationFields::of(entry);
            // Validated at parse time: every kind is known.
            let Some(kind) = self.kinds[usize::from(fields.kind)] else { continue };
            return Some(Relocation {
                index,
                image: self.image,
                offset: fields.offset,
                symbol: fields.symbol_index,
                kind,
                wire: fields.kind,
                addend: fields.addend,
            });
        }
    }
}

/// The image the entries of `section`, a relocation section, patch.
pub(super) const fn relocated_image(section: &Section<'_>) -> RelocatedImage {
    if section.flags.contains(SectionFlags::RELOCATES_DATA) {
        RelocatedImage::Data
    } else {
        RelocatedImage::Code
    }
}

/// A relocation's error, built out of the decoding loop.
#[cold]
fn relocation_error(kind: ErrorKind, at: u64) -> Error {
    Error::new(kind, at)
}

/// The bytes a relocation of `kind` at `offset` patches, as a range of the code, if they lie
/// inside it (`code_size` bytes): the rule a relocation is decoded by (the loader patches
/// exactly these bytes).
#[inline(always)]
pub(super) fn relocation_site(
    offset: u64,
    kind: RelocKind,
    code_size: u64,
) -> Option<core::ops::Range<usize>> {
    let end = offset.checked_add(kind.width())?;
    if end > code_size {
        return None;
    }
    Some(usize::try_from(offset).ok()?..usize::try_from(end).ok()?)
}

/// The bytes a data relocation of `kind` at `offset` patches, as a range of the data image, if
/// they lie inside one of its regions: the read-only one (`0..read_only_size`) or the
/// `writable` one.
#[inline]
pub(crate) fn data_relocation_site(
    offset: u64,
    kind: RelocKind,
    read_only_size: u64,
    writable: core::ops::Range<u64>,
) -> Option<core::ops::Range<usize>> {
    let end = offset.checked_add(kind.width())?;
    let inside = end <= read_only_size || (offset >= writable.start && end <= writable.end);
    if !inside {
        return None;
    }
    Some(usize::try_from(offset).ok()?..usize::try_from(end).ok()?)
}
