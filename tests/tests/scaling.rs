//! A load's cost grows linearly with the file, whatever the file holds: adversarial inputs
//! (names built to collide under a weak hash, many sections, many template symbols, a big
//! note; and a function of many values live at once, compiled) are timed at a size `N` and
//! at `4N` in the same run, and `4N` must cost less than `RATIO` times `N`: a linear path
//! costs about 4x, a quadratic one 16x.
//!
//! Times are the thread's CPU time (other processes do not stretch it), the fastest of a few
//! runs of each size, interleaved, so that a noisy machine's steal time and cache pollution
//! hit both sizes alike.

use std::ffi::OsStr;
use std::time::Duration;

use smf_format::template::TemplateKind;
use smf_format::write::{ModuleBuilder, SymbolSpec, TemplateSpec};
use smf_format::{Dialect, Module, RelocKind};
use smf_runtime::exec::ExecAllocator;
use smf_runtime::load::{ExportIndex, LoadOptions, LoadedModule, Resolved, Resolver};
use smf_runtime::lru::{Budget, KeyedHasher, LruCache};

/// The bound on cost(4N) / cost(N): twice what a linear path needs (4x), half what a quadratic
/// one shows (16x).
const RATIO: u32 = 8;

/// Runs of each size; the fastest counts.
const RUNS: usize = 3;

/// Resolves every import to a fixed address.
struct Everything;

impl Resolver for Everything {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        Some(Resolved { addr: 0x40_0000 + name.len() * 16, keepalive: None })
    }
}

/// Asserts that `run` over the input `build(4 * n)` costs less than [`RATIO`] times `run` over
/// `build(n)`.
fn assert_linear<I>(label: &str, n: usize, build: impl Fn(usize) -> I, run: impl Fn(&I)) {
    let inputs = [build(n), build(4 * n)];
    let mut fastest = [Duration::MAX; 2];
    for _ in 0..RUNS {
        for (input, best) in inputs.iter().zip(&mut fastest) {
            let start = smf_tests::thread_cpu_time();
            run(input);
            *best = (*best).min(smf_tests::thread_cpu_time() - start);
        }
    }
    let [small, large] = fastest;
    let ratio = large.as_secs_f64() / small.as_secs_f64().max(1e-9);
    eprintln!("{label}: N = {n} in {small:?}, 4N in {large:?}: {ratio:.1}x");
    assert!(
        large < small * RATIO,
        "{label}: 4N costs {ratio:.1}x N ({small:?} -> {large:?}), bound {RATIO}x"
    );
}

/// Blocks per colliding name: 2^BLOCKS names can be built.
const BLOCKS: usize = 14;

/// Name `i` of a family that collided under the old word-at-a-time hash for every key.
///
/// That hash mixed each 8-byte little-endian word as `rotl((state ^ word) * M, 29)` with `M`
/// odd: flipping bit 63 of one word flips only bit 63 of the product, bit 28 after the
/// rotation, and flipping bit 28 of the next word cancels it. Each 16-byte block of the name
/// is flipped so or not after bit `b` of `i`: `2^BLOCKS` names of one length, one hash.
fn colliding(i: usize) -> Vec<u8> {
    let mut name = Vec::with_capacity(16 * BLOCKS);
    for block in 0..BLOCKS {
        let mut bytes = *b"collide_block_ab";
        bytes[14] = b"abcdefghijklmnopqrstuvwxyz"[block % 26];
        if i >> block & 1 == 1 {
            bytes[7] ^= 0x80; // bit 63 of the first word
            bytes[8 + 3] ^= 0x10; // bit 28 of the second
        }
        name.extend_from_slice(&bytes);
    }
    name
}

/// A module exporting a function under each of `names` (all at one `ret`).
fn exporting(names: impl Iterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &[0xC3]);
    for name in names {
        b.add_symbol(SymbolSpec::function(&name, 0, 1));
    }
    b.build().unwrap()
}

fn allocator() -> &'static ExecAllocator {
    smf_tests::loading::leak_allocator()
}

fn load(exec: &'static ExecAllocator, file: &[u8]) -> LoadedModule<'static> {
    let options = LoadOptions { require_arch: None, ..LoadOptions::default() };
    LoadedModule::load(exec, file, &Everything, &options).expect("the module loads")
}

#[test]
fn the_colliding_names_are_distinct_and_of_one_length() {
    let names: std::collections::HashSet<Vec<u8>> = (0..1 << BLOCKS).map(colliding).collect();
    assert_eq!(names.len(), 1 << BLOCKS);
    assert!(names.iter().all(|n| n.len() == 16 * BLOCKS && !n.contains(&0)));
}

#[test]
fn exported_names_built_to_collide_load_in_linear_time() {
    let exec = allocator();
    assert_linear(
        "colliding exports",
        2048,
        |n| exporting((0..n).map(colliding)),
        |file| {
            let module = load(exec, file);
            assert!(module.symbol(&colliding(1)).is_some());
        },
    );
}

#[test]
fn imported_names_built_to_collide_load_in_linear_time() {
    let exec = allocator();
    let build = |n: usize| {
        let mut b = ModuleBuilder::new(Dialect::R96);
        b.add_code(b".text", &[0xC3]);
        for i in 0..n {
            b.add_symbol(SymbolSpec::import(&colliding(i)));
        }
        b.build().unwrap()
    };
    assert_linear("colliding imports", 2048, build, |file| {
        load(exec, file);
    });
}

#[test]
fn an_export_index_over_names_built_to_collide_takes_linear_time() {
    let exec = allocator();
    let build = |n: usize| (n, load(exec, &exporting((0..n).map(colliding))));
    assert_linear("colliding export index", 2048, build, |(n, module)| {
        let mut index = ExportIndex::new();
        index.insert(0u32, module).unwrap();
        let found: usize = (0..*n).map(|i| index.candidates(&colliding(i)).count()).sum();
        assert!(found >= *n);
    });
}

#[test]
fn cache_keys_built_to_collide_take_linear_time() {
    // Paths are bytes (the flipped bits leave the names not UTF-8).
    let build = |n: usize| -> Vec<Box<OsStr>> {
        use std::os::unix::ffi::OsStrExt;
        (0..n).map(|i| Box::from(OsStr::from_bytes(&colliding(i)))).collect()
    };
    assert_linear("colliding cache keys", 2048, build, |keys| {
        let mut cache = LruCache::new(KeyedHasher::new(0x5EED), Budget::default());
        for (i, key) in keys.iter().enumerate() {
            cache.insert(key.clone(), i, 1).unwrap();
        }
        assert_eq!(cache.get(&*keys[1]), Some(&1));
    });
}

#[test]
fn many_data_sections_load_in_linear_time() {
    // Each data symbol's address is its section's: found by binary search, not a scan.
    let exec = allocator();
    let build = |n: usize| {
        let mut b = ModuleBuilder::new(Dialect::R96);
        b.add_code(b".text", &[0xC3]);
        for i in 0..n {
            let section = b.add_data(format!(".data.{i}").as_bytes(), &(i as u64).to_le_bytes());
            b.add_symbol(SymbolSpec::data(format!("d{i}").as_bytes(), section, 0, 8));
        }
        b.build().unwrap()
    };
    assert_linear("data sections", 2048, build, |file| {
        let module = load(exec, file);
        assert!(module.symbol(b"d1").is_some());
    });
}

#[test]
fn many_sections_load_in_linear_time() {
    let exec = allocator();
    // Per i: a code section whose function reads its own data section's word
    // (`mov rax, [rip+d_i]; ret`, a pc32 relocation), that data section, and a symbol for each.
    let build = |n: usize| {
        let mut b = ModuleBuilder::new(Dialect::R96);
        let mut relocations = Vec::new();
        for i in 0..n {
            let mut code = vec![0x48, 0x8B, 0x05, 0, 0, 0, 0, 0xC3];
            code.resize(16, 0xCC); // the code image is the sections back to back
            b.add_code(format!(".text.{i}").as_bytes(), &code);
            let at = 16 * i as u64;
            b.add_symbol(SymbolSpec::function(format!("f{i}").as_bytes(), at, 8));
            let section = b.add_data(format!(".data.{i}").as_bytes(), &(i as u64).to_le_bytes());
            let data = b.add_symbol(SymbolSpec::data(format!("d{i}").as_bytes(), section, 0, 8));
            relocations.push((at + 3, data));
        }
        for (offset, data) in relocations {
            b.add_relocation(offset, data, RelocKind::Pc32, -4);
        }
        b.build().unwrap()
    };
    assert_linear("code, data and relocation sections", 1024, build, |file| {
        let module = load(exec, file);
        assert!(module.symbol(b"d1").is_some());
        #[cfg(target_arch = "x86_64")]
        assert_eq!(smf_tests::loading::call0(&module, b"f5"), 5);
    });
}

/// A module with `n` template symbols, each with an entry of its own.
fn templates(n: usize) -> Vec<u8> {
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.add_code(b".text", &[0xC3]);
    for i in 0..n {
        b.add_template_symbol(TemplateSpec {
            kind: TemplateKind::Function,
            name: format!("T{i}").into_bytes(),
            params: vec![b"X".to_vec()],
            body: vec![0xAB; 8],
        });
    }
    b.build().unwrap()
}

#[test]
fn many_template_symbols_load_and_are_found_in_linear_time() {
    let exec = allocator();
    let build = |n: usize| (n, templates(n));
    assert_linear("template symbols", 1024, build, |(n, file)| {
        let module = load(exec, file);
        for i in 0..*n {
            let entry = module.template(format!("T{i}").as_bytes());
            assert!(entry.is_some_and(|e| e.ends_with(&[0xAB; 8])), "T{i}");
        }
    });
}

#[test]
fn many_template_symbols_parse_and_list_in_linear_time() {
    // The format layer's reader: `Module::template_entries` sorts the offsets once (a
    // per-symbol `template_of` scans the table, and is documented for one symbol).
    assert_linear("template entries", 1024, templates, |file| {
        let module = Module::parse(file).unwrap();
        let entries = module.template_entries().unwrap();
        assert!(entries.iter().all(|(_, e)| e.params().count() == 1));
    });
}

#[test]
fn a_big_note_loads_in_linear_time() {
    let exec = allocator();
    let build = |rows: usize| {
        // Within the reader's 1 MiB scan limit at 4N.
        let mut note =
            String::from("possible |id, template, type_args, mangled_name, required_by, can_defer|\n");
        for i in 0..rows {
            note.push_str(&format!(" {i}, \"List\", \"i{i}\", \"List$i{i}\", \"m\", true\n"));
        }
        let mut b = ModuleBuilder::new(Dialect::R96);
        b.add_code(b".text", &[0xC3]);
        b.add_symbol(SymbolSpec::function(b"main", 0, 1));
        b.note_sdn(&note);
        b.build().unwrap()
    };
    assert_linear("note rows", 4000, build, |file| {
        let parsed = Module::parse(file).unwrap();
        let rows: usize = parsed.note_sdn().map_or(0, |n| n.tables().map(|t| t.rows().count()).sum());
        assert!(rows >= 4000, "{rows} rows");
        load(exec, file);
    });
}

#[test]
fn a_function_of_many_values_live_at_once_compiles_in_linear_time() {
    // 5,000 and 20,000 values, all live at once: past the backtracking register allocator's
    // 4,096 (it took 0.1 s at 4,096 values and 9.3 s at 32,000, optimized), so the
    // single-pass allocator compiles both.
    use smf::exec_manager::{ExecManager, OptLevel};
    let manager = ExecManager::new(OptLevel::None).unwrap();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let build = |n: usize| n;
    assert_linear("CLIF values live at once", 2500, build, |&n| {
        let name = format!("wide{}", next.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let compiled = manager.compile_clif(&smf_tests::clif::all_live(&name, n)).unwrap();
        assert_eq!(compiled, [name]);
    });
}
