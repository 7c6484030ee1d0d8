//! The `templates` target: the template-code and template-meta readers on their own, over any
//! bytes (a section as a module would carry it).

use crate::template::{TemplateCode, TemplateMeta};

/// Entry offsets tried one by one (each check is O(1); every offset of a large input would
/// only repeat the same paths).
const OFFSETS_TRIED: usize = 256;

/// Reads `data` as a template-code section and as a template-meta section, walking every entry
/// each reader yields. Every entry found lies inside `data`. Returns how many items were
/// visited.
pub fn fuzz_templates(data: &[u8]) -> usize {
    let mut visited = 0;
    let code = TemplateCode::parse(data);
    if let Err(error) = &code {
        visited += super::formatted(error);
    }
    if let Ok(code) = code {
        let len = data.len() as u64;
        for entry in code.short_entries() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) => {
                    visited += super::formatted(&error);
                    continue;
                }
            };
            let end = entry.offset.saturating_add(entry.bytes.len() as u64);
            assert!(end <= len, "a short entry ends at {end}, past the section's {len} bytes");
            visited += 1 + entry.params().count() + usize::from(entry.is_full_form());
        }
        visited += usize::from(code.is_short_form());
        for offset in 0..data.len().min(OFFSETS_TRIED) as u64 {
            // An entry read to the section's end (its bytes past the prefix must be parameter
            // names), to an end before its start, and past the section: each is read within
            // the section or refused.
            let ends = [len, offset / 2, u64::MAX];
            for entry in ends.into_iter().filter_map(|end| code.entry_at(offset, end).ok()) {
                let end = entry.offset.saturating_add(entry.bytes.len() as u64);
                assert!(
                    entry.offset == offset && end <= len,
                    "entry at {offset} read as {end} bytes of {len}"
                );
                assert!(
                    code.check_entry(offset).is_ok(),
                    "an entry reads at {offset} whose prefix does not check"
                );
                visited += entry.params().count() + entry.body.len().min(1);
            }
        }
    }
    let meta = TemplateMeta::parse(data);
    if let Err(error) = &meta {
        visited += super::formatted(error);
    }
    if let Ok(meta) = meta {
        let announced: u64 = meta.counts().iter().map(|&c| u64::from(c)).sum();
        let entries = meta.entries().count();
        assert_eq!(
            entries as u64, announced,
            "a validated template-meta section yields every entry its counts announce"
        );
        visited += entries;
    }
    visited
}
