//! The LRU cache against a model (a plain list in recency order), its budgets, and that hits,
//! evictions and re-inserts into freed slots never grow its storage. Run under Miri in CI.

use alloc::vec::Vec;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::hash::{BuildHasher, Hasher};

use super::*;

extern crate std;

std::thread_local! {
    /// Allocations made by this thread (the core's unit tests run on several threads).
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting allocations per thread (for the whole test binary).
struct Counting;

// SAFETY: every method forwards to `System` unchanged; the counter is a const-initialized
// thread-local `Cell`, which never allocates and cannot re-enter the allocator.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: our caller's contract.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: our caller's contract.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: our caller's contract.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// FNV-1a over whatever the key writes.
#[derive(Clone, Copy, Debug, Default)]
struct Fnv;

struct FnvHasher(u64);

impl Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
}

impl BuildHasher for Fnv {
    type Hasher = FnvHasher;
    fn build_hasher(&self) -> FnvHasher {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

fn cache(max_bytes: u64, max_entries: u64) -> LruCache<u32, u32, Fnv> {
    LruCache::new(Fnv, Budget { max_bytes, max_entries })
}

fn keys(c: &LruCache<u32, u32, Fnv>) -> Vec<u32> {
    c.iter().map(|(k, _)| *k).collect()
}

#[test]
fn the_least_recently_used_entry_leaves_first() {
    let mut c = cache(0, 2);
    for k in [1, 2, 3] {
        assert_eq!(c.insert(k, k * 10, 1), Ok(None));
    }
    assert_eq!(keys(&c), [3, 2, 1]);
    assert_eq!(c.pop_over_budget(), Some((1, 10)));
    assert_eq!(c.pop_over_budget(), None);
    assert_eq!(c.get(&2), Some(&20)); // 2 is now the most recent
    assert_eq!(c.peek(&3), Some(&30)); // peeking changes nothing
    assert!(c.contains(&3));
    c.insert(4, 40, 1).unwrap();
    assert_eq!(c.pop_over_budget(), Some((3, 30)));
    assert_eq!(keys(&c), [4, 2]);
    assert_eq!(c.insert(2, 21, 1), Ok(Some(20)), "a re-insert replaces and returns the old value");
    assert_eq!(keys(&c), [2, 4]);
    assert_eq!(c.remove(&4), Some(40));
    assert_eq!(c.remove(&4), None);
    assert_eq!((c.len(), c.bytes()), (1, 1));
    c.insert(5, 50, 1).unwrap();
    *c.get_mut(&2).unwrap() += 1; // changed in place, and now the most recent
    assert_eq!(keys(&c), [2, 5]);
    assert_eq!(c.peek(&2), Some(&22));
    assert_eq!(c.get_mut(&4), None);
}

#[test]
fn an_entry_used_unseen_gets_a_second_chance_once_per_call() {
    let mut c = cache(0, 3);
    for k in [1, 2, 3, 4] {
        c.insert(k, k * 10, 1).unwrap();
    }
    assert_eq!(keys(&c), [4, 3, 2, 1]);
    // 1 and 2 were used unseen: both move to the front, 3 leaves.
    let mut asked = Vec::new();
    let popped = c.pop_over_budget_unless(|&v| {
        asked.push(v);
        v < 30
    });
    assert_eq!(popped, Some((3, 30)));
    assert_eq!(asked, [10, 20, 30]);
    assert_eq!(keys(&c), [2, 1, 4]);
    assert_eq!(c.pop_over_budget_unless(|_| true), None, "within the budget");
    // Every entry claims a use: each gets its one chance, then the least recent leaves.
    c.insert(5, 50, 1).unwrap();
    let mut chances = 0;
    assert_eq!(
        c.pop_over_budget_unless(|_| {
            chances += 1;
            true
        }),
        Some((4, 40))
    );
    assert_eq!(chances, 3, "one per entry but the newest");
    assert_eq!(keys(&c), [5, 2, 1], "the order the chances left");
    // The newest stays, however large.
    let mut c = cache(10, 0);
    c.insert(1, 0, 50).unwrap();
    assert_eq!(c.pop_over_budget_unless(|_| false), None);
    // The entry inserted last stays too, however far the chances move it back, over several
    // calls: the others used unseen take their chance, then leave before it.
    let mut c = cache(0, 2);
    for k in [1, 2, 3] {
        c.insert(k, k * 10, 1).unwrap();
    }
    assert_eq!(c.pop_over_budget_unless(|&v| v < 30), Some((1, 10)));
    assert_eq!(keys(&c), [3, 2]);
    c.set_budget(Budget { max_bytes: 0, max_entries: 1 });
    assert_eq!(c.pop_over_budget_unless(|&v| v < 30), Some((2, 20)));
    assert_eq!(keys(&c), [3]);
}

#[test]
fn the_byte_budget_counts_weights_and_the_newest_entry_always_stays() {
    let mut c = cache(100, 0);
    c.insert(1, 0, 60).unwrap();
    c.insert(2, 0, 30).unwrap();
    assert_eq!(c.pop_over_budget(), None);
    c.insert(3, 0, 20).unwrap(); // 110 bytes
    assert_eq!(c.pop_over_budget(), Some((1, 0)));
    assert_eq!(c.bytes(), 50);
    c.insert(4, 0, 500).unwrap(); // larger than the whole budget
    assert_eq!(c.pop_over_budget(), Some((2, 0)));
    assert_eq!(c.pop_over_budget(), Some((3, 0)));
    assert_eq!(c.pop_over_budget(), None, "the newest stays, however large");
    assert_eq!(keys(&c), [4]);
    c.set_budget(Budget { max_bytes: 0, max_entries: 0 });
    assert_eq!(c.budget(), Budget::default());
}

#[test]
fn hits_and_evictions_never_allocate() {
    let mut c = cache(0, 8);
    let round = |c: &mut LruCache<u32, u32, Fnv>, n: u32| {
        assert!(c.get(&(1000 + n - 1)).is_some(), "round {n}: a hit on the newest");
        // A new key takes the slot the last eviction freed; the eviction frees another.
        c.insert(1000 + n, n, 1).unwrap();
        assert!(c.pop_over_budget().is_some());
    };
    for k in 0..8 {
        c.insert(1000 + k, k, 1).unwrap();
    }
    // Warm-up: the slot array gains its spare slot, and the index the room its deleted entries
    // take (hashbrown grows once when they fill it, then reuses them in place).
    for n in 8..108 {
        round(&mut c, n);
    }
    let before = allocations();
    let measured = if cfg!(miri) { 200 } else { 1000 };
    for n in 108..108 + measured {
        round(&mut c, n);
    }
    assert_eq!(allocations(), before, "hits, evictions and inserts into freed slots allocate nothing");
    assert_eq!(c.len(), 8);
    // The counter counts: a cache that must grow allocates.
    let mut growing = cache(0, 0);
    let before = allocations();
    growing.insert(1, 1, 1).unwrap();
    assert!(allocations() > before);
}

#[test]
fn get_or_insert_with_produces_once_and_passes_failures_on() {
    let mut c = cache(0, 2);
    let mut produced = 0;
    for _ in 0..3 {
        let v = c
            .get_or_insert_with(7, || {
                produced += 1;
                Ok::<_, ()>((70, 1))
            })
            .copied();
        assert_eq!(v, Ok(70));
    }
    assert_eq!(produced, 1);
    assert_eq!(c.get_or_insert_with(8, || Err("no")), Err(GetError::Produce("no")));
    assert!(!c.contains(&8));
    c.get_or_insert_with(8, || Ok::<_, ()>((80, 1))).unwrap();
    c.get_or_insert_with(9, || Ok::<_, ()>((90, 1))).unwrap();
    assert_eq!(keys(&c), [9, 8], "past the budget the least recently used (7) left");
}

#[test]
fn random_operations_agree_with_a_model() {
    // A model: keys in recency order, most recent first.
    let mut model: Vec<(u32, u64)> = Vec::new();
    let mut c = cache(40, 6);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let rounds = if cfg!(miri) { 300 } else { 20_000 };
    for _ in 0..rounds {
        let r = next();
        let key = (r % 12) as u32;
        match (r >> 8) % 4 {
            0 => {
                let hit = c.get(&key).copied();
                let at = model.iter().position(|&(k, _)| k == key);
                assert_eq!(hit.is_some(), at.is_some());
                if let Some(at) = at {
                    let e = model.remove(at);
                    model.insert(0, e);
                }
            }
            1 => {
                let weight = (r >> 16) % 15 + 1;
                c.insert(key, key, weight).unwrap();
                model.retain(|&(k, _)| k != key);
                model.insert(0, (key, weight));
                loop {
                    let bytes: u64 = model.iter().map(|&(_, w)| w).sum();
                    let over = model.len() > 1 && (bytes > 40 || model.len() > 6);
                    let popped = c.pop_over_budget();
                    if !over {
                        assert_eq!(popped, None);
                        break;
                    }
                    let (k, _) = model.pop().unwrap();
                    assert_eq!(popped.map(|(k, _)| k), Some(k));
                }
            }
            2 => {
                assert_eq!(c.remove(&key).is_some(), model.iter().any(|&(k, _)| k == key));
                model.retain(|&(k, _)| k != key);
            }
            _ => assert_eq!(c.peek(&key).is_some(), model.iter().any(|&(k, _)| k == key)),
        }
        let expected: Vec<u32> = model.iter().map(|&(k, _)| k).collect();
        assert_eq!(keys(&c), expected);
        assert_eq!(c.bytes(), model.iter().map(|&(_, w)| w).sum::<u64>());
    }
}
