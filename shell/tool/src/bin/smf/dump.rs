//! `smf dump`: a section's bytes as `readelf -x` shows them (offsets in the section, four
//! groups of four bytes, the printable ones as text), and with `--disassemble` the code
//! sections as instructions (`disasm.rs`), each function named where it starts.

use std::fmt::Write as _;

use smf_format::{Module, Section};

use crate::args::DumpArgs;
use crate::cli::{out, parse, read_module_file, report, EXIT_BAD, EXIT_OK};
use crate::error::CommandError;
use crate::names::escaped;

/// Runs `smf dump`; the exit status.
pub(crate) fn command(args: &DumpArgs) -> i32 {
    match dump(args) {
        Ok(()) => EXIT_OK,
        Err(error) => {
            report(&error);
            EXIT_BAD
        }
    }
}

/// Writes what `args` asks for, once everything asked for is known to be there (nothing is
/// written for a command that fails), the disassembly as it is decoded.
fn dump(args: &DumpArgs) -> Result<(), CommandError> {
    let file = &args.file;
    let bytes = read_module_file(file)?;
    let module = parse(file, &bytes, args.dialect.dialect)?;
    let sections = (args.what.hex.iter())
        .map(|wanted| {
            find_section(&module, wanted)
                .ok_or_else(|| CommandError::NoSuchSection { file: file.clone(), section: wanted.clone() })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let cannot = |why| CommandError::Disassemble { file: file.clone(), why };
    if args.what.disassemble {
        crate::disasm::supported(&module).map_err(cannot)?;
    }
    for section in &sections {
        out(&hex_dump(section));
    }
    if args.what.disassemble {
        crate::disasm::disassemble_into(&module, &mut |text| out(text)).map_err(cannot)?;
    }
    Ok(())
}

/// The section `wanted` names: by its index, else by its name (the first of that name).
fn find_section<'m>(module: &Module<'m>, wanted: &str) -> Option<Section<'m>> {
    if let Ok(index) = wanted.parse::<u32>() {
        return module.section(index);
    }
    module.sections().find(|s| s.name == wanted.as_bytes())
}

/// Bytes per line of a hex dump.
const LINE: usize = 16;

/// `section`'s bytes in the file as `readelf -x` shows them.
pub(crate) fn hex_dump(section: &Section<'_>) -> String {
    let mut out = format!("\nHex dump of section '{}':\n", escaped(section.name));
    if section.data.is_empty() {
        let _ = writeln!(out, "  (no data in the file: {} bytes of zeros in memory)", section.virtual_size);
        return out;
    }
    for (line, chunk) in section.data.chunks(LINE).enumerate() {
        let _ = write!(out, "  {:#010x} ", line * LINE);
        for group in 0..LINE / 4 {
            for i in 0..4 {
                match chunk.get(group * 4 + i) {
                    Some(byte) => {
                        let _ = write!(out, "{byte:02x}");
                    }
                    None => out.push_str("  "),
                }
            }
            out.push(' ');
        }
        out.extend(
            chunk.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { char::from(b) } else { '.' }),
        );
        out.push('\n');
    }
    if section.virtual_size > section.size {
        let _ = writeln!(out, "  (then {} bytes of zeros in memory)", section.virtual_size - section.size);
    }
    out
}

#[cfg(test)]
mod tests {
    use smf_format::write::ModuleBuilder;
    use smf_format::Dialect;

    use super::*;

    #[test]
    fn a_hex_dump_shows_offsets_groups_and_text() {
        let mut b = ModuleBuilder::new(Dialect::R96);
        b.add_code(b".text", b"Hello, SMF!\x00\x01\x02\x7f\xffABCDEFGH");
        let bytes = b.build().unwrap();
        let module = Module::parse(&bytes).unwrap();
        let text = find_section(&module, ".text").unwrap();
        assert_eq!(find_section(&module, "0").map(|s| s.index), Some(text.index));
        assert!(find_section(&module, ".data").is_none());
        assert_eq!(
            hex_dump(&text),
            "\nHex dump of section '.text':\n  \
             0x00000000 48656c6c 6f2c2053 4d462100 01027fff Hello, SMF!.....\n  \
             0x00000010 41424344 45464748                   ABCDEFGH\n"
        );
    }
}
