//! Benchmark "compression": compressed modules (`docs/format.md`, "Compression") against their
//! uncompressed twins, packed from the same objects by `smf pack` plain, with `--compress lz4`
//! and with `--compress zstd` (lines without a suffix are lz4's, `_zstd` lines Zstandard's):
//!
//! - file size, for the C examples (`examples/c/`) and for Lua 5.4 (the `lua` benchmark's
//!   objects, a large real library): uncompressed / compressed bytes;
//! - load time from the file (`smf::loader::load`, the three alternated round by round),
//!   with the file in the page cache (decompression costs CPU) and with it dropped from the
//!   page cache before every load (fewer pages read): uncompressed time / compressed time,
//!   above 1 when the compressed module loads faster;
//! - decompression speed: our frames decoded into a buffer against another decoder on the same
//!   bytes: for LZ4 `lz4_flex`'s block decoder, which the core uses (1 means the frame costs
//!   nothing beside the crate); for Zstandard, decoded by the core's own decoder, `ruzstd`'s
//!   frame decoder (pure Rust, through its window buffer) and libzstd, the reference C library
//!   (their time / ours); and the throughput in MB/s of decompressed bytes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use smf_format::compress::Payload;
use smf_format::{Module, SectionFlags};

use super::report::{self, Goal};
use super::{interleaved_rounds, median_ratio, ms};
use crate::workspace_root;

/// The methods measured, as `smf pack --compress` names them.
const METHODS: [&str; 2] = ["lz4", "zstd"];

/// `objects` packed into `dir/NAME.smf`, plain, then with each of [`METHODS`] into
/// `dir/NAME.METHOD.smf`: their paths, plain first.
fn packed(objects: &[PathBuf], dir: &Path, name: &str) -> Result<[PathBuf; 3], String> {
    let plain = dir.join(format!("{name}.smf"));
    super::load::pack_with(objects, &plain, &["--dialect", "s128"])?;
    let mut paths = [plain.clone(), plain.clone(), plain];
    for (method, path) in METHODS.iter().zip(&mut paths[1..]) {
        *path = dir.join(format!("{name}.{method}.smf"));
        super::load::pack_with(objects, path, &["--dialect", "s128", "--compress", method])?;
    }
    Ok(paths)
}

/// The C examples compiled (gcc -O2 -fPIC) into `dir`: their objects.
fn example_objects(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut objects = Vec::new();
    for stem in ["recursion", "strings", "globals", "mathlib", "app"] {
        let object = dir.join(format!("{stem}.o"));
        let status = Command::new("gcc")
            .args(["-c", "-O2", "-fPIC"])
            .arg(workspace_root().join("examples/c").join(format!("{stem}.c")))
            .arg("-o")
            .arg(&object)
            .status()
            .map_err(|e| format!("gcc: {e}"))?;
        if !status.success() {
            return Err(format!("gcc failed on {stem}.c"));
        }
        objects.push(object);
    }
    Ok(objects)
}

fn size(path: &Path) -> Result<u64, String> {
    std::fs::metadata(path).map(|m| m.len()).map_err(|e| format!("{}: {e}", path.display()))
}

/// Drops `path` from the page cache (the next read goes to the disk).
fn evict(path: &Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).map_err(|e| e.to_string())
}

pub(super) fn run(rounds: usize) -> Result<(), String> {
    let Some(dir) = super::packing_dir("compression")? else { return Ok(()) };
    println!(
        "compression: modules packed with --compress lz4 and zstd against the same objects packed plain"
    );
    let lua = sizes(&dir)?;
    loads(&lua, rounds)?;
    decompression(&lua, rounds)
}

/// File sizes: the examples, each packed alone (the sum), and Lua; returns Lua's modules.
fn sizes(dir: &Path) -> Result<[PathBuf; 3], String> {
    let mut examples = [0; 3];
    for object in example_objects(dir)? {
        let name = object.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        for (sum, path) in examples.iter_mut().zip(packed(&[object], dir, &name)?) {
            *sum += size(&path)?;
        }
    }
    let (_, _, lua_objects) =
        super::lua::build_with_objects(&workspace_root().join("target").join("bench-lua"))?;
    let lua = packed(&lua_objects, dir, "lua")?;
    let lua_sizes = [size(&lua[0])?, size(&lua[1])?, size(&lua[2])?];
    let lines = [
        ("C examples (5 modules)", examples, ["compressed_size_examples", "compressed_size_examples_zstd"]),
        ("Lua 5.4 (one module)", lua_sizes, ["compressed_size_lua", "compressed_size_lua_zstd"]),
    ];
    for (what, bytes, names) in lines {
        println!("  {what:<24} {:>9} bytes, lz4 {:>9}, zstd {:>9}", bytes[0], bytes[1], bytes[2]);
        for (name, packed) in names.into_iter().zip(&bytes[1..]) {
            report::ratio(name, bytes[0] as f64 / *packed as f64, Goal::Reported);
        }
    }
    Ok(lua)
}

/// Load time of Lua from its file, warm and cold, plain against each method.
fn loads(lua: &[PathBuf; 3], rounds: usize) -> Result<(), String> {
    let load = |path: &Path| -> usize {
        // Lua imports the C library.
        let loaded = smf::loader::load(&smf::loader::LoadRequest::path(path)).expect("the module loads");
        loaded.symbol(b"lua_work").unwrap_or(0)
    };
    let warm = interleaved_rounds(
        rounds,
        &mut [&mut || load(&lua[0]), &mut || load(&lua[1]), &mut || load(&lua[2])],
    );
    let mut cold = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..rounds.min(20) {
        for (path, times) in lua.iter().zip(&mut cold) {
            evict(path)?;
            let start = Instant::now();
            std::hint::black_box(load(path));
            times.push(start.elapsed());
        }
    }
    let cold = cold.to_vec();
    let lines = [
        ("file cached", &warm, ["compressed_load_warm", "compressed_load_warm_zstd"]),
        ("file not cached", &cold, ["compressed_load_cold", "compressed_load_cold_zstd"]),
    ];
    for (what, times, names) in lines {
        let medians: Vec<f64> = times.iter().map(|t| ms(super::median(t.clone()))).collect();
        println!(
            "  load Lua, {what:<16} {:>8.3} ms plain, {:>8.3} ms lz4, {:>8.3} ms zstd",
            medians[0], medians[1], medians[2]
        );
        for (name, packed) in names.into_iter().zip(&times[1..]) {
            report::ratio(name, median_ratio(&times[0], packed), Goal::Reported);
        }
    }
    Ok(())
}

/// Every compressed section's frame in the module `bytes`.
fn frames(bytes: &[u8]) -> Result<Vec<smf_format::compress::Frame<'_>>, String> {
    let module = Module::parse(bytes).map_err(|e| e.to_string())?;
    let frames = module
        .sections()
        .filter(|s| s.flags.contains(SectionFlags::COMPRESSED))
        .filter_map(|s| match module.payload(&s) {
            Payload::Compressed(frame) => Some(frame),
            Payload::Raw(_) => None,
        })
        .collect();
    Ok(frames)
}

/// A crate's own decoder writing a frame's data into its place.
type Decoder<'a> = dyn Fn(&smf_format::compress::Frame<'_>, &mut [u8]) + 'a;

/// Decompression: every compressed section of Lua through our frames and through the crate
/// alone, per method.
fn decompression(lua: &[PathBuf; 3], rounds: usize) -> Result<(), String> {
    let lz4 = std::fs::read(&lua[1]).map_err(|e| e.to_string())?;
    let zstd = std::fs::read(&lua[2]).map_err(|e| e.to_string())?;
    let alone_lz4 = |frame: &smf_format::compress::Frame<'_>, out: &mut [u8]| {
        lz4_flex::block::decompress_into(frame.data, out).expect("decompresses");
    };
    let ruzstd = |frame: &smf_format::compress::Frame<'_>, out: &mut [u8]| {
        ruzstd::decoding::FrameDecoder::new().decode_all(frame.data, out).expect("decompresses");
    };
    let libzstd = std::cell::RefCell::new(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?);
    let libzstd = |frame: &smf_format::compress::Frame<'_>, out: &mut [u8]| {
        libzstd.borrow_mut().decompress_to_buffer(frame.data, out).expect("decompresses");
    };
    let cases: [(&[u8], &Decoder<'_>, &str, &str, Goal); 3] = [
        (&lz4, &alone_lz4, "lz4_flex", "decompress_vs_lz4_flex", Goal::AtLeast(0.95)),
        (&zstd, &ruzstd, "ruzstd", "decompress_vs_ruzstd", Goal::AtLeast(1.0)),
        (&zstd, &libzstd, "libzstd", "decompress_vs_libzstd", Goal::Reported),
    ];
    for (bytes, alone, crate_name, line, goal) in cases {
        let frames = frames(bytes)?;
        let total: usize = frames.iter().map(|f| f.decompressed_len as usize).sum();
        let largest = frames.iter().map(|f| f.decompressed_len as usize).max().unwrap_or(0);
        // One output buffer for both (neither finds the other's output in the cache), every
        // frame decoded `REPEATS` times a sample (the first pass's misses amortized).
        const REPEATS: usize = 10;
        let out = std::cell::RefCell::new(vec![0u8; largest]);
        let mut ours = || {
            let mut out = out.borrow_mut();
            for _ in 0..REPEATS {
                for frame in &frames {
                    frame.decompress_into(&mut out).expect("decompresses");
                }
            }
            total
        };
        let mut theirs = || {
            let mut out = out.borrow_mut();
            for _ in 0..REPEATS {
                for frame in &frames {
                    alone(frame, &mut out[..frame.decompressed_len as usize]);
                }
            }
            total
        };
        let mut times = interleaved_rounds(rounds * 5, &mut [&mut ours, &mut theirs]);
        for sample in times.iter_mut().flatten() {
            *sample /= REPEATS as u32;
        }
        let ours_median = super::median(times[0].clone());
        let throughput = total as f64 / ours_median.as_secs_f64() / 1e6;
        println!(
            "  decompress Lua's {total} bytes: ours {:.3} ms ({throughput:.0} MB/s), {crate_name} {:.3} ms",
            ms(ours_median),
            ms(super::median(times[1].clone()))
        );
        report::ratio(line, median_ratio(&times[1], &times[0]), goal);
    }
    Ok(())
}
