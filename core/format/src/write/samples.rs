//! Sample modules built with [`ModuleBuilder`]: the spec's reference "return 42" files, a module
//! using every feature of a dialect, and large modules for benchmarks. Tests, fuzz seeds,
//! fixtures and benchmarks all build their modules here.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::{ModuleBuilder, SymbolSpec, TemplateSpec};
use crate::kinds::{Binding, RelocKind, SectionFlags};
use crate::template::{MetaCategory, TemplateKind};
use crate::Dialect;

/// `mov eax, 42; ret`.
pub const RETURN_42: [u8; 6] = [0xB8, 0x2A, 0x00, 0x00, 0x00, 0xC3];

/// The smallest real module: a program returning 42, byte for byte as the writers emit it
/// (R96 219 bytes, R72 179 bytes, S128 259 bytes).
///
/// R96/R72: code section `.text` (alignment 8, so the code lands at 152 / 128), symbol `main`
/// of type function with value 0 and size 0. S128: code section `code` at offset 0, `main`
/// with size 6 (the S128 writer requires a size).
pub fn return_42(dialect: Dialect) -> Vec<u8> {
    let mut b = ModuleBuilder::new(dialect);
    match dialect {
        Dialect::S128 => {
            b.add_code(b"code", &RETURN_42);
            b.add_symbol(SymbolSpec::function(b"main", 0, RETURN_42.len() as u64));
        }
        Dialect::R96 | Dialect::R72 => {
            b.add_code_aligned(b".text", &RETURN_42, 8);
            b.add_symbol(SymbolSpec::function(b"main", 0, 0));
        }
    }
    b.entry_point(0);
    b.build().unwrap_or_default()
}

/// A module whose data holds pointers, relocated by data relocations (`docs/format.md`, "Data
/// relocations"), as C's `const char *greeting = "hello";` and a table of functions compile:
///
/// - `main` (code offset 0): `mov eax, 42; ret`.
/// - `.rodata` (section 1): `hello\0`, then at 8 a pointer to `main` (abs64) and at 16 the
///   distance from there to `main` (pc32, a jump table's entry), as the symbol `table`.
/// - `.data` (section 2): at 0 a pointer to `hello` and at 8 one to `ello` (abs64 against
///   `text` with addends 0 and 1), as the symbol `greeting`.
///
/// R72 symbols cannot address data (no defining-section field): its module has the relocations
/// but only the symbol `main`, against which every one of them is written.
pub fn data_pointers(dialect: Dialect) -> Vec<u8> {
    let mut b = ModuleBuilder::new(dialect);
    b.add_code(b".text", &RETURN_42);
    let mut rodata = b"hello\0".to_vec();
    rodata.resize(20, 0);
    let ro = b.add_section(super::SectionSpec::new(
        crate::SectionType::RoData,
        b".rodata",
        SectionFlags::READ,
        rodata,
        8,
    ));
    let rw = b.add_section(super::SectionSpec::new(
        crate::SectionType::Data,
        b".data",
        SectionFlags::READ | SectionFlags::WRITE,
        alloc::vec![0; 16],
        8,
    ));
    let main = b.add_symbol(SymbolSpec::function(b"main", 0, RETURN_42.len() as u64));
    b.entry_point(0);
    let text = match dialect {
        Dialect::R72 => main,
        Dialect::S128 | Dialect::R96 => {
            let text = b.add_symbol(SymbolSpec::data(b"text", ro, 0, 6));
            b.add_symbol(SymbolSpec::data(b"table", ro, 8, 12));
            b.add_symbol(SymbolSpec::data(b"greeting", rw, 0, 16));
            text
        }
    };
    b.add_data_relocation(ro, 8, main, RelocKind::Abs64, 0);
    b.add_data_relocation(ro, 16, main, RelocKind::Pc32, 0);
    b.add_data_relocation(rw, 0, text, RelocKind::Abs64, 0);
    b.add_data_relocation(rw, 8, text, RelocKind::Abs64, 1);
    b.build().unwrap_or_default()
}

/// [`data_pointers`] with its code padded to two pages (`main` at 0, `seven` at 4096 returning
/// 7, int3 between), its rodata and data grown with repeated text, compressed with LZ4
/// (`docs/format.md`, "Compression"): every compressible kind of section compressed, with
/// data relocations into decompressed data. S128 and R96 only (R72 has no compression byte:
/// an empty vector).
pub fn compressed(dialect: Dialect) -> Vec<u8> {
    let mut b = ModuleBuilder::new(dialect);
    let mut code = alloc::vec![0xCC; 4096 + RETURN_42.len()];
    code[..RETURN_42.len()].copy_from_slice(&RETURN_42);
    code[4096..].copy_from_slice(&[0xB8, 7, 0, 0, 0, 0xC3]);
    b.add_code(b".text", &code);
    let text: Vec<u8> = b"hello\0compressed world, ".iter().copied().cycle().take(2048).collect();
    let ro = b.add_section(super::SectionSpec::new(
        crate::SectionType::RoData,
        b".rodata",
        SectionFlags::READ,
        text,
        8,
    ));
    let rw = b.add_section(super::SectionSpec::new(
        crate::SectionType::Data,
        b".data",
        SectionFlags::READ | SectionFlags::WRITE,
        alloc::vec![0; 1024],
        8,
    ));
    let main = b.add_symbol(SymbolSpec::function(b"main", 0, RETURN_42.len() as u64));
    b.add_symbol(SymbolSpec::function(b"seven", 4096, 6));
    let text = b.add_symbol(SymbolSpec::data(b"text", ro, 0, 6));
    b.add_symbol(SymbolSpec::data(b"greeting", rw, 0, 16));
    b.entry_point(0);
    b.add_data_relocation(ro, 8, main, RelocKind::Abs64, 0);
    b.add_data_relocation(rw, 0, text, RelocKind::Abs64, 0);
    b.compress(crate::compress::Method::Lz4);
    b.build().unwrap_or_default()
}

/// x86-64 code calling `record(value)`: `mov rdi, value; jmp record` (the jump's displacement,
/// at offset 8, relocated plt32), 16 bytes with padding.
fn record_call(value: i8) -> [u8; 16] {
    let mut code = [0xCC; 16];
    code[..12].copy_from_slice(&[0x48, 0xC7, 0xC7, value as u8, 0, 0, 0, 0xE9, 0, 0, 0, 0]);
    if value < 0 {
        code[4..7].fill(0xFF);
    }
    code
}

/// A module (x86-64, any dialect) with two constructors and two destructors
/// (`docs/format.md`, "Constructors and destructors"), each calling the import `record` with
/// its own value: constructors 1 then 2, destructors -1 and -2 (array order; they run in
/// reverse, so -2 first). Each is also exported, by the names `construct1`, `construct2`,
/// `destruct1`, `destruct2`.
pub fn call_arrays(dialect: Dialect) -> Vec<u8> {
    let mut b = ModuleBuilder::new(dialect);
    let values = [1, 2, -1, -2];
    let code: Vec<u8> = values.iter().flat_map(|&v| record_call(v)).collect();
    b.add_code(b".text", &code);
    let record = b.add_symbol(SymbolSpec::import(b"record"));
    let names: [&[u8]; 4] = [b"construct1", b"construct2", b"destruct1", b"destruct2"];
    let functions: Vec<u32> = names
        .iter()
        .enumerate()
        .map(|(i, name)| b.add_symbol(SymbolSpec::function(name, i as u64 * 16, 12)))
        .collect();
    for i in 0..functions.len() as u64 {
        b.add_relocation(i * 16 + 8, record, RelocKind::Plt32, -4);
    }
    b.add_call_array(crate::CallArray::Constructors, &[(functions[0], 0), (functions[1], 0)]);
    b.add_call_array(crate::CallArray::Destructors, &[(functions[2], 0), (functions[3], 0)]);
    b.build().unwrap_or_default()
}

/// Where the FDE's initial location lies in [`eh_frame`]'s table.
pub const EH_FRAME_LOCATION: u64 = 32;

/// An unwind table (`docs/format.md`, "Unwind tables") as gcc writes one for one function of
/// `function_len` bytes: a CIE (augmentation `zR`, FDE pointers pc-relative 4-byte), an FDE
/// whose initial location (at [`EH_FRAME_LOCATION`]) a pc32 data relocation sets, the
/// terminator.
pub fn eh_frame(function_len: u32) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&20u32.to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    t.extend_from_slice(&[1, b'z', b'R', 0, 1, 0x78, 16, 1, 0x1b, 0x0c, 7, 8, 0x90, 1, 0, 0]);
    t.extend_from_slice(&20u32.to_le_bytes());
    t.extend_from_slice(&28u32.to_le_bytes()); // back to the CIE at 0
    t.extend_from_slice(&[0; 4]); // the initial location: relocated
    t.extend_from_slice(&function_len.to_le_bytes());
    t.extend_from_slice(&[0; 8]);
    t.extend_from_slice(&[0; 4]);
    t
}

/// A module with a function `f` (16 bytes of `ret`) and an unwind table describing it
/// ([`eh_frame`]). S128 and R96 (R72 has no data sections: empty).
pub fn unwind_table(dialect: Dialect) -> Vec<u8> {
    let mut b = ModuleBuilder::new(dialect);
    b.add_code(b".text", &[0xC3; 16]);
    let f = b.add_symbol(SymbolSpec::function(b"f", 0, 16));
    let flags = crate::SectionFlags::READ | crate::SectionFlags::UNWIND;
    let table = b.add_section(super::SectionSpec::new(
        crate::SectionType::RoData,
        b".eh_frame",
        flags,
        eh_frame(16),
        8,
    ));
    b.add_data_relocation(table, EH_FRAME_LOCATION, f, RelocKind::Pc32, 0);
    b.build().unwrap_or_default()
}

/// The note.sdn text of the spec's example: every table, quoted and bare fields.
pub const NOTE_SDN_EXAMPLE: &str = r#"# comment lines start with '#'
instantiations |id, template, type_args, mangled_name, from_file, from_loc, to_obj, status|
    0, "List", "Int", "List$Int", "app.spl", "app.spl:10:5", "app.o", "compiled"
possible |id, template, type_args, mangled_name, required_by, can_defer|
    0, "List", "Float", "List$Float", "math_module", true
type_inferences |id, inferred_type, expr, context, from_file, from_loc|
dependencies |from_inst, to_inst, dep_kind|
    "List$Int", "Int", "type_param"
circular_warnings |id, cycle_path, severity|
circular_errors |id, cycle_path, error_code|"#;

/// Code of [`rich`]: three functions and room for every relocation kind.
///
/// `f0` (offset 0) is `mov eax, 42; ret`; `f1` (offset 16) is `lea rax, [rip+0]; ret` whose
/// displacement a pc32 relocation patches; the rest is padding patched by the other relocations.
fn rich_code() -> Vec<u8> {
    let mut code = Vec::new();
    code.extend_from_slice(&RETURN_42);
    code.resize(16, 0xCC);
    code.extend_from_slice(&[0x48, 0x8D, 0x05, 0, 0, 0, 0, 0xC3]);
    code.resize(64, 0xCC);
    code
}

/// A module using every feature the dialect can express: two code sections, data, rodata and
/// bss with data symbols, local, weak and imported symbols, every relocation kind of the
/// dialect, note.sdn with every table, full-form templates with template symbols, template meta.
pub fn rich(dialect: Dialect) -> Vec<u8> {
    let mut b = ModuleBuilder::new(dialect);
    b.add_code(b".text", &rich_code());
    b.add_code(b".text.cold", &[0x31, 0xC0, 0xC3, 0x90]);
    let data = b.add_data(b".data", &7u64.to_le_bytes());
    let rodata = b.add_rodata(b".rodata", b"hello\0");
    let bss = b.add_bss(b".bss", 64);

    let f0 = b.add_symbol(SymbolSpec::function(b"answer", 0, 6));
    b.add_symbol(SymbolSpec::function(b"address_of_greeting", 16, 8));
    b.add_symbol(SymbolSpec::function(b"helper", 64, 4).with_binding(Binding::Local));
    b.add_symbol(SymbolSpec::function(b"maybe", 64, 4).with_binding(Binding::Weak));
    b.add_symbol(SymbolSpec::data(b"counter", data, 0, 8));
    let greeting = b.add_symbol(SymbolSpec::data(b"greeting", rodata, 0, 6));
    b.add_symbol(SymbolSpec::data(b"scratch", bss, 0, 64));
    let import = b.add_symbol(SymbolSpec::import(b"external_fn"));
    b.add_symbol(SymbolSpec::function("naïve \"quoted\"\n".as_bytes(), 0, 1));

    b.add_relocation(19, greeting, RelocKind::Pc32, -4);
    b.add_relocation(24, f0, RelocKind::Abs64, 0);
    b.add_relocation(32, import, RelocKind::Plt32, -4);
    b.add_relocation(36, import, RelocKind::GotPc32, -4);
    match dialect {
        Dialect::S128 => {
            b.add_relocation(40, f0, RelocKind::Abs32, 0);
        }
        Dialect::R96 | Dialect::R72 => {
            b.add_relocation(40, f0, RelocKind::Aarch64Branch26, 0);
            b.add_relocation(44, greeting, RelocKind::Aarch64Page21, 0);
            b.add_relocation(48, greeting, RelocKind::Aarch64PageOffset12, 0);
            b.add_relocation(52, import, RelocKind::Aarch64GotPage21, 0);
            b.add_relocation(56, import, RelocKind::Aarch64GotPageOffset12, 0);
            b.add_relocation(60, 0, RelocKind::None, 0);
        }
    }

    b.note_sdn(NOTE_SDN_EXAMPLE);
    b.add_template_symbol(TemplateSpec {
        kind: TemplateKind::Struct,
        name: b"List".to_vec(),
        params: alloc::vec![b"T".to_vec()],
        body: b"\x01\x00\x00\x00\x05\x00\x00\x00items".to_vec(),
    });
    b.add_template_symbol(TemplateSpec {
        kind: TemplateKind::Function,
        name: b"map".to_vec(),
        params: alloc::vec![b"T".to_vec(), b"U".to_vec()],
        body: Vec::new(),
    });
    b.add_template_meta(MetaCategory::Functions, b"map", 0);
    b.add_template_meta(MetaCategory::Structs, b"List", 2);
    b.entry_point(0);
    b.build().unwrap_or_default()
}

/// The note.sdn of [`generics`]: what load-time instantiation may make of its templates.
pub const GENERICS_NOTE: &str = r#"# generics.smf: instantiations the program may ask for at run time
instantiations |id, template, type_args, mangled_name, from_file, from_loc, to_obj, status|
possible |id, template, type_args, mangled_name, required_by, can_defer|
    0, "square", "i64", "square$i64", "main", true
    1, "identity", "i64", "identity$i64", "main", true
    2, "square", "f64", "square$f64", "main", true"#;

/// The load-time instantiation example (`examples/generics.smf`, S128, x86-64): `twice`
/// (`lea rax, [rdi+rdi]; ret`), the function templates `square` and `identity` of one type
/// parameter `T`, and [`GENERICS_NOTE`].
pub fn generics() -> Vec<u8> {
    let mut b = ModuleBuilder::new(Dialect::S128);
    b.add_code(b"code", &[0x48, 0x8D, 0x04, 0x3F, 0xC3]);
    b.add_symbol(SymbolSpec::function(b"twice", 0, 5));
    b.note_sdn(GENERICS_NOTE);
    for (name, body) in
        [(&b"square"[..], &b"fn square(x: T) -> T: x * x"[..]), (b"identity", b"fn identity(x: T) -> T: x")]
    {
        b.add_template_symbol(TemplateSpec {
            kind: TemplateKind::Function,
            name: name.to_vec(),
            params: alloc::vec![b"T".to_vec()],
            body: body.to_vec(),
        });
    }
    b.build().unwrap_or_default()
}

/// A module with `symbols` functions of 16 bytes each and `relocations` pc32 relocations spread
/// over the code, each naming one of the symbols: the shape of the parsing benchmark.
pub fn large(dialect: Dialect, symbols: u32, relocations: u32) -> Vec<u8> {
    let mut b = ModuleBuilder::new(dialect);
    let code_len = u64::from(symbols.max(1)) * 16;
    let code: Vec<u8> = (0..code_len).map(|i| if i % 16 == 15 { 0xC3 } else { 0x90 }).collect();
    b.add_code(b".text", &code);
    let mut name = String::new();
    for i in 0..symbols {
        name.clear();
        name.push_str(&format!("module::function_{i:06}"));
        b.add_symbol(SymbolSpec::function(name.as_bytes(), u64::from(i) * 16, 16));
    }
    let slots = code_len / 4;
    for i in 0..u64::from(relocations) {
        let offset = (i % slots) * 4;
        let symbol = u32::try_from(i % u64::from(symbols.max(1))).unwrap_or(0);
        b.add_relocation(offset, symbol, RelocKind::Pc32, -4);
    }
    b.build().unwrap_or_default()
}

/// aarch64 `ret`.
const RET: u32 = 0xD65F_03C0;

/// Little-endian bytes of aarch64 instruction words.
fn words(code: &[u32]) -> Vec<u8> {
    code.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// An aarch64 R96 library: `five` returns 5; `value` is data holding 7 (what
/// [`aarch64_application`] imports).
pub fn aarch64_library() -> Vec<u8> {
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.header(|h| h.arch = 1);
    b.add_code(b".text", &words(&[0xD280_00A0, 0xD65F_03C0])); // movz x0, #5; ret
    b.add_symbol(SymbolSpec::function(b"five", 0, 8));
    let data = b.add_data(b".data", &7u64.to_le_bytes());
    b.add_symbol(SymbolSpec::data(b"value", data, 0, 8));
    b.build().unwrap_or_default()
}

/// An aarch64 R96 module using every aarch64 relocation kind: `call_five` branches to the
/// import `five` (branch26), `load_local` and `addr_local` reach local data (ADRP page21 with
/// an LDR or ADD page-offset12), `got_value` loads the import `value` through the GOT (GOT
/// page21 and page-offset12).
pub fn aarch64_application() -> Vec<u8> {
    let mut b = ModuleBuilder::new(Dialect::R96);
    b.header(|h| h.arch = 1);
    let code = [
        // 0: call_five: stp x29, x30, [sp, #-16]!; mov x29, sp; bl five; ldp x29, x30, [sp], #16; ret
        0xA9BF_7BFD,
        0x9100_03FD,
        0x9400_0000,
        0xA8C1_7BFD,
        RET,
        RET,
        RET,
        RET,
        // 32: load_local: adrp x0, local; ldr x0, [x0, #:lo12:local]; ret
        0x9000_0000,
        0xF940_0000,
        RET,
        RET,
        // 48: got_value: adrp x0, :got:value; ldr x0, [x0, #:got_lo12:value]; ldr x0, [x0]; ret
        0x9000_0000,
        0xF940_0000,
        0xF940_0000,
        RET,
        // 64: addr_local: adrp x0, local; add x0, x0, #:lo12:local; ret
        0x9000_0000,
        0x9100_0000,
        RET,
        RET,
    ];
    b.add_code(b".text", &words(&code));
    let data = b.add_data(b".data", &11u64.to_le_bytes());
    let local = b.add_symbol(SymbolSpec::data(b"local", data, 0, 8));
    b.add_symbol(SymbolSpec::function(b"call_five", 0, 20));
    b.add_symbol(SymbolSpec::function(b"load_local", 32, 12));
    b.add_symbol(SymbolSpec::function(b"got_value", 48, 16));
    b.add_symbol(SymbolSpec::function(b"addr_local", 64, 12));
    let five = b.add_symbol(SymbolSpec::import(b"five"));
    let value = b.add_symbol(SymbolSpec::import(b"value"));
    b.add_relocation(8, five, RelocKind::Aarch64Branch26, 0);
    b.add_relocation(32, local, RelocKind::Aarch64Page21, 0);
    b.add_relocation(36, local, RelocKind::Aarch64PageOffset12, 0);
    b.add_relocation(48, value, RelocKind::Aarch64GotPage21, 0);
    b.add_relocation(52, value, RelocKind::Aarch64GotPageOffset12, 0);
    b.add_relocation(64, local, RelocKind::Aarch64Page21, 0);
    b.add_relocation(68, local, RelocKind::Aarch64PageOffset12, 0);
    b.build().unwrap_or_default()
}
