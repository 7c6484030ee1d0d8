//! Which function or variable of an object covers a section offset, so that a problem names
//! the code or data a person wrote ("in `parse_header`") rather than only `.text+0x1a4`.

use object::{Object, ObjectSymbol, SectionIndex, SymbolKind};

/// An object's named functions and variables, by section and address (built once per object,
/// and only when a problem needs it).
#[derive(Debug)]
pub(super) struct Covering {
    /// (section, address, size, name), sorted by section then address.
    symbols: Vec<(SectionIndex, u64, u64, String)>,
}

/// How far back from the last symbol starting at or before an offset a covering one is looked
/// for (symbols nest rarely; a bound keeps a report of many problems linear).
const LOOK_BACK: usize = 16;

impl Covering {
    /// The functions and variables `file` defines.
    pub(super) fn of(file: &object::File<'_>) -> Self {
        let mut symbols: Vec<_> = file
            .symbols()
            .filter(|s| matches!(s.kind(), SymbolKind::Text | SymbolKind::Data | SymbolKind::Tls))
            .filter_map(|s| {
                let name = s.name().ok().filter(|n| !n.is_empty())?;
                Some((s.section_index()?, s.address(), s.size(), name.to_owned()))
            })
            .collect();
        symbols.sort_by_key(|s| (s.0 .0, s.1));
        Covering { symbols }
    }

    /// The function or variable covering `offset` in `section`: the nearest one at or before it
    /// whose size reaches past it, or, failing that, the nearest without a size (an assembler
    /// label).
    pub(super) fn at(&self, section: SectionIndex, offset: u64) -> Option<&str> {
        let end = self.symbols.partition_point(|s| (s.0 .0, s.1) <= (section.0, offset));
        let candidates = self.symbols[..end].iter().rev().take(LOOK_BACK).take_while(|s| s.0 == section);
        let mut label = None;
        for (_, address, size, name) in candidates {
            if *size == 0 {
                label = label.or(Some(name.as_str()));
            } else if offset - address < *size {
                return Some(name);
            }
        }
        label
    }

    /// The names defined in `section`, in address order (found by binary search: a report
    /// naming the variables of each of many sections reads each symbol once).
    pub(super) fn names_in(&self, section: SectionIndex) -> Vec<String> {
        let start = self.symbols.partition_point(|s| s.0 .0 < section.0);
        let end = self.symbols.partition_point(|s| s.0 .0 <= section.0);
        self.symbols[start..end].iter().map(|s| s.3.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sized_symbol_around_an_offset_wins_and_labels_are_the_fallback() {
        let text = SectionIndex(1);
        let data = SectionIndex(2);
        let covering = Covering {
            symbols: vec![
                (text, 0, 16, "f".into()),
                (text, 16, 0, "label".into()),
                (text, 32, 8, "g".into()),
                (data, 0, 4, "v".into()),
            ],
        };
        assert_eq!(covering.at(text, 3), Some("f"));
        assert_eq!(covering.at(text, 20), Some("label"), "past f's end: the label");
        assert_eq!(covering.at(text, 33), Some("g"));
        assert_eq!(covering.at(text, 45), Some("label"), "past g: the nearest label before");
        assert_eq!(covering.at(data, 2), Some("v"));
        assert_eq!(covering.at(data, 4), None, "past v, no label");
        assert_eq!(covering.at(SectionIndex(3), 0), None);
        assert_eq!(covering.names_in(text), ["f", "label", "g"]);
    }
}
