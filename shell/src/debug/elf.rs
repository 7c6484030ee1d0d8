//! The in-memory ELF object that describes a loaded module to a debugger (the GDB JIT
//! interface reads it): a relocatable object whose sections sit at the module's addresses, its
//! code as `.text` (no bytes: the debugger reads the process's memory), its unwind tables as
//! `.eh_frame` where the module has them (bytes copied, at their address, for the debugger's
//! unwinder), and its symbols: functions in `.text`, everything else with an absolute address.
//!
//! Written by hand (a few headers and a symbol table), since the library does not take an ELF
//! crate for this; `tests/tests/debug.rs` reads the result back with `object` and has gdb load
//! it.

use std::borrow::Cow;

use smf_format::kinds::ARCH_AARCH64;
use smf_format::{Binding, SymbolKind};
use smf_runtime::load::LoadedModule;

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
    /// The header as ELF lays it out.
    fn bytes(&self) -> [u8; consts::SECTION_HEADER as usize] {
        let mut out = Place::<{ consts::SECTION_HEADER as usize }>::new();
        out.u32(self.name);
        out.u32(self.kind);
        out.u64(self.flags);
        out.u64(self.addr);
        out.u64(self.offset as u64);
        out.u64(self.size as u64);
        out.u32(self.link);
        out.u32(self.info);
        out.u64(self.align);
        out.u64(self.entry_size);
        out.done()
    }
}

/// The names of the object's sections, in one string table.
const SECTION_NAMES: &[u8] = b"\0.text\0.eh_frame\0.symtab\0.strtab\0.shstrtab\0";

/// Where `name` starts in [`SECTION_NAMES`] (found when compiled: a description is written at
/// every load).
const fn section_name(name: &str) -> u32 {
    let (names, name) = (SECTION_NAMES, name.as_bytes());
    // A `u32` offset (the table is 43 bytes), the bytes indexed by its `usize`.
    let mut offset: u32 = 0;
    while offset as usize + name.len() + 2 <= names.len() {
        let at = offset as usize;
        let mut same = names[at] == 0 && names[at + name.len() + 1] == 0;
        let mut i = 0;
        while same && i < name.len() {
            same = names[at + 1 + i] == name[i];
            i += 1;
        }
        if same {
            return offset + 1;
        }
        offset += 1;
    }
    panic!("a section name missing from SECTION_NAMES")
}

/// The section names' offsets in [`SECTION_NAMES`].
const TEXT_NAME: u32 = section_name(".text");
const EH_FRAME_NAME: u32 = section_name(".eh_frame");
const SYMTAB_NAME: u32 = section_name(".symtab");
const STRTAB_NAME: u32 = section_name(".strtab");
const SHSTRTAB_NAME: u32 = section_name(".shstrtab");

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
    // The functions the file names apart (local, as `static` functions are): their names after
    // the module's own in the string table.
    let named = module.function_names();
    let mut strings = Cow::Borrowed(symbols.names());
    let mut named_at = Vec::new();
    if !named.is_empty() {
        let bytes: usize = named.iter().map(|f| f.name_with_nul.len()).sum();
        let mut all = Vec::new();
        all.try_reserve_exact(symbols.names().len().checked_add(bytes)?).ok()?;
        named_at.try_reserve_exact(named.len()).ok()?;
        all.extend_from_slice(symbols.names());
        for function in named.iter() {
            named_at.push((u32::try_from(all.len()).ok()?, function));
            all.extend_from_slice(function.name_with_nul);
        }
        strings = Cow::Owned(all);
        count += named_at.len();
        locals += named_at.len();
    }
    let image = Image { code, code_len, arch: module.arch(), unwind };
    // The string table is the module's own (every name followed by a NUL), and the names apart.
    write(&image, &strings, count, locals, |table| {
        // Locals first (ELF's rule: the symbol table's `info` is the first non-local's index),
        // each in its slot, in the module's order.
        let (mut local, mut global) = (0, locals);
        let mut put = |slot: &mut usize, entry: [u8; consts::SYMBOL]| {
            if let Some(place) = table.get_mut(*slot * consts::SYMBOL..(*slot + 1) * consts::SYMBOL) {
                place.copy_from_slice(&entry);
            }
            *slot += 1;
        };
        for index in 0..symbols.len() {
            let Some(symbol) = described(index) else { continue };
            let slot = if symbol.binding == Binding::Local { &mut local } else { &mut global };
            let name = symbols.name_offset(index).unwrap_or(0);
            let size = symbols.size(index).unwrap_or(0);
            let kind = match symbol.kind {
                SymbolKind::Function => Kind::Function,
                _ => Kind::Object,
            };
            put(slot, image.symbol(name, symbol.binding, kind, symbol.addr, size));
        }
        for (name, function) in named_at {
            // Checked at load to lie in the code.
            let addr = usize::try_from(function.offset).map_or(code, |offset| code.saturating_add(offset));
            put(&mut local, image.symbol(name, Binding::Local, Kind::Function, addr, function.size));
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
    write(&image, &strings, 1, 0, |table| {
        let entry = image.symbol(0, Binding::Global, Kind::Function, addr, size as u64);
        if let Some(place) = table.get_mut(..consts::SYMBOL) {
            place.copy_from_slice(&entry);
        }
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
/// and `count` symbols (the first `locals` of them local) that `symbols` writes into the symbol
/// table it is given (`count` entries, after ELF's null symbol, zeroed).
///
/// The object is laid out first and allocated once, zeroed, then each part is copied to its
/// offset (a module's description is built at every load: a copy per part, not a growing
/// vector's check per field).
fn write(
    image: &Image<'_>,
    strings: &[u8],
    count: usize,
    locals: usize,
    symbols: impl FnOnce(&mut [u8]),
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
        name: TEXT_NAME,
        kind: consts::SHT_NOBITS,
        flags: consts::SHF_ALLOC | consts::SHF_EXECINSTR,
        addr: code as u64,
        size: code_len,
        align: 16,
        ..SectionHeader::default()
    });
    if let Some(unwind) = unwind {
        add(SectionHeader {
            name: EH_FRAME_NAME,
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
        name: SYMTAB_NAME,
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
        name,
        kind: consts::SHT_STRTAB,
        offset,
        size,
        align: 1,
        ..SectionHeader::default()
    };
    add(string_table(STRTAB_NAME, strtab_at, strings_len));
    let used = add(string_table(SHSTRTAB_NAME, shstrtab_at, SECTION_NAMES.len()));
    let sections = &sections[..used];
    let section_count = u16::try_from(used).ok()?;
    let len = headers_at + sections.len() * usize::from(consts::SECTION_HEADER);

    let mut out = Vec::new();
    out.try_reserve_exact(len).ok()?;
    out.resize(len, 0);
    let mut header = Place::<{ consts::HEADER as usize }>::new();
    header.put(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let machine = if image.arch == ARCH_AARCH64 { consts::EM_AARCH64 } else { consts::EM_X86_64 };
    header.u16(consts::ET_REL);
    header.u16(machine);
    header.u32(1); // version
    header.u64(0); // entry
    header.u64(0); // program headers
    header.u64(headers_at as u64);
    header.u32(0); // flags
    header.u16(consts::HEADER);
    header.u16(0); // program header size
    header.u16(0); // program headers
    header.u16(consts::SECTION_HEADER);
    header.u16(section_count);
    header.u16(section_count - 1); // .shstrtab, last
    copy_at(&mut out, 0, &header.done());
    copy_at(&mut out, eh_frame_at, unwind_bytes);
    // The null symbol (zeroed), then the symbols.
    if let Some(table) = out.get_mut(symtab_at + consts::SYMBOL..strtab_at) {
        symbols(table);
    }
    // .strtab's first byte, the empty name, is already zero.
    copy_at(&mut out, strtab_at + 1, strings);
    copy_at(&mut out, shstrtab_at, SECTION_NAMES);
    for (i, section) in sections.iter().enumerate() {
        copy_at(&mut out, headers_at + i * usize::from(consts::SECTION_HEADER), &section.bytes());
    }
    Some(out)
}

/// Copies `bytes` into `out` at `at` (inside `out` by the layout `write` computed: a part
/// that does not fit is a bug of that layout, caught by debug builds, never a panic in a load).
fn copy_at(out: &mut [u8], at: usize, bytes: &[u8]) {
    let place = out.get_mut(at..at + bytes.len());
    debug_assert!(place.is_some(), "{} bytes at {at} past the object's {}", bytes.len(), out.len());
    if let Some(place) = place {
        place.copy_from_slice(bytes);
    }
}

/// One symbol table entry.
fn symbol_entry(name: u32, info: u8, section: u16, value: u64, size: u64) -> [u8; consts::SYMBOL] {
    let mut entry = Place::<{ consts::SYMBOL }>::new();
    entry.u32(name);
    entry.put(&[info, 0]);
    entry.u16(section);
    entry.u64(value);
    entry.u64(size);
    entry.done()
}

/// A fixed-size record (a header, a symbol) filled field by field, little-endian.
struct Place<const N: usize> {
    bytes: [u8; N],
    at: usize,
}

impl<const N: usize> Place<N> {
    fn new() -> Self {
        Place { bytes: [0; N], at: 0 }
    }

    /// Appends `field` (the record's layout is fixed: fields past its end are a bug, caught by
    /// debug builds, dropped by others).
    fn put(&mut self, field: &[u8]) {
        let place = self.bytes.get_mut(self.at..self.at + field.len());
        debug_assert!(place.is_some(), "a field past the {N}-byte record");
        if let Some(place) = place {
            place.copy_from_slice(field);
        }
        self.at += field.len();
    }

    /// The record, every field put (debug builds check that they fill it exactly).
    fn done(self) -> [u8; N] {
        debug_assert_eq!(self.at, N, "the fields fill the record");
        self.bytes
    }

    fn u16(&mut self, v: u16) {
        self.put(&v.to_le_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.put(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.put(&v.to_le_bytes());
    }
}

fn align8(n: usize) -> usize {
    n.div_ceil(8) * 8
}
