//! Calling a loaded module's functions from Rust by name, with integer and floating-point
//! arguments in C's registers: [`SharedModule::call`] and its integer shorthands, [`CallArg`],
//! [`CallError`].

use super::SharedModule;

impl SharedModule {
    /// Calls the exported function `name`, or the entry point for `None`, with up to six
    /// integer arguments (missing ones are zero: the C calling conventions of x86-64 and aarch64
    /// ignore unused argument registers), and returns its integer result. The module lives
    /// until the call returns (`self` is borrowed for it).
    ///
    /// # Safety
    /// The function takes at most six integer arguments and returns an integer.
    #[allow(unsafe_code)]
    pub unsafe fn call_integers(&self, name: Option<&[u8]>, args: &[i64]) -> Result<i64, CallError> {
        // SAFETY: forwarded to our caller's contract.
        unsafe { self.call_returning::<i64>(name, args) }
    }

    /// As [`SharedModule::call_integers`], for a function whose result is an `R` (`i64` or
    /// `f64`: a C `long` or `double`).
    ///
    /// # Safety
    /// The function takes at most six integer arguments and returns an `R`.
    #[allow(unsafe_code)]
    pub unsafe fn call_returning<R: Copy>(&self, name: Option<&[u8]>, args: &[i64]) -> Result<R, CallError> {
        if args.len() > MAX_INTEGER_ARGS {
            return Err(CallError::TooManyArguments(args.len()));
        }
        let mut all = [CallArg::Int(0); MAX_INTEGER_ARGS];
        for (slot, value) in all.iter_mut().zip(args) {
            *slot = CallArg::Int(*value);
        }
        // SAFETY: forwarded to our caller's contract.
        unsafe { self.call(name, &all[..args.len()]) }
    }

    /// Calls the exported function `name`, or the entry point for `None`, with integer and
    /// floating-point arguments in C's order, and returns its result as an `R` (an integer type
    /// of 64 bits, `f64` or `f32`; a narrower C integer is the low bits of an `i64`). Up to six
    /// integer and eight floating-point arguments: C passes each kind in registers of its own
    /// (x86-64 and aarch64 alike), so `long f(long, double, long)` is called with
    /// `[Int, F64, Int]`. Not for variadic functions. The module lives until the call returns.
    ///
    /// # Safety
    /// The function's parameters are, in order, the kinds of `args` (an integer or pointer for
    /// [`CallArg::Int`], a `double` for [`CallArg::F64`], a `float` for [`CallArg::F32`]), and
    /// it returns an `R`.
    ///
    /// ```no_run
    /// use smf::loader::{CallArg, SharedModule};
    /// # fn scale(module: &SharedModule) -> Result<(), smf::loader::CallError> {
    /// // SAFETY: scale is `double scale(long count, double factor)` in this module.
    /// let scaled: f64 = unsafe { module.call(Some(b"scale"), &[CallArg::Int(3), CallArg::F64(1.5)]) }?;
    /// # Ok(()) }
    /// ```
    #[allow(unsafe_code)]
    pub unsafe fn call<R: Copy>(&self, name: Option<&[u8]>, args: &[CallArg]) -> Result<R, CallError> {
        let mut integers = [0i64; MAX_INTEGER_ARGS];
        let mut floats = [0f64; MAX_FLOAT_ARGS];
        let (mut i, mut f) = (0, 0);
        for arg in args {
            let float = match *arg {
                CallArg::Int(value) => {
                    if let Some(slot) = integers.get_mut(i) {
                        *slot = value;
                    }
                    i += 1;
                    continue;
                }
                CallArg::F64(value) => value,
                // A float travels in the low 32 bits of its register.
                CallArg::F32(value) => f64::from_bits(u64::from(value.to_bits())),
            };
            if let Some(slot) = floats.get_mut(f) {
                *slot = float;
            }
            f += 1;
        }
        if i > MAX_INTEGER_ARGS {
            return Err(CallError::TooManyArguments(i));
        }
        if f > MAX_FLOAT_ARGS {
            return Err(CallError::TooManyFloatArguments(f));
        }
        let lossy = |name: &[u8]| String::from_utf8_lossy(name).into_owned();
        let function = match name {
            None => {
                // SAFETY: the signature is the caller's contract (the unused registers are
                // ignored by the callee); the handle borrows the module.
                let entry = unsafe { self.loaded.entry_function::<RegisterCall<R>>() };
                entry.ok_or(CallError::NoEntryPoint)?
            }
            Some(name) => {
                if self.loaded.symbols().lookup(name).is_none() {
                    return Err(CallError::NoSuchSymbol(crate::kept::kept_lossy(name)));
                }
                // SAFETY: as above.
                let function = unsafe { self.loaded.function::<RegisterCall<R>>(name) };
                function.ok_or_else(|| CallError::NotAFunction(lossy(name)))?
            }
        };
        let (n, x) = (integers, floats);
        let call = || {
            function.get()(n[0], n[1], n[2], n[3], n[4], n[5], x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7])
        };
        crate::catch::catching(call).ok_or_else(|| CallError::Exception {
            function: name.map(lossy),
            type_name: crate::catch::caught_type(),
        })
    }
}

/// One argument of [`SharedModule::call`], as C passes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CallArg {
    /// An integer or pointer (any C integer type: the callee reads the low bits it needs).
    Int(i64),
    /// A `double`.
    F64(f64),
    /// A `float`.
    F32(f32),
}

/// Integer arguments [`SharedModule::call`] passes (the integer argument registers both
/// x86-64's System V convention and aarch64's have, at the fewest).
pub const MAX_INTEGER_ARGS: usize = 6;
/// Floating-point arguments [`SharedModule::call`] passes (x86-64's and aarch64's eight vector
/// argument registers).
pub const MAX_FLOAT_ARGS: usize = 8;

/// A C function called with every argument register set: six integer, eight floating-point
/// (a callee reads those its own parameters use, by kind and in order).
type RegisterCall<R> =
    extern "C-unwind" fn(i64, i64, i64, i64, i64, i64, f64, f64, f64, f64, f64, f64, f64, f64) -> R;

/// Why [`SharedModule::call_integers`] did not call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    /// More than six integer arguments.
    TooManyArguments(usize),
    /// More than eight floating-point arguments.
    TooManyFloatArguments(usize),
    /// The module has no entry point.
    NoEntryPoint,
    /// No exported symbol of this name.
    NoSuchSymbol(String),
    /// The symbol is not a function.
    NotAFunction(String),
    /// An exception (C++'s, or another language's but Rust's) escaped a function: caught at
    /// the call and discarded, as `catch (...) {}` would.
    Exception {
        /// The function called (`None`: the entry point).
        function: Option<String>,
        /// A C++ exception's type, as its runtime names it (`std::type_info::name()`, the
        /// mangled form: `St13runtime_error`), if it does.
        type_name: Option<String>,
    },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::TooManyArguments(n) => {
                write!(f, "{n} integer arguments: at most {MAX_INTEGER_ARGS} are supported")
            }
            CallError::TooManyFloatArguments(n) => {
                write!(f, "{n} floating-point arguments: at most {MAX_FLOAT_ARGS} are supported")
            }
            CallError::NoEntryPoint => f.write_str("no entry point"),
            CallError::NoSuchSymbol(name) => write!(f, "no exported symbol `{name}`"),
            CallError::NotAFunction(name) => write!(f, "`{name}` is not a function"),
            CallError::Exception { function, type_name } => {
                f.write_str("an exception")?;
                if let Some(type_name) = type_name {
                    write!(f, " of C++ type `{type_name}`")?;
                }
                match function {
                    Some(name) => write!(f, " escaped `{name}`")?,
                    None => f.write_str(" escaped the entry point")?,
                }
                f.write_str(" (caught at the call and discarded)")
            }
        }
    }
}

impl std::error::Error for CallError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exception_names_the_function_it_escaped_and_the_entry_point_in_words() {
        let named = CallError::Exception { function: Some("parse".to_owned()), type_name: None }.to_string();
        assert_eq!(named, "an exception escaped `parse` (caught at the call and discarded)");
        let entry = CallError::Exception { function: None, type_name: None }.to_string();
        assert_eq!(entry, "an exception escaped the entry point (caught at the call and discarded)");
        let typed = CallError::Exception { function: None, type_name: Some("St13runtime_error".to_owned()) };
        assert_eq!(
            typed.to_string(),
            "an exception of C++ type `St13runtime_error` escaped the entry point (caught at the call and discarded)"
        );
    }
}
