//! The in-memory ELF object that describes a loaded module to a debugger (the GDB JIT
//! interface reads it): a relocatable object whose sections sit at the module's addresses, its
//! code as `.text` (no bytes: the debugger reads the process's memory), its unwind tables as
//! `.eh_frame` where the module has them (bytes copied, at their address, for the debugger's
//! unwinder), and its symbols: functions in `.text`, everything else with an absolute address.
//!
//! Written by hand (a few headers and a symbol table), since the library does not take an ELF
//! crate for this; `tests/tests/debug.rs` reads the result back with `object` and has gdb load
//! it.

use smf_core::kinds::ARCH_AARCH64;
use smf_core::load::LoadedModule;
use smf_core::{Binding, SymbolKind};

/// ELF constants used here.
mod consts {
    pub(super) const ET_REL: u16 = 1;
    pub(super) const EM_X86_64: u16 = 62;
    pub(super) const EM_AARCH64: u16 = 183;
    pub(super) const SHT_PROGBITS: u32 = 1;
    pub(super) const SHT_SYMTAB: u32 = 2;
    pub(super) const SHT_STRTAB: u32 = 3;
    pub(super) const SHT_NOBITS: u32 = 8;
    pub(super) const SHF_ALLOC: u64 = 0x2;
    pub(super) const SHF_EXECINSTR: u64 = 0x4;
    pub(super) const STB_LOCAL: u8 = 0;
    pub(super) const STB_GLOBAL: u8 = 1;
    pub(super) const STB_WEAK: u8 = 2;
    pub(super) const STT_OBJECT: u8 = 1;
    pub(super) const STT_FUNC: u8 = 2;
    pub(super) const SHN_ABS: u16 = 0xfff1;
    pub(super) const HEADER: u16 = 64;
    pub(super) const SECTION_HEADER: u16 = 64;
    pub(super) const SYMBOL: usize = 24;
}

/// Section indices of the object.
const TEXT: u16 = 1;

/// Where a module's unwind tables are, once relocated: their address and bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UnwindTables<'m> {
    /// Their address in the module.
    pub(crate) addr: usize,
    /// Their bytes (`.eh_frame` format, terminated by a zero length).
    pub(crate) bytes: &'m [u8],
}

/// One section header.
#[derive(Clone, Copy, Default)]
struct SectionHeader {
    name: u32,
    kind: u32,
    flags: u64,
    addr: u64,
    offset: usize,
    size: usize,
    link: u32,
    info: u32,
    align: u64,
    entry_size: u64,
}

impl SectionHeader {
    fn write(&self, out: &mut Vec<u8>) {
        put32(out, self.name);
        put32(out, self.kind);
        put64(out, self.flags);
        put64(out, self.addr);
        put64(out, self.offset as u64);
        put64(out, self.size as u64);
        put32(out, self.link);
        put32(out, self.info);
        put64(out, self.align);
        put64(out, self.entry_size);
    }
}

/// The names of the object's sections, in one string table.
const SECTION_NAMES: &[u8] = b"\0.text\0.eh_frame\0.symtab\0.strtab\0.shstrtab\0";

/// Where `name` starts in [`SECTION_NAMES`].
fn section_name(name: &str) -> u32 {
    let at = SECTION_NAMES
        .windows(name.len() + 2)
        .position(|w| w[0] == 0 && &w[1..=name.len()] == name.as_bytes() && w[name.len() + 1] == 0);
    at.and_then(|at| u32::try_from(at + 1).ok()).unwrap_or(0)
}

/// The ELF object describing `module`, with `unwind` as its `.eh_frame`; `None` if a table
/// would not fit ELF's 32-bit fields (a module's names and symbols never come near) or the
/// memory for it cannot be had (the module then loads undescribed: never an abort).
pub(crate) fn describe(module: &LoadedModule<'_>, unwind: Option<UnwindTables<'_>>) -> Option<Vec<u8>> {
    let (code, code_len) = module.code();
    let symbols = module.symbols();
    // The symbols with an address in the module (not imports, types or templates).
    let described = |index: usize| {
        let symbol = symbols.get(index)?;
        (symbol.addr != 0 && !symbol.template && symbol.kind != SymbolKind::Import).then_some(symbol)
    };
    let (mut count, mut locals) = (0, 0);
    for symbol in (0..symbols.len()).filter_map(described) {
        count += 1;
        locals += usize::from(symbol.binding == Binding::Local);
    }
    let image = Image { code, code_len, arch: module.arch(), unwind };
    // The string table is the module's own (every name followed by a NUL).
    write(&image, symbols.names(), count, locals, |out| {
        // Locals first (ELF's rule: the symbol table's `info` is the first non-local's index).
        for locals in [true, false] {
            for index in 0..symbols.len() {
                let Some(symbol) = described(index) else { continue };
                if (symbol.binding == Binding::Local) != locals {
                    continue;
                }
                let name = symbols.name_offset(index).unwrap_or(0);
                let size = symbols.size(index).unwrap_or(0);
                let kind = match symbol.kind {
                    SymbolKind::Function => Kind::Function,
                    _ => Kind::Object,
                };
                out.extend_from_slice(&image.symbol(name, symbol.binding, kind, symbol.addr, size));
            }
        }
    })
}

/// The ELF object describing one function installed at `addr` (`size` bytes) for machine
/// `arch`: an instantiated generic, named `name`.
pub(crate) fn describe_function(name: &[u8], addr: usize, size: usize, arch: u8) -> Option<Vec<u8>> {
    let image = Image { code: addr, code_len: size, arch, unwind: None };
    let mut strings = Vec::new();
    strings.try_reserve_exact(name.len() + 1).ok()?;
    strings.extend_from_slice(name);
    strings.push(0);
    write(&image, &strings, 1, 0, |out| {
        out.extend_from_slice(&image.symbol(0, Binding::Global, Kind::Function, addr, size as u64));
    })
}

/// What a symbol is, in the object.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Function,
    Object,
}

/// The code an object describes, and its unwind tables.
struct Image<'a> {
    code: usize,
    code_len: usize,
    arch: u8,
    unwind: Option<UnwindTables<'a>>,
}

impl Image<'_> {
    /// A symbol of the object: its name at `name` in the string table the object's caller gave
    /// (the object puts a NUL before it, ELF's empty name), functions in the code as `.text`
    /// offsets, everything else absolute.
    fn symbol(
        &self,
        name: u32,
        binding: Binding,
        kind: Kind,
        addr: usize,
        size: u64,
    ) -> [u8; consts::SYMBOL] {
        let bind = match binding {
            Binding::Local => consts::STB_LOCAL,
            Binding::Global => consts::STB_GLOBAL,
            Binding::Weak => consts::STB_WEAK,
        };
        let in_code = addr >= self.code && addr - self.code < self.code_len;
        let (kind, section, value) = match kind {
            Kind::Function if in_code => (consts::STT_FUNC, TEXT, addr - self.code),
            _ => (consts::STT_OBJECT, consts::SHN_ABS, addr),
        };
        symbol_entry(name.saturating_add(1), bind << 4 | kind, section, value as u64, size)
    }
}

/// The object: `image`'s sections, the string table `strings` (names, each followed by a NUL),
/// and `count` symbols (the first `locals` of them local) that `symbols` appends.
fn write(
    image: &Image<'_>,
    strings: &[u8],
    count: usize,
    locals: usize,
    symbols: impl FnOnce(&mut Vec<u8>),
) -> Option<Vec<u8>> {
    let (code, code_len, unwind) = (image.code, image.code_len, image.unwind);
    // ELF's string tables start with the empty name.
    let strings_len = strings.len() + 1;
    // Layout: header, .eh_frame's bytes, the symbols, the two string tables, section headers.
    let unwind_bytes = unwind.map_or(&[][..], |u| u.bytes);
    let eh_frame_at = usize::from(consts::HEADER);
    let symtab_at = align8(eh_frame_at + unwind_bytes.len());
    let symtab_len = (count + 1) * consts::SYMBOL;
    let strtab_at = symtab_at + symtab_len;
    let shstrtab_at = strtab_at + strings_len;
    let headers_at = align8(shstrtab_at + SECTION_NAMES.len());
    let mut sections = [SectionHeader::default(); 6];
    let mut used = 1;
    let mut add = |header| {
        sections[used] = header;
        used += 1;
        used
    };
    add(SectionHeader {
        name: section_name(".text"),
        kind: consts::SHT_NOBITS,
        flags: consts::SHF_ALLOC | consts::SHF_EXECINSTR,
        addr: code as u64,
        size: code_len,
        align: 16,
        ..SectionHeader::default()
    });
    if let Some(unwind) = unwind {
        add(SectionHeader {
            name: section_name(".eh_frame"),
            kind: consts::SHT_PROGBITS,
            flags: consts::SHF_ALLOC,
            addr: unwind.addr as u64,
            offset: eh_frame_at,
            size: unwind.bytes.len(),
            align: 8,
            ..SectionHeader::default()
        });
    }
    // .symtab's index is the next (2, or 3 after .eh_frame); .strtab follows it.
    let strtab_index = if unwind.is_some() { 4 } else { 3 };
    add(SectionHeader {
        name: section_name(".symtab"),
        kind: consts::SHT_SYMTAB,
        offset: symtab_at,
        size: symtab_len,
        link: strtab_index,
        info: u32::try_from(1 + locals).ok()?,
        align: 8,
        entry_size: consts::SYMBOL as u64,
        ..SectionHeader::default()
    });
    let string_table = |name, offset, size| SectionHeader {
        name: section_name(name),
        kind: consts::SHT_STRTAB,
        offset,
        size,
        align: 1,
        ..SectionHeader::default()
    };
    add(string_table(".strtab", strtab_at, strings_len));
    let used = add(string_table(".shstrtab", shstrtab_at, SECTION_NAMES.len()));
    let sections = &sections[..used];
    let section_count = u16::try_from(used).ok()?;

    let mut out = Vec::new();
    out.try_reserve_exact(headers_at + sections.len() * usize::from(consts::SECTION_HEADER)).ok()?;
    out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let machine = if image.arch == ARCH_AARCH64 { consts::EM_AARCH64 } else { consts::EM_X86_64 };
    put16(&mut out, consts::ET_REL);
    put16(&mut out, machine);
    put32(&mut out, 1); // version
    put64(&mut out, 0); // entry
    put64(&mut out, 0); // program headers
    put64(&mut out, headers_at as u64);
    put32(&mut out, 0); // flags
    put16(&mut out, consts::HEADER);
    put16(&mut out, 0); // program header size
    put16(&mut out, 0); // program headers
    put16(&mut out, consts::SECTION_HEADER);
    put16(&mut out, section_count);
    put16(&mut out, section_count - 1); // .shstrtab, last
    out.extend_from_slice(unwind_bytes);
    out.resize(symtab_at, 0);
    // The null symbol, then the symbols.
    out.extend_from_slice(&[0; consts::SYMBOL]);
    symbols(&mut out);
    out.push(0);
    out.extend_from_slice(strings);
    out.extend_from_slice(SECTION_NAMES);
    out.resize(headers_at, 0);
    for section in sections {
        section.write(&mut out);
    }
    Some(out)
}

/// One symbol table entry.
fn symbol_entry(name: u32, info: u8, section: u16, value: u64, size: u64) -> [u8; consts::SYMBOL] {
    let mut entry = [0u8; consts::SYMBOL];
    entry[..4].copy_from_slice(&name.to_le_bytes());
    entry[4] = info;
    entry[6..8].copy_from_slice(&section.to_le_bytes());
    entry[8..16].copy_from_slice(&value.to_le_bytes());
    entry[16..24].copy_from_slice(&size.to_le_bytes());
    entry
}

fn align8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
