//! Typed handles to code: the one place an address of code becomes a function pointer
//! ([`function_pointer`], which every caller of code by address goes through). [`Function`]
//! borrows what owns the code (a sealed [`super::Block`], a loaded module), so the code cannot
//! be freed while the handle exists.

#![allow(unsafe_code)]

use core::fmt;
use core::marker::PhantomData;

/// A function at an address of sealed code, as the function pointer type `F` (an
/// `extern "C" fn(...) -> ...`), valid while the owner it borrows (`'o`) lives.
pub struct Function<'o, F> {
    pointer: F,
    owner: PhantomData<&'o ()>,
}

impl<F: Copy> Clone for Function<'_, F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F: Copy> Copy for Function<'_, F> {}

impl<F> fmt::Debug for Function<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Function").finish_non_exhaustive()
    }
}

impl<'o, F: Copy> Function<'o, F> {
    /// The function at `addr` as `F`; `None` if `F` is not the size of an address (not a
    /// function pointer type).
    ///
    /// # Safety
    /// `addr` is the entry of a function in sealed code that lives at least as long as `'o`,
    /// and `F` is a function pointer type whose signature and ABI are that function's.
    pub(crate) unsafe fn at(addr: usize) -> Option<Self> {
        // SAFETY: forwarded to our caller's contract; the owner's lifetime bounds the handle.
        let pointer = unsafe { function_pointer::<F>(addr) }?;
        Some(Self { pointer, owner: PhantomData })
    }

    /// The function pointer, to call. The code stays valid while the owner lives; a copy kept
    /// beyond that must not be called.
    pub const fn get(&self) -> F {
        self.pointer
    }
}

/// The function at `addr` as the function pointer type `F` (an `extern "C" fn(...) -> ...`):
/// `None` if `F` is not the size of an address (not a function pointer type) or `addr` is 0.
/// Where an owner is at hand, prefer the borrowing [`Function`].
///
/// # Safety
/// `addr` is the entry of a function whose signature and ABI are `F`'s, in code that stays
/// mapped and executable for as long as the pointer is called.
pub unsafe fn function_pointer<F: Copy>(addr: usize) -> Option<F> {
    if core::mem::size_of::<F>() != core::mem::size_of::<usize>() || addr == 0 {
        return None;
    }
    // SAFETY: `F` is a function pointer type (the caller's contract) of the size of an address,
    // and `addr` is a function of that type (likewise).
    Some(unsafe { core::mem::transmute_copy::<usize, F>(&addr) })
}
