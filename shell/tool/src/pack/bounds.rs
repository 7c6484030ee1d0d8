//! What an object must not be for pack to read it in time and memory linear in its size. ELF
//! lets section headers overlap and names share bytes: a section's contents or a name that
//! many headers or symbols point at is one copy in the file but one copy each in what pack
//! builds (the image, the call arrays, the symbols' names, its notes), which made a 650 KB
//! object allocate 8 GiB. A compiler or `ld -r` writes neither: each section's contents once,
//! names shared only as suffixes (`.rela.text` and `.text`). So before anything is read:
//!
//! - the contents of the sections, each counted, add up to at most the object's size
//!   ([`PackError::SectionsOverlap`]; contents that pass the object's end are the phases'
//!   problem, which cannot read them);
//! - the names of the symbols and sections, each counted, add up to at most the object's size
//!   and, for suffix sharing, [`NAMES_SHARED_FREELY`] and [`NAME_SHARING`] bytes a name more
//!   ([`PackError::NamesShared`]), read only until they pass it.

use object::{Object, ObjectSection, ObjectSymbol};

use super::PackError;

/// Bytes names may share in all, past the object's size (the SMF reader's allowance).
pub(super) const NAMES_SHARED_FREELY: u64 = 1 << 20;

/// Bytes each name may share on average, past [`NAMES_SHARED_FREELY`].
pub(super) const NAME_SHARING: u64 = 256;

/// Why `file` (of `size` bytes) is refused before it is read, if it is.
pub(super) fn check(file: &object::File<'_>, size: u64) -> Result<(), PackError> {
    // Contents past the object's end cannot be read (the phases say so, each where it reads
    // them): they are copied nowhere.
    let within = |&(at, len): &(u64, u64)| at.checked_add(len).is_some_and(|end| end <= size);
    let contents = file.sections().filter_map(|s| s.file_range()).filter(within).map(|(_, len)| len);
    let contents = contents.fold(0, u64::saturating_add);
    if contents > size {
        return Err(PackError::SectionsOverlap { contents, size });
    }
    let count = (file.sections().count() + file.symbols().count()) as u64;
    let budget = size.saturating_add(NAMES_SHARED_FREELY).saturating_add(NAME_SHARING.saturating_mul(count));
    // Summed as read, stopping once past the budget: reading them is bounded by it too.
    let section_names = file.sections().map(|s| s.name_bytes().map_or(0, <[u8]>::len));
    let symbol_names = file.symbols().map(|s| s.name_bytes().map_or(0, <[u8]>::len));
    let mut names = 0u64;
    for (read, len) in section_names.chain(symbol_names).enumerate() {
        names = names.saturating_add(len as u64);
        if names > budget {
            return Err(PackError::NamesShared { names: read as u64 + 1 });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check, NAMES_SHARED_FREELY, NAME_SHARING};
    use crate::pack::PackError;

    /// A section header: name offset, type, flags, offset, size, link, info, entry size.
    type Header = (u32, u32, u64, u64, u64, u32, u32, u64);

    /// An x86-64 ELF relocatable: `blob` after the header, then `.shstrtab`, `.strtab`
    /// (`names`), `.symtab` (`symbols` global functions named at those offsets), then the
    /// section headers: null, the three tables, and `extra` (pointing where they say: `blob`
    /// starts at 64).
    fn object(blob: &[u8], names: &[u8], symbols: &[u32], extra: &[Header]) -> Vec<u8> {
        let shstrtab = b"\0.shstrtab\0.strtab\0.symtab\0.data\0";
        let mut out = vec![0u8; 64];
        out.extend_from_slice(blob);
        let shstrtab_at = out.len() as u64;
        out.extend_from_slice(shstrtab);
        let strtab_at = out.len() as u64;
        out.extend_from_slice(names);
        while out.len() % 8 != 0 {
            out.push(0);
        }
        let symtab_at = out.len() as u64;
        out.extend_from_slice(&[0; 24]);
        for &name in symbols {
            let mut symbol = [0u8; 24];
            symbol[..4].copy_from_slice(&name.to_le_bytes());
            symbol[4] = 0x12; // STB_GLOBAL, STT_FUNC
            symbol[6..8].copy_from_slice(&0xFFF1u16.to_le_bytes()); // SHN_ABS
            out.extend_from_slice(&symbol);
        }
        let symtab_size = out.len() as u64 - symtab_at;
        let headers_at = out.len() as u64;
        let mut headers: Vec<Header> = vec![
            (0, 0, 0, 0, 0, 0, 0, 0),
            (1, 3, 0, shstrtab_at, shstrtab.len() as u64, 0, 0, 0),
            (11, 3, 0, strtab_at, names.len() as u64, 0, 0, 0),
            (19, 2, 0, symtab_at, symtab_size, 2, 1, 24),
        ];
        headers.extend_from_slice(extra);
        for &(name, kind, flags, offset, size, link, info, entsize) in &headers {
            for field in [name, kind] {
                out.extend_from_slice(&field.to_le_bytes());
            }
            for field in [flags, 0, offset, size] {
                out.extend_from_slice(&field.to_le_bytes());
            }
            for field in [link, info] {
                out.extend_from_slice(&field.to_le_bytes());
            }
            for field in [1, entsize] {
                out.extend_from_slice(&field.to_le_bytes());
            }
        }
        out[..4].copy_from_slice(b"\x7fELF");
        out[4..7].copy_from_slice(&[2, 1, 1]); // 64-bit, little-endian, version 1
        out[16..18].copy_from_slice(&1u16.to_le_bytes()); // ET_REL
        out[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        out[20..24].copy_from_slice(&1u32.to_le_bytes());
        out[40..48].copy_from_slice(&headers_at.to_le_bytes());
        out[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        out[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
        out[60..62].copy_from_slice(&u16::try_from(headers.len()).unwrap().to_le_bytes());
        out[62..64].copy_from_slice(&1u16.to_le_bytes()); // e_shstrndx
        out
    }

    fn checked(bytes: &[u8]) -> Result<(), PackError> {
        check(&object::File::parse(bytes).expect("an ELF object"), bytes.len() as u64)
    }

    /// `count` writable data sections, every one over the same 4 KiB.
    fn data_headers(count: usize) -> Vec<Header> {
        vec![(27, 1, 3, 64, 4096, 0, 0, 0); count]
    }

    #[test]
    fn sections_whose_contents_pass_the_object_are_refused() {
        let blob = [0xAB; 4096];
        assert!(checked(&object(&blob, b"\0", &[], &data_headers(1))).is_ok());
        let overlapping = object(&blob, b"\0", &[], &data_headers(64));
        match checked(&overlapping) {
            Err(PackError::SectionsOverlap { contents, size }) => {
                assert!(contents >= 64 * 4096 && size == overlapping.len() as u64, "{contents} {size}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_sharing_one_long_name_are_refused_once_read_past_the_bound() {
        let long = [b"\0".as_slice(), &[b'n'; 64 << 10], b"\0"].concat();
        // Ten symbols share it: 640 KiB, within the allowance (compilers share names' ends).
        assert!(checked(&object(&[], &long, &[1; 10], &[])).is_ok());
        let symbols = 4000;
        let shared = object(&[], &long, &vec![1; symbols], &[]);
        match checked(&shared) {
            Err(PackError::NamesShared { names }) => {
                // Read only until the names passed the object, the allowance and 256 bytes a
                // name: a few dozen of the 64 KiB name, not all 4,000.
                let bound = shared.len() as u64 + NAMES_SHARED_FREELY + NAME_SHARING * (symbols as u64 + 8);
                assert!(names <= bound / (64 << 10) + 8, "read {names} names");
                assert!(names < symbols as u64);
            }
            other => panic!("{other:?}"),
        }
    }
}
