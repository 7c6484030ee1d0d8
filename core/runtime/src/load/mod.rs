//! Loading and linking: a validated module becomes code in sealed executable memory and data in
//! ordinary memory, relocated, with its imports resolved and its symbols indexed.
//!
//! The image of a module comes from the [`ExecAllocator`] in one region: code (followed by
//! branch stubs), and above it read-only data (rodata, then the module's GOT slots) and
//! writable data (data, then bss). Keeping it in one region keeps every internal reference
//! within reach of 32-bit PC-relative relocations. Code is copied into its still-writable
//! block and relocated in place, and then the batch is sealed (several modules' batch at once
//! with [`LoadBatch`]): code read-execute, rodata and GOT read-only (and, by
//! default, executable with the code, so that sealing is one protection change: see
//! [`ReadOnlyData`]), data read-write. A failure at any step drops the unsealed batch, which
//! frees everything the load had mapped. Last, the module's constructors run (every entry was
//! checked to lie in its code first); its destructors run when it is released.
//!
//! Imports are resolved through a [`Resolver`] (other loaded modules, a caller's table). A
//! branch to an import that is out of the relocation's reach goes through a 16-byte stub in
//! the module's own code (x86-64 `jmp [rip+0]; .quad S`, aarch64 `ldr x16, #8; br x16; .quad S`).
//! Every relocation result is range-checked ([`reloc::apply`]).

mod at_exit;
mod batch;
mod calls;
mod error;
mod exports;
mod fallible;
mod kept_templates;
mod layout;
mod link;
mod mapped;
mod options;
mod place;
pub mod reloc;
mod relocate;
mod resolutions;
mod resolve;
pub mod symtab;
mod target;
mod unwind;

use alloc::vec::Vec;
use core::fmt;

use crate::exec::{Block, CodeBatch, ExecAllocator, ExecError, Function};
use crate::sys::OpenFile;
use smf_format::kinds::{ModuleFlags, ARCH_AARCH64};
pub use smf_format::module::function_names::{FunctionNames, NamedFunction};
use smf_format::module::Header;
use smf_format::module::{ModuleSymbols, ModuleTables};
use smf_format::{Dialect, Module, RelocKind};

pub use at_exit::{ExitRegistrar, RegisterFn};
pub use batch::LoadBatch;
pub use calls::{CatchFn, Catcher};
pub use error::{Invariant, LoadError, Overflow};
pub use exports::{ExportIndex, IndexFull};
pub use options::{LoadOptions, ReadOnlyData, HOST_ARCH};
pub use resolve::{Chain, HashedName, Keepalive, Resolved, Resolver, TableResolver};
pub use unwind::{UnwindFault, UnwindRegistrar, UnwindTable};

use at_exit::ExitHook;
use calls::Calls;
use kept_templates::Templates;
use layout::Layout;
use link::Placed;
use place::Image;
use relocate::{DataImage, Relocating, Relocator, Slots};
use resolutions::Resolutions;
use symtab::SymbolTable;
use target::RegionBases;

/// A module loaded into executable memory: immutable, freed when dropped.
pub struct LoadedModule<'a> {
    allocator: &'a ExecAllocator,
    blocks: Vec<Block<'a>>,
    dialect: Dialect,
    arch: u8,
    platform: u8,
    flags: ModuleFlags,
    code: usize,
    code_size: usize,
    entry: Option<usize>,
    symbols: SymbolTable,
    note_sdn: Option<Vec<u8>>,
    /// Its function names (`note.names`) as the file holds them, checked: decoded when asked.
    function_names: Vec<u8>,
    templates: Templates,
    /// Its destructors, in array order, run in reverse when it is released (none if its
    /// constructors did not run, or if they went to the exit: `exit`).
    destructors: Vec<usize>,
    /// Its destructors, handed to the process's exit: run at exit or at release, whichever
    /// comes first ([`LoadOptions::at_exit`]).
    exit: Option<ExitHook>,
    /// Its unwind tables, checked.
    unwind_tables: Vec<UnwindTable>,
    /// What its unwind tables were registered with (deregistered at release).
    registrar: Option<UnwindRegistrar>,
    /// What its constructors and destructors run through.
    catch: Option<Catcher>,
    deps: Vec<Keepalive>,
}

impl fmt::Debug for LoadedModule<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedModule")
            .field("dialect", &self.dialect)
            .field("code", &(self.code as *const u8))
            .field("code_size", &self.code_size)
            .field("symbols", &self.symbols.len())
            .field("deps", &self.deps.len())
            .finish_non_exhaustive()
    }
}

impl<'a> LoadedModule<'a> {
    /// Validates, places, relocates and seals `file`, resolving imports with `resolver`: the
    /// stages of a load, in order. Each stage is a function of its own, tested on its own; the
    /// symbols and relocations are validated as the link and relocate stages consume them. A
    /// failure at any stage drops the batch unsealed, which frees everything the load had
    /// mapped.
    pub fn load(
        allocator: &'a ExecAllocator,
        file: &[u8],
        resolver: &dyn Resolver,
        options: &LoadOptions,
    ) -> Result<Self, LoadError> {
        let mut batch = allocator.batch();
        let staged = Staged::new(&mut batch, file, None, resolver, options)?;
        batch.seal()?;
        staged.finish()
    }

    /// [`LoadedModule::load`] of `bytes`, the whole content of the module file `file` as read
    /// through it (still open): the code's whole pages that nothing patches are mapped from
    /// `file` instead of copied (`mapped.rs`), so that they take no private memory and are
    /// shared with every process mapping the same file. Only bytes the processor alone reads
    /// stay backed by the file; everything the loader interprets is read from `bytes`. Those
    /// pages follow the file as a shared library's do: a file rewritten in place while the
    /// module is loaded changes its code, one truncated makes it fault (`SIGBUS`); a file
    /// replaced by a rename (how compilers, `smf pack` and hot reload replace modules) leaves
    /// it as it was.
    pub fn load_mapped(
        allocator: &'a ExecAllocator,
        bytes: &[u8],
        file: &OpenFile,
        resolver: &dyn Resolver,
        options: &LoadOptions,
    ) -> Result<Self, LoadError> {
        let mut batch = allocator.batch();
        let staged = Staged::new(&mut batch, bytes, Some(file), resolver, options)?;
        batch.seal()?;
        staged.finish()
    }

    /// The unwind stage's registration: the module's unwind tables to its registrar, the module
    /// being sealed, before any of its code runs.
    #[allow(unsafe_code)]
    fn register_unwind_tables(&self) {
        if let Some(registrar) = &self.registrar {
            // SAFETY: the tables were checked (records up to the terminator, every FDE in the
            // module's code) and lie in its sealed image, which stays mapped until `Drop`
            // deregisters them.
            unsafe { unwind::register(registrar, &self.unwind_tables) };
        }
    }

    /// The constructors stage: runs `constructors` (this module's), the module being sealed;
    /// fails if an exception escaped one.
    #[allow(unsafe_code)]
    fn construct(&self, constructors: &[usize]) -> Result<(), LoadError> {
        // SAFETY: each address was checked to lie in this module's code, sealed and mapped
        // while `self` lives; constructor arrays hold constructors.
        unsafe { calls::construct(constructors, self.catch) }.map_err(|entry| LoadError::ConstructorThrew {
            entry: entry as u64,
            of: constructors.len() as u64,
        })
    }

    /// The dialect the module was written in.
    pub const fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Its architecture byte.
    pub const fn arch(&self) -> u8 {
        self.arch
    }

    /// Its platform byte.
    pub const fn platform(&self) -> u8 {
        self.platform
    }

    /// Its header flags (as stored: bits no flag names kept).
    pub const fn flags(&self) -> ModuleFlags {
        self.flags
    }

    /// The entry point, if the module is executable.
    pub const fn entry(&self) -> Option<usize> {
        self.entry
    }

    /// Start and length of its code (without stubs).
    pub const fn code(&self) -> (usize, usize) {
        (self.code, self.code_size)
    }

    /// Its symbols.
    pub const fn symbols(&self) -> &SymbolTable {
        &self.symbols
    }

    /// The address of the exported symbol `name`.
    #[inline]
    pub fn symbol(&self, name: &[u8]) -> Option<usize> {
        self.symbols.lookup(name).map(|s| s.addr)
    }

    /// [`LoadedModule::symbol`] of a name whose hash is at hand (a resolver's).
    #[inline]
    pub fn symbol_hashed(&self, name: HashedName<'_>) -> Option<usize> {
        self.symbols.lookup_hashed(name).map(|s| s.addr)
    }

    /// The exported function `name` as the function pointer type `F`, borrowing the module so
    /// that it lives while the function can be called through the handle; `None` if no
    /// exported function has that name (or `F` is not a function pointer type).
    ///
    /// # Safety
    /// `F` is an `extern "C" fn` type whose signature is the function's.
    #[allow(unsafe_code)]
    pub unsafe fn function<F: Copy>(&self, name: &[u8]) -> Option<Function<'_, F>> {
        let symbol = self.symbols.lookup(name).filter(|s| s.kind == smf_format::SymbolKind::Function)?;
        // SAFETY: a function symbol of this module lies in its sealed code, which lives while
        // `self` does (borrowed by the handle); the signature is the caller's contract.
        unsafe { Function::at(symbol.addr) }
    }

    /// The code at `addr` (inside this module's code, not its stubs or data) as the function
    /// pointer type `F`, borrowing the module; `None` elsewhere.
    ///
    /// # Safety
    /// A function whose signature is `F`'s starts at `addr`.
    #[allow(unsafe_code)]
    pub unsafe fn function_at<F: Copy>(&self, addr: usize) -> Option<Function<'_, F>> {
        if addr < self.code || addr - self.code >= self.code_size {
            return None;
        }
        // SAFETY: inside this module's sealed code, which lives while `self` does; the
        // signature is the caller's contract.
        unsafe { Function::at(addr) }
    }

    /// The entry point as the function pointer type `F`, borrowing the module; `None` unless
    /// the module is executable.
    ///
    /// # Safety
    /// As [`LoadedModule::function`].
    #[allow(unsafe_code)]
    pub unsafe fn entry_function<F: Copy>(&self) -> Option<Function<'_, F>> {
        // SAFETY: the entry point lies in this module's sealed code (validated inside the code).
        unsafe { Function::at(self.entry?) }
    }

    /// Bytes of memory the image occupies.
    pub fn image_bytes(&self) -> usize {
        self.blocks.iter().map(Block::size).sum()
    }

    /// The note.sdn text, if the module has one.
    pub fn note_sdn(&self) -> Option<&[u8]> {
        self.note_sdn.as_deref()
    }

    /// The functions its file names for debuggers and profilers only (`docs/format.md`,
    /// "Function names"; none without them), each at a code offset ([`LoadedModule::code`]'s
    /// address plus it): functions nothing links to, which are not among its symbols.
    pub fn function_names(&self) -> FunctionNames<'_> {
        FunctionNames::new(&self.function_names).unwrap_or_default()
    }

    /// The template-code entry of the template symbol `name`, else the section's record named
    /// `name` where records can be told apart without symbols (short-form entries, or a single
    /// entry).
    pub fn template(&self, name: &[u8]) -> Option<&[u8]> {
        self.templates.entry(&self.symbols, name)
    }

    /// Its unwind tables (checked: every FDE describes its code), in its sealed read-only data.
    pub fn unwind_tables(&self) -> &[UnwindTable] {
        &self.unwind_tables
    }

    /// The bytes of unwind table `index` (as relocated, sealed read-only), for a debugger's
    /// description of the module.
    #[allow(unsafe_code)]
    pub fn unwind_table_bytes(&self, index: usize) -> Option<&[u8]> {
        let table = self.unwind_tables.get(index)?;
        // Every table lies in the image (checked at load); looked for among the blocks all the
        // same, since the slice below is made from the address alone.
        if !self.blocks.iter().any(|block| block.contains(table.addr, table.len)) {
            return None;
        }
        // SAFETY: the range lies in one of this module's blocks, sealed (never written again)
        // and mapped for as long as `self` lives, which the returned borrow cannot outlive.
        Some(unsafe { core::slice::from_raw_parts(table.addr as *const u8, table.len) })
    }

    /// Modules this one links to (kept alive while it lives).
    pub fn dependencies(&self) -> &[Keepalive] {
        &self.deps
    }
}

/// A module whose load has come as far as the seal: validated, placed, linked and relocated in
/// its batch's open pages, nothing of it run. Dropped before it is finished, it frees its image
/// and runs nothing.
struct Staged<'a> {
    /// The module, with no destructors and no registrar until it is finished.
    module: LoadedModule<'a>,
    constructors: Vec<usize>,
    /// Its destructors, kept once its constructors ran.
    destructors: Vec<usize>,
    registrar: Option<UnwindRegistrar>,
    /// What its destructors are handed to for the process's exit.
    at_exit: Option<ExitRegistrar>,
}

impl<'a> Staged<'a> {
    /// The stages of a load before the seal, in order, into `batch`. On failure, everything the
    /// module had taken from the batch is freed (other modules staged in it stay).
    fn new(
        batch: &mut CodeBatch<'a>,
        file: &[u8],
        code_file: Option<&OpenFile>,
        resolver: &dyn Resolver,
        options: &LoadOptions,
    ) -> Result<Self, LoadError> {
        let tables = ModuleTables::check(file, &options.parse)?;
        check_arch(tables.header(), options)?;
        if tables.needed_libraries().next().is_some() {
            // At most MAX_NEEDED names (validated): a fixed array, no allocation.
            let mut needed: [&[u8]; smf_format::module::needed::MAX_NEEDED] =
                [&[]; smf_format::module::needed::MAX_NEEDED];
            let count =
                needed.iter_mut().zip(tables.needed_libraries()).map(|(slot, name)| *slot = name).count();
            resolver.needs(&needed[..count]);
        }
        let linked = link::link(tables, &mut Resolutions::new(resolver, tables.symbol_count() as usize))?;
        let layout = Layout::plan(&linked.module, options.read_only_data)?;
        // What of the code is mapped from its file rather than copied, if it comes with one.
        let mapping = code_file.and_then(|file| {
            let planned = mapped::mappable(linked.module.tables(), batch.allocator().page_size())?;
            Some((file, planned))
        });
        let planned = mapping.as_ref().map_or(0..0, |(_, planned)| planned.code.clone());
        let image = Image::allocate(batch, &layout, linked.module.tables(), planned)?;
        // The code block was handed out unzeroed on the promise that every byte of the code
        // would be written: a load failing on the way zeroes it, so that no byte it left (of
        // a recycled page, or its own unrelocated code) is sealed executable beside the code
        // of the batch's other modules, with which it may share a page.
        let mut image = image;
        if let Some((file, planned)) = &mapping {
            image.map_code(batch, planned, file);
        }
        let filled = match fill(batch, &image, &layout, linked, options) {
            Ok(filled) => filled,
            Err(error) => {
                image.scrub_code(batch);
                return Err(error);
            }
        };
        let Filled {
            module,
            symbols,
            deps,
            templates,
            entry,
            note_sdn,
            function_names,
            calls,
            unwind_tables,
        } = filled;
        let header = *module.header();
        let (code, code_size) = (image.code_base, layout.code_size);
        let blocks = image.into_blocks()?;
        let Calls { constructors, destructors } = calls;
        let destructors = if options.run_constructors { destructors } else { Vec::new() };
        let constructors = if options.run_constructors { constructors } else { Vec::new() };
        let registrar = options.unwind.filter(|_| !unwind_tables.is_empty());
        let module = LoadedModule {
            allocator: batch.allocator(),
            blocks,
            dialect: module.dialect(),
            arch: header.arch,
            platform: header.platform,
            flags: header.flags,
            code,
            code_size,
            entry,
            symbols,
            note_sdn,
            function_names,
            templates,
            destructors: Vec::new(),
            exit: None,
            unwind_tables,
            registrar: None,
            catch: options.catch,
            deps,
        };
        Ok(Staged { module, constructors, destructors, registrar, at_exit: options.at_exit })
    }

    /// The stages after the seal: the unwind tables registered, the destructors handed to the
    /// process's exit (before the constructors, so that what they register with `atexit` runs
    /// first at exit, as in a program), then the constructors run. Only once the module's batch
    /// is sealed. If an exception escapes a constructor, the module is dropped: its destructors
    /// run (those of what its constructors registered among them), its tables are withdrawn
    /// and its memory freed.
    fn finish(self) -> Result<LoadedModule<'a>, LoadError> {
        let Staged { mut module, constructors, destructors, registrar, at_exit } = self;
        match at_exit.filter(|_| !destructors.is_empty()) {
            Some(at_exit) => match ExitHook::register(at_exit, destructors, module.catch) {
                Ok(hook) => module.exit = Some(hook),
                Err(destructors) => module.destructors = destructors,
            },
            None => module.destructors = destructors,
        }
        module.registrar = registrar;
        module.register_unwind_tables();
        module.construct(&constructors)?;
        Ok(module)
    }
}

/// What the stages between allocating a module's image and sealing it leave.
struct Filled<'m> {
    module: Module<'m>,
    symbols: SymbolTable,
    deps: Vec<Keepalive>,
    templates: Templates,
    entry: Option<usize>,
    note_sdn: Option<Vec<u8>>,
    function_names: Vec<u8>,
    calls: Calls,
    unwind_tables: Vec<UnwindTable>,
}

/// The stages that fill a module's allocated `image` in `batch`, in order: the data placed,
/// the symbols placed, the code copied and relocated, the GOT filled, the templates and the
/// note kept.
fn fill<'a, 'm>(
    batch: &mut CodeBatch<'a>,
    image: &Image<'a>,
    layout: &Layout,
    linked: link::Linked<'m>,
    options: &LoadOptions,
) -> Result<Filled<'m>, LoadError> {
    image.place_data(batch, linked.module.tables())?;
    let bases = RegionBases {
        code: image.code_base,
        read_only: image.read_only_base,
        writable: image.read_write_base,
    };
    let Placed { module, symbols, mut targets, deps, templates } = linked.place(&bases)?;
    let Relocated { module, got_used, calls, unwind_tables } =
        place_and_relocate_code(batch, image, layout, module, &symbols, &mut targets, options)?;
    if got_used > 0 {
        let got_at =
            place::offset_from(image.read_only_base, layout.got_start as u64, Overflow::ReadOnlyAddress)?;
        let len = got_used
            .checked_mul(relocate::GOT_SLOT)
            .ok_or_else(|| LoadError::too_large(Overflow::GotSize))?;
        let block = image.block_holding(got_at, len, Invariant::GotOutsideImage)?;
        let got = batch.block_mut(block)?.get_mut(got_at - block.addr()..).unwrap_or_default();
        relocate::fill_got(got, got_at, &targets)?;
    }
    let templates = Templates::copy(&module, &symbols, &templates)?;
    let header = *module.header();
    let entry = match header.is_executable() {
        true => Some(place::offset_from(image.code_base, header.entry_point, Overflow::CodeAddress)?),
        false => None,
    };
    let note_sdn = keep_note(&module)?;
    let names = module.function_names_bytes();
    let function_names = fallible::copied(names).ok_or(LoadError::OutOfMemory { bytes: names.len() })?;
    Ok(Filled { module, symbols, deps, templates, entry, note_sdn, function_names, calls, unwind_tables })
}

/// The architecture check: a module for another machine is refused before anything is mapped.
fn check_arch(header: &Header, options: &LoadOptions) -> Result<(), LoadError> {
    let arch = header.arch;
    match options.require_arch {
        Some(host) if arch != host => Err(LoadError::WrongArch { module: arch, host }),
        _ => Ok(()),
    }
}

/// What the relocate stage leaves: the module, wholly validated; how many GOT slots were handed
/// out; its constructors and destructors and its unwind tables (read from the relocated data).
struct Relocated<'m> {
    module: Module<'m>,
    got_used: usize,
    calls: Calls,
    unwind_tables: Vec<UnwindTable>,
}

/// The place stage for code and the relocate stage: the code copied into its still-writable
/// block, and each relocation applied as it is decoded (to the code, or to the data placed
/// already), stubs and GOT slots handed out as relocations need them. Returns the module, now
/// wholly validated, how many GOT slots were handed out, and its constructors and destructors
/// (read from the relocated data).
fn place_and_relocate_code<'m>(
    batch: &mut CodeBatch<'_>,
    image: &Image<'_>,
    layout: &Layout,
    module: ModuleSymbols<'m>,
    symbols: &SymbolTable,
    targets: &mut [target::Target],
    options: &LoadOptions,
) -> Result<Relocated<'m>, LoadError> {
    let got_at =
        place::offset_from(image.read_only_base, layout.got_start as u64, Overflow::ReadOnlyAddress)?;
    let stubs_at = place::offset_from(image.code_base, layout.stub_start as u64, Overflow::CodeAddress)?;
    let relocator =
        Relocator { code_base: image.code_base, names: symbols, force_stubs: options.force_stubs };
    let [block, read_only_block, writable_block] =
        batch.blocks_mut([image.code.as_ref(), image.read_only.as_ref(), image.read_write.as_ref()])?;
    image.copy_code(block, module.tables())?;
    if block.len() < layout.code_and_stubs_len {
        return Err(LoadError::internal(Invariant::CodeBlockShort));
    }
    let (code_and_stubs, after_stubs) = block.split_at_mut(layout.code_and_stubs_len);
    let (code, stub_area) = code_and_stubs.split_at_mut(layout.code_size);
    // Only the stubs' room: the area may start with padding up to the stubs' alignment.
    let stub_room = stub_area.get_mut(layout.stub_start - layout.code_size..).unwrap_or_default();
    let mut slots = Slots::new(stub_room, stubs_at, got_at, layout.got_slots);
    let header = module.tables().header();
    if header.flags.contains(ModuleFlags::LINKED_IMPORTS) {
        // Its code calls and loads them through the stubs and slots the layout pins.
        let branch = if header.arch == ARCH_AARCH64 { RelocKind::Aarch64Branch26 } else { RelocKind::Plt32 };
        slots.pin_imports(targets, branch).ok_or_else(|| LoadError::internal(Invariant::StubAreaFull))?;
    }
    // The read-only region: after the stubs in the code's block, or a block of its own.
    let read_only = match layout.read_only_in_code() {
        Some(at) => after_stubs.get_mut(at - layout.code_and_stubs_len..).unwrap_or_default(),
        None => read_only_block,
    };
    let tables = module.tables();
    let size = |bytes: u64, what| usize::try_from(bytes).map_err(|_| LoadError::too_large(what));
    let data = DataImage {
        read_only: read_only
            .get_mut(..size(tables.read_only_size(), Overflow::ReadOnlySize)?)
            .ok_or_else(|| LoadError::internal(Invariant::ReadOnlyBlockShort))?,
        read_only_at: image.read_only_base,
        writable: writable_block
            .get_mut(..size(tables.read_write_size(), Overflow::WritableSize)?)
            .ok_or_else(|| LoadError::internal(Invariant::WritableBlockShort))?,
        writable_at: image.read_write_base,
        writable_start: tables.writable_data_start(),
    };
    let mut sink = Relocating { relocator, code, targets, slots, data };
    let module = module.decode_relocations(&mut sink)?;
    let code = image.code_base..image.code_base.saturating_add(layout.code_size);
    let calls = match module.call_array_count() {
        0 => Calls::default(),
        _ => Calls::collect(&module, sink.data.read_only, code.clone())?,
    };
    let unwind_tables = match module.unwind_table_count() {
        0 => Vec::new(),
        _ => unwind::check(&module, sink.data.read_only, image.read_only_base, code)?,
    };
    Ok(Relocated { module, got_used: sink.slots.got_used(), calls, unwind_tables })
}

/// A copy of the module's note.sdn text, kept for its readers.
fn keep_note(module: &Module<'_>) -> Result<Option<Vec<u8>>, LoadError> {
    let Some(text) = module.note_sdn_text() else { return Ok(None) };
    let copy = fallible::copied(text.as_bytes()).ok_or(LoadError::OutOfMemory { bytes: text.len() })?;
    Ok(Some(copy))
}

impl<'a> LoadedModule<'a> {
    /// Releases `modules` together, as dropping each would (every module's destructors run
    /// and its unwind tables are withdrawn before any of their memory is freed), except that
    /// their memory is freed in one go: the pages they leave empty go back with one protection
    /// change per contiguous run, where dropping them one by one takes one per module (a JIT's
    /// batches, an application's modules at exit). Modules of another allocator than the
    /// first module's are freed one by one as they come, as dropping them would.
    pub fn release_together(modules: impl IntoIterator<Item = LoadedModule<'a>>) -> Result<(), ExecError> {
        let mut modules = modules.into_iter().peekable();
        let Some(allocator) = modules.peek().map(|module| module.allocator) else { return Ok(()) };
        // Blocks of another allocator's modules are freed alone by `free_all`.
        allocator.free_all(modules.flat_map(|mut module| module.retire()))
    }

    /// Runs its destructors and withdraws its unwind tables (each once: a retired module's
    /// `Drop` has nothing left to run), and hands over its blocks for freeing.
    #[allow(unsafe_code)]
    fn retire(&mut self) -> Vec<Block<'a>> {
        if let Some(hook) = self.exit.take() {
            // SAFETY: the module's code is sealed and mapped (its blocks are freed after this).
            unsafe { hook.release() };
        }
        let destructors = core::mem::take(&mut self.destructors);
        // SAFETY: the destructors were checked to lie in the module's code, still sealed and
        // mapped (its blocks are freed after this); destructor arrays hold destructors.
        unsafe { calls::destruct(&destructors, self.catch) };
        if let Some(registrar) = self.registrar.take() {
            // SAFETY: registered at load; the image is still mapped (freed after this).
            unsafe { unwind::deregister(&registrar, &self.unwind_tables) };
        }
        core::mem::take(&mut self.blocks)
    }
}

impl Drop for LoadedModule<'_> {
    fn drop(&mut self) {
        // The module is being dropped: nobody can call into it any more (its owners hold it
        // by reference count), so its pages may be discarded, all in one go.
        let blocks = self.retire();
        let _ = self.allocator.free_all(blocks);
    }
}
