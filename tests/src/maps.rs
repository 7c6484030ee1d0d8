//! What this process has mapped, as `/proc/self/maps` and `/proc/self/pagemap` tell it: the
//! lines (a torn read's repeats dropped), W^X and writable-alias checks, mappings within
//! ranges or at an address, residency.

/// The lines of `/proc/self/maps`, one per mapping. Linux 6.16 and later produce the file
/// under per-mapping locks, so a mapping that grows while it is read (another thread's mapping
/// merging into it) can appear twice, the second time larger (seen: `..03000-..224000 rw-p` then
/// `..03000-..225000 rw-p`); a line overlapping the one before it replaces it, as the later view.
pub fn maps() -> Vec<String> {
    untorn(&std::fs::read_to_string("/proc/self/maps").unwrap_or_default())
}

/// The lines of a maps `text`, each line that overlaps the one before it kept instead of it
/// ([`maps`]).
fn untorn(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        let overlaps = |kept: &String| match (parse_mapping(kept), parse_mapping(line)) {
            (Some((before, _)), Some((now, _))) => now.start < before.end,
            _ => false,
        };
        match lines.last_mut() {
            Some(last) if overlaps(last) => *last = line.to_owned(),
            _ => lines.push(line.to_owned()),
        }
    }
    lines
}

/// Panics if any mapping of this process is writable and executable, or if a writable mapping
/// aliases an executable one (see [`writable_aliases`]).
pub fn assert_no_rwx(step: &str) {
    for line in maps() {
        let perms = line.split_whitespace().nth(1).unwrap_or("");
        assert!(!(perms.contains('w') && perms.contains('x')), "{step}: rwx mapping: {line}");
    }
    let aliases = writable_aliases();
    assert!(aliases.is_empty(), "{step}: writable mappings alias executable ones: {aliases:#?}");
}

/// One mapping of `/proc/self/maps` with what identifies its memory: the file's device and
/// inode, and the range of the file it maps.
#[derive(Clone, Debug)]
pub struct FileMapping {
    /// The raw line.
    pub line: String,
    /// Permissions (`r-xs`, `rw-p`, ...).
    pub perms: String,
    /// Device and inode (inode 0: anonymous memory, which no other mapping shares).
    pub file: (String, u64),
    /// Bytes of the file mapped: offset .. offset + length.
    pub range: std::ops::Range<u64>,
}

/// The mappings of this process backed by a file (or a memfd): every line with an inode.
pub fn file_mappings() -> Vec<FileMapping> {
    maps()
        .into_iter()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (start, end) = fields.first()?.split_once('-')?;
            let len = u64::from_str_radix(end, 16).ok()? - u64::from_str_radix(start, 16).ok()?;
            let offset = u64::from_str_radix(fields.get(2)?, 16).ok()?;
            let inode: u64 = fields.get(4)?.parse().ok()?;
            (inode != 0).then(|| FileMapping {
                perms: fields[1].to_owned(),
                file: (fields[3].to_owned(), inode),
                range: offset..offset + len,
                line: line.clone(),
            })
        })
        .collect()
}

/// Pairs of mappings (writable, executable) of the same file whose file ranges overlap: memory
/// that can be written through one address and run at another.
pub fn writable_aliases() -> Vec<(String, String)> {
    let mappings = file_mappings();
    let mut pairs = Vec::new();
    for exec in mappings.iter().filter(|m| m.perms.contains('x')) {
        for write in mappings.iter().filter(|m| m.perms.contains('w')) {
            let overlap = write.range.start < exec.range.end && exec.range.start < write.range.end;
            if write.file == exec.file && overlap {
                pairs.push((write.line.clone(), exec.line.clone()));
            }
        }
    }
    pairs
}

/// One line of `/proc/self/maps`: the address range and the permissions (`r-xp`, ...).
fn parse_mapping(line: &str) -> Option<(std::ops::Range<usize>, String)> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let range = usize::from_str_radix(start, 16).ok()?..usize::from_str_radix(end, 16).ok()?;
    Some((range, fields.next()?.to_owned()))
}

/// Kernel mappings of this process that overlap any of `ranges`. A count taken while other
/// threads of the test binary changed their own mappings was once seen one off (the kernel
/// produces `/proc/self/maps` in pieces, and qemu-user its own view of it; [`maps`] drops the
/// repeated lines), so the count is taken again until two reads in a row agree; within ranges
/// only the caller changes, they always do.
pub fn mappings_within(ranges: &[std::ops::Range<usize>]) -> usize {
    let count = || {
        maps()
            .iter()
            .filter_map(|line| parse_mapping(line))
            .filter(|(m, _)| ranges.iter().any(|r| m.start < r.end && r.start < m.end))
            .count()
    };
    let mut last = count();
    for _ in 0..100 {
        let now = count();
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// Runs the calling test, `test` (its name as the harness lists it), alone: in a child
/// process of this test binary that runs it and nothing else, on one thread, so that no other
/// test's threads map, unmap or reprotect memory while it counts the process's mappings (a
/// count read beside them came out one off once in 20 to 40 runs). True in that child (go on
/// with the test), false in the parent once the child passed (return).
pub fn alone(test: &str) -> bool {
    const ALONE: &str = "SMF_TEST_ALONE";
    if std::env::var_os(ALONE).is_some_and(|t| t == test) {
        return true;
    }
    // Under a runner (qemu-user for the aarch64 tests: `cargo xtask cross-test` runs one test
    // at a time there, since an emulated process that forks beside other threads can deadlock
    // in the emulator), the test is alone already: it runs here.
    if std::env::vars().any(|(name, _)| name.starts_with("CARGO_TARGET_") && name.ends_with("_RUNNER")) {
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(exe)
        .args([test, "--exact", "--test-threads=1"])
        .env(ALONE, test)
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{test}, run alone, failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("test result: ok. 1 passed"), "{test} did not run alone: {stdout}");
    false
}

/// Whether the page holding `addr` is resident (`/proc/self/pagemap`, bit 63). x86-64 only in
/// practice: qemu-user shows its host's pagemap.
pub fn resident(addr: usize, page: usize) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let mut pagemap = std::fs::File::open("/proc/self/pagemap").unwrap();
    pagemap.seek(SeekFrom::Start((addr / page * 8) as u64)).unwrap();
    let mut entry = [0u8; 8];
    pagemap.read_exact(&mut entry).unwrap();
    u64::from_le_bytes(entry) >> 63 == 1
}

/// The kernel mapping holding `addr`: its address range and permissions (`r-xp`, ...).
pub fn mapping_at(addr: usize) -> Option<(std::ops::Range<usize>, String)> {
    maps().iter().filter_map(|line| parse_mapping(line)).find(|(range, _)| range.contains(&addr))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_mapping_read_twice_by_a_torn_read_counts_once_as_its_later_view() {
        let text = "7f00-7f10 r-xp 0 00:00 0\n\
                    7f10-7f224 rw-p 0 00:00 0\n\
                    7f10-7f225 rw-p 0 00:00 0\n\
                    7f225-7f230 r--p 0 00:00 0\n";
        assert_eq!(
            super::untorn(text),
            ["7f00-7f10 r-xp 0 00:00 0", "7f10-7f225 rw-p 0 00:00 0", "7f225-7f230 r--p 0 00:00 0"]
        );
    }
}
