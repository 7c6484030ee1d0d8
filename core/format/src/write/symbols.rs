//! The builder's string and symbol tables: each distinct name once (matched by sorting, so no
//! set of names costs more than O(n log n)), and every symbol encoded for the dialect.

use alloc::vec;
use alloc::vec::Vec;

use super::{sat_u32, BuildError, ModuleBuilder};
use crate::wire::symbol::{self, SymbolFields};

impl ModuleBuilder {
    /// The string table and each symbol's name offset. Names are matched by sorting them
    /// (O(n log n) comparisons whatever the names, an ELF file's or a compiler's), so no set of
    /// names can be made to cost more; each name is written where its first symbol comes.
    pub(super) fn strings(&self) -> Result<(Vec<u8>, Vec<u32>), BuildError> {
        if let Some(i) = self.symbols.iter().position(|symbol| symbol.name.contains(&0)) {
            return Err(BuildError::NameHasNul { symbol: sat_u32(i) });
        }
        // Each symbol's first symbol of the same name: sorted by (name, index), a run of equal
        // names starts with its first.
        let mut by_name: Vec<(&[u8], usize)> =
            self.symbols.iter().enumerate().map(|(i, symbol)| (symbol.name.as_slice(), i)).collect();
        crate::sort::heapsort(&mut by_name);
        let mut first = vec![0usize; self.symbols.len()];
        let mut run_start = 0;
        for (k, &(name, i)) in by_name.iter().enumerate() {
            if k == 0 || by_name[k - 1].0 != name {
                run_start = i;
            }
            first[i] = run_start;
        }
        let mut table = Vec::new();
        let mut offsets: Vec<u32> = Vec::with_capacity(self.symbols.len());
        for (i, symbol) in self.symbols.iter().enumerate() {
            let offset = if first[i] == i {
                let offset = u32::try_from(table.len()).map_err(|_| BuildError::TooLarge)?;
                table.extend_from_slice(&symbol.name);
                table.push(0);
                offset
            } else {
                // The first symbol of this name comes earlier: its offset is already known.
                offsets[first[i]]
            };
            offsets.push(offset);
        }
        Ok((table, offsets))
    }

    /// The symbol table's entries, each name at its offset in the string table.
    pub(super) fn symbol_table(&self, name_offsets: &[u32]) -> Vec<u8> {
        let size = self.dialect.symbol_entry_size();
        let mut out = vec![0u8; self.symbols.len() * size];
        for ((spec, &name_offset), entry) in
            self.symbols.iter().zip(name_offsets).zip(out.chunks_exact_mut(size))
        {
            let fields = SymbolFields {
                name_offset,
                name_hash: spec.stored_hash.unwrap_or_else(|| crate::fnv1a(&spec.name)),
                sym_type: spec.kind.to_wire(self.dialect),
                binding: spec.binding.to_wire(),
                visibility: spec.visibility,
                flags: spec.flags.bits(),
                value: spec.value,
                size: spec.size,
                template_param_count: spec.template_param_count,
                section_index: spec.section.map_or(0, |s| u16::try_from(s + 1).unwrap_or(u16::MAX)),
                template_offset: spec.template_offset,
            };
            symbol::encode(entry, self.dialect, &fields);
        }
        out
    }
}
