//! `smf dump --disassemble`: a module's code sections as x86-64 instructions (Intel syntax,
//! through the iced-x86 decoder), at their offsets in the code image, each function named
//! where it starts and each relocation named on the instruction it patches (its target is
//! not known until the module is loaded, so a call shows `call 0x...` plus the symbol), and
//! each import or variable a linked module reaches through its stub or GOT slot named
//! (`puts@stub`, `counter@got`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use iced_x86::{Decoder, DecoderOptions, Formatter as _, Instruction, IntelFormatter};
use smf_format::kinds::{arch_name, ARCH_X86_64};
use smf_format::module::{RelocatedImage, SymbolTarget};
use smf_format::{Module, Symbol, SymbolKind};

use crate::names::{escaped, escaped_short};

/// Why `module`'s code cannot be disassembled, if it cannot.
pub(crate) fn supported(module: &Module<'_>) -> Result<(), String> {
    let arch = module.header().arch;
    if arch != ARCH_X86_64 {
        return Err(format!("cannot disassemble {} code (x86-64 only)", arch_name(arch)));
    }
    Ok(())
}

/// The code sections of `module` as instructions, or why they cannot be shown.
#[cfg(test)]
pub(crate) fn disassemble(module: &Module<'_>) -> Result<String, String> {
    let mut text = String::new();
    disassemble_into(module, &mut |part| text.push_str(part))?;
    Ok(text)
}

/// Bytes of text [`disassemble_into`] gathers before handing them on.
const PART: usize = 64 << 10;

/// The code sections of `module` as instructions, handed to `sink` a part at a time as they
/// are decoded (a module's code may be hundreds of megabytes once decompressed: its text is
/// never held whole), or why they cannot be shown (before any is handed on).
pub(crate) fn disassemble_into(module: &Module<'_>, sink: &mut dyn FnMut(&str)) -> Result<(), String> {
    supported(module)?;
    // A function name for each place one starts in the code image (where several start
    // together, the one a reader wants: exported over local, sized over a size-0 marker such as
    // a section symbol, then the first); relocations by where they patch.
    let mut names: BTreeMap<u64, (Symbol<'_>, (bool, bool))> = BTreeMap::new();
    for symbol in
        module.symbols().chain(crate::apart::functions(module)).filter(|s| s.kind == SymbolKind::Function)
    {
        if let SymbolTarget::Code(offset) = symbol.target {
            let rank = (symbol.is_exported(), symbol.size > 0);
            let best = names.entry(offset).or_insert((symbol, rank));
            if rank > best.1 {
                *best = (symbol, rank);
            }
        }
    }
    let mut relocations: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for r in module.relocations().filter(|r| r.image == RelocatedImage::Code) {
        // Named once per relocation: a long name shortened (whole in the symbol table).
        let symbol = module.symbol(r.symbol).map(|s| escaped_short(s.name)).unwrap_or_default();
        let addend = match r.addend {
            0 => String::new(),
            a if a > 0 => format!("+{a:#x}"),
            a => format!("-{:#x}", a.unsigned_abs()),
        };
        relocations.entry(r.offset).or_default().push(format!("{} {symbol}{addend}", r.kind.name()));
    }
    let slots = linked_slots(module);
    let mut out = String::new();
    let mut formatter = IntelFormatter::new();
    formatter.options_mut().set_hex_prefix("0x");
    formatter.options_mut().set_hex_suffix("");
    formatter.options_mut().set_uppercase_hex(false);
    for (section, start) in module.code_sections() {
        let _ = writeln!(
            out,
            "\nDisassembly of section '{}' (at {start:#x} in the code image):",
            escaped(section.name)
        );
        let code = match crate::payload::bytes_in_memory(module, &section) {
            Ok(code) => code,
            Err(error) => {
                let _ = writeln!(out, "  (not disassembled: {error})");
                continue;
            }
        };
        let mut decoder = Decoder::with_ip(64, &code, start, DecoderOptions::NONE);
        let mut instruction = Instruction::default();
        while decoder.can_decode() {
            decoder.decode_out(&mut instruction);
            let (ip, len) = (instruction.ip(), instruction.len());
            if let Some((symbol, _)) = names.get(&ip) {
                let _ = writeln!(out, "\n{ip:016x} <{}>:", escaped(symbol.name));
            }
            let offset = usize::try_from(ip - start).unwrap_or(usize::MAX);
            let bytes = code.get(offset..offset.saturating_add(len)).unwrap_or_default();
            let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let mut text = String::new();
            if instruction.is_invalid() {
                text.push_str("(bad)");
            } else {
                formatter.format(&instruction, &mut text);
            }
            let _ = write!(out, "{ip:8x}:  {:<30} {text}", hex.join(" "));
            let mut patched: Vec<&str> =
                relocations.range(ip..ip + len as u64).flat_map(|(_, r)| r).map(String::as_str).collect();
            // A call or GOT load a linked module makes through a stub or GOT slot.
            let reached = if instruction.is_ip_rel_memory_operand() {
                Some(instruction.ip_rel_memory_address())
            } else {
                Some(instruction.near_branch_target()).filter(|&target| target != 0)
            };
            if let Some(import) = reached.and_then(|at| slots.get(&at)) {
                patched.push(import);
            }
            if !patched.is_empty() {
                let _ = write!(out, "    ; {}", patched.join(", "));
            }
            out.push('\n');
            if out.len() >= PART {
                sink(&out);
                out.clear();
            }
        }
    }
    sink(&out);
    Ok(())
}

/// Where a linked module (`docs/format.md`, "Linked modules") has each import's stub and GOT
/// slot in the code image's address space, named `NAME@stub` and `NAME@got` (as `objdump`
/// names a library's `NAME@plt`), and each slot of its own GOT (the `.got` rodata section
/// `smf pack` writes), named `NAME@got` after the symbol its data relocation names; empty for
/// other modules.
fn linked_slots(module: &Module<'_>) -> BTreeMap<u64, String> {
    use smf_format::module::{linked, DataRegion};
    use smf_format::ModuleFlags;
    let mut slots = BTreeMap::new();
    let flags = module.header().flags;
    if !flags.intersects(ModuleFlags::LINKED) {
        return slots;
    }
    let imports = u64::from(module.import_count());
    let code_size = module.code_size();
    let Some(read_only) = linked::read_only_offset(code_size, imports, module.data_alignment()) else {
        return slots;
    };
    let (Some(stubs), Some(got)) =
        (linked::stub_offset(code_size), linked::got_offset(read_only, module.read_only_size()))
    else {
        return slots;
    };
    if flags.contains(ModuleFlags::LINKED_IMPORTS) {
        for (k, import) in (0u64..).zip(module.symbols().filter(|s| s.kind == SymbolKind::Import)) {
            let name = escaped_short(import.name);
            slots.insert(stubs + k * linked::STUB_SIZE, format!("{name}@stub"));
            slots.insert(got + k * linked::GOT_SLOT, format!("{name}@got"));
        }
    }
    let own_got =
        module.data_sections().find(|p| p.region == DataRegion::ReadOnly && p.section.name == b".got");
    if let Some(placement) = own_got {
        let (start, end) =
            (placement.offset, placement.offset.saturating_add(placement.section.virtual_size));
        let in_got = |r: &smf_format::module::Relocation| {
            r.image == RelocatedImage::Data && (start..end).contains(&r.offset)
        };
        for r in module.relocations().filter(in_got) {
            let name = module.symbol(r.symbol).map(|s| escaped_short(s.name)).unwrap_or_default();
            slots.insert(read_only.saturating_add(r.offset), format!("{name}@got"));
        }
    }
    slots
}

#[cfg(test)]
mod tests {
    use smf_format::write::{samples, ModuleBuilder, SymbolSpec};
    use smf_format::Dialect;

    use super::*;

    #[test]
    fn functions_are_named_and_instructions_decoded() {
        let mut b = ModuleBuilder::new(Dialect::R96);
        // mov eax, 42; ret, then an undefined opcode.
        b.add_code(b".text", &[0xB8, 0x2A, 0x00, 0x00, 0x00, 0xC3, 0x0F, 0x0B]);
        b.add_symbol(SymbolSpec::function(b"answer", 0, 6));
        b.add_symbol(SymbolSpec::function(b"trap", 6, 2));
        let bytes = b.build().unwrap();
        let module = Module::parse(&bytes).unwrap();
        let text = disassemble(&module).unwrap();
        assert!(text.contains("Disassembly of section '.text' (at 0x0 in the code image):"), "{text}");
        assert!(text.contains("\n0000000000000000 <answer>:\n"), "{text}");
        assert!(text.contains("b8 2a 00 00 00"), "{text}");
        assert!(text.contains("mov eax,0x2a"), "{text}");
        assert!(text.contains("\n0000000000000006 <trap>:\n"), "{text}");
        assert!(text.contains("ud2"), "{text}");

        let aarch64 = samples::return_42(Dialect::R96);
        let mut aarch64 = aarch64.clone();
        aarch64[7] = 1;
        let module = Module::parse(&aarch64).unwrap();
        assert_eq!(disassemble(&module).unwrap_err(), "cannot disassemble aarch64 code (x86-64 only)");
    }

    #[test]
    fn loads_through_the_modules_own_got_name_the_variable() {
        // mov rax, [rip + v@GOTPCREL]; ret, linked: the load reads v's slot of the own GOT, at 8
        // (the code rounded up to 8).
        let mut b = ModuleBuilder::new(Dialect::S128);
        b.add_code(b".text", &[0x48, 0x8b, 0x05, 0, 0, 0, 0, 0xc3]);
        let data = b.add_data(b".data", &[0; 8]);
        b.add_symbol(SymbolSpec::function(b"get", 0, 8));
        let v = b.add_symbol(SymbolSpec::data(b"v", data, 0, 8));
        b.add_relocation(3, v, smf_format::RelocKind::GotPc32, -4);
        b.link().unwrap();
        let bytes = b.build().unwrap();
        let module = Module::parse(&bytes).unwrap();
        let text = disassemble(&module).unwrap();
        assert!(text.lines().any(|l| l.contains("mov rax,[8]") && l.ends_with("; v@got")), "{text}");
    }

    #[test]
    fn the_text_is_handed_on_in_parts_never_held_whole() {
        let mut b = ModuleBuilder::new(Dialect::R96);
        b.add_code(b".text", &[0x90; 64 << 10]); // 65,536 nops: some 3 MB of text
        let bytes = b.build().unwrap();
        let module = Module::parse(&bytes).unwrap();
        let (mut parts, mut largest, mut total, mut lines) = (0, 0, 0, 0);
        disassemble_into(&module, &mut |part| {
            parts += 1;
            largest = largest.max(part.len());
            total += part.len();
            lines += part.matches("nop").count();
        })
        .unwrap();
        assert_eq!(lines, 64 << 10, "every instruction, once");
        assert!(parts > 40, "{parts} parts for {total} bytes");
        assert!(largest < PART + 200, "a part of {largest} bytes");
    }
}
