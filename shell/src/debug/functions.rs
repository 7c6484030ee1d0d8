//! A loaded module's functions by address: which function, and how far into it, an address
//! is ([`Functions::at`]), for crash reports, `smf_addr_info` (as `dladdr`) and the perf map.
//! Its function symbols and the functions its file names apart from them (`note.names`, the
//! `static` functions nothing links to) together.

use smf_format::SymbolKind;
use smf_runtime::load::LoadedModule;

/// One function: where it starts, how many bytes it takes (0 when its symbol gives no size)
/// and where its name is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    /// Its address.
    pub start: usize,
    /// Its size in bytes, from its symbol (0: unknown).
    pub size: usize,
    /// Where its name is.
    pub name: FunctionName,
}

/// Where a function's name is: a record of the module's function names
/// ([`LoadedModule::function_names`]) or a symbol of its table. Ordered so: where a local alias
/// (gcc's `fib.localalias`) and a symbol name the same function, the symbol, sorted last among
/// functions starting together, is the one [`Functions::at`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FunctionName {
    /// The function names' record of this index.
    Named(usize),
    /// The symbol of this index.
    Symbol(usize),
}

impl Function {
    /// Its name in `module` (the module it was found in), followed by its NUL.
    pub fn name_with_nul<'m>(&self, module: &'m LoadedModule<'_>) -> Option<&'m [u8]> {
        match self.name {
            FunctionName::Symbol(index) => module.symbols().name_with_nul(index),
            FunctionName::Named(index) => module.function_names().get(index).map(|f| f.name_with_nul),
        }
    }

    /// Its name in `module`.
    pub fn name<'m>(&self, module: &'m LoadedModule<'_>) -> Option<&'m [u8]> {
        self.name_with_nul(module).map(|name| name.strip_suffix(&[0]).unwrap_or(name))
    }
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
    /// The function symbols of `module` that have an address in its code, and the functions
    /// its file names apart.
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
                    name: FunctionName::Symbol(index),
                })
            })
            .collect();
        let named = module.function_names();
        // Checked at load to lie in the code.
        functions.extend((0..named.len()).filter_map(|index| {
            let function = named.get(index)?;
            let start = start.checked_add(usize::try_from(function.offset).ok()?)?;
            let size = usize::try_from(function.size).ok()?;
            code.contains(&start).then_some(Function { start, size, name: FunctionName::Named(index) })
        }));
        functions.sort_unstable_by_key(|f| (f.start, f.name));
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
        let f = |start, size, symbol| Function { start, size, name: FunctionName::Symbol(symbol) };
        let symbol = |f: &Function| match f.name {
            FunctionName::Symbol(index) => index,
            FunctionName::Named(_) => unreachable!(),
        };
        let functions = Functions {
            functions: vec![f(0x1000, 0x10, 0), f(0x1010, 0, 1), f(0x1020, 0x8, 2), f(0x1020, 0x8, 3)],
            code: 0x1000..0x1100,
        };
        assert_eq!(functions.at(0x1004), Some((&f(0x1000, 0x10, 0), 4)));
        assert_eq!(functions.at(0x1018), Some((&f(0x1010, 0, 1), 8)), "past the sized one: the label");
        assert_eq!(functions.at(0x1021).map(|(f, o)| (symbol(f), o)), Some((3, 1)), "the last alias");
        assert_eq!(functions.at(0x1030).map(|(f, o)| (symbol(f), o)), Some((1, 0x20)));
        assert_eq!(functions.at(0x0fff), None, "before the code");
        assert_eq!(functions.at(0x1100), None, "past the code");
        let named: Vec<usize> = functions.named().map(symbol).collect();
        assert_eq!(named, [0, 1, 2, 3], "no label shares a sized function's start");
        let labelled = Functions {
            functions: vec![f(0x1000, 0, 4), f(0x1000, 0x10, 0), f(0x1010, 0, 1), f(0x1010, 0, 5)],
            code: 0x1000..0x1100,
        };
        let named: Vec<usize> = labelled.named().map(symbol).collect();
        assert_eq!(named, [0, 1, 5], "the label at a sized function's start left out, not others");
        let empty = Functions { functions: vec![], code: 0x1000..0x1100 };
        assert_eq!(empty.at(0x1004), None);
    }
}
