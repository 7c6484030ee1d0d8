//! The data sections: each object's data, read-only data and bss carried into one SMF section
//! of each kind (`.rodata`, `.data`, `.bss`), as `ld` merges `.rodata.*` and the like, each part
//! at its alignment, and the common symbols allocated in the bss; everything else dropped with a
//! note or refused.

use object::{Object, ObjectSection, ObjectSymbol, SectionKind};
use smf_format::SectionType;

use super::{Packer, MOST_MERGED_ALIGNMENT};
use crate::pack::call_arrays::call_array_of;
use crate::pack::carried::{data_spec, is_read_only, Carried};
use crate::pack::covering::Covering;
use crate::pack::elf::{align, is_dropped, is_read_only_data, is_routine};
use crate::pack::unwind::is_unwind_table;
use crate::pack::PackError;

/// The SMF section of a data kind that the next section of that kind extends.
#[derive(Clone, Copy, Debug)]
pub(super) struct DataRun {
    /// Its index.
    section: u32,
    /// Its virtual size so far.
    size: u64,
}

impl<'d, 'f> Packer<'d, 'f> {
    /// Object `f`'s data, read-only data, bss; everything else is dropped with a note or refused.
    pub(super) fn place_data(&mut self, f: usize) {
        let mut debug_sections = 0;
        let file = &self.files[f];
        for section in file.sections() {
            let name = section.name().unwrap_or("");
            if is_unwind_table(name) && self.keep_unwind {
                continue; // merged into the module's unwind table (`unwind::merge`)
            }
            if let Some(what) = is_dropped(name) {
                if section.size() > 0 && name.starts_with(".debug") {
                    debug_sections += 1;
                } else if section.size() > 0 {
                    self.note(f, is_routine(name), format!("dropped section {name} ({what})"));
                }
                continue;
            }
            match self.data_section(f, &section, name) {
                Ok(None) => {}
                Ok(Some(_)) if !self.dialect.has_symbol_extension() => {
                    self.problem(f, PackError::R72Data { section: name.to_owned() })
                }
                Ok(Some((index, base))) => {
                    self.placed.insert((f, section.index()), Carried::Data { section: index, base });
                }
                Err(error) => self.problem(f, error),
            }
        }
        if debug_sections > 0 {
            self.note(f, false, format!("dropped the debug info ({debug_sections} .debug sections)"));
        }
    }

    /// Each common symbol that holds its name ([`Packer::find_definitions`]) in the module's
    /// bss, as `ld` allocates them: the largest size and alignment any object gives the name,
    /// in the order the objects define them; in R72, whose symbols cannot address data, each
    /// is a problem.
    pub(super) fn allocate_commons(&mut self) {
        let mut commons: Vec<_> =
            self.definitions.iter().filter(|(_, d)| d.common).map(|(name, d)| (d.at, name.clone())).collect();
        if commons.is_empty() {
            return;
        }
        commons.sort_by_key(|&((f, index), _)| (f, index.0));
        // Every common symbol's size and alignment (its value), the largest of each per name.
        let mut extents: std::collections::HashMap<&[u8], (u64, u64)> = std::collections::HashMap::new();
        let mut misaligned = Vec::new();
        for (f, file) in self.files.iter().enumerate() {
            for symbol in file.symbols().filter(|s| s.is_common()) {
                let Ok(name) = symbol.name_bytes() else { continue };
                // An alignment of 0 is none (1), as `ld` takes it.
                let alignment = common_alignment(file, symbol.index()).max(1);
                if !smf_format::module::alignment_ok(alignment) {
                    let symbol = String::from_utf8_lossy(name).into_owned();
                    misaligned.push((f, PackError::CommonAlignment { symbol, align: alignment }));
                    continue;
                }
                let extent = extents.entry(name).or_insert((0, 1));
                extent.0 = extent.0.max(symbol.size());
                extent.1 = extent.1.max(alignment);
            }
        }
        for (f, error) in misaligned {
            self.problem(f, error);
        }
        for (at, name) in commons {
            if !self.dialect.has_symbol_extension() {
                self.problem(at.0, PackError::Common { symbol: String::from_utf8_lossy(&name).into_owned() });
                continue;
            }
            // Each a power of two up to the most a module gives (the others refused above).
            let (size, alignment) = extents.get(name.as_slice()).copied().unwrap_or((0, 1));
            let (section, base) = self.append_data(SectionType::Bss, &[], alignment, size.max(1));
            let spec = smf_format::write::SymbolSpec::data(&name, section, base, size);
            let index = self.builder.add_symbol(spec.with_binding(smf_format::Binding::Global));
            self.symbols.insert(at, index);
        }
    }

    /// The SMF data section `section` goes to and where in it, if anywhere.
    pub(super) fn data_section(
        &mut self,
        f: usize,
        section: &object::Section<'d, 'f>,
        name: &str,
    ) -> Result<Option<(u32, u64)>, PackError> {
        let align = align(section);
        let bytes = || section.data();
        Ok(match section.kind() {
            _ if self.placed.contains_key(&(f, section.index())) => None, // in the code image
            // Every object has (often empty) .data and .bss: nothing to carry then.
            kind if section.size() == 0
                && (is_read_only_data(kind)
                    || matches!(kind, SectionKind::Data | SectionKind::UninitializedData)) =>
            {
                None
            }
            _ if is_read_only(section) => Some(self.append_data(SectionType::RoData, bytes()?, align, 0)),
            SectionKind::Data => Some(self.append_data(SectionType::Data, bytes()?, align, 0)),
            SectionKind::UninitializedData => {
                Some(self.append_data(SectionType::Bss, &[], align, section.size()))
            }
            SectionKind::Tls | SectionKind::UninitializedTls => {
                let covering = self.covering.entry(f).or_insert_with(|| Covering::of(&self.files[f]));
                let variables = covering.names_in(section.index());
                return Err(PackError::ThreadLocal { section: name.to_owned(), variables });
            }
            // Merged into the module's arrays, or refused there (`call_arrays::merge`).
            _ if call_array_of(name).map_or(true, |array| array.is_some()) => None,
            _ => {
                let bookkeeping = name.is_empty() || name.starts_with(".rela") || name.ends_with("tab");
                if section.size() > 0 && !bookkeeping {
                    self.note(f, false, format!("dropped section {name} (not loadable)"));
                }
                None
            }
        })
    }

    /// Places `bytes` (or, for bss, `bss` zero bytes) of `kind` at `alignment`: at the end of
    /// the last SMF section of that kind, as `ld` merges `.rodata.*` into `.rodata`, unless
    /// aligned more than [`MOST_MERGED_ALIGNMENT`]; else as a new section `.rodata`, `.data`
    /// or `.bss`. Returns the SMF section and where the bytes start in it.
    fn append_data(&mut self, kind: SectionType, bytes: &[u8], alignment: u64, bss: u64) -> (u32, u64) {
        let len = if kind == SectionType::Bss { bss } else { bytes.len() as u64 };
        let slot = match kind {
            SectionType::RoData => 0,
            SectionType::Data => 1,
            _ => 2,
        };
        // Where this part would start and end in the section before it of its kind (`None`:
        // aligned too much to merge, or past any image: a section of its own, which the
        // image limit then refuses).
        let merged = self.data_runs[slot].filter(|_| alignment <= MOST_MERGED_ALIGNMENT).and_then(|run| {
            let base = run.size.checked_next_multiple_of(alignment)?;
            Some((run.section, base, base.checked_add(len)?))
        });
        if let Some((section, base, end)) = merged {
            if let Some(spec) = self.builder.section_mut(section) {
                if kind != SectionType::Bss {
                    // Less than the alignment, after the bytes stored so far.
                    spec.data.resize(usize::try_from(base).unwrap_or(usize::MAX), 0);
                    spec.data.extend_from_slice(bytes);
                }
                spec.virtual_size = end;
                // The section's start at the largest alignment keeps every part at its own.
                spec.alignment = spec.alignment.max(alignment);
            }
            self.data_runs[slot] = Some(DataRun { section, size: end });
            return (section, base);
        }
        let name = match kind {
            SectionType::RoData => ".rodata",
            SectionType::Data => ".data",
            _ => ".bss",
        };
        let section = self.builder.add_section(data_spec(kind, name, bytes, alignment, bss));
        self.data_runs[slot] = Some(DataRun { section, size: len });
        (section, 0)
    }
}

/// The alignment a common symbol asks for: its ELF value (which `object` reads as address 0).
fn common_alignment(file: &object::File<'_>, index: object::SymbolIndex) -> u64 {
    use object::read::elf::Sym as _;
    match file {
        object::File::Elf64(elf) => {
            elf.elf_symbol_table().symbol(index).map_or(1, |symbol| symbol.st_value(elf.endian()))
        }
        _ => 1,
    }
}
