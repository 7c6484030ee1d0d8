//! `smf inspect`: what is inside a module, as a readable report (like `readelf`) and the same
//! as JSON, for one file or several.
//!
//! Both renderings walk the same validated [`Module`]; the pieces that need interpretation
//! (which templates exist, note.sdn rows keyed by column) are computed once, in `generics.rs`,
//! and shared, and `symbols --json` and `verify --json` use the same keys through
//! [`symbols_json`] and [`header_json`].

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::args::InspectArgs;
use crate::cli::for_each_module;
use crate::json_out;
use crate::names::{escaped, quoted, quoted_short};
use crate::symbol_sections::SymbolSections;

use smf_format::kinds::{arch_name, platform_name};
use smf_format::module::SymbolTarget;
use smf_format::{CallArray, HeaderPlacement, Module, SectionFlags, SectionType};

use serde_json::Value as Json;

mod generics;

use generics::{
    note_columns_json, note_text, template_meta_json, templates_json, templates_text, write_note_json,
};

fn section_type_name(t: SectionType) -> String {
    match t {
        SectionType::Unknown(n) => format!("unknown({n})"),
        known => known.name().to_owned(),
    }
}

/// A section's type as the text report shows it: constructor and destructor arrays, unwind
/// tables and compressed sections marked.
fn section_type_text(section: &smf_format::Section<'_>) -> String {
    let name = section_type_name(section.section_type);
    match CallArray::of_flags(section.flags) {
        _ if section.flags.contains(SectionFlags::COMPRESSED) => format!("{name}:packed"),
        Ok(Some(CallArray::Constructors)) => format!("{name}:ctors"),
        Ok(Some(CallArray::Destructors)) => format!("{name}:dtors"),
        _ if section.flags.contains(SectionFlags::UNWIND) => format!("{name}:unwind"),
        _ => name,
    }
}

fn rwx(flags: SectionFlags) -> String {
    let bit = |flag: SectionFlags, c: char| if flags.contains(flag) { c } else { '-' };
    [bit(SectionFlags::READ, 'r'), bit(SectionFlags::WRITE, 'w'), bit(SectionFlags::EXEC, 'x')]
        .iter()
        .collect()
}

/// Runs `smf inspect`; the exit status.
pub(crate) fn command(args: &InspectArgs) -> i32 {
    let parts = Parts { sections: args.sections, symbols: args.symbols, relocations: args.relocations };
    // A whole report starts by naming its file; a report of some tables, after a header.
    let heading: Option<fn(&str) -> String> = match (args.json, parts.chosen()) {
        (false, true) => Some(|file| format!("\nFile: {file}\n")),
        _ => None,
    };
    let mut first = true;
    for_each_module(&args.files, args.dialect.dialect, heading, |file, module, out| {
        let written = if args.json {
            write_report_json(out, file, module, parts).and_then(|()| out.write_all(b"\n"))
        } else if parts.chosen() {
            out.write_all(report_text_parts(module, parts).as_bytes())
        } else {
            // Reports of several files, a blank line apart.
            let gap = if first { "" } else { "\n" };
            out.write_all(format!("{gap}{}", report_text(module, file)).as_bytes())
        };
        first = false;
        written
    })
}

/// Which tables a report shows; none chosen means the whole report (header, tables, note,
/// templates).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Parts {
    /// The section table.
    pub(crate) sections: bool,
    /// The symbol table.
    pub(crate) symbols: bool,
    /// The relocations.
    pub(crate) relocations: bool,
}

impl Parts {
    fn chosen(self) -> bool {
        self.sections || self.symbols || self.relocations
    }
}

/// Writes one table of the text report.
type TextTable = fn(&mut String, &Module<'_>);
/// Only the tables `parts` chooses, as text.
pub(crate) fn report_text_parts(module: &Module<'_>, parts: Parts) -> String {
    let mut out = String::new();
    let tables: [(bool, TextTable); 3] = [
        (parts.sections, sections_text),
        (parts.symbols, symbols_text),
        (parts.relocations, relocations_text),
    ];
    for (_, table) in tables.iter().filter(|(wanted, _)| *wanted) {
        table(&mut out, module);
    }
    // Each table starts with a blank line (after the header); alone, it need not.
    out.trim_start_matches('\n').to_owned()
}

/// The readable report.
pub(crate) fn report_text(module: &Module<'_>, label: &str) -> String {
    let mut out = String::new();
    header_text(&mut out, module, label);
    sections_text(&mut out, module);
    symbols_text(&mut out, module);
    relocations_text(&mut out, module);
    note_text(&mut out, module);
    templates_text(&mut out, module);
    out
}

/// The header: dialect, placement, version, target, flags, entry point, image sizes.
fn header_text(out: &mut String, module: &Module<'_>, label: &str) {
    let h = module.header();
    let placement = match module.placement() {
        HeaderPlacement::Start => "at offset 0".to_owned(),
        HeaderPlacement::Trailer => format!("trailer at offset {}", module.header_offset()),
    };
    let _ = writeln!(out, "SMF module {label}");
    let _ = writeln!(out, "  Dialect:        {} (header {placement})", module.dialect());
    let _ = writeln!(out, "  Version:        {}.{}", h.version_major, h.version_minor);
    let _ = writeln!(out, "  Platform:       {} ({})", h.platform, platform_name(h.platform));
    let _ = writeln!(out, "  Arch:           {} ({})", h.arch, arch_name(h.arch));
    let _ = writeln!(
        out,
        "  Flags:          {:#06x} [{}]",
        h.flags.bits(),
        h.flags.names().collect::<Vec<_>>().join(", ")
    );
    let entry = if h.is_executable() { format!("{:#x}", h.entry_point) } else { "none".to_owned() };
    let _ = writeln!(out, "  Entry point:    {entry}");
    let _ = writeln!(out, "  Stub:           {} bytes, SMF data at {}", h.stub_size, module.data_start());
    let _ = writeln!(
        out,
        "  Image:          code {} bytes, rodata {} bytes, data+bss {} bytes",
        module.code_size(),
        module.read_only_size(),
        module.read_write_size()
    );
    if let Some(method) = module.compression() {
        let (stored, decompressed) = compressed_sizes(module);
        let ratio = if stored == 0 { 0.0 } else { decompressed as f64 / stored as f64 };
        let _ = writeln!(
            out,
            "  Compression:    {} (level {}): {decompressed} bytes stored as {stored} ({ratio:.2}x)",
            method.name(),
            h.compression_level
        );
    }
    // An application's fields (R96 and S128 headers have them): how it runs, its window if it
    // has one.
    if h.is_executable() && module.dialect() != smf_format::Dialect::R72 {
        let _ = write!(out, "  App type:       {}", app_type_name(h.app_type));
        if h.app_type == APP_GUI {
            let _ = write!(out, ", window {}x{}", h.window_width, h.window_height);
        }
        let _ = writeln!(out);
    }
}

/// Bytes the compressed sections hold in the file, and bytes they decompress to.
fn compressed_sizes(module: &Module<'_>) -> (u64, u64) {
    module
        .sections()
        .filter(|s| s.flags.contains(SectionFlags::COMPRESSED))
        .fold((0, 0), |(stored, made), s| (stored + s.size, made + module.payload(&s).len()))
}

/// The app type of a graphical application, the one with a window.
const APP_GUI: u8 = 2;

/// An app type's name (the format's unknown values run as command-line programs).
fn app_type_name(app_type: u8) -> String {
    match app_type {
        0 => "cli".to_owned(),
        1 => "tui".to_owned(),
        APP_GUI => "gui".to_owned(),
        3 => "service".to_owned(),
        4 => "repl".to_owned(),
        other => format!("{other} (unknown: runs as cli)"),
    }
}

/// The section table.
fn sections_text(out: &mut String, module: &Module<'_>) {
    let _ = writeln!(out, "\nSections ({}):", module.section_count());
    let _ = writeln!(
        out,
        "  [Nr] {:<16} {:<15} Flg {:>10} {:>10} {:>10} Align",
        "Name", "Type", "Offset", "Size", "VirtSize"
    );
    for s in module.sections() {
        let _ = writeln!(
            out,
            "  [{:>2}] {:<16} {:<15} {} {:>#10x} {:>#10x} {:>#10x} {}",
            s.index,
            escaped(s.name),
            section_type_text(&s),
            rwx(s.flags),
            s.offset,
            s.size,
            s.virtual_size,
            s.alignment
        );
    }
}

/// The symbol table.
fn symbols_text(out: &mut String, module: &Module<'_>) {
    let _ = writeln!(out, "\nSymbols ({}):", module.symbol_count());
    let _ = writeln!(
        out,
        "  {:>5} {:>18} {:>8} {:<9} {:<6} Flg  TP Name",
        "Num", "Value", "Size", "Kind", "Bind"
    );
    for s in module.symbols() {
        let place = match s.target {
            SymbolTarget::Data { section, .. } => format!(" (in section {section})"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  {:>5} {:>#18x} {:>8} {:<9} {:<6} {:#04x} {:>2} {}{place}",
            s.index,
            s.value,
            s.size,
            s.kind.name(),
            s.binding.name(),
            s.flags.bits(),
            s.template_param_count,
            quoted(s.name),
        );
    }
}

/// Every relocation, with its symbol's name (shortened past
/// [`crate::names::REPEATED_NAME_BYTES`]: whole in the symbol table).
fn relocations_text(out: &mut String, module: &Module<'_>) {
    let marker = match module.has_data_relocations_marker() {
        true => ", the first the marker of data relocations",
        false => "",
    };
    let _ = writeln!(out, "\nRelocations ({}{marker}):", module.relocation_count());
    if module.relocation_count() > 0 {
        let _ = writeln!(out, "  {:<5} {:>10} {:<26} {:>20} Symbol", "Image", "Offset", "Kind", "Addend");
    }
    for r in module.relocations() {
        let name = module.symbol(r.symbol).map(|s| quoted_short(s.name)).unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<5} {:>#10x} {:<26} {:>20} {} {}",
            r.image.name(),
            r.offset,
            r.kind.name(),
            r.addend,
            r.symbol,
            name
        );
    }
}

/// Writes `file`'s JSON report to `out` (keys as documented in the README), or an object of
/// only the tables `parts` chooses (same keys), after the file's name: each table's entries
/// written as they are made ([`json_out`]).
fn write_report_json(out: &mut dyn Write, file: &str, module: &Module<'_>, parts: Parts) -> io::Result<()> {
    let all = !parts.chosen();
    json_out::object(out, |o| {
        o.value("file", &Json::String(file.to_owned()))?;
        if all {
            for (key, value) in header_json(module) {
                o.value(&key, &value)?;
            }
        }
        if all || parts.sections {
            o.array("sections", sections_json(module))?;
        }
        if all || parts.symbols {
            o.array("symbols", symbols_json(module))?;
        }
        if all || parts.relocations {
            o.array("relocations", relocations_json(module))?;
        }
        if all {
            write_note_json(o, "note_sdn", module)?;
            o.value("note_sdn_columns", &note_columns_json(module))?;
            o.array("templates", templates_json(module))?;
            match template_meta_json(module) {
                Some(entries) => o.array("template_meta", entries)?,
                None => o.value("template_meta", &Json::Null)?,
            }
        }
        Ok(())
    })
}

/// The header's keys of the JSON report.
pub(crate) fn header_json(module: &Module<'_>) -> serde_json::Map<String, Json> {
    let h = module.header();
    let Json::Object(header) = object([
        ("dialect", Json::String(module.dialect().name().to_owned())),
        (
            "header_placement",
            Json::String(match module.placement() {
                HeaderPlacement::Start => "start".to_owned(),
                HeaderPlacement::Trailer => "trailer".to_owned(),
            }),
        ),
        ("header_offset", Json::from(module.header_offset())),
        ("version", Json::String(format!("{}.{}", h.version_major, h.version_minor))),
        ("platform", Json::from(u64::from(h.platform))),
        ("arch", Json::from(u64::from(h.arch))),
        ("flags", Json::from(u64::from(h.flags.bits()))),
        ("executable", Json::Bool(h.is_executable())),
        ("entry_point", Json::from(h.entry_point)),
        ("stub_size", Json::from(u64::from(h.stub_size))),
        ("smf_data_offset", Json::from(u64::from(h.smf_data_offset))),
        ("code_size", Json::from(module.code_size())),
        ("rodata_size", Json::from(module.read_only_size())),
        ("data_size", Json::from(module.read_write_size())),
        ("compression", module.compression().map_or(Json::Null, |m| m.name().into())),
        ("compressed_stored_bytes", Json::from(compressed_sizes(module).0)),
        ("compressed_decompressed_bytes", Json::from(compressed_sizes(module).1)),
    ]) else {
        unreachable!("object() makes an object")
    };
    header
}

/// The section table's entries.
fn sections_json<'m>(module: &'m Module<'m>) -> impl Iterator<Item = Json> + 'm {
    module.sections().map(|s| {
        object([
            ("index", Json::from(u64::from(s.index))),
            ("name", bytes(s.name)),
            ("type", Json::from(u64::from(s.section_type.to_wire()))),
            ("type_name", Json::String(section_type_name(s.section_type))),
            ("flags", Json::from(u64::from(s.flags.bits()))),
            (
                "call_array",
                CallArray::of_flags(s.flags).ok().flatten().map_or(Json::Null, |a| a.name().into()),
            ),
            ("unwind_table", Json::Bool(s.flags.contains(SectionFlags::UNWIND))),
            ("compressed", Json::Bool(s.flags.contains(SectionFlags::COMPRESSED))),
            ("payload_size", Json::from(module.payload(&s).len())),
            ("offset", Json::from(s.offset)),
            ("size", Json::from(s.size)),
            ("virtual_size", Json::from(s.virtual_size)),
            ("alignment", Json::from(s.alignment)),
        ])
    })
}

/// The symbol table's entries.
fn symbols_json<'m>(module: &'m Module<'m>) -> impl Iterator<Item = Json> + 'm {
    let sections = SymbolSections::of(module);
    module.symbols().map(move |s| symbol_json(&s, &sections))
}

/// One symbol, with the keys of the symbol table in the JSON report: `section` is the index of
/// a data symbol's section (its value is an offset in it), `section_name` the name of the
/// section any defined symbol lies in.
pub(crate) fn symbol_json(s: &smf_format::Symbol<'_>, sections: &SymbolSections<'_>) -> Json {
    let section = match s.target {
        SymbolTarget::Data { section, .. } => Json::from(u64::from(section)),
        _ => Json::Null,
    };
    object([
        ("index", Json::from(u64::from(s.index))),
        ("name", bytes(s.name)),
        ("kind", Json::String(s.kind.name().to_owned())),
        ("binding", Json::String(s.binding.name().to_owned())),
        ("value", Json::from(s.value)),
        ("size", Json::from(s.size)),
        ("flags", Json::from(u64::from(s.flags.bits()))),
        ("template_param_count", Json::from(u64::from(s.template_param_count))),
        ("section", section),
        ("section_name", sections.of_symbol(s).map_or(Json::Null, |section| bytes(section.name))),
        ("hash_matches", Json::Bool(s.stored_hash == s.hash())),
    ])
}

/// Every relocation, with its symbol's name.
fn relocations_json<'m>(module: &'m Module<'m>) -> impl Iterator<Item = Json> + 'm {
    module.relocations().map(|r| {
        object([
            ("index", Json::from(r.index)),
            ("image", Json::String(r.image.name().to_owned())),
            ("offset", Json::from(r.offset)),
            ("symbol", Json::from(u64::from(r.symbol))),
            ("symbol_name", module.symbol(r.symbol).map_or(Json::Null, |s| bytes(s.name))),
            ("kind", Json::String(r.kind.name().to_owned())),
            ("wire", Json::from(u64::from(r.wire))),
            ("addend", Json::from(r.addend)),
        ])
    })
}

/// A JSON object from `(key, value)` pairs, in their order.
pub(crate) fn object<const N: usize>(pairs: [(&str, Json); N]) -> Json {
    Json::Object(pairs.into_iter().map(|(key, value)| (key.to_owned(), value)).collect())
}

/// A JSON string from bytes that may not be UTF-8 (invalid sequences become U+FFFD).
pub(crate) fn bytes(bytes: &[u8]) -> Json {
    Json::String(String::from_utf8_lossy(bytes).into_owned())
}
