//! The `SMF_JIT_*` return codes of the instantiation exports (`smf_jit_*`, named by the C ABI
//! the runtime links against), and the code of each instantiation error: here, apart from the
//! exports, so that the failure handling every export shares can use them too.

use smf_runtime::instantiate::InstantiateError;

/// Success.
pub const SMF_JIT_OK: i32 = 0;
/// Disabled, or no module offers the name.
pub const SMF_JIT_NOT_FOUND: i32 = 1;
/// The name is already being instantiated by its own chain of dependencies.
pub const SMF_JIT_CIRCULAR: i32 = 2;
/// The compiler failed, or its code could not be installed.
pub const SMF_JIT_COMPILE_ERROR: i32 = 3;
/// The code is installed but the module's metadata could not be updated.
pub const SMF_JIT_UPDATE_FAILED: i32 = 4;
/// The depth limit was reached.
pub const SMF_JIT_DEPTH_EXCEEDED: i32 = 5;
/// Extension: the module file is missing, unreadable or malformed.
pub const SMF_JIT_MODULE_ERROR: i32 = 6;
/// Extension: the instantiation limit (`smf_jit_set_max_instantiations`) is reached.
pub const SMF_JIT_LIMIT_REACHED: i32 = 7;
/// Extension: memory could not be had (the message says how much).
pub const SMF_JIT_OUT_OF_MEMORY: i32 = 8;
/// Extension: a bad argument (NULL, not a live handle, a name that is not UTF-8).
pub const SMF_JIT_INVALID_ARGUMENT: i32 = -1;

/// The code of an error.
pub(crate) fn code_of(error: &InstantiateError) -> i32 {
    match error {
        InstantiateError::NotFound => SMF_JIT_NOT_FOUND,
        InstantiateError::Circular { .. } => SMF_JIT_CIRCULAR,
        InstantiateError::Compile(_) | InstantiateError::Install(_) => SMF_JIT_COMPILE_ERROR,
        InstantiateError::UpdateFailed { .. } => SMF_JIT_UPDATE_FAILED,
        InstantiateError::DepthExceeded { .. } => SMF_JIT_DEPTH_EXCEEDED,
        InstantiateError::Module(_) => SMF_JIT_MODULE_ERROR,
        InstantiateError::LimitReached { .. } => SMF_JIT_LIMIT_REACHED,
        InstantiateError::OutOfMemory { .. } => SMF_JIT_OUT_OF_MEMORY,
    }
}
