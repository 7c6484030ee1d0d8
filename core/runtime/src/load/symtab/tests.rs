//! The symbol table's tests: filling it, sizes, names, and lookups by scan and by index.

use super::lookup::{low_bytes, short_word};
use super::*;
use crate::load::HashedName;
use alloc::vec;

/// A table over a string table holding `names`, one function symbol per name (`exported`
/// or local), symbol `i` at address `0x1000 + i`.
fn table(names: &[(&[u8], bool)]) -> SymbolTable {
    table_under(KeyedHasher::per_process(), names)
}

/// [`table`] hashed under `key`.
fn table_under(key: KeyedHasher, names: &[(&[u8], bool)]) -> SymbolTable {
    let mut strings = vec![0u8];
    let mut symbols = Vec::new();
    for (i, &(name, exported)) in names.iter().enumerate() {
        symbols.push(LoadedSymbol {
            name_start: u32::try_from(strings.len()).unwrap(),
            name_len: u32::try_from(name.len()).unwrap(),
            size: 0,
            kind: SymbolKind::Function,
            binding: if exported { Binding::Global } else { Binding::Local },
            addr: 0x1000 + i,
            exported,
            template: false,
        });
        strings.extend_from_slice(name);
        strings.push(0);
    }
    let mut builder = SymbolTableBuilder::new(strings, symbols.len(), key).unwrap();
    for symbol in symbols {
        builder.push(symbol, 0).expect("a valid symbol");
    }
    builder.finish()
}

/// `t`, indexed.
fn indexed(t: SymbolTable) -> SymbolTable {
    assert!(t.exported_hashes().is_some());
    assert!(t.is_indexed());
    t
}

/// The address a lookup of `name` finds in the table of `names`, scanning (a fresh table)
/// and through its index, which must agree.
fn found(names: &[(&[u8], bool)], name: &[u8]) -> Option<usize> {
    let scanned = table(names).lookup(name).map(|s| s.addr);
    let t = indexed(table(names));
    assert_eq!(t.lookup(name).map(|s| s.addr), scanned, "{:?}", core::str::from_utf8(name));
    scanned
}

#[test]
fn exported_symbols_are_found_and_local_ones_are_not() {
    let many: Vec<alloc::string::String> = (0..100).map(|i| alloc::format!("f{i}")).collect();
    let mut names: Vec<(&[u8], bool)> = vec![(b"main", true), (b"helper", false), (b"main", true)];
    names.extend(many.iter().map(|n| (n.as_bytes(), true)));
    assert_eq!(found(&names, b"main"), Some(0x1000), "the first duplicate wins");
    assert_eq!(found(&names, b"helper"), None, "local symbols are not indexed");
    assert_eq!(found(&names, b"f57"), Some(0x1000 + 3 + 57));
    assert_eq!(found(&names, b"f100"), None);
    assert_eq!(found(&names, b"mai"), None, "a prefix is not the name");
    let t = table(&names);
    assert_eq!(t.name(1), Some(&b"helper"[..]));
    assert_eq!(t.name_with_nul(1), Some(&b"helper\0"[..]));
    // Each name lies in the string table where its offset says, followed by a NUL.
    for (i, &(name, _)) in names.iter().enumerate() {
        let at = t.name_offset(i).unwrap() as usize;
        assert_eq!(&t.names()[at..=at + name.len()], [name, b"\0"].concat(), "symbol {i}");
    }
    assert_eq!(t.name_offset(names.len()), None);
    assert!(!t.is_empty() && table(&[]).is_empty());
    assert_eq!(t.len(), 103);
}

#[test]
fn lookups_scan_until_the_index_pays_and_then_use_it_finding_the_same_symbols() {
    let many: Vec<alloc::string::String> = (0..200).map(|i| alloc::format!("function_{i}")).collect();
    let mut names: Vec<(&[u8], bool)> = vec![(b"dup", true), (b"hidden", false), (b"dup", true)];
    names.extend(many.iter().map(|n| (n.as_bytes(), true)));
    let asked: Vec<&[u8]> = vec![b"dup", b"hidden", b"function_7", b"function_199", b"nothing"];
    // Each asked of a table of its own: a scan.
    let first: Vec<_> = asked.iter().map(|name| table(&names).lookup(name).map(|s| s.addr)).collect();
    assert_eq!(first, [Some(0x1000), None, Some(0x1000 + 3 + 7), Some(0x1000 + 3 + 199), None]);
    let t = table(&names);
    for _ in 0..SCANNED_LOOKUPS {
        assert!(t.lookup_hashed(HashedName::new(b"function_1")).is_some());
    }
    assert!(!t.is_indexed(), "{SCANNED_LOOKUPS} lookups scan");
    let again: Vec<_> = asked.iter().map(|name| t.lookup(name).map(|s| s.addr)).collect();
    assert!(t.is_indexed(), "the next one makes the index");
    assert_eq!(again, first, "and finds what the scans found");
    // Its hashes: each exported name once, under the table's key.
    let mut hashes: Vec<u32> = t.exported_hashes().unwrap().collect();
    hashes.sort_unstable();
    // names[2..]: the second `dup` (the first's hash), then the functions.
    let mut expected: Vec<u32> = names[2..].iter().map(|(name, _)| t.hasher.hash32(name)).collect();
    expected.sort_unstable();
    assert_eq!(hashes, expected);
}

#[test]
fn a_name_hashed_at_hand_is_found_as_by_its_bytes_whatever_the_tables_key() {
    let long = b"a_function_name_longer_than_a_word";
    let names: [(&[u8], bool); 3] = [(b"main", true), (long, true), (b"helper", false)];
    for key in [KeyedHasher::per_process(), KeyedHasher::new(7)] {
        for t in [table_under(key, &names), indexed(table_under(key, &names))] {
            for name in [&b"main"[..], long, b"helper", b"none"] {
                assert_eq!(t.lookup_hashed(HashedName::new(name)), t.lookup(name), "{key:?}");
            }
            let found = |name| t.lookup_hashed(HashedName::new(name)).map(|s| s.addr);
            assert_eq!((found(b"main"), found(long)), (Some(0x1000), Some(0x1001)), "{key:?}");
        }
    }
}

#[test]
fn names_that_do_not_end_in_a_nul_inside_the_string_table_are_refused() {
    let strings = b"\0ab\0cd";
    let key = KeyedHasher::per_process();
    let at = |name_start: u32, name_len: u32| LoadedSymbol { name_start, name_len, ..LoadedSymbol::UNSET };
    let push = |symbol| SymbolTableBuilder::new(strings.to_vec(), 1, key).unwrap().push(symbol, 0);
    assert_eq!(push(at(1, 1)), Err(Refused::NameOutside), "no NUL after the name");
    assert_eq!(push(at(4, 2)), Err(Refused::NameOutside), "at the end");
    assert_eq!(push(at(9, 0)), Err(Refused::NameOutside), "past the end");
    assert_eq!(push(at(u32::MAX, u32::MAX)), Err(Refused::NameOutside), "an end that overflows");
    let mut builder = SymbolTableBuilder::new(strings.to_vec(), 1, key).unwrap();
    assert_eq!(builder.push(at(2, 1), 0), Ok(()), "a name may start inside another");
    assert_eq!(builder.push(at(2, 1), 0), Err(Refused::Full), "a full table takes no more");
    assert_eq!(builder.finish().name(0), Some(&b"b"[..]));
}

#[test]
fn sizes_of_every_magnitude_are_given_back_as_pushed() {
    let sizes = [0, 1, 4096, u64::from(u32::MAX) - 1, u64::from(u32::MAX), 1 << 40, u64::MAX, 7];
    let strings = [&b"\0"[..], &b"s\0".repeat(sizes.len())].concat();
    let mut builder = SymbolTableBuilder::new(strings, sizes.len(), KeyedHasher::per_process()).unwrap();
    for (i, &size) in sizes.iter().enumerate() {
        let name_start = u32::try_from(1 + 2 * i).unwrap();
        builder.push(LoadedSymbol { name_start, name_len: 1, ..LoadedSymbol::UNSET }, size).unwrap();
    }
    let t = builder.finish();
    let given: Vec<_> = (0..=sizes.len()).map(|i| t.size(i)).collect();
    let expected: Vec<_> = sizes.iter().map(|&s| Some(s)).chain([None]).collect();
    assert_eq!(given, expected);
    assert_eq!(t.large_sizes.len(), 3, "only those of u32::MAX bytes or more are kept apart");
    assert_eq!(t.clone().size(6), Some(u64::MAX), "a clone keeps them");
}

#[test]
fn names_of_every_length_are_found_wherever_they_lie() {
    // Names of 1 to 20 bytes; the last ones lie within eight bytes of the table's end,
    // where a word cannot be loaded. (An export needs a name: no empty one is indexed.)
    let long: Vec<u8> = (b'a'..=b'z').collect();
    let names: Vec<(&[u8], bool)> = (1..=20).rev().map(|len| (&long[..len], true)).collect();
    assert_eq!(found(&names, b""), None);
    for len in 1..=20 {
        assert_eq!(found(&names, &long[..len]), Some(0x1000 + 20 - len), "len {len}");
        // The same bytes with one more or one changed are another name.
        let mut other = long[..len].to_vec();
        other.push(b'!');
        assert_eq!(found(&names, &other), None, "len {len} + 1");
        other.pop();
        other[len - 1] = b'?';
        assert_eq!(found(&names, &other), None, "len {len}, last byte changed");
    }
}

#[test]
fn two_exported_names_with_the_same_hash_are_both_found() {
    // Under these keys the two names' 32-bit hashes collide (found by searching `g` and 8
    // hex digits; of one length, so only their bytes tell them apart): the second is
    // another name in the same probe chain, not a duplicate.
    let key = KeyedHasher::with_keys(1, 2);
    let (first, second): (&[u8], &[u8]) = (b"g09e345d8", b"ga3970a01");
    assert_eq!(key.hash32(first), key.hash32(second), "the names collide");
    let table_of = |names: &[&[u8]]| {
        let mut strings = vec![0u8];
        let mut symbols = Vec::new();
        for (i, name) in names.iter().enumerate() {
            symbols.push(LoadedSymbol {
                name_start: u32::try_from(strings.len()).unwrap(),
                name_len: u32::try_from(name.len()).unwrap(),
                addr: 0x1000 + i,
                exported: true,
                ..LoadedSymbol::UNSET
            });
            strings.extend_from_slice(name);
            strings.push(0);
        }
        let mut builder = SymbolTableBuilder::new(strings, names.len(), key).unwrap();
        for symbol in symbols {
            builder.push(symbol, 0).unwrap();
        }
        builder.finish()
    };
    let t = indexed(table_of(&[first, second, first]));
    assert_eq!(t.lookup(first).map(|s| s.addr), Some(0x1000), "the first of two duplicates");
    assert_eq!(t.lookup(second).map(|s| s.addr), Some(0x1001));
    // A lookup that finds the hash still compares the name.
    assert_eq!(indexed(table_of(&[first])).lookup(second), None);
}

#[test]
fn short_words_and_their_masks_cover_exactly_the_name() {
    let bytes = *b"abcdefghi";
    for len in 0..=8 {
        let mut padded = [0u8; 8];
        padded[..len].copy_from_slice(&bytes[..len]);
        let word = u64::from_le_bytes(padded);
        assert_eq!(short_word(&bytes[..len]), Some(word), "len {len}");
        assert_eq!(u64::from_le_bytes(*b"abcdefgh") & low_bytes(len), word, "mask of len {len}");
    }
    assert_eq!(short_word(&bytes), None, "nine bytes are not short");
}

#[test]
#[cfg(target_pointer_width = "64")]
fn a_loaded_symbol_takes_24_bytes() {
    // The symbol pass writes one per symbol and lookups read one per probe: kept small.
    assert_eq!(core::mem::size_of::<LoadedSymbol>(), 24);
}
