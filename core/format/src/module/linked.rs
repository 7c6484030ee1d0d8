//! The linked layout (`docs/format.md`, "Linked modules"): where a loader puts a module's
//! branch stubs, read-only data and GOT relative to its code. A module whose header has
//! [`ModuleFlags::LINKED_READ_ONLY`](crate::ModuleFlags::LINKED_READ_ONLY) or
//! [`ModuleFlags::LINKED_IMPORTS`](crate::ModuleFlags::LINKED_IMPORTS) was linked by its writer
//! for this layout (references between its code and its read-only data, or from its code to
//! its imports' stubs and GOT slots, resolved for good), so every loader must place it exactly
//! so; other modules may be placed so. Import `k` (counted in symbol table order among the
//! imports) has its stub at [`stub_offset`] `+ k * STUB_SIZE` and its GOT slot at
//! [`got_offset`] `+ k * GOT_SLOT`.

/// Bytes of one branch stub a loader puts after the code (one per import).
pub const STUB_SIZE: u64 = 16;

/// Bytes of one GOT slot (after the read-only data).
pub const GOT_SLOT: u64 = 8;

/// Where the read-only region starts, counted from the start of the code: after `code_size`
/// bytes of code, then (with `stubs > 0`) `stubs` branch stubs from the next multiple of
/// [`STUB_SIZE`], at the next multiple of the module's data alignment (at least [`GOT_SLOT`]).
/// `None` on overflow or an alignment that is not a power of two.
pub const fn read_only_offset(code_size: u64, stubs: u64, data_alignment: u64) -> Option<u64> {
    let code_and_stubs = if stubs == 0 {
        code_size
    } else {
        let Some(stub_start) = code_size.checked_next_multiple_of(STUB_SIZE) else { return None };
        let Some(room) = stubs.checked_mul(STUB_SIZE) else { return None };
        let Some(end) = stub_start.checked_add(room) else { return None };
        end
    };
    let align = if data_alignment > GOT_SLOT { data_alignment } else { GOT_SLOT };
    if !align.is_power_of_two() {
        return None;
    }
    code_and_stubs.checked_next_multiple_of(align)
}

/// Where the stubs start, counted from the start of the code: at the next multiple of
/// [`STUB_SIZE`] after `code_size` bytes of code.
pub const fn stub_offset(code_size: u64) -> Option<u64> {
    code_size.checked_next_multiple_of(STUB_SIZE)
}

/// Where the GOT starts, counted from the start of the code: after the read-only region (at
/// `read_only_offset`, [`read_only_offset`]'s, `read_only_size` bytes) at the next multiple of
/// [`GOT_SLOT`].
pub const fn got_offset(read_only_offset: u64, read_only_size: u64) -> Option<u64> {
    let Some(size) = read_only_size.checked_next_multiple_of(GOT_SLOT) else { return None };
    read_only_offset.checked_add(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_data_follows_the_stubs_at_its_alignment() {
        assert_eq!(read_only_offset(100, 0, 1), Some(104));
        assert_eq!(read_only_offset(100, 2, 1), Some(112 + 32));
        assert_eq!(read_only_offset(100, 2, 64), Some(192));
        assert_eq!(read_only_offset(0, 0, 0), Some(0));
        assert_eq!(read_only_offset(u64::MAX - 3, 1, 8), None);
        assert_eq!(read_only_offset(8, 0, 24), None);
        assert_eq!(stub_offset(100), Some(112));
        assert_eq!(got_offset(144, 5), Some(152));
        assert_eq!(got_offset(u64::MAX, 5), None);
    }
}
