//! Cranelift functions to machine code for the host: CLIF text parsed, every function's calling
//! convention (and its callees' signatures) made the platform's C convention (the CLIF reader
//! defaults to `fast`, which nothing outside Cranelift may call), then verified and compiled at
//! the manager's opt level. Every refusal names its function; a panic inside Cranelift (which
//! hostile functions can reach past its verifier) is a refusal too.

use std::any::Any;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::entity::EntitySet;
use cranelift_codegen::ir::{
    AbiParam, ExternalName, Function, InstructionData, LibCall, Signature, UserExternalName, UserFuncName,
};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::timing::{self, Pass, Profiler};
use cranelift_codegen::{CodegenError, Context, FinalizedRelocTarget};

use super::ExecManagerError;

/// How hard Cranelift optimizes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum OptLevel {
    /// No optimizations: fastest to compile.
    #[default]
    None,
    /// For speed.
    Speed,
    /// For speed and size.
    SpeedAndSize,
}

impl OptLevel {
    fn setting(self) -> &'static str {
        match self {
            OptLevel::None => "none",
            OptLevel::Speed => "speed",
            OptLevel::SpeedAndSize => "speed_and_size",
        }
    }
}

/// User external names (`u0:1`) and the names they stand for, for functions built by a
/// translator rather than parsed from CLIF (where `%name` names a function).
pub type NameTable = HashMap<UserExternalName, String>;

/// The register allocator a function is compiled with (Cranelift's `regalloc_algorithm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Allocator {
    /// Backtracking with range splitting: better code, at a cost that grows with the square
    /// of the values live at once.
    Backtracking,
    /// One pass: more spills and moves, at a cost linear in straight-line code.
    SinglePass,
}

impl Allocator {
    fn setting(self) -> &'static str {
        match self {
            Allocator::Backtracking => "backtracking",
            Allocator::SinglePass => "single_pass",
        }
    }
}

/// The host's instruction set at `opt` with `allocator`, frame pointers kept (debuggers,
/// profilers and crash reports walk compiled frames as they walk the loader's), Cranelift's
/// own verifier off: [`compile`] verifies each function once, as it comes in.
pub(super) fn host_isa(opt: OptLevel, allocator: Allocator) -> Result<OwnedTargetIsa, ExecManagerError> {
    let mut flags = settings::builder();
    let set = |flags: &mut settings::Builder, name: &str, value: &str| {
        flags.set(name, value).map_err(|e| ExecManagerError::Host(format!("{name}={value}: {e}")))
    };
    set(&mut flags, "opt_level", opt.setting())?;
    set(&mut flags, "preserve_frame_pointers", "true")?;
    set(&mut flags, "enable_verifier", "false")?;
    set(&mut flags, "regalloc_algorithm", allocator.setting())?;
    let builder = cranelift_native::builder().map_err(|e| ExecManagerError::Host(e.to_owned()))?;
    builder.finish(settings::Flags::new(flags)).map_err(|e| ExecManagerError::Host(e.to_string()))
}

/// The most values (block parameters and results) a function compiled with the backtracking
/// allocator has; larger ones get the single-pass one. Measured (the tests' `smf_tests::clif`
/// has the shapes): 4,096 values all live at once take 0.10 s to allocate by backtracking,
/// 32,000 take 9.3 s (0.09 s in one pass).
pub(super) const BACKTRACKING_MOST_VALUES: u64 = 4096;

/// The largest blocks × values a function may have ([`Size`]: a branch's edges count as
/// blocks): liveness costs their product under either allocator. Near the bound, measured: a
/// `br_table` of 32,000 entries with 2,001 values live across it, 1.5 s (backtracking); 4,730
/// blocks each using one of 14,191 values live across them all, 0.33 s in one pass at twice
/// the bound. Real functions stay under: 4,096 blocks and edges with 16,384 values fit.
pub(super) const MOST_BLOCKS_TIMES_VALUES: u64 = 1 << 26;

/// A function's size as allocating its registers costs it: the blocks of its layout and its
/// branches' edges (lowering gives an edge a block of its own where it must: a `br_table` of
/// 128,000 entries with 2,000 values live across it took 12.5 s), and the values its blocks
/// define.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Size {
    pub(super) blocks: u64,
    pub(super) values: u64,
}

impl Size {
    /// `function`'s (what its layout holds: numbers the text skipped are not counted).
    pub(super) fn of(function: &Function) -> Size {
        let (mut blocks, mut values) = (0u64, 0u64);
        let dfg = &function.dfg;
        for block in function.layout.blocks() {
            blocks += 1;
            values += dfg.block_params(block).len() as u64;
            for inst in function.layout.block_insts(block) {
                values += dfg.inst_results(inst).len() as u64;
                blocks +=
                    dfg.insts[inst].branch_destination(&dfg.jump_tables, &dfg.exception_tables).len() as u64;
            }
        }
        Size { blocks, values }
    }

    /// The allocator for a function of this size, or why it is refused (too large for either
    /// to allocate in bounded time).
    pub(super) fn allocator(self, function: &str) -> Result<Allocator, ExecManagerError> {
        if self.blocks.saturating_mul(self.values) > MOST_BLOCKS_TIMES_VALUES {
            return Err(ExecManagerError::TooLarge {
                function: function.to_owned(),
                blocks: self.blocks,
                values: self.values,
            });
        }
        Ok(if self.values <= BACKTRACKING_MOST_VALUES {
            Allocator::Backtracking
        } else {
            Allocator::SinglePass
        })
    }
}

/// How many entities (`v7`, `block3`, `fn0`, `ss2`...) CLIF text of `len` bytes may number:
/// the sum over its functions of the largest number each uses. The reader sizes a function's
/// tables by the largest number it meets, so one number alone (`v1111111111`) would make it
/// allocate gigabytes for a few bytes of text; 65,536 (a few MB of tables) are allowed whatever
/// the length, for the sparse numbering Cranelift's own printed functions have.
fn most_entities(len: usize) -> u64 {
    (len as u64).saturating_mul(4).max(1 << 16)
}

/// `line` without its comment: from the first `;` outside a `"string"` on.
fn without_comment(line: &str) -> &str {
    let mut in_string = false;
    for (i, b) in line.bytes().enumerate() {
        match b {
            b'"' => in_string = !in_string,
            b';' if !in_string => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Refuses CLIF text whose functions' largest entity numbers add up past [`most_entities`],
/// naming the entity and its line (comments are not read; strings are).
fn check_entity_numbers(text: &str) -> Result<(), ExecManagerError> {
    let limit = most_entities(text.len());
    // The largest numbers of the functions before this one, added up, and this one's.
    let (mut before, mut largest) = (0u64, 0u64);
    for (n, line) in text.lines().enumerate() {
        let line = without_comment(line);
        if line.trim_start().starts_with("function") {
            before = before.saturating_add(largest);
            largest = 0;
        }
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let starts_word =
                i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || b"_%.".contains(&bytes[i - 1]));
            if !(bytes[i].is_ascii_alphabetic() && starts_word) {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            let digits = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let ends_word = i == bytes.len() || !(bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_');
            let number =
                line.get(digits..i).and_then(|d| d.parse::<u64>().ok().or((i > digits).then_some(u64::MAX)));
            let Some(number) = number.filter(|_| ends_word) else { continue };
            largest = largest.max(number);
            if before.saturating_add(largest) > limit {
                let entity = line.get(start..i).unwrap_or_default();
                let message = format!(
                    "`{entity}`: entity numbers past what CLIF text of {} bytes may use ({limit} in all, counting each function's largest: the reader sizes its tables by them)",
                    text.len()
                );
                return Err(ExecManagerError::Parse { line: n + 1, message });
            }
        }
    }
    Ok(())
}

/// Every function of CLIF `text` (a panic inside the reader a refusal too).
pub(super) fn parse(text: &str) -> Result<Vec<Function>, ExecManagerError> {
    check_entity_numbers(text)?;
    match catch_unwind(|| cranelift_reader::parse_functions(text)) {
        Ok(parsed) => parsed.map_err(|e| {
            let line = e.location.line_number;
            let message = match function_at(text, line) {
                Some(name) => format!("{} (in function {name})", e.message),
                None => e.message,
            };
            ExecManagerError::Parse { line, message }
        }),
        Err(payload) => Err(ExecManagerError::Parse {
            line: 0,
            message: format!("the CLIF reader panicked on it: {}", panic_message(&*payload)),
        }),
    }
}

/// The name of the function whose text line `line` (1-based) of `text` is in: the last
/// `function %name` at or before it.
fn function_at(text: &str, line: usize) -> Option<&str> {
    let header = text.lines().take(line).filter_map(|l| l.trim_start().strip_prefix("function %")).last()?;
    let end = header.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(header.len());
    Some(&header[..end]).filter(|name| !name.is_empty())
}

/// The name `function` defines: its test-case name, or its user name in `names`.
pub(super) fn name_of(function: &Function, names: &NameTable) -> Result<String, ExecManagerError> {
    match &function.name {
        UserFuncName::Testcase(name) => Ok(String::from_utf8_lossy(name.raw()).into_owned()),
        UserFuncName::User(user) => {
            names.get(user).cloned().ok_or_else(|| ExecManagerError::Unnamed(function.name.to_string()))
        }
    }
}

/// The name a call target stands for (`None`: not a name this loader can link).
fn target_name(function: &Function, name: &ExternalName, names: &NameTable) -> Option<String> {
    match name {
        ExternalName::TestCase(name) => Some(String::from_utf8_lossy(name.raw()).into_owned()),
        ExternalName::User(reference) => {
            names.get(function.params.user_named_funcs().get(*reference)?).cloned()
        }
        ExternalName::LibCall(call) => libcall_symbol(*call).map(str::to_owned),
        ExternalName::KnownSymbol(_) => None,
    }
}

/// The C symbol a Cranelift library call links to (`None`: one with no C equivalent here).
fn libcall_symbol(call: LibCall) -> Option<&'static str> {
    Some(match call {
        LibCall::CeilF32 => "ceilf",
        LibCall::CeilF64 => "ceil",
        LibCall::FloorF32 => "floorf",
        LibCall::FloorF64 => "floor",
        LibCall::TruncF32 => "truncf",
        LibCall::TruncF64 => "trunc",
        LibCall::NearestF32 => "nearbyintf",
        LibCall::NearestF64 => "nearbyint",
        LibCall::FmaF32 => "fmaf",
        LibCall::FmaF64 => "fma",
        LibCall::Memcpy => "memcpy",
        LibCall::Memset => "memset",
        LibCall::Memmove => "memmove",
        LibCall::Memcmp => "memcmp",
        _ => return None,
    })
}

/// What a relocation of a compiled function points at.
pub(super) enum Target {
    /// A name: another function of the batch, one compiled before, a loaded module's, the
    /// host's.
    Name(String),
    /// An offset in the function itself.
    Own(u32),
    /// Something this loader cannot link, as CLIF writes it.
    Unlinkable(String),
}

/// A relocation of a compiled function: what Cranelift asks for, at which offset.
pub(super) struct Relocation {
    pub(super) offset: u32,
    pub(super) kind: Reloc,
    pub(super) addend: i64,
    pub(super) target: Target,
}

/// One function compiled: its code, relocations and signature.
pub(super) struct Compiled {
    pub(super) code: Vec<u8>,
    pub(super) alignment: u64,
    pub(super) relocations: Vec<Relocation>,
    pub(super) signature: Signature,
    /// Each name it calls with the signature its call declares, in the platform's convention:
    /// checked against the callee's where the manager knows it.
    pub(super) calls: Vec<(String, Signature)>,
}

/// Whether a call declared as `declared` fits a function of signature `actual`: the same
/// parameters (types and purposes), and returns the callee's or a first part of them (a call
/// may leave results unread); conventions are made the platform's on both sides.
pub(super) fn call_fits(declared: &Signature, actual: &Signature) -> bool {
    let same = |a: &AbiParam, b: &AbiParam| a.value_type == b.value_type && a.purpose == b.purpose;
    declared.params.len() == actual.params.len()
        && declared.params.iter().zip(&actual.params).all(|(a, b)| same(a, b))
        && declared.returns.len() <= actual.returns.len()
        && declared.returns.iter().zip(&actual.returns).all(|(a, b)| same(a, b))
}

/// The names `function` calls (direct calls and tail calls; not a function's address taken,
/// nor a declaration no instruction uses), each with the signature its call declares: one
/// entry per declaration, found in one pass over the instructions.
fn called_names(function: &Function, names: &NameTable) -> Vec<(String, Signature)> {
    let mut called = EntitySet::with_capacity(function.dfg.ext_funcs.len());
    for block in function.layout.blocks() {
        for inst in function.layout.block_insts(block) {
            if let InstructionData::Call { func_ref, .. } = function.dfg.insts[inst] {
                called.insert(func_ref);
            }
        }
    }
    function
        .dfg
        .ext_funcs
        .iter()
        .filter(|&(func_ref, _)| called.contains(func_ref))
        .filter_map(|(_, ext)| {
            let name = target_name(function, &ext.name, names)?;
            Some((name, function.dfg.signatures.get(ext.signature)?.clone()))
        })
        .collect()
}

/// Cranelift's pass timer off on this thread while this lives, the thread's profiler back when
/// it drops. The manager reports no pass timings, and Cranelift's default profiler reads the
/// clock twice, boxes a token and updates thread-locals in each of some 23 passes per
/// function: 6% of the instructions compiling small functions takes (callgrind of
/// `cargo xtask exec-manager-child ours`).
pub(super) struct PassTimingOff(Option<Box<dyn Profiler>>);

impl PassTimingOff {
    pub(super) fn new() -> Self {
        Self(Some(timing::set_thread_profiler(Box::new(NoPassTiming))))
    }
}

impl Drop for PassTimingOff {
    fn drop(&mut self) {
        if let Some(previous) = self.0.take() {
            timing::set_thread_profiler(previous);
        }
    }
}

/// A profiler that times nothing (its tokens are zero-sized: no allocation).
struct NoPassTiming;

impl Profiler for NoPassTiming {
    fn start_pass(&self, _pass: Pass) -> Box<dyn Any> {
        Box::new(())
    }
}

/// `function` (named `name`, its calls named through `names`) compiled for `isa`, in the
/// platform's calling convention, in `context` (cleared first: one context serves a batch,
/// its allocations reused from one function to the next).
///
/// The function is verified once, as it comes in (what it says is checked before any pass
/// reads it: a refusal names each finding). Cranelift's own verifier setting, which would
/// verify it again between its passes (four times at opt none, five at speed: the passes'
/// own output, not the caller's), is off in [`host_isa`], as release builds of Wasmtime have
/// it.
pub(super) fn compile(
    isa: &OwnedTargetIsa,
    context: &mut Context,
    mut function: Function,
    name: &str,
    names: &NameTable,
) -> Result<Compiled, ExecManagerError> {
    let convention = isa.default_call_conv();
    function.signature.call_conv = convention;
    for signature in function.dfg.signatures.values_mut() {
        signature.call_conv = convention;
    }
    context.clear();
    context.func = function;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        context.verify(&**isa).map_err(|errors| describe(&CodegenError::Verifier(errors)))?;
        context
            .compile(&**isa, &mut Default::default())
            .map(|code| {
                (code.code_buffer().to_vec(), u64::from(code.buffer.alignment), code.buffer.relocs().to_vec())
            })
            .map_err(|e| describe(&e.inner))
    }));
    let (code, alignment, relocations) = match outcome {
        Ok(Ok(compiled)) => compiled,
        Ok(Err(message)) => return Err(ExecManagerError::Compile { function: name.to_owned(), message }),
        Err(payload) => {
            // What Cranelift does not support (an `i128` return, a function with no block)
            // it often refuses by panicking: its message is the reason.
            let message = format!("Cranelift panicked compiling it: {}", panic_message(&*payload));
            return Err(ExecManagerError::Compile { function: name.to_owned(), message });
        }
    };
    let function = &context.func;
    let calls = called_names(function, names);
    let relocations = relocations
        .into_iter()
        .map(|relocation| Relocation {
            offset: relocation.offset,
            kind: relocation.kind,
            addend: relocation.addend,
            target: match &relocation.target {
                FinalizedRelocTarget::ExternalName(target) => match target_name(function, target, names) {
                    Some(name) => Target::Name(name),
                    None => Target::Unlinkable(described(function, target)),
                },
                FinalizedRelocTarget::Func(at) => Target::Own(*at),
            },
        })
        .collect();
    // The function stays in the context (cleared for the next); its signature comes along.
    let signature = std::mem::replace(&mut context.func.signature, Signature::new(convention));
    Ok(Compiled { code, alignment, relocations, signature, calls })
}

/// What a caught panic said (its message, if it was a string).
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// A call target as CLIF writes it (`u0:2`, `%name`), a user reference the function does not
/// declare included (which Cranelift's own display would index past its table for).
fn described(function: &Function, name: &ExternalName) -> String {
    match name {
        ExternalName::User(reference) => match function.params.user_named_funcs().get(*reference) {
            Some(user) => format!("u{}:{}", user.namespace, user.index),
            None => format!("{reference} (not declared by the function)"),
        },
        other => other.display(None).to_string(),
    }
}

/// What Cranelift said, in one paragraph: each verifier finding with its place.
fn describe(error: &CodegenError) -> String {
    match error {
        CodegenError::Verifier(errors) => {
            let findings: Vec<String> = errors.0.iter().map(|e| format!("verifier: {e}")).collect();
            findings.join("; ")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// Counts the verifier's runs on this thread.
    struct CountingVerifier(Arc<AtomicUsize>);

    impl Profiler for CountingVerifier {
        fn start_pass(&self, pass: Pass) -> Box<dyn Any> {
            if pass == Pass::verifier {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
            Box::new(())
        }
    }

    /// The thread's profiler back when dropped, the test failing or not.
    struct Restore(Option<Box<dyn Profiler>>);

    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(previous) = self.0.take() {
                timing::set_thread_profiler(previous);
            }
        }
    }

    #[test]
    fn a_function_is_verified_once_at_every_opt_level_and_refused_with_the_findings() {
        let text = "function %loop_sum(i64) -> i64 {\nblock0(v0: i64):\n    v1 = iconst.i64 0\n    jump block1(v1, v0)\nblock1(v2: i64, v3: i64):\n    v4 = iadd v3, v2\n    v5 = iconst.i64 1\n    v6 = iadd v2, v5\n    v8 = iconst.i64 10\n    v7 = icmp slt v6, v8\n    brif v7, block1(v6, v4), block2\nblock2:\n    return v4\n}\n";
        let runs = Arc::new(AtomicUsize::new(0));
        let _restore = Restore(Some(timing::set_thread_profiler(Box::new(CountingVerifier(runs.clone())))));
        for opt in [OptLevel::None, OptLevel::Speed, OptLevel::SpeedAndSize] {
            let isa = host_isa(opt, Allocator::Backtracking).unwrap();
            let function = parse(text).unwrap().remove(0);
            runs.store(0, Ordering::Relaxed);
            let compiled = compile(&isa, &mut Context::new(), function, "loop_sum", &NameTable::new());
            assert!(compiled.is_ok_and(|c| !c.code.is_empty()), "{opt:?}");
            // Cranelift's own setting would verify it again between passes (4-5 runs).
            assert_eq!(runs.load(Ordering::Relaxed), 1, "{opt:?}");
        }
        // What the one run finds still refuses the function, with the finding.
        let isa = host_isa(OptLevel::Speed, Allocator::Backtracking).unwrap();
        let mistyped =
            parse("function %mistyped() -> i64 {\nblock0:\n    v0 = iconst.i32 1\n    return v0\n}\n");
        let refused =
            compile(&isa, &mut Context::new(), mistyped.unwrap().remove(0), "mistyped", &NameTable::new());
        match refused {
            Err(ExecManagerError::Compile { function, message }) => {
                assert_eq!(function, "mistyped");
                assert!(message.starts_with("verifier: "), "{message}");
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("a mistyped return compiled"),
        }
    }
}
