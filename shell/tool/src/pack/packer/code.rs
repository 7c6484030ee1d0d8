//! The code image: each object's code sections (and, in R72, its read-only data that needs
//! relocating) placed one after another at their alignments, and the module's finalizer.

use object::{Object, ObjectSection, SectionKind};
use smf_core::kinds::SectionFlags;
use smf_core::write::{SectionSpec, SymbolSpec};
use smf_core::{Binding, RelocKind, SectionType};

use super::{Packer, FINALIZER_KEY};
use crate::pack::call_arrays;
use crate::pack::carried::{is_read_only, Carried};
use crate::pack::elf::{align, is_dropped};
use crate::pack::PackError;

impl<'d, 'f> Packer<'d, 'f> {
    /// The code offset where the next object's code goes (after everything placed so far).
    pub(super) fn code_end(&self) -> u64 {
        self.placed
            .values()
            .filter_map(|c| match c {
                Carried::Code { offset, size, .. } => Some(offset + size),
                Carried::Data { .. } => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// Object `f`'s part of the code image, after the objects before it: code (and, in R72,
    /// which has no data sections, read-only data that needs relocating), concatenated, each
    /// section padded to the alignment of the next (the first to its own, after another
    /// object's code).
    pub(super) fn place_code(&mut self, f: usize) {
        let file = &self.files[f];
        let text = file.sections().filter(|s| s.kind() == SectionKind::Text && s.size() > 0);
        let in_code = !self.dialect.has_symbol_extension();
        let relocated_rodata = file.sections().filter(|s| {
            let dropped = s.name().is_ok_and(|n| is_dropped(n).is_some());
            in_code && is_read_only(s) && !dropped && s.size() > 0 && s.relocations().next().is_some()
        });
        let code: Vec<_> = text.chain(relocated_rodata).collect();
        let mut offset = match code.first() {
            Some(first) => self.code_end().div_ceil(align(first)) * align(first),
            None => return,
        };
        self.pad_code_to(offset);
        for (i, section) in code.iter().enumerate() {
            let bytes = match section.data() {
                Ok(bytes) => bytes,
                Err(error) => {
                    self.problem(f, PackError::Elf(error));
                    continue;
                }
            };
            let next_align = code.get(i + 1).map_or(1, align);
            let padded = (offset + bytes.len() as u64).div_ceil(next_align) * next_align - offset;
            let data = section.kind() != SectionKind::Text;
            let name = section.name().unwrap_or(if data { ".rodata" } else { ".text" });
            let flags = if data {
                self.note(
                    f,
                    false,
                    format!("packed {name} into the code image (read-only data with relocations)"),
                );
                SectionFlags::READ
            } else {
                SectionFlags::READ | SectionFlags::EXEC
            };
            let mut spec =
                SectionSpec::new(SectionType::Code, name.as_bytes(), flags, bytes.to_vec(), align(section));
            spec.virtual_size = padded;
            let index = self.builder.add_section(spec);
            self.placed
                .insert((f, section.index()), Carried::Code { offset, size: padded, section: index, data });
            offset += padded;
        }
    }

    /// The module's finalizer ([`call_arrays::FINALIZER`]) after the code, `__dso_handle`
    /// naming it, and the first entry of destructor array `array` pointing at it.
    pub(super) fn add_finalizer(&mut self, array: u32) {
        let offset = self.code_end().div_ceil(16) * 16;
        self.pad_code_to(offset);
        let code = call_arrays::FINALIZER.to_vec();
        let size = code.len() as u64;
        let section = self.builder.add_section(SectionSpec::new(
            SectionType::Code,
            b".smf.finalize",
            SectionFlags::READ | SectionFlags::EXEC,
            code,
            16,
        ));
        let handle = SymbolSpec::function(call_arrays::DSO_HANDLE, offset, size).with_binding(Binding::Local);
        let handle = self.builder.add_symbol(handle);
        let finalize = self.builder.add_symbol(SymbolSpec::import(b"__cxa_finalize"));
        self.builder.add_relocation(offset + call_arrays::FINALIZER_JUMP, finalize, RelocKind::Plt32, -4);
        self.builder.add_data_relocation(array, 0, handle, RelocKind::Abs64, 0);
        self.placed.insert(FINALIZER_KEY, Carried::Code { offset, size, section, data: false });
        self.dso_handle = Some(handle);
        self.note(0, true, "added a finalizer: __cxa_finalize(__dso_handle) at release".to_owned());
    }

    /// Pads the last code section so that the code image reaches `offset` (the next object's
    /// first section's alignment).
    pub(super) fn pad_code_to(&mut self, offset: u64) {
        let last = self.placed.values_mut().filter_map(|c| match c {
            Carried::Code { offset: at, size, section, .. } => Some((at, size, *section)),
            Carried::Data { .. } => None,
        });
        if let Some((at, size, section)) = last.max_by_key(|(at, _, _)| **at) {
            if *at + *size < offset {
                *size = offset - *at;
                self.builder.set_virtual_size(section, *size);
            }
        }
    }
}
