//! Constructors and destructors: every object's `.init_array*` and `.ctors*` (and
//! `.fini_array*`, `.dtors*`) merged into one constructor array and one destructor array of the
//! module (`docs/format.md`, "Constructors and destructors"), in the order `ld` gives them in a
//! shared library: sections with a priority first, by ascending priority (`.init_array.N` has
//! priority N, `.ctors.N` 65535 - N), then the others in object order. A `.ctors`/`.dtors`
//! section runs from its last entry to its first (crtstuff's order), so its entries are
//! reversed as they are merged, as `ld` does when it puts them in `.init_array`.

use std::collections::HashMap;

use object::{Object, ObjectSection, SectionIndex};
use smf_format::kinds::SectionFlags;
use smf_format::write::{ModuleBuilder, SectionSpec};
use smf_format::{CallArray, SectionType};

use super::PackError;

/// Bytes of an entry (a 64-bit address).
const ENTRY: u64 = 8;

/// Where an input section's entries went in the module's array.
#[derive(Clone, Copy, Debug)]
pub(super) struct ArraySlot {
    /// The module's array section.
    pub(super) section: u32,
    /// Offset of the input section's entries in it.
    base: u64,
    /// Number of entries of the input section.
    entries: u64,
    /// Whether they run last to first (`.ctors`/`.dtors`), and are reversed.
    reversed: bool,
}

impl ArraySlot {
    /// Where the entry at `offset` in the input section goes in the module's array; `None`
    /// unless `offset` starts an entry.
    pub(super) fn place(&self, offset: u64) -> Option<u64> {
        if offset % ENTRY != 0 || offset / ENTRY >= self.entries {
            return None;
        }
        let entry = if self.reversed { self.entries - 1 - offset / ENTRY } else { offset / ENTRY };
        Some(self.base + entry * ENTRY)
    }
}

/// What a section named `name` is as a call array: which array, its priority, whether its
/// entries run last to first; `None` for other sections. `.preinit_array` is refused: it runs
/// before a program's libraries are initialized, which only an executable can ask for (`ld`
/// refuses it in a shared library too).
pub(super) fn call_array_of(name: &str) -> Result<Option<(CallArray, Option<u32>, bool)>, PackError> {
    let table = [
        (".init_array", CallArray::Constructors, false),
        (".fini_array", CallArray::Destructors, false),
        (".ctors", CallArray::Constructors, true),
        (".dtors", CallArray::Destructors, true),
    ];
    if name.starts_with(".preinit_array") {
        return Err(PackError::PreinitArray { section: name.to_owned() });
    }
    for (prefix, array, reversed) in table {
        let Some(rest) = name.strip_prefix(prefix) else { continue };
        if rest.is_empty() {
            return Ok(Some((array, None, reversed)));
        }
        if let Some(priority) = rest.strip_prefix('.').and_then(|p| p.parse::<u32>().ok()) {
            let priority = if reversed { 65535u32.saturating_sub(priority) } else { priority };
            return Ok(Some((array, Some(priority), reversed)));
        }
    }
    Ok(None)
}

/// The module's call arrays: where each input section's entries went, the constructor array's
/// section when its first entry is kept for the resolver of indirect functions, and the
/// destructor array's section when its first entry is kept for the module's finalizer.
#[derive(Debug, Default)]
pub(super) struct Merged {
    pub(super) slots: HashMap<(usize, SectionIndex), ArraySlot>,
    /// The constructor array, whose first entry (offset 0, run first) is the resolver's.
    pub(super) resolver_entry: Option<u32>,
    /// The destructor array, whose first entry (offset 0, run last) is the finalizer's.
    pub(super) finalizer_entry: Option<u32>,
}

/// The entries [`merge`] keeps first in the module's arrays, for code pack adds.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Reserved {
    /// A first constructor: the resolver of the module's indirect functions.
    pub(super) resolver: bool,
    /// A first destructor: the module's finalizer.
    pub(super) finalizer: bool,
}

/// Merges the call array sections of `files` into the module `builder` writes (one section per
/// array that has entries), with the first entries `reserved` says kept; a section that cannot
/// be merged is given to `problem` with its object's index, once.
pub(super) fn merge(
    files: &[object::File<'_>],
    builder: &mut ModuleBuilder,
    reserved: Reserved,
    problem: &mut dyn FnMut(usize, PackError),
) -> Merged {
    let mut merged = Merged::default();
    for array in [CallArray::Constructors, CallArray::Destructors] {
        let kept = match array {
            CallArray::Constructors => reserved.resolver,
            CallArray::Destructors => reserved.finalizer,
        };
        let reserved = u64::from(kept);
        // (priority, object, section, entries, reversed), in object and section order.
        let mut inputs = Vec::new();
        for (f, file) in files.iter().enumerate() {
            for section in file.sections() {
                // Each problem once: while merging the constructors.
                let report = array == CallArray::Constructors;
                let (kind, priority, reversed) = match call_array_of(section.name().unwrap_or("")) {
                    Ok(Some(array)) => array,
                    Ok(None) => continue,
                    Err(error) => {
                        if report {
                            problem(f, error);
                        }
                        continue;
                    }
                };
                // Entries as the file holds them (never the size a header claims; a partial
                // last entry counts, and is refused for want of a relocation).
                let entries = match section.data() {
                    Ok(data) => (data.len() as u64).div_ceil(ENTRY),
                    Err(error) => {
                        if report {
                            problem(f, PackError::Elf(error));
                        }
                        continue;
                    }
                };
                if kind == array && entries > 0 {
                    inputs.push((priority, f, section.index(), entries, reversed));
                }
            }
        }
        if inputs.is_empty() && reserved == 0 {
            continue;
        }
        // Stable: equal priorities (and every section without one) keep object order.
        inputs.sort_by_key(|&(priority, ..)| priority.map_or((1, 0), |p| (0, p)));
        let total: u64 = reserved + inputs.iter().map(|&(.., entries, _)| entries).sum::<u64>();
        let name: &[u8] = match array {
            CallArray::Constructors => b".init_array",
            CallArray::Destructors => b".fini_array",
        };
        let flags = SectionFlags::READ | array.flag();
        // The entries lie in the objects read, so their total fits in memory.
        let zeros = vec![0; usize::try_from(total * ENTRY).unwrap_or_default()];
        let section = builder.add_section(SectionSpec::new(SectionType::RoData, name, flags, zeros, ENTRY));
        if reserved > 0 {
            match array {
                CallArray::Constructors => merged.resolver_entry = Some(section),
                CallArray::Destructors => merged.finalizer_entry = Some(section),
            }
        }
        let mut base = reserved * ENTRY;
        for (_, f, index, entries, reversed) in inputs {
            merged.slots.insert((f, index), ArraySlot { section, base, entries, reversed });
            base += entries * ENTRY;
        }
    }
    merged
}

/// The finalizer of a module whose code registers cleanups with `__cxa_atexit` (C++ static
/// objects with destructors, `atexit` in a library): what crtbegin gives a shared library.
/// `__dso_handle` is the finalizer's own address (a value unique to the module, which is all
/// the C++ ABI asks of it), and the finalizer, the first destructor entry (so it runs after
/// every other destructor), calls `__cxa_finalize(__dso_handle)`: the module's registered
/// cleanups run when it is released, before its code is unmapped, never at exit after it.
///
/// `lea rdi, [rip - 7]` (its own address); `jmp __cxa_finalize` (displacement at offset 8).
pub(super) const FINALIZER: [u8; 12] = [0x48, 0x8D, 0x3D, 0xF9, 0xFF, 0xFF, 0xFF, 0xE9, 0, 0, 0, 0];

/// Where [`FINALIZER`]'s jump displacement is.
pub(super) const FINALIZER_JUMP: u64 = 8;

/// The name of the handle C++ code registers its cleanups under.
pub(super) const DSO_HANDLE: &[u8] = b"__dso_handle";

/// A function glibc links into every program and library from `libc_nonshared.a` (its shared
/// C library has none of them), which registers a handler under the caller's `__dso_handle`:
/// the module gets its own, after the finalizer, so that its handlers go when it is released
/// (`__cxa_finalize` runs its exit handlers and forgets its quick-exit and fork handlers), as a
/// shared library's go at `dlclose`, and never run at the process's exit or fork after its code
/// is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Registering {
    /// Its name, which the module's references are linked to.
    pub(super) name: &'static [u8],
    /// The C library's function it calls with the same arguments and the handle.
    pub(super) calls: &'static [u8],
    /// The register the handle goes in (its ModRM byte for `lea REG, [rip + disp32]`), the
    /// argument after the caller's.
    pub(super) handle_modrm: u8,
    /// Whether `esi`, an argument between the caller's and the handle, is cleared first.
    pub(super) clears_esi: bool,
}

/// `atexit(f)`: `__cxa_atexit(f, NULL, __dso_handle)`; `at_quick_exit(f)`:
/// `__cxa_at_quick_exit(f, __dso_handle)`; `pthread_atfork(prepare, parent, child)`:
/// `__register_atfork(prepare, parent, child, __dso_handle)`.
pub(super) const REGISTERING: [Registering; 3] = [
    Registering { name: b"atexit", calls: b"__cxa_atexit", handle_modrm: 0x15, clears_esi: true },
    Registering {
        name: b"at_quick_exit",
        calls: b"__cxa_at_quick_exit",
        handle_modrm: 0x35,
        clears_esi: false,
    },
    Registering {
        name: b"pthread_atfork",
        calls: b"__register_atfork",
        handle_modrm: 0x0D,
        clears_esi: false,
    },
];

impl Registering {
    /// Its code at `at` bytes after the finalizer (the module's `__dso_handle`): `lea REG,
    /// [rip - (at + 7)]`, perhaps `xor esi, esi`, then `jmp` to [`Registering::calls`], whose
    /// displacement is at the offset returned (the code's last four bytes).
    pub(super) fn code(&self, at: usize) -> (Vec<u8>, usize) {
        let back = -i32::try_from(at + 7).expect("own code is small");
        let mut code = vec![0x48, 0x8D, self.handle_modrm];
        code.extend_from_slice(&back.to_le_bytes());
        if self.clears_esi {
            code.extend_from_slice(&[0x31, 0xF6]);
        }
        code.extend_from_slice(&[0xE9, 0, 0, 0, 0]);
        let jump = code.len() - 4;
        (code, jump)
    }
}

/// Whether any of `files` refers to `name` without defining it.
fn refers_to(files: &[object::File<'_>], name: &[u8]) -> bool {
    use object::ObjectSymbol;
    files
        .iter()
        .any(|file| file.symbols().any(|s| s.is_undefined() && s.name_bytes().is_ok_and(|n| n == name)))
}

/// The [`REGISTERING`] functions `files` call and none defines: the module gets its own.
pub(super) fn registering_needed(files: &[object::File<'_>]) -> Vec<Registering> {
    use object::{Object, ObjectSymbol};
    let defined = |name: &[u8]| {
        files.iter().any(|file| {
            file.symbols()
                .any(|s| !s.is_undefined() && s.is_global() && s.name_bytes().is_ok_and(|n| n == name))
        })
    };
    REGISTERING.iter().filter(|r| !defined(r.name) && refers_to(files, r.name)).copied().collect()
}

/// Whether any of `files` refers to `__dso_handle` without defining it, or calls one of the
/// [`REGISTERING`] functions (which register under it): the module gets a finalizer.
pub(super) fn needs_finalizer(files: &[object::File<'_>]) -> bool {
    refers_to(files, DSO_HANDLE) || !registering_needed(files).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_the_array_the_priority_and_the_order() {
        let cases = [
            (".init_array", Some((CallArray::Constructors, None, false))),
            (".init_array.00101", Some((CallArray::Constructors, Some(101), false))),
            (".fini_array.65535", Some((CallArray::Destructors, Some(65535), false))),
            (".ctors", Some((CallArray::Constructors, None, true))),
            (".ctors.65434", Some((CallArray::Constructors, Some(101), true))),
            (".dtors", Some((CallArray::Destructors, None, true))),
            (".init_arrayx", None),
            (".text", None),
        ];
        for (name, expected) in cases {
            assert_eq!(call_array_of(name).unwrap(), expected, "{name}");
        }
        assert!(matches!(call_array_of(".preinit_array"), Err(PackError::PreinitArray { .. })));
    }

    #[test]
    fn reversed_sections_place_their_entries_last_to_first() {
        let slot = ArraySlot { section: 0, base: 16, entries: 3, reversed: true };
        assert_eq!([0, 8, 16].map(|o| slot.place(o)), [Some(32), Some(24), Some(16)]);
        let slot = ArraySlot { reversed: false, ..slot };
        assert_eq!([0, 8, 16].map(|o| slot.place(o)), [Some(16), Some(24), Some(32)]);
        assert_eq!([4, 24].map(|o| slot.place(o)), [None, None], "mid-entry, past the end");
    }
}
