//! `smf pack INPUT.o... -o OUTPUT.smf [--dialect s128|r96|r72] [--quiet | --verbose]`: reads
//! the objects, packs them with the library's [`smf_tool::pack`](mod@smf_tool::pack), prints its
//! notes as asked and writes the module.

use smf_tool::pack::pack;

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
