//! The RWX debugging switch, in a test binary of its own: its pages are writable and
//! executable on purpose, and every other test asserts that no such mapping exists in its
//! process while tests run in parallel threads.

#![allow(unsafe_code)]

use smf_runtime::exec::{ExecAllocator, ExecConfig};
use smf_runtime::sys::Protection;
use smf_tests::{return_const, return_const_patch};

#[test]
fn rwx_pages_exist_only_with_the_explicit_switch() {
    let exec = ExecAllocator::new(ExecConfig { allow_rwx: true, ..ExecConfig::default() });
    let mut batch = exec.batch();
    let block = batch.install(&return_const(5), 16).unwrap();
    assert_eq!(exec.protection_at(block.addr()), Some(Protection::ReadWriteExec));
    batch.seal().unwrap();
    let (offset, bytes) = return_const_patch(6);
    exec.patch(&block, offset, &bytes).unwrap();
    assert_eq!(smf_tests::call(&block), 6);
    assert_eq!(exec.stats().patches, 0, "RWX mode patches in place");
}
