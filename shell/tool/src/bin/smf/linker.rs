//! The inputs and options `smf pack` takes as `ld` takes them, read in command-line order:
//! `-lNAME` found in the `-L` directories, then `LIBRARY_PATH`'s and the system's, then the C
//! compiler's own (libgcc's, libstdc++'s: its driver gives them to `ld`) (an
//! archive's members the objects need packed in, a shared library left to load time),
//! `-Wl,...` lists read option by option (input files in them taken as inputs;
//! `--whole-archive` to `--no-whole-archive` marking the archives between them to be packed
//! whole; `-Bstatic` to `-Bdynamic` the libraries for which only an archive will do; `-e` the
//! entry point, the last one given), and the options that set what a module does not have (or
//! archive groups, which pack makes of every archive anyway), ignored with a note. Every `-L`
//! applies to every `-l`, as in ld.

use std::path::{Path, PathBuf};

use crate::args::PackArgs;
use crate::driver;

/// The system's library directories, searched after `-L` and `LIBRARY_PATH` (x86-64 Linux,
/// Debian's multiarch layout first, as its `ld` has them).
const SYSTEM_DIRS: [&str; 8] = [
    "/usr/local/lib/x86_64-linux-gnu",
    "/usr/local/lib",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// Linker options with nothing to set in a module, taking a value (the next argument, or
/// joined with `=` or, for one letter, directly).
const IGNORED_WITH_VALUE: [&str; 8] =
    ["-soname", "-h", "-rpath", "-z", "--version-script", "--dynamic-list", "--exclude-libs", "-m"];

/// The same, taking no value: a name, or (ending in `*`) every option starting so. Archive
/// groups among them: pack searches every archive as one group already.
const IGNORED: [&str; 18] = [
    "--enable-new-dtags",
    "--disable-new-dtags",
    "--start-group",
    "--end-group",
    "-(",
    "-)",
    "--as-needed",
    "--no-as-needed",
    "--gc-sections",
    "--no-gc-sections",
    "--eh-frame-hdr",
    "--export-dynamic",
    "-E",
    "-O*",
    "--hash-style=*",
    "--build-id*",
    "-Bsymbolic*",
    "--sort-common*",
];

/// The options that open and close an archive group (among [`IGNORED`]).
const GROUPS: [&str; 4] = ["--start-group", "--end-group", "-(", "-)"];

/// One input to pack, in command-line order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LinkedInput {
    pub(crate) path: PathBuf,
    /// Given between `--whole-archive` and `--no-whole-archive`: an archive whose every member
    /// is packed.
    pub(crate) whole_archive: bool,
}

/// What pack's inputs and ld-style options come to: the inputs, the entry point, notes.
#[derive(Debug, Default)]
pub(crate) struct Linked {
    /// The files given, those `-Wl` lists name and the archives `-l` finds, in the order the
    /// command line gives them (as `ld` reads them).
    pub(crate) inputs: Vec<LinkedInput>,
    /// The entry point `-e` names, if it does.
    pub(crate) entry: Option<String>,
    /// The names `-u` (and `--require-defined`) count as referred to.
    pub(crate) undefined: Vec<String>,
    /// What was taken or ignored, for the reader.
    pub(crate) notes: Vec<String>,
    /// The shared libraries `-l` found or the command line named, whose functions stay imports.
    pub(crate) shared: Vec<PathBuf>,
    /// `-z defs` or `--no-undefined`: every import must be one of theirs or the C library's
    /// (`defs.rs`).
    pub(crate) no_undefined: bool,
    /// `-z separate-code`: the read-only data kept apart from the code (`PackOptions`).
    pub(crate) separate_code: bool,
    /// How many of the last `inputs` pack added itself, as the compiler driver does (libgcc's
    /// archive, unless `-nostdlib` or `-nodefaultlibs`).
    pub(crate) implicit: usize,
}

impl Linked {
    /// The inputs the command line gave (those pack added left out).
    pub(crate) fn given(&self) -> &[LinkedInput] {
        &self.inputs[..self.inputs.len().saturating_sub(self.implicit)]
    }
}

/// An input, a library, a `-Wl` list or `-e` of the command line.
#[derive(Clone, Copy, Debug)]
enum Item<'a> {
    Input(&'a Path),
    Library(&'a str),
    Linker(&'a str),
    Entry(&'a str),
}

/// What a library or file comes to once every `-L` is known.
enum Pending {
    File(PathBuf, bool),
    /// A library, whether it is taken whole, and whether only its archive will do.
    Library(String, bool, bool),
}

/// `args`' inputs, libraries, `-Wl` lists and `-e` in command-line order (where the parser
/// recorded it: [`PackArgs::positions`]; else inputs, then lists, then libraries, then `-e`).
fn in_order(args: &PackArgs) -> Vec<Item<'_>> {
    let positions = &args.positions;
    let recorded = positions.inputs.len() == args.inputs.len()
        && positions.libraries.len() == args.libraries.len()
        && positions.linker.len() == args.linker.len()
        && positions.entry.is_some() == args.entry.is_some();
    // Recorded: (position, 0); else (group, index in it).
    let at = |recorded_at: Option<usize>, i: usize, group: usize| match recorded_at {
        Some(position) if recorded => (position, 0),
        _ => (group, i),
    };
    let mut items: Vec<((usize, usize), Item<'_>)> = Vec::new();
    let inputs = args.inputs.iter().enumerate();
    items.extend(inputs.map(|(i, p)| (at(positions.inputs.get(i).copied(), i, 0), Item::Input(p))));
    let lists = args.linker.iter().enumerate();
    items.extend(lists.map(|(i, l)| (at(positions.linker.get(i).copied(), i, 1), Item::Linker(l))));
    let libraries = args.libraries.iter().enumerate();
    items.extend(libraries.map(|(i, l)| (at(positions.libraries.get(i).copied(), i, 2), Item::Library(l))));
    items.extend(args.entry.as_deref().map(|e| (at(positions.entry, 0, 3), Item::Entry(e))));
    items.sort_by_key(|&(position, _)| position);
    items.into_iter().map(|(_, item)| item).collect()
}

/// Reads `args`' inputs, library and linker options.
pub(crate) fn link(args: &PackArgs) -> Result<Linked, String> {
    let mut search = args.search.clone();
    let mut linked = Linked { undefined: args.undefined.clone(), ..Linked::default() };
    let mut pending = Vec::new();
    // ld's positional states: --whole-archive, -Bstatic.
    let (mut whole, mut static_only) = (false, args.static_libraries);
    // -static-libstdc++: -lstdc++ takes the archive.
    let mut static_libstdcxx = false;
    let mut compile_options: Vec<&str> = Vec::new();
    // --push-state's saved states.
    let mut pushed = Vec::new();
    // The compiler driver's libraries (libgcc's archive), unless -nostdlib or -nodefaultlibs.
    let mut default_libraries = true;
    for item in in_order(args) {
        let list = match item {
            Item::Input(path) => {
                pending.push(Pending::File(path.to_owned(), whole));
                continue;
            }
            Item::Library(name) => {
                pending.push(Pending::Library(name.to_owned(), whole, static_only));
                continue;
            }
            Item::Entry(name) => {
                linked.entry = Some(name.to_owned());
                continue;
            }
            Item::Linker(list) => list,
        };
        let Some(options) = list.strip_prefix("l,") else {
            return Err(format!("-W{list}: only -Wl,OPTION,... (options for the linker) is taken"));
        };
        let mut options = options.split(',');
        while let Some(option) = options.next() {
            let mut value = |name: &str| {
                options.next().map(str::to_owned).ok_or_else(|| format!("-Wl,{name}: a value must follow"))
            };
            match option {
                "-static-libstdc++" => static_libstdcxx = true,
                "-nostdlib" | "-nodefaultlibs" => {
                    default_libraries = false;
                    linked.notes.push(format!("{option}: libgcc's archive is not linked"));
                }
                _ if driver::runtime_library(option).is_some() => {
                    let library = driver::runtime_library(option).unwrap_or_default();
                    linked.notes.push(format!("{option}: links -l{library}, as the compiler driver does"));
                    pending.push(Pending::Library(library.to_owned(), whole, static_only));
                }
                // ld's state saved and restored: --whole-archive and -Bstatic.
                "--push-state" => pushed.push((whole, static_only)),
                "--pop-state" => {
                    (whole, static_only) =
                        pushed.pop().ok_or("-Wl,--pop-state: no --push-state before it")?;
                }
                "-static-pie" => static_only = true,
                _ if driver::nothing_to_do(option).is_some() => {
                    let why = driver::nothing_to_do(option).unwrap_or_default();
                    linked.notes.push(format!("ignored {option} ({why})"));
                }
                // ld's -O (an optimization level) is among the ignored linker options below.
                _ if driver::is_compile_option(option) && !option.starts_with("-O") => {
                    compile_options.push(option);
                }
                "-L" => search.push(PathBuf::from(value("-L")?)),
                "-l" => pending.push(Pending::Library(value("-l")?, whole, static_only)),
                "-s" | "--strip-all" | "-S" | "--strip-debug" | "-shared" | "-Bshareable" => {}
                "-static" | "-Bstatic" | "-dn" | "-non_shared" => static_only = true,
                "-Bdynamic" | "-dy" | "-call_shared" => static_only = false,
                "--whole-archive" => whole = true,
                "--no-whole-archive" => whole = false,
                "-e" | "--entry" => linked.entry = Some(value(option)?),
                "-u" | "--undefined" | "--require-defined" => linked.undefined.push(value(option)?),
                _ if ["--undefined=", "--require-defined="].iter().any(|p| option.starts_with(p)) => {
                    let (name, symbol) = option.split_once('=').unwrap_or_default();
                    if symbol.is_empty() {
                        return Err(format!("-Wl,{name}=: a value must follow"));
                    }
                    linked.undefined.push(symbol.to_owned());
                }
                _ if option.starts_with("--entry=") => {
                    let name = &option["--entry=".len()..];
                    if name.is_empty() {
                        return Err("-Wl,--entry=: a value must follow".to_owned());
                    }
                    linked.entry = Some(name.to_owned());
                }
                "-o" => return Err("-Wl,-o: give pack -o".to_owned()),
                // An input file among the options (an archive in a group, an object).
                _ if !option.starts_with('-') && !option.is_empty() => {
                    pending.push(Pending::File(PathBuf::from(option), whole));
                }
                _ if option.starts_with("-L") => search.push(PathBuf::from(&option[2..])),
                _ if option.starts_with("-l") => {
                    pending.push(Pending::Library(option[2..].to_owned(), whole, static_only));
                }
                "--no-undefined" => linked.no_undefined = true,
                "-zdefs" => linked.no_undefined = true,
                "-zundefs" => linked.no_undefined = false,
                "-zseparate-code" => linked.separate_code = true,
                "-znoseparate-code" => linked.separate_code = false,
                _ if IGNORED_WITH_VALUE.contains(&option) => {
                    let value = value(option)?;
                    // `-z defs` is ld's --no-undefined (`defs.rs`); other -z keywords set what a
                    // module has not.
                    match (option, value.as_str()) {
                        ("-z", "defs") => linked.no_undefined = true,
                        ("-z", "undefs") => linked.no_undefined = false,
                        ("-z", "separate-code") => linked.separate_code = true,
                        ("-z", "noseparate-code") => linked.separate_code = false,
                        _ => linked.notes.push(format!(
                            "ignored linker option {option} {value} (a module has no such setting)"
                        )),
                    }
                }
                _ if ignored(option) => {
                    let why = if GROUPS.contains(&option) {
                        "pack searches every archive as one group"
                    } else {
                        "a module has no such setting"
                    };
                    linked.notes.push(format!("ignored linker option {option} ({why})"));
                }
                _ => return Err(format!("-Wl,{option}: a linker option pack does not take")),
            }
        }
    }
    if !compile_options.is_empty() {
        linked.notes.push(format!(
            "ignored compile options {} (pack links: nothing to compile)",
            compile_options.join(" ")
        ));
    }
    // Every -L applies to every -l, wherever it is (as in ld).
    let mut dirs = search_dirs(&search);
    let mut asked_compiler = false;
    for item in pending {
        match item {
            // A shared library named by path (as CMake's link lines name them), as -l takes one.
            Pending::File(path, _) if is_shared_library(&path) => {
                linked.notes.push(shared_note(None, &path));
                linked.shared.push(path);
            }
            Pending::File(path, whole_archive) => linked.inputs.push(LinkedInput { path, whole_archive }),
            Pending::Library(name, whole_archive, static_only) => {
                match find(&name, &dirs, static_only || (static_libstdcxx && name == "stdc++")).or_else(
                    || {
                        // Where the compiler keeps its own libraries (libgcc, libstdc++, libgomp),
                        // which its driver gives ld: asked once, for a library not found elsewhere.
                        if !std::mem::replace(&mut asked_compiler, true) {
                            let new: Vec<PathBuf> =
                                compiler_dirs().into_iter().filter(|dir| !dirs.contains(dir)).collect();
                            dirs.extend(new);
                        }
                        find(&name, &dirs, static_only || (static_libstdcxx && name == "stdc++"))
                    },
                ) {
                    // The C library's archive (-static with -lc, as a driver's -static line
                    // gives it): every object of it is thread-local storage or start-up code.
                    Some(Found::Archive(path)) if name == "c" => {
                        return Err(format!(
                            "-lc: {} is the C library's archive, which cannot be packed (its thread-local \
                             storage and start-up belong to the process): drop -lc, or -static; a module \
                             uses the process's C library",
                            path.display()
                        ));
                    }
                    Some(Found::Archive(path)) => linked.inputs.push(LinkedInput { path, whole_archive }),
                    Some(Found::Shared(path)) => {
                        linked.notes.push(shared_note(Some(&name), &path));
                        linked.shared.push(path);
                    }
                    None => {
                        let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
                        return Err(format!("cannot find -l{name} (searched {})", searched.join(", ")));
                    }
                }
            }
        }
    }
    if linked.inputs.is_empty() {
        return Err("no input files: give objects or archives (a shared library adds none)".to_owned());
    }
    if default_libraries {
        // As gcc's driver links a shared library: libgcc's archive after every input, whose
        // members the objects need (`__udivti3`, `__popcountdi2`, ...) are packed in.
        match libgcc_archive() {
            Some(path) => {
                linked.inputs.push(LinkedInput { path, whole_archive: false });
                linked.implicit = 1;
            }
            None => linked.notes.push(
                "libgcc's archive was not found (no C compiler answered -print-libgcc-file-name): \
                 its helpers stay imports"
                    .to_owned(),
            ),
        }
    }
    Ok(linked)
}

/// libgcc's archive as the C compiler (`$CC`, else `cc`) names it with
/// `-print-libgcc-file-name`; `None` without a compiler or the archive.
fn libgcc_archive() -> Option<PathBuf> {
    let output = compiler_command().arg("-print-libgcc-file-name").output().ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    (output.status.success() && path.is_absolute() && path.is_file()).then_some(path)
}

/// The C compiler (`$CC`, its words split, else `cc`), its errors silenced.
fn compiler_command() -> std::process::Command {
    let compiler = std::env::var("CC").unwrap_or_default();
    let mut words = compiler.split_whitespace();
    let mut command = std::process::Command::new(words.next().unwrap_or("cc"));
    command.args(words).stderr(std::process::Stdio::null());
    command
}

/// Whether `option` is one of [`IGNORED`], or one of [`IGNORED_WITH_VALUE`] with its value
/// joined to it (`-soname=x`, `-znow`).
fn ignored(option: &str) -> bool {
    let matches = |pattern: &str| {
        pattern.strip_suffix('*').map_or(option == pattern, |prefix| option.starts_with(prefix))
    };
    let joined = |name: &str| {
        option
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('=') || (name.len() == 2 && !rest.is_empty()))
    };
    IGNORED.iter().any(|p| matches(p)) || IGNORED_WITH_VALUE.iter().any(|name| joined(name))
}

/// The file `name` in the first of the system's library directories that has it (the C
/// library's own: `libc.so.6`, `libm.so.6`).
pub(crate) fn system_file(name: &str) -> Option<PathBuf> {
    SYSTEM_DIRS.iter().map(|dir| Path::new(dir).join(name)).find(|path| path.is_file())
}

/// The directories -l searches, in order: `-L`'s, `LIBRARY_PATH`'s, the system's.
fn search_dirs(search: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = search.to_vec();
    if let Some(paths) = std::env::var_os("LIBRARY_PATH") {
        dirs.extend(std::env::split_paths(&paths).filter(|p| !p.as_os_str().is_empty()));
    }
    dirs.extend(SYSTEM_DIRS.iter().map(PathBuf::from));
    dirs
}

/// The C compiler's own library directories (`$CC`, else `cc`, asked with
/// `-print-search-dirs`), which its driver passes to `ld`; none without a compiler.
fn compiler_dirs() -> Vec<PathBuf> {
    let Ok(output) = compiler_command().arg("-print-search-dirs").output() else { return Vec::new() };
    let text = String::from_utf8_lossy(&output.stdout);
    let Some(dirs) = text.lines().find_map(|line| line.strip_prefix("libraries: =")) else {
        return Vec::new();
    };
    std::env::split_paths(dirs).filter(|dir| dir.is_dir()).collect()
}

/// What -l found.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    Archive(PathBuf),
    Shared(PathBuf),
}

/// Library `name` (`:FILE` for a file name) in the first of `dirs` that has it: the shared
/// library where both are in one directory, unless `static_only`.
fn find(name: &str, dirs: &[PathBuf], static_only: bool) -> Option<Found> {
    for dir in dirs {
        if let Some(file) = name.strip_prefix(':') {
            let path = dir.join(file);
            if path.is_file() {
                let archive = Path::new(file).extension().is_some_and(|e| e == "a");
                return Some(if archive { Found::Archive(path) } else { Found::Shared(path) });
            }
            continue;
        }
        let shared = dir.join(format!("lib{name}.so"));
        if !static_only && shared.is_file() {
            return Some(Found::Shared(shared));
        }
        let archive = dir.join(format!("lib{name}.a"));
        if archive.is_file() {
            return Some(Found::Archive(archive));
        }
    }
    None
}

/// What happens to a shared library's functions: imports, resolved at load. `name` is the NAME
/// of the `-lNAME` that found it (`None`: named by its path).
fn shared_note(name: Option<&str>, path: &Path) -> String {
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let default =
        matches!(name, Some("c" | "m")) || file.starts_with("libc.so") || file.starts_with("libm.so");
    let how = match name {
        _ if default => "smf run, the C ABI and the cache link the C library and libm by default".to_owned(),
        _ => "the module records it as needed: a load opens it by its name, as ld.so opens a \
              library's DT_NEEDED (SMF_LOAD_NO_NEEDED, smf run --no-needed: not)"
            .to_owned(),
    };
    let given = name.map(|name| format!("-l{name}: ")).unwrap_or_default();
    format!(
        "{given}{} is a shared library; its functions stay imports, resolved at load ({how})",
        path.display()
    )
}

/// Whether the file at `path` is an ELF shared library (`ET_DYN`, little-endian: x86-64's).
fn is_shared_library(path: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 18];
    let read = std::fs::File::open(path).and_then(|mut file| file.read_exact(&mut header));
    read.is_ok() && header.starts_with(b"\x7fELF") && header[5] == 1 && header[16..18] == [3, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_with_nothing_to_set_in_a_module_are_recognized() {
        for option in [
            "--as-needed",
            "-O1",
            "--hash-style=gnu",
            "--build-id=sha1",
            "-soname=libx.so.1",
            "-znow",
            "-Bsymbolic-functions",
            "--start-group",
            "--end-group",
        ] {
            assert!(ignored(option), "{option}");
        }
        for option in ["--whole-archive", "-e", "-T", "-Map", "--defsym=x=1"] {
            assert!(!ignored(option), "{option}");
        }
    }

    #[test]
    fn a_library_is_found_in_the_first_directory_that_has_it() {
        let root = std::env::temp_dir().join(format!("smf-linker-{}", std::process::id()));
        let (first, second) = (root.join("first"), root.join("second"));
        std::fs::create_dir_all(&first).unwrap();
        std::fs::create_dir_all(&second).unwrap();
        std::fs::write(second.join("libboth.so"), b"").unwrap();
        std::fs::write(second.join("libboth.a"), b"").unwrap();
        std::fs::write(first.join("libstatic.a"), b"").unwrap();
        std::fs::write(second.join("libstatic.so"), b"").unwrap();
        let dirs = [first.clone(), second.clone()];
        assert_eq!(find("both", &dirs, false), Some(Found::Shared(second.join("libboth.so"))));
        assert_eq!(find("both", &dirs, true), Some(Found::Archive(second.join("libboth.a"))));
        assert_eq!(
            find("static", &dirs, false),
            Some(Found::Archive(first.join("libstatic.a"))),
            "the first directory"
        );
        assert_eq!(find(":libboth.a", &dirs, false), Some(Found::Archive(second.join("libboth.a"))));
        assert_eq!(find("none", &dirs, false), None);
        let _ = std::fs::remove_dir_all(&root);
    }
}
