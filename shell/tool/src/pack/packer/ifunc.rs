//! GNU indirect functions (`STT_GNU_IFUNC`: `__attribute__((ifunc))`, `target_clones`, glibc's
//! string functions built from source): a symbol whose value is not the function but its
//! resolver, which picks the implementation for the CPU when the program starts. `ld` gives
//! each one a PLT entry that jumps through a GOT slot, and an `R_X86_64_IRELATIVE` relocation
//! that fills the slot with what the resolver returns before any constructor runs. A module has
//! no such relocation, so pack writes the same with what a module has:
//!
//! - a slot of 8 bytes per indirect function, in a writable data section `.smf.ifunc`;
//! - a stub per indirect function, `jmp [rip + slot]`, in a code section `.smf.ifunc` after
//!   the code: the symbol's name and every reference to it (calls, its address taken, tables of
//!   pointers) become the stub's, as they become the PLT entry's in a program;
//! - one constructor after the stubs, the first entry of the constructor array (so it runs
//!   before every other constructor of the module, as the relocations run before them), that
//!   calls each resolver and stores what it returns in the function's slot.
//!
//! Unlike `IRELATIVE`, which `ld.so` applies before any library's constructor, the slots are
//! filled when the module's constructors run: a load that runs none (tools, `verify --load`)
//! leaves them empty (a call jumps to address 0), and in a batch of modules a constructor of
//! one runs before the resolvers of the modules after it.

use object::{ObjectSection, ObjectSymbol, SectionIndex, SymbolIndex};
use smf_format::kinds::SectionFlags;
use smf_format::write::{SectionSpec, SymbolSpec};
use smf_format::{Binding, RelocKind, SectionType};

use super::Packer;
use crate::pack::carried::Carried;
use crate::pack::elf::{binding_of, is_indirect};
use crate::pack::PackError;

/// A stub: `jmp [rip + disp32]` (the displacement at [`STUB_JUMP`]), padded to 8 bytes.
const STUB: [u8; 8] = [0xFF, 0x25, 0, 0, 0, 0, 0xCC, 0xCC];
/// Where a stub's displacement lies.
const STUB_JUMP: u64 = 2;
/// The constructor's prologue: `sub rsp, 8` (the stack aligned to 16 for the calls).
const PROLOGUE: [u8; 4] = [0x48, 0x83, 0xEC, 0x08];
/// One function's part of the constructor: `call resolver` (displacement at 1), `mov [rip +
/// slot], rax` (displacement at [`STORE_SLOT`]).
const RESOLVE: [u8; 12] = [0xE8, 0, 0, 0, 0, 0x48, 0x89, 0x05, 0, 0, 0, 0];
/// Where [`RESOLVE`]'s store's displacement lies.
const STORE_SLOT: u64 = 8;
/// The constructor's epilogue: `add rsp, 8`; `ret`.
const EPILOGUE: [u8; 5] = [0x48, 0x83, 0xC4, 0x08, 0xC3];

/// An indirect function an object defines: the ELF symbol, its name and binding, and where its
/// resolver lies (the symbol's section and value).
pub(super) struct IndirectFunction {
    at: (usize, SymbolIndex),
    name: Vec<u8>,
    binding: Binding,
    section: SectionIndex,
    value: u64,
    size: u64,
}

impl<'d, 'f> Packer<'d, 'f> {
    /// The indirect functions the objects define in code they carry and that hold their names
    /// ([`Packer::find_definitions`] first), in object and symbol order.
    pub(super) fn indirect_functions(&mut self) -> Vec<IndirectFunction> {
        let mut found = Vec::new();
        for (f, file) in self.files.iter().enumerate() {
            for symbol in object::Object::symbols(file).filter(is_indirect) {
                let Some(section) = symbol.section_index() else { continue };
                let Some(carried) = self.placed.get(&(f, section)) else { continue };
                let name = symbol.name_bytes().unwrap_or_default().to_vec();
                let binding = binding_of(&symbol);
                // A weak one another object's definition overrides is not the module's.
                let overridden = self.definitions.get(&name).is_some_and(|d| d.at != (f, symbol.index()));
                if binding != Binding::Local && overridden {
                    continue;
                }
                if !matches!(carried, Carried::Code { data: false, .. }) {
                    let symbol = String::from_utf8_lossy(&name).into_owned();
                    let section = object::Object::section_by_index(file, section)
                        .and_then(|s| s.name().map(str::to_owned))
                        .unwrap_or_else(|_| "?".to_owned());
                    self.problem(f, PackError::IndirectFunctionNotInCode { symbol, section });
                    continue;
                }
                // One that starts past its section is the symbols' problem to report.
                let value = symbol.address();
                let section_size = object::Object::section_by_index(file, section).map_or(0, |s| s.size());
                if value > section_size {
                    continue;
                }
                let Some(size) = self.size_within_section(f, section, &name, (value, symbol.size())) else {
                    continue;
                };
                found.push(IndirectFunction { at: (f, symbol.index()), name, binding, section, value, size });
            }
        }
        if !found.is_empty() && !self.dialect.has_symbol_extension() {
            for function in std::mem::take(&mut found) {
                let symbol = String::from_utf8_lossy(&function.name).into_owned();
                self.problem(function.at.0, PackError::IndirectFunctionInR72 { symbol });
            }
        }
        found
    }

    /// The slots, stubs and resolving constructor of `functions` ([`super::ifunc`]), the
    /// constructor the first entry of constructor array `array`; each function's ELF symbol
    /// becomes its stub.
    pub(super) fn add_indirect_functions(&mut self, functions: &[IndirectFunction], array: u32) {
        let slots = self.builder.add_section(SectionSpec::new(
            SectionType::Data,
            b".smf.ifunc",
            SectionFlags::READ | SectionFlags::WRITE,
            vec![0; functions.len() * 8],
            8,
        ));
        let mut code = Vec::new();
        for _ in functions {
            code.extend_from_slice(&STUB);
        }
        // The constructor at the next multiple of 16 after the stubs (the code starts at one).
        code.resize(code.len().div_ceil(16) * 16, 0xCC);
        let constructor_within = code.len() as u64;
        code.extend_from_slice(&PROLOGUE);
        for _ in functions {
            code.extend_from_slice(&RESOLVE);
        }
        code.extend_from_slice(&EPILOGUE);
        let size = code.len() as u64;
        let (_, start) = self.append_own_code(b".smf.ifunc", code);
        let resolver_at = start + constructor_within;
        let mut call = resolver_at + PROLOGUE.len() as u64;
        for (i, function) in functions.iter().enumerate() {
            let i = i as u64;
            let slot_name = [function.name.as_slice(), b".ifunc_slot"].concat();
            let slot = self
                .builder
                .add_symbol(SymbolSpec::data(&slot_name, slots, i * 8, 8).with_binding(Binding::Local));
            let stub_at = start + i * STUB.len() as u64;
            let stub =
                SymbolSpec::function(&function.name, stub_at, STUB_JUMP + 4).with_binding(function.binding);
            let stub = self.builder.add_symbol(stub);
            self.symbols.insert(function.at, stub);
            self.builder.add_relocation(stub_at + STUB_JUMP, slot, RelocKind::Pc32, -4);
            let (f, _) = function.at;
            let resolver_name = [function.name.as_slice(), b".resolver"].concat();
            // Placed: `indirect_functions` keeps only functions in carried sections.
            if let Some(resolver) = self
                .placed
                .get(&(f, function.section))
                .map(|p| p.symbol(&resolver_name, function.value, function.size))
            {
                let resolver = self.builder.add_symbol(resolver.with_binding(Binding::Local));
                self.builder.add_relocation(call + 1, resolver, RelocKind::Plt32, -4);
                self.builder.add_relocation(call + STORE_SLOT, slot, RelocKind::Pc32, -4);
            }
            call += RESOLVE.len() as u64;
        }
        let constructor =
            SymbolSpec::function(b".smf.ifunc.resolve", resolver_at, start + size - resolver_at);
        let constructor = self.builder.add_symbol(constructor.with_binding(Binding::Local));
        self.builder.add_data_relocation(array, 0, constructor, RelocKind::Abs64, 0);
        let names: Vec<_> = functions.iter().map(|f| String::from_utf8_lossy(&f.name).into_owned()).collect();
        let text = format!(
            "{} resolved at load, before the constructors (GNU indirect function{}: a stub jumping through a slot its resolver fills)",
            names.join(", "),
            if names.len() == 1 { "" } else { "s" }
        );
        self.note(0, true, text);
    }
}
