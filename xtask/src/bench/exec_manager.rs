//! Benchmark "exec-manager": the execution manager (`smf::exec_manager`) against
//! `cranelift-jit`'s own `JITModule` compiling the same Cranelift functions, side by side:
//!
//! - creation of a manager (the host ISA included) against a `JITModule`'s;
//! - compile and place one small function (opt none), one large one (opt speed), and a batch
//!   of 100 small ones (one `compile_functions` against 100 `define_function` and one
//!   `finalize_definitions`): their time / ours, at least 1 wanted (ours must not be slower);
//! - `execute` by name against a direct call of the same code (reported: what the name and
//!   signature checks cost);
//! - 1,000 small functions in batches of 100: `mmap` and `mprotect` calls, ours and
//!   `JITModule`'s (a child process each under `strace -f -c`, a child that only sets both up
//!   subtracted; no more than `JITModule`'s wanted), the `madvise` calls (ours: faulting a
//!   batch's pages in with one call), then the calls freeing them all (the manager dropped against
//!   `JITModule::free_memory`; ours keeps its pages reserved for the next batch, theirs unmaps
//!   them), and the memory our manager holds (heap and executable memory: under 10 MB, the
//!   guide's target).

use cranelift_codegen::ir::Function;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module};
use smf::exec_manager::{ExecManager, NameTable, OptLevel};

use super::report::{self, Goal};
use super::{interleaved_rounds, median, median_ratio, us};

/// A small function: `(a + b) * (a - b)`.
fn small(name: &str) -> Function {
    let text = format!(
        "function %{name}(i64, i64) -> i64 {{\nblock0(v0: i64, v1: i64):\n    v2 = iadd v0, v1\n    v3 = isub v0, v1\n    v4 = imul v2, v3\n    return v4\n}}\n"
    );
    parse(&text)
}

/// A large function: a loop whose body is `ops` dependent arithmetic operations.
fn large(name: &str, ops: usize) -> Function {
    let mut text = format!("function %{name}(i64) -> i64 {{\nblock0(v0: i64):\n    v1 = iconst.i64 0\n    jump block1(v1, v0)\nblock1(v2: i64, v3: i64):\n");
    let mut last = 3;
    for i in 0..ops {
        let op = ["iadd", "imul", "bxor", "isub"][i % 4];
        text.push_str(&format!("    v{} = {op} v{last}, v2\n", 10 + i));
        last = 10 + i;
    }
    text.push_str(&format!(
        "    v4 = iconst.i64 1\n    v5 = iadd v2, v4\n    v7 = iconst.i64 100\n    v6 = icmp slt v5, v7\n    brif v6, block1(v5, v{last}), block2\nblock2:\n    return v{last}\n}}\n"
    ));
    parse(&text)
}

fn parse(text: &str) -> Function {
    cranelift_reader::parse_functions(text).expect("the bench's CLIF parses").remove(0)
}

/// A `JITModule` for the host at `opt` (as the manager's: frame pointers kept).
fn jit_module(opt: &str) -> JITModule {
    let mut flags = settings::builder();
    flags.set("opt_level", opt).expect("opt_level");
    flags.set("preserve_frame_pointers", "true").expect("preserve_frame_pointers");
    let isa =
        cranelift_native::builder().expect("host ISA").finish(settings::Flags::new(flags)).expect("ISA");
    JITModule::new(JITBuilder::with_isa(isa, cranelift_module::default_libcall_names()))
}

/// `functions` defined in `module` and finalized together, through `context` (the caller's,
/// kept between batches and cleared between functions, as cranelift-jit's users are told; the
/// manager keeps its own likewise).
fn jit_compile(module: &mut JITModule, context: &mut Context, functions: Vec<(String, Function)>) -> usize {
    let mut ids = Vec::with_capacity(functions.len());
    for (name, mut function) in functions {
        function.signature.call_conv = module.isa().default_call_conv();
        let id = module.declare_function(&name, Linkage::Export, &function.signature).expect("declare");
        context.func = function;
        module.define_function(id, context).expect("define");
        module.clear_context(context);
        ids.push(id);
    }
    module.finalize_definitions().expect("finalize");
    ids.iter().map(|&id| module.get_finalized_function(id) as usize).sum()
}

/// What the child compiles: `batches` batches of `per_batch` functions at `opt`, small ones
/// or large ones.
#[derive(Clone, Copy)]
struct Shape {
    opt: OptLevel,
    batches: usize,
    per_batch: usize,
    large: bool,
}

impl Shape {
    /// The shape named after `ours-` or `jit-`: none, the footprint's 1,000 small functions in
    /// batches of 100; `single`, 200 batches of one small function (opt none); `large`, 20
    /// batches of one large function (opt speed). The last two are what callgrind compares per
    /// batch: `valgrind --tool=callgrind target/release/xtask exec-manager-child ours-single`.
    fn named(name: &str) -> Option<Shape> {
        let (opt, batches, per_batch, large) = match name {
            "" => (OptLevel::None, 10, 100, false),
            "single" => (OptLevel::None, 200, 1, false),
            "large" => (OptLevel::Speed, 20, 1, true),
            _ => return None,
        };
        Some(Shape { opt, batches, per_batch, large })
    }

    /// Function `i` of batch `batch`, named with `prefix`.
    fn function(&self, prefix: &str, batch: usize, i: usize) -> (String, Function) {
        let name = format!("{prefix}footprint_{batch}_{i}");
        let f = if self.large { large(&name, 400) } else { small(&name) };
        (name, f)
    }

    /// Batch `batch` compiled by `manager`.
    fn compile_ours(&self, manager: &ExecManager, batch: usize) -> Result<(), String> {
        let functions = (0..self.per_batch).map(|i| self.function("", batch, i).1).collect();
        manager.compile_functions(functions, &NameTable::new()).map(drop).map_err(|e| e.to_string())
    }
}

/// The footprint's 1,000 small functions compiled by `manager` in batches of 100.
fn thousand_ours(manager: &ExecManager) -> Result<(), String> {
    let shape = Shape::named("").ok_or("no footprint shape")?;
    (0..shape.batches).try_for_each(|batch| shape.compile_ours(manager, batch))
}

/// The child: a [`Shape`]'s functions through `ours` (a manager) or `jit` (a `JITModule`),
/// then, with `-cleanup`, everything freed (the manager dropped, the `JITModule`'s memory
/// freed); or only both set up (`none`, the baseline, which counts the library's one-time
/// set-up of the process). `which` is `SIDE[-SHAPE][-cleanup]`.
pub(super) fn child(which: &str) -> Result<(), String> {
    let (which, cleanup) = match which.strip_suffix("-cleanup") {
        Some(which) => (which, true),
        None => (which, false),
    };
    let (side, shape_name) = which.split_once('-').unwrap_or((which, ""));
    if !["ours", "jit", "none"].contains(&side) {
        return Err(format!("no such side: {side} (ours, jit or none)"));
    }
    let shape =
        Shape::named(shape_name).ok_or_else(|| format!("no such shape: {shape_name} (single or large)"))?;
    let manager = ExecManager::new(shape.opt).map_err(|e| e.to_string())?;
    let mut module = jit_module(if shape.opt == OptLevel::Speed { "speed" } else { "none" });
    let mut context = module.make_context();
    // Set up as the process's first use of the library does: its executable allocator made
    // (the page size from the C library's auxiliary vector, no syscall).
    std::hint::black_box(smf::process::exec().page_size());
    for batch in 0..shape.batches {
        match side {
            "ours" => shape.compile_ours(&manager, batch)?,
            "jit" => {
                let functions = (0..shape.per_batch).map(|i| shape.function("jit_", batch, i)).collect();
                jit_compile(&mut module, &mut context, functions);
            }
            _ => break,
        }
    }
    if cleanup {
        drop(manager);
        // SAFETY: nothing compiled by `module` runs or is referred to any more.
        #[allow(unsafe_code)]
        unsafe {
            module.free_memory()
        };
    } else {
        // Left to the process's exit: what compiling cost, counted apart from cleaning up.
        std::mem::forget(manager);
        std::mem::forget(module);
    }
    Ok(())
}

/// `[mmap, mprotect, munmap, madvise]` calls of the child doing `which`, counted by
/// `strace -f -c`; `None` where strace is missing or fails.
fn strace_counts(which: &str) -> Option<[u64; 4]> {
    let exe = std::env::current_exe().ok()?;
    let out = std::process::Command::new("strace")
        .args(["-f", "-c", "-e", "trace=mmap,mprotect,munmap,madvise", "-o", "/dev/stdout"])
        .arg(exe)
        .args(["exec-manager-child", which])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // "% time  seconds  usecs/call  calls  [errors]  syscall": calls is the fourth column.
    let calls = |name: &str| -> u64 {
        let line = text.lines().find(|l| l.split_whitespace().last() == Some(name));
        line.and_then(|l| l.split_whitespace().nth(3)?.parse().ok()).unwrap_or(0)
    };
    Some([calls("mmap"), calls("mprotect"), calls("munmap"), calls("madvise")])
}

pub(super) fn run(rounds: usize) -> Result<(), String> {
    println!("exec-manager: smf::exec_manager against cranelift-jit's JITModule on the same functions");
    let none = NameTable::new();

    let times = interleaved_rounds(
        rounds,
        &mut [
            &mut || ExecManager::new(OptLevel::None).map(|m| m.function_names().len()).unwrap_or(0),
            &mut || std::hint::black_box(jit_module("none")).declarations().get_functions().count(),
        ],
    );
    println!(
        "  create                 ours {:>9.1} us, JITModule {:>9.1} us",
        us(median(times[0].clone())),
        us(median(times[1].clone()))
    );
    report::ratio("exec_manager_create_vs_jit_module", median_ratio(&times[1], &times[0]), Goal::Reported);

    let cases: [(&str, &str, OptLevel, &str, usize); 3] = [
        (
            "one small function, opt none",
            "exec_manager_compile_small_vs_jit_module",
            OptLevel::None,
            "none",
            1,
        ),
        (
            "one large function, opt speed",
            "exec_manager_compile_large_vs_jit_module",
            OptLevel::Speed,
            "speed",
            1,
        ),
        ("100 small functions, opt none", "exec_manager_batch_vs_jit_module", OptLevel::None, "none", 100),
    ];
    for (what, line, opt, jit_opt, count) in cases {
        let manager = ExecManager::new(opt).map_err(|e| e.to_string())?;
        let mut module = jit_module(jit_opt);
        let mut context = module.make_context();
        let (mut ours_n, mut theirs_n) = (0usize, 0usize);
        let function = |kind: &str, n: usize| {
            let name = format!("{kind}_{line}_{n}");
            let f = if opt == OptLevel::Speed { large(&name, 400) } else { small(&name) };
            (name, f)
        };
        let times = interleaved_rounds(
            rounds,
            &mut [
                &mut || {
                    let batch: Vec<Function> = (0..count)
                        .map(|_| {
                            ours_n += 1;
                            function("ours", ours_n).1
                        })
                        .collect();
                    manager.compile_functions(batch, &none).expect("compiles").len()
                },
                &mut || {
                    let batch: Vec<(String, Function)> = (0..count)
                        .map(|_| {
                            theirs_n += 1;
                            function("theirs", theirs_n)
                        })
                        .collect();
                    jit_compile(&mut module, &mut context, batch)
                },
            ],
        );
        println!(
            "  {what:<30} ours {:>9.1} us, JITModule {:>9.1} us",
            us(median(times[0].clone())),
            us(median(times[1].clone()))
        );
        report::ratio(line, median_ratio(&times[1], &times[0]), Goal::AtLeast(1.0));
    }

    // Execute by name against a direct call.
    let manager = ExecManager::new(OptLevel::Speed).map_err(|e| e.to_string())?;
    manager.compile_functions(vec![small("bench_direct")], &none).map_err(|e| e.to_string())?;
    let addr = manager.address("bench_direct").ok_or("no address")?;
    // SAFETY: `bench_direct` is `(i64, i64) -> i64` in the platform's C convention.
    #[allow(unsafe_code)]
    let direct = unsafe { smf_runtime::exec::function_pointer::<extern "C" fn(i64, i64) -> i64>(addr) }
        .ok_or("bench_direct has no address")?;
    const CALLS: usize = 10_000;
    let times = interleaved_rounds(
        rounds,
        &mut [
            &mut || {
                (0..CALLS as i64).map(|i| manager.execute("bench_direct", &[i, 3]).unwrap_or(0)).sum::<i64>()
                    as usize
            },
            &mut || (0..CALLS as i64).map(|i| direct(std::hint::black_box(i), 3)).sum::<i64>() as usize,
        ],
    );
    let per_call = |t: &[std::time::Duration]| us(median(t.to_vec())) * 1000.0 / CALLS as f64;
    println!(
        "  execute                ours {:>9.1} ns, direct call {:>9.1} ns",
        per_call(&times[0]),
        per_call(&times[1])
    );
    report::ratio("execute_vs_direct_call", median_ratio(&times[1], &times[0]), Goal::Reported);

    // 1,000 functions in batches of 100: kernel calls (a child process under strace, the
    // same child doing nothing subtracted), compiling, then cleaning up.
    let counts: Vec<Option<[u64; 4]>> =
        ["none", "ours", "jit", "ours-cleanup", "jit-cleanup"].iter().map(|w| strace_counts(w)).collect();
    match counts[..] {
        [Some(base), Some(ours), Some(theirs), Some(ours_all), Some(theirs_all)] => {
            let minus = |a: [u64; 4], b: [u64; 4]| [0, 1, 2, 3].map(|i| a[i].saturating_sub(b[i]));
            let (ours, theirs) = (minus(ours, base), minus(theirs, base));
            // Cleaning up: every call the cleanup made (mappings and protection changes alike).
            let cleanup =
                |all: [u64; 4], compiled: [u64; 4]| minus(minus(all, base), compiled).iter().sum::<u64>();
            let (ours_cleanup, theirs_cleanup) = (cleanup(ours_all, ours), cleanup(theirs_all, theirs));
            println!(
                "  1,000 functions        ours {} mmap, {} mprotect, {} madvise; JITModule {} mmap, {} mprotect, {} madvise (set-up subtracted)",
                ours[0], ours[1], ours[3], theirs[0], theirs[1], theirs[3]
            );
            println!(
                "  cleaning them up       ours {ours_cleanup} calls (its pages kept reserved); JITModule {theirs_cleanup} calls (free_memory unmaps)"
            );
            report::footprint("exec_manager_mmaps_1000_functions", ours[0], Goal::AtMost(theirs[0] as f64));
            report::footprint("jit_module_mmaps_1000_functions", theirs[0], Goal::Reported);
            report::footprint(
                "exec_manager_mprotects_1000_functions",
                ours[1],
                Goal::AtMost(theirs[1] as f64),
            );
            report::footprint("jit_module_mprotects_1000_functions", theirs[1], Goal::Reported);
            report::footprint("exec_manager_madvises_1000_functions", ours[3], Goal::Reported);
            report::footprint(
                "exec_manager_cleanup_calls_1000_functions",
                ours_cleanup,
                Goal::AtMost(theirs_cleanup as f64),
            );
            report::footprint("jit_module_cleanup_calls_1000_functions", theirs_cleanup, Goal::Reported);
        }
        _ => println!("  (no strace here: kernel calls not counted)"),
    }
    // Memory the manager holds: its heap (this thread's allocations) and the executable
    // allocator's bytes (code and each batch's tables).
    let held = || (crate::alloc_count::held_bytes(), smf::process::exec().stats().bytes_live);
    let before = held();
    let manager = ExecManager::new(OptLevel::None).map_err(|e| e.to_string())?;
    thousand_ours(&manager)?;
    let after = held();
    let bytes = u64::try_from(after.0 - before.0).unwrap_or(0) + after.1.saturating_sub(before.1) as u64;
    println!("  1,000 functions        ours {} KB (heap and executable memory)", bytes / 1024);
    report::footprint("exec_manager_bytes_1000_functions", bytes, Goal::AtMost(10.0 * 1024.0 * 1024.0));
    drop(manager);
    Ok(())
}
