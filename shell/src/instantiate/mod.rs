//! Load-time instantiation over a module cache: [`Generics`] finds what a module's note.sdn
//! "possible" table offers, hands the template to the runtime's [`Compiler`], and keeps the
//! code (the core's [`Instantiator`] installs it, W^X, and keeps one copy per name).
//!
//! Names are global, as in the runtime's symbol table: a name instantiated once is the same
//! code whichever module a later request names. This thread's chain of instantiations (the
//! compiler asking for its dependencies re-entrantly) is kept per thread and per `Generics`, which
//! is where cycles and the depth limit are found.
//!
//! Lifetimes: instantiated code lives until its `Generics` is dropped. A `Generics` keeps every module
//! it instantiated from (the compiler's code may call into it), so evicting such a module from
//! the cache, or reloading its file, never pulls code from under instantiated functions; both
//! are freed with the `Generics`. A module whose file changed offers what its new note.sdn offers;
//! names already instantiated keep their code.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::sync::lock;

use smf_format::note_sdn::mangle::{mangled_len, write_mangled};
use smf_runtime::exec::Function;
use smf_runtime::file::ReadError;
use smf_runtime::instantiate::metadata::{ModuleMetadata, Possible};
use smf_runtime::instantiate::{
    Begun, Caller, CompileFailure, CompilerError, InstantiateError, Instantiator, InstantiatorConfig,
    InstantiatorStats, ModuleUnavailable, Staging,
};

use crate::cache::ModuleCache;
use crate::loader::{ModuleError, SharedModule};

mod offer_index;

use offer_index::OfferIndex;

/// What the compiler is asked to compile.
#[derive(Debug)]
pub struct Request<'a> {
    /// The mangled name (`List$Float`).
    pub name: &'a str,
    /// The template's name, from the "possible" row (`List`).
    pub template: &'a str,
    /// The type arguments as the row writes them (`Float`).
    pub type_args: &'a str,
    /// The template-code entry of the module's template symbol named `template`, else its
    /// template-code record of that name (see [`smf_runtime::load::LoadedModule::template`]).
    pub template_bytes: Option<&'a [u8]>,
    /// The module offering it.
    pub module: &'a Arc<SharedModule>,
    /// Its path.
    pub path: &'a Path,
}

/// Why the compiler made no code: its own error, of any type (a `String` converts). It becomes
/// [`InstantiateError::Compile`]'s [`CompileFailure::Compiler`], kept typed (a [`CompilerError`]: its
/// `downcast_ref` gives back the compiler's own type) and recorded for every thread that waited
/// for the name.
pub type CompileError = Box<dyn std::error::Error + Send + Sync>;

/// The runtime's compiler: machine code for a request. It may call [`Generics::instantiate`] (or
/// resolve) for the dependencies it needs, on the same thread.
pub trait Compiler: Send + Sync {
    /// The code for `request`, or why not.
    fn compile<'c>(
        &'c self,
        generics: &Generics,
        request: &Request<'_>,
    ) -> Result<Cow<'c, [u8]>, CompileError>;
}

impl<F, E> Compiler for F
where
    F: Fn(&Generics, &Request<'_>) -> Result<Vec<u8>, E> + Send + Sync,
    E: Into<CompileError>,
{
    fn compile<'c>(
        &'c self,
        generics: &Generics,
        request: &Request<'_>,
    ) -> Result<Cow<'c, [u8]>, CompileError> {
        self(generics, request).map(Cow::Owned).map_err(Into::into)
    }
}

/// `base` and its type arguments mangled as Simple mangles them: `base$T1_T2` (`base` alone
/// without arguments; the rule's home is [`smf_format::note_sdn::mangle`]).
pub fn mangle(base: &str, type_args: &[&str]) -> String {
    let mut name = String::new();
    let _ = write_mangled(&mut name, base, type_args.iter().copied());
    name
}

/// [`mangle`], out of memory an error instead of an abort.
pub fn try_mangle(base: &str, type_args: &[&str]) -> Result<String, InstantiateError> {
    let args = || type_args.iter().copied();
    let len = mangled_len(base, args()).ok_or(InstantiateError::OutOfMemory { bytes: usize::MAX })?;
    let mut name = String::new();
    name.try_reserve_exact(len).map_err(|_| InstantiateError::OutOfMemory { bytes: len })?;
    let _ = write_mangled(&mut name, base, args());
    Ok(name)
}

/// One module's offer: the version read (weakly: looking at a module's note must not keep it
/// from leaving the cache; only instantiating from it does, see `kept`) and its metadata.
struct Offer {
    module: Weak<SharedModule>,
    metadata: ModuleMetadata,
}

/// A name of a batch before the batch is installed: there already, or staged from a module.
enum Answer {
    Ready(usize),
    /// Staged from this module, this many bytes of code.
    Staged(Arc<SharedModule>, usize),
}

/// What a claimed name is compiled from.
struct Plan {
    module: Arc<SharedModule>,
    possible: Possible,
}

/// Load-time instantiation over a [`ModuleCache`] (see the module documentation).
///
/// ```
/// use std::sync::Arc;
///
/// use smf::cache::ModuleCache;
/// use smf::instantiate::{Generics, Request};
/// use smf::runtime::instantiate::InstantiatorConfig;
///
/// // The runtime's compiler: machine code for the template a request names (here, x86-64's
/// // `mov rax, rdi; ret` for identity, whatever the type).
/// let compile = |_: &Generics, request: &Request<'_>| match request.template {
///     "identity" => Ok(vec![0x48, 0x89, 0xF8, 0xC3]),
///     other => Err(format!("no template {other}")),
/// };
/// let generics = Generics::new(Arc::new(ModuleCache::new(0, 0)), InstantiatorConfig::default(), compile);
/// let path = std::path::Path::new("../examples/generics.smf");
/// // SAFETY: the compiler above emits `fn(i64) -> i64` for identity.
/// let identity = unsafe { generics.function::<extern "C" fn(i64) -> i64>(path, "identity$i64") }?;
/// # #[cfg(target_arch = "x86_64")]
/// assert_eq!(identity.get()(7), 7);
/// # Ok::<(), smf::runtime::instantiate::InstantiateError>(())
/// ```
pub struct Generics {
    /// What its locks guard (apart, so that a fork can keep it alive while holding them).
    locked: Arc<Locked>,
    cache: Arc<ModuleCache>,
    compiler: Box<dyn Compiler>,
    /// Tells this `Generics`'s per-thread stacks from other `Generics`s'.
    id: u64,
}

/// A `Generics`'s state under its locks: `index` is taken before `offers`, never after; the
/// others (the instantiator's included) alone.
struct Locked {
    /// The instantiated functions as debuggers see them (first: dropped, so unregistered,
    /// before the code is freed with the instantiator).
    described: Mutex<Vec<crate::debug::Registration>>,
    instantiator: Instantiator<'static>,
    offers: Mutex<HashMap<PathBuf, Offer>>,
    /// Which cached module offers a name.
    index: Mutex<OfferIndex>,
    /// Modules instantiated from, kept while the code lives.
    kept: Mutex<Vec<Arc<SharedModule>>>,
}

/// A `Locked`'s locks, all held.
type HeldLocks = (
    MutexGuard<'static, OfferIndex>,
    MutexGuard<'static, HashMap<PathBuf, Offer>>,
    MutexGuard<'static, Vec<Arc<SharedModule>>>,
    MutexGuard<'static, Vec<crate::debug::Registration>>,
    smf_runtime::instantiate::Held<'static, 'static>,
);

impl crate::fork::Hold for Locked {
    fn hold(&'static self) -> Box<dyn std::any::Any> {
        let index = lock(&self.index);
        let offers = lock(&self.offers);
        let kept = lock(&self.kept);
        let described = lock(&self.described);
        let held: HeldLocks = (index, offers, kept, described, self.instantiator.hold());
        Box::new(held)
    }

    /// Names the parent's other threads were compiling are free again in the child.
    fn in_child(&self, held: &mut dyn std::any::Any) {
        if let Some(held) = held.downcast_mut::<HeldLocks>() {
            held.4.forget_other_threads(this_thread());
        }
    }
}

impl Drop for Generics {
    /// The debuggers' descriptions and the modules kept taken out under their locks and let go
    /// here: a fork on another thread may be keeping the locked state alive a moment longer, and
    /// its last reference must not release modules inside the fork's handlers.
    fn drop(&mut self) {
        drop(std::mem::take(&mut *lock(&self.locked.described)));
        drop(std::mem::take(&mut *lock(&self.locked.kept)));
    }
}

impl std::fmt::Debug for Generics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generics").field("instantiator", &self.locked.instantiator).finish_non_exhaustive()
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// Names this thread is instantiating, per `Generics` id, outermost first. Its address is the
    /// thread's token for the instantiator: unique among live threads (a token is only ever
    /// compared with those of threads compiling or waiting now).
    static STACKS: RefCell<Vec<(u64, Vec<Box<str>>)>> = const { RefCell::new(Vec::new()) };
}

/// This thread's token for the instantiator (see `STACKS`).
fn this_thread() -> u64 {
    STACKS.with(|cell| std::ptr::from_ref(cell) as u64)
}

/// Pushes a name on this thread's stack for a `Generics` while alive; pops it when dropped (also
/// when the compiler panics).
struct Pushed(u64);

impl Pushed {
    /// Fails only when there is no memory for a copy of the name (which may be long).
    fn new(id: u64, name: &str) -> Result<Self, InstantiateError> {
        let out_of_memory = |bytes| InstantiateError::OutOfMemory { bytes };
        let mut copy = String::new();
        copy.try_reserve_exact(name.len()).map_err(|_| out_of_memory(name.len()))?;
        copy.push_str(name);
        let copy = copy.into_boxed_str();
        let room = std::mem::size_of::<(u64, Vec<Box<str>>)>();
        STACKS.with_borrow_mut(|stacks| {
            if let Some((_, stack)) = stacks.iter_mut().find(|(generics, _)| *generics == id) {
                stack.try_reserve(1).map_err(|_| out_of_memory(room))?;
                stack.push(copy);
                return Ok(());
            }
            let mut stack = Vec::new();
            stack.try_reserve_exact(1).map_err(|_| out_of_memory(room))?;
            stacks.try_reserve(1).map_err(|_| out_of_memory(room))?;
            stack.push(copy);
            stacks.push((id, stack));
            Ok(())
        })?;
        Ok(Self(id))
    }
}

impl Drop for Pushed {
    fn drop(&mut self) {
        STACKS.with_borrow_mut(|stacks| {
            if let Some(at) = stacks.iter().position(|(generics, _)| *generics == self.0) {
                stacks[at].1.pop();
                if stacks[at].1.is_empty() {
                    stacks.swap_remove(at);
                }
            }
        });
    }
}

impl Generics {
    /// Instantiation over `cache`'s modules with `config`, compiling with `compiler`.
    pub fn new(
        cache: Arc<ModuleCache>,
        config: InstantiatorConfig,
        compiler: impl Compiler + 'static,
    ) -> Self {
        let locked = Arc::new(Locked {
            described: Mutex::new(Vec::new()),
            instantiator: Instantiator::new(crate::process::exec(), config),
            offers: Mutex::new(HashMap::new()),
            index: Mutex::new(OfferIndex::new()),
            kept: Mutex::new(Vec::new()),
        });
        crate::fork::hold_object_at_fork(crate::fork::Object::Instantiator, &locked);
        Self { locked, cache, compiler: Box::new(compiler), id: NEXT_ID.fetch_add(1, Ordering::Relaxed) }
    }

    /// Its settings.
    pub fn config(&self) -> InstantiatorConfig {
        self.locked.instantiator.config()
    }

    /// Its counters.
    pub fn stats(&self) -> InstantiatorStats {
        self.locked.instantiator.stats()
    }

    /// Limits the number of instantiations kept (more fail with [`InstantiateError::LimitReached`]).
    pub fn set_max_instantiations(&self, limit: usize) {
        self.locked.instantiator.set_max_instantiations(limit);
    }

    /// The code of `name` as the module at `path` offers it, compiled on first request (see
    /// the module documentation of [`smf_runtime::instantiate`] for the order of checks). A name already
    /// instantiated is returned whatever `path` says.
    pub fn instantiate(&self, path: &Path, name: &str) -> Result<usize, InstantiateError> {
        let begun = self
            .with_caller(|caller| self.locked.instantiator.begin(name, caller, || self.plan(path, name)))?;
        let (claim, plan) = match begun {
            Begun::Ready(address) => return Ok(address),
            Begun::Claimed(claim, plan) => (claim, plan),
        };
        let (address, len) = match self.compile(path, name, &plan) {
            Ok(code) => (claim.install(&code)?, code.len()),
            Err(error) => return Err(claim.fail(error)),
        };
        self.installed(path, name, &plan.module, address, len)?;
        Ok(address)
    }

    /// [`Generics::instantiate`] of each of `names` from the module at `path`, the code of all those
    /// compiled here installed together (one write into executable memory, or one sealed
    /// batch, instead of one per name): each name's outcome, in order. A name already
    /// instantiated is answered at once; one being compiled by another thread is waited for
    /// (the batch is installed first, so a thread waiting for one of its names is never
    /// stalled); a compile asking for a name the batch compiled gets it installed at once.
    /// Fails as a whole only when there is no memory to track `names`.
    pub fn instantiate_many(
        &self,
        path: &Path,
        names: &[&str],
    ) -> Result<Vec<Result<usize, InstantiateError>>, InstantiateError> {
        let (mut answers, mut outcomes) = (Vec::new(), Vec::new());
        let bytes = names.len().saturating_mul(2 * std::mem::size_of::<Result<Answer, InstantiateError>>());
        answers.try_reserve_exact(names.len()).map_err(|_| InstantiateError::OutOfMemory { bytes })?;
        outcomes.try_reserve_exact(names.len()).map_err(|_| InstantiateError::OutOfMemory { bytes })?;
        let thread = self.with_caller(|caller| Ok(caller.thread))?;
        let staging = self.locked.instantiator.staging(thread);
        // Once the module fails to load (or memory runs out), the names after it are not
        // tried again: those instantiated already answer, the others get that error.
        let mut module_failure: Option<InstantiateError> = None;
        for &name in names {
            let answer: Result<Answer, InstantiateError> = match &module_failure {
                Some(error) => self
                    .with_caller(|caller| self.locked.instantiator.cached(name.as_bytes(), caller))
                    .and_then(|found| found.map(Answer::Ready).ok_or_else(|| error.clone())),
                None => self.stage(path, name, &staging),
            };
            if let Err(error @ (InstantiateError::Module(_) | InstantiateError::OutOfMemory { .. })) = &answer
            {
                module_failure.get_or_insert_with(|| error.clone());
            }
            answers.push(answer);
        }
        let _ = staging.finish();
        let outcome = |(name, answer): (&&str, Result<Answer, InstantiateError>)| match answer? {
            Answer::Ready(address) => Ok(address),
            Answer::Staged(module, len) => match self.locked.instantiator.outcome(name) {
                Some(Ok(address)) => self.installed(path, name, &module, address, len).map(|()| address),
                Some(Err(error)) => Err(error),
                // Neither published nor its failure recorded: only memory stops both.
                None => Err(InstantiateError::OutOfMemory { bytes: 0 }),
            },
        };
        outcomes.extend(names.iter().zip(answers).map(outcome));
        Ok(outcomes)
    }

    /// One name of a batch: its address if it is there, or its code compiled and staged.
    fn stage(
        &self,
        path: &Path,
        name: &str,
        staging: &Staging<'_, 'static>,
    ) -> Result<Answer, InstantiateError> {
        let begun = self
            .with_caller(|caller| self.locked.instantiator.begin(name, caller, || self.plan(path, name)))?;
        let (claim, plan) = match begun {
            Begun::Ready(address) => return Ok(Answer::Ready(address)),
            Begun::Claimed(claim, plan) => (claim, plan),
        };
        match self.compile(path, name, &plan) {
            Ok(code) => staging.stage(claim, &code).map(|()| Answer::Staged(plan.module, code.len())),
            Err(error) => Err(claim.fail(error)),
        }
    }

    /// The compiler's code for the claimed `name`, as `plan` says.
    fn compile(&self, path: &Path, name: &str, plan: &Plan) -> Result<Cow<'_, [u8]>, InstantiateError> {
        let template_bytes = plan.module.loaded().template(plan.possible.template.as_bytes());
        let request = Request {
            name,
            template: &plan.possible.template,
            type_args: &plan.possible.type_args,
            template_bytes,
            module: &plan.module,
            path,
        };
        let _pushed = Pushed::new(self.id, name)?;
        self.compiler.compile(self, &request).map_err(compile_error)
    }

    /// After `name`'s code from `module` (at `path`) is installed at `address` (`len` bytes):
    /// keeps the module while the code lives, describes the function to debuggers and
    /// profilers as the process asks, and records the instantiation in its metadata.
    fn installed(
        &self,
        path: &Path,
        name: &str,
        module: &Arc<SharedModule>,
        address: usize,
        len: usize,
    ) -> Result<(), InstantiateError> {
        self.keep(module);
        let arch = module.loaded().arch();
        let registration = crate::debug::register_function(name.as_bytes(), address, len, arch, path);
        if !registration.is_empty() {
            let mut described = crate::sync::lock(&self.locked.described);
            // Debug information is best-effort: without memory for it, the function runs undescribed.
            if described.try_reserve(1).is_ok() {
                described.push(registration);
            }
        }
        if self.config().update_metadata {
            self.record(path, name)?;
        }
        Ok(())
    }

    /// [`Generics::instantiate`], as the function pointer type `F`, borrowing the `Generics` so that the
    /// code lives while the handle does.
    ///
    /// # Safety
    /// `F` is an `extern "C" fn` type whose signature is the instantiated function's (what the
    /// compiler emitted for `name`).
    #[allow(unsafe_code)]
    pub unsafe fn function<F: Copy>(
        &self,
        path: &Path,
        name: &str,
    ) -> Result<Function<'_, F>, InstantiateError> {
        self.instantiate(path, name)?;
        // SAFETY: forwarded to our caller's contract.
        let function = unsafe { self.locked.instantiator.function::<F>(name) };
        function.ok_or(InstantiateError::Compile(CompileFailure::NotAFunctionPointer))
    }

    /// The instantiator underneath (its code, counters and lock-free lookups).
    pub fn instantiator(&self) -> &Instantiator<'static> {
        &self.locked.instantiator
    }

    /// The first checks of [`Generics::instantiate`] without a lock or the module: disabled, the
    /// depth limit, then the address if `name` is instantiated (`Ok(None)` if not yet).
    pub fn instantiated(&self, name: &[u8]) -> Result<Option<usize>, InstantiateError> {
        self.with_caller(|caller| self.locked.instantiator.cached(name, caller))
    }

    /// Runs `f` with this thread as the instantiator's caller (its token and its stack of
    /// names being instantiated by this `Generics`). The stack is copied, not borrowed, while `f`
    /// runs: `f` may load a module whose resolver re-enters the library on this thread.
    fn with_caller<T>(
        &self,
        f: impl FnOnce(Caller<'_>) -> Result<T, InstantiateError>,
    ) -> Result<T, InstantiateError> {
        let thread = this_thread();
        let stack = STACKS.with(|cell| {
            let stacks = cell.borrow();
            let mut copy: Vec<Box<str>> = Vec::new();
            if let Some((_, stack)) = stacks.iter().find(|(generics, _)| *generics == self.id) {
                let bytes = stack.len().saturating_mul(std::mem::size_of::<Box<str>>());
                copy.try_reserve_exact(stack.len()).map_err(|_| InstantiateError::OutOfMemory { bytes })?;
                copy.extend(stack.iter().cloned());
            }
            Ok(copy)
        })?;
        f(Caller { thread, stack: &stack })
    }

    /// Whether this thread is inside a compile of this `Generics` (its callback running).
    pub fn compiling_here(&self) -> bool {
        STACKS.with_borrow(|stacks| stacks.iter().any(|(generics, _)| *generics == self.id))
    }

    /// Whether `path`'s module offers `name`, and from which version (read through the cache).
    fn plan(&self, path: &Path, name: &str) -> Result<Option<Plan>, InstantiateError> {
        let module = self.cache.get(path).map_err(module_error)?;
        let mut offers = lock(&self.locked.offers);
        let offer = self.current_offer(&mut offers, path, &module)?;
        Ok(offer.metadata.possible(name)?.map(|possible| Plan { module, possible }))
    }

    /// `path`'s offer for the version `module` (read anew if the file changed: names recorded
    /// that the new version still offers stay recorded).
    fn current_offer<'o>(
        &self,
        offers: &'o mut HashMap<PathBuf, Offer>,
        path: &Path,
        module: &Arc<SharedModule>,
    ) -> Result<&'o mut Offer, InstantiateError> {
        // The weak reference keeps the old version's allocation, so its address is not reused.
        let current = offers.get(path).map(|offer| std::ptr::eq(offer.module.as_ptr(), Arc::as_ptr(module)));
        match current {
            Some(true) => {}
            Some(false) => {
                let mut fresh = Offer::read(module, path)?;
                let old = offers.get(path).map(|offer| &offer.metadata);
                for name in old.into_iter().flat_map(ModuleMetadata::recorded) {
                    fresh.metadata.record(name)?;
                }
                offers.insert(path.to_path_buf(), fresh);
            }
            None => {
                let fresh = Offer::read(module, path)?;
                offers
                    .try_reserve(1)
                    .map_err(|_| InstantiateError::OutOfMemory { bytes: std::mem::size_of::<Offer>() })?;
                offers.insert(path.to_path_buf(), fresh);
            }
        }
        offers.get_mut(path).ok_or(InstantiateError::NotFound)
    }

    fn keep(&self, module: &Arc<SharedModule>) {
        let mut kept = lock(&self.locked.kept);
        if !kept.iter().any(|k| Arc::ptr_eq(k, module)) {
            kept.push(Arc::clone(module));
        }
    }

    fn record(&self, path: &Path, name: &str) -> Result<(), InstantiateError> {
        let mut offers = lock(&self.locked.offers);
        let Some(offer) = offers.get_mut(path) else { return Ok(()) };
        offer.metadata.record(name)
    }

    /// The note.sdn text of the module at `path` as it stands (instantiated entries moved from
    /// "possible" to "instantiations", status `jit_compiled`), with its terminator line;
    /// `None` if there is no file at `path`. A module without a note gives an empty one.
    pub fn note_sdn(&self, path: &Path) -> Result<Option<String>, InstantiateError> {
        let module = match self.cache.get(path) {
            Ok(module) => module,
            Err(ModuleError::Io(_, e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(module_error(e)),
        };
        let mut offers = lock(&self.locked.offers);
        let offer = self.current_offer(&mut offers, path, &module)?;
        Ok(Some(offer.metadata.to_text()?))
    }

    /// The runtime's symbol lookup with instantiation as the fallback: an export of a cached
    /// module (most recently used first, by the cache's recency list), else a name already
    /// instantiated, else an instantiation from the first cached module (the same order) whose
    /// "possible" table lists `name`, found through an index of every cached module's offers: a
    /// name no module offers costs a hash lookup, not a pass over the notes.
    pub fn resolve(&self, name: &str) -> Result<usize, InstantiateError> {
        if let Some(address) = self.cache.resolve(name.as_bytes()) {
            return Ok(address);
        }
        if let Some(address) = self.locked.instantiator.lookup(name) {
            return Ok(address);
        }
        match self.offering(name)? {
            Some(path) => self.instantiate(&path, name),
            None => Err(InstantiateError::NotFound),
        }
    }

    /// The path of the cached module (most recently used first) whose offer lists `name`.
    fn offering(&self, name: &str) -> Result<Option<PathBuf>, InstantiateError> {
        let mut index = lock(&self.locked.index);
        let generation = self.cache.generation();
        if !index.is_current(generation) {
            let cached = self.cache.modules();
            let mut offers = lock(&self.locked.offers);
            index.sync(generation, &cached, |path, module, each| {
                self.current_offer(&mut offers, path, module)?.metadata.offered().for_each(each);
                Ok(())
            })?;
        }
        {
            let offers = lock(&self.locked.offers);
            let offered = |path: &Path| offers.get(path).is_some_and(|offer| offer.metadata.offers(name));
            let mut found = index.candidates(name).filter(|path| offered(path));
            match (found.next(), found.next()) {
                (None, _) => return Ok(None),
                (Some(only), None) => return Ok(Some(only.to_path_buf())),
                (Some(_), Some(_)) => {}
            }
        }
        drop(index);
        // Several modules offer it: the most recently used one answers.
        let cached = self.cache.modules();
        let offers = lock(&self.locked.offers);
        let offered = |path: &Path| offers.get(path).is_some_and(|offer| offer.metadata.offers(name));
        Ok(cached.into_iter().map(|(path, _)| path).find(|path| offered(path)))
    }

    /// [`Generics::resolve`] of `base` with `type_args`, mangled as Simple does ([`mangle`]).
    pub fn resolve_generic(&self, base: &str, type_args: &[&str]) -> Result<usize, InstantiateError> {
        self.resolve(&try_mangle(base, type_args)?)
    }
}

/// The instantiator's error for a failed compile: the compiler's own error, kept typed.
fn compile_error(error: CompileError) -> InstantiateError {
    InstantiateError::Compile(CompileFailure::Compiler(CompilerError::from(error)))
}

/// The instantiator's error for a module that did not load: out of memory as such, anything
/// else as the loader's own error ([`InstantiateError::Module`], which gives it back with
/// `downcast_ref::<ModuleError>()`).
fn module_error(error: ModuleError) -> InstantiateError {
    use smf_runtime::load::LoadError;
    let read = |e: &std::io::Error| crate::file::read_error(e).copied();
    match error {
        ModuleError::Load(_, LoadError::OutOfMemory { bytes }) => InstantiateError::OutOfMemory { bytes },
        ModuleError::Io(_, ref e) if e.kind() == std::io::ErrorKind::OutOfMemory => {
            let bytes = match read(e) {
                Some(ReadError::OutOfMemory { bytes }) => usize::try_from(bytes).unwrap_or(usize::MAX),
                _ => 0,
            };
            InstantiateError::OutOfMemory { bytes }
        }
        error => InstantiateError::Module(ModuleUnavailable::new(error)),
    }
}

impl Offer {
    fn read(module: &Arc<SharedModule>, path: &Path) -> Result<Self, InstantiateError> {
        let note = module.loaded().note_sdn().and_then(|bytes| std::str::from_utf8(bytes).ok());
        let metadata = ModuleMetadata::new(note, &path.to_string_lossy())?;
        Ok(Self { module: Arc::downgrade(module), metadata })
    }
}
