//! The execution manager (feature `cranelift`): Cranelift functions, as the runtime's translator
//! builds them or as CLIF text, compiled for the host and executed by name.
//!
//! A batch of functions compiled together becomes one in-memory SMF module (`image.rs`) loaded
//! through [`crate::loader`] with the C ABI's lookup order: its code is placed and sealed by the
//! loader's W^X allocator with one protection change, its calls are linked to each other, to
//! functions compiled before (the process-wide namespace of `exports.rs`, which later loads
//! consult too), to loaded modules, host symbols and the C library; debuggers and profilers
//! see it as they see modules. Compiling a name again exports the new code for new callers;
//! the old code stays where it is until the manager is dropped, so addresses handed out stay
//! valid while it lives.

mod compile;
mod error;
mod exports;
mod image;
mod room;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use cranelift_codegen::ir::{ArgumentPurpose, Function, Signature};
use cranelift_codegen::isa::OwnedTargetIsa;

use compile::Allocator;
pub use compile::{NameTable, OptLevel};
/// The Cranelift this manager compiles with (the runtime's translator builds its functions
/// with it: one version for both).
pub use cranelift_codegen as codegen;
pub use error::ExecManagerError;
pub use exports::CompiledFunctions;

use crate::imports::LinkOptions;
use crate::loader::{LoadRequest, SharedModule};
use crate::sync::lock;

/// A front end: source text to CLIF text (the runtime registers its own; `compile_source` and
/// `compile_file` go through it).
pub type FrontEnd = Arc<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

/// The front end managers use when none was set on them ([`set_default_front_end`]).
static DEFAULT_FRONT_END: Mutex<Option<FrontEnd>> = Mutex::new(None);

/// [`DEFAULT_FRONT_END`], locked (and taken around every fork from its first use).
fn front_end_slot() -> std::sync::MutexGuard<'static, Option<FrontEnd>> {
    crate::fork::hold_at_fork(crate::fork::Lock::FrontEnd, &DEFAULT_FRONT_END);
    lock(&DEFAULT_FRONT_END)
}

/// Registers the front end every manager without one of its own compiles source through (the
/// runtime registers its own once; managers created through the C ABI have no other).
pub fn set_default_front_end(front_end: Option<FrontEnd>) {
    *front_end_slot() = front_end;
}

/// A compiled function: where it is, its signature, the module holding it.
#[derive(Clone)]
struct Entry {
    addr: usize,
    signature: Arc<Signature>,
    module: Arc<SharedModule>,
}

/// What an [`ExecManager`] compiled: the latest definition of each name, and every batch it
/// loaded, kept until it is dropped (replaced code included).
#[derive(Default)]
struct Tables {
    functions: HashMap<String, Entry>,
    modules: Vec<Arc<SharedModule>>,
}

/// Compiles Cranelift functions for the host into executable memory and runs them by name
/// (see the module documentation). Shared between threads: compiling, loading and calling run
/// outside its locks, which guard only its tables.
pub struct ExecManager {
    /// The instruction set with the backtracking register allocator, for functions of up to
    /// [`compile::BACKTRACKING_MOST_VALUES`] values.
    isa: OwnedTargetIsa,
    /// With the single-pass allocator, for larger functions: made at the first.
    single_pass_isa: OnceLock<OwnedTargetIsa>,
    opt: OptLevel,
    /// This manager's identity in the namespace of compiled functions.
    id: u64,
    /// What its locks guard (apart, so that a fork can keep it alive while holding them).
    locked: Arc<Locked>,
}

/// A manager's state under its locks, each taken alone.
struct Locked {
    tables: Mutex<Tables>,
    front_end: Mutex<Option<FrontEnd>>,
    /// Cranelift contexts kept between batches (at most [`KEPT_CONTEXTS`]): what a context
    /// allocated for one batch (regalloc2's state above all) is reused by the next, instead of
    /// made and dropped per batch (18k of the 190k instructions a batch of one small
    /// function took, by callgrind).
    contexts: Mutex<Vec<cranelift_codegen::Context>>,
}

impl crate::fork::Hold for Locked {
    fn hold(&'static self) -> Box<dyn std::any::Any> {
        Box::new((lock(&self.tables), lock(&self.front_end), lock(&self.contexts)))
    }
}

/// Contexts a manager keeps for its next batches: as many as threads usually compile on it at
/// once (more at once make their own, dropped after).
const KEPT_CONTEXTS: usize = 4;

/// The largest function (in Cranelift instructions) after which a context is kept: its buffers
/// grow with the largest function compiled in it, and a manager should not hold one sized for
/// a rare giant for the rest of its life.
const KEPT_CONTEXT_MOST_INSTRUCTIONS: usize = 4096;

impl std::fmt::Debug for ExecManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (functions, modules) = {
            let tables = lock(&self.locked.tables);
            (tables.functions.len(), tables.modules.len())
        };
        f.debug_struct("ExecManager")
            .field("isa", &self.isa.name())
            .field("opt", &self.opt)
            .field("functions", &functions)
            .field("modules", &modules)
            .field("kept_contexts", &lock(&self.locked.contexts).len())
            .finish_non_exhaustive()
    }
}

impl ExecManager {
    /// The largest blocks × values a function may have, its branches' edges counted as blocks (a
    /// larger one is refused, [`ExecManagerError::TooLarge`]): register allocation's cost grows
    /// with that product, so a bound on it bounds the time one function takes to compile
    /// (1.5 s in the worst shape measured here). Functions of more than 4,096 values are compiled
    /// with Cranelift's single-pass register allocator (its backtracking one costs the square of
    /// the values live at once).
    pub const MOST_BLOCKS_TIMES_VALUES: u64 = compile::MOST_BLOCKS_TIMES_VALUES;

    /// A manager compiling for the host at `opt`.
    pub fn new(opt: OptLevel) -> Result<Self, ExecManagerError> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        exports::join_lookup_order();
        let isa = compile::host_isa(opt, Allocator::Backtracking)?;
        let locked = Arc::new(Locked {
            tables: Mutex::new(Tables::default()),
            front_end: Mutex::new(None),
            contexts: Mutex::new(Vec::new()),
        });
        crate::fork::hold_object_at_fork(crate::fork::Object::Manager, &locked);
        Ok(ExecManager {
            isa,
            single_pass_isa: OnceLock::new(),
            opt,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            locked,
        })
    }

    /// The instruction set that compiles with `allocator`.
    fn isa_for(&self, allocator: Allocator) -> Result<&OwnedTargetIsa, ExecManagerError> {
        match allocator {
            Allocator::Backtracking => Ok(&self.isa),
            Allocator::SinglePass => match self.single_pass_isa.get() {
                Some(isa) => Ok(isa),
                // Threads racing here each make one; the first stays.
                None => {
                    let isa = compile::host_isa(self.opt, Allocator::SinglePass)?;
                    Ok(self.single_pass_isa.get_or_init(|| isa))
                }
            },
        }
    }

    /// The opt level it compiles at.
    pub fn opt_level(&self) -> OptLevel {
        self.opt
    }

    /// Compiles every function of CLIF `text` together (one batch: one seal); each is named
    /// by its test-case name (`function %add(i64, i64) -> i64` defines `add`). Returns the
    /// names defined.
    pub fn compile_clif(&self, text: &str) -> Result<Vec<String>, ExecManagerError> {
        room::for_text(text.len())?;
        let functions = compile::parse(text)?;
        self.compile_functions(functions, &NameTable::new())
    }

    /// Compiles `functions` together (one batch: one seal). A function is named by its
    /// test-case name or, for a user name (`u0:1`), by `names`; a call target likewise. Returns
    /// the names defined. Nothing of a batch is defined if any of it fails; a name given twice
    /// is refused before anything is compiled.
    pub fn compile_functions(
        &self,
        functions: Vec<Function>,
        names: &NameTable,
    ) -> Result<Vec<String>, ExecManagerError> {
        room::for_instructions(functions.iter().map(|f| f.dfg.num_insts()).sum())?;
        let mut defined = Vec::with_capacity(functions.len());
        for function in &functions {
            defined.push(compile::name_of(function, names)?);
        }
        // Each name's place in the batch (a name given twice refused before anything is
        // compiled): what the batch's calls to each other are linked by.
        let mut index = HashMap::with_capacity(defined.len());
        for (i, name) in defined.iter().enumerate() {
            if index.insert(name.as_str(), i).is_some() {
                return Err(ExecManagerError::DefinedTwice(name.clone()));
            }
        }
        if defined.is_empty() {
            return Ok(Vec::new());
        }
        let batch = self.compile_batch(functions, &defined, names)?;
        Self::check_calls(&defined, &batch, &index)?;
        let bytes = image::module_of(&defined, &batch, &index)?;
        // Not in the registry (whose first definition of a name wins): exported below into
        // the namespace of compiled functions, where the latest does.
        let options = LinkOptions { local: true, ..LinkOptions::default() };
        let request = LoadRequest::bytes(&bytes).linked(options);
        let module = crate::loader::load(&request).map_err(ExecManagerError::Load)?;
        let mut entries = Vec::with_capacity(batch.len());
        for (compiled, name) in batch.into_iter().zip(&defined) {
            // Every function of the batch is a symbol of its module (`image::module_of`).
            let Some(addr) = module.symbol(name.as_bytes()) else {
                let what = "its symbol, which the loaded batch lacks".to_owned();
                return Err(ExecManagerError::Link { function: name.clone(), what });
            };
            let signature = Arc::new(compiled.signature);
            entries.push((name.clone(), Entry { addr, signature, module: module.clone() }));
        }
        let exported: Vec<(&[u8], usize, Arc<Signature>)> =
            entries.iter().map(|(name, e)| (name.as_bytes(), e.addr, e.signature.clone())).collect();
        let exported = exports::definitions(self.id, &exported, &module);
        // Exported and recorded under one lock: two batches defining a name on two threads
        // leave the table and the namespace with the same one last.
        let mut tables = lock(&self.locked.tables);
        exports::export(exported);
        tables.functions.extend(entries);
        tables.modules.push(module);
        Ok(defined)
    }

    /// Machine code of each of `functions` (named `defined`), through one Cranelift context
    /// kept from an earlier batch where there is one (what Cranelift allocates for a function
    /// is reused for the next) and with Cranelift's pass timer off. The context is kept again
    /// unless a function was refused (which may have left it midway) or was larger than
    /// [`KEPT_CONTEXT_MOST_INSTRUCTIONS`] (its buffers would stay that large).
    fn compile_batch(
        &self,
        functions: Vec<Function>,
        defined: &[String],
        names: &NameTable,
    ) -> Result<Vec<compile::Compiled>, ExecManagerError> {
        let largest = functions.iter().map(|f| f.dfg.num_insts()).max().unwrap_or(0);
        let taken = lock(&self.locked.contexts).pop();
        let mut context = taken.unwrap_or_else(cranelift_codegen::Context::new);
        let timing_off = compile::PassTimingOff::new();
        let mut batch = Vec::with_capacity(functions.len());
        for (function, name) in functions.into_iter().zip(defined) {
            let isa = self.isa_for(compile::Size::of(&function).allocator(name)?)?;
            batch.push(compile::compile(isa, &mut context, function, name, names)?);
        }
        drop(timing_off);
        if largest <= KEPT_CONTEXT_MOST_INSTRUCTIONS {
            context.clear();
            let mut contexts = lock(&self.locked.contexts);
            if contexts.len() < KEPT_CONTEXTS {
                contexts.push(context);
                return Ok(batch);
            }
        }
        // Not kept: dropped here, after the lock.
        Ok(batch)
    }

    /// Refuses a call whose declared signature does not fit its callee's
    /// ([`compile::call_fits`]), where the callee is known: a function of the batch, or the
    /// compiled function a load links the name to now (the latest definition of any manager),
    /// unless a host symbol of the name comes first. A loaded module's and the C library's
    /// functions carry no signature to check against; a name compiled again between this check
    /// and the load is linked as the load finds it.
    fn check_calls(
        defined: &[String],
        batch: &[compile::Compiled],
        index: &HashMap<&str, usize>,
    ) -> Result<(), ExecManagerError> {
        use smf_runtime::load::Resolver as _;
        for (caller, compiled) in defined.iter().zip(batch) {
            for (callee, declared) in &compiled.calls {
                let exported;
                let actual = match index.get(callee.as_str()) {
                    Some(&i) => batch.get(i).map(|c| &c.signature),
                    None if crate::imports::HostSymbols.resolve(callee.as_bytes()).is_some() => None,
                    None => {
                        exported = exports::signature_of(callee.as_bytes());
                        exported.as_deref()
                    }
                };
                if let Some(actual) = actual.filter(|actual| !compile::call_fits(declared, actual)) {
                    let what = format!("a call to {callee} as {declared}, which is {actual}");
                    return Err(ExecManagerError::Link { function: caller.clone(), what });
                }
            }
        }
        Ok(())
    }

    /// The functions of CLIF `text`, as [`ExecManager::compile_functions`] takes them (user
    /// names such as `u0:1` kept, for a [`NameTable`] to name).
    pub fn parse_clif(text: &str) -> Result<Vec<Function>, ExecManagerError> {
        compile::parse(text)
    }

    /// Registers the front end `compile_source` and `compile_file` go through (else the
    /// process's default one, [`set_default_front_end`]).
    pub fn set_front_end(&self, front_end: FrontEnd) {
        *lock(&self.locked.front_end) = Some(front_end);
    }

    /// The front end source goes through: this manager's, else the process's default.
    fn front_end(&self) -> Option<FrontEnd> {
        let own = lock(&self.locked.front_end).clone();
        own.or_else(|| front_end_slot().clone())
    }

    /// Compiles `source` through the front end (to CLIF, then as
    /// [`ExecManager::compile_clif`]).
    pub fn compile_source(&self, source: &str) -> Result<Vec<String>, ExecManagerError> {
        let front_end = self.front_end().ok_or(ExecManagerError::NoFrontEnd)?;
        let clif = front_end(source).map_err(ExecManagerError::FrontEnd)?;
        self.compile_clif(&clif)
    }

    /// [`ExecManager::compile_source`] of the file at `path`: a regular file (never a FIFO or
    /// a device, which could block or never end) of at most the module size limit
    /// (`SMF_MAX_MODULE_BYTES`, [`crate::file::limits_from_env`]), in UTF-8.
    pub fn compile_file(&self, path: &Path) -> Result<Vec<String>, ExecManagerError> {
        if self.front_end().is_none() {
            return Err(ExecManagerError::NoFrontEnd);
        }
        let limit = crate::file::limits_from_env().max_bytes;
        let source = read_source(path, limit).map_err(|e| ExecManagerError::Io(path.to_path_buf(), e))?;
        self.compile_source(&source)
    }

    /// Calls function `name` with `args` (integers, as many as its signature takes, at most
    /// six) and returns its integer result (0 for a function returning nothing). A name this
    /// manager did not compile, a wrong number of arguments, or a signature that is not
    /// integers in and at most one integer out is an error, never a call.
    pub fn execute(&self, name: &str, args: &[i64]) -> Result<i64, ExecManagerError> {
        let entry = lock(&self.locked.tables).functions.get(name).cloned();
        let entry = entry.ok_or_else(|| ExecManagerError::UnknownFunction(crate::kept::kept_str(name)))?;
        let signature = &entry.signature;
        let integer = |t: cranelift_codegen::ir::Type| t.is_int() && t.bits() <= 64;
        let fits =
            signature.params.iter().all(|p| integer(p.value_type) && p.purpose == ArgumentPurpose::Normal)
                && signature.returns.len() <= 1
                && signature.returns.iter().all(|r| integer(r.value_type));
        if !fits {
            return Err(ExecManagerError::Signature {
                function: crate::kept::kept_str(name),
                signature: signature.to_string(),
            });
        }
        if signature.params.len() != args.len() {
            let (expected, given) = (signature.params.len(), args.len());
            return Err(ExecManagerError::Arity { function: crate::kept::kept_str(name), expected, given });
        }
        // SAFETY: the function's signature (checked above) takes exactly these integer
        // arguments in the platform's C convention (every compiled function is given it) and
        // returns at most one integer; its module lives while `entry` holds it.
        #[allow(unsafe_code)]
        let result = unsafe { entry.module.call_integers(Some(name.as_bytes()), args) };
        let result = result.map_err(ExecManagerError::Call)?;
        // A narrower integer result is the low bits of the register, sign-extended.
        Ok(match signature.returns.first().map(|r| r.value_type.bits()) {
            None => 0,
            Some(bits) if bits < 64 => (result << (64 - bits)) >> (64 - bits),
            Some(_) => result,
        })
    }

    /// Whether this manager compiled a function `name`.
    pub fn has_function(&self, name: &str) -> bool {
        lock(&self.locked.tables).functions.contains_key(name)
    }

    /// The names of the functions this manager compiled, sorted.
    pub fn function_names(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.locked.tables).functions.keys().cloned().collect();
        names.sort_unstable();
        names
    }

    /// Where function `name`'s latest code is (valid while the manager lives).
    pub fn address(&self, name: &str) -> Option<usize> {
        lock(&self.locked.tables).functions.get(name).map(|e| e.addr)
    }
}

impl Drop for ExecManager {
    fn drop(&mut self) {
        exports::withdraw(self.id);
        // Locked, not taken apart: a fork may be holding the state alive for a moment.
        let tables = std::mem::take(&mut *lock(&self.locked.tables));
        drop(tables.functions);
        // Every batch at once, the latest first (a batch holds the earlier ones it calls): one
        // protection change for all their pages rather than one per batch.
        crate::loader::release_together(tables.modules.into_iter().rev());
    }
}

/// The text of the regular file at `path`, of at most `limit` bytes. Opened without blocking
/// (a FIFO with no writer would wait for one) and refused unless it is a regular file; read
/// through a bound, so a file that grows while read cannot pass the limit.
fn read_source(path: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut source = String::new();
    file.take(limit.saturating_add(1)).read_to_string(&mut source)?;
    if source.len() as u64 > limit {
        let message =
            format!("larger than the limit of {limit} bytes ({})", crate::file::MAX_MODULE_BYTES_ENV);
        return Err(Error::new(ErrorKind::FileTooLarge, message));
    }
    Ok(source)
}

#[cfg(test)]
mod tests {
    use super::read_source;

    #[test]
    fn a_source_file_is_read_up_to_the_limit_and_refused_past_it() {
        let dir = std::env::temp_dir().join(format!("smf-read-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ten.src");
        std::fs::write(&file, "0123456789").unwrap();
        assert_eq!(read_source(&file, 10).unwrap(), "0123456789");
        let refused = read_source(&file, 9).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::FileTooLarge);
        assert_eq!(refused.to_string(), "larger than the limit of 9 bytes (SMF_MAX_MODULE_BYTES)");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
