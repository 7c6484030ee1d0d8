//! What every `smf` command shares: the exit statuses, writing results and problems, and
//! reading and parsing module files (`-` is standard input). Each command lives in a module of
//! its own (`main.rs` dispatches to it); each writes its result to stdout and its problems to
//! stderr, one line each, and returns its exit status: 0 ok, 1 a bad module or file (usage
//! errors, 2, are clap's).

use std::io::Write;
use std::path::Path;

use smf_format::{Dialect, Module, ParseOptions};

use crate::error::CommandError;

/// Exit status for success.
pub(crate) const EXIT_OK: i32 = 0;
/// Exit status when a module or file is bad.
pub(crate) const EXIT_BAD: i32 = 1;

/// Writes `text` to standard output.
pub(crate) fn out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Writes `text` to standard error.
pub(crate) fn err(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Reports `error` as the tool's one line on standard error.
pub(crate) fn report(error: &CommandError) {
    err(&format!("smf: {error}\n"));
}

/// Reads the module file `path` (`-`: standard input, read as any stream is: to its end,
/// within the size limit), or says why not.
pub(crate) fn read_module_file(path: &str) -> Result<Vec<u8>, CommandError> {
    let file = if path == "-" { Path::new("/dev/stdin") } else { Path::new(path) };
    smf::file::read(file).map_err(|error| CommandError::Read { path: path.to_owned(), error })
}

/// `bytes` parsed as a module (as `dialect`, if given), or the format error naming `file`.
pub(crate) fn parse<'b>(
    file: &str,
    bytes: &'b [u8],
    dialect: Option<Dialect>,
) -> Result<Module<'b>, CommandError> {
    let options = ParseOptions { dialect, ..ParseOptions::default() };
    Module::parse_with(bytes, &options).map_err(|error| CommandError::Format { file: file.to_owned(), error })
}

/// Runs `each` on every file of a command that takes several, as nm and readelf do: with more
/// than one, each file's output starts with a header (`heading` of its name); a file that cannot
/// be read or parsed is reported and the others still run. `each` writes the file's output as
/// it makes it (buffered; a reader that stops reading, as `head` does, stops it). The exit
/// status: 1 if any failed.
pub(crate) fn for_each_module(
    files: &[String],
    dialect: Option<Dialect>,
    heading: Option<fn(&str) -> String>,
    mut each: impl FnMut(&str, &Module<'_>, &mut dyn Write) -> std::io::Result<()>,
) -> i32 {
    let mut status = EXIT_OK;
    for file in files {
        let parsed = read_module_file(file).and_then(|bytes| {
            let module = parse(file, &bytes, dialect)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            if let Some(heading) = heading.filter(|_| files.len() > 1) {
                let _ = out.write_all(heading(file).as_bytes());
            }
            // A write that fails (a closed pipe) ends this file's output, as before.
            let _ = each(file, &module, &mut out).and_then(|()| out.flush());
            Ok(())
        });
        if let Err(error) = parsed {
            report(&error);
            status = EXIT_BAD;
        }
    }
    status
}

/// The count and the noun, in the plural unless there is one (`1 module`, `3 modules`).
pub(crate) fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_singular_for_one() {
        assert_eq!(count(1, "module"), "1 module");
        assert_eq!(count(0, "module"), "0 modules");
        assert_eq!(count(2, "thread"), "2 threads");
    }

    #[test]
    fn each_failure_to_read_is_typed_and_names_its_file() {
        assert!(matches!(read_module_file("/nonexistent/m.smf"), Err(CommandError::Read { .. })));
        let e = parse("garbage.smf", b"not a module", None).unwrap_err();
        assert!(matches!(&e, CommandError::Format { file, .. } if file == "garbage.smf"), "{e}");
        assert!(e.to_string().starts_with("garbage.smf: "), "{e}");
    }
}
