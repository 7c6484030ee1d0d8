//! `smf verify`: whether each file is a valid module (and, with `--load`, whether it loads
//! here, linked as `run` links it, without running its constructors). One line per bad file on
//! stderr, or with `--json` one object per file on stdout.

use serde_json::Value as Json;
use smf_format::Module;

use crate::args::VerifyArgs;
use crate::cli::{out, parse, read_module_file, report, EXIT_BAD, EXIT_OK};
use crate::error::CommandError;
use crate::inspect::header_json;
use crate::link::{Linked, Linking};
use crate::payload::PayloadError;

/// Runs `smf verify`; the exit status.
pub(crate) fn command(args: &VerifyArgs) -> i32 {
    // The libraries are loaded only for --load (the link options need it).
    let linked = match args.load {
        true => match Linked::open(&args.link, Linking::WithoutConstructors) {
            Ok(linked) => Some(linked),
            Err(error) => {
                report(&error);
                return EXIT_BAD;
            }
        },
        false => None,
    };
    let mut status = EXIT_OK;
    for file in &args.files {
        let verdict = verify_file(file, args.dialect.dialect, linked.as_ref());
        if !verdict.is_good() {
            status = EXIT_BAD;
        }
        if args.json {
            out(&(verdict.json(file).to_string() + "\n"));
        } else if let Some(error) = verdict.error() {
            crate::cli::err(&format!("{error}\n"));
        }
    }
    status
}

/// What verifying one file found.
pub(crate) struct Verdict {
    /// The file's header keys of `inspect --json`, if it is a valid module.
    header: Option<serde_json::Map<String, Json>>,
    /// Why it is not a valid module (or could not be read).
    format: Option<CommandError>,
    /// With --load: `None` if it loads, or why not; not tried without --load or when invalid.
    load: Option<Option<CommandError>>,
}

impl Verdict {
    fn is_good(&self) -> bool {
        self.format.is_none() && !matches!(self.load, Some(Some(_)))
    }

    /// The one problem to report, if any.
    fn error(&self) -> Option<&CommandError> {
        self.format.as_ref().or(self.load.as_ref().and_then(Option::as_ref))
    }

    /// The object `verify --json` prints for `file`.
    fn json(&self, file: &str) -> Json {
        let mut object = serde_json::Map::new();
        object.insert("file".into(), file.into());
        object.insert("valid".into(), self.format.is_none().into());
        object.insert("error".into(), self.format.as_ref().map_or(Json::Null, error_json));
        if let Some(load) = &self.load {
            object.insert("loads".into(), load.is_none().into());
            object.insert("load_error".into(), load.as_ref().map_or(Json::Null, error_json));
        }
        if let Some(header) = &self.header {
            object.extend(header.clone());
        }
        Json::Object(object)
    }
}

/// A problem as JSON: its message and, for a format error, the byte offset it is at.
fn error_json(error: &CommandError) -> Json {
    let offset = match error {
        CommandError::Format { error, .. } => Json::from(error.offset),
        _ => Json::Null,
    };
    let mut object = serde_json::Map::new();
    object.insert("message".into(), error.to_string().into());
    object.insert("offset".into(), offset);
    Json::Object(object)
}

/// Verifies `file` (read as `dialect`, if given), loading it as `linked` links with `--load`.
pub(crate) fn verify_file(
    file: &str,
    dialect: Option<smf_format::Dialect>,
    linked: Option<&Linked>,
) -> Verdict {
    let bytes = match read_module_file(file) {
        Ok(bytes) => bytes,
        Err(error) => return Verdict { header: None, format: Some(error), load: None },
    };
    let module: Module<'_> = match parse(file, &bytes, dialect) {
        Ok(module) => module,
        Err(error) => return Verdict { header: None, format: Some(error), load: None },
    };
    if let Err(error) = decompresses(&module) {
        let format = match error {
            PayloadError::Format(error) => CommandError::Format { file: file.to_owned(), error },
            unchecked @ PayloadError::OutOfMemory { .. } => {
                CommandError::Unchecked { file: file.to_owned(), why: unchecked.to_string() }
            }
        };
        return Verdict { header: None, format: Some(format), load: None };
    }
    let load = linked.map(|linked| {
        linked
            .load_bytes(&bytes, None)
            .err()
            .map(|error| CommandError::DoesNotLoad { file: file.to_owned(), error: Box::new(error) })
    });
    Verdict { header: Some(header_json(&module)), format: None, load }
}

/// Checks what validation leaves to a load: every compressed section's frame decompresses to
/// exactly the length it states (validation reads only the length).
fn decompresses(module: &Module<'_>) -> Result<(), PayloadError> {
    let compressed = module.sections().filter(|s| s.flags.contains(smf_format::SectionFlags::COMPRESSED));
    for section in compressed {
        crate::payload::bytes_in_memory(module, &section)?;
    }
    Ok(())
}
