//! `smf pack INPUT.o|LIB.a... -o OUTPUT.smf [-lNAME -LDIR -Wl,... -static -shared -s]
//! [--dialect s128|r96|r72] [--compress lz4|zstd[:LEVEL]] [--quiet | --verbose]`: follows the
//! library and linker options as `ld` does (`linker.rs`), reads the objects and archives
//! (`-`: one object from standard input), packs them with the library's
//! [`smf_tool::pack`](mod@smf_tool::pack) (compressing code, data and rodata if asked), prints
//! its notes as asked and writes the module (renamed into place; `-o -`: to standard output).

use std::path::Path;

use smf_tool::pack::{pack_inputs, Input, PackFailure, PackOptions};

use crate::args::PackArgs;

/// Which notes `smf pack` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Say {
    /// None.
    Nothing,
    /// What a reader may want to know: debug info dropped, read-only data moved into the
    /// code image, sections that cannot be loaded.
    Notable,
    /// Also what every compiled object has (unwind tables, notes, compiler identification).
    Everything,
}

/// Why `smf pack` wrote no module.
#[derive(Debug)]
enum PackCommandError {
    /// An object could not be read.
    Read {
        /// Its path.
        input: String,
        /// Why.
        error: std::io::Error,
    },
    /// The library or linker options could not be followed (a library not found, an option
    /// pack does not take).
    Link(String),
    /// The objects could not be packed: every problem, each naming its object.
    Pack(PackFailure),
    /// `-z defs` or `--no-undefined`, and imports nothing on the link line defines.
    Undefined(Vec<String>),
    /// The module could not be written.
    Write {
        /// Its path.
        output: String,
        /// Why.
        error: std::io::Error,
    },
}

impl std::fmt::Display for PackCommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PackCommandError::Read { input, error } => write!(f, "{input}: {error}"),
            PackCommandError::Link(message) => f.write_str(message),
            PackCommandError::Pack(failure) => failure.fmt(f),
            PackCommandError::Undefined(names) => write!(
                f,
                "undefined references (-z defs, --no-undefined): {}; no object, archive member or shared \
                 library of the link line defines them (nor the C library); no module written",
                listed(names, 20)
            ),
            PackCommandError::Write { output, error } => write!(f, "{output}: {error}"),
        }
    }
}

/// The first `most` of `names`, quoted (C++ ones demangled), and how many more there are.
fn listed(names: &[String], most: usize) -> String {
    let shown = names.iter().take(most).map(|n| format!("`{}`", crate::names::shown(n.as_bytes(), true)));
    let shown = shown.collect::<Vec<_>>().join(", ");
    match names.len().saturating_sub(most) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// Runs `smf pack`; returns the exit status (0 ok, 1 cannot pack).
pub(crate) fn run(args: &PackArgs) -> i32 {
    let say = match (args.quiet, args.verbose) {
        (true, _) => Say::Nothing,
        (_, true) => Say::Everything,
        _ => Say::Notable,
    };
    match pack_files(args, say) {
        Ok(()) => 0,
        Err(PackCommandError::Pack(failure)) => {
            // Every problem (with --verbose, even the repeats of one kind), then how many.
            for line in failure.report(say == Say::Everything) {
                eprintln!("smf pack: {line}");
            }
            let count = failure.problems.len();
            if count > 1 {
                eprintln!("smf pack: {count} problems; no module written");
            }
            1
        }
        Err(error) => {
            eprintln!("smf pack: {error}");
            1
        }
    }
}

/// Reads the objects, packs them, prints the notes `say` asks for, writes the module.
fn pack_files(args: &PackArgs, say: Say) -> Result<(), PackCommandError> {
    // Files are opened by their paths as given; their names (lossy for bytes that are not
    // UTF-8) are for messages only.
    let name = |path: &Path| path.display().to_string();
    let linked = crate::linker::link(args).map_err(PackCommandError::Link)?;
    let inputs: Vec<&Path> = linked.inputs.iter().map(|input| input.path.as_path()).collect();
    let given: Vec<&Path> = linked.given().iter().map(|input| input.path.as_path()).collect();
    let label = match given.as_slice() {
        // Notes name the object when there is one; with several, each says which.
        [one] => format!("{}: ", name(one)),
        _ => String::new(),
    };
    if say >= Say::Notable {
        for note in &linked.notes {
            eprintln!("smf pack: {note}");
        }
    }
    let mut objects = Vec::with_capacity(inputs.len());
    for input in inputs {
        let bytes =
            read_object(input).map_err(|error| PackCommandError::Read { input: name(input), error })?;
        objects.push((name(input), bytes));
    }
    let inputs: Vec<Input<'_>> = objects
        .iter()
        .zip(&linked.inputs)
        .enumerate()
        .map(|(i, ((name, bytes), linked))| Input {
            whole_archive: linked.whole_archive,
            driver_library: i >= given.len(),
            ..Input::new(name, bytes)
        })
        .collect();
    let mut needed_notes = Vec::new();
    let needed =
        crate::defs::needed_names(&linked.shared, &mut needed_notes).map_err(PackCommandError::Link)?;
    if say >= Say::Notable {
        for note in &needed_notes {
            eprintln!("smf pack: {note}");
        }
    }
    let options = PackOptions {
        needed: needed.into_iter().map(String::into_bytes).collect(),
        compression: args.compress,
        entry: linked.entry.clone().map(String::into_bytes),
        undefined: linked.undefined.iter().map(|name| name.clone().into_bytes()).collect(),
        separate_code: linked.separate_code,
        ..PackOptions::new(args.dialect)
    };
    let (smf, notes) = pack_inputs(&inputs, &options).map_err(PackCommandError::Pack)?;
    // Imports nothing of the link line (nor the C library) defines: an error with -z defs, a
    // warning otherwise (the program loading the module must provide them).
    let missing = crate::defs::undefined(&smf, &linked.shared).map_err(PackCommandError::Link)?;
    if linked.no_undefined && !missing.is_empty() {
        return Err(PackCommandError::Undefined(missing));
    }
    if !missing.is_empty() && say >= Say::Notable {
        eprintln!(
            "smf pack: warning: {label}no library of the link line (nor the C library) defines {}: the \
             program loading the module must (smf_host_define, or a library it links); -z defs makes \
             this an error",
            listed(&missing, 10)
        );
    }
    for note in notes {
        let level = if note.routine { Say::Everything } else { Say::Notable };
        if say >= level {
            eprintln!("smf pack: {label}{}", note.text);
        }
    }
    let output = &args.output;
    let written = if output.as_os_str() == "-" { write_stdout(&smf) } else { write_into_place(output, &smf) };
    written.map_err(|error| PackCommandError::Write { output: name(output), error })
}

/// The object file `input` (`-`: standard input, to its end).
fn read_object(input: &Path) -> std::io::Result<Vec<u8>> {
    if input.as_os_str() != "-" {
        return std::fs::read(input);
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes)?;
    Ok(bytes)
}

/// Writes the module to standard output.
fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()
}

/// Writes `bytes` to a new file beside `output` and renames it over `output`: a reader never
/// sees it half written (what compilers do). An `output` that exists and is not a regular file
/// (`/dev/null`, a FIFO, a terminal) is written into instead, as `ld` does: renaming over it
/// would replace the device or pipe with a file (`-o /dev/null` made every later reader of
/// `/dev/null` read modules and logs).
fn write_into_place(output: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let special = std::fs::metadata(output).is_ok_and(|m| !m.file_type().is_file());
    if special {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new().write(true).open(output)?;
        return file.write_all(bytes).and_then(|()| file.flush());
    }
    let name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let partial = output.with_file_name(format!(".{name}.{}.partial", std::process::id()));
    let written = std::fs::write(&partial, bytes).and_then(|()| std::fs::rename(&partial, output));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use smf_format::Dialect;
    use smf_tool::pack::PackError;

    use super::*;

    fn args(inputs: &[&str], output: &str) -> PackArgs {
        PackArgs {
            inputs: inputs.iter().map(PathBuf::from).collect(),
            output: PathBuf::from(output),
            dialect: Dialect::S128,
            compress: None,
            quiet: true,
            verbose: false,
            libraries: Vec::new(),
            search: Vec::new(),
            linker: Vec::new(),
            static_libraries: false,
            shared: false,
            strip: false,
            entry: None,
            undefined: Vec::new(),
            positions: crate::args::Positions::default(),
        }
    }

    /// An output that is not a regular file (a FIFO here; `/dev/null` alike) is written into,
    /// never renamed over: it stays what it was.
    #[test]
    fn an_output_that_is_no_regular_file_is_written_into_not_replaced() {
        use std::os::unix::fs::FileTypeExt as _;
        let dir = std::env::temp_dir().join(format!("smf-pack-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("out.smf");
        let _ = std::fs::remove_file(&fifo);
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        write_into_place(&fifo, b"module bytes").unwrap();
        assert_eq!(reader.join().unwrap(), b"module bytes");
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "still a FIFO");
        // A regular file is still replaced whole, through a rename.
        let file = dir.join("plain.smf");
        std::fs::write(&file, b"an older, longer module").unwrap();
        write_into_place(&file, b"new").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"new");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn each_step_that_fails_names_its_file() {
        let missing = args(&["/nonexistent/a.o"], "/tmp/unused.smf");
        let e = pack_files(&missing, Say::Nothing).unwrap_err();
        assert!(matches!(&e, PackCommandError::Read { input, .. } if input == "/nonexistent/a.o"), "{e}");
        let dir = std::env::temp_dir().join(format!("smf-pack-command-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_elf = dir.join("not.o");
        std::fs::write(&not_elf, "not ELF").unwrap();
        let e = pack_files(&args(&[not_elf.to_str().unwrap()], "/tmp/unused.smf"), Say::Nothing).unwrap_err();
        assert!(
            matches!(&e, PackCommandError::Pack(failure) if matches!(failure.first(), PackError::NotElf(_))),
            "{e}"
        );
        assert!(e.to_string().starts_with(&format!("{}: ", not_elf.display())), "{e}");
        // A real object, and an output nobody can create.
        let source = dir.join("f.c");
        std::fs::write(&source, "long f(void) { return 1; }\n").unwrap();
        let object = dir.join("f.o");
        let compiled = std::process::Command::new("gcc")
            .args(["-c", "-O2", "-fPIC"])
            .arg(&source)
            .arg("-o")
            .arg(&object)
            .status()
            .expect("gcc");
        assert!(compiled.success());
        let e =
            pack_files(&args(&[object.to_str().unwrap()], "/nonexistent/f.smf"), Say::Nothing).unwrap_err();
        assert!(
            matches!(&e, PackCommandError::Write { output, .. } if output == "/nonexistent/f.smf"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
