//! An in-place heapsort: O(n log n) comparisons whatever the input (file-controlled lists
//! included), no allocation, and one small function per element type, where the standard
//! library's sort adds some 5 KiB of code per type (which the no-libc loader's size budget
//! cannot carry). The writer sorts names with it, the runtime a module's blocks and template offsets.

/// Sorts `v` in ascending order (not stable).
pub fn heapsort<T: Ord>(v: &mut [T]) {
    // Build a max-heap, then move its root behind the shrinking heap one element at a time.
    for start in (0..v.len() / 2).rev() {
        sift_down(v, start);
    }
    for end in (1..v.len()).rev() {
        v.swap(0, end);
        sift_down(&mut v[..end], 0);
    }
}

/// Moves `v[node]` down until neither child is larger: the heap property below `node`.
fn sift_down<T: Ord>(v: &mut [T], mut node: usize) {
    loop {
        // No overflow: `node` < `v.len()` <= isize::MAX.
        let left = 2 * node + 1;
        if left >= v.len() {
            return;
        }
        let right = left + 1;
        let child = if right < v.len() && v[right] > v[left] { right } else { left };
        if v[node] >= v[child] {
            return;
        }
        v.swap(node, child);
        node = child;
    }
}

#[cfg(test)]
mod tests {
    use super::heapsort;
    use alloc::vec::Vec;

    #[test]
    fn sorts_like_the_standard_library() {
        // Every length to 40 (odd and even heaps), duplicates, sorted and reversed input.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..40 {
            for pattern in 0..4 {
                let mut v: Vec<u64> = (0..len)
                    .map(|i| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        match pattern {
                            0 => seed % 8,
                            1 => i,
                            2 => len - i,
                            _ => seed,
                        }
                    })
                    .collect();
                let mut expected = v.clone();
                expected.sort_unstable();
                heapsort(&mut v);
                assert_eq!(v, expected, "len {len} pattern {pattern}");
            }
        }
        let mut tuples = [(1usize, 9usize, 0usize), (0, 5, 1), (1, 2, 2), (0, 5, 0)];
        heapsort(&mut tuples);
        assert_eq!(tuples, [(0, 5, 0), (0, 5, 1), (1, 2, 2), (1, 9, 0)]);
    }
}
