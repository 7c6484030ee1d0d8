//! Process-wide state shared by the C ABI and the loader: the executable allocator.
//!
//! Read-write-execute pages exist only when the process sets `SMF_ALLOW_RWX=1` before the
//! first use of the library: a debugging switch (for tools that insist on patching code in
//! place); without it no page this library maps is ever writable and executable.

use std::sync::OnceLock;

use smf_core::exec::{Config, ExecAllocator};

/// The environment variable that opts into read-write-execute pages (debugging only).
pub const ALLOW_RWX_ENV: &str = "SMF_ALLOW_RWX";

static EXEC: OnceLock<ExecAllocator> = OnceLock::new();

/// The process's executable allocator.
pub fn exec() -> &'static ExecAllocator {
    EXEC.get_or_init(|| {
        let allow_rwx = std::env::var_os(ALLOW_RWX_ENV).is_some_and(|v| v == "1");
        ExecAllocator::new(Config { allow_rwx, ..Config::default() })
    })
}
