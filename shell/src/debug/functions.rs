//! A loaded module's functions by address: which function, and how far into it, an address
//! is ([`Functions::at`]), for crash reports, `smf_addr_info` (as `dladdr`) and the perf map.

use smf_format::SymbolKind;
use smf_runtime::load::LoadedModule;

/// One function: where it starts, how many bytes it takes (0 when its symbol gives no size)
/// and its symbol's index in the module's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    /// Its address.
    pub start: usize,
    /// Its size in bytes, from its symbol (0: unknown).
    pub size: usize,
    /// Its symbol's index in the module's symbol table.
    pub symbol: usize,
}

/// The functions of one module, by address (built once, read without allocating).
#[derive(Clone, Debug, Default)]
pub struct Functions {
    /// Sorted by start address, then by index (aliases keep table order).
    functions: Vec<Function>,
    /// The module's code: an address outside it is in no function of the module.
    code: std::ops::Range<usize>,
}

impl Functions {
    /// The function symbols of `module` that have an address in its code.
    pub fn of(module: &LoadedModule<'_>) -> Self {
        let (start, len) = module.code();
        let code = start..start.saturating_add(len);
        let symbols = module.symbols();
        let mut functions: Vec<Function> = (0..symbols.len())
            .filter_map(|index| {
                let symbol = symbols.get(index)?;
                let is_function = symbol.kind == SymbolKind::Function && !symbol.template;
                let size = usize::try_from(symbols.size(index)?).ok()?;
                (is_function && code.contains(&symbol.addr)).then_some(Function {
                    start: symbol.addr,
                    size,
                    symbol: index,
                })
            })
            .collect();
        functions.sort_unstable_by_key(|f| (f.start, f.symbol));
        Functions { functions, code }
    }

    /// Every function, by address.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Function> {
        self.functions.iter()
    }

    /// Every function by address, but for a label without a size where a function with one
    /// starts (a section's symbol at its first function: profilers name that code by the
    /// function, as [`Functions::at`] does).
    pub fn named(&self) -> impl Iterator<Item = &Function> {
        self.functions.iter().filter(|f| {
            let same_start = self.functions.partition_point(|g| g.start < f.start);
            let sized_there =
                self.functions[same_start..].iter().take_while(|g| g.start == f.start).any(|g| g.size > 0);
            f.size > 0 || !sized_there
        })
    }

    /// The function `addr` lies in, and how far into it: the last one starting at or before
    /// it whose size reaches past it, else (a symbol without a size, as assembler labels have)
    /// the last one starting at or before it. `None` outside the module's code or before its
    /// first function.
    pub fn at(&self, addr: usize) -> Option<(&Function, usize)> {
        if !self.code.contains(&addr) {
            return None;
        }
        let end = self.functions.partition_point(|f| f.start <= addr);
        let before = &self.functions[..end];
        let sized = before.iter().rev().find(|f| f.size > 0 && addr - f.start < f.size);
        let function = sized.or_else(|| before.iter().rev().find(|f| f.size == 0))?;
        Some((function, addr - function.start))
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_in_the_sized_function_around_it_or_after_a_label() {
        let f = |start, size, symbol| Function { start, size, symbol };
        let functions = Functions {
            functions: vec![f(0x1000, 0x10, 0), f(0x1010, 0, 1), f(0x1020, 0x8, 2), f(0x1020, 0x8, 3)],
            code: 0x1000..0x1100,
        };
        assert_eq!(functions.at(0x1004), Some((&f(0x1000, 0x10, 0), 4)));
        assert_eq!(functions.at(0x1018), Some((&f(0x1010, 0, 1), 8)), "past the sized one: the label");
        assert_eq!(functions.at(0x1021).map(|(f, o)| (f.symbol, o)), Some((3, 1)), "the last alias");
        assert_eq!(functions.at(0x1030).map(|(f, o)| (f.symbol, o)), Some((1, 0x20)));
        assert_eq!(functions.at(0x0fff), None, "before the code");
        assert_eq!(functions.at(0x1100), None, "past the code");
        let named: Vec<usize> = functions.named().map(|f| f.symbol).collect();
        assert_eq!(named, [0, 1, 2, 3], "no label shares a sized function's start");
        let labelled = Functions {
            functions: vec![f(0x1000, 0, 4), f(0x1000, 0x10, 0), f(0x1010, 0, 1), f(0x1010, 0, 5)],
            code: 0x1000..0x1100,
        };
        let named: Vec<usize> = labelled.named().map(|f| f.symbol).collect();
        assert_eq!(named, [0, 1, 5], "the label at a sized function's start left out, not others");
        let empty = Functions { functions: vec![], code: 0x1000..0x1100 };
        assert_eq!(empty.at(0x1004), None);
    }
}
