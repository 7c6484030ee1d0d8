//! Our Zstandard decoder (`smf_format::compress`, `core/format/src/compress/zstd/`) against the
//! reference library, libzstd: its frames at every level, with and without checksums and
//! content sizes, several frames and skippable ones, matches far back; the same frames damaged
//! byte by byte, where we accept exactly what libzstd accepts, with the same bytes, but for two
//! RFC 8878 rules libzstd's fast Huffman path leaves unchecked (a stream read exactly to its
//! start, its last byte holding the marker); and frames at the format's edges
//! (blocks against their window, counts for symbols never decoded).

use smf_format::compress::{Frame, Method};
use smf_format::CompressionProblem;

/// `data` decoded by our decoder into a place of `len` bytes, as a loader does it.
fn ours(data: &[u8], len: usize) -> Result<Vec<u8>, CompressionProblem> {
    let mut stored = (len as u64).to_le_bytes().to_vec();
    stored.extend_from_slice(data);
    let frame = Frame::of(Method::Zstd, &stored, len as u64)?;
    let mut place = vec![0; len];
    frame.decompress_into(&mut place)?;
    Ok(place)
}

/// Bytes of a kind a module holds, from a xorshift generator seeded with `seed`.
fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// Text: the repository's own documents and sources, repeated to `len`.
fn text(len: usize) -> Vec<u8> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut bytes = Vec::new();
    for file in
        ["docs/format.md", "ARCHITECTURE.md", "core/format/src/compress/mod.rs", "core/format/src/lib.rs"]
    {
        bytes.extend(std::fs::read(format!("{root}/{file}")).expect("a repository file"));
    }
    bytes.iter().copied().cycle().take(len).collect()
}

/// Machine code and data: the start of this test's own executable.
fn binary(len: usize) -> Vec<u8> {
    let exe = std::fs::read(std::env::current_exe().expect("the test's path")).expect("the test binary");
    exe.iter().copied().cycle().take(len).collect()
}

/// Data sets that reach every block and literal kind: text, code, noise (raw blocks), runs
/// (RLE blocks and literals), a mix switching every few KiB, and lengths around block limits.
fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let mut mixed = Vec::new();
    for k in 0..40u8 {
        match k % 4 {
            0 => mixed.extend(text(3000 + usize::from(k) * 17)),
            1 => mixed.extend(random(2000, u64::from(k))),
            2 => mixed.extend(std::iter::repeat_n(k, 5000)),
            _ => mixed.extend(binary(4000)),
        }
    }
    vec![
        ("empty", Vec::new()),
        ("one byte", vec![7]),
        ("text", text(300_000)),
        ("binary", binary(400_000)),
        ("random", random(150_000, 9)),
        ("zeros", vec![0; 300_000]),
        ("mixed", mixed),
        ("one block", text(128 << 10)),
        ("one block and a byte", text((128 << 10) + 1)),
    ]
}

const LEVELS: [i32; 10] = [-7, -1, 1, 2, 3, 5, 9, 13, 19, 22];

#[test]
fn every_level_of_the_reference_encoder_decodes_exactly() {
    for (name, data) in samples() {
        for level in LEVELS {
            let frame = zstd::bulk::compress(&data, level).expect("libzstd compresses");
            assert_eq!(ours(&frame, data.len()).as_deref(), Ok(&data[..]), "{name} at level {level}");
        }
    }
}

/// `data` compressed by libzstd's streaming encoder with these options.
fn streamed(data: &[u8], level: i32, checksum: bool, content_size: bool, window_log: u32) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = zstd::stream::Encoder::new(Vec::new(), level).expect("an encoder");
    encoder.include_checksum(checksum).expect("checksum option");
    encoder.include_contentsize(content_size).expect("content size option");
    if content_size {
        encoder.set_pledged_src_size(Some(data.len() as u64)).expect("pledged size");
    }
    if window_log > 0 {
        encoder.long_distance_matching(true).expect("long matching");
        encoder.window_log(window_log).expect("window log");
    }
    encoder.write_all(data).expect("compresses");
    encoder.finish().expect("finishes")
}

#[test]
fn checksums_content_sizes_and_far_matches_decode_exactly() {
    let text = text(200_000);
    for level in [1, 3, 19] {
        for (checksum, content_size) in [(true, true), (true, false), (false, false), (false, true)] {
            let frame = streamed(&text, level, checksum, content_size, 0);
            assert_eq!(
                ours(&frame, text.len()).as_deref(),
                Ok(&text[..]),
                "level {level} {checksum} {content_size}"
            );
        }
    }
    // A 1 MiB stretch of noise seen twice: the second time one match 1 MiB back.
    let noise = random(1 << 20, 3);
    let twice = [&noise[..], &noise[..]].concat();
    let frame = streamed(&twice, 3, true, true, 23);
    assert!(
        frame.len() < noise.len() + noise.len() / 8,
        "the encoder found the far match: {} bytes",
        frame.len()
    );
    assert_eq!(ours(&frame, twice.len()).as_deref(), Ok(&twice[..]));
}

#[test]
fn frames_follow_one_another_and_skippable_frames_are_skipped() {
    let (a, b) = (text(50_000), binary(70_000));
    let mut frames = zstd::bulk::compress(&a, 3).unwrap();
    // A skippable frame: magic 0x184D2A5?, a length, that many bytes.
    frames.extend_from_slice(&0x184D_2A53u32.to_le_bytes());
    frames.extend_from_slice(&5u32.to_le_bytes());
    frames.extend_from_slice(b"smf!!");
    frames.extend(streamed(&b, 19, true, false, 0));
    let both = [&a[..], &b[..]].concat();
    assert_eq!(ours(&frames, both.len()).as_deref(), Ok(&both[..]));
    // A match in the second frame can never reach into the first: frames are independent,
    // so a second frame is decoded as if alone.
    let second = streamed(&a, 3, false, false, 0);
    let mut two = zstd::bulk::compress(&a, 3).unwrap();
    two.extend_from_slice(&second);
    let twice = [&a[..], &a[..]].concat();
    assert_eq!(ours(&two, twice.len()).as_deref(), Ok(&twice[..]));
}

#[test]
fn stating_one_byte_more_or_less_than_the_frames_make_is_refused() {
    let data = text(90_000);
    let frame = zstd::bulk::compress(&data, 19).unwrap();
    assert_eq!(ours(&frame, data.len() - 1), Err(CompressionProblem::LongerThanStated));
    // With its content size in the frame or without, it makes fewer bytes than stated.
    assert_eq!(
        ours(&frame, data.len() + 1),
        Err(CompressionProblem::ShorterThanStated { produced: data.len() as u64 })
    );
    let unsized_frame = streamed(&data, 19, false, false, 0);
    assert_eq!(
        ours(&unsized_frame, data.len() + 1),
        Err(CompressionProblem::ShorterThanStated { produced: data.len() as u64 })
    );
}

/// libzstd's answer for `frame`, decoding into at most `len` bytes.
fn reference(frame: &[u8], len: usize) -> Result<Vec<u8>, ()> {
    let mut out = vec![0; len];
    let mut decoder = zstd::bulk::Decompressor::new().map_err(|_| ())?;
    decoder.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(31)).map_err(|_| ())?;
    let made = decoder.decompress_to_buffer(frame, &mut out).map_err(|_| ())?;
    if made != len {
        return Err(());
    }
    Ok(out)
}

#[test]
fn a_huffman_stream_whose_last_byte_lost_its_marker_is_refused_though_libzstd_takes_it() {
    // Letters and spaces, few repeats: literals Huffman-coded in four long streams, which
    // libzstd decodes on its fast path.
    let data: Vec<u8> = random(60_000, 7).iter().map(|b| b"etaoin shrdlu"[usize::from(b % 13)]).collect();
    let frame = zstd::bulk::compress(&data, 3).unwrap();
    let mut found = 0;
    for at in (0..frame.len()).filter(|&at| frame[at] == 1) {
        let mut damaged = frame.clone();
        damaged[at] = 0;
        let mut out = vec![0; data.len()];
        if smf_format::compress::zstd_refusal(&damaged, &mut out)
            == Err("a Huffman stream's last byte has no marker bit")
        {
            found += 1;
            // RFC 8878 has the last byte hold the marker; libzstd's fast path reads a zero one
            // as if it did, and makes literals nobody wrote.
            let theirs = reference(&damaged, data.len());
            assert!(theirs.is_ok_and(|made| made != data), "byte {at}");
        }
    }
    assert!(found > 0, "a stream's last byte is 0x01 in this frame");
}

#[test]
fn damaged_frames_are_accepted_exactly_when_the_reference_accepts_them() {
    // Frames with every table kind: Huffman literals in four streams, FSE-described sequence
    // tables, repeat modes in the second block; with and without a checksum.
    let data: Vec<u8> = [text(9_000), binary(3_000), text(125_000)].concat();
    let mut compared = [0usize; 3];
    for (checksum, level) in [(true, 19), (false, 3), (false, 19)] {
        let frame = streamed(&data, level, checksum, true, 0);
        for at in (0..frame.len()).step_by((frame.len() / 700).max(1)) {
            for flip in [0x01u8, 0x10, 0x80, 0xFF] {
                let mut damaged = frame.clone();
                damaged[at] ^= flip;
                let ours = ours(&damaged, data.len()).ok();
                let theirs = reference(&damaged, data.len()).ok();
                let what = format!("byte {at} ^ {flip:#x} of a level {level} frame (checksum {checksum})");
                if ours.is_some() || checksum {
                    assert_eq!(ours, theirs, "{what}: ours and libzstd's answers");
                } else if theirs.is_some() {
                    // The two rules libzstd's fast Huffman decoder leaves unchecked (RFC 8878):
                    // that a stream ends exactly where its last literal does, and that its last
                    // byte holds the marker bit (it reads a zero byte as if the marker were
                    // there). Without a checksum it accepts such a frame, with literals nobody
                    // wrote.
                    let mut out = vec![0; data.len()];
                    let why = smf_format::compress::zstd_refusal(&damaged, &mut out);
                    let lenient = [
                        Err("a Huffman stream not read exactly to its start"),
                        Err("a Huffman stream's last byte has no marker bit"),
                    ];
                    assert!(lenient.contains(&why), "{what}: {why:?}");
                    // And what libzstd makes of it is not the data: the damage was real.
                    assert!(theirs.as_deref() != Some(&data[..]), "{what}: libzstd decoded it intact");
                }
                compared[usize::from(ours.is_some()) + usize::from(theirs.is_some())] += 1;
            }
        }
        // Cut anywhere: never the whole data.
        for cut in (0..frame.len()).step_by(frame.len() / 300) {
            assert!(ours(&frame[..cut], data.len()).is_err(), "cut at {cut}");
        }
    }
    let [both_refuse, one_accepts, both_accept] = compared;
    assert!(both_refuse + one_accepts + both_accept > 8_000, "{compared:?}");
    // Damage the decoders accept (literals without a checksum) and refuse both come up.
    assert!(both_accept > 100 && both_refuse > 1_000, "{compared:?}");
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

#[test]
fn frames_at_the_edges_of_the_format_answer_as_libzstd_does() {
    // A Huffman tree whose weights' FSE description counts symbol 13, never decoded: libzstd
    // reads such a description (any symbol up to 255) and decodes `02 00 01`.
    let counts_past_the_weights = hex("28b52ffd00006500003200020610f0fb1b00043100");
    assert_eq!(reference(&counts_past_the_weights, 3), Ok(vec![2, 0, 1]));
    assert_eq!(ours(&counts_past_the_weights, 3), Ok(vec![2, 0, 1]));
    // A single-segment frame of 3 bytes (its window) with a compressed block of 12: larger
    // than the window, refused by both.
    let block_past_its_window = hex("28b52ffd20036500003200020610f0fb1900043100");
    assert_eq!(reference(&block_past_its_window, 3), Err(()));
    assert_eq!(ours(&block_past_its_window, 3), Err(CompressionProblem::Corrupt));
    // A window past 2^31 (descriptor 0, window log 32), then a raw last block of 1 byte.
    let window_past_2_gib = [0x28, 0xB5, 0x2F, 0xFD, 0x00, 22 << 3, 0x09, 0, 0, b'x'];
    assert_eq!(reference(&window_past_2_gib, 1), Err(()));
    assert_eq!(ours(&window_past_2_gib, 1), Err(CompressionProblem::Corrupt));
    let mut window_of_2_gib = window_past_2_gib;
    window_of_2_gib[5] = 21 << 3;
    assert_eq!(reference(&window_of_2_gib, 1), Ok(vec![b'x']));
    assert_eq!(ours(&window_of_2_gib, 1), Ok(vec![b'x']));
}
