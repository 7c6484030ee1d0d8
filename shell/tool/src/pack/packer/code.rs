//! The code image: each object's code sections (and, in R72, its read-only data that needs
//! relocating) placed one after another at their alignments, and the module's finalizer. A run
//! of code sections becomes one SMF section `.text` (and a run of read-only data one
//! `.rodata`), the padding between them stored as zeros, as `ld` merges `.text.*` into
//! `.text`: a compiler's one section per function (`-ffunction-sections`, which most builds
//! use) would otherwise cost a section entry each and compress apart.

use object::{Object, ObjectSection, SectionKind};
use smf_format::kinds::SectionFlags;
use smf_format::write::{SectionSpec, SymbolSpec};
use smf_format::{Binding, RelocKind, SectionType};

use super::{Packer, FINALIZER_KEY, MOST_MERGED_ALIGNMENT};
use crate::pack::call_arrays;
use crate::pack::carried::{is_read_only, Carried};
use crate::pack::elf::{align, is_dropped};
use crate::pack::PackError;

/// The SMF code section the code image ends in: the next code section of the same kind extends
/// it.
#[derive(Clone, Copy, Debug)]
pub(super) struct CodeRun {
    /// Its index.
    section: u32,
    /// Its offset in the code image.
    start: u64,
    /// Where it ends in the code image (its virtual size after `start`).
    end: u64,
    /// Read-only data packed into the code (else code).
    data: bool,
    /// Whether later sections may extend it (not the finalizer).
    open: bool,
}

/// A code section to place: its bytes at `offset` in the code image, taking `padded` bytes
/// there (up to the next section's alignment).
struct Part<'b> {
    bytes: &'b [u8],
    alignment: u64,
    offset: u64,
    padded: u64,
    data: bool,
}

impl<'d, 'f> Packer<'d, 'f> {
    /// The code offset where the next object's code goes (after everything placed so far).
    pub(super) fn code_end(&self) -> u64 {
        self.code.map_or(0, |run| run.end)
    }

    /// Object `f`'s part of the code image, after the objects before it: code (and, in R72,
    /// which has no data sections, its read-only data), concatenated, each
    /// section padded to the alignment of the next (the first to its own, after another
    /// object's code), runs of them merged ([`Packer::append_code`]).
    pub(super) fn place_code(&mut self, f: usize) {
        let file = &self.files[f];
        let text = file.sections().filter(|s| s.kind() == SectionKind::Text && s.size() > 0);
        let in_code = !self.dialect.has_symbol_extension();
        let read_only_data = file.sections().filter(|s| {
            let dropped = s.name().is_ok_and(|n| is_dropped(n).is_some());
            in_code && is_read_only(s) && !dropped && s.size() > 0
        });
        let code: Vec<_> = text.chain(read_only_data).collect();
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
            let flags = if data {
                let name = section.name().unwrap_or(".rodata");
                self.note(f, false, format!("packed {name} into the code image (R72 has no data sections)"));
                SectionFlags::READ
            } else {
                SectionFlags::READ | SectionFlags::EXEC
            };
            let part = Part { bytes, alignment: align(section), offset, padded, data };
            let (index, within) = self.append_code(&part, flags);
            self.placed.insert((f, section.index()), Carried::Code { offset, section: index, within, data });
            offset += padded;
        }
    }

    /// The module's finalizer ([`call_arrays::FINALIZER`]) after the code, `__dso_handle`
    /// naming it, and the first entry of destructor array `array` pointing at it; after it, the
    /// module's own `registering` functions (`atexit`, ...: [`call_arrays::Registering`]), each
    /// at a multiple of 16.
    pub(super) fn add_finalizer(&mut self, array: u32, registering: &[call_arrays::Registering]) {
        let mut code = call_arrays::FINALIZER.to_vec();
        let finalizer_size = code.len() as u64;
        let mut shims = Vec::with_capacity(registering.len());
        for function in registering {
            code.resize(code.len().div_ceil(16) * 16, 0xCC);
            let at = code.len();
            let (shim, jump) = function.code(at);
            code.extend_from_slice(&shim);
            shims.push((function, at as u64, shim.len() as u64, (at + jump) as u64));
        }
        let (section, offset) = self.append_own_code(b".smf.finalize", code);
        let handle = SymbolSpec::function(call_arrays::DSO_HANDLE, offset, finalizer_size)
            .with_binding(Binding::Local);
        let handle = self.builder.add_symbol(handle);
        let finalize = self.builder.add_symbol(SymbolSpec::import(b"__cxa_finalize"));
        self.builder.add_relocation(offset + call_arrays::FINALIZER_JUMP, finalize, RelocKind::Plt32, -4);
        for (function, at, size, jump) in shims {
            let own = SymbolSpec::function(function.name, offset + at, size).with_binding(Binding::Local);
            let own = self.builder.add_symbol(own);
            self.registering.push((function.name, own));
            let called = self.builder.add_symbol(SymbolSpec::import(function.calls));
            self.builder.add_relocation(offset + jump, called, RelocKind::Plt32, -4);
            let (name, calls) =
                (String::from_utf8_lossy(function.name), String::from_utf8_lossy(function.calls));
            self.note(
                0,
                true,
                format!("added {name}: {calls}(..., __dso_handle), its handlers gone at release"),
            );
        }
        self.builder.add_data_relocation(array, 0, handle, RelocKind::Abs64, 0);
        self.placed.insert(FINALIZER_KEY, Carried::Code { offset, section, within: 0, data: false });
        self.dso_handle = Some(handle);
        self.note(0, true, "added a finalizer: __cxa_finalize(__dso_handle) at release".to_owned());
    }

    /// Code pack writes itself (the finalizer, the indirect functions' stubs), as an SMF code
    /// section `name` of its own, at the next multiple of 16 of the code image, which no later
    /// code extends; returns the section and where the code starts in the image.
    pub(super) fn append_own_code(&mut self, name: &[u8], code: Vec<u8>) -> (u32, u64) {
        let start = self.code_end().div_ceil(16) * 16;
        self.pad_code_to(start);
        let end = start + code.len() as u64;
        let spec =
            SectionSpec::new(SectionType::Code, name, SectionFlags::READ | SectionFlags::EXEC, code, 16);
        let section = self.builder.add_section(spec);
        self.code = Some(CodeRun { section, start, end, data: false, open: false });
        (section, start)
    }

    /// Pads the last code section so that the code image reaches `offset` (the next object's
    /// first section's alignment).
    pub(super) fn pad_code_to(&mut self, offset: u64) {
        if let Some(run) = self.code.as_mut().filter(|run| run.end < offset) {
            run.end = offset;
            self.builder.set_virtual_size(run.section, offset - run.start);
        }
    }

    /// Places `part` (the code image reaches its offset): at the end of the last SMF code
    /// section when that holds the same kind and `part`'s alignment is at most
    /// [`MOST_MERGED_ALIGNMENT`], else as a new section `.text` (or `.rodata`) with `flags`.
    /// Returns the SMF section and where `part` starts in it. A code section's alignment is
    /// the largest of the parts it holds (each lies at a multiple of its own in the code image,
    /// so an image placed at that alignment keeps every part aligned).
    fn append_code(&mut self, part: &Part<'_>, flags: SectionFlags) -> (u32, u64) {
        let extends = |run: &CodeRun| {
            run.open
                && run.data == part.data
                && run.end == part.offset
                && part.alignment <= MOST_MERGED_ALIGNMENT
        };
        if let Some(run) = self.code.as_mut().filter(|run| extends(run)) {
            let within = part.offset - run.start;
            if let Some(spec) = self.builder.section_mut(run.section) {
                // Less than the alignment, after the bytes stored so far.
                spec.data.resize(usize::try_from(within).unwrap_or(usize::MAX), 0);
                spec.data.extend_from_slice(part.bytes);
                spec.virtual_size = within + part.padded;
                spec.alignment = spec.alignment.max(part.alignment);
            }
            run.end = part.offset + part.padded;
            return (run.section, within);
        }
        let name: &[u8] = if part.data { b".rodata" } else { b".text" };
        let mut spec = SectionSpec::new(SectionType::Code, name, flags, part.bytes.to_vec(), part.alignment);
        spec.virtual_size = part.padded;
        let section = self.builder.add_section(spec);
        let end = part.offset + part.padded;
        self.code = Some(CodeRun { section, start: part.offset, end, data: part.data, open: true });
        (section, 0)
    }
}
