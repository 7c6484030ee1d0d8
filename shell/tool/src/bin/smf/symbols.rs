//! `smf symbols`: a module's symbols as `nm` lists them, for one file or several. One line per
//! symbol: value (16 hex digits; blank for an import), size, kind, binding, the section it lies
//! in and its whole name (escaped as every command escapes names). Sorted by name unless asked
//! otherwise; filtered to the defined, undefined or exported ones; `--json` gives the symbols
//! with the keys of `inspect --json`. The functions a module names apart from its symbols
//! (`note.names`) are listed as local functions numbered after the table's symbols.

use std::cmp::Ordering;
use std::io::{self, Write};

use serde_json::Value as Json;
use smf_format::module::SymbolTarget;
use smf_format::{Module, Section, Symbol, SymbolKind};

use crate::args::SymbolsArgs;
use crate::cli::for_each_module;
use crate::inspect::symbol_json;
use crate::json_out;
use crate::names::{escaped, shown};
use crate::symbol_sections::SymbolSections;

/// Which symbols `smf symbols` lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum SymbolFilter {
    /// All of them.
    #[default]
    All,
    /// Those the module defines (not imports).
    Defined,
    /// Its imports.
    Undefined,
    /// Those other modules can see (defined, not local).
    Exported,
}

impl SymbolFilter {
    fn wants(self, symbol: &Symbol<'_>) -> bool {
        let import = symbol.kind == SymbolKind::Import;
        match self {
            SymbolFilter::All => true,
            SymbolFilter::Defined => !import,
            SymbolFilter::Undefined => import,
            SymbolFilter::Exported => symbol.is_exported(),
        }
    }
}

/// The order of the listing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum SymbolOrder {
    /// By name (bytes), then by table position.
    #[default]
    Name,
    /// By value: code symbols, then data symbols by section, then imports and symbols that lie
    /// nowhere (nm's `-n`).
    Value,
    /// By size, smallest first.
    Size,
    /// As in the symbol table (nm's `-p`).
    Table,
}

/// How a listing is made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Listing {
    /// Which symbols.
    pub(crate) filter: SymbolFilter,
    /// In which order.
    pub(crate) order: SymbolOrder,
    /// That order reversed.
    pub(crate) reverse: bool,
    /// Every line starts with this file name and `: ` (nm's `-A`).
    pub(crate) prefix_file: bool,
    /// C++ names demangled (nm's `-C`).
    pub(crate) demangle: bool,
}

/// Runs `smf symbols`; the exit status.
pub(crate) fn command(args: &SymbolsArgs) -> i32 {
    let filter = match &args.filter {
        f if f.defined => SymbolFilter::Defined,
        f if f.undefined => SymbolFilter::Undefined,
        f if f.exported => SymbolFilter::Exported,
        _ => SymbolFilter::All,
    };
    let order = match &args.order {
        o if o.numeric => SymbolOrder::Value,
        o if o.size => SymbolOrder::Size,
        o if o.table => SymbolOrder::Table,
        _ => SymbolOrder::Name,
    };
    let listing = Listing {
        filter,
        order,
        reverse: args.reverse,
        prefix_file: args.print_file_name,
        demangle: args.demangle,
    };
    // nm's header per file, unless each line names its file (or each JSON object does).
    let heading: Option<fn(&str) -> String> = match args.json || args.print_file_name {
        true => None,
        false => Some(|file| format!("\n{file}:\n")),
    };
    for_each_module(&args.files, args.dialect.dialect, heading, |file, module, out| {
        if args.json {
            let sections = SymbolSections::of(module);
            json_out::object(out, |o| {
                o.value("file", &Json::String(file.to_owned()))?;
                o.array("symbols", selected(module, listing).iter().map(|(s, _)| symbol_json(s, &sections)))
            })?;
            out.write_all(b"\n")
        } else {
            write_listing(out, module, file, listing)
        }
    })
}

/// The symbols `listing` selects, each with the section it lies in, in its order.
fn selected<'m>(module: &'m Module<'m>, listing: Listing) -> Vec<(Symbol<'m>, Option<Section<'m>>)> {
    let sections = SymbolSections::of(module);
    // The functions named apart are local: listed with the defined symbols.
    let mut symbols: Vec<_> = module
        .symbols()
        .chain(crate::apart::functions(module))
        .filter(|s| listing.filter.wants(s))
        .map(|s| {
            let section = sections.of_symbol(&s);
            (s, section)
        })
        .collect();
    // Stable sorts: ties keep table order.
    match listing.order {
        SymbolOrder::Name => symbols.sort_by(|(a, _), (b, _)| a.name.cmp(b.name)),
        SymbolOrder::Value => symbols.sort_by(|(a, _), (b, _)| by_value(a, b)),
        SymbolOrder::Size => symbols.sort_by_key(|(s, _)| s.size),
        SymbolOrder::Table => {}
    }
    if listing.reverse {
        symbols.reverse();
    }
    symbols
}

/// nm's numeric order across SMF's two address spaces: the code image, then data sections in
/// table order, then what has no place (imports last).
fn by_value(a: &Symbol<'_>, b: &Symbol<'_>) -> Ordering {
    let key = |s: &Symbol<'_>| match s.target {
        SymbolTarget::Code(offset) => (0, 0, offset),
        SymbolTarget::Data { section, offset } => (1, section, offset),
        SymbolTarget::None => (2, 0, 0),
    };
    key(a).cmp(&key(b))
}

/// Writes the nm-like listing of `file`'s `module` to `out`.
pub(crate) fn write_listing(
    out: &mut dyn Write,
    module: &Module<'_>,
    file: &str,
    listing: Listing,
) -> io::Result<()> {
    let prefix = if listing.prefix_file { format!("{file}: ") } else { String::new() };
    for (s, section) in selected(module, listing) {
        let import = s.kind == SymbolKind::Import;
        let value = if import { " ".repeat(16) } else { format!("{:016x}", s.value) };
        let kind = if s.is_template() { "template" } else { s.kind.name() };
        let place = match section {
            Some(section) => escaped(section.name),
            None if import => "*UND*".to_owned(),
            None => "*ABS*".to_owned(),
        };
        writeln!(
            out,
            "{prefix}{value} {:>8} {kind:<9} {:<6} {place:<8} {}",
            s.size,
            s.binding.name(),
            shown(s.name, listing.demangle)
        )?;
    }
    Ok(())
}
