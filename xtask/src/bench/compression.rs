//! Benchmark "compression": compressed modules (`docs/format.md`, "Compression") against their
//! uncompressed twins, packed from the same objects by `smf pack` with and without
//! `--compress lz4`:
//!
//! - file size, for the C examples (`examples/c/`) and for Lua 5.4 (the `lua` benchmark's
//!   objects, a large real library): uncompressed / compressed bytes;
//! - load time from the file (`smf::loader::load_path`, alternated round by round), with the
//!   file in the page cache (decompression costs CPU) and with it dropped from the page cache
//!   before every load (fewer pages read): uncompressed time / compressed time, above 1 when
//!   the compressed module loads faster;
//! - decompression speed: our frame decoded into a buffer against `lz4_flex`'s own block
//!   decoder on the same bytes (their time / ours: 1 means the frame costs nothing beside the
//!   crate), and the throughput in MB/s of decompressed bytes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use smf_core::compress::Payload;
use smf_core::{Module, SectionFlags};

use super::report::{self, Goal};
use super::{interleaved, median_ratio, ms};
use crate::workspace_root;

/// `objects` packed twice into `dir/NAME.smf` and `dir/NAME.lz4.smf`: their paths.
fn twins(objects: &[PathBuf], dir: &Path, name: &str, dialect: &str) -> Result<(PathBuf, PathBuf), String> {
    let (plain, packed) = (dir.join(format!("{name}.smf")), dir.join(format!("{name}.lz4.smf")));
    super::load::pack_with(objects, &plain, &["--dialect", dialect])?;
    super::load::pack_with(objects, &packed, &["--dialect", dialect, "--compress", "lz4"])?;
    Ok((plain, packed))
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
    if !cfg!(target_arch = "x86_64") {
        println!("compression: skipped (smf pack reads x86-64 objects)");
        return Ok(());
    }
    let dir = workspace_root().join("target").join("bench-compression");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    println!("compression: modules packed with --compress lz4 against the same objects packed plain");

    // File sizes: the examples, each packed alone (the sum), and Lua.
    let (mut plain_sum, mut packed_sum) = (0, 0);
    for object in example_objects(&dir)? {
        let name = object.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let (plain, packed) = twins(&[object], &dir, &name, "s128")?;
        plain_sum += size(&plain)?;
        packed_sum += size(&packed)?;
    }
    let (_, _, lua_objects) =
        super::lua::build_with_objects(&workspace_root().join("target").join("bench-lua"))?;
    let (lua, lua_packed) = twins(&lua_objects, &dir, "lua", "s128")?;
    let (lua_size, lua_packed_size) = (size(&lua)?, size(&lua_packed)?);
    println!("  C examples (5 modules)   {plain_sum:>9} bytes -> {packed_sum:>9} bytes");
    println!("  Lua 5.4 (one module)     {lua_size:>9} bytes -> {lua_packed_size:>9} bytes");
    report::ratio("compressed_size_examples", plain_sum as f64 / packed_sum as f64, Goal::Reported);
    report::ratio("compressed_size_lua", lua_size as f64 / lua_packed_size as f64, Goal::Reported);

    // Load time of Lua from its file, warm and cold.
    let load = |path: &Path| -> usize {
        // Lua imports the C library.
        let loaded = smf::loader::load_path_with(path, &smf::imports::LinkOptions::default())
            .expect("the module loads");
        loaded.symbol(b"lua_work").unwrap_or(0)
    };
    let warm = interleaved(rounds, &mut [&mut || load(&lua), &mut || load(&lua_packed)]);
    let warm_ratio = warm[0].as_secs_f64() / warm[1].as_secs_f64();
    let mut cold = (Vec::new(), Vec::new());
    for _ in 0..rounds.min(20) {
        for (path, times) in [(&lua, &mut cold.0), (&lua_packed, &mut cold.1)] {
            evict(path)?;
            let start = Instant::now();
            std::hint::black_box(load(path));
            times.push(start.elapsed());
        }
    }
    let cold_ratio = median_ratio(&cold.0, &cold.1);
    println!(
        "  load Lua, file cached     {:>9.3} ms plain, {:>9.3} ms compressed ({warm_ratio:.2}x)",
        ms(warm[0]),
        ms(warm[1])
    );
    println!(
        "  load Lua, file not cached {:>9.3} ms plain, {:>9.3} ms compressed ({cold_ratio:.2}x)",
        ms(super::median(cold.0)),
        ms(super::median(cold.1))
    );
    report::ratio("compressed_load_warm", warm_ratio, Goal::Reported);
    report::ratio("compressed_load_cold", cold_ratio, Goal::Reported);

    // Decompression: every compressed section of Lua through our frame and through lz4_flex.
    let bytes = std::fs::read(&lua_packed).map_err(|e| e.to_string())?;
    let module = Module::parse(&bytes).map_err(|e| e.to_string())?;
    let frames: Vec<_> = module
        .sections()
        .filter(|s| s.flags.contains(SectionFlags::COMPRESSED))
        .filter_map(|s| match module.payload(&s) {
            Payload::Compressed(frame) => Some(frame),
            Payload::Raw(_) => None,
        })
        .collect();
    let total: usize = frames.iter().map(|f| f.decompressed_len as usize).sum();
    let largest = frames.iter().map(|f| f.decompressed_len as usize).max().unwrap_or(0);
    let mut out = vec![0u8; largest];
    let mut ours = || {
        for frame in &frames {
            frame.decompress_into(&mut out).expect("decompresses");
        }
        total
    };
    let mut scratch = vec![0u8; largest];
    let mut theirs = || {
        for frame in &frames {
            let len = frame.decompressed_len as usize;
            lz4_flex::block::decompress_into(frame.data, &mut scratch[..len]).expect("decompresses");
        }
        total
    };
    let times = interleaved(rounds * 5, &mut [&mut ours, &mut theirs]);
    let throughput = total as f64 / times[0].as_secs_f64() / 1e6;
    println!(
        "  decompress Lua's {total} bytes: ours {:.3} ms ({throughput:.0} MB/s), lz4_flex alone {:.3} ms",
        ms(times[0]),
        ms(times[1])
    );
    report::ratio(
        "decompress_vs_lz4_flex",
        times[1].as_secs_f64() / times[0].as_secs_f64(),
        Goal::AtLeast(0.95),
    );
    Ok(())
}
