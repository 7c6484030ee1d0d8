//! The C compiler callback of `smf_jit_new` as a [`Compiler`]: the name and type arguments
//! passed as C strings, the code the callback returns checked (present, at most
//! [`smf_runtime::instantiate::MAX_CODE`] bytes) and borrowed until the install copies it, and the message
//! it gives with `smf_jit_fail` kept per thread for the innermost compile.

use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::{c_char, c_void, CString};

use crate::instantiate::{CompileError, Compiler, Generics, Request};

thread_local! {
    /// The message the running compile gave with `smf_jit_fail`.
    static FAILURE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// `SmfCompileFn`.
pub type SmfCompileFn = unsafe extern "C" fn(
    user: *mut c_void,
    mangled_name: *const c_char,
    type_args: *const c_char,
    template_bytes: *const u8,
    template_len: usize,
    code: *mut *const u8,
    code_len: *mut usize,
) -> i32;

/// Keeps `message` as the running compile's failure (`smf_jit_fail`).
pub(super) fn record_failure(message: String) {
    FAILURE.set(Some(message));
}

/// The C callback as a [`Compiler`].
pub(super) struct CCompiler {
    pub(super) compile: SmfCompileFn,
    pub(super) user: *mut c_void,
}

// SAFETY: the header documents that the callback and `user` may be called from any thread
// that asks for an instantiation; the library only passes `user` back.
unsafe impl Send for CCompiler {}
// SAFETY: as above.
unsafe impl Sync for CCompiler {}

impl Compiler for CCompiler {
    fn compile<'c>(&'c self, _jit: &Generics, request: &Request<'_>) -> Result<Cow<'c, [u8]>, CompileError> {
        let template = request.template_bytes.unwrap_or_default();
        // SAFETY: the header: on success the code is valid until the callback returns to the
        // library, which copies it before returning to C (the borrow ends in
        // `Generics::instantiate`, at the install).
        let code = unsafe { self.call(request.name, request.type_args, template) }?;
        Ok(Cow::Borrowed(code))
    }
}

impl CCompiler {
    /// The callback's code for `name` (of `type_args`, from `template`), or why there is none.
    ///
    /// # Safety
    /// The code is valid only until the callback's next call (the header's contract): the
    /// caller copies it before then.
    unsafe fn call<'c>(
        &'c self,
        name: &str,
        type_args: &str,
        template: &[u8],
    ) -> Result<&'c [u8], CallbackError> {
        let name = CString::new(name).map_err(|_| CallbackError::NulInName)?;
        let type_args = CString::new(type_args).map_err(|_| CallbackError::NulInTypeArgs)?;
        let (mut code, mut code_len) = (std::ptr::null::<u8>(), 0usize);
        let outer = FAILURE.take();
        // SAFETY: the callback's contract (the header): the strings and template bytes are valid
        // for the call, and it writes `code` and `code_len`.
        let status = unsafe {
            (self.compile)(
                self.user,
                name.as_ptr(),
                type_args.as_ptr(),
                template.as_ptr(),
                template.len(),
                &mut code,
                &mut code_len,
            )
        };
        let message = FAILURE.replace(outer);
        if status != 0 {
            return Err(CallbackError::Failed { status, message });
        }
        if code.is_null() || code_len == 0 {
            return Err(CallbackError::NoCode);
        }
        if code_len > smf_runtime::instantiate::MAX_CODE {
            return Err(CallbackError::TooMuchCode(code_len));
        }
        // SAFETY: the header: on success `code` holds `code_len` bytes, valid until the
        // callback's next call (our caller copies them before then).
        Ok(unsafe { std::slice::from_raw_parts(code, code_len) })
    }
}

/// Why the C compiler callback gave no code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum CallbackError {
    /// The mangled name holds a NUL byte (it cannot be passed as a C string).
    NulInName,
    /// The type arguments hold a NUL byte.
    NulInTypeArgs,
    /// The callback returned nonzero, with the message it gave `smf_jit_fail`, if any.
    Failed {
        /// What it returned.
        status: i32,
        /// Its message.
        message: Option<String>,
    },
    /// It returned success but no code.
    NoCode,
    /// It returned more code than [`smf_runtime::instantiate::MAX_CODE`] bytes.
    TooMuchCode(usize),
}

impl std::fmt::Display for CallbackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallbackError::NulInName => f.write_str("the name holds a NUL byte"),
            CallbackError::NulInTypeArgs => f.write_str("the type arguments hold a NUL byte"),
            CallbackError::Failed { message: Some(message), .. } => f.write_str(message),
            CallbackError::Failed { status, message: None } => {
                write!(f, "the compiler returned {status} without a message")
            }
            CallbackError::NoCode => f.write_str("the compiler returned success but no code"),
            CallbackError::TooMuchCode(n) => {
                write!(
                    f,
                    "the compiler returned {n} bytes of code (at most {})",
                    smf_runtime::instantiate::MAX_CODE
                )
            }
        }
    }
}

impl std::error::Error for CallbackError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::c_char;

    /// A callback returning `code` (NULL: none) of `len` bytes, after failing with the message
    /// `smf_jit_fail` takes when `len` is 0 and `code` is not NULL.
    unsafe extern "C" fn scripted(
        user: *mut c_void,
        _name: *const c_char,
        _type_args: *const c_char,
        _template: *const u8,
        _template_len: usize,
        code: *mut *const u8,
        code_len: *mut usize,
    ) -> i32 {
        // SAFETY: `user` is the test's cell of a `(pointer, length)` pair; the out-parameters are
        // the library's.
        unsafe {
            let (bytes, len) = (*user.cast::<std::cell::Cell<(*const u8, usize)>>()).get();
            if len == 0 && !bytes.is_null() {
                record_failure("no generator for this".into());
                return 2;
            }
            *code = bytes;
            *code_len = len;
        }
        0
    }

    fn call(compiler: &CCompiler, name: &str) -> Result<Vec<u8>, CallbackError> {
        // SAFETY: the code is copied at once.
        unsafe { compiler.call(name, "i64", &[]) }.map(<[u8]>::to_vec)
    }

    #[test]
    fn the_callbacks_refusals_are_typed() {
        let code = [0xC3u8; 4];
        let huge = vec![0u8; smf_runtime::instantiate::MAX_CODE + 1];
        let script = std::cell::Cell::new((code.as_ptr(), code.len()));
        let compiler = CCompiler { compile: scripted, user: std::ptr::from_ref(&script).cast_mut().cast() };
        assert_eq!(call(&compiler, "id$i64"), Ok(code.to_vec()));
        assert_eq!(call(&compiler, "id\0$i64"), Err(CallbackError::NulInName));
        // SAFETY: as `call`.
        let nul_args = unsafe { compiler.call("id$i64", "i\0", &[]) }.map(<[u8]>::to_vec);
        assert_eq!(nul_args, Err(CallbackError::NulInTypeArgs));
        script.set((std::ptr::null(), 4));
        assert_eq!(call(&compiler, "id$i64"), Err(CallbackError::NoCode));
        script.set((huge.as_ptr(), huge.len()));
        assert_eq!(call(&compiler, "id$i64"), Err(CallbackError::TooMuchCode(huge.len())));
        script.set((code.as_ptr(), 0));
        let failed = call(&compiler, "id$i64").unwrap_err();
        assert_eq!(
            failed,
            CallbackError::Failed { status: 2, message: Some("no generator for this".into()) }
        );
        assert_eq!(failed.to_string(), "no generator for this");
        let silent = CallbackError::Failed { status: 3, message: None };
        assert_eq!(silent.to_string(), "the compiler returned 3 without a message");
    }
}
