//! The note.sdn target's runtime half: the format's checks of the reader and the writer, then
//! the instantiator's metadata of a module with the same note against the reader.

use alloc::string::String;
use alloc::vec::Vec;

use smf_format::fuzzing::assert_recorded;
use smf_format::note_sdn::Recorded;

use crate::instantiate::metadata::{ModuleMetadata, JIT_COMPILED, JIT_OBJECT};

/// "possible" rows recorded in one module's metadata.
const RECORDED: usize = 3;

/// [`smf_format::fuzzing::fuzz_note_sdn`] on `data`, then the instantiator's metadata of a
/// module whose note is `data`'s valid UTF-8 prefix. Returns how many items were visited.
pub fn fuzz_note_sdn(data: &[u8]) -> usize {
    let text = match core::str::from_utf8(data) {
        Ok(text) => text,
        Err(e) => core::str::from_utf8(&data[..e.valid_up_to()]).unwrap_or_default(),
    };
    smf_format::fuzzing::fuzz_note_sdn(data) + metadata_agrees(text)
}

/// The instantiator's metadata of a module with `text` as its note agrees with the reader:
/// every name it offers answers as offered, recorded names answer as recorded (in order), and
/// its note as written lists each recorded name as a `jit_compiled` instantiation from the
/// module's file and no longer as possible. Returns the number of names offered.
fn metadata_agrees(text: &str) -> usize {
    let Ok(mut metadata) = ModuleMetadata::new(Some(text), "fuzz.smf") else { return 0 };
    let offered: Vec<String> = metadata.offered().map(String::from).collect();
    for name in &offered {
        assert!(metadata.offers(name), "{name:?} is offered but does not answer as offered");
        assert!(matches!(metadata.possible(name), Ok(Some(_))), "{name:?} offered without an entry");
    }
    let recorded: Vec<&String> = offered.iter().take(RECORDED).collect();
    for name in &recorded {
        assert!(metadata.record(name).is_ok() && metadata.is_recorded(name), "{name:?} was not recorded");
    }
    assert!(metadata.recorded().eq(recorded.iter().map(|n| n.as_str())), "recorded names out of order");
    assert!(!metadata.offers("\0 not offered") || offered.iter().any(|n| n == "\0 not offered"));
    let Ok(out) = metadata.to_text() else { return offered.len() };
    for name in &recorded {
        assert_recorded(
            &out,
            &Recorded { mangled_name: name, from_file: "fuzz.smf", to_obj: JIT_OBJECT, status: JIT_COMPILED },
        );
    }
    offered.len()
}
