//! The GDB JIT interface (GDB's manual, "JIT Compilation Interface"): `__jit_debug_descriptor`
//! heads a list of in-memory object files, one per loaded module, and
//! `__jit_debug_register_code` is the function GDB puts a breakpoint on to hear of each entry
//! added or removed. With it, GDB names module functions in backtraces and `info symbol`, and
//! unwinds through them where the object carries `.eh_frame`; `perf` and LLDB read the same
//! interface.
//!
//! The list is changed under one lock (bookkeeping only: linking an entry and the call GDB
//! breaks on, which returns at once without a debugger). An entry's object lives in the
//! [`Registered`] that added it, and is unlinked before it is freed.

// The interface is C's: a descriptor GDB reads from the process's memory, by its symbol name.
#![allow(unsafe_code, non_upper_case_globals)]

use std::cell::UnsafeCell;
use std::ptr::null_mut;
use std::sync::Mutex;

use crate::sync::lock;

/// An entry of the list GDB reads (`struct jit_code_entry`).
#[repr(C)]
struct JitCodeEntry {
    next: *mut JitCodeEntry,
    prev: *mut JitCodeEntry,
    symfile_addr: *const u8,
    symfile_size: u64,
}

/// The list's head (`struct jit_descriptor`).
#[repr(C)]
#[allow(unreachable_pub)] // the type of an exported symbol
pub struct JitDescriptor {
    version: u32,
    action_flag: u32,
    relevant_entry: *mut JitCodeEntry,
    first_entry: *mut JitCodeEntry,
}

/// Nothing changed.
const JIT_NOACTION: u32 = 0;
/// `relevant_entry` was added.
const JIT_REGISTER_FN: u32 = 1;
/// `relevant_entry` is being removed.
const JIT_UNREGISTER_FN: u32 = 2;

/// The descriptor GDB finds by name (exported: its name is the interface). Changed only under
/// [`LIST`].
#[no_mangle]
#[allow(unreachable_pub)]
pub static mut __jit_debug_descriptor: JitDescriptor = JitDescriptor {
    version: 1,
    action_flag: JIT_NOACTION,
    relevant_entry: null_mut(),
    first_entry: null_mut(),
};

/// The function GDB breaks on to read the descriptor's change. Never inlined and never
/// empty in a way the compiler may fold away.
#[no_mangle]
#[inline(never)]
#[allow(unreachable_pub)] // exported: GDB finds it by name
pub extern "C" fn __jit_debug_register_code() {
    std::hint::black_box(());
}

/// Guards [`__jit_debug_descriptor`] and the entries it links.
static LIST: Mutex<()> = Mutex::new(());

/// [`LIST`], locked (and taken around every fork from its first use).
fn list() -> std::sync::MutexGuard<'static, ()> {
    crate::fork::hold_at_fork(crate::fork::Lock::Debuggers, &LIST);
    lock(&LIST)
}

/// One module's object, linked into GDB's list until dropped.
pub(crate) struct Registered {
    /// The entry, alone in its allocation (its address is in the list; a cell: GDB's list
    /// links it). Never grown, so it never moves.
    entry: Vec<UnsafeCell<JitCodeEntry>>,
    /// The object the entry points at. Never changed, so it never moves.
    object: Vec<u8>,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered").field("object_bytes", &self.object.len()).finish_non_exhaustive()
    }
}

// SAFETY: the entry's pointers are read and written only under `LIST`; the object it points at
// is immutable and owned by the same `Registered`.
unsafe impl Send for Registered {}
// SAFETY: as above; `&Registered` gives no access to the entry.
unsafe impl Sync for Registered {}

/// Links `object` into GDB's list and tells GDB; `None` if the entry's memory cannot be had.
pub(crate) fn register(object: Vec<u8>) -> Option<Registered> {
    let mut entry = Vec::new();
    entry.try_reserve_exact(1).ok()?;
    entry.push(UnsafeCell::new(JitCodeEntry {
        next: null_mut(),
        prev: null_mut(),
        symfile_addr: object.as_ptr(),
        symfile_size: object.len() as u64,
    }));
    let raw = entry[0].get();
    let _list = list();
    // SAFETY: under LIST, the only place the descriptor and the linked entries are touched;
    // `raw` points at the boxed entry, which stays where it is until `Registered` is dropped
    // (which unlinks it first); the descriptor is reached by raw pointer, never by reference.
    unsafe {
        let descriptor = &raw mut __jit_debug_descriptor;
        let first = (*descriptor).first_entry;
        (*raw).next = first;
        if !first.is_null() {
            (*first).prev = raw;
        }
        (*descriptor).first_entry = raw;
        (*descriptor).relevant_entry = raw;
        (*descriptor).action_flag = JIT_REGISTER_FN;
        __jit_debug_register_code();
        (*descriptor).action_flag = JIT_NOACTION;
    }
    Some(Registered { entry, object })
}

impl Drop for Registered {
    fn drop(&mut self) {
        let Some(entry) = self.entry.first() else { return };
        let raw = entry.get();
        let _list = list();
        // SAFETY: under LIST; `raw` is linked (by `register`) and its neighbours are live
        // entries of other `Registered`s, which unlink themselves under this lock too.
        unsafe {
            let descriptor = &raw mut __jit_debug_descriptor;
            let (prev, next) = ((*raw).prev, (*raw).next);
            if prev.is_null() {
                (*descriptor).first_entry = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
            (*descriptor).relevant_entry = raw;
            (*descriptor).action_flag = JIT_UNREGISTER_FN;
            __jit_debug_register_code();
            (*descriptor).action_flag = JIT_NOACTION;
            (*descriptor).relevant_entry = null_mut();
        }
    }
}

/// The objects registered now, first the most recent (for tests: what GDB would read).
pub(crate) fn registered_objects() -> Vec<Vec<u8>> {
    let _list = list();
    let mut objects = Vec::new();
    // SAFETY: under LIST; every linked entry points at its live object.
    unsafe {
        let descriptor = &raw const __jit_debug_descriptor;
        let mut entry = (*descriptor).first_entry;
        while !entry.is_null() {
            let size = usize::try_from((*entry).symfile_size).unwrap_or(0);
            objects.push(std::slice::from_raw_parts((*entry).symfile_addr, size).to_vec());
            entry = (*entry).next;
        }
    }
    objects
}
