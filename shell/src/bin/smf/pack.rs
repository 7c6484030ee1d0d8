//! `smf pack INPUT.o... -o OUTPUT.smf [--dialect s128|r96|r72]`: x86-64 ELF relocatable objects
//! (as `gcc -c -O2 -fPIC` or `clang` emit) become one SMF module (`packer.rs` does it).
//!
//! - `.text*` sections become code (each padded to the next one's alignment, since SMF code
//!   sections are concatenated without padding); `.rodata*`, `.data*`, `.bss*` become data.
//! - Read-only data that carries relocations (switch jump tables in `.rodata`, pointer tables in
//!   `.data.rel.ro*`) follows the code into the code image: SMF relocates only the code image,
//!   and read-only bytes there are sealed with it. Its objects become data symbols at code
//!   offsets.
//! - Global and weak functions and objects become symbols with their binding; local symbols and
//!   section symbols that relocations use become local symbols; undefined symbols become imports.
//! - Relocations in code: `R_X86_64_64` -> abs64, `PC32` -> pc32, `PLT32` -> plt32, `GOTPCREL`,
//!   `GOTPCRELX`, `REX_GOTPCRELX` -> got_pc32 (the loader gives each such symbol a GOT slot),
//!   `32`/`32S` -> abs32 (S128 only). A `GOTPCRELX`/`REX_GOTPCRELX` load of a symbol the object
//!   defines is relaxed to a direct reference (pc32) as a static linker would ([`crate::relax`]).
//! - Unwind tables, notes, comments and debug info are dropped with a note on stderr; anything
//!   that cannot be represented (relocations in writable data, thread-local storage,
//!   constructors, other relocation types) is an error naming it.
//! - The entry point is `main` when an object defines it.
//! - Several objects combine as `ld -r` would: one code image, references to names another
//!   object defines linked to the definition, a strong definition over weak ones, two strong
//!   ones an error.

use crate::args::PackArgs;
pub(crate) use crate::packer::pack;

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

/// Runs `smf pack`; returns the exit status (0 ok, 1 cannot pack).
pub(crate) fn run(args: &PackArgs) -> i32 {
    let say = match (args.quiet, args.verbose) {
        (true, _) => Say::Nothing,
        (_, true) => Say::Everything,
        _ => Say::Notable,
    };
    let (dialect, output) = (args.dialect, args.output.display().to_string());
    let inputs: Vec<String> = args.inputs.iter().map(|p| p.display().to_string()).collect();
    // Messages name the object when there is one; with several, each says which.
    let label = if inputs.len() == 1 { format!("{}: ", inputs[0]) } else { String::new() };
    let result = inputs
        .iter()
        .map(|input| {
            std::fs::read(input).map(|bytes| (input.clone(), bytes)).map_err(|e| format!("{input}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|objects| {
            pack(&objects, dialect).map_err(|e| if objects.len() == 1 { format!("{label}{e}") } else { e })
        })
        .and_then(|(smf, notes)| {
            for note in notes {
                let level = if note.routine { Say::Everything } else { Say::Notable };
                if say >= level {
                    eprintln!("smf pack: {label}{}", note.text);
                }
            }
            std::fs::write(&output, smf).map_err(|e| format!("{output}: {e}"))
        });
    match result {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("smf pack: {message}");
            1
        }
    }
}

/// Something pack did that its user may want to know.
#[derive(Clone, Debug)]
pub(crate) struct Note {
    /// Every compiled object gets it (printed only with `--verbose`).
    pub(crate) routine: bool,
    /// What happened.
    pub(crate) text: String,
}
