//! The lock-free table of installed names: readers probing while the writer fills and grows
//! it, names that share a hash told apart by their bytes.

extern crate std;

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::super::published::Published;
use crate::cache::KeyedHasher;

/// Name number `i`, and the address it is published at.
fn entry(i: usize) -> (Box<str>, usize) {
    (alloc::format!("name{i}$i64").into_boxed_str(), 0x10_0000 + i * 64)
}

#[test]
fn readers_find_every_published_name_while_the_table_grows() {
    let names = if cfg!(miri) { 200 } else { 20_000 };
    let (published, mut writer) = Published::new(KeyedHasher::per_process());
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (published, done) = (&published, &done);
                s.spawn(move || {
                    let mut probes = 0usize;
                    loop {
                        let seen = done.load(Ordering::Acquire);
                        // Every name published before `seen` was read is there, at its
                        // address; a name never published is not.
                        for i in [0, seen / 2, seen.saturating_sub(1)].into_iter().filter(|&i| i < seen) {
                            let (name, address) = entry(i);
                            assert_eq!(published.get(name.as_bytes()), Some(address), "{name}");
                        }
                        assert_eq!(published.get(entry(names + seen).0.as_bytes()), None);
                        probes += 1;
                        if seen == names {
                            return probes;
                        }
                    }
                })
            })
            .collect();
        for i in 0..names {
            let (name, address) = entry(i);
            let hash = published.hash(name.as_bytes());
            published.insert(&mut writer, name, hash, address).unwrap();
            done.store(i + 1, Ordering::Release);
        }
        for reader in readers {
            assert!(reader.join().unwrap() > 0);
        }
    });
    assert_eq!(writer.len(), names);
    for i in (0..names).step_by(7) {
        let (name, address) = entry(i);
        assert_eq!(published.get(name.as_bytes()), Some(address));
    }
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
