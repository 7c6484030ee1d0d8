//! The byte-at-a-time reader the targets that decode operations share (`exec_ops`, `write`):
//! what runs out reads as zeros, so every input decodes to something.

use alloc::vec::Vec;

/// The input, read a byte at a time (zeros once it runs out).
#[derive(Debug)]
pub struct Input<'d> {
    data: &'d [u8],
}

impl<'d> Input<'d> {
    /// Reads `data` from its first byte.
    pub fn new(data: &'d [u8]) -> Self {
        Self { data }
    }

    /// The next byte (zero once the input runs out).
    pub fn byte(&mut self) -> u8 {
        let (&first, rest) = self.data.split_first().unwrap_or((&0, &[]));
        self.data = rest;
        first
    }

    /// Two bytes, little-endian.
    pub fn u16(&mut self) -> usize {
        usize::from(self.byte()) | usize::from(self.byte()) << 8
    }

    /// A byte scaled by `unit`.
    pub fn small(&mut self, unit: u64) -> u64 {
        u64::from(self.byte()) * unit
    }

    /// `len` bytes made from one byte of the input (a pattern, not the input's own bytes).
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let seed = self.byte();
        (0..=u8::MAX).cycle().take(len).map(|i| seed.wrapping_add(i).wrapping_mul(31)).collect()
    }

    /// Up to 32 of the input's bytes as they are.
    pub fn raw(&mut self) -> Vec<u8> {
        let len = usize::from(self.byte() % 33).min(self.data.len());
        let (taken, rest) = self.data.split_at(len);
        self.data = rest;
        taken.to_vec()
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}
