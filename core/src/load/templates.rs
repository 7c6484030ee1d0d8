//! The templates a loaded module keeps for load-time instantiation: a copy of its template-code
//! section and where each template symbol's entry starts. An entry is located and parsed when
//! it is asked for (by the instantiator, once per name), by the rules [`Module`]'s own reader
//! applies ([`crate::Module::template_entries`]): it runs to the next entry another template
//! symbol points at, or to the end of the section, and one that does not parse is left out.
//! A load copies one section and one small list, whatever the number of templates.

use alloc::vec::Vec;

use super::symtab::SymbolTable;
use super::{entries, fallible, LoadError};
use crate::template::TemplateCode;
use crate::Module;

/// A loaded module's templates.
#[derive(Debug, Default)]
pub(super) struct Templates {
    /// The template-code section's bytes (empty without templates).
    code: Vec<u8>,
    /// Each template symbol's index in the symbol table and its entry's offset in `code`.
    starts: Vec<(usize, u64)>,
}

impl Templates {
    /// The templates of `module`, whose symbols (validated) are `symbols`.
    pub(super) fn copy(module: &Module<'_>, symbols: &SymbolTable) -> Result<Self, LoadError> {
        let Some(code) = module.template_code().filter(|_| module.dialect().has_symbol_extension()) else {
            return Ok(Self::default());
        };
        let count = symbols.iter().filter(|s| s.template).count();
        if count == 0 {
            return Ok(Self::default());
        }
        let oom = |bytes| LoadError::OutOfMemory { bytes };
        let mut starts =
            fallible::with_capacity(count).ok_or(oom(fallible::bytes_of::<(usize, u64)>(count)))?;
        for (index, _) in symbols.iter().enumerate().filter(|(_, s)| s.template) {
            let view = entries::symbol_entries_from(module, index).next().ok_or(LoadError::Internal)?;
            starts.push((index, view.template_offset()));
        }
        let code = fallible::copied(code.bytes()).ok_or(oom(code.bytes().len()))?;
        Ok(Self { code, starts })
    }

    /// The template-code entry of the template symbol `name` (the first such symbol whose
    /// entry parses).
    pub(super) fn entry(&self, symbols: &SymbolTable, name: &[u8]) -> Option<&[u8]> {
        let code = TemplateCode::parse(&self.code).ok()?;
        self.starts.iter().filter(|&&(index, _)| symbols.name(index) == Some(name)).find_map(|&(_, start)| {
            let end = self.starts.iter().map(|&(_, o)| o).filter(|&o| o > start).min().unwrap_or(code.len());
            code.entry_at(start, end).ok().map(|entry| entry.bytes)
        })
    }
}
