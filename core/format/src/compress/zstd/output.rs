//! Where a frame's blocks are decoded to: the literals reader and the sequences executor both
//! write through it.

/// Where a block's output goes: `out[frame_start..]` is this frame's, `at` the next byte.
pub(super) struct Output<'o> {
    pub(super) out: &'o mut [u8],
    pub(super) frame_start: usize,
    pub(super) at: usize,
}
