//! Where the static loader's code goes: the same build with line tables (not stripped), every
//! instruction of `.text` (`objdump -d`) charged to a part of the loader by the innermost
//! function of ours its inlined frames name (`addr2line -i`): the core's module it comes from,
//! or "error messages" for a `Display`/`Debug` implementation. Code of the Rust library and the
//! crates with no frame of ours is charged to them (`core::fmt` to the messages). The parts
//! are what the `nolibc_binary_bytes` result is made of and what a smaller binary would have
//! to leave out (BENCHMARKS.md).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A part of the loader and whether the loader could load real modules without it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Part {
    Validation,
    Loading,
    Allocator,
    FileReading,
    HashTables,
    Messages,
    RustLibrary,
    TheBinary,
    Constructors,
    UnwindTables,
    Templates,
    Compression,
    OtherArchitecture,
}

impl Part {
    /// What the part does, for the report.
    pub(super) fn describe(self) -> &'static str {
        match self {
            Part::Validation => "validation and parsing (module/, wire/, kinds/, bytes.rs, ...)",
            Part::Loading => "placing, linking, relocating (load/)",
            Part::Allocator => "the W^X executable allocator (exec/)",
            Part::FileReading => "reading the file under its limits (file/, sys/)",
            Part::HashTables => "the symbol index's tables (hashbrown, SipHash, sort)",
            Part::Messages => "error messages (Display, core::fmt)",
            Part::RustLibrary => "the rest of Rust's core and alloc",
            Part::TheBinary => "the binary's own start-up, heap, memcpy",
            Part::Constructors => "constructors and destructors (load/calls.rs, at_exit.rs)",
            Part::UnwindTables => "unwind tables' check (load/unwind.rs, module/unwind.rs)",
            Part::Templates => "kept templates (load/kept_templates.rs, template.rs)",
            Part::Compression => "LZ4 sections (compress/, lz4_flex)",
            Part::OtherArchitecture => "aarch64 relocations in an x86-64 binary (load/reloc.rs)",
        }
    }

    /// Whether a loader of plain modules (no compressed sections, no C++ or constructors, no
    /// templates, one architecture) could leave the part out.
    pub(super) fn optional(self) -> bool {
        self >= Part::Constructors
    }
}

/// The part an instruction belongs to, from its inlined frames, innermost first: each a
/// function's name and its source file.
fn part_of<'a>(frames: &'a [(String, String)]) -> Part {
    let root = crate::workspace_root();
    let crates = [root.join("core/format/src/"), root.join("core/runtime/src/")];
    let nolibc = root.join("nolibc/");
    fn within<'f>(crates: &[PathBuf], file: &'f str) -> Option<&'f Path> {
        crates.iter().find_map(|src| Path::new(file).strip_prefix(src).ok())
    }
    let in_crates = |file: &'a str| within(&crates, file);
    let ours =
        frames.iter().find(|(_, file)| in_crates(file).is_some() || Path::new(file).starts_with(&nolibc));
    let Some((function, file)) = ours else {
        // Code of the libraries alone: by any of its frames (the Rust library's inlined into
        // hashbrown's is hashbrown's).
        let any_function = |part: &str| frames.iter().any(|(function, _)| function.contains(part));
        let any_file = |part: &str| frames.iter().any(|(_, file)| file.contains(part));
        return match () {
            _ if any_function("core::fmt") || any_function("alloc::fmt") => Part::Messages,
            _ if any_file("hashbrown") => Part::HashTables,
            _ if any_file("lz4_flex") => Part::Compression,
            _ => Part::RustLibrary,
        };
    };
    if function.contains("fmt::Display") || function.contains("fmt::Debug") || function.ends_with("::lossy") {
        return Part::Messages;
    }
    let Some(path) = in_crates(file) else { return Part::TheBinary };
    match path.to_str().unwrap_or("") {
        p if p.starts_with("exec/") => Part::Allocator,
        p if p.starts_with("file/") || p.starts_with("sys/") => Part::FileReading,
        p if p.starts_with("compress/") => Part::Compression,
        "load/calls.rs" | "load/at_exit.rs" => Part::Constructors,
        "load/unwind.rs" | "module/unwind.rs" => Part::UnwindTables,
        "load/kept_templates.rs" | "template.rs" => Part::Templates,
        "load/reloc.rs" if function.contains("aarch64") => Part::OtherArchitecture,
        p if p.starts_with("load/") => Part::Loading,
        "keyed_hash.rs" | "fnv.rs" | "sort.rs" => Part::HashTables,
        _ => Part::Validation,
    }
}

/// Bytes of code per part of the loader at `binary` (built with line tables), and the size of
/// its read-only data; an error when binutils' `objdump` or `addr2line` cannot say.
pub(super) fn measure(binary: &Path) -> Result<(BTreeMap<Part, u64>, u64), String> {
    let instructions = instructions(binary)?;
    let frames = frames(binary, instructions.iter().map(|&(at, _)| at))?;
    if frames.len() != instructions.len() {
        return Err(format!("addr2line answered {} of {} addresses", frames.len(), instructions.len()));
    }
    let mut parts = BTreeMap::new();
    for (&(_, size), frames) in instructions.iter().zip(&frames) {
        *parts.entry(part_of(frames)).or_insert(0) += size;
    }
    Ok((parts, section_size(binary, ".rodata")?))
}

/// Every instruction of `.text`: its address and size (up to the next one's address).
fn instructions(binary: &Path) -> Result<Vec<(u64, u64)>, String> {
    let listing =
        output(Command::new("objdump").args(["-d", "--no-show-raw-insn", "-j", ".text"]).arg(binary))?;
    let addresses: Vec<u64> = listing
        .lines()
        .filter_map(|line| {
            let (address, _) = line.trim_start().split_once(":\t")?;
            u64::from_str_radix(address, 16).ok()
        })
        .collect();
    let end = section_end(binary, ".text")?;
    Ok(addresses
        .iter()
        .zip(addresses.iter().skip(1).chain([&end]))
        .map(|(&at, &next)| (at, next.saturating_sub(at)))
        .collect())
}

/// The inlined frames at each address (function, file), innermost first, from one
/// `addr2line -f -i -a` over all of them.
fn frames(binary: &Path, addresses: impl Iterator<Item = u64>) -> Result<Vec<Vec<(String, String)>>, String> {
    let input: String = addresses.map(|at| format!("{at:#x}\n")).collect();
    let mut child = Command::new("addr2line")
        .args(["-f", "-i", "-C", "-a", "-e"])
        .arg(binary)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("addr2line: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("addr2line: no stdin")?;
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().map_err(|e| format!("addr2line: {e}"))?;
    writer.join().map_err(|_| "addr2line's writer panicked")?.map_err(|e| format!("addr2line: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut all: Vec<Vec<(String, String)>> = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.starts_with("0x") {
            all.push(Vec::new());
        } else if let Some(frames) = all.last_mut() {
            // `FILE:LINE`, perhaps followed by ` (discriminator N)`: the file.
            let location = lines.next().unwrap_or("");
            let file = location.split_once(':').map_or(location, |(file, _)| file);
            frames.push((line.to_owned(), file.to_owned()));
        }
    }
    Ok(all)
}

/// The size of `section` in `binary`.
fn section_size(binary: &Path, section: &str) -> Result<u64, String> {
    Ok(section_header(binary, section)?.1)
}

/// The address just past `section` in `binary`.
fn section_end(binary: &Path, section: &str) -> Result<u64, String> {
    let (at, size) = section_header(binary, section)?;
    Ok(at + size)
}

/// `section`'s address and size, from `objdump -h`.
fn section_header(binary: &Path, section: &str) -> Result<(u64, u64), String> {
    let headers = output(Command::new("objdump").arg("-h").arg(binary))?;
    headers
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [_, name, size, address, ..] if *name == section => {
                    Some((u64::from_str_radix(address, 16).ok()?, u64::from_str_radix(size, 16).ok()?))
                }
                _ => None,
            }
        })
        .ok_or_else(|| format!("no {section} in {}", binary.display()))
}

/// A command's standard output, or why there is none.
fn output(command: &mut Command) -> Result<String, String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let out = command.output().map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{program}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::{part_of, Part};

    /// Frames as addr2line gives them, innermost first: (function, file under the workspace
    /// or elsewhere).
    fn frames(list: &[(&str, &str)]) -> Vec<(String, String)> {
        let root = crate::workspace_root();
        list.iter()
            .map(|(function, file)| {
                let file = match file.strip_prefix("@/") {
                    Some(ours) => root.join(ours).display().to_string(),
                    None => (*file).to_owned(),
                };
                ((*function).to_owned(), file)
            })
            .collect()
    }

    #[test]
    fn instructions_go_to_the_innermost_part_of_ours() {
        let library = "/rustc/0123/library/core/src/slice/mod.rs";
        let cases = [
            (
                vec![
                    ("core::slice::swap", library),
                    ("State::place", "@/core/runtime/src/exec/state/open.rs"),
                ],
                Part::Allocator,
            ),
            (vec![("Module::validate_sections", "@/core/format/src/module/validate.rs")], Part::Validation),
            (
                vec![
                    ("link", "@/core/runtime/src/load/link.rs"),
                    ("Staged::new", "@/core/runtime/src/load/mod.rs"),
                ],
                Part::Loading,
            ),
            (vec![("Calls::collect", "@/core/runtime/src/load/calls.rs")], Part::Constructors),
            (vec![("apply_aarch64", "@/core/runtime/src/load/reloc.rs")], Part::OtherArchitecture),
            (vec![("pc32", "@/core/runtime/src/load/reloc.rs")], Part::Loading),
            (vec![("<ErrorKind as core::fmt::Display>::fmt", "@/core/format/src/error.rs")], Part::Messages),
            (vec![("core::fmt::write", "/rustc/0123/library/core/src/fmt/mod.rs")], Part::Messages),
            (
                vec![("RawTable::reserve_rehash", "/cargo/registry/src/x/hashbrown-0.17.1/src/raw.rs")],
                Part::HashTables,
            ),
            (vec![("sip_round", "@/core/runtime/src/keyed_hash.rs")], Part::HashTables),
            (vec![("start", "@/nolibc/src/main.rs")], Part::TheBinary),
            (vec![("RawVec::grow_one", "/rustc/0123/library/alloc/src/raw_vec.rs")], Part::RustLibrary),
        ];
        for (list, part) in cases {
            assert_eq!(part_of(&frames(&list)), part, "{list:?}");
        }
    }

    #[test]
    fn only_what_plain_modules_never_use_is_optional() {
        assert!(!Part::Validation.optional() && !Part::Allocator.optional() && !Part::Messages.optional());
        assert!(
            Part::Templates.optional() && Part::Compression.optional() && Part::OtherArchitecture.optional()
        );
    }
}
