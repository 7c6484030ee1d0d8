//! `smf pack INPUT.o -o OUTPUT.smf [--dialect s128|r96|r72]`: an x86-64 ELF relocatable object
//! (as `gcc -c -O2 -fPIC` or `clang` emit) becomes an SMF module.
//!
//! - `.text*` sections become code (each padded to the next one's alignment, since SMF code
//!   sections are concatenated without padding); `.rodata*`, `.data*`, `.bss*` become data.
//! - Read-only data that carries relocations (switch jump tables in `.rodata`, pointer tables in
//!   `.data.rel.ro*`) follows the code into the code image: SMF relocates only the code image,
//!   and read-only bytes there are sealed with it. Its objects become data symbols at code
//!   offsets.
//! - Global and weak functions and objects become symbols with their binding; local symbols and
//!   section symbols that relocations use become local symbols; undefined symbols become imports.
//! - Relocations in code: `R_X86_64_64` -> abs64, `PC32` -> pc32, `PLT32` -> plt32, `GOTPCREL`,
//!   `GOTPCRELX`, `REX_GOTPCRELX` -> got_pc32 (the loader gives each such symbol a GOT slot),
//!   `32`/`32S` -> abs32 (S128 only). A `GOTPCRELX`/`REX_GOTPCRELX` load of a symbol the object
//!   defines is relaxed to a direct reference (pc32) as a static linker would ([`crate::relax`]).
//! - Unwind tables, notes, comments and debug info are dropped with a note on stderr; anything
//!   that cannot be represented (relocations in writable data, thread-local storage,
//!   constructors, other relocation types) is an error naming it.
//! - The entry point is `main` when the object defines it.

use std::collections::HashMap;
use std::ffi::OsString;

use object::elf;
use object::{
    Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget, SectionIndex, SectionKind,
    SymbolIndex, SymbolSection,
};
use smf_core::kinds::{SECTION_EXEC, SECTION_READ};
use smf_core::write::{ModuleBuilder, SectionSpec, SymbolSpec};
use smf_core::{Binding, Dialect, RelocKind, SectionType};

use crate::elf::{is_dropped, is_read_only_data, is_relro_name, is_routine, relocation_name};

const USAGE: &str = "usage: smf pack INPUT.o -o OUTPUT.smf [--dialect s128|r96|r72] [--quiet | --verbose]";

/// Which notes `smf pack` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Say {
    /// None.
    Nothing,
    /// What a reader may want to know: debug info dropped, read-only data moved into the
    /// code image, sections that cannot be loaded.
    Notable,
    /// Also what every compiled object has (unwind tables, notes, compiler identification).
    Everything,
}

/// Runs `smf pack`; returns the exit status (0 ok, 1 cannot pack, 2 usage).
pub(crate) fn run(args: &[OsString]) -> i32 {
    let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let (mut input, mut output, mut dialect, mut say) = (None, None, Dialect::S128, Say::Notable);
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "-o" => output = iter.next().cloned(),
            "--quiet" => say = Say::Nothing,
            "--verbose" => say = Say::Everything,
            "--dialect" => match iter.next().and_then(|d| Dialect::from_name(d)) {
                Some(d) => dialect = d,
                None => return usage("--dialect takes s128, r96 or r72"),
            },
            flag if flag.starts_with('-') => return usage(&format!("unknown option `{flag}`")),
            file if input.is_none() => input = Some(file.to_owned()),
            extra => return usage(&format!("unexpected argument `{extra}`")),
        }
    }
    let (Some(input), Some(output)) = (input, output) else {
        return usage("pack needs INPUT.o and -o OUTPUT.smf");
    };
    let result = std::fs::read(&input)
        .map_err(|e| format!("{input}: {e}"))
        .and_then(|bytes| pack(&bytes, dialect).map_err(|e| format!("{input}: {e}")))
        .and_then(|(smf, notes)| {
            for note in notes {
                let level = if note.routine { Say::Everything } else { Say::Notable };
                if say >= level {
                    eprintln!("smf pack: {input}: {}", note.text);
                }
            }
            std::fs::write(&output, smf).map_err(|e| format!("{output}: {e}"))
        });
    match result {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("smf pack: {message}");
            1
        }
    }
}

fn usage(message: &str) -> i32 {
    eprintln!("smf pack: {message}\n{USAGE}");
    2
}

/// How an ELF section is carried over.
enum Carried {
    /// In the code image at this offset, in this SMF section: code, or read-only data that
    /// needs relocating (`data` set).
    Code { offset: u64, section: u32, data: bool },
    /// A data section with this SMF section index.
    Data { section: u32 },
}

impl Carried {
    /// A global symbol `name` of `size` bytes at `value` in the section placed so: a function
    /// in code, a data symbol of its data section, or a data symbol without a defining section
    /// (whose value is then a code offset) in read-only data packed into the code image.
    fn symbol(&self, name: &[u8], value: u64, size: u64) -> SymbolSpec {
        match *self {
            Carried::Code { offset, data: false, .. } => {
                SymbolSpec::function(name, offset.saturating_add(value), size)
            }
            Carried::Code { offset, data: true, .. } => {
                SymbolSpec::new(name, smf_core::SymbolKind::Data, offset.saturating_add(value), size)
            }
            Carried::Data { section } => SymbolSpec::data(name, section, value, size),
        }
    }
}

/// Something pack did that its user may want to know.
#[derive(Clone, Debug)]
pub(crate) struct Note {
    /// Every compiled object gets it (printed only with `--verbose`).
    routine: bool,
    /// What happened.
    text: String,
}

impl Note {
    fn notable(text: String) -> Self {
        Self { routine: false, text }
    }
}

/// Packs an ELF relocatable object into a module of `dialect`; returns it with the notes on
/// what was dropped or moved, each marked routine or not.
pub(crate) fn pack(bytes: &[u8], dialect: Dialect) -> Result<(Vec<u8>, Vec<Note>), String> {
    let file = object::File::parse(bytes).map_err(|e| format!("not an ELF object: {e}"))?;
    if file.architecture() != object::Architecture::X86_64 || file.kind() != object::ObjectKind::Relocatable {
        return Err("only x86-64 ELF relocatable objects (.o) can be packed".into());
    }
    let mut packer = Packer::new(&file, dialect);
    packer.place_code()?;
    packer.place_data()?;
    packer.add_symbols()?;
    packer.add_relocations()?;
    packer.set_entry_point();
    packer.finish()
}

/// One object being packed, phase by phase: the code image, the data sections, the symbols,
/// the relocations, the entry point.
struct Packer<'d, 'f> {
    file: &'f object::File<'d>,
    dialect: Dialect,
    builder: ModuleBuilder,
    /// How each carried ELF section was placed.
    placed: HashMap<SectionIndex, Carried>,
    /// The SMF symbol of each ELF symbol carried over.
    symbols: HashMap<SymbolIndex, u32>,
    /// The local SMF symbol standing for a section that relocations name.
    section_symbols: HashMap<SectionIndex, u32>,
    /// What was dropped or moved, for stderr, each marked routine or not.
    notes: Vec<Note>,
}

impl<'d, 'f> Packer<'d, 'f> {
    fn new(file: &'f object::File<'d>, dialect: Dialect) -> Self {
        Self {
            file,
            dialect,
            builder: ModuleBuilder::new(dialect),
            placed: HashMap::new(),
            symbols: HashMap::new(),
            section_symbols: HashMap::new(),
            notes: Vec::new(),
        }
    }

    /// The code image: code, then read-only data that needs relocating, concatenated, each
    /// section padded to the alignment of the next.
    fn place_code(&mut self) -> Result<(), String> {
        let file = self.file;
        let text = file.sections().filter(|s| s.kind() == SectionKind::Text && s.size() > 0);
        let relocated_rodata = file.sections().filter(|s| {
            let read_only = is_read_only_data(s.kind()) || s.name().is_ok_and(is_relro_name);
            let dropped = s.name().is_ok_and(|n| is_dropped(n).is_some());
            read_only && !dropped && s.size() > 0 && s.relocations().next().is_some()
        });
        let code: Vec<_> = text.chain(relocated_rodata).collect();
        let mut offset = 0u64;
        for (i, section) in code.iter().enumerate() {
            let bytes = section.data().map_err(|e| e.to_string())?;
            let next_align = code.get(i + 1).map_or(1, |n| n.align().max(1));
            let padded = (offset + bytes.len() as u64).div_ceil(next_align) * next_align - offset;
            let data = section.kind() != SectionKind::Text;
            let name = section.name().unwrap_or(if data { ".rodata" } else { ".text" });
            let flags = if data {
                self.notes.push(Note::notable(format!(
                    "packed {name} into the code image (read-only data with relocations)"
                )));
                SECTION_READ
            } else {
                SECTION_READ | SECTION_EXEC
            };
            let mut spec = SectionSpec::new(
                SectionType::Code,
                name.as_bytes(),
                flags,
                bytes.to_vec(),
                section.align().max(1),
            );
            spec.virtual_size = padded;
            let index = self.builder.add_section(spec);
            self.placed.insert(section.index(), Carried::Code { offset, section: index, data });
            offset += padded;
        }
        Ok(())
    }

    /// Data, read-only data, bss; everything else is dropped with a note or refused.
    fn place_data(&mut self) -> Result<(), String> {
        let mut debug_sections = 0;
        for section in self.file.sections() {
            let name = section.name().unwrap_or("");
            if let Some(what) = is_dropped(name) {
                if section.size() > 0 && name.starts_with(".debug") {
                    debug_sections += 1;
                } else if section.size() > 0 {
                    self.notes.push(Note {
                        routine: is_routine(name),
                        text: format!("dropped section {name} ({what})"),
                    });
                }
                continue;
            }
            let Some(index) = self.data_section(&section, name)? else { continue };
            if !self.dialect.has_symbol_extension() {
                return Err(format!(
                    "section {name}: R72 symbols cannot address data sections (use s128 or r96)"
                ));
            }
            self.placed.insert(section.index(), Carried::Data { section: index });
        }
        if debug_sections > 0 {
            self.notes
                .push(Note::notable(format!("dropped the debug info ({debug_sections} .debug sections)")));
        }
        Ok(())
    }

    /// The SMF data section `section` becomes, if any.
    fn data_section(&mut self, section: &object::Section<'d, 'f>, name: &str) -> Result<Option<u32>, String> {
        let align = section.align().max(1);
        let bytes = || section.data().map_err(|e| e.to_string());
        Ok(match section.kind() {
            _ if self.placed.contains_key(&section.index()) => None, // in the code image
            // Every object has (often empty) .data and .bss: nothing to carry then.
            kind if section.size() == 0
                && (is_read_only_data(kind)
                    || matches!(kind, SectionKind::Data | SectionKind::UninitializedData)) =>
            {
                None
            }
            kind if is_read_only_data(kind) => {
                Some(self.builder.add_section(data_spec(SectionType::RoData, name, bytes()?, align, 0)))
            }
            SectionKind::Data => {
                Some(self.builder.add_section(data_spec(SectionType::Data, name, bytes()?, align, 0)))
            }
            SectionKind::UninitializedData => {
                Some(self.builder.add_section(data_spec(SectionType::Bss, name, &[], align, section.size())))
            }
            SectionKind::Tls | SectionKind::UninitializedTls => {
                return Err(format!("section {name}: thread-local storage cannot be represented in SMF"))
            }
            _ if [".init_array", ".fini_array", ".preinit_array", ".ctors", ".dtors"]
                .iter()
                .any(|p| name.starts_with(p)) =>
            {
                return Err(format!("section {name}: constructors/destructors cannot be represented in SMF"))
            }
            _ => {
                let bookkeeping = name.is_empty() || name.starts_with(".rela") || name.ends_with("tab");
                if section.size() > 0 && !bookkeeping {
                    self.notes.push(Note::notable(format!("dropped section {name} (not loadable)")));
                }
                None
            }
        })
    }

    /// One SMF symbol per ELF symbol that is defined in a placed section or undefined
    /// (section symbols are added when relocations need them: [`Packer::section_symbol`]).
    fn add_symbols(&mut self) -> Result<(), String> {
        for symbol in self.file.symbols() {
            let name = symbol.name_bytes().map_err(|e| e.to_string())?;
            let binding = if symbol.is_weak() {
                Binding::Weak
            } else if symbol.is_global() {
                Binding::Global
            } else {
                Binding::Local
            };
            let spec = match symbol.section() {
                // The linker defines _GLOBAL_OFFSET_TABLE_; SMF modules have their own GOT
                // slots, so a relocation that really needs it fails with a clear error.
                SymbolSection::Undefined if !name.is_empty() && name != b"_GLOBAL_OFFSET_TABLE_" => {
                    let binding = if symbol.is_weak() { Binding::Weak } else { Binding::Global };
                    Some(SymbolSpec::import(name).with_binding(binding))
                }
                SymbolSection::Common => {
                    return Err(format!(
                        "symbol {}: common symbols cannot be represented (compile with -fno-common)",
                        String::from_utf8_lossy(name)
                    ))
                }
                SymbolSection::Section(index) if symbol.kind() != object::SymbolKind::Section => self
                    .placed
                    .get(&index)
                    .map(|p| p.symbol(name, symbol.address(), symbol.size()).with_binding(binding)),
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
                self.symbols.insert(symbol.index(), self.builder.add_symbol(spec));
            }
        }
        Ok(())
    }

    /// The local symbol standing for section `index` (its start), added the first time a
    /// relocation names it.
    fn section_symbol(&mut self, index: SectionIndex) -> Result<u32, String> {
        if let Some(&s) = self.section_symbols.get(&index) {
            return Ok(s);
        }
        let section = self.file.section_by_index(index).map_err(|e| e.to_string())?;
        let name = section.name().unwrap_or("").as_bytes().to_vec();
        let Some(spec) = self.placed.get(&index).map(|p| p.symbol(&name, 0, 0)) else {
            return Err(format!(
                "relocation against section {} which is not loaded",
                String::from_utf8_lossy(&name)
            ));
        };
        let s = self.builder.add_symbol(spec.with_binding(Binding::Local));
        self.section_symbols.insert(index, s);
        Ok(s)
    }

    /// The relocations of the code image (the only part SMF relocates).
    fn add_relocations(&mut self) -> Result<(), String> {
        for section in self.file.sections() {
            let name = section.name().unwrap_or("").to_owned();
            let in_code = match self.placed.get(&section.index()) {
                Some(&Carried::Code { offset, section, .. }) => Some((offset, section)),
                _ => None,
            };
            for (offset, relocation) in section.relocations() {
                let Some((base, code_section)) = in_code else {
                    if self.placed.contains_key(&section.index()) {
                        return Err(format!(
                            "{name}+{offset:#x}: relocations in writable data (pointers in initialized variables) \
                             cannot be represented in SMF, which relocates only the code image (make the data \
                             const to have it packed there)"
                        ));
                    }
                    continue; // relocations of dropped sections (.eh_frame) go with them
                };
                let at = format!("{name}+{offset:#x}");
                let RelocationFlags::Elf { r_type } = relocation.flags() else {
                    return Err(format!("{at}: not an ELF relocation"));
                };
                let kind = self.relocation_kind(r_type, &at)?;
                let symbol = self.relocation_symbol(relocation.target(), &at)?;
                // A GOT load of a symbol this object defines becomes a direct reference.
                let relaxable = matches!(r_type, elf::R_X86_64_GOTPCRELX | elf::R_X86_64_REX_GOTPCRELX);
                let kind = match usize::try_from(offset) {
                    Ok(at) if relaxable && self.defined_here(relocation.target()) => self
                        .builder
                        .section_data_mut(code_section)
                        .and_then(|code| crate::relax::relax_got_load(code, at, relocation.addend()))
                        .unwrap_or(kind),
                    _ => kind,
                };
                // Relocations against local symbols of other sections keep their ELF meaning:
                // the local symbol's own value already holds its offset.
                self.builder.add_relocation(base + offset, symbol, kind, relocation.addend());
            }
        }
        Ok(())
    }

    /// The SMF kind of ELF relocation type `r_type` at `at`.
    fn relocation_kind(&self, r_type: elf::RelocationType, at: &str) -> Result<RelocKind, String> {
        Ok(match r_type {
            elf::R_X86_64_64 => RelocKind::Abs64,
            elf::R_X86_64_PC32 => RelocKind::Pc32,
            elf::R_X86_64_PLT32 => RelocKind::Plt32,
            elf::R_X86_64_GOTPCREL | elf::R_X86_64_GOTPCRELX | elf::R_X86_64_REX_GOTPCRELX => {
                RelocKind::GotPc32
            }
            // An absolute 32-bit address cannot reach a module mapped above 4 GiB, which is
            // where modules load: refused here rather than packed into a module that verifies
            // and then never loads.
            elf::R_X86_64_32 | elf::R_X86_64_32S => {
                return Err(format!(
                    "{at}: {} is an absolute 32-bit address, which a module loaded above 4 GiB cannot \
                     hold (the object was compiled without -fPIC: compile it with -fPIC)",
                    relocation_name(r_type)
                ))
            }
            other => {
                return Err(format!(
                    "{at}: relocation type {} ({}) cannot be represented in SMF",
                    other.0,
                    relocation_name(other)
                ))
            }
        })
    }

    /// The SMF symbol a relocation at `at` refers to.
    fn relocation_symbol(&mut self, target: RelocationTarget, at: &str) -> Result<u32, String> {
        match target {
            RelocationTarget::Symbol(index) => match self.symbols.get(&index) {
                Some(&s) => Ok(s),
                None => match self.file.symbol_by_index(index).map_err(|e| e.to_string())?.section() {
                    SymbolSection::Section(section) => self.section_symbol(section),
                    _ => Err(format!("{at}: relocation against an unsupported symbol")),
                },
            },
            RelocationTarget::Section(index) => self.section_symbol(index),
            _ => Err(format!("{at}: relocation against an absolute value")),
        }
    }

    /// Whether a relocation's target is defined in a section this module carries.
    fn defined_here(&self, target: RelocationTarget) -> bool {
        match target {
            RelocationTarget::Symbol(index) => self
                .file
                .symbol_by_index(index)
                .is_ok_and(|s| s.section_index().is_some_and(|i| self.placed.contains_key(&i))),
            RelocationTarget::Section(index) => self.placed.contains_key(&index),
            _ => false,
        }
    }

    /// The entry point: `main`, when the object defines it in the code.
    fn set_entry_point(&mut self) {
        let main = self.file.symbols().find(|s| s.name() == Ok("main") && s.is_definition());
        if let Some(main) = main {
            if let Some(Carried::Code { offset, .. }) = main.section_index().and_then(|i| self.placed.get(&i))
            {
                self.builder.entry_point(offset + main.address());
            }
        }
    }

    /// The module and the notes, once the module is checked as `smf verify` checks it: an
    /// object whose symbols, relocations or entry point fall outside what it defines (or whose
    /// image is over the limit) is refused with the reason instead of written.
    fn finish(self) -> Result<(Vec<u8>, Vec<Note>), String> {
        let smf = self.builder.build().map_err(|e| e.to_string())?;
        if let Err(e) = smf_core::Module::parse(&smf) {
            return Err(format!("the module it makes would not be valid: {e}"));
        }
        Ok((smf, self.notes))
    }
}

fn data_spec(
    kind: smf_core::SectionType,
    name: &str,
    data: &[u8],
    align: u64,
    bss: u64,
) -> smf_core::write::SectionSpec {
    let flags = match kind {
        SectionType::RoData => smf_core::kinds::SECTION_READ,
        _ => smf_core::kinds::SECTION_READ | smf_core::kinds::SECTION_WRITE,
    };
    let mut spec =
        smf_core::write::SectionSpec::new(kind, name.as_bytes(), flags, data.to_vec(), align.min(1 << 16));
    if bss > 0 {
        spec.virtual_size = bss;
    }
    spec
}
