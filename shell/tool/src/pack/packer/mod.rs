//! The packer: ELF relocatable objects into one SMF module, phase by phase (see [`super`] for
//! what becomes what). Several objects combine as `ld -r` would combine them: their code
//! concatenated into one image, their data sections side by side, a reference to a name
//! another object defines linked to that definition (a strong definition over weak ones; two
//! strong ones are an error), imports shared by name.

mod code;
mod data;
mod ifunc;
mod relocations;
mod symbols;

use std::collections::{HashMap, HashSet};

use super::Compression;
use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget, SectionIndex, SymbolIndex};
use smf_format::write::ModuleBuilder;
use smf_format::{Binding, Dialect, ErrorKind, SymbolKind};
use smf_runtime::load::LoadError;

use super::call_arrays::{self, ArraySlot};
use super::carried::Carried;
use super::covering::Covering;
use super::elf::section_problems;
use super::error::problem_name;
use super::{archive, unwind};
use super::{Note, PackError, PackFailure, Problem, Site};

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
/// (`docs/format.md`, "Compression"; R72 has no compression byte and is refused; a
/// [`Method`](smf_format::compress::Method) converts into one at its writer's level).
pub fn pack_with(
    inputs: &[(String, Vec<u8>)],
    dialect: Dialect,
    compression: Option<Compression>,
) -> Result<(Vec<u8>, Vec<Note>), PackFailure> {
    let inputs: Vec<Input<'_>> = inputs.iter().map(|(name, bytes)| Input::new(name, bytes)).collect();
    pack_inputs(&inputs, &PackOptions { compression, ..PackOptions::new(dialect) })
}

/// One input to [`pack_inputs`]: an object or an archive.
#[derive(Clone, Copy, Debug)]
pub struct Input<'i> {
    /// Its name, for messages.
    pub name: &'i str,
    /// Its bytes.
    pub bytes: &'i [u8],
    /// An archive to take every member of (`ld`'s `--whole-archive`), not only those the
    /// objects need; nothing for an object.
    pub whole_archive: bool,
    /// An archive the compiler driver links (libgcc's): only the members the other inputs
    /// need are taken, even when no object is given, and it is noted only when it gives some.
    pub driver_library: bool,
}

impl<'i> Input<'i> {
    /// `bytes`, named `name`, taken as `ld` takes an input by default.
    pub const fn new(name: &'i str, bytes: &'i [u8]) -> Self {
        Self { name, bytes, whole_archive: false, driver_library: false }
    }
}

/// How [`pack_inputs`] packs.
#[derive(Clone, Debug)]
pub struct PackOptions {
    /// The module's dialect.
    pub dialect: Dialect,
    /// Compression of the code, data and rodata ([`pack_with`]).
    pub compression: Option<Compression>,
    /// The entry point's name (`ld -e`): a function the objects define, or the packing fails.
    /// `None`: `main` when an object defines it, else none.
    pub entry: Option<Vec<u8>>,
    /// Names to count as referred to (`ld -u`): an archive member defining one is packed, as
    /// if an object called it.
    pub undefined: Vec<Vec<u8>>,
    /// The shared libraries the module needs, by file name (`DT_NEEDED`'s: `libstdc++.so.6`),
    /// recorded for loaders to open (`docs/format.md`, "Needed libraries").
    pub needed: Vec<Vec<u8>>,
    /// Read-only data kept apart from the code (`ld -z separate-code`): references between
    /// them stay relocations, so that a loader may place the data on pages of its own, not
    /// executable (`ReadOnlyData::NotExecutable`). Off by default: pack links them for good
    /// and the module keeps its read-only data right after its code, executable with it
    /// (`docs/format.md`, "Linked modules").
    pub separate_code: bool,
}

impl PackOptions {
    /// A module of `dialect`, uncompressed, its entry point `main` if defined.
    pub const fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            compression: None,
            entry: None,
            undefined: Vec::new(),
            needed: Vec::new(),
            separate_code: false,
        }
    }
}

/// [`pack_with`] as `options` say, archives among `inputs` taken whole where they say so.
pub fn pack_inputs(inputs: &[Input<'_>], options: &PackOptions) -> Result<(Vec<u8>, Vec<Note>), PackFailure> {
    let (dialect, compression) = (options.dialect, options.compression);
    if compression.is_some() && !dialect.has_compression_byte() {
        // Refused before anything is read: no other problem of the objects matters.
        let object = inputs.iter().map(|input| input.name).collect::<Vec<_>>().join(", ");
        let error = PackError::Build(smf_format::write::BuildError::NoCompressionByte { dialect });
        return Err(Problem { object, error }.into());
    }
    // Archives become the members the objects need (`ld`'s rule), or all of their members.
    let wanted = options.entry.iter().chain(&options.undefined).map(Vec::as_slice);
    let selected = archive::select(inputs, wanted);
    let (inputs, read) = (selected.inputs.as_slice(), selected.problems);
    let packed = match pack_objects(inputs, options, true, read) {
        // The unwind tables' problem alone (so every archive was read): packed again without.
        Err(failure) if matches!(failure.problems.as_slice(), [Problem { error, .. }] if is_unwind_problem(error)) =>
        {
            let (bytes, mut notes) = pack_objects(inputs, options, false, Vec::new())?;
            let why = &failure.problems[0].error;
            let text = format!("unwind tables dropped (debuggers and exceptions will not see through this module's frames): {why}");
            notes.insert(0, Note { routine: false, text });
            Ok((bytes, notes))
        }
        packed => packed,
    };
    packed.map(|(bytes, mut notes)| {
        notes.splice(0..0, selected.notes);
        (bytes, notes)
    })
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
    inputs: &[(String, &[u8])],
    options: &PackOptions,
    unwind: bool,
    mut problems: Vec<Problem>,
) -> Result<(Vec<u8>, Vec<Note>), PackFailure> {
    let (dialect, compression) = (options.dialect, options.compression);
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
    packer.links = !options.separate_code;
    if let Some(compression) = compression {
        compression.apply(&mut packer.builder);
    }
    for f in 0..files.len() {
        packer.place_code(f);
    }
    for f in 0..files.len() {
        packer.place_data(f);
    }
    // Which object defines each name first: an indirect function another object's definition
    // overrides is not one of the module's.
    packer.find_definitions();
    let indirect = packer.indirect_functions();
    let reserved = call_arrays::Reserved {
        resolver: !indirect.is_empty(),
        finalizer: call_arrays::needs_finalizer(&files),
    };
    let merged = call_arrays::merge(&files, &mut packer.builder, reserved, &mut |f, error| {
        packer.problems.push(Problem { object: names[f].to_owned(), error })
    });
    packer.call_arrays = merged.slots;
    if packer.keep_unwind {
        packer.unwind = unwind::merge(&files, &mut packer.builder, &mut |f, error| {
            packer.problems.push(Problem { object: names[f].to_owned(), error })
        });
    }
    if let Some(array) = merged.resolver_entry {
        packer.add_indirect_functions(&indirect, array);
    }
    if let Some(array) = merged.finalizer_entry {
        packer.add_finalizer(array, &call_arrays::registering_needed(&files));
    }
    packer.allocate_commons();
    for f in 0..files.len() {
        packer.add_symbols(f);
    }
    packer.link_references();
    for f in 0..files.len() {
        packer.add_relocations(f);
    }
    packer.set_entry_point(options.entry.as_deref());
    if !options.needed.is_empty() {
        packer.builder.add_section(smf_format::write::SectionSpec::needed_libraries(&options.needed));
    }
    packer.finish().map_err(|mut failure| {
        // Object by object, in the order given (each object's in the order found).
        let position = |object: &str| inputs.iter().position(|(name, _)| name == object);
        failure.problems.sort_by_key(|problem| position(&problem.object));
        failure
    })
}

/// `bytes` as an x86-64 ELF relocatable object.
fn read_object(bytes: &[u8]) -> Result<object::File<'_>, PackError> {
    let file = object::File::parse(bytes).map_err(|error| match super::elf::linker_script(bytes) {
        Some(statement) => PackError::LinkerScript(statement),
        None => PackError::NotElf(error),
    })?;
    if file.kind() != object::ObjectKind::Relocatable {
        return Err(PackError::NotX86Relocatable);
    }
    if file.architecture() != object::Architecture::X86_64 {
        return Err(PackError::OtherArchitecture(format!("{:?}", file.architecture())));
    }
    super::bounds::check(&file, bytes.len() as u64)?;
    // GCC's slim LTO objects hold its intermediate language only, marked by this symbol.
    if file.symbols().any(|s| s.name_bytes().is_ok_and(|n| n == b"__gnu_lto_slim")) {
        return Err(PackError::LtoObject);
    }
    Ok(file)
}

/// What a name problems give belongs to: a section or a symbol (by index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Named {
    Section(usize),
    Symbol(usize),
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
    /// The SMF code section the code image ends in (`code.rs`).
    code: Option<code::CodeRun>,
    /// The SMF rodata, data and bss sections the next of their kind merge into (`data.rs`).
    data_runs: [Option<data::DataRun>; 3],
    /// Where each constructor or destructor array section's entries went.
    call_arrays: HashMap<(usize, SectionIndex), ArraySlot>,
    /// Where each object's unwind tables went in the module's one table.
    unwind: unwind::Parts,
    /// Whether unwind tables are kept (else dropped with the sections pack does not load).
    keep_unwind: bool,
    /// Whether the module is linked for the linked layout ([`PackOptions::separate_code`]
    /// off): GOT loads of its writable data then stay GOT loads, through the module's own GOT.
    links: bool,
    /// The module's `__dso_handle` (its finalizer), when its code refers to it.
    dso_handle: Option<u32>,
    /// The sections refused as they are (each a problem already): relocations into them are
    /// not problems of their own.
    refused: HashSet<(usize, String)>,
    /// Names problems gave, as they keep them ([`problem_name`]), by object and what they name:
    /// each read once however many problems name it.
    problem_names: HashMap<(usize, Named), Option<String>>,
    /// The module's own `atexit`, `at_quick_exit`, `pthread_atfork` (after its finalizer), those
    /// its code calls: each name and its symbol.
    registering: Vec<(&'static [u8], u32)>,
    /// The SMF symbol of each ELF symbol carried over (or resolved to another object's).
    symbols: HashMap<(usize, SymbolIndex), u32>,
    /// The local SMF symbol standing for a section that relocations name.
    section_symbols: HashMap<(usize, SectionIndex), u32>,
    /// The local SMF symbol standing for the start of an SMF data section, by its index: what
    /// relocations against the section's local variables and labels name instead.
    data_section_symbols: HashMap<u32, u32>,
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
    /// A weak definition (or one of GCC's unique ones), which others override.
    weak: bool,
    /// A common symbol (`-fcommon`, `.comm`): a strong definition overrides it, and it
    /// overrides weak ones.
    common: bool,
}

impl Definition {
    /// How strongly it holds its name: 2 a definition, 1 a common symbol, 0 a weak definition.
    const fn rank(&self) -> u8 {
        if self.common {
            1
        } else if self.weak {
            0
        } else {
            2
        }
    }
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
            code: None,
            data_runs: [None; 3],
            call_arrays: HashMap::new(),
            unwind: unwind::Parts::new(),
            keep_unwind,
            links: false,
            dso_handle: None,
            refused: HashSet::new(),
            registering: Vec::new(),
            problem_names: HashMap::new(),
            symbols: HashMap::new(),
            section_symbols: HashMap::new(),
            data_section_symbols: HashMap::new(),
            definitions: HashMap::new(),
            references: Vec::new(),
            imports: HashMap::new(),
            notes: Vec::new(),
            problems,
            covering: HashMap::new(),
        }
    }

    /// A problem in object `f`; packing goes on to find the others.
    /// Records `error` for object `f`; a relocation into a section refused already is that
    /// section's problem, not one more.
    fn problem(&mut self, f: usize, error: PackError) {
        match &error {
            PackError::R72Data { section } => {
                self.refused.insert((f, section.clone()));
            }
            PackError::UnloadedSection { section } if self.refused.contains(&(f, section.clone())) => return,
            _ => {}
        }
        self.problems.push(Problem { object: self.names[f].to_owned(), error });
    }

    /// Where offset `offset` of object `f`'s section `section` is, for a problem there: the
    /// section's name and the function or variable covering the offset (each as a problem
    /// keeps a name: [`problem_name`]).
    fn site(&mut self, f: usize, section: SectionIndex, offset: u64) -> Site {
        let file = &self.files[f];
        let name = self
            .problem_names
            .entry((f, Named::Section(section.0)))
            .or_insert_with(|| {
                file.section_by_index(section).ok().and_then(|s| s.name().ok().map(problem_name))
            })
            .clone();
        let covering = self.covering.entry(f).or_insert_with(|| Covering::of(file));
        Site {
            section: name.unwrap_or_default(),
            offset,
            symbol: covering.at(section, offset).map(problem_name),
        }
    }

    /// What a relocation of object `f` refers to, by name (a symbol's, or a section's; as a
    /// problem keeps a name).
    fn target_name(&mut self, f: usize, target: RelocationTarget) -> String {
        let key = match target {
            RelocationTarget::Symbol(index) => Named::Symbol(index.0),
            RelocationTarget::Section(index) => Named::Section(index.0),
            _ => return "an unnamed symbol".to_owned(),
        };
        if let Some(name) = self.problem_names.get(&(f, key)) {
            return name.clone().unwrap_or_else(|| "an unnamed symbol".to_owned());
        }
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
        let name = name.map(|name| problem_name(&name));
        self.problem_names.insert((f, key), name.clone());
        name.unwrap_or_else(|| "an unnamed symbol".to_owned())
    }

    /// A note about object `f` (named when there are several).
    fn note(&mut self, f: usize, routine: bool, text: String) {
        let text = if self.files.len() > 1 { format!("{}: {text}", self.names[f]) } else { text };
        self.notes.push(Note { routine, text });
    }

    /// The entry point: `named` (a problem unless an object defines it in the code), or `main`
    /// when an object defines it in the code.
    fn set_entry_point(&mut self, named: Option<&[u8]>) {
        let name = named.unwrap_or(b"main");
        let offset = self.definitions.get(name).and_then(|definition| {
            let (f, index) = definition.at;
            let symbol = self.files[f].symbol_by_index(index).ok()?;
            match symbol.section_index().and_then(|i| self.placed.get(&(f, i))) {
                Some(Carried::Code { offset, .. }) => Some(offset + symbol.address()),
                _ => None,
            }
        });
        match (offset, named) {
            (Some(offset), _) => {
                self.builder.entry_point(offset);
            }
            (None, Some(name)) => {
                let object = self.names.join(", ");
                let error = PackError::NoEntryPoint(String::from_utf8_lossy(name).into_owned());
                self.problems.push(Problem { object, error });
            }
            (None, None) => {}
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
        let mut builder = self.builder;
        // What `ld` links for good: references between the code and the read-only data, and
        // the code's calls and GOT loads of imports, through the stubs and GOT slots the
        // format's linked layout pins, and its GOT loads of its own writable data, through a
        // GOT of its own; the symbols only those references named go below.
        if self.links {
            builder.link().map_err(|e| Problem { object: all.clone(), error: PackError::Build(e) })?;
        }
        // Local functions nothing links to go to the module's function names (as `ld` keeps
        // them in `.symtab`, apart from `.dynsym`): a load links none of them, debuggers and
        // profilers still name them.
        builder.move_local_functions_to_names();
        // What `ld` leaves out of a library's dynamic symbols, and nothing at load needs:
        // local data, section symbols and assembler labels (`.L*`) no relocation names. Local
        // functions stay (debuggers, profilers and backtraces name code by them).
        builder.drop_unreferenced_symbols(|symbol| {
            symbol.binding != Binding::Local
                || (symbol.kind == SymbolKind::Function
                    && !symbol.name.is_empty()
                    && !symbol.name.starts_with(b"."))
        });
        let smf = builder.build().map_err(|e| Problem { object: all.clone(), error: PackError::Build(e) })?;
        if let Err(e) = smf_format::Module::parse(&smf) {
            return Err(Problem { object: all, error: PackError::Invalid(e) }.into());
        }
        if let Err(e) = super::trial_load(&smf) {
            return Err(Problem { object: all, error: PackError::DoesNotLoad(e) }.into());
        }
        Ok((smf, self.notes))
    }
}

/// Sections aligned up to this merge into the section before them of their kind (the padding
/// before one, stored as zeros, is less than its alignment); a section aligned more starts an
/// SMF section of its own, so that no object can make the file grow by its alignments.
const MOST_MERGED_ALIGNMENT: u64 = 4096;

/// The key the finalizer's code is placed under (no ELF section has this index).
const FINALIZER_KEY: (usize, SectionIndex) = (usize::MAX, SectionIndex(usize::MAX));
