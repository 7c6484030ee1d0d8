//! Unwind tables: call frame information in the `.eh_frame` format (the LSB's "Exception
//! Frames"): records, each a 4-byte length and its contents (the 64-bit form, a length of
//! `0xffffffff` and 8 bytes of length, is refused: the process's unwinder does not read it),
//! a CIE (id 0) or an FDE (a pointer back to its CIE, then the range of code it describes),
//! ended by a zero length.
//!
//! Two readers of one format: `check_records`, the structure every module's table must have
//! (records tiling the section, the terminator last), checked when a module is parsed; and
//! [`first_fde_outside`], the first FDE of a relocated table that describes code outside the
//! module's, which the loader looks for before the table is handed to the process's unwinder
//! (an FDE claiming someone else's code would have the unwinder run this module's personality
//! routine for frames not its own). Both walk the records with `record_at`.

use core::ops::Range;

use crate::error::UnwindProblem;

/// One record of a table: where it starts, and its contents (after the length field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Record<'a> {
    at: usize,
    /// Where the contents start (after the 4 bytes of length).
    body_at: usize,
    body: &'a [u8],
}

/// The record of `table` starting at `at`: `None` for the terminator when it ends the table,
/// an error where a length runs past the table or the table ends without a terminator.
fn record_at(table: &[u8], at: usize) -> Result<Option<Record<'_>>, UnwindProblem> {
    let length = crate::bytes::u32_at(table, at).ok_or(UnwindProblem::NoTerminator)?;
    let length = match length {
        0 if at + 4 == table.len() => return Ok(None),
        0 => return Err(UnwindProblem::NoTerminator),
        0xffff_ffff => return Err(UnwindProblem::LongRecord { at: at as u64 }),
        length => length as usize,
    };
    let body_at = at + 4;
    let body = body_at
        .checked_add(length)
        .and_then(|end| table.get(body_at..end))
        .ok_or(UnwindProblem::RecordOutside { at: at as u64 })?;
    Ok(Some(Record { at, body_at, body }))
}

/// The structure a table must have: records tiling it, each within it, and the terminator in
/// its last four bytes.
pub(crate) fn check_records(table: &[u8]) -> Result<(), UnwindProblem> {
    let mut at = 0;
    while let Some(record) = record_at(table, at)? {
        at = record.body_at + record.body.len();
    }
    Ok(())
}

/// Why an FDE cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdeProblem {
    /// Its CIE pointer names no CIE of the table.
    NoCie,
    /// A CIE it names, or the FDE itself, ends in the middle of a field.
    Truncated,
    /// A CIE version other than 1 and 3, or an augmentation this reader does not know.
    Augmentation,
    /// A pointer encoding this reader does not decode (relative to text, data or a function,
    /// aligned, indirect).
    Encoding(u8),
    /// The range's end overflows.
    Overflow,
    /// The records themselves are malformed.
    Records(UnwindProblem),
}

/// What the FDE's record is refused for, after "the record at ...".
impl core::fmt::Display for FdeProblem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FdeProblem::NoCie => f.write_str("names no CIE of the table"),
            FdeProblem::Truncated => f.write_str("or the CIE it names ends in the middle of a field"),
            FdeProblem::Augmentation => f.write_str(
                "names a CIE whose version (not 1 or 3) or augmentation the unwinder's reader does not know",
            ),
            FdeProblem::Encoding(encoding) => write!(
                f,
                "has pointer encoding {encoding:#04x}, which is not decoded (only absolute and pc-relative \
                 pointers are: not relative to text, data or a function, aligned or indirect)"
            ),
            FdeProblem::Overflow => f.write_str("describes a range whose end overflows"),
            FdeProblem::Records(problem) => write!(f, "is in a table that {}", problem.describe()),
        }
    }
}

/// What an FDE describes, `(start, len)`, or why it cannot be read.
pub type FdeRange = Result<(u64, u64), FdeProblem>;

/// The first FDE of `table` (relocated, placed at address `addr`) that does not describe code
/// inside `code`: the offset of its record (the table's length where the records themselves
/// are malformed) and the range `start..start + len` it describes, or why it cannot be read.
/// `None` when every FDE lies in `code`. One pass, no allocation; a CIE is read once for a run
/// of FDEs that name it (compilers write one CIE and then every FDE that uses it).
pub fn first_fde_outside(table: &[u8], addr: u64, code: Range<u64>) -> Option<(usize, FdeRange)> {
    first_fde_outside_reading(table, addr, code, true)
}

/// [`first_fde_outside`], reading the FDEs compilers write through `next_after_common_fde`
/// first if `common_first` (always, but in the test that compares the two ways).
#[inline(always)]
fn first_fde_outside_reading(
    table: &[u8],
    addr: u64,
    code: Range<u64>,
    common_first: bool,
) -> Option<(usize, FdeRange)> {
    let mut last_cie: Option<(usize, u8)> = None;
    let mut at = 0;
    loop {
        if let (true, Some((cie_at, PC_RELATIVE_4))) = (common_first, last_cie) {
            if let Some(next) = next_after_common_fde(table, at, cie_at, addr, &code) {
                at = next;
                continue;
            }
        }
        let record = match record_at(table, at) {
            Ok(Some(record)) => record,
            Ok(None) => return None,
            Err(problem) => return Some((table.len(), Err(FdeProblem::Records(problem)))),
        };
        at = record.body_at + record.body.len();
        // A CIE (id 0) describes no code; nor does a record too short to hold an id.
        let Some(id) = crate::bytes::u32_at(record.body, 0).filter(|&id| id != 0) else { continue };
        match fde_range(table, addr, &record, id, &mut last_cie) {
            Ok((start, len)) if code.contains(&start) && start + len <= code.end => {}
            other => return Some((record.at, other)),
        }
    }
}

/// The FDE pointer encoding compilers write: 4-byte signed, relative to the field.
const PC_RELATIVE_4: u8 = 0x1b;

/// Where the record after the one at `at` starts, if that record is what compilers write for
/// each function (an FDE naming the CIE at `cie_at`, whose encoding is [`PC_RELATIVE_4`],
/// within the table) and describes code inside `code`, the table lying at `addr`; `None` for
/// anything else (the terminator, a CIE, another CIE's FDE, a short or malformed record, code
/// outside), which the general reader then reads and judges. The one FDE read per function of
/// every loaded module: its fields read from one 16-byte load, the judgement the general
/// reader's (`fde_range`), for an FDE it accepts.
#[inline(always)]
fn next_after_common_fde(
    table: &[u8],
    at: usize,
    cie_at: usize,
    addr: u64,
    code: &Range<u64>,
) -> Option<usize> {
    let head = table.get(at..)?.first_chunk::<16>()?;
    let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let (length, pointer) = (word(0) as usize, word(4) as usize);
    let body_at = at + 4;
    // Room for the pointer and both fields; not the 64-bit form's marker.
    let fits = |end: &usize| length >= 12 && length != 0xffff_ffff && *end <= table.len();
    let next = body_at.checked_add(length).filter(fits)?;
    if pointer == 0 || body_at.checked_sub(pointer) != Some(cie_at) {
        return None;
    }
    let field_addr = addr.wrapping_add((body_at + 4) as u64);
    let start = field_addr.wrapping_add(i64::from(word(8) as i32) as u64);
    let len = i64::from(word(12) as i32) as u64;
    let end = start.checked_add(len)?;
    (code.contains(&start) && end <= code.end).then_some(next)
}

/// What FDE `fde` (whose CIE pointer is `pointer`) covers; `last_cie` is the CIE read last
/// (its offset and FDE encoding), reused when `fde` names it too.
#[inline]
fn fde_range(
    table: &[u8],
    addr: u64,
    fde: &Record<'_>,
    pointer: u32,
    last_cie: &mut Option<(usize, u8)>,
) -> FdeRange {
    // The CIE pointer is the distance back from the pointer field to the CIE's record: found
    // as the unwinder finds it (no walk from the table's start, which would make a table of
    // many FDEs cost their square), a whole record of the table with id 0.
    let cie_at = fde.body_at.checked_sub(pointer as usize).ok_or(FdeProblem::NoCie)?;
    let encoding = match *last_cie {
        Some((at, encoding)) if at == cie_at => encoding,
        _ => {
            let cie = record_at(table.get(cie_at..).ok_or(FdeProblem::NoCie)?, 0);
            let Ok(Some(cie)) = cie else { return Err(FdeProblem::NoCie) };
            if cie.body.first_chunk::<4>() != Some(&[0; 4]) {
                return Err(FdeProblem::NoCie);
            }
            let encoding = fde_encoding(cie.body)?;
            *last_cie = Some((cie_at, encoding));
            encoding
        }
    };
    let field_addr = addr.wrapping_add((fde.body_at + 4) as u64);
    // What compilers write (pc-relative 4-byte pointers), read directly.
    if encoding == PC_RELATIVE_4 {
        let start = crate::bytes::u32_at(fde.body, 4).ok_or(FdeProblem::Truncated)? as i32;
        let len = crate::bytes::u32_at(fde.body, 8).ok_or(FdeProblem::Truncated)? as i32;
        let start = field_addr.wrapping_add(i64::from(start) as u64);
        let len = i64::from(len) as u64;
        start.checked_add(len).ok_or(FdeProblem::Overflow)?;
        return Ok((start, len));
    }
    let mut reader = Reader { bytes: fde.body, at: 4 };
    let start = reader.pointer(encoding)?;
    // The high nibble whole: an application (0x70) and the indirect bit (0x80, where the
    // unwinder would follow the pointer to anywhere) are refused alike.
    let start = match encoding & 0xf0 {
        0x00 => start,
        0x10 => field_addr.wrapping_add(start),
        _ => return Err(FdeProblem::Encoding(encoding)),
    };
    let len = reader.pointer(encoding & 0x0f)?;
    start.checked_add(len).ok_or(FdeProblem::Overflow)?;
    Ok((start, len))
}

/// The longest augmentation string a CIE may have: the letters this reader knows, once each.
const MAX_AUGMENTATION: usize = 6;

/// The FDE pointer encoding a CIE (its contents, after the length) gives: its augmentation's
/// `R`, or an absolute 8-byte address without one.
fn fde_encoding(cie: &[u8]) -> Result<u8, FdeProblem> {
    let mut reader = Reader { bytes: cie, at: 4 };
    let version = reader.u8()?;
    if version != 1 && version != 3 {
        return Err(FdeProblem::Augmentation);
    }
    // Every letter this reader knows, once each, is six ("zPLRSB"): a longer string is
    // refused unread, so that reading a CIE costs the same whatever its bytes (a table may
    // alternate between CIEs, and each FDE then reads its CIE again).
    let augmentation = reader.string(MAX_AUGMENTATION)?;
    reader.uleb()?; // code alignment
    reader.uleb()?; // data alignment (signed; only skipped)
    match version {
        1 => drop(reader.u8()?),
        _ => drop(reader.uleb()?),
    }
    let Some(letters) = augmentation.strip_prefix(b"z") else {
        return if augmentation.is_empty() { Ok(0) } else { Err(FdeProblem::Augmentation) };
    };
    reader.uleb()?; // the augmentation data's length
    let mut encoding = 0;
    for &letter in letters {
        match letter {
            b'P' => {
                let personality = reader.u8()?;
                reader.pointer(personality & 0x0f)?;
            }
            b'L' => drop(reader.u8()?),
            b'R' => encoding = reader.u8()?,
            b'S' | b'B' => {}
            _ => return Err(FdeProblem::Augmentation),
        }
    }
    Ok(encoding)
}

/// Reads the fields of a record's contents.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], FdeProblem> {
        let bytes =
            self.bytes.get(self.at..).and_then(|b| b.first_chunk::<N>()).ok_or(FdeProblem::Truncated)?;
        self.at += N;
        Ok(*bytes)
    }

    fn u8(&mut self) -> Result<u8, FdeProblem> {
        self.take::<1>().map(|[b]| b)
    }

    /// A NUL-terminated string (without the NUL) of at most `most` bytes, found by looking at
    /// `most + 1` bytes at most; a longer one is an augmentation this reader does not know (the
    /// only string a record holds).
    fn string(&mut self, most: usize) -> Result<&'a [u8], FdeProblem> {
        let rest = self.bytes.get(self.at..).ok_or(FdeProblem::Truncated)?;
        let len = match rest.iter().take(most + 1).position(|&b| b == 0) {
            Some(len) => len,
            None if rest.len() > most => return Err(FdeProblem::Augmentation),
            None => return Err(FdeProblem::Truncated),
        };
        self.at += len + 1;
        Ok(&rest[..len])
    }

    /// An unsigned LEB128 number (at most 10 bytes; a signed one reads the same way when only
    /// skipped).
    fn uleb(&mut self) -> Result<u64, FdeProblem> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(FdeProblem::Truncated)
    }

    /// A pointer in the value format of `encoding` (its low four bits), sign-extended.
    fn pointer(&mut self, encoding: u8) -> Result<u64, FdeProblem> {
        Ok(match encoding & 0x0f {
            0x00 | 0x04 | 0x0c => u64::from_le_bytes(self.take()?),
            0x02 => u64::from(u16::from_le_bytes(self.take()?)),
            0x03 => u64::from(u32::from_le_bytes(self.take()?)),
            0x0a => i16::from_le_bytes(self.take()?) as i64 as u64,
            0x0b => i32::from_le_bytes(self.take()?) as i64 as u64,
            0x01 => self.uleb()?,
            _ => return Err(FdeProblem::Encoding(encoding)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table as gcc writes one for two functions: a CIE (augmentation "zR", FDE encoding
    /// pcrel|sdata4) and two FDEs, padded, then the terminator.
    fn table(first: i32, second: i32) -> alloc::vec::Vec<u8> {
        let mut t = alloc::vec::Vec::new();
        // CIE: length 20, id 0, version 1, "zR", code align 1, data align -8, ra 16, aug len 1, R = 0x1b.
        t.extend_from_slice(&20u32.to_le_bytes());
        t.extend_from_slice(&0u32.to_le_bytes());
        t.extend_from_slice(&[1, b'z', b'R', 0, 1, 0x78, 16, 1, 0x1b, 0x0c, 7, 8, 0x90, 1, 0, 0]);
        for (pc, len) in [(first, 0x10u32), (second, 0x20)] {
            let at = t.len();
            t.extend_from_slice(&20u32.to_le_bytes());
            t.extend_from_slice(&u32::try_from(at + 4).unwrap().to_le_bytes()); // back to the CIE at 0
            t.extend_from_slice(&pc.to_le_bytes());
            t.extend_from_slice(&len.to_le_bytes());
            t.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        }
        t.extend_from_slice(&[0; 4]);
        t
    }

    #[test]
    fn records_tile_the_table_up_to_its_terminator() {
        let good = table(0, 0);
        assert_eq!(check_records(&good), Ok(()));
        let mut no_end = good.clone();
        no_end.truncate(no_end.len() - 4);
        assert_eq!(check_records(&no_end), Err(UnwindProblem::NoTerminator));
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0; 4]);
        assert_eq!(check_records(&trailing), Err(UnwindProblem::NoTerminator), "bytes after it");
        let mut long = good.clone();
        long[24..28].copy_from_slice(&500u32.to_le_bytes()); // the first FDE's length
        assert_eq!(check_records(&long), Err(UnwindProblem::RecordOutside { at: 24 }));
        let mut long_form = good;
        long_form[24..28].copy_from_slice(&u32::MAX.to_le_bytes()); // a 64-bit length follows,
        long_form[28..36].copy_from_slice(&20u64.to_le_bytes()); // one that would fit
        assert_eq!(check_records(&long_form), Err(UnwindProblem::LongRecord { at: 24 }));
        assert_eq!(check_records(&[]), Err(UnwindProblem::NoTerminator));
    }

    #[test]
    fn an_augmentation_longer_than_every_known_letter_is_refused_unread() {
        // A CIE with "z" and seven "S" (eight letters: two more than the reader knows, so that
        // a table alternating between such CIEs cannot make each FDE read a long string), and
        // one FDE naming it.
        let mut t = alloc::vec::Vec::new();
        let cie: &[u8] =
            &[0, 0, 0, 0, 1, b'z', b'S', b'S', b'S', b'S', b'S', b'S', b'S', 0, 1, 0x78, 16, 0, 0, 0];
        t.extend_from_slice(&u32::try_from(cie.len()).unwrap().to_le_bytes());
        t.extend_from_slice(cie);
        let at = t.len();
        t.extend_from_slice(&12u32.to_le_bytes());
        t.extend_from_slice(&u32::try_from(at + 4).unwrap().to_le_bytes());
        t.extend_from_slice(&[0; 8]);
        t.extend_from_slice(&[0; 4]);
        assert_eq!(check_records(&t), Ok(()));
        assert_eq!(first_fde_outside(&t, 0, 0..0).map(|(_, r)| r), Some(Err(FdeProblem::Augmentation)));
        // Six letters, each known: read (an absolute 8-byte pointer: no R).
        let mut six = t.clone();
        six[4 + 5..4 + 13].copy_from_slice(&[b'z', b'S', b'S', b'S', b'S', b'S', 0, 1]);
        assert_ne!(first_fde_outside(&six, 0, 0..0).map(|(_, r)| r), Some(Err(FdeProblem::Augmentation)));
    }

    #[test]
    fn each_fde_covers_the_code_its_relocated_pointer_names() {
        // The table at 0x1000: the first FDE's pc field at 0x1000 + 32 points back 0x20 bytes,
        // the second's at 0x1000 + 56 forward 0x100.
        let t = table(-0x20, 0x100);
        let (first, second) = ((0x1000, 0x10), (0x1000 + 56 + 0x100, 0x20));
        assert_eq!(first_fde_outside(&t, 0x1000, 0..0x1000), Some((24, Ok(first))));
        assert_eq!(first_fde_outside(&t, 0x1000, 0x1000..0x100f), Some((24, Ok(first))), "one byte short");
        assert_eq!(first_fde_outside(&t, 0x1000, 0x1000..0x1010), Some((48, Ok(second))));
        assert_eq!(first_fde_outside(&t, 0x1000, 0x1000..second.0 + second.1), None, "both inside");
        assert_eq!(first_fde_outside(&t, 0x1000, 0x1001..second.0 + second.1), Some((24, Ok(first))));
        let mut cut = t.clone();
        cut.truncate(cut.len() - 4); // no terminator: the records themselves are refused
        let refused = Some((cut.len(), Err(FdeProblem::Records(UnwindProblem::NoTerminator))));
        assert_eq!(first_fde_outside(&cut, 0x1000, 0..u64::MAX), refused);
        let mut orphan = t.clone();
        orphan[28..32].copy_from_slice(&100u32.to_le_bytes()); // a CIE pointer before the table
        assert_eq!(first_fde_outside(&orphan, 0, 0..u64::MAX).map(|(_, r)| r), Some(Err(FdeProblem::NoCie)));
        let mut textrel = t.clone();
        textrel[16] = 0x2b; // the CIE's R: textrel|sdata4
        assert_eq!(
            first_fde_outside(&textrel, 0, 0..u64::MAX).map(|(_, r)| r),
            Some(Err(FdeProblem::Encoding(0x2b)))
        );
        let mut indirect = t.clone();
        indirect[16] = 0x9b; // indirect|pcrel|sdata4: the unwinder would read the start through it
        assert_eq!(
            first_fde_outside(&indirect, 0, 0..u64::MAX).map(|(_, r)| r),
            Some(Err(FdeProblem::Encoding(0x9b)))
        );
        let mut unknown = t;
        unknown[10] = b'X'; // "zX": an augmentation letter this reader does not know
        assert_eq!(
            first_fde_outside(&unknown, 0, 0..u64::MAX).map(|(_, r)| r),
            Some(Err(FdeProblem::Augmentation))
        );
    }

    #[test]
    fn the_common_fdes_read_directly_are_judged_as_the_general_reader_judges_them() {
        // Every byte of a table of a CIE, three FDEs naming it, a second CIE and an FDE naming
        // it, set in turn to values that break or bend each field, against code ranges cutting
        // through the FDEs: reading the common FDEs directly changes no answer.
        let mut t = table(-0x20, 0x100);
        t.truncate(t.len() - 4);
        let second_cie = t.len();
        t.extend_from_within(..24);
        let fde = t.len();
        t.extend_from_slice(&20u32.to_le_bytes());
        t.extend_from_slice(&u32::try_from(fde + 4 - second_cie).unwrap().to_le_bytes());
        t.extend_from_slice(&0x40i32.to_le_bytes());
        t.extend_from_slice(&0x30u32.to_le_bytes());
        t.extend_from_slice(&[0; 8]);
        let third = t.len();
        t.extend_from_within(24..48);
        t[third + 4..third + 8].copy_from_slice(&u32::try_from(third + 4).unwrap().to_le_bytes());
        t.extend_from_slice(&[0; 4]);
        let codes = [0..u64::MAX, 0x1000..0x1200, 0x1010..0x1400, 0..0x1000, 0xfe0..0x2000];
        let judge =
            |t: &[u8], code: &Range<u64>, fast| first_fde_outside_reading(t, 0x1000, code.clone(), fast);
        let mut compared = 0;
        for at in 0..t.len() {
            for value in [0u8, 1, 0x0b, 0x0c, 0x14, 0x1b, 0x7f, 0x80, 0xff, t[at] ^ 1, t[at].wrapping_add(12)]
            {
                let mut bent = t.clone();
                bent[at] = value;
                for code in &codes {
                    assert_eq!(
                        judge(&bent, code, true),
                        judge(&bent, code, false),
                        "byte {at} = {value:#x}, {code:x?}"
                    );
                    compared += 1;
                }
            }
        }
        assert!(codes.iter().any(|code| judge(&t, code, true).is_none()), "some range holds every FDE");
        assert!(compared > 5000);
    }
}
