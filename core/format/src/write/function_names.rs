//! [`ModuleBuilder::move_local_functions_to_names`]: a module's local functions, which nothing
//! links to, moved out of its symbol table into its function names (`docs/format.md`, "Function
//! names"), as `ld` keeps a library's `static` functions in `.symtab` apart from the `.dynsym`
//! a loader reads. A reference to one (a C table of `static` function pointers) is rewritten
//! against one symbol the module keeps in its code, the offset between them added: the function
//! then needs no symbol of its own.

use alloc::vec::Vec;

use super::specs::{RelocSpec, SectionSpec, SymbolSpec};
use super::ModuleBuilder;
use crate::kinds::{Binding, RelocKind, SymbolFlags, SymbolKind};
use crate::module::function_names::FUNCTION_NAMES_SECTION;

/// The symbol references to a moved function are rewritten against, when no symbol the module
/// keeps lies in its code: a label at its start.
const CODE_ANCHOR: &[u8] = b".text";

impl ModuleBuilder {
    /// Moves every local function out of the symbol table into the module's function names, by
    /// code offset: a load then links none of them, and debuggers and profilers still name them.
    /// References to one by a relocation whose value is linear in `S + A` (abs64, abs32, pc32,
    /// plt32), and to local labels of the code (a function section's), are rewritten against a
    /// symbol the module keeps in its code (its first that is not local, or a local label
    /// `.text` at the code's start), the distance added to the addend; one referred to
    /// otherwise keeps its symbol. Names starting with `.` (assembler labels) stay. Returns
    /// how many moved (0, and nothing changed, if the module has its function names already or
    /// they would not fit the section's fields).
    pub fn move_local_functions_to_names(&mut self) -> usize {
        if self.sections.iter().any(|s| s.name == FUNCTION_NAMES_SECTION) {
            return 0;
        }
        let movable: Vec<bool> = self.symbols.iter().map(movable).collect();
        if !movable.contains(&true) {
            return 0;
        }
        let local_code: Vec<bool> = self.symbols.iter().map(local_code).collect();
        self.refer_to_an_anchor_instead(&local_code);
        // Symbols still referred to (the other kinds) keep their symbol.
        let referenced = self.referenced_symbols();
        let mut moved: Vec<(u64, u64, Vec<u8>)> = self
            .symbols
            .iter()
            .zip(movable.iter().zip(&referenced))
            .filter(|(_, (&movable, &referenced))| movable && !referenced)
            .map(|(s, _)| (s.value, s.size, s.name.clone()))
            .collect();
        if moved.is_empty() {
            return 0;
        }
        moved.sort();
        let functions = moved.iter().map(|(offset, size, name)| (*offset, *size, name.as_slice()));
        let Some(section) = SectionSpec::function_names(functions) else { return 0 };
        self.drop_unreferenced_symbols(|s| !self::movable(s));
        self.add_section(section);
        moved.len()
    }

    /// Rewrites every relocation against a `local` symbol (in the code) whose value is linear
    /// in `S + A` against an anchor in the code, the distance added to its addend (one whose
    /// addend would overflow stays): the functions, and the labels of their sections, then need
    /// no symbol.
    fn refer_to_an_anchor_instead(&mut self, local: &[bool]) {
        let linear = |r: &RelocSpec, dialect| {
            let kind = r.wire.ok().and_then(|wire| RelocKind::from_wire(dialect, wire));
            matches!(kind, Some(RelocKind::Abs64 | RelocKind::Abs32 | RelocKind::Pc32 | RelocKind::Plt32))
        };
        let dialect = self.dialect;
        let retargeted = |r: &RelocSpec| local.get(r.symbol as usize) == Some(&true) && linear(r, dialect);
        if !self.all_relocations().any(retargeted) {
            return;
        }
        let kept_in_code = (0..self.symbols.len()).find(|&i| {
            let template = self.symbols.get(i).is_some_and(|s| s.flags.contains(SymbolFlags::TEMPLATE));
            !local.get(i).copied().unwrap_or(true)
                && !template
                && u32::try_from(i).is_ok_and(|i| self.code_offset(i).is_some())
        });
        let anchor = match kept_in_code.and_then(|i| u32::try_from(i).ok()) {
            Some(anchor) => anchor,
            None => self.add_symbol(SymbolSpec::function(CODE_ANCHOR, 0, 0).with_binding(Binding::Local)),
        };
        let Some(at) = self.code_offset(anchor) else { return };
        let symbols = &self.symbols;
        let rewrite = |r: &mut RelocSpec| {
            if !retargeted(r) {
                return;
            }
            let Some(value) = symbols.get(r.symbol as usize).map(|s| s.value) else { return };
            let distance = i128::from(value) - i128::from(at);
            if let Ok(addend) = i64::try_from(i128::from(r.addend) + distance) {
                r.symbol = anchor;
                r.addend = addend;
            }
        };
        self.relocations.iter_mut().for_each(rewrite);
        self.data_relocations.iter_mut().for_each(|d| rewrite(&mut d.relocation));
    }
}

/// Whether `s` is a local symbol of the code (a function or a label) that references may be
/// rewritten away from.
fn local_code(s: &SymbolSpec) -> bool {
    s.binding == Binding::Local
        && s.kind == SymbolKind::Function
        && s.section.is_none()
        && s.template_param_count == 0
        && !s.flags.contains(SymbolFlags::TEMPLATE)
}

/// Whether `s` is a local function that may move to the function names: a local symbol of the
/// code with a name that is not an assembler label's.
fn movable(s: &SymbolSpec) -> bool {
    local_code(s) && !s.name.is_empty() && !s.name.starts_with(b".")
}
