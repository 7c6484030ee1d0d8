//! The constructors stage of a load, and the destructors of a release: the module's
//! constructor and destructor arrays (`docs/format.md`, "Constructors and destructors") read
//! once relocated, every entry checked to point into the module's code before any runs; the
//! constructors run in order once the image is sealed, the destructors in reverse order when the
//! module is released, before its memory is unmapped (what `ld.so` does for `.init_array` and
//! `.fini_array`).

#![allow(unsafe_code)]

use alloc::vec::Vec;
use core::ffi::{c_char, c_int, c_void};
use core::ops::Range;

use super::{fallible, Invariant, LoadError, Overflow};
use crate::exec::Function;
use smf_format::kinds::CALL_ARRAY_ENTRY;
use smf_format::module::DataRegion;
use smf_format::{CallArray, Module};

/// A constructor, as `ld.so` calls one: `(argc, argv, envp)`. C++ code may throw out of it.
type Constructor = extern "C-unwind" fn(c_int, *const *const c_char, *const *const c_char);
/// A destructor: no arguments.
type Destructor = extern "C-unwind" fn();

/// Calls `thunk(context)` and says whether it returned (0) or an exception escaped it (not 0),
/// which the catcher stopped, caught and discarded: what an embedder with an unwinder gives
/// ([`super::LoadOptions::catch`]; the std shell's is `smf::catch`), so that C++ code throwing
/// out of a constructor or destructor fails the load, or is dropped at release, instead of
/// aborting the process. The core, which has no unwinder, calls directly without one.
#[derive(Clone, Copy, Debug)]
pub struct Catcher(pub CatchFn);

/// A [`Catcher`]'s function: `(thunk, context)`, 0 if the thunk returned.
pub type CatchFn =
    unsafe extern "C-unwind" fn(thunk: unsafe extern "C-unwind" fn(*mut c_void), context: *mut c_void) -> u32;

/// The same function (compared by address, which is all a catcher is).
impl PartialEq for Catcher {
    fn eq(&self, other: &Self) -> bool {
        core::ptr::fn_addr_eq(self.0, other.0)
    }
}

impl Eq for Catcher {}

/// The argument and environment vectors constructors get: empty (a module loaded into a running
/// program has no command line of its own; `getenv` still reads the environment).
static NO_STRINGS: [usize; 1] = [0];

/// A module's constructors and destructors, as addresses in its code.
#[derive(Debug, Default)]
pub(super) struct Calls {
    /// In the order they run.
    pub(super) constructors: Vec<usize>,
    /// In array order (they run in reverse).
    pub(super) destructors: Vec<usize>,
}

impl Calls {
    /// Every entry of `module`'s arrays, read from `read_only` (the relocated read-only region of
    /// the data image), each checked to lie in `code` (the module's code addresses). Out of line:
    /// most modules have no arrays (the caller checks [`Module::call_array_count`] first), and
    /// the relocation loop it would join is tight.
    #[inline(never)]
    pub(super) fn collect(
        module: &Module<'_>,
        read_only: &[u8],
        code: Range<usize>,
    ) -> Result<Self, LoadError> {
        let mut calls = Calls::default();
        for (array, placement) in module.call_arrays() {
            // Validation: rodata, whole entries; the layout: inside the read-only region.
            if placement.region != DataRegion::ReadOnly {
                return Err(LoadError::internal(Invariant::CallArrayNotReadOnly));
            }
            let start =
                usize::try_from(placement.offset).map_err(|_| LoadError::too_large(Overflow::DataOffset))?;
            let bytes = start
                .checked_add(placement.section.data.len())
                .and_then(|end| read_only.get(start..end))
                .ok_or_else(|| LoadError::internal(Invariant::CallArrayOutsideReadOnly))?;
            let list = match array {
                CallArray::Constructors => &mut calls.constructors,
                CallArray::Destructors => &mut calls.destructors,
            };
            for (entry, word) in bytes.chunks_exact(CALL_ARRAY_ENTRY).enumerate() {
                let address = word.first_chunk::<8>().map_or(0, |w| u64::from_le_bytes(*w));
                let inside = usize::try_from(address).ok().filter(|a| code.contains(a));
                let Some(address) = inside else {
                    let section = placement.section.index;
                    return Err(LoadError::CallOutsideCode { array, section, entry: entry as u64, address });
                };
                fallible::push(list, address)
                    .ok_or(LoadError::OutOfMemory { bytes: fallible::grown_bytes::<usize>(list.len()) })?;
            }
        }
        Ok(calls)
    }
}

/// One call a thunk makes: the function at `address`, a constructor or a destructor.
struct Call {
    address: usize,
    constructor: bool,
}

/// Makes the [`Call`] `context` points at.
///
/// # Safety
/// `context` points at a live [`Call`] whose address is a function in sealed, mapped code of
/// its kind's signature.
unsafe extern "C-unwind" fn call_thunk(context: *mut c_void) {
    // SAFETY: the caller's contract.
    let call = unsafe { &*context.cast::<Call>() };
    if call.constructor {
        // SAFETY: as above: a constructor.
        if let Some(constructor) = unsafe { Function::<Constructor>::at(call.address) } {
            constructor.get()(0, NO_STRINGS.as_ptr().cast(), NO_STRINGS.as_ptr().cast());
        }
    // SAFETY: as above: a destructor.
    } else if let Some(destructor) = unsafe { Function::<Destructor>::at(call.address) } {
        destructor.get()();
    }
}

/// Makes `call`, through `catch` if there is one; whether it returned (false: an exception
/// escaped it, caught by `catch`).
///
/// # Safety
/// As [`call_thunk`]'s, for `call`.
unsafe fn run(call: Call, catch: Option<Catcher>) -> bool {
    let context = (&raw const call).cast_mut().cast::<c_void>();
    match catch {
        // SAFETY: the thunk and its context, as the catcher's contract has them.
        Some(Catcher(catch)) => unsafe { catch(call_thunk, context) == 0 },
        None => {
            // SAFETY: the caller's contract.
            unsafe { call_without_catcher(context) };
            true
        }
    }
}

/// [`call_thunk`] where no catcher stops exceptions: an exception escaping the call aborts the
/// process here (a function of the C ABI without unwinding cannot be unwound out of), before
/// the loader's frames could be unwound past memory they free (the module's image, which the
/// exception's type information and cleanup may live in).
///
/// # Safety
/// As [`call_thunk`]'s.
unsafe extern "C" fn call_without_catcher(context: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe { call_thunk(context) }
}

/// Runs `constructors`, in order, through `catch` if there is one; `Err(i)` if an exception
/// escaped constructor `i` (those after it are not run).
///
/// # Safety
/// Every address is a function in sealed code that stays mapped during the call (the loaded
/// module's, which the caller holds), whose signature is a constructor's.
pub(super) unsafe fn construct(constructors: &[usize], catch: Option<Catcher>) -> Result<(), usize> {
    for (i, &address) in constructors.iter().enumerate() {
        // SAFETY: the caller's contract: a constructor in sealed, mapped code.
        if !unsafe { run(Call { address, constructor: true }, catch) } {
            return Err(i);
        }
    }
    Ok(())
}

/// Runs `destructors`, in reverse order, through `catch` if there is one (an exception escaping
/// one is dropped there, and the others still run).
///
/// # Safety
/// As [`construct`], for destructors.
pub(super) unsafe fn destruct(destructors: &[usize], catch: Option<Catcher>) {
    for &address in destructors.iter().rev() {
        // SAFETY: the caller's contract: a destructor in sealed, mapped code.
        unsafe { run(Call { address, constructor: false }, catch) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Invariant;
    use smf_format::write::samples;
    use smf_format::Dialect;

    #[test]
    fn an_array_outside_the_placed_read_only_data_is_an_internal_error() {
        let file = samples::call_arrays(Dialect::S128);
        let module = Module::parse(&file).unwrap();
        let error = Calls::collect(&module, &[], 0..0x1000).unwrap_err();
        assert_eq!(error, LoadError::Internal(Invariant::CallArrayOutsideReadOnly));
        // Placed, but holding no relocated addresses: the entries point nowhere in the code.
        let error = Calls::collect(&module, &[0; 64], 0x1000..0x2000).unwrap_err();
        assert!(matches!(error, LoadError::CallOutsideCode { entry: 0, address: 0, .. }), "{error:?}");
    }
}
