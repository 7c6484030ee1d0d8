//! Loading and linking: a validated module becomes code in sealed executable memory and data in
//! ordinary memory, relocated, with its imports resolved and its symbols indexed.
//!
//! The image of a module is one contiguous run from the [`ExecAllocator`]: code (followed by
//! branch stubs), read-only data (rodata, then the module's GOT slots), writable data (data,
//! then bss). Keeping it in one run keeps every internal reference within reach of 32-bit
//! PC-relative relocations. Code is copied into its still-writable block and relocated in
//! place, and then the batch is sealed: code read-execute, rodata and GOT read-only (and, by
//! default, executable with the code, so that sealing is one protection change: see
//! [`ReadOnlyData`]), data read-write. A failure at any step drops the unsealed batch, which
//! frees everything the load had mapped.
//!
//! Imports are resolved through a [`Resolver`] (other loaded modules, a caller's table). A
//! branch to an import that is out of the relocation's reach goes through a 16-byte stub in
//! the module's own code (x86-64 `jmp [rip+0]; .quad S`, aarch64 `ldr x16, #8; br x16; .quad S`).
//! Every relocation result is range-checked ([`reloc::apply`]).

mod entries;
mod error;
mod exports;
mod fallible;
mod layout;
mod link;
pub mod reloc;
mod relocate;
mod resolutions;
mod resolve;
pub mod symtab;
mod templates;

use alloc::vec::Vec;
use core::fmt;

use crate::exec::{Block, ExecAllocator, Function};
use crate::kinds::{Branch, ARCH_AARCH64, ARCH_X86_64};
use crate::module::DataRegion;
use crate::{Dialect, Module, ParseOptions, RelocKind};

pub use error::LoadError;
pub use exports::{ExportIndex, IndexFull};
pub use resolve::{Chain, Keepalive, Resolved, Resolver, TableResolver};

use layout::Layout;
use link::{Linked, PlacedImage, PlacedSection};
use relocate::{Relocator, Slots, Target};
use resolutions::Resolutions;
use symtab::SymbolTable;
use templates::Templates;

/// The SMF architecture byte of the machine this code runs on (0 x86-64, 1 aarch64).
pub const HOST_ARCH: u8 = if cfg!(target_arch = "x86_64") {
    ARCH_X86_64
} else if cfg!(target_arch = "aarch64") {
    ARCH_AARCH64
} else {
    u8::MAX
};

/// How to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// How to parse.
    pub parse: ParseOptions,
    /// Refuse modules for another architecture (default: the host's). `None` loads any, for
    /// tools and tests that relocate without running.
    pub require_arch: Option<u8>,
    /// Route every branch to an import through its stub, even when the import is within the
    /// branch's reach (to test stubs; off by default).
    pub force_stubs: bool,
    /// How read-only data (rodata and the GOT) is protected once sealed.
    pub read_only_data: ReadOnlyData,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            parse: ParseOptions::default(),
            require_arch: Some(HOST_ARCH),
            force_stubs: false,
            read_only_data: ReadOnlyData::default(),
        }
    }
}

/// How a module's read-only data (its rodata sections and GOT slots) is protected once the
/// module is sealed. Either way it is never writable after relocation, and no page is ever
/// writable and executable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ReadOnlyData {
    /// Read and execute, right after the code (and its stubs) in the same pages, at the next
    /// multiple of its alignment: sealing a module is then one protection change, the least a
    /// load can make, and read-only data takes no page of its own. Read-only bytes become
    /// executable, as they were in ELF text segments before `ld -z separate-code`.
    #[default]
    WithCode,
    /// Read only, not executable: one more protection change (and one more kernel mapping)
    /// per module that has read-only data. `cargo xtask bench load` measures the difference.
    NotExecutable,
}

/// Code-section tails (the zeros between a section's bytes and its virtual size) up to this
/// many bytes in all are written by the loader (all of them when the code is no larger, which
/// spares counting them); larger ones are left to zero pages.
const WRITTEN_TAILS: u64 = 64 << 10;

/// Bytes of zeros between code sections' bytes and their virtual sizes.
fn code_tails(module: &Module<'_>) -> u64 {
    let written: u64 = module.code_sections().map(|(section, _)| section.data.len() as u64).sum();
    module.code_size().saturating_sub(written)
}

/// The block of `image` holding `addr..addr+len`.
fn block_holding<'i, 'a>(
    image: &[&'i Option<Block<'a>>],
    addr: usize,
    len: usize,
) -> Result<&'i Block<'a>, LoadError> {
    image.iter().filter_map(|b| b.as_ref()).find(|b| b.contains(addr, len)).ok_or(LoadError::Internal)
}

/// Copies `bytes` to `addr`, which lies in one of the blocks of `image` (open in `batch`).
fn write_at(
    batch: &mut crate::exec::CodeBatch<'_>,
    image: &[&Option<Block<'_>>],
    addr: usize,
    bytes: &[u8],
) -> Result<(), LoadError> {
    let block = block_holding(image, addr, bytes.len())?;
    batch.write(block, addr - block.addr(), bytes)?;
    Ok(())
}

/// Size of one branch stub.
const STUB_SIZE: usize = 16;

/// Writes a stub that jumps to `target` for a branch of `kind` into `out` (at least
/// [`STUB_SIZE`] bytes); `None` for a kind that is not a branch (it never goes through a stub).
fn write_stub(out: &mut [u8], kind: RelocKind, target: u64) -> Option<()> {
    let out = out.get_mut(..STUB_SIZE)?;
    match kind.branch()? {
        Branch::Aarch64Imm26 => {
            out[..4].copy_from_slice(&0x5800_0050u32.to_le_bytes()); // ldr x16, #8
            out[4..8].copy_from_slice(&0xD61F_0200u32.to_le_bytes()); // br x16
            out[8..16].copy_from_slice(&target.to_le_bytes());
        }
        Branch::X86Rel32 => {
            out[..6].copy_from_slice(&[0xFF, 0x25, 0, 0, 0, 0]); // jmp qword ptr [rip+0]
            out[6..14].copy_from_slice(&target.to_le_bytes());
            out[14..16].copy_from_slice(&[0xCC, 0xCC]);
        }
    }
    Some(())
}

/// A module loaded into executable memory: immutable, freed when dropped.
pub struct LoadedModule<'a> {
    allocator: &'a ExecAllocator,
    blocks: Vec<Block<'a>>,
    dialect: Dialect,
    arch: u8,
    platform: u8,
    flags: u32,
    code: usize,
    code_size: usize,
    entry: Option<usize>,
    symbols: SymbolTable,
    note_sdn: Option<Vec<u8>>,
    templates: Templates,
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
    /// Parses, validates, places, relocates and seals `file`, resolving imports with `resolver`.
    pub fn load(
        allocator: &'a ExecAllocator,
        file: &[u8],
        resolver: &dyn Resolver,
        options: &LoadOptions,
    ) -> Result<Self, LoadError> {
        // Symbols and relocations are validated as the load decodes them (not in a separate
        // pass). If that finds a problem, the full parse decides: another layout of the file
        // may be the valid one, and otherwise its error is the one detection would report.
        let module = Module::parse_deferred(file, &options.parse).map_err(LoadError::Format)?;
        // One table of answers for both tries: the resolver is asked each name once per load.
        let mut resolutions = Resolutions::new(resolver);
        match Self::load_module(allocator, &module, &mut resolutions, options) {
            Err(LoadError::Format(_)) => {
                let module = Module::parse_with(file, &options.parse).map_err(LoadError::Format)?;
                Self::load_module(allocator, &module, &mut resolutions, options)
            }
            result => result,
        }
    }

    fn load_module(
        allocator: &'a ExecAllocator,
        module: &Module<'_>,
        resolutions: &mut Resolutions<'_>,
        options: &LoadOptions,
    ) -> Result<Self, LoadError> {
        let header = *module.header();
        if let Some(host) = options.require_arch {
            if header.arch != host {
                return Err(LoadError::WrongArch { module: header.arch, host });
            }
        }
        let stubs_max = link::stub_bound(module);
        let layout = Layout::with_got_room(module, stubs_max, allocator.page_size(), options.read_only_data)?;
        let gots_max = layout.got_slots;
        let Layout { code_size, stub_start, code_and_stubs_len, got_start, .. } = layout;
        let size = |v: u64| usize::try_from(v).map_err(|_| LoadError::TooLarge);

        let mut batch = allocator.batch();
        // The code copy below writes every byte of the code (sections and their zeroed tails),
        // so its pages need not be zeroed first, unless the tails are large: they are then left
        // to the allocator's zero pages, so a huge virtual size commits no memory.
        let written_in_full = module.code_size() <= WRITTEN_TAILS || code_tails(module) <= WRITTEN_TAILS;
        let overwritten = if written_in_full { code_size } else { 0 };
        let (code, ro, rw) = if layout.is_empty() {
            (None, None, None)
        } else {
            let mut image = batch.alloc_module_image(&layout.segments()?, overwritten, layout.data_align)?;
            let mut take = |i: usize| image.get_mut(i).and_then(Option::take);
            (take(0), take(1), take(2))
        };
        let base = |b: &Option<Block<'_>>| b.as_ref().map_or(0, Block::addr);
        let (code_base, rw_base) = (base(&code), base(&rw));
        let ro_base = layout.read_only_base(code_base, base(&ro))?;
        let image = [&code, &ro, &rw];

        // Data sections: copy into place and remember where each went (in table order, which
        // `PlacedImage::section` binary-searches).
        let mut sections: Vec<PlacedSection> = Vec::new();
        for placement in module.data_sections() {
            let offset = size(placement.offset)?;
            let base = match placement.region {
                DataRegion::ReadOnly => ro_base,
                DataRegion::ReadWrite => rw_base,
            };
            let addr = base.checked_add(offset).ok_or(LoadError::TooLarge)?;
            if !placement.section.data.is_empty() {
                write_at(&mut batch, &image, addr, placement.section.data)?;
            }
            let (index, virtual_size) = (placement.section.index, placement.section.virtual_size);
            fallible::push(&mut sections, PlacedSection { index, addr, virtual_size }).ok_or(
                LoadError::OutOfMemory { bytes: fallible::bytes_of::<PlacedSection>(sections.len() + 1) },
            )?;
        }
        let placed = PlacedImage { code: code_base, sections: &sections };
        let Linked { symbols, mut targets, deps } = link::link_symbols(module, resolutions, &placed)?;
        let templates = Templates::copy(module, &symbols)?;

        // Code: concatenated and relocated in place, in the still-writable block; stubs and GOT
        // slots are handed out as relocations need them.
        let got_base = ro_base.checked_add(got_start).ok_or(LoadError::TooLarge)?;
        let stubs_base = code_base.checked_add(stub_start).ok_or(LoadError::TooLarge)?;
        let mut fill_code = |image: &mut [u8]| -> Result<usize, LoadError> {
            // Every byte of the code is written: each section's bytes, then zeros up to its
            // virtual size (the sections lie back to back).
            for (section, offset) in module.code_sections() {
                let at = size(offset)?;
                // Validation keeps every code section inside the code, which the block holds,
                // and its bytes within its virtual size.
                let place = size(section.virtual_size)?
                    .checked_add(at)
                    .and_then(|end| image.get_mut(at..end))
                    .filter(|place| place.len() >= section.data.len())
                    .ok_or(LoadError::TooLarge)?;
                let (bytes, tail) = place.split_at_mut(section.data.len());
                bytes.copy_from_slice(section.data);
                if overwritten != 0 {
                    tail.fill(0);
                }
            }
            let (code, rest) = image.split_at_mut(code_size.min(image.len()));
            // Only the stubs' room: read-only data may follow it in the same block.
            let stub_area =
                rest.get_mut(stub_start - code_size..code_and_stubs_len - code_size).unwrap_or_default();
            let mut slots = Slots::new(stub_area, stubs_base, got_base, gots_max);
            let relocator = Relocator { code_base, names: &symbols, force_stubs: options.force_stubs };
            relocator.apply_all(module, code, &mut targets, &mut slots)?;
            Ok(slots.got_used())
        };
        let gots = match &code {
            Some(block) => fill_code(batch.block_mut(block)?)?,
            None => fill_code(&mut [])?,
        };
        // GOT slots hold the symbols' absolute addresses, written in place.
        if gots > 0 {
            let len = gots.checked_mul(8).ok_or(LoadError::TooLarge)?;
            let block = block_holding(&image, got_base, len)?;
            let got = batch.block_mut(block)?.get_mut(got_base - block.addr()..).unwrap_or_default();
            let got = got.get_mut(..len).ok_or(LoadError::TooLarge)?;
            for target in targets.iter().filter(|t| t.got != Target::NO_SLOT) {
                let slot = (target.got - got_base) / 8 * 8;
                let value = (target.address_or_zero() as u64).to_le_bytes();
                got.get_mut(slot..slot + 8).ok_or(LoadError::TooLarge)?.copy_from_slice(&value);
            }
        }

        let entry = if header.is_executable() {
            Some(code_base.checked_add(size(header.entry_point)?).ok_or(LoadError::TooLarge)?)
        } else {
            None
        };
        let note_sdn = match module.note_sdn_text() {
            Some(text) => {
                Some(fallible::copied(text.as_bytes()).ok_or(LoadError::OutOfMemory { bytes: text.len() })?)
            }
            None => None,
        };

        batch.seal()?;
        let mut blocks = fallible::with_capacity(3)
            .ok_or(LoadError::OutOfMemory { bytes: fallible::bytes_of::<Block<'_>>(3) })?;
        blocks.extend([code, ro, rw].into_iter().flatten());
        Ok(LoadedModule {
            allocator,
            blocks,
            dialect: module.dialect(),
            arch: header.arch,
            platform: header.platform,
            flags: header.flags,
            code: code_base,
            code_size,
            entry,
            symbols,
            note_sdn,
            templates,
            deps,
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

    /// Its header flags.
    pub const fn flags(&self) -> u32 {
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

    /// The exported function `name` as the function pointer type `F`, borrowing the module so
    /// that it lives while the function can be called through the handle; `None` if no
    /// exported function has that name (or `F` is not a function pointer type).
    ///
    /// # Safety
    /// `F` is an `extern "C" fn` type whose signature is the function's.
    #[allow(unsafe_code)]
    pub unsafe fn function<F: Copy>(&self, name: &[u8]) -> Option<Function<'_, F>> {
        let symbol = self.symbols.lookup(name).filter(|s| s.kind == crate::SymbolKind::Function)?;
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

    /// The template-code entry of the template symbol `name`, else the section's record named
    /// `name` where records can be told apart without symbols (short-form entries, or a single
    /// entry).
    pub fn template(&self, name: &[u8]) -> Option<&[u8]> {
        self.templates.entry(&self.symbols, name)
    }

    /// Modules this one links to (kept alive while it lives).
    pub fn dependencies(&self) -> &[Keepalive] {
        &self.deps
    }
}

impl Drop for LoadedModule<'_> {
    fn drop(&mut self) {
        // The module is being dropped: nobody can call into it any more (its owners hold it
        // by reference count), so its pages may be discarded, all in one go.
        let _ = self.allocator.free_all(core::mem::take(&mut self.blocks));
    }
}
