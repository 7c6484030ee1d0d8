//! Where each symbol of a module lies ([`SymbolSections`]): the section `smf symbols` lists
//! beside a symbol and `inspect --json` gives as its `section_name`.

use smf_format::module::SymbolTarget;
use smf_format::{Module, Section, Symbol};

/// Where each symbol of a module lies: the code section a code-image offset falls in, a data
/// symbol's own section. Built once per module (a binary search per symbol after that).
pub(crate) struct SymbolSections<'m> {
    module: &'m Module<'m>,
    /// Code sections in code-image order, with where each starts in the image.
    code: Vec<(u64, Section<'m>)>,
}

impl<'m> SymbolSections<'m> {
    /// The sections of `module`.
    pub(crate) fn of(module: &'m Module<'m>) -> Self {
        let code = module.code_sections().map(|(section, start)| (start, section)).collect();
        SymbolSections { module, code }
    }

    /// The section `symbol` lies in (`None`: an import, or a symbol with no place here).
    pub(crate) fn of_symbol(&self, symbol: &Symbol<'_>) -> Option<Section<'m>> {
        match symbol.target {
            SymbolTarget::Code(offset) => {
                // The last code section starting at or before the offset (one that ends exactly
                // at it holds a symbol of size 0 placed at its end).
                let after = self.code.partition_point(|(start, _)| *start <= offset);
                let (_, section) = self.code.get(after.checked_sub(1)?)?;
                Some(*section)
            }
            SymbolTarget::Data { section, .. } => self.module.section(section),
            SymbolTarget::None => None,
        }
    }
}
