//! The code a load maps from the module's file instead of copying
//! ([`super::LoadedModule::load_mapped`]): whole pages of a code section that nothing patches
//! (a module with no relocation of its code: a linked one, `docs/format.md` "Linked modules"),
//! stored uncompressed at a file offset that falls on the same place in a page as its place in
//! the code. They are bytes the processor alone reads: the loader interprets none of them, so
//! they may stay backed by the file, as a shared library's code is. The allocator maps them
//! private ([`crate::exec::CodeBatch::map_file`]): never writable and executable at once,
//! discarded when the module is released.

use core::ops::Range;

use crate::exec::{Block, CodeBatch};
use crate::sys::OpenFile;
use smf_format::compress::Payload;
use smf_format::module::ModuleTables;

/// Fewest whole pages worth mapping: fewer are copied, which costs less than the mapping's
/// syscall, the kernel mapping it adds and the faults of first use.
pub(super) const MIN_MAPPED_PAGES: usize = 4;

/// What of a module's code can be mapped from its file: a range of whole pages of the code
/// (where the code block starts on a page) and where its bytes lie in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Mappable {
    /// The pages, as offsets in the code.
    pub(super) code: Range<usize>,
    /// Where the first lies in the file.
    pub(super) file_offset: u64,
}

/// What of `module`'s code can be mapped from its file, with `page`-byte pages: whole pages of
/// its first code section that has enough, if nothing relocates the code.
pub(super) fn mappable(module: &ModuleTables<'_>, page: usize) -> Option<Mappable> {
    if module.code_relocation_count() != 0 {
        return None;
    }
    module.code_sections().find_map(|(section, at)| {
        let Payload::Raw(bytes) = module.payload(&section) else { return None };
        let (at, file_at) = (usize::try_from(at).ok()?, usize::try_from(section.file_offset).ok()?);
        let code = whole_pages(at, file_at, bytes.len(), page)?;
        let file_offset = u64::try_from(file_at + (code.start - at)).ok()?;
        (code.len() >= MIN_MAPPED_PAGES * page).then_some(Mappable { code, file_offset })
    })
}

/// Maps `planned` from `file` (the file the module was read from) into `code`, the module's
/// code block in `batch`: the range of the block mapped (empty when nothing was: the block
/// does not start on a page, or the allocator or the kernel refused; the caller then copies
/// everything).
pub(super) fn map_code(
    batch: &mut CodeBatch<'_>,
    code: &Block<'_>,
    planned: &Mappable,
    file: &OpenFile,
) -> Range<usize> {
    let page = batch.allocator().page_size();
    let range = planned.code.clone();
    if code.addr() % page != 0 {
        return 0..0;
    }
    match batch.map_file(code, range.start, range.len(), file, planned.file_offset) {
        Ok(()) => range,
        Err(_) => 0..0,
    }
}

/// The whole pages of a section of `len` bytes at `at` in a page-aligned block, stored at
/// `file_at` in the file, that a mapping can give: its pages lie at the same place in a page in
/// both, or none can.
fn whole_pages(at: usize, file_at: usize, len: usize, page: usize) -> Option<Range<usize>> {
    if at % page != file_at % page {
        return None;
    }
    let start = at.checked_next_multiple_of(page)?;
    let end = at.checked_add(len)? / page * page;
    (start < end).then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_pages_at_the_same_place_in_a_page_are_mappable() {
        const P: usize = 4096;
        assert_eq!(whole_pages(0, 0, 10 * P + 5, P), Some(0..10 * P), "the last partial page is copied");
        assert_eq!(whole_pages(100, 100, 3 * P, P), Some(P..3 * P), "partial pages at both ends");
        assert_eq!(whole_pages(0, 8, 10 * P, P), None, "not at the same place in a page");
        assert_eq!(whole_pages(P, 3 * P, 2 * P, P), Some(P..3 * P), "pages apart, same place");
        assert_eq!(whole_pages(0, 0, P - 1, P), None, "less than a page");
        assert_eq!(whole_pages(usize::MAX - 10, usize::MAX - 10, 100, P), None, "past the address space");
    }
}
