//! A batch of compiled functions as one SMF module, for the loader to place, link and seal like
//! any other: one code section (each function at its alignment), a global function symbol per
//! function, an import per name called outside the batch, and each of Cranelift's relocations
//! as the SMF relocation that computes the same value. R96, the dialect with both x86-64's and
//! aarch64's kinds.

use std::collections::HashMap;

use cranelift_codegen::binemit::Reloc;
use smf_format::write::{ModuleBuilder, SectionSpec, SymbolSpec};
use smf_format::{Dialect, RelocKind, SectionFlags, SectionType};

use super::compile::{Compiled, Target};
use super::ExecManagerError;

/// The SMF relocation computing what Cranelift's `kind` asks for.
fn smf_kind(kind: Reloc) -> Option<RelocKind> {
    Some(match kind {
        Reloc::Abs8 => RelocKind::Abs64,
        Reloc::X86PCRel4 => RelocKind::Pc32,
        Reloc::X86CallPCRel4 | Reloc::X86CallPLTRel4 => RelocKind::Plt32,
        Reloc::X86GOTPCRel4 => RelocKind::GotPc32,
        Reloc::Arm64Call => RelocKind::Aarch64Branch26,
        Reloc::Aarch64AdrPrelPgHi21 => RelocKind::Aarch64Page21,
        Reloc::Aarch64AddAbsLo12Nc => RelocKind::Aarch64PageOffset12,
        Reloc::Aarch64AdrGotPage21 => RelocKind::Aarch64GotPage21,
        Reloc::Aarch64Ld64GotLo12Nc => RelocKind::Aarch64GotPageOffset12,
        _ => return None,
    })
}

/// The module holding `batch`, whose functions are named `names` (in order); `index` gives
/// each name's place in both.
pub(super) fn module_of(
    names: &[String],
    batch: &[Compiled],
    index: &HashMap<&str, usize>,
) -> Result<Vec<u8>, ExecManagerError> {
    let mut b = ModuleBuilder::new(Dialect::R96);
    if cfg!(target_arch = "aarch64") {
        b.header(|h| h.arch = 1);
    }
    // The functions back to back, each at its alignment (the padding is part of the section:
    // SMF code sections are concatenated without any).
    let mut code = Vec::new();
    let mut offsets = Vec::with_capacity(batch.len());
    for function in batch {
        let alignment = usize::try_from(function.alignment.max(16)).unwrap_or(16);
        code.resize(code.len().div_ceil(alignment) * alignment, 0);
        offsets.push(code.len() as u64);
        code.extend_from_slice(&function.code);
    }
    let exec = SectionFlags::READ | SectionFlags::EXEC;
    let align = batch.iter().map(|f| f.alignment.max(16)).max().unwrap_or(16);
    b.add_section(SectionSpec::new(SectionType::Code, b".text", exec, code, align));
    let defined: Vec<u32> = names
        .iter()
        .zip(batch.iter().zip(&offsets))
        .map(|(name, (function, &offset))| {
            b.add_symbol(SymbolSpec::function(name.as_bytes(), offset, function.code.len() as u64))
        })
        .collect();
    // Names called outside the batch, each imported once.
    let mut imports: HashMap<&str, u32> = HashMap::new();
    for ((function, &offset), (name, &symbol)) in batch.iter().zip(&offsets).zip(names.iter().zip(&defined)) {
        for relocation in &function.relocations {
            let cannot = |what: String| ExecManagerError::Link { function: name.clone(), what };
            let kind = smf_kind(relocation.kind)
                .ok_or_else(|| cannot(format!("a {:?} relocation (no SMF equivalent)", relocation.kind)))?;
            let (target, addend) = match &relocation.target {
                Target::Name(target) => {
                    let symbol = match index.get(target.as_str()) {
                        Some(&i) => defined[i],
                        None => *imports
                            .entry(target.as_str())
                            .or_insert_with(|| b.add_symbol(SymbolSpec::import(target.as_bytes()))),
                    };
                    (symbol, relocation.addend)
                }
                Target::Own(at) => (symbol, relocation.addend + i64::from(*at)),
                Target::Unlinkable(what) => return Err(cannot(format!("a call to {what}"))),
            };
            b.add_relocation(offset + u64::from(relocation.offset), target, kind, addend);
        }
    }
    b.build()
        .map_err(|e| ExecManagerError::Link { function: names.join(", "), what: format!("the batch: {e}") })
}
