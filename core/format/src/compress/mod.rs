//! Compressed section payloads (`docs/format.md`, "Compression"): the rule's one home. A
//! section flagged [`SectionFlags::COMPRESSED`] in a module whose header names a method holds a
//! frame: its decompressed length (u64, little-endian), then the method's data (lz4: one raw
//! LZ4 block; zstd: Zstandard frames, with the `zstd` feature, decoded by our own decoder,
//! `zstd/`). [`Frame::of`] checks a frame in O(1) (what validation does for every such
//! section); [`Frame::decompress_into`] writes its bytes straight into their place in an
//! image, never more than the stated length, and says so if they come out any other length.
//! [`may_compress`] says which sections may be compressed at all.

#[cfg(feature = "zstd")]
mod zstd;

use crate::error::CompressionProblem;
use crate::{SectionFlags, SectionType};

/// Bytes of a frame's length prefix.
pub const FRAME_HEADER: usize = 8;

/// How a module's compressed sections are compressed (the header's `compression` byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// Zstandard frames (byte 1; with the `zstd` feature).
    #[cfg(feature = "zstd")]
    Zstd,
    /// LZ4 block format (byte 2).
    Lz4,
}

impl Method {
    /// The method the header byte names: `Ok(None)` for 0 (none); `Err` with the byte for a
    /// method this loader does not know (zstd, byte 1, needs the `zstd` feature).
    pub const fn from_wire(byte: u8) -> Result<Option<Self>, u8> {
        match byte {
            0 => Ok(None),
            #[cfg(feature = "zstd")]
            1 => Ok(Some(Method::Zstd)),
            2 => Ok(Some(Method::Lz4)),
            other => Err(other),
        }
    }

    /// The header byte.
    pub const fn wire(self) -> u8 {
        match self {
            #[cfg(feature = "zstd")]
            Method::Zstd => 1,
            Method::Lz4 => 2,
        }
    }

    /// Its name, as `smf inspect` prints it and `smf pack --compress` takes it.
    pub const fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "zstd")]
            Method::Zstd => "zstd",
            Method::Lz4 => "lz4",
        }
    }

    /// The most bytes `stored` bytes of this method's data can decompress to: LZ4 writes a
    /// match of any length with one byte per 255, so no block expands more than 255-fold (plus
    /// the literals' and the last sequence's slack); Zstandard's densest block is a run of one
    /// byte, 4 bytes for up to 128 KiB (32,768-fold). A frame claiming more is refused before
    /// anything is allocated or decompressed.
    pub const fn most_from(self, stored: u64) -> u64 {
        match self {
            #[cfg(feature = "zstd")]
            Method::Zstd => stored.saturating_mul(32_768).saturating_add(128 << 10),
            Method::Lz4 => stored.saturating_mul(255).saturating_add(64),
        }
    }
}

/// A checked frame: its stated decompressed length and the method's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The method.
    pub method: Method,
    /// Bytes it decompresses to (at most the section's virtual size).
    pub decompressed_len: u64,
    /// The method's data, after the length.
    pub data: &'a [u8],
}

impl<'a> Frame<'a> {
    /// The frame `stored` (a compressed section's payload) holds, for a section of
    /// `virtual_size` bytes in memory: its length prefix present, and the length it states at
    /// most the virtual size and at most what the method can make of the data.
    pub fn of(method: Method, stored: &'a [u8], virtual_size: u64) -> Result<Self, CompressionProblem> {
        let (prefix, data) =
            stored.split_first_chunk::<FRAME_HEADER>().ok_or(CompressionProblem::FrameTooShort)?;
        let decompressed_len = u64::from_le_bytes(*prefix);
        if decompressed_len > virtual_size {
            return Err(CompressionProblem::LongerThanVirtualSize { stated: decompressed_len });
        }
        if decompressed_len > method.most_from(data.len() as u64) {
            return Err(CompressionProblem::BeyondMethod { stated: decompressed_len });
        }
        Ok(Frame { method, decompressed_len, data })
    }

    /// Decompresses the frame into the start of `place` (the section's place in memory, its
    /// virtual size); an error if the data is corrupt or makes any other number of bytes than
    /// stated. Nothing is written past the stated length.
    pub fn decompress_into(&self, place: &mut [u8]) -> Result<(), CompressionProblem> {
        let stated = self.decompressed_len;
        let out = usize::try_from(stated)
            .ok()
            .and_then(|len| place.get_mut(..len))
            .ok_or(CompressionProblem::LongerThanVirtualSize { stated })?;
        match self.method {
            Method::Lz4 => lz4_into(self.data, out),
            #[cfg(feature = "zstd")]
            Method::Zstd => zstd_into(self.data, out),
        }
    }
}

/// LZ4 block `data` decoded into `out` (its stated length) by `lz4_flex`. A function of its
/// own, never inlined: `lz4_flex`'s decoder is `#[inline]`, and compiled into the larger
/// `Frame::decompress_into` it came out 6-11% slower than compiled alone (`cargo xtask bench
/// compression`, `decompress_vs_lz4_flex`: 0.887-0.943 inlined, 1.006-1.070 here, three
/// alternated runs each).
#[inline(never)]
fn lz4_into(data: &[u8], out: &mut [u8]) -> Result<(), CompressionProblem> {
    match lz4_flex::block::decompress_into(data, out) {
        Ok(produced) if produced == out.len() => Ok(()),
        Ok(produced) => Err(CompressionProblem::ShorterThanStated { produced: produced as u64 }),
        // The output is full before the data ends: the data makes more than stated.
        Err(lz4_flex::block::DecompressError::OutputTooSmall { .. }) => {
            Err(CompressionProblem::LongerThanStated)
        }
        Err(_) => Err(CompressionProblem::Corrupt),
    }
}

/// Zstandard `data` decoded into `out` (its stated length) by our own decoder
/// ([`zstd`](self::zstd)): straight into the image, nothing allocated, the whole output its
/// window.
#[cfg(feature = "zstd")]
fn zstd_into(data: &[u8], out: &mut [u8]) -> Result<(), CompressionProblem> {
    match zstd::decode(data, out) {
        Ok(produced) if produced == out.len() => Ok(()),
        Ok(produced) => Err(CompressionProblem::ShorterThanStated { produced: produced as u64 }),
        Err(zstd::Fault::Overflow) => Err(CompressionProblem::LongerThanStated),
        Err(zstd::Fault::Corrupt(_)) => Err(CompressionProblem::Corrupt),
    }
}

/// Test support, not production API: why our Zstandard decoder refuses `data` decoded into
/// `out` (the rule a frame breaks, which [`CompressionProblem::Corrupt`] does not say), or the
/// bytes it makes; an output too small is "longer than the output".
#[cfg(all(feature = "zstd", feature = "testing"))]
pub fn zstd_refusal(data: &[u8], out: &mut [u8]) -> Result<usize, &'static str> {
    zstd::decode(data, out).map_err(|fault| match fault {
        zstd::Fault::Corrupt(why) => why,
        zstd::Fault::Overflow => "longer than the output",
    })
}

/// Whether a section of this type and these flags may be compressed: code, data and rodata,
/// whose payloads the loader copies into the image, but never the constructor, destructor and
/// unwind tables, which it reads from the file itself (`docs/format.md`, "Compression").
pub fn may_compress(section_type: SectionType, flags: SectionFlags) -> bool {
    let read_by_the_loader = SectionFlags::CONSTRUCTORS | SectionFlags::DESTRUCTORS | SectionFlags::UNWIND;
    matches!(section_type, SectionType::Code | SectionType::Data | SectionType::RoData)
        && !flags.intersects(read_by_the_loader)
}

/// What a section puts in memory before its zeroed tail ([`crate::Module::payload`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload<'a> {
    /// Its bytes as stored.
    Raw(&'a [u8]),
    /// A compressed frame.
    Compressed(Frame<'a>),
}

impl Payload<'_> {
    /// Bytes it puts in memory.
    pub fn len(&self) -> u64 {
        match self {
            Payload::Raw(bytes) => bytes.len() as u64,
            Payload::Compressed(frame) => frame.decompressed_len,
        }
    }

    /// Whether it puts nothing in memory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes its bytes to the start of `place` (the section's place in memory, at least
    /// [`Payload::len`] bytes), decompressing a frame straight into it; an error if a frame's
    /// data is corrupt or makes another length than stated, or if `place` is too small.
    pub fn write_into(&self, place: &mut [u8]) -> Result<(), CompressionProblem> {
        match self {
            Payload::Raw(bytes) => {
                let out = place
                    .get_mut(..bytes.len())
                    .ok_or(CompressionProblem::LongerThanVirtualSize { stated: bytes.len() as u64 })?;
                out.copy_from_slice(bytes);
                Ok(())
            }
            Payload::Compressed(frame) => frame.decompress_into(place),
        }
    }
}

/// An encoder a writer may bring ([`crate::write::ModuleBuilder::compress_with`]): the
/// method's data for `bytes` at `level` (without the frame's length, which the writer adds).
#[cfg(feature = "alloc")]
pub type Encoder = fn(bytes: &[u8], level: u8) -> alloc::vec::Vec<u8>;

/// `bytes` as a frame whose data `encoder` makes at `level`.
#[cfg(feature = "alloc")]
pub fn frame_with(bytes: &[u8], level: u8, encoder: Encoder) -> alloc::vec::Vec<u8> {
    let data = encoder(bytes, level);
    let mut out = alloc::vec::Vec::with_capacity(FRAME_HEADER + data.len());
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

/// `bytes` compressed with `method` as a frame (the writer's side of [`Frame`]): LZ4's one
/// level, or ruzstd's fastest.
#[cfg(feature = "alloc")]
pub fn frame(method: Method, bytes: &[u8]) -> alloc::vec::Vec<u8> {
    match method {
        #[cfg(feature = "zstd")]
        Method::Zstd => frame_with(bytes, 0, |bytes, _| {
            ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
        }),
        Method::Lz4 => {
            let mut out =
                alloc::vec![0; FRAME_HEADER + lz4_flex::block::get_maximum_output_size(bytes.len())];
            out[..FRAME_HEADER].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            // The output has room for the most any input makes.
            let written = lz4_flex::block::compress_into(bytes, &mut out[FRAME_HEADER..]).unwrap_or(0);
            out.truncate(FRAME_HEADER + written);
            out
        }
    }
}

#[cfg(all(test, feature = "zstd"))]
mod tests {
    use super::*;

    fn sample() -> alloc::vec::Vec<u8> {
        (0..4000u32).flat_map(|i| [(i % 7) as u8, (i % 13) as u8, 0x90]).collect()
    }

    #[test]
    fn a_frame_decompresses_to_exactly_what_was_compressed() {
        let bytes = sample();
        for method in [Method::Lz4, Method::Zstd] {
            let stored = frame(method, &bytes);
            assert!(stored.len() < bytes.len() / 4, "{method:?}: {} bytes", stored.len());
            let frame = Frame::of(method, &stored, bytes.len() as u64 + 100).unwrap();
            assert_eq!(frame.decompressed_len, bytes.len() as u64);
            let mut place = alloc::vec![0xEE; bytes.len() + 100];
            frame.decompress_into(&mut place).unwrap();
            assert_eq!(place[..bytes.len()], bytes, "{method:?}");
            assert_eq!(
                place[bytes.len()..],
                [0xEE; 100],
                "{method:?}: nothing written past the stated length"
            );
        }
    }

    #[test]
    fn frames_that_state_the_wrong_length_or_are_cut_are_refused() {
        let bytes = sample();
        let n = bytes.len() as u64;
        for method in [Method::Lz4, Method::Zstd] {
            let stored = frame(method, &bytes);
            assert_eq!(Frame::of(method, &stored[..7], n), Err(CompressionProblem::FrameTooShort));
            assert_eq!(
                Frame::of(method, &stored, n - 1),
                Err(CompressionProblem::LongerThanVirtualSize { stated: n }),
                "{method:?}"
            );
            // Stating one byte more or less than the data makes.
            for (stated, problem) in [
                (n - 1, CompressionProblem::LongerThanStated),
                (n + 1, CompressionProblem::ShorterThanStated { produced: n }),
            ] {
                let mut wrong = stored.clone();
                wrong[..8].copy_from_slice(&stated.to_le_bytes());
                let frame = Frame::of(method, &wrong, n + 1).unwrap();
                let mut place = alloc::vec![0; bytes.len() + 1];
                assert_eq!(
                    frame.decompress_into(&mut place),
                    Err(problem),
                    "{method:?}: stated {stated} of {n}"
                );
            }
            // The data cut short: refused as beyond what it can make, or corrupt or short
            // when decompressed, never a panic.
            for cut in [stored.len() - 1, stored.len() / 2, FRAME_HEADER + 3, FRAME_HEADER + 1] {
                let mut place = alloc::vec![0; bytes.len()];
                let result = Frame::of(method, &stored[..cut], n).and_then(|f| f.decompress_into(&mut place));
                assert!(result.is_err(), "{method:?}: cut at {cut}");
            }
            let frame = Frame::of(method, &stored, n).unwrap();
            assert_eq!(
                frame.decompress_into(&mut [0; 3]),
                Err(CompressionProblem::LongerThanVirtualSize { stated: n }),
                "{method:?}: a place too small"
            );
        }
    }

    #[test]
    fn an_lz4_bomb_is_refused_before_anything_is_decompressed() {
        // A few bytes stating far more than LZ4 can make of them.
        let mut bomb = (u64::MAX / 2).to_le_bytes().to_vec();
        bomb.extend_from_slice(&[0x1F, 0, 0, 0]);
        assert!(matches!(
            Frame::of(Method::Lz4, &bomb, u64::MAX),
            Err(CompressionProblem::BeyondMethod { .. })
        ));
        let stored = frame(Method::Lz4, &sample());
        assert!(matches!(
            Frame::of(Method::Lz4, &stored[..FRAME_HEADER + 1], sample().len() as u64),
            Err(CompressionProblem::BeyondMethod { .. })
        ));
    }

    #[test]
    fn a_zstd_window_of_2_gib_costs_nothing() {
        // Magic, a descriptor (no single segment), a window byte of 2^31 + 7/8 of it (libzstd's
        // largest), then one last raw block of 5 bytes: the whole output is the window, so
        // nothing is reserved.
        let mut huge = 5u64.to_le_bytes().to_vec();
        huge.extend_from_slice(&[0x28, 0xB5, 0x2F, 0xFD, 0x00, (21 << 3) | 7]);
        huge.extend_from_slice(&[(5 << 3) | 1, 0, 0, b'h', b'e', b'l', b'l', b'o']);
        let frame = Frame::of(Method::Zstd, &huge, 5).unwrap();
        let mut place = [0; 5];
        frame.decompress_into(&mut place).unwrap();
        assert_eq!(&place, b"hello");
    }

    #[test]
    fn only_copied_payloads_the_loader_does_not_read_itself_may_be_compressed() {
        let plain = SectionFlags::READ;
        for section_type in [SectionType::Code, SectionType::Data, SectionType::RoData] {
            assert!(may_compress(section_type, plain), "{section_type:?}");
            for read_by_the_loader in
                [SectionFlags::CONSTRUCTORS, SectionFlags::DESTRUCTORS, SectionFlags::UNWIND]
            {
                assert!(!may_compress(section_type, plain | read_by_the_loader), "{section_type:?}");
            }
        }
        for never in [
            SectionType::Bss,
            SectionType::SymbolTable,
            SectionType::StringTable,
            SectionType::Relocations,
            SectionType::TemplateCode,
        ] {
            assert!(!may_compress(never, plain), "{never:?}");
        }
    }

    #[test]
    fn only_known_methods_are_named() {
        assert_eq!(Method::from_wire(0), Ok(None));
        assert_eq!(Method::from_wire(2), Ok(Some(Method::Lz4)));
        assert_eq!(Method::from_wire(1), Ok(Some(Method::Zstd)));
        assert_eq!(Method::from_wire(9), Err(9));
        assert_eq!((Method::Lz4.wire(), Method::Zstd.wire()), (2, 1));
        assert_eq!((Method::Lz4.name(), Method::Zstd.name()), ("lz4", "zstd"));
    }
}
