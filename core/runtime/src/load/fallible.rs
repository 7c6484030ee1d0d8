//! Allocations on the load path, made fallibly: a module too large for the memory left is an
//! error ([`super::LoadError::OutOfMemory`]), never an abort of the host process. Each helper
//! returns `None` when the allocator refuses.

use alloc::vec::Vec;

/// A vector of `len` copies of `value`.
pub(crate) fn filled<T: Clone>(value: T, len: usize) -> Option<Vec<T>> {
    let mut items = Vec::new();
    items.try_reserve_exact(len).ok()?;
    items.resize(len, value);
    Some(items)
}

/// A copy of `items`.
pub(crate) fn copied<T: Clone>(items: &[T]) -> Option<Vec<T>> {
    let mut copy = Vec::new();
    copy.try_reserve_exact(items.len()).ok()?;
    copy.extend_from_slice(items);
    Some(copy)
}

/// An empty vector with room for `len` items.
pub(crate) fn with_capacity<T>(len: usize) -> Option<Vec<T>> {
    let mut items = Vec::new();
    items.try_reserve_exact(len).ok()?;
    Some(items)
}

/// Appends `item`, growing `items` if need be.
pub(crate) fn push<T>(items: &mut Vec<T>, item: T) -> Option<()> {
    items.try_reserve(1).ok()?;
    items.push(item);
    Some(())
}

/// Bytes of `len` items of `T` (what an error reports).
pub(crate) const fn bytes_of<T>(len: usize) -> usize {
    len.saturating_mul(core::mem::size_of::<T>())
}

/// Bytes of a list of `len` items of `T` grown by one (what an error reports when it could not
/// grow).
pub(crate) const fn grown_bytes<T>(len: usize) -> usize {
    bytes_of::<T>(len.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_report_the_bytes_the_items_take() {
        assert_eq!(bytes_of::<u64>(3), 24);
        assert_eq!(bytes_of::<[u8; 3]>(5), 15);
        assert_eq!(grown_bytes::<u64>(0), 8);
        assert_eq!(grown_bytes::<u32>(2), 12);
        assert_eq!(grown_bytes::<u64>(usize::MAX), usize::MAX, "saturated, not wrapped");
    }
}
