//! The packer: ELF relocatable objects into one SMF module, phase by phase (see [`super`] for
//! what becomes what). Several objects combine as `ld -r` would combine them: their code
//! concatenated into one image, their data sections side by side, a reference to a name
//! another object defines linked to that definition (a strong definition over weak ones; two
//! strong ones are an error), imports shared by name.

use std::collections::HashMap;

use object::elf;
use object::{
    Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget, SectionIndex, SectionKind,
    SymbolIndex, SymbolSection,
};
use smf_core::kinds::SectionFlags;
use smf_core::write::{ModuleBuilder, SectionSpec, SymbolSpec};
use smf_core::{Binding, Dialect, ErrorKind, RelocKind, SectionType};

use super::call_arrays::{self, call_array_of, ArraySlot};
use super::carried::{data_spec, is_read_only, Carried, Patched};
use super::covering::Covering;
use super::elf::{
    align, is_dropped, is_read_only_data, is_routine, relocation_kind, section_problems, Refused,
};
use super::unwind::{self, is_unwind_table};
use super::{Note, PackError, PackFailure, Problem, Site};
use smf_core::compress::Method;
use smf_core::load::LoadError;

/// Packs ELF relocatable objects (one or more, as `ld -r` would combine them) into one module
/// of `dialect`; returns it with the notes on what was dropped or moved, each marked routine or
/// not. `inputs` are (name for messages, bytes). A problem does not stop the packing: every
/// object is read to the end and the failure lists every problem found, each with its object.
///
/// The module written loads ([`super::trial_load`]); unwind tables that would stop it from
/// validating or loading (a record running past the table, or describing code outside the
/// module) are dropped with a note, as `ld` warns about a bad `.eh_frame` and links on.
pub fn pack(inputs: &[(String, Vec<u8>)], dialect: Dialect) -> Result<(Vec<u8>, Vec<Note>), PackFailure> {
    pack_with(inputs, dialect, None)
}

/// [`pack`], the module's code, data and rodata compressed with `compression` if given
/// (`docs/format.md`, "Compression"; R72 has no compression byte and is refused).
pub fn pack_with(
    inputs: &[(String, Vec<u8>)],
    dialect: Dialect,
    compression: Option<Method>,
) -> Result<(Vec<u8>, Vec<Note>), PackFailure> {
    if compression.is_some() && !dialect.has_compression_byte() {
        // Refused before anything is read: no other problem of the objects matters.
        let object = inputs.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join(", ");
        let error = PackError::Build(smf_core::write::BuildError::NoCompressionByte { dialect });
        return Err(Problem { object, error }.into());
    }
    match pack_objects(inputs, dialect, compression, true) {
        Err(failure) if matches!(failure.problems.as_slice(), [Problem { error, .. }] if is_unwind_problem(error)) =>
        {
            let (bytes, mut notes) = pack_objects(inputs, dialect, compression, false)?;
            let why = &failure.problems[0].error;
            let text = format!("unwind tables dropped (debuggers and exceptions will not see through this module's frames): {why}");
            notes.insert(0, Note { routine: false, text });
            Ok((bytes, notes))
        }
        packed => packed,
    }
}

/// Whether `error` is about the unwind tables the objects brought (the module would not
/// validate or load because of them).
fn is_unwind_problem(error: &PackError) -> bool {
    match error {
        PackError::DoesNotLoad(error) => matches!(error, LoadError::UnwindTable { .. }),
        PackError::Invalid(error) => matches!(error.kind, ErrorKind::BadUnwindTable { .. }),
        _ => false,
    }
}

/// [`pack`], keeping the objects' unwind tables if `unwind`.
fn pack_objects(
    inputs: &[(String, Vec<u8>)],
    dialect: Dialect,
    compression: Option<Method>,
    unwind: bool,
) -> Result<(Vec<u8>, Vec<Note>), PackFailure> {
    let mut problems = Vec::new();
    let (mut files, mut names) = (Vec::with_capacity(inputs.len()), Vec::with_capacity(inputs.len()));
    for (name, bytes) in inputs {
        match read_object(bytes) {
            Ok(file) => {
                for error in section_problems(&file) {
                    problems.push(Problem { object: name.clone(), error });
                }
                files.push(file);
                names.push(name.as_str());
            }
            Err(error) => problems.push(Problem { object: name.clone(), error }),
        }
    }
    let mut packer = Packer::new(&files, &names, dialect, problems, unwind && dialect.has_symbol_extension());
    if let Some(method) = compression {
        packer.builder.compress(method);
    }
    for f in 0..files.len() {
        packer.place_code(f);
    }
    for f in 0..files.len() {
        packer.place_data(f);
    }
    let finalizer = call_arrays::needs_finalizer(&files);
    let merged = call_arrays::merge(&files, &mut packer.builder, finalizer, &mut |f, error| {
        packer.problems.push(Problem { object: names[f].to_owned(), error })
    });
    packer.call_arrays = merged.slots;
    if packer.keep_unwind {
        packer.unwind = unwind::merge(&files, &mut packer.builder, &mut |f, error| {
            packer.problems.push(Problem { object: names[f].to_owned(), error })
        });
    }
    if let Some(array) = merged.finalizer_entry {
        packer.add_finalizer(array);
    }
    packer.find_definitions();
    for f in 0..files.len() {
        packer.add_symbols(f);
    }
    packer.link_references();
    for f in 0..files.len() {
        packer.add_relocations(f);
    }
    packer.set_entry_point();
    packer.finish().map_err(|mut failure| {
        // Object by object, in the order given (each object's in the order found).
        let position = |object: &str| inputs.iter().position(|(name, _)| name == object);
        failure.problems.sort_by_key(|problem| position(&problem.object));
        failure
    })
}

/// `bytes` as an x86-64 ELF relocatable object.
fn read_object(bytes: &[u8]) -> Result<object::File<'_>, PackError> {
    let file = object::File::parse(bytes).map_err(PackError::NotElf)?;
    if file.architecture() != object::Architecture::X86_64 || file.kind() != object::ObjectKind::Relocatable {
        return Err(PackError::NotX86Relocatable);
    }
    Ok(file)
}

/// The objects being packed, phase by phase: the code image, the data sections, which object
/// defines each global name, the symbols, the relocations, the entry point. ELF indices are
/// per object: maps are keyed by (object, index).
struct Packer<'d, 'f> {
    files: &'f [object::File<'d>],
    /// The objects' names, for messages (the notes name them when there are several).
    names: &'f [&'f str],
    dialect: Dialect,
    builder: ModuleBuilder,
    /// How each carried ELF section was placed.
    placed: HashMap<(usize, SectionIndex), Carried>,
    /// Where each constructor or destructor array section's entries went.
    call_arrays: HashMap<(usize, SectionIndex), ArraySlot>,
    /// Where each object's unwind tables went in the module's one table.
    unwind: unwind::Parts,
    /// Whether unwind tables are kept (else dropped with the sections pack does not load).
    keep_unwind: bool,
    /// The module's `__dso_handle` (its finalizer), when its code refers to it.
    dso_handle: Option<u32>,
    /// The SMF symbol of each ELF symbol carried over (or resolved to another object's).
    symbols: HashMap<(usize, SymbolIndex), u32>,
    /// The local SMF symbol standing for a section that relocations name.
    section_symbols: HashMap<(usize, SectionIndex), u32>,
    /// The definition each global name links to: a strong one over weak ones, the first weak
    /// one otherwise.
    definitions: HashMap<Vec<u8>, Definition>,
    /// References to another object's definition, linked once every symbol is added.
    references: Vec<((usize, SymbolIndex), (usize, SymbolIndex))>,
    /// Imports by name (one SMF import however many objects need it).
    imports: HashMap<Vec<u8>, u32>,
    /// What was dropped or moved, for stderr, each marked routine or not.
    notes: Vec<Note>,
    /// What stops the objects from packing, in the order found.
    problems: Vec<Problem>,
    /// Each object's functions and variables by address, built when a problem first needs it.
    covering: HashMap<usize, Covering>,
}

/// Where a global name is defined.
#[derive(Clone, Copy, Debug)]
struct Definition {
    at: (usize, SymbolIndex),
    weak: bool,
}

impl<'d, 'f> Packer<'d, 'f> {
    fn new(
        files: &'f [object::File<'d>],
        names: &'f [&'f str],
        dialect: Dialect,
        problems: Vec<Problem>,
        keep_unwind: bool,
    ) -> Self {
        Self {
            files,
            names,
            dialect,
            builder: ModuleBuilder::new(dialect),
            placed: HashMap::new(),
            call_arrays: HashMap::new(),
            unwind: unwind::Parts::new(),
            keep_unwind,
            dso_handle: None,
            symbols: HashMap::new(),
            section_symbols: HashMap::new(),
            definitions: HashMap::new(),
            references: Vec::new(),
            imports: HashMap::new(),
            notes: Vec::new(),
            problems,
            covering: HashMap::new(),
        }
    }

    /// A problem in object `f`; packing goes on to find the others.
    fn problem(&mut self, f: usize, error: PackError) {
        self.problems.push(Problem { object: self.names[f].to_owned(), error });
    }

    /// Where offset `offset` of object `f`'s section `section` is, for a problem there: the
    /// section's name and the function or variable covering the offset.
    fn site(&mut self, f: usize, section: SectionIndex, offset: u64) -> Site {
        let file = &self.files[f];
        let name = file.section_by_index(section).ok().and_then(|s| s.name().ok().map(str::to_owned));
        let covering = self.covering.entry(f).or_insert_with(|| Covering::of(file));
        Site {
            section: name.unwrap_or_default(),
            offset,
            symbol: covering.at(section, offset).map(str::to_owned),
        }
    }

    /// What a relocation of object `f` refers to, by name (a symbol's, or a section's).
    fn target_name(&self, f: usize, target: RelocationTarget) -> String {
        let file = &self.files[f];
        let name = match target {
            RelocationTarget::Symbol(index) => {
                file.symbol_by_index(index).ok().and_then(|s| match s.name().ok().filter(|n| !n.is_empty()) {
                    Some(name) => Some(name.to_owned()),
                    None => s
                        .section_index()
                        .and_then(|i| file.section_by_index(i).ok()?.name().ok().map(str::to_owned)),
                })
            }
            RelocationTarget::Section(index) => {
                file.section_by_index(index).ok().and_then(|s| s.name().ok().map(str::to_owned))
            }
            _ => None,
        };
        name.unwrap_or_else(|| "an unnamed symbol".to_owned())
    }

    /// A note about object `f` (named when there are several).
    fn note(&mut self, f: usize, routine: bool, text: String) {
        let text = if self.files.len() > 1 { format!("{}: {text}", self.names[f]) } else { text };
        self.notes.push(Note { routine, text });
    }

    /// The code offset where the next object's code goes (after everything placed so far).
    fn code_end(&self) -> u64 {
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
    fn place_code(&mut self, f: usize) {
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
    fn add_finalizer(&mut self, array: u32) {
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
    fn pad_code_to(&mut self, offset: u64) {
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

    /// Object `f`'s data, read-only data, bss; everything else is dropped with a note or refused.
    fn place_data(&mut self, f: usize) {
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
    fn data_section(
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

    /// Which object defines each global or weak name: a strong definition wins over weak ones;
    /// two strong ones are an error, as a static linker has it.
    fn find_definitions(&mut self) {
        for (f, file) in self.files.iter().enumerate() {
            for symbol in file.symbols() {
                let placed = symbol.section_index().is_some_and(|i| self.placed.contains_key(&(f, i)));
                if !placed
                    || !(symbol.is_global() || symbol.is_weak())
                    || symbol.kind() == object::SymbolKind::Section
                {
                    continue;
                }
                let name = match symbol.name_bytes() {
                    Ok(name) => name.to_vec(),
                    Err(error) => {
                        self.problem(f, PackError::Elf(error));
                        continue;
                    }
                };
                let here = Definition { at: (f, symbol.index()), weak: symbol.is_weak() };
                match self.definitions.get(&name) {
                    None => {}
                    Some(there) if there.weak && !here.weak => {}
                    Some(there) if !there.weak && !here.weak => {
                        let error = PackError::DefinedTwice {
                            name: String::from_utf8_lossy(&name).into_owned(),
                            first: self.names[there.at.0].to_owned(),
                            second: self.names[f].to_owned(),
                        };
                        self.problem(f, error);
                        continue;
                    }
                    Some(_) => continue,
                }
                self.definitions.insert(name, here);
            }
        }
    }

    /// One SMF symbol per ELF symbol of object `f` that is defined in a placed section or
    /// undefined (section symbols are added when relocations need them:
    /// [`Packer::section_symbol`]); a reference to a name another object defines (an undefined
    /// symbol, or a weak definition a strong one overrides) links to that definition instead.
    fn add_symbols(&mut self, f: usize) {
        let file = &self.files[f];
        for symbol in file.symbols() {
            let name = match symbol.name_bytes() {
                Ok(name) => name,
                Err(error) => {
                    self.problem(f, PackError::Elf(error));
                    continue;
                }
            };
            // A symbol without a name can be linked to by no other object or module: local.
            let binding = if name.is_empty() {
                Binding::Local
            } else if symbol.is_weak() {
                Binding::Weak
            } else if symbol.is_global() {
                Binding::Global
            } else {
                Binding::Local
            };
            let linked = binding != Binding::Local;
            if let Some(definition) =
                self.definitions.get(name).filter(|d| linked && d.at != (f, symbol.index()))
            {
                self.references.push(((f, symbol.index()), definition.at));
                continue;
            }
            if let Some(handle) =
                self.dso_handle.filter(|_| symbol.is_undefined() && name == call_arrays::DSO_HANDLE)
            {
                self.symbols.insert((f, symbol.index()), handle);
                continue;
            }
            let spec = match symbol.section() {
                // The linker defines _GLOBAL_OFFSET_TABLE_; SMF modules have their own GOT
                // slots, so a relocation that really needs it fails with a clear error.
                SymbolSection::Undefined if !name.is_empty() && name != b"_GLOBAL_OFFSET_TABLE_" => {
                    if let Some(&import) = self.imports.get(name) {
                        self.symbols.insert((f, symbol.index()), import);
                        continue;
                    }
                    let binding = if symbol.is_weak() { Binding::Weak } else { Binding::Global };
                    Some(SymbolSpec::import(name).with_binding(binding))
                }
                SymbolSection::Common => {
                    self.problem(f, PackError::Common { symbol: String::from_utf8_lossy(name).into_owned() });
                    continue;
                }
                SymbolSection::Section(index) if symbol.kind() != object::SymbolKind::Section => {
                    if !self.placed.contains_key(&(f, index)) {
                        continue;
                    }
                    let extent = (symbol.address(), symbol.size());
                    let Some(size) = self.size_within_section(f, index, name, extent) else { continue };
                    let placed = self.placed.get(&(f, index));
                    placed.map(|p| p.symbol(name, symbol.address(), size).with_binding(binding))
                }
                _ => None,
            };
            if let Some(mut spec) = spec {
                // A dialect that marks imports by value (S128) reads a non-local symbol of
                // value 0 and size 0 as an import: a definition there (an assembler label
                // without .size at the start of the code) gets size 1 so it stays one.
                let defined = spec.kind != smf_core::SymbolKind::Import;
                let looks_imported = spec.value == 0 && spec.size == 0 && spec.binding != Binding::Local;
                if defined && looks_imported && self.dialect.marks_imports_by_value() {
                    spec.size = 1;
                }
                let index = self.builder.add_symbol(spec);
                if !defined {
                    self.imports.insert(name.to_vec(), index);
                }
                self.symbols.insert((f, symbol.index()), index);
            }
        }
    }

    /// The size of symbol `name` at `value`, defined in section `index` of object `f`, cut at the
    /// section's end with a note if it runs past it (a size is what debuggers and profilers
    /// read; `ld` takes any); `None`, with a problem, if the symbol starts past the end.
    fn size_within_section(
        &mut self,
        f: usize,
        index: SectionIndex,
        name: &[u8],
        (value, size): (u64, u64),
    ) -> Option<u64> {
        let section_size = self.files[f].section_by_index(index).map_or(0, |s| s.size());
        let name = String::from_utf8_lossy(name).into_owned();
        if value > section_size {
            self.problem(f, PackError::SymbolOutsideSection { symbol: name, value, section_size });
            return None;
        }
        let room = section_size - value;
        if size > room {
            let text = format!("symbol {name}: size {size} runs past the end of its section, cut to {room}");
            self.notes.push(Note { routine: false, text });
        }
        Some(size.min(room))
    }

    /// Links each reference to another object's definition to that definition's SMF symbol.
    fn link_references(&mut self) {
        for (reference, definition) in std::mem::take(&mut self.references) {
            if let Some(&index) = self.symbols.get(&definition) {
                self.symbols.insert(reference, index);
            }
        }
    }

    /// The local symbol standing for section `index` (its start), added the first time a
    /// relocation names it.
    fn section_symbol(&mut self, f: usize, index: SectionIndex) -> Result<u32, PackError> {
        if let Some(&s) = self.section_symbols.get(&(f, index)) {
            return Ok(s);
        }
        let section = self.files[f].section_by_index(index)?;
        let name = section.name().unwrap_or("").as_bytes().to_vec();
        let Some(spec) = self.placed.get(&(f, index)).map(|p| p.symbol(&name, 0, 0)) else {
            return Err(PackError::UnloadedSection { section: String::from_utf8_lossy(&name).into_owned() });
        };
        let s = self.builder.add_symbol(spec.with_binding(Binding::Local));
        self.section_symbols.insert((f, index), s);
        Ok(s)
    }

    /// Object `f`'s relocations: of the code image, and of the data sections (data
    /// relocations, `docs/format.md`); each one that cannot be carried is a problem.
    fn add_relocations(&mut self, f: usize) {
        let file = &self.files[f];
        for section in file.sections() {
            if let Some(&slot) = self.call_arrays.get(&(f, section.index())) {
                self.add_call_array_entries(f, &section, slot);
                continue;
            }
            let placed = match self.placed.get(&(f, section.index())) {
                Some(&Carried::Code { offset, section, .. }) => Patched::Code { base: offset, section },
                Some(&Carried::Data { section }) => Patched::Data { section, base: 0 },
                None => match self.unwind.get(&(f, section.index())) {
                    Some(&(section, base)) => Patched::Data { section, base },
                    None => continue, // relocations of dropped sections go with them
                },
            };
            for (offset, relocation) in section.relocations() {
                if let Err(refused) = self.add_relocation(f, placed, (offset, section.size()), &relocation) {
                    if let Some(error) = refused.at(self.site(f, section.index(), offset)) {
                        self.problem(f, error);
                    }
                }
            }
        }
    }

    /// Relocation `relocation` at `offset` of an ELF section (of `section_size` bytes) of object
    /// `f` placed as `placed`.
    fn add_relocation(
        &mut self,
        f: usize,
        placed: Patched,
        (offset, section_size): (u64, u64),
        relocation: &object::Relocation,
    ) -> Result<(), Refused> {
        let RelocationFlags::Elf { r_type } = relocation.flags() else {
            return Err(Refused::NotElf);
        };
        let kind = match relocation_kind(r_type) {
            Some(kind) => kind,
            None => return Err(Refused::Type { r_type, target: self.target_name(f, relocation.target()) }),
        };
        if offset.checked_add(kind.width()).is_none_or(|end| end > section_size) {
            return Err(Refused::OutsideSection);
        }
        let symbol = self.relocation_symbol(f, relocation.target())?;
        let (base, code_section) = match placed {
            Patched::Code { base, section } => (base, section),
            Patched::Data { section, base } => {
                if !kind.applies_to_data() {
                    return Err(Refused::DataKind(kind));
                }
                self.builder.add_data_relocation(section, base + offset, symbol, kind, relocation.addend());
                return Ok(());
            }
        };
        // A GOT load of a symbol this object defines becomes a direct reference.
        let relaxable = matches!(r_type, elf::R_X86_64_GOTPCRELX | elf::R_X86_64_REX_GOTPCRELX);
        let kind = match usize::try_from(offset) {
            Ok(at) if relaxable && self.defined_here(f, relocation.target()) => self
                .builder
                .section_data_mut(code_section)
                .and_then(|code| super::relax::relax_got_load(code, at, relocation.addend()))
                .unwrap_or(kind),
            _ => kind,
        };
        // Relocations against local symbols of other sections keep their ELF meaning:
        // the local symbol's own value already holds its offset.
        self.builder.add_relocation(base + offset, symbol, kind, relocation.addend());
        Ok(())
    }

    /// The entries of object `f`'s call array `section`, each an `R_X86_64_64` relocation,
    /// as data relocations of the module's array where `slot` says they go; every entry that
    /// is not one is a problem.
    fn add_call_array_entries(&mut self, f: usize, section: &object::Section<'d, 'f>, slot: ArraySlot) {
        let entries = section.data().map_or(0, |data| data.len().div_ceil(8));
        let mut relocated = vec![false; entries];
        for (offset, relocation) in section.relocations() {
            let r_type = match relocation.flags() {
                RelocationFlags::Elf { r_type } => r_type,
                _ => {
                    let at = self.site(f, section.index(), offset);
                    self.problem(f, PackError::NotElfRelocation(at));
                    continue;
                }
            };
            let Some(place) = slot.place(offset).filter(|_| r_type == elf::R_X86_64_64) else {
                let at = self.site(f, section.index(), offset);
                self.problem(f, PackError::CallArrayEntry { at, r_type: Some(r_type.0) });
                continue;
            };
            match self.relocation_symbol(f, relocation.target()) {
                Ok(symbol) => {
                    self.builder.add_data_relocation(
                        slot.section,
                        place,
                        symbol,
                        RelocKind::Abs64,
                        relocation.addend(),
                    );
                }
                Err(refused) => {
                    if let Some(error) = refused.at(self.site(f, section.index(), offset)) {
                        self.problem(f, error);
                    }
                }
            }
            if let Some(entry) = relocated.get_mut((offset / 8) as usize) {
                *entry = true;
            }
        }
        for entry in relocated.iter().enumerate().filter(|(_, done)| !**done).map(|(entry, _)| entry) {
            let at = self.site(f, section.index(), entry as u64 * 8);
            self.problem(f, PackError::CallArrayEntry { at, r_type: None });
        }
    }

    /// The SMF symbol a relocation of object `f` refers to.
    fn relocation_symbol(&mut self, f: usize, target: RelocationTarget) -> Result<u32, Refused> {
        match target {
            RelocationTarget::Symbol(index) => match self.symbols.get(&(f, index)) {
                Some(&s) => Ok(s),
                None => match self.files[f].symbol_by_index(index)?.section() {
                    SymbolSection::Section(section) => Ok(self.section_symbol(f, section)?),
                    SymbolSection::Common => Err(Refused::Reported),
                    _ => Err(Refused::Symbol),
                },
            },
            RelocationTarget::Section(index) => Ok(self.section_symbol(f, index)?),
            _ => Err(Refused::AbsoluteTarget),
        }
    }

    /// Whether a relocation's target (in object `f`) is defined in a section this module
    /// carries, by `f` or by another object it links to.
    fn defined_here(&self, f: usize, target: RelocationTarget) -> bool {
        match target {
            RelocationTarget::Symbol(index) => self.files[f].symbol_by_index(index).is_ok_and(|s| {
                let in_f = s.section_index().is_some_and(|i| self.placed.contains_key(&(f, i)));
                let elsewhere = s.name_bytes().is_ok_and(|n| {
                    !n.is_empty() && !s.is_local() && self.definitions.get(n).is_some_and(|d| d.at.0 != f)
                });
                in_f || elsewhere
            }),
            RelocationTarget::Section(index) => self.placed.contains_key(&(f, index)),
            _ => false,
        }
    }

    /// The entry point: `main`, when an object defines it in the code.
    fn set_entry_point(&mut self) {
        let Some(definition) = self.definitions.get(&b"main"[..]) else { return };
        let (f, index) = definition.at;
        let Ok(main) = self.files[f].symbol_by_index(index) else { return };
        if let Some(Carried::Code { offset, .. }) =
            main.section_index().and_then(|i| self.placed.get(&(f, i)))
        {
            self.builder.entry_point(offset + main.address());
        }
    }

    /// The module and the notes, once the module is checked as `smf verify` checks it: an
    /// object whose symbols, relocations or entry point fall outside what it defines (or whose
    /// image is over the limit) is refused with the reason instead of written. Every problem
    /// found on the way fails it first.
    fn finish(self) -> Result<(Vec<u8>, Vec<Note>), PackFailure> {
        if !self.problems.is_empty() {
            return Err(PackFailure { problems: self.problems });
        }
        let all = self.names.join(", ");
        let smf =
            self.builder.build().map_err(|e| Problem { object: all.clone(), error: PackError::Build(e) })?;
        if let Err(e) = smf_core::Module::parse(&smf) {
            return Err(Problem { object: all, error: PackError::Invalid(e) }.into());
        }
        if let Err(e) = super::trial_load(&smf) {
            return Err(Problem { object: all, error: PackError::DoesNotLoad(e) }.into());
        }
        Ok((smf, self.notes))
    }
}

/// The key the finalizer's code is placed under (no ELF section has this index).
const FINALIZER_KEY: (usize, SectionIndex) = (usize::MAX, SectionIndex(usize::MAX));
