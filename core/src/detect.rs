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
const PROBES: [Candidate; 4] = [
    Candidate { dialect: Dialect::S128, placement: HeaderPlacement::Trailer },
    Candidate { dialect: Dialect::R96, placement: HeaderPlacement::Start },
    Candidate { dialect: Dialect::R72, placement: HeaderPlacement::Start },
    Candidate { dialect: Dialect::R96, placement: HeaderPlacement::Trailer },
];

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

/// Whether `candidate` is a header at offset 0 whose section table offset points right after it.
pub fn table_follows_header(file: &[u8], candidate: Candidate) -> bool {
    if candidate.placement != HeaderPlacement::Start {
        return false;
    }
    let header = crate::wire::HeaderView::new_unchecked(file, candidate.dialect);
    header.section_table_offset() == candidate.dialect.header_size() as u64
}

/// The dialects whose magic is present (for tools that explain a failure).
pub fn probe(file: &[u8]) -> impl Iterator<Item = Candidate> + '_ {
    PROBES.into_iter().filter(move |c| has_magic(file, c))
}
