//! Loading and linking aarch64 code, run under qemu-aarch64 by `cargo xtask cross-test`: every
//! aarch64 relocation kind of R96 (branch26 to an import, ADRP page21 + LDR/ADD page-offset12
//! to local data, GOT page21 + GOT page-offset12 to an import's data) is applied by the loader
//! and the patched code runs; branches also run through their veneers; data relocations point
//! into the code; constructors and destructors run in their order; compressed code runs once
//! decompressed into its place (the instruction cache synchronized), and code, rodata and data
//! compressed with each method, in R96 and S128, run as their uncompressed twin. On other hosts this file compiles to nothing (the encodings are unit-tested
//! in `smf_runtime::load::reloc`).

#![cfg(target_arch = "aarch64")]
#![allow(unsafe_code)]

use std::sync::Arc;

use smf_format::write::samples::{aarch64_application as application, aarch64_library as library};
use smf_format::write::{ModuleBuilder, SymbolSpec};
use smf_format::{Dialect, Module, RelocKind, SectionFlags};
use smf_runtime::exec::ExecAllocator;
use smf_runtime::load::{LoadOptions, LoadedModule, Resolved, Resolver};

fn words(code: &[u32]) -> Vec<u8> {
    code.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn aarch64(b: &mut ModuleBuilder) {
    b.header(|h| h.arch = 1);
}

const RET: u32 = 0xD65F_03C0;

struct One(Arc<LoadedModule<'static>>);

impl Resolver for One {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        Some(Resolved { addr: self.0.symbol(name)?, keepalive: Some(self.0.clone()) })
    }
}

/// Calls the exported function `name` of `module` as `extern "C" fn() -> i64`.
fn call0(module: &LoadedModule<'_>, name: &[u8]) -> i64 {
    // SAFETY: every function called here is a test module's function returning an integer.
    let f = unsafe { module.function::<extern "C" fn() -> i64>(name) };
    f.expect("an exported function").get()()
}

#[test]
fn every_aarch64_relocation_kind_runs() {
    let exec: &'static ExecAllocator = Box::leak(Box::new(ExecAllocator::default()));
    let lib = Arc::new(LoadedModule::load(exec, &library(), &(), &LoadOptions::default()).unwrap());
    for force_stubs in [false, true] {
        let options = LoadOptions { force_stubs, ..LoadOptions::default() };
        let app = LoadedModule::load(exec, &application(), &One(lib.clone()), &options).unwrap();
        let f = |n: &[u8]| app.symbol(n).unwrap();
        assert_eq!(call0(&app, b"call_five"), 5, "branch26 (veneer: {force_stubs})");
        assert_eq!(call0(&app, b"load_local"), 11, "adrp + ldr lo12");
        assert_eq!(call0(&app, b"got_value"), 7, "GOT adrp + ldr");
        assert_eq!(usize::try_from(call0(&app, b"addr_local")).unwrap(), f(b"local"), "adrp + add lo12");
    }
}

/// Data relocations on aarch64: a writable table and a read-only one, each holding a pointer to
/// `five` (abs64) and the distance to it (pc32), relocated before sealing; calling through the
/// writable table's pointer runs the function.
#[test]
fn data_relocations_point_at_their_symbols() {
    let mut b = ModuleBuilder::new(Dialect::R96);
    aarch64(&mut b);
    b.add_code(b".text", &words(&[0xD280_00A0, RET])); // movz x0, #5; ret
    let five = b.add_symbol(SymbolSpec::function(b"five", 0, 8));
    let rw = b.add_data(b".data", &[0; 16]);
    let ro = b.add_rodata(b".rodata", &[0; 16]);
    b.add_symbol(SymbolSpec::data(b"table", rw, 0, 16));
    b.add_symbol(SymbolSpec::data(b"constants", ro, 0, 16));
    for section in [rw, ro] {
        b.add_data_relocation(section, 0, five, RelocKind::Abs64, 0);
        b.add_data_relocation(section, 8, five, RelocKind::Pc32, 0);
    }
    let file = b.build().unwrap();
    let exec = ExecAllocator::default();
    let module = LoadedModule::load(&exec, &file, &(), &LoadOptions::default()).unwrap();
    let at = |name: &[u8]| module.symbol(name).unwrap();
    for table in [at(b"table"), at(b"constants")] {
        // SAFETY: both tables are 16 readable bytes of the live module's data.
        let (pointer, distance) =
            unsafe { ((table as *const u64).read(), ((table + 8) as *const i32).read()) };
        assert_eq!(pointer, at(b"five") as u64);
        assert_eq!(i64::from(distance), at(b"five") as i64 - (table + 8) as i64);
    }
    // SAFETY: the table's first word, in the live module's data.
    let pointer = usize::try_from(unsafe { (at(b"table") as *const u64).read() }).unwrap();
    // SAFETY: `five`, a function returning an integer, starts there.
    let five = unsafe { module.function_at::<extern "C" fn() -> i64>(pointer) }.expect("inside the code");
    assert_eq!(five.get()(), 5);
}

thread_local! {
    /// What the call-array test's functions recorded on this thread, in order.
    static RECORDED: std::cell::RefCell<Vec<i64>> = const { std::cell::RefCell::new(Vec::new()) };
}

extern "C" fn record(value: i64) {
    RECORDED.with(|r| r.borrow_mut().push(value));
}

/// Constructors and destructors on aarch64: two of each, calling the host's `record` (branch26
/// to an import) with their own values; constructors run in order at load, destructors in
/// reverse at release.
#[test]
fn constructors_and_destructors_run_in_their_order() {
    let mut b = ModuleBuilder::new(Dialect::R96);
    aarch64(&mut b);
    // movz x0, #1 / #2; movn x0, #0 / #1 (-1 / -2); each followed by b record.
    let values = [0xD280_0020, 0xD280_0040, 0x9280_0000, 0x9280_0020];
    let code: Vec<u32> = values.iter().flat_map(|&v| [v, 0x1400_0000]).collect();
    b.add_code(b".text", &words(&code));
    let record_import = b.add_symbol(SymbolSpec::import(b"record"));
    let functions: Vec<u32> =
        (0..4u64).map(|i| b.add_symbol(SymbolSpec::function(format!("f{i}").as_bytes(), i * 8, 8))).collect();
    for i in 0..4u64 {
        b.add_relocation(i * 8 + 4, record_import, RelocKind::Aarch64Branch26, 0);
    }
    b.add_call_array(smf_format::CallArray::Constructors, &[(functions[0], 0), (functions[1], 0)]);
    b.add_call_array(smf_format::CallArray::Destructors, &[(functions[2], 0), (functions[3], 0)]);
    let file = b.build().unwrap();
    let exec = ExecAllocator::default();
    let table = [(&b"record"[..], record as extern "C" fn(i64) as usize)];
    let resolver = smf_runtime::load::TableResolver(&table);
    let module = LoadedModule::load(&exec, &file, &resolver, &LoadOptions::default()).unwrap();
    assert_eq!(RECORDED.with(|r| r.take()), [1, 2]);
    drop(module);
    assert_eq!(RECORDED.with(|r| r.take()), [-2, -1]);
}

/// An aarch64 module of `dialect` whose code, rodata and data are compressed with `method` (or
/// plain): the data's first word points into the rodata (a data relocation, applied to the
/// decompressed data); `seven` lies at the end of a page of `brk`. In R96, which has the
/// aarch64 relocation kinds, `load_ro` reads the rodata (ADRP + LDR) and `load_through_data`
/// follows the data's pointer.
fn every_kind(dialect: Dialect, method: Option<smf_format::compress::Method>) -> Vec<u8> {
    let mut b = ModuleBuilder::new(dialect);
    aarch64(&mut b);
    let mut code = vec![0xD420_0000; 1024]; // brk #0
                                            // 0: load_ro: adrp x0, ro; ldr x0, [x0, #:lo12:ro]; ret
    code[..3].copy_from_slice(&[0x9000_0000, 0xF940_0000, RET]);
    // 16: load_through_data: adrp x0, rw; ldr x0, [x0, #:lo12:rw]; ldr x0, [x0]; ret
    code[4..8].copy_from_slice(&[0x9000_0000, 0xF940_0000, 0xF940_0000, RET]);
    code[1022..].copy_from_slice(&[0xD280_00E0, RET]); // movz x0, #7; ret
    b.add_code(b".text", &words(&code));
    let mut rodata: Vec<u8> = b"compressed rodata, ".iter().copied().cycle().take(2048).collect();
    rodata[..16].copy_from_slice(&[42u64.to_le_bytes(), 99u64.to_le_bytes()].concat());
    let ro = b.add_section(smf_format::write::SectionSpec::new(
        smf_format::SectionType::RoData,
        b".rodata",
        SectionFlags::READ,
        rodata,
        8,
    ));
    let rw = b.add_data(b".data", &[0; 1024]);
    let ro_symbol = b.add_symbol(SymbolSpec::data(b"ro", ro, 0, 16));
    let rw_symbol = b.add_symbol(SymbolSpec::data(b"rw", rw, 0, 8));
    b.add_symbol(SymbolSpec::function(b"seven", 4088, 8));
    b.add_data_relocation(rw, 0, ro_symbol, RelocKind::Abs64, 8);
    if dialect == Dialect::R96 {
        b.add_symbol(SymbolSpec::function(b"load_ro", 0, 12));
        b.add_symbol(SymbolSpec::function(b"load_through_data", 16, 16));
        b.add_relocation(0, ro_symbol, RelocKind::Aarch64Page21, 0);
        b.add_relocation(4, ro_symbol, RelocKind::Aarch64PageOffset12, 0);
        b.add_relocation(16, rw_symbol, RelocKind::Aarch64Page21, 0);
        b.add_relocation(20, rw_symbol, RelocKind::Aarch64PageOffset12, 0);
    }
    if let Some(method) = method {
        b.compress(method);
    }
    b.build().unwrap()
}

/// What `every_kind`'s module does once loaded: `seven` (and in R96 `load_ro`,
/// `load_through_data`), the rodata's first two words, and whether the data points at the
/// second.
fn every_kind_runs(file: &[u8]) -> (Vec<i64>, [u64; 2], bool) {
    let exec = ExecAllocator::default();
    let module = LoadedModule::load(&exec, file, &(), &LoadOptions::default()).unwrap();
    let names: &[&[u8]] = &[b"seven", b"load_ro", b"load_through_data"];
    let calls = names.iter().filter(|name| module.symbol(name).is_some()).map(|name| call0(&module, name));
    let (ro, rw) = (module.symbol(b"ro").unwrap(), module.symbol(b"rw").unwrap());
    // SAFETY: both are the module's data symbols, 16 and 8 bytes, 8-aligned, alive with it.
    let (words, pointer) =
        unsafe { ([*(ro as *const u64), *((ro + 8) as *const u64)], *(rw as *const usize)) };
    (calls.collect(), words, pointer == ro + 8)
}

#[test]
fn code_rodata_and_data_compressed_with_each_method_run_as_their_plain_twin() {
    for dialect in [Dialect::R96, Dialect::S128] {
        let plain = every_kind_runs(&every_kind(dialect, None));
        let calls: &[i64] = if dialect == Dialect::R96 { &[7, 42, 99] } else { &[7] };
        assert_eq!(plain, (calls.to_vec(), [42, 99], true), "{dialect}");
        for method in [smf_format::compress::Method::Lz4, smf_format::compress::Method::Zstd] {
            let file = every_kind(dialect, Some(method));
            let parsed = Module::parse(&file).unwrap();
            let compressed: Vec<_> = parsed
                .sections()
                .filter(|s| s.flags.contains(SectionFlags::COMPRESSED))
                .map(|s| s.section_type)
                .collect();
            let kinds = [
                smf_format::SectionType::Code,
                smf_format::SectionType::RoData,
                smf_format::SectionType::Data,
            ];
            assert_eq!(compressed, kinds, "{dialect} {method:?}");
            assert_eq!(every_kind_runs(&file), plain, "{dialect} {method:?}");
        }
    }
}
