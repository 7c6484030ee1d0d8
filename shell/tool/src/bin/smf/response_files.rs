//! Response files, as a compiler driver and `ld` read them (`@FILE`: the arguments written in
//! FILE, which build tools such as Ninja and CMake use for long link lines): arguments apart
//! by white space, grouped by single or double quotes, a backslash taking the next character
//! as it is; an `@FILE` among them read in turn. An `@FILE` that cannot be opened stays as it
//! is, as in GCC (and is then an input that does not exist). As GCC's libiberty, at most
//! [`MOST_FILES`] are read in all (a file naming itself twice would be read 2^depth times),
//! nested at most [`MOST_NESTED`] deep, each at most [`MOST_BYTES`]: past any, an error.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;

/// Response files read in all, at most (libiberty's limit).
const MOST_FILES: usize = 2000;

/// How deep response files may name others, at most (a file naming itself).
const MOST_NESTED: usize = 64;

/// Bytes of one response file, at most (`@/dev/zero` would never end).
const MOST_BYTES: u64 = 16 << 20;

/// `args` with every `@FILE` replaced by the arguments FILE holds, or why not.
pub(crate) fn expanded(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let mut out = Vec::with_capacity(args.len());
    let mut read = 0;
    for arg in args {
        expand_into(arg, 0, &mut read, &mut out)?;
    }
    Ok(out)
}

/// `arg` expanded into `out`, `depth` files deep, `read` files read so far.
fn expand_into(arg: OsString, depth: usize, read: &mut usize, out: &mut Vec<OsString>) -> Result<(), String> {
    let Some(path) = arg.as_encoded_bytes().strip_prefix(b"@").filter(|path| !path.is_empty()) else {
        out.push(arg);
        return Ok(());
    };
    let path = OsString::from_vec(path.to_vec());
    let Ok(file) = std::fs::File::open(&path) else {
        out.push(arg);
        return Ok(());
    };
    if depth >= MOST_NESTED {
        return Err(format!(
            "@{}: response files nested more than {MOST_NESTED} deep (one that names itself?)",
            path.to_string_lossy()
        ));
    }
    *read += 1;
    if *read > MOST_FILES {
        return Err(format!(
            "@{}: more than {MOST_FILES} response files read (one that names itself?)",
            path.to_string_lossy()
        ));
    }
    let mut text = Vec::new();
    let taken = file.take(MOST_BYTES + 1).read_to_end(&mut text);
    taken.map_err(|e| format!("@{}: {e}", path.to_string_lossy()))?;
    if text.len() as u64 > MOST_BYTES {
        return Err(format!("@{}: a response file of more than {MOST_BYTES} bytes", path.to_string_lossy()));
    }
    for word in words(&text) {
        expand_into(OsString::from_vec(word), depth + 1, read, out)?;
    }
    Ok(())
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
        let args = |list: &[String]| list.iter().map(OsString::from).collect::<Vec<_>>();
        let given = args(&[
            "smf".into(),
            "pack".into(),
            format!("@{}", outer.display()),
            "-o".into(),
            "m.smf".into(),
        ]);
        let expected = args(&["smf", "pack", "a.o", "b.o", "c.o", "-lm", "-o", "m.smf"].map(String::from));
        assert_eq!(expanded(given), Ok(expected));
        let missing = args(&["@/no/such/file".into(), "@".into()]);
        assert_eq!(expanded(missing.clone()), Ok(missing), "kept as they are");
        // A file naming itself (three times: 3^depth reads without the limit) stops at it.
        let looping = dir.join("loop.rsp");
        let itself = format!("@{}", looping.display());
        std::fs::write(&looping, format!("x.o {itself} {itself} {itself}")).unwrap();
        let error = expanded(args(&[itself])).unwrap_err();
        assert!(error.contains("nested more than 64 deep (one that names itself?)"), "{error}");
        // Fifty files each naming a file of fifty: 2,550 reads, past the limit.
        let leaf = dir.join("leaf.rsp");
        std::fs::write(&leaf, "x.o").unwrap();
        let middle = dir.join("middle.rsp");
        std::fs::write(&middle, format!("@{} ", leaf.display()).repeat(50)).unwrap();
        let top = dir.join("top.rsp");
        std::fs::write(&top, format!("@{} ", middle.display()).repeat(50)).unwrap();
        let error = expanded(args(&[format!("@{}", top.display())])).unwrap_err();
        assert!(error.contains("more than 2000 response files read"), "{error}");
        // One that never ends stops at its size limit.
        let error = expanded(args(&["@/dev/zero".into()])).unwrap_err();
        assert!(error.contains("a response file of more than"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
