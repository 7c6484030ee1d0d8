//! Response files, as a compiler driver and `ld` read them (`@FILE`: the arguments written in
//! FILE, which build tools such as Ninja and CMake use for long link lines): arguments apart
//! by white space, grouped by single or double quotes, a backslash taking the next character
//! as it is; an `@FILE` among them read in turn, up to [`MOST_NESTED`] deep. An `@FILE` that
//! cannot be read stays as it is, as in GCC (and is then an input that does not exist).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// How deep response files may name others (a file naming itself stops there).
const MOST_NESTED: usize = 16;

/// `args` with every `@FILE` replaced by the arguments FILE holds.
pub(crate) fn expanded(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    for arg in args {
        expand_into(arg, 0, &mut out);
    }
    out
}

/// `arg` expanded into `out`, `depth` files deep.
fn expand_into(arg: OsString, depth: usize, out: &mut Vec<OsString>) {
    let file =
        arg.as_encoded_bytes().strip_prefix(b"@").filter(|path| !path.is_empty() && depth < MOST_NESTED);
    let text = file.and_then(|path| std::fs::read(OsString::from_vec(path.to_vec())).ok());
    match text {
        Some(text) => {
            for word in words(&text) {
                expand_into(OsString::from_vec(word), depth + 1, out);
            }
        }
        None => out.push(arg),
    }
}

/// The arguments `text` holds.
fn words(text: &[u8]) -> Vec<Vec<u8>> {
    let mut words = Vec::new();
    let mut word: Option<Vec<u8>> = None;
    let mut quote = None;
    let mut bytes = text.iter().copied();
    while let Some(byte) = bytes.next() {
        match (quote, byte) {
            (_, b'\\') => {
                if let Some(next) = bytes.next() {
                    word.get_or_insert_with(Vec::new).push(next);
                }
            }
            (Some(open), _) if byte == open => quote = None,
            (Some(_), _) => word.get_or_insert_with(Vec::new).push(byte),
            (None, b'\'' | b'"') => {
                quote = Some(byte);
                word.get_or_insert_with(Vec::new);
            }
            (None, _) if byte.is_ascii_whitespace() => words.extend(word.take()),
            (None, _) => word.get_or_insert_with(Vec::new).push(byte),
        }
    }
    words.extend(word);
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(words: Vec<Vec<u8>>) -> Vec<String> {
        words.into_iter().map(|w| String::from_utf8(w).unwrap()).collect()
    }

    #[test]
    fn words_are_split_as_a_driver_splits_them() {
        let text = b"a.o  libx.a\n-Wl,-u,f 'with space.o' \"d q\" back\\ slash '' -lm\n";
        assert_eq!(
            strings(words(text)),
            ["a.o", "libx.a", "-Wl,-u,f", "with space.o", "d q", "back slash", "", "-lm"]
        );
        assert_eq!(strings(words(b"")), Vec::<String>::new());
    }

    #[test]
    fn response_files_are_read_in_place_and_nested_ones_in_turn() {
        let dir = std::env::temp_dir().join(format!("smf-rsp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let inner = dir.join("inner.rsp");
        std::fs::write(&inner, "b.o c.o").unwrap();
        let outer = dir.join("outer.rsp");
        std::fs::write(&outer, format!("a.o @{}\n-lm", inner.display())).unwrap();
        let looping = dir.join("loop.rsp");
        std::fs::write(&looping, format!("x.o @{}", looping.display())).unwrap();
        let args = |list: &[String]| list.iter().map(OsString::from).collect::<Vec<_>>();
        let given = args(&[
            "smf".into(),
            "pack".into(),
            format!("@{}", outer.display()),
            "-o".into(),
            "m.smf".into(),
        ]);
        assert_eq!(
            expanded(given),
            args(&["smf", "pack", "a.o", "b.o", "c.o", "-lm", "-o", "m.smf"].map(String::from))
        );
        let missing = args(&["@/no/such/file".into(), "@".into()]);
        assert_eq!(expanded(missing.clone()), missing, "kept as they are");
        let looped = expanded(args(&[format!("@{}", looping.display())]));
        assert_eq!(looped.iter().filter(|a| *a == "x.o").count(), MOST_NESTED, "stops at the depth");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
