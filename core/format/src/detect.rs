//! Dialect detection by structure.
//!
//! A file is a candidate for a layout only if that layout's magic is where the layout keeps its
//! header; [`crate::Module::parse_with`] then validates each candidate fully and keeps one. The
//! probe order resolves every real file: S128 trailer, R96 at offset 0, R72 at offset 0, R96
//! appended as a trailer. When several validate, the one whose section table directly follows
//! its header wins (ties go to probe order).

use crate::error::{Error, ErrorKind, Result};
use crate::wire::MAGIC;
use crate::{Dialect, HeaderPlacement};

/// A layout to try: a dialect and where its header would be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The dialect.
    pub dialect: Dialect,
    /// Where its header is.
    pub placement: HeaderPlacement,
}

/// The probe order.
/// How many layouts detection tries at most.
pub const PROBE_COUNT: usize = 4;

const PROBES: [Candidate; PROBE_COUNT] = [
    Candidate { dialect: Dialect::S128, placement: HeaderPlacement::Trailer },
    Candidate { dialect: Dialect::R96, placement: HeaderPlacement::Start },
    Candidate { dialect: Dialect::R72, placement: HeaderPlacement::Start },
    Candidate { dialect: Dialect::R96, placement: HeaderPlacement::Trailer },
];

/// Whether some toolchain writes `dialect` with its header at `placement` (one of the probes):
/// the layouts a reader looks for and a writer may produce.
pub fn is_layout(dialect: Dialect, placement: HeaderPlacement) -> bool {
    PROBES.iter().any(|c| c.dialect == dialect && c.placement == placement)
}

/// The smallest header of any dialect.
const SMALLEST_HEADER: usize = Dialect::R72.header_size();

/// Whether a layout's magic is where it would keep its header.
fn has_magic(file: &[u8], candidate: &Candidate) -> bool {
    let size = candidate.dialect.header_size();
    let at = match candidate.placement {
        HeaderPlacement::Start => 0,
        HeaderPlacement::Trailer => match file.len().checked_sub(size) {
            Some(at) => at,
            None => return false,
        },
    };
    file.len() >= at + size && file[at..at + 4] == MAGIC
}

/// The candidates whose magic is present, in probe order (restricted to `only` when given).
///
/// Fails with [`ErrorKind::FileTooSmall`] below the smallest header and [`ErrorKind::BadMagic`]
/// when no candidate remains.
pub fn candidates(file: &[u8], only: Option<Dialect>) -> Result<impl Iterator<Item = Candidate> + '_> {
    if file.len() < SMALLEST_HEADER {
        return Err(Error::new(ErrorKind::FileTooSmall { len: file.len() as u64 }, 0));
    }
    let wanted = move |c: &Candidate| only.is_none_or(|d| d == c.dialect) && has_magic(file, c);
    if !PROBES.iter().any(wanted) {
        return Err(Error::new(ErrorKind::BadMagic, 0));
    }
    Ok(PROBES.into_iter().filter(move |c| wanted(c)))
}

/// Bytes at each end of a file that [`check_ends`] looks at: the largest header.
pub const END_BYTES: usize = Dialect::S128.header_size();

/// Whether a file of `len` bytes that starts with `head` and ends with `tail` (its first and
/// last [`END_BYTES`] bytes, or all of it when shorter) has some layout's magic where that
/// layout keeps its header: what a reader can check before reading the rest of a large file.
/// The same errors as [`candidates`] when it cannot be a module.
pub fn check_ends(head: &[u8], tail: &[u8], len: u64) -> Result<()> {
    if len < SMALLEST_HEADER as u64 {
        return Err(Error::new(ErrorKind::FileTooSmall { len }, 0));
    }
    let found = PROBES.iter().any(|c| {
        let size = c.dialect.header_size();
        let bytes = match c.placement {
            HeaderPlacement::Start => head.get(..4),
            HeaderPlacement::Trailer => tail.len().checked_sub(size).and_then(|at| tail.get(at..at + 4)),
        };
        len >= size as u64 && bytes == Some(&MAGIC[..])
    });
    if found {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::BadMagic, 0))
    }
}

/// Whether `candidate` is a header at offset 0 whose section table starts right after it (the
/// SMF data starting at 0, the table at the header's size): the spec's tie rule, the one
/// preference among layouts that all validate, and among the errors of layouts that do not.
pub fn table_follows_header(file: &[u8], candidate: Candidate) -> bool {
    if candidate.placement != HeaderPlacement::Start {
        return false;
    }
    let header = crate::wire::HeaderView::new_unchecked(file, candidate.dialect);
    header.smf_data_offset().unwrap_or(0) == 0
        && header.section_table_offset() == candidate.dialect.header_size() as u64
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use crate::write::samples;

    /// `check_ends` on the ends of `file`.
    fn ends(file: &[u8]) -> Result<()> {
        let n = file.len().min(END_BYTES);
        check_ends(&file[..n], &file[file.len() - n..], file.len() as u64)
    }

    #[test]
    fn the_ends_decide_as_the_whole_file_does() {
        for dialect in Dialect::ALL {
            let file = samples::rich(dialect);
            assert_eq!(ends(&file), Ok(()), "{dialect:?}");
            // Any magic byte changed: no layout is left (these files carry one header each).
            let mut broken = file.clone();
            for at in 0..broken.len() {
                if broken[at..].starts_with(&MAGIC) {
                    broken[at] ^= 0xFF;
                }
            }
            assert_eq!(ends(&broken).is_ok(), candidates(&broken, None).is_ok(), "{dialect:?}");
            assert_eq!(ends(&broken), Err(Error::new(ErrorKind::BadMagic, 0)));
        }
        assert_eq!(ends(&[0; 8]), Err(Error::new(ErrorKind::FileTooSmall { len: 8 }, 0)));
        assert!(ends(&[0; 4096]).is_err());
    }
}
