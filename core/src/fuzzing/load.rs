//! The `load` target: up to three modules from one input, loaded in turn into one allocator and
//! linked for real: an import resolves to a host symbol, else to an export of a module loaded
//! before (which the importer then keeps alive), else (unless the input asks otherwise) to a
//! fixed address far from the image, so that relocation and stubs are reached all the same.
//! Afterwards every block is released: the allocator is back where it was.

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::exec::ExecAllocator;
use crate::load::{Keepalive, LoadOptions, LoadedModule, ReadOnlyData, Resolved, Resolver};
use crate::ParseOptions;

/// What separates the modules of one input (an input without it is one module).
pub const MODULE_SEPARATOR: &[u8] = b"--smf-fuzz-next-module--";
/// Most modules one input loads (the rest of the input is the last one).
const MAX_MODULES: usize = 3;

/// Data the host exports.
static HOST_DATA: u64 = 0x5EED;

/// A function the host exports (never called: fuzzed code is never run).
extern "C" fn host_function() -> u64 {
    HOST_DATA
}

/// The host's symbols, then the modules loaded so far, then (with `fallback`) any name.
struct Linker<'l> {
    loaded: &'l [Arc<LoadedModule<'static>>],
    fallback: bool,
}

impl Resolver for Linker<'_> {
    fn resolve(&self, name: &[u8]) -> Option<Resolved> {
        let host = match name {
            b"host_function" => Some(host_function as extern "C" fn() -> u64 as usize),
            b"host_data" => Some(core::ptr::addr_of!(HOST_DATA) as usize),
            _ => None,
        };
        if let Some(addr) = host {
            return Some(Resolved { addr, keepalive: None });
        }
        for module in self.loaded {
            if let Some(addr) = module.symbol(name) {
                let owner: Keepalive = module.clone();
                return Some(Resolved { addr, keepalive: Some(owner) });
            }
        }
        (self.fallback && !name.is_empty())
            .then_some(Resolved { addr: 0x10_0000 + name.len() * 16, keepalive: None })
    }
}

/// Loads the modules of `data` (split at [`MODULE_SEPARATOR`]) in order, each linked against
/// the host and the ones before, then releases them all and checks that the allocator holds no
/// block more than before; all of it twice, with options chosen by the first byte and then with
/// each of them the other way (a module's first byte is its magic, which the fuzzer can hardly
/// change): bit 0 forces branch stubs, bit 1 keeps read-only data out of executable pages, bit
/// 2 resolves no name that neither the host nor a module exports, bit 3 refuses modules for
/// another architecture. Returns the number of symbols loaded the first time.
pub fn fuzz_load(data: &[u8]) -> usize {
    let flags = data.first().copied().unwrap_or(0);
    let symbols = load_all(data, flags);
    load_all(data, !flags);
    symbols
}

/// [`fuzz_load`] with the options of `flags`.
fn load_all(data: &[u8], flags: u8) -> usize {
    static EXEC: spin::Once<ExecAllocator> = spin::Once::new();
    let exec: &'static ExecAllocator = EXEC.call_once(ExecAllocator::default);
    let options = LoadOptions {
        parse: ParseOptions { dialect: None, max_image_bytes: 1 << 24 },
        require_arch: (flags & 8 != 0).then_some(crate::load::HOST_ARCH),
        force_stubs: flags & 1 != 0,
        read_only_data: if flags & 2 != 0 { ReadOnlyData::NotExecutable } else { ReadOnlyData::WithCode },
        // A fuzzed module's code is never run, nor its tables registered (checked all the same).
        run_constructors: false,
        unwind: None,
    };
    let before = exec.stats();
    let mut loaded: Vec<Arc<LoadedModule<'static>>> = Vec::new();
    let mut symbols = 0;
    for bytes in split(data) {
        let linker = Linker { loaded: &loaded, fallback: flags & 4 == 0 };
        match LoadedModule::load(exec, bytes, &linker, &options) {
            Ok(module) => {
                symbols += module.symbols().len();
                loaded.push(Arc::new(module));
            }
            Err(error) => symbols += super::formatted(&error).min(1),
        }
    }
    drop(loaded);
    let after = exec.stats();
    assert_eq!(
        (after.blocks_live, after.bytes_live, after.pages_open),
        (before.blocks_live, before.bytes_live, before.pages_open),
        "blocks left behind once every module was released"
    );
    symbols
}

/// The modules of one input: at most [`MAX_MODULES`] pieces between separators.
fn split(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    let mut pieces = 0;
    core::iter::from_fn(move || {
        let input = rest?;
        pieces += 1;
        let cut = (pieces < MAX_MODULES).then(|| find(input, MODULE_SEPARATOR)).flatten();
        match cut {
            Some(at) => {
                rest = input.get(at + MODULE_SEPARATOR.len()..);
                input.get(..at)
            }
            None => {
                rest = None;
                Some(input)
            }
        }
    })
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
