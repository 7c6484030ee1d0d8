//! The lock-free table of installed names: readers probing while the writer fills and grows
//! it, names that share a hash told apart by their bytes.

extern crate std;

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::super::published::Published;
use crate::lru::KeyedHasher;

/// Name number `i`, and the address it is published at.
fn entry(i: usize) -> (Box<str>, usize) {
    (alloc::format!("name{i}$i64").into_boxed_str(), 0x10_0000 + i * 64)
}

#[test]
fn readers_find_every_published_name_while_the_table_grows() {
    // Readers learn of each name only from the table itself (no other synchronization), so
    // what makes its bytes and address visible is the table's own release and acquire: under
    // Miri, a weaker store is a data race on the name's bytes.
    let names = if cfg!(miri) { 200 } else { 20_000 };
    let (published, mut writer) = Published::new(KeyedHasher::per_process());
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let published = &published;
                s.spawn(move || {
                    let mut probes = 0usize;
                    for i in 0..names {
                        let (name, address) = entry(i);
                        loop {
                            probes += 1;
                            if let Some(found) = published.get(name.as_bytes()) {
                                assert_eq!(found, address, "{name}");
                                break;
                            }
                            std::thread::yield_now();
                        }
                        // A name never published is never found.
                        assert_eq!(published.get(entry(names + i).0.as_bytes()), None);
                    }
                    probes
                })
            })
            .collect();
        for i in 0..names {
            let (name, address) = entry(i);
            let hash = published.hash(name.as_bytes());
            published.insert(&mut writer, name, hash, address).unwrap();
        }
        for reader in readers {
            assert!(reader.join().unwrap() >= names);
        }
    });
    assert_eq!(writer.len(), names);
}

#[test]
fn names_sharing_a_hash_are_told_apart_by_their_bytes() {
    let (published, mut writer) = Published::new(KeyedHasher::per_process());
    // Forced to one hash: each lookup probes past the others to its own bytes.
    for (i, name) in ["a", "ab", "b", "", "abc"].into_iter().enumerate() {
        published.insert(&mut writer, name.into(), 7, 100 + i).unwrap();
    }
    for (i, name) in ["a", "ab", "b", "", "abc"].into_iter().enumerate() {
        assert_eq!(published.get_hashed(name.as_bytes(), 7), Some(100 + i), "{name:?}");
    }
    assert_eq!(published.get_hashed(b"abcd", 7), None);
    assert_eq!(published.get_hashed(b"a", 8), None, "a name matches only under its own hash");
}
