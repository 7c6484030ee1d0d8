//! Benchmark "parse": parse and fully validate an SMF module with 10,000 symbols and 50,000
//! relocations, next to the `object` crate parsing an ELF relocatable with the same numbers of
//! symbols and relocations and walking every symbol name and relocation (the work that touches
//! the same data; `object` does not validate while parsing).

use std::hint::black_box;

use object::write::{Object, Relocation as ElfRelocation, Symbol as ElfSymbol, SymbolSection};
use object::{
    elf, Architecture, BinaryFormat, Endianness, Object as _, ObjectSection as _, ObjectSymbol as _,
    RelocationFlags, SectionKind, SymbolFlags, SymbolKind, SymbolScope,
};
use smf_format::write::samples;
use smf_format::{Dialect, Module};

const SYMBOLS: u32 = 10_000;
const RELOCATIONS: u32 = 50_000;

use super::report::{self, Goal};
use super::{interleaved, ms, ratio};

/// The ELF relocatable with the same shape as `samples::large`: one `.text` of 16 bytes per
/// function, `SYMBOLS` global functions, `RELOCATIONS` PC32 relocations spread over the code.
fn elf_relocatable() -> Result<Vec<u8>, String> {
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let text = obj.add_section(Vec::new(), b".text".to_vec(), SectionKind::Text);
    let code_len = u64::from(SYMBOLS) * 16;
    let code: Vec<u8> = (0..code_len).map(|i| if i % 16 == 15 { 0xC3 } else { 0x90 }).collect();
    obj.append_section_data(text, &code, 16);
    let mut ids = Vec::with_capacity(SYMBOLS as usize);
    for i in 0..SYMBOLS {
        ids.push(obj.add_symbol(ElfSymbol {
            name: format!("module::function_{i:06}").into_bytes(),
            value: u64::from(i) * 16,
            size: 16,
            kind: SymbolKind::Text,
            scope: SymbolScope::Linkage,
            weak: false,
            section: SymbolSection::Section(text),
            flags: SymbolFlags::None,
        }));
    }
    let slots = code_len / 4;
    for i in 0..u64::from(RELOCATIONS) {
        obj.add_relocation(
            text,
            ElfRelocation {
                offset: (i % slots) * 4,
                symbol: ids[(i % u64::from(SYMBOLS)) as usize],
                addend: -4,
                flags: RelocationFlags::Elf { r_type: elf::R_X86_64_PC32 },
            },
        )
        .map_err(|e| e.to_string())?;
    }
    obj.write().map_err(|e| e.to_string())
}

/// `object`: parse, then walk every symbol name and every relocation.
fn object_walk(data: &[u8]) -> usize {
    let Ok(file) = object::File::parse(data) else { return 0 };
    let mut n = 0usize;
    for symbol in file.symbols() {
        n += symbol.name_bytes().map_or(0, <[u8]>::len);
    }
    for section in file.sections() {
        for (offset, relocation) in section.relocations() {
            n += (offset as usize) ^ (relocation.addend() as usize);
        }
    }
    n
}

/// smf-format: parse and validate everything (names, symbols, relocations, layout).
fn smf_parse(data: &[u8]) -> usize {
    Module::parse(data).map_or(0, |m| m.symbol_count() as usize)
}

/// smf-format: parse, then also walk every symbol and relocation as `object_walk` does.
fn smf_parse_walk(data: &[u8]) -> usize {
    let Ok(module) = Module::parse(data) else { return 0 };
    let mut n = 0usize;
    for symbol in module.symbols() {
        n += symbol.name.len();
    }
    for relocation in module.relocations() {
        n += (relocation.offset as usize) ^ (relocation.addend as usize);
    }
    n
}

pub(super) fn run(rounds: usize) -> Result<(), String> {
    let elf = elf_relocatable()?;
    let elf_check = object::File::parse(&*elf).map_err(|e| e.to_string())?;
    let elf_relocations: usize = elf_check.sections().map(|s| s.relocations().count()).sum();
    if elf_relocations != RELOCATIONS as usize {
        return Err(format!("ELF has {elf_relocations} relocations"));
    }
    println!("parse: {SYMBOLS} symbols, {RELOCATIONS} relocations ({rounds} interleaved rounds, medians)");
    let mut walk_ratios = Vec::new();
    for dialect in [Dialect::R96, Dialect::S128] {
        let smf = samples::large(dialect, SYMBOLS, RELOCATIONS);
        let module = Module::parse(&smf).map_err(|e| e.to_string())?;
        if module.relocation_count() != u64::from(RELOCATIONS) || module.symbol_count() != SYMBOLS {
            return Err("benchmark module has the wrong shape".into());
        }
        let times = interleaved(
            rounds,
            &mut [&mut || smf_parse(black_box(&smf)), &mut || smf_parse_walk(black_box(&smf)), &mut || {
                object_walk(black_box(&elf))
            }],
        );
        let (ours, ours_walk, theirs) = (times[0], times[1], times[2]);
        println!("  {dialect:<4} smf-format parse+validate      {:>9.3} ms  ({} bytes)", ms(ours), smf.len());
        println!("  {dialect:<4} smf-format parse+validate+walk {:>9.3} ms", ms(ours_walk));
        println!("  ELF  object parse+walk           {:>9.3} ms  ({} bytes)", ms(theirs), elf.len());
        println!(
            "  ratio object / smf-format: {:.2}x (validate), {:.2}x (validate+walk, target >= 1.5x)",
            ratio(theirs, ours),
            ratio(theirs, ours_walk)
        );
        walk_ratios.push(ratio(theirs, ours_walk));
    }
    // The slower dialect's: validate and walk every symbol and relocation, against `object`.
    let worst = walk_ratios.into_iter().fold(f64::INFINITY, f64::min);
    report::ratio("parse_vs_object", worst, Goal::AtLeast(1.5));
    Ok(())
}
