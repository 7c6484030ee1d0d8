//! The data sections: each object's data, read-only data and bss carried as SMF data
//! sections; everything else dropped with a note or refused.

use object::{Object, ObjectSection, SectionKind};
use smf_core::SectionType;

use super::Packer;
use crate::pack::call_arrays::call_array_of;
use crate::pack::carried::{data_spec, is_read_only, Carried};
use crate::pack::covering::Covering;
use crate::pack::elf::{align, is_dropped, is_read_only_data, is_routine};
use crate::pack::unwind::is_unwind_table;
use crate::pack::PackError;

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
                Ok(Some(index)) => {
                    self.placed.insert((f, section.index()), Carried::Data { section: index });
                }
                Err(error) => self.problem(f, error),
            }
        }
        if debug_sections > 0 {
            self.note(f, false, format!("dropped the debug info ({debug_sections} .debug sections)"));
        }
    }

    /// The SMF data section `section` becomes, if any.
    pub(super) fn data_section(
        &mut self,
        f: usize,
        section: &object::Section<'d, 'f>,
        name: &str,
    ) -> Result<Option<u32>, PackError> {
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
            _ if is_read_only(section) => {
                Some(self.builder.add_section(data_spec(SectionType::RoData, name, bytes()?, align, 0)))
            }
            SectionKind::Data => {
                Some(self.builder.add_section(data_spec(SectionType::Data, name, bytes()?, align, 0)))
            }
            SectionKind::UninitializedData => {
                Some(self.builder.add_section(data_spec(SectionType::Bss, name, &[], align, section.size())))
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
}
